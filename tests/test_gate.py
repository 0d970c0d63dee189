import json

import pytest

from pipeline import gate
from pipeline.config import MaxRegression
from pipeline.errors import ConfigError


def metrics(mse=0.0118, psnr=19.3, ssim=0.80, val_loss=0.278, median=0.0106):
    return {
        "evaluation": {"mse": {"mean": mse, "median": median}, "psnr_of_mean_mse": psnr, "ssim": {"mean": ssim}},
        "training": {"val_loss": [0.3, val_loss]},
    }


def test_unchanged_run_has_no_regression():
    result = gate.compare(metrics(), metrics(), MaxRegression(), "earlier")
    assert result["regressions"] == [] and result["baseline"] == "earlier"
    assert all(row["change"] == 0 for row in result["rows"])


@pytest.mark.parametrize(
    "now, regressed",
    [
        (metrics(psnr=19.1), []),  # 0.2 dB lost: within 0.3
        (metrics(psnr=18.9), ["psnr_db"]),  # 0.4 dB lost
        (metrics(psnr=25.0), []),  # better is never a regression
        (metrics(mse=0.0125), ["mse_mean"]),  # +5.9 %
        (metrics(mse=0.0120), []),  # +1.7 %
        (metrics(ssim=0.78), ["ssim_mean"]),
        (metrics(val_loss=0.29), ["final_val_loss"]),
    ],
)
def test_thresholds(now, regressed):
    assert gate.compare(now, metrics(), MaxRegression(), "earlier")["regressions"] == regressed


def test_thresholds_come_from_config():
    loose = MaxRegression(psnr_db=1.0)
    assert gate.compare(metrics(psnr=18.9), metrics(), loose, "x")["regressions"] == []


def _run(folder, name, status="finished", profile="quick", regressions=(), finished="2026-01-01T00:00:00"):
    run = folder / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": status, "profile": profile, "regressions": list(regressions), "finished": finished}))
    (run / "metrics.json").write_text(json.dumps(metrics()))
    return run


def test_default_baseline_is_the_newest_passing_finished_run_of_the_profile(tmp_path):
    old = _run(tmp_path, "a", finished="2026-01-01T00:00:00")
    _run(tmp_path, "b", status="failed", finished="2026-01-03T00:00:00")
    _run(tmp_path, "c", profile="full", finished="2026-01-04T00:00:00")
    _run(tmp_path, "d", regressions=["psnr_db"], finished="2026-01-05T00:00:00")
    newer = _run(tmp_path, "e", finished="2026-01-02T00:00:00")
    current = _run(tmp_path, "f", status="running", finished="2026-01-06T00:00:00")
    assert gate.find_baseline(tmp_path, "quick", exclude=current) == newer
    assert gate.find_baseline(tmp_path, "quick", exclude=newer) == old
    assert gate.find_baseline(tmp_path, "full", exclude=current).name == "c"


def test_load_baseline_from_run_folder_or_file(tmp_path):
    run = _run(tmp_path, "20260101-000000-quick")
    assert gate.load_baseline(run)[1] == "20260101-000000-quick"
    assert gate.load_baseline(run / "metrics.json")[0] == metrics()
    with pytest.raises(ConfigError, match="no metrics.json there"):
        gate.load_baseline(tmp_path / "missing")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="not a dae-report metrics.json"):
        gate.load_baseline(tmp_path / "other.json")
