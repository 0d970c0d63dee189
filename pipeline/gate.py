"""Compare a run's headline metrics with an earlier run's, and gate on regressions."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import artifacts
from pipeline.config import MaxRegression
from pipeline.errors import ConfigError

# (name, where in metrics.json, better when "lower" or "higher", threshold field, relative?)
HEADLINES = (
    ("mse_mean", ("reconstruction", "mse", "mean"), "lower", "mse_relative", True),
    ("mse_median", ("reconstruction", "mse", "median"), "lower", "mse_relative", True),
    ("psnr_db", ("reconstruction", "psnr_of_mean_mse"), "higher", "psnr_db", False),
    ("ssim_mean", ("reconstruction", "ssim", "mean"), "higher", "ssim", False),
    ("final_val_loss", ("training", "val_loss", -1), "lower", "val_loss_relative", True),
)

# metrics.json's top-level keys as earlier versions wrote them → as they are now, so that the
# first build after an upgrade still compares with the last build before it.
RENAMED_KEYS = {"evaluation": "reconstruction", "quality": "error_analysis"}


def upgrade(metrics):
    """An earlier version's metrics.json in today's terms: its old top-level keys renamed
    (RENAMED_KEYS). Today's, and anything that is not a JSON object, come back unchanged."""
    if isinstance(metrics, dict):
        for old, new in RENAMED_KEYS.items():
            if old in metrics and new not in metrics:
                metrics[new] = metrics.pop(old)
    return metrics


def _get(metrics: dict, path: tuple):
    value = metrics
    for part in path:
        value = value[part]
    return value


def headlines(metrics: dict) -> dict[str, float]:
    """The headline metrics by name (HEADLINES' order): what the gate compares, and what a
    class set lists per variant."""
    return {name: float(_get(metrics, path)) for name, path, *_ in HEADLINES}


def verdict(change: float, better: str, regressed: bool) -> str:
    """One row's state: "regressed" (worse past its threshold), "same", "better" or
    "worse_within_threshold". `better` is "lower" or "higher": which way is an improvement."""
    if regressed:
        return "regressed"
    if change == 0:
        return "same"
    if (change < 0) == (better == "lower"):
        return "better"
    return "worse_within_threshold"


def compare(current: dict, baseline: dict, thresholds: MaxRegression, baseline_name: str) -> dict:
    """Each headline metric now and before, its change, whether it regressed past its
    threshold (relative thresholds are fractions of the earlier value), and its verdict."""
    rows = []
    for name, path, better, threshold_name, relative in HEADLINES:
        now, before = float(_get(current, path)), float(_get(baseline, path))
        change = now - before
        worse = change if better == "lower" else -change  # > 0 means worse
        allowed = getattr(thresholds, threshold_name)
        limit = allowed * abs(before) if relative else allowed
        regressed = worse > limit
        rows.append(
            {
                "name": name,
                "before": before,
                "now": now,
                "change": change,
                "relative_change": change / before if before else None,
                "better": better,
                "threshold": allowed,
                "relative_threshold": relative,
                "regressed": regressed,
                "verdict": verdict(change, better, regressed),
            }
        )
    return {
        "baseline": baseline_name,
        "rows": rows,
        "regressions": [row["name"] for row in rows if row["regressed"]],
    }


def find_baseline(out_dir: Path, profile: str, exclude: Path) -> Path | None:
    """The newest finished build of the same profile that passed its quality gate."""
    found = _newest_build(out_dir, profile, exclude)
    return found[0] if found else None


def default_baseline(out_dir: Path, profile: str, exclude: Path) -> tuple[dict, str] | None:
    """find_baseline's run, loaded: (its metrics, its name), or None if there is none."""
    found = _newest_build(out_dir, profile, exclude)
    return found[1] if found else None


def _newest_build(
    out_dir: Path, profile: str, exclude: Path
) -> tuple[Path, tuple[dict, str]] | None:
    """Only a `build` is a baseline: `compare` shares reports/ (and writes the same profile in
    its run.json), and a failed, running or damaged run has nothing to compare with. Such runs
    are skipped, never an error: the user did not name them. A build's run.json from before
    "command" was recorded counts if its metrics.json is a build's."""
    candidates = []
    for record_path in Path(out_dir).glob(f"*/{artifacts.RUN_RECORD}"):
        run_dir = record_path.parent
        # reports/latest, a link to a run here or a copy of one, is not a run of its own
        if run_dir.name == artifacts.LATEST or run_dir.name.startswith(".") or run_dir.is_symlink():
            continue
        if run_dir.resolve() == Path(exclude).resolve() or not record_path.is_file():  # no FIFO
            continue
        try:
            record = artifacts.read_json(record_path)
        except (OSError, ValueError, RecursionError):
            continue
        if (
            isinstance(record, dict)
            and record.get("command", "build") == "build"
            and record.get("status") == "finished"
            and record.get("profile") == profile
            and not record.get("regressions")
            and isinstance(record.get("finished"), str)
        ):
            candidates.append((record["finished"], run_dir))
    for _finished, run_dir in sorted(candidates, reverse=True):
        try:
            return run_dir, load_baseline(run_dir)
        except Exception:  # whatever is wrong with its metrics.json, the next run may do
            continue
    return None


METRICS_MAX_BYTES = 16 * 2**20  # a build's metrics.json is some 30 kB; 16 MiB is not one
FINITE = {"type": "number", "minimum": -1e308, "maximum": 1e308, "description": "a finite number"}


def metrics_schema() -> dict:
    """The JSON Schema of metrics.json as far as the gate reads it, made from HEADLINES so the
    two cannot differ: each headline a finite number (a non-empty list of them for a per-epoch
    history, index -1), inside JSON objects. The bounds also refuse a 400-digit integer, which
    no float holds."""
    schema = {"type": "object", "description": "a JSON object"}
    for _name, path, *_ in HEADLINES:
        node = schema
        for position, part in enumerate(path):
            if part == -1:  # the last of a list: all of it must be numbers
                node.update(
                    type="array",
                    minItems=1,
                    items=FINITE,
                    description="a non-empty list of finite numbers",
                )
                break
            if part not in node.setdefault("required", []):
                node["required"].append(part)
            last = position == len(path) - 1
            node = node.setdefault("properties", {}).setdefault(
                part, dict(FINITE) if last else {"type": "object", "description": "a JSON object"}
            )
    return schema


def load_baseline(reference: str | Path) -> tuple[dict, str]:
    """--compare-to: a run folder or a metrics.json file -> (metrics, its name), checked in
    full against metrics_schema() before any work, so that comparing cannot fail after the run.
    Whatever else the file holds (a FIFO, NaN, 100 000 nested lists, strings) is a ConfigError
    of one line naming it."""
    path = Path(reference)
    metrics_path = path / artifacts.METRICS if path.is_dir() else path
    try:
        content = artifacts.read_regular(
            metrics_path, "--compare-to", ConfigError, METRICS_MAX_BYTES
        )
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"--compare-to {reference}: no metrics.json there") from None
    except OSError as error:
        reason = error.strerror or error
        raise ConfigError(
            f"--compare-to {reference}: cannot read {metrics_path}: {reason}"
        ) from None
    metrics = _parse_metrics(content, reference)
    # reports/latest is named by the run it points at: "latest" changes meaning with every build
    run_dir = metrics_path.resolve().parent
    name = run_dir.name if path.is_dir() or metrics_path.name == artifacts.METRICS else str(path)
    return metrics, name


def _parse_metrics(content: bytes, reference: str | Path) -> dict:
    import jsonschema

    def problem(detail: str) -> ConfigError:
        return ConfigError(f"--compare-to {reference}: not a dae-report metrics.json ({detail})")

    def refuse_constant(name: str):  # NaN, Infinity, -Infinity: JSON has no such numbers
        raise problem(f"it holds {name}, not a finite number")

    try:
        metrics = json.loads(content.decode("utf-8"), parse_constant=refuse_constant)
    except UnicodeDecodeError:
        raise problem("it is not UTF-8 text") from None
    except RecursionError:
        raise problem("nested too deeply") from None
    except json.JSONDecodeError as error:
        raise problem(f"not JSON: {error}") from None
    except ValueError:  # an integer of more than 4300 digits, past Python's conversion limit
        raise problem("a number in it has thousands of digits") from None
    metrics = upgrade(metrics)  # a run from before the keys were renamed is still a baseline
    validator = jsonschema.Draft202012Validator(metrics_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(metrics))
    if error is not None and error.validator == "required":
        raise problem(f"{error.json_path}: {error.message}")
    if error is not None:
        expected = error.schema["description"]
        raise problem(f"{error.json_path} must be {expected}, got {_short(error.instance)}")
    return metrics


def _short(value) -> str:
    """A value as JSON, cut to 40 characters: a message stays one short line."""
    text = json.dumps(value, ensure_ascii=True)  # Infinity for inf; no control characters
    return text if len(text) <= 40 else text[:39] + "…"
