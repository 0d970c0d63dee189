"""Command line: parse, build the config, call one library function, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from pipeline import __version__
from pipeline.config import PROFILES, load_config
from pipeline.errors import DaeReportError

DEFAULT_OUT = Path("reports")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="dae-report",
        description="Train and evaluate the lab's denoising autoencoder on Fashion-MNIST and "
        "render its report (HTML + PDF) and executed notebook.",
    )
    main.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser("build", help="train, evaluate and write a new report run")
    build.add_argument(
        "--profile", choices=list(PROFILES), default="full",
        help="full: exactly the lab (default); quick: a few thousand images, 2 epochs",
    )  # fmt: skip
    build.add_argument("--config", type=Path, metavar="FILE.toml", help="settings in TOML")
    build.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
        help="override one setting, e.g. --set training.epochs=5 (repeatable)",
    )  # fmt: skip
    build.add_argument(
        "--data-dir", type=Path,
        help="folder with the four Fashion-MNIST .gz files (default: $DAE_DATA_DIR, the Debian "
        "package, the Keras cache, then Keras' download)",
    )  # fmt: skip
    build.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports/)")
    build.add_argument("--debug", action="store_true", help="show tracebacks")
    return main




def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)  # usage errors exit with code 2, as bad input
    try:
        config = load_config(arguments.profile, arguments.config, arguments.overrides)
        from pipeline.build import build

        build(config=config, out_dir=arguments.out, data_dir=arguments.data_dir)
    except DaeReportError as error:
        if arguments.debug:
            traceback.print_exc()
        print(f"dae-report: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("dae-report: interrupted", file=sys.stderr)
        return 3
    except Exception as error:  # a bug or an unforeseen failure: still one line, still exit 3
        if arguments.debug:
            traceback.print_exc()
        print(f"dae-report: error: {type(error).__name__}: {error} (--debug shows the traceback)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
