"""Command line: parse, build the config, call one library function, map errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from pipeline import __version__, stops
from pipeline.config import LANGUAGES, MODEL_LOSSES, PROFILES, absolute, load_config
from pipeline.data import DATA_DIR_ENV
from pipeline.errors import ConfigError, DaeReportError
from pipeline.progress import settle_standard_streams, terminal

DEFAULT_OUT = Path("reports")
# The models `model.name` and `compare --models` accept: pipeline.model.BUILDERS has the same
# keys, but importing it imports TensorFlow (seconds), which the command line must not wait for.
MODEL_NAMES = tuple(MODEL_LOSSES)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="dae-report",
        description="Train and evaluate the lab's denoising autoencoder on Fashion-MNIST and "
        "render its report (HTML + PDF), executed notebook and student handout.",
    )
    main.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings = _settings_options()
    _add_build(commands, settings)
    _add_compare(commands, settings)
    handout = commands.add_parser(
        "handout", parents=[settings], help="write the student handout (notebook + PDF) only"
    )
    handout.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT / "handout",
        help="folder (default: reports/handout/)",
    )
    _add_cache(commands)
    _add_batch(commands)
    _add_history(commands)
    return main


def _settings_options() -> argparse.ArgumentParser:
    """The options of every command that makes a config: --config, --set, --lang, --debug."""
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument("--config", type=Path, metavar="FILE.toml", help="settings in TOML")
    settings.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help="override one setting, e.g. --set training.epochs=5 (repeatable)",
    )
    settings.add_argument(
        "--lang", choices=LANGUAGES, help="language of everything written (report.lang)"
    )
    settings.add_argument("--debug", action="store_true", help="show tracebacks")
    return settings


def _add_build(commands, settings: argparse.ArgumentParser) -> None:
    build = commands.add_parser(
        "build", parents=[settings], help="train, evaluate and write a new report run"
    )
    build.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="full",
        help="full: exactly the lab (default); quick: a few thousand images, 2 epochs",
    )
    build.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the four Fashion-MNIST .gz files (default: $DAE_DATA_DIR, the Debian "
        "package, the Keras cache, then Keras' download)",
    )
    build.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports/)"
    )
    build.add_argument("--handout", action="store_true", help="also write the student handout")
    build.add_argument(
        "--retrain", action="store_true", help="train even if a cached model fits (and store it)"
    )
    build.add_argument(
        "--compare-to",
        metavar="RUN|metrics.json",
        help="compare with this run (default: the newest finished build of the same profile that "
        "passed its quality gate); a regression past quality.max_regression exits with 1",
    )
    _add_timeout(build)


def _add_compare(commands, settings: argparse.ArgumentParser) -> None:
    compare = commands.add_parser(
        "compare", parents=[settings], help="train several models on the same data and compare them"
    )
    compare.add_argument("--profile", choices=list(PROFILES), default="full", help="as for build")
    compare.add_argument(
        "--models",
        type=_models,
        default=list(MODEL_NAMES),
        metavar="A,B,...",
        help=f"models to compare: {', '.join(MODEL_NAMES)} (default: all)",
    )
    compare.add_argument(
        "--std-range",
        type=_pair,
        metavar="LOW,HIGH",
        help="also train the first model on noise levels drawn in [LOW, HIGH]",
    )
    compare.add_argument("--data-dir", type=Path, help="as for build")
    compare.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports/)"
    )
    _add_timeout(compare)


def _add_batch(commands) -> None:
    batch = commands.add_parser(
        "batch", help="a class set: each student's variant built, with handouts and class.csv"
    )
    batch.add_argument("roster", type=Path, metavar="ROSTER.csv", help="id,name[,group] per row")
    batch.add_argument("--variants", type=Path, required=True, metavar="VARIANTS.toml")
    batch.add_argument(
        "--secret-file",
        type=Path,
        metavar="FILE",
        help="the course secret that decides the draws (default: $DAE_COURSE_SECRET)",
    )
    batch.add_argument(
        "--scheduler",
        metavar="tcp://HOST:8786",
        help="an existing Dask cluster (default: $DASK_SCHEDULER_ADDRESS, else a local one)",
    )
    batch.add_argument("--data-dir", type=Path, help="as for build")
    batch.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports/)"
    )
    batch.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_timeout(batch)


def _add_timeout(command) -> None:
    command.add_argument(
        "--timeout",
        type=stops.timeout,
        metavar="SECONDS",
        help="stop after this long (or 30m, 2h, 1d) as Ctrl-C stops it: exit 3, failure.log, "
        "and the next build resumes the training",
    )


def _add_history(commands) -> None:
    """The commands that read the run folders: index, diff, prune."""
    index = commands.add_parser(
        "index", help="write reports/index.html: every run, its files and metrics over time"
    )
    prune = commands.add_parser(
        "prune", help="remove all but the N newest runs and the cache entries no remaining run uses"
    )
    prune.add_argument(
        "--keep",
        type=int,
        required=True,
        metavar="N",
        help="runs to keep, newest first (latest, each profile's gate baseline and running runs "
        "stay too)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    for command in (index, prune):
        command.add_argument(
            "--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports/)"
        )
    diff = commands.add_parser(
        "diff", help="what changed between two runs: config, headline metrics, report content"
    )
    diff.add_argument("run_a", metavar="RUN_A", type=Path, help="the earlier run (the baseline)")
    diff.add_argument(
        "run_b", metavar="RUN_B", type=Path, help="the later run, judged by its own thresholds"
    )
    diff.add_argument("--format", dest="fmt", choices=("text", "md", "json"), default="text")
    for command in (index, prune, diff):
        command.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_cache(commands) -> None:
    cache = commands.add_parser(
        "cache", help="check or empty the cache of trained models and executed notebooks"
    )
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check every cache entry against its digests; exit 3 if any cannot be used"
    )
    clear = actions.add_parser("clear", help="remove cache entries; say how much space that freed")
    clear.add_argument(
        "--older-than", type=_days, metavar="DAYS", help="only entries unchanged for DAYS days"
    )
    for action in (verify, clear):
        action.add_argument(
            "--out",
            type=Path,
            default=DEFAULT_OUT,
            help="reports folder whose .cache/ it is (default: reports/)",
        )
        action.add_argument("--debug", action="store_true", help="show tracebacks")


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)  # usage errors exit with code 2, as bad input
    # TensorFlow's C++ start-up and version-skew messages are not for the user (compare runs
    # TensorFlow in this process; builds run it in the notebook kernel, which inherits this).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        # SIGTERM (CI, systemd, Kubernetes) and --timeout end the command as Ctrl-C does.
        with stops.as_interruptions(getattr(arguments, "timeout", None)):
            _resolve_paths(arguments, Path.cwd())
            _run_command(arguments)
    except DaeReportError as error:
        if arguments.debug:
            traceback.print_exc(file=terminal())
        _say(f"dae-report: error: {error}")
        return error.exit_code
    except KeyboardInterrupt as interruption:
        _say(f"dae-report: {stops.message(interruption)}")
        return 3
    except Exception as error:  # a bug or an unforeseen failure: still one line, still exit 3
        if arguments.debug:
            traceback.print_exc(file=terminal())
        _say(f"dae-report: error: {type(error).__name__}: {error} (--debug shows the traceback)")
        return 3
    finally:
        settle_standard_streams()  # a closed pipe (`| head -1`) must not change the exit code
    return 0


def _run_command(arguments) -> None:
    """The one library call the command stands for, with the parsed options as arguments."""
    if arguments.command == "batch":  # each variant's config comes from VARIANTS.toml
        from pipeline import batch

        batch.batch(
            roster_path=arguments.roster,
            variants_path=arguments.variants,
            out_dir=arguments.out,
            data_dir=arguments.data_dir,
            secret_file=arguments.secret_file,
            scheduler=arguments.scheduler,
        )
        return
    if arguments.command in ("index", "diff", "prune"):  # they read run folders, no config
        _run_history_command(arguments)
        return
    if arguments.command == "cache":  # needs no config: it reads and removes cache entries
        from pipeline import cache

        stdout = terminal(sys.stdout)
        if arguments.action == "verify":
            cache.verify(out_dir=arguments.out, stream=stdout)
        else:
            cache.clear(out_dir=arguments.out, older_than_days=arguments.older_than, stream=stdout)
        return
    config = load_config(
        getattr(arguments, "profile", "full"),
        arguments.config,
        _overrides(arguments),
        working_dir=Path.cwd(),
    )
    from pipeline import build

    if arguments.command == "build":
        build.build(
            config=config,
            out_dir=arguments.out,
            data_dir=arguments.data_dir,
            handout=arguments.handout,
            retrain=arguments.retrain,
            compare_to=arguments.compare_to,
        )
    elif arguments.command == "compare":
        from pipeline.compare import compare_models

        compare_models(
            config=config,
            models=arguments.models,
            out_dir=arguments.out,
            data_dir=arguments.data_dir,
            std_range=arguments.std_range,
        )
    else:
        build.handout(config=config, out_dir=arguments.out)


def _run_history_command(arguments) -> None:
    stdout = terminal(sys.stdout)
    if arguments.command == "index":
        from pipeline import index

        stdout.write(f"{index.write(arguments.out)}\n")
    elif arguments.command == "diff":
        from pipeline import diff

        diff.main(run_a=arguments.run_a, run_b=arguments.run_b, fmt=arguments.fmt, stream=stdout)
    else:
        from pipeline import prune

        prune.prune(arguments.out, arguments.keep, stdout, dry_run=arguments.dry_run)


def _say(line: str) -> None:
    """One line on stderr; a reader that went away loses the line, never the exit code."""
    stderr = terminal()
    stderr.write(line + "\n")
    stderr.flush()


def _resolve_paths(arguments, working_dir: Path) -> None:
    """Every path the user gave, or that defaults to a relative one, made absolute against the
    folder the command was typed in: papermill runs the kernel inside the run folder, where a
    relative path would point somewhere else. `$DAE_DATA_DIR` counts as the user's --data-dir."""
    if getattr(arguments, "data_dir", None) is None and os.environ.get(DATA_DIR_ENV):
        arguments.data_dir = Path(os.environ[DATA_DIR_ENV])
    for name in ("out", "data_dir", "config", "compare_to", "roster", "variants", "secret_file"):
        value = getattr(arguments, name, None)
        if value is not None:
            setattr(arguments, name, absolute(value, working_dir))


def _models(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0] if unknown else text!r} "
            f"(choose from {', '.join(MODEL_NAMES)})"
        )
    return names


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= days < 1e6:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"need 0 <= DAYS < 1000000, got {text!r}")
    return days


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if not 0 < low < high <= 5:
        raise argparse.ArgumentTypeError(f"need 0 < LOW < HIGH <= 5, got {text!r}")
    return (low, high)


def _overrides(arguments) -> list[str]:
    """--set values, then the options that are shorthands for a setting."""
    overrides = list(arguments.overrides)
    if arguments.lang:
        for item in overrides:
            key, _, value = item.partition("=")
            if key.strip() == "report.lang" and value.strip().strip("\"'") != arguments.lang:
                raise ConfigError(f"conflicting options: --lang {arguments.lang} and --set {item}")
        overrides.append(f"report.lang={arguments.lang}")
    return overrides


if __name__ == "__main__":
    sys.exit(main())
