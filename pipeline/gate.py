"""Compare a run's headline metrics with an earlier run's, and gate on regressions."""

from __future__ import annotations

from pathlib import Path

from pipeline import artifacts
from pipeline.config import MaxRegression
from pipeline.errors import ConfigError

# (name, where in metrics.json, better when "lower" or "higher", threshold field, relative?)
HEADLINES = (
    ("mse_mean", ("evaluation", "mse", "mean"), "lower", "mse_relative", True),
    ("mse_median", ("evaluation", "mse", "median"), "lower", "mse_relative", True),
    ("psnr_db", ("evaluation", "psnr_of_mean_mse"), "higher", "psnr_db", False),
    ("ssim_mean", ("evaluation", "ssim", "mean"), "higher", "ssim", False),
    ("final_val_loss", ("training", "val_loss", -1), "lower", "val_loss_relative", True),
)


def _get(metrics: dict, path: tuple):
    value = metrics
    for part in path:
        value = value[part]
    return value


def compare(current: dict, baseline: dict, thresholds: MaxRegression, baseline_name: str) -> dict:
    """Each headline metric now and before, its change, and whether it regressed past its
    threshold (relative thresholds are fractions of the earlier value)."""
    rows = []
    for name, path, better, threshold_name, relative in HEADLINES:
        now, before = float(_get(current, path)), float(_get(baseline, path))
        change = now - before
        worse = change if better == "lower" else -change  # > 0 means worse
        allowed = getattr(thresholds, threshold_name)
        limit = allowed * abs(before) if relative else allowed
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
                "regressed": worse > limit,
            }
        )
    return {
        "baseline": baseline_name,
        "rows": rows,
        "regressions": [row["name"] for row in rows if row["regressed"]],
    }


def find_baseline(out_dir: Path, profile: str, exclude: Path) -> Path | None:
    """The newest finished run of the same profile that passed its quality gate."""
    candidates = []
    for record_path in Path(out_dir).glob(f"*/{artifacts.RUN_RECORD}"):
        run_dir = record_path.parent
        if run_dir.is_symlink() or run_dir.resolve() == exclude.resolve():  # skip reports/latest
            continue
        try:
            record = artifacts.read_json(record_path)
        except (OSError, ValueError):
            continue
        if record.get("status") == "finished" and record.get("profile") == profile and not record.get("regressions"):
            candidates.append((record.get("finished", ""), run_dir))
    return max(candidates)[1] if candidates else None


def load_baseline(reference: str | Path) -> tuple[dict, str]:
    """--compare-to: a run folder or a metrics.json file -> (metrics, its name)."""
    path = Path(reference)
    metrics_path = path / artifacts.METRICS if path.is_dir() else path
    try:
        metrics = artifacts.read_json(metrics_path)
        for _name, headline, *_ in HEADLINES:
            _get(metrics, headline)
    except FileNotFoundError:
        raise ConfigError(f"--compare-to {reference}: no metrics.json there") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"--compare-to {reference}: not a dae-report metrics.json") from None
    # reports/latest is named by the run it points at: "latest" changes meaning with every build
    run_dir = metrics_path.resolve().parent
    name = run_dir.name if path.is_dir() or metrics_path.name == artifacts.METRICS else str(path)
    return metrics, name
