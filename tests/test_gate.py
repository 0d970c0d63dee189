import json

import pytest

from pipeline import gate
from pipeline.config import MaxRegression
from pipeline.errors import ConfigError


def metrics(mse=0.0118, psnr=19.3, ssim=0.80, val_loss=0.278, median=0.0106):
    return {
        "reconstruction": {
            "mse": {"mean": mse, "median": median},
            "psnr_of_mean_mse": psnr,
            "ssim": {"mean": ssim},
        },
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


@pytest.mark.parametrize(
    "now, verdicts",
    [
        (metrics(), ["same"] * 5),
        (
            metrics(mse=0.0125, median=0.0100, psnr=19.2, ssim=0.81, val_loss=0.279),
            ["regressed", "better", "worse_within_threshold", "better", "worse_within_threshold"],
        ),
        (metrics(psnr=19.4, ssim=0.70), ["same", "same", "better", "regressed", "same"]),
    ],
)
def test_each_row_has_its_verdict(now, verdicts):
    """Lower is better for MSE and val_loss, higher for PSNR and SSIM; past the threshold is a
    regression, whichever the direction."""
    rows = gate.compare(now, metrics(), MaxRegression(), "earlier")["rows"]
    assert [row["verdict"] for row in rows] == verdicts


@pytest.mark.parametrize(
    "change, better, regressed, expected",
    [
        (0.0, "lower", False, "same"),
        (-0.1, "lower", False, "better"),
        (0.1, "lower", False, "worse_within_threshold"),
        (0.1, "higher", False, "better"),
        (-0.1, "higher", False, "worse_within_threshold"),
        (-0.1, "higher", True, "regressed"),
    ],
)
def test_verdict(change, better, regressed, expected):
    assert gate.verdict(change, better, regressed) == expected


def test_a_run_from_before_the_rename_is_still_a_baseline(tmp_path):
    """metrics.json of an earlier version says "evaluation" (now "reconstruction") and
    "quality" (now "error_analysis"): the first build after an upgrade compares with it."""
    old = metrics()
    old["evaluation"] = old.pop("reconstruction")
    old["quality"] = {"sharpness": 0.6}
    run = tmp_path / "20260101-000000-quick"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(old), encoding="utf-8")
    loaded, name = gate.load_baseline(run)
    assert name == run.name and "evaluation" not in loaded and "quality" not in loaded
    assert loaded["reconstruction"] == metrics()["reconstruction"]
    assert loaded["error_analysis"] == {"sharpness": 0.6}
    assert gate.compare(metrics(), loaded, MaxRegression(), name)["regressions"] == []
    assert gate.upgrade(metrics()) == metrics()  # today's metrics are left as they are


def test_thresholds_come_from_config():
    loose = MaxRegression(psnr_db=1.0)
    assert gate.compare(metrics(psnr=18.9), metrics(), loose, "x")["regressions"] == []


def _run(
    folder, name, status="finished", profile="quick", regressions=(), finished="2026-01-01T00:00:00"
):
    run = folder / name
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "status": status,
                "profile": profile,
                "regressions": list(regressions),
                "finished": finished,
            }
        ),
        encoding="utf-8",
    )
    (run / "metrics.json").write_text(json.dumps(metrics()), encoding="utf-8")
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
    (tmp_path / "other.json").write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a dae-report metrics.json"):
        gate.load_baseline(tmp_path / "other.json")


def test_the_schema_is_valid_accepts_a_real_run_and_requires_every_headline():
    """Hostile baselines are in tests/test_errors.py; here, what the schema must let through."""
    import jsonschema

    from tests.conftest import RUN_SAMPLE_DIR

    jsonschema.Draft202012Validator.check_schema(gate.metrics_schema())
    assert gate.load_baseline(RUN_SAMPLE_DIR)[1] == "run"
    for _name, path, *_ in gate.HEADLINES:  # remove any one headline: refused, naming it
        broken = metrics()
        table = broken
        for part in path[:-2] if path[-1] == -1 else path[:-1]:
            table = table[part]
        del table[path[-2] if path[-1] == -1 else path[-1]]
        with pytest.raises(ConfigError, match="is a required property"):
            gate._parse_metrics(json.dumps(broken).encode(), "x")


def test_default_baseline_is_a_finished_build_never_a_compare_or_a_broken_run(tmp_path):
    """`dae-report compare` and `build` share reports/: a comparison (whose run.json says the
    same profile) must not become the gate's baseline, nor may a failed or damaged run. The
    newest valid build wins even when every other run is newer."""
    build = _run(tmp_path, "20260101-000000-quick", finished="2026-01-01T00:00:00")
    json_of = lambda run: json.loads((run / "run.json").read_text(encoding="utf-8"))  # noqa: E731
    record = {**json_of(build), "command": "build"}
    (build / "run.json").write_text(json.dumps(record), encoding="utf-8")
    comparison = _run(tmp_path, "20260102-000000-compare", finished="2026-01-02T00:00:00")
    (comparison / "run.json").write_text(
        json.dumps({**json_of(comparison), "command": "compare"}), encoding="utf-8"
    )
    (comparison / "metrics.json").write_text(
        json.dumps({"models": [{"name": "lab"}]}), encoding="utf-8"
    )
    # A comparison written before run.json named its command: its metrics give it away.
    old_comparison = _run(tmp_path, "20260103-000000-compare", finished="2026-01-03T00:00:00")
    (old_comparison / "metrics.json").write_text(json.dumps({"models": []}), encoding="utf-8")
    _run(tmp_path, "20260104-000000-quick", status="failed", finished="2026-01-04T00:00:00")
    for name, run_json in [
        ("a", "{not json"),
        ("b", "[]"),
        ("c", '{"status": "finished", "profile": "quick", "finished": 5}'),
        ("d", '"finished"'),
    ]:
        _run(tmp_path, f"20260105-00000{name}-quick", finished="2026-01-05T00:00:00")
        (tmp_path / f"20260105-00000{name}-quick" / "run.json").write_text(
            run_json, encoding="utf-8"
        )
    bad_metrics = _run(tmp_path, "20260106-000000-quick", finished="2026-01-06T00:00:00")
    (bad_metrics / "metrics.json").write_text('{"evaluation": ', encoding="utf-8")
    (tmp_path / "20260107-000000-quick").mkdir()  # still running, no run.json yet
    (tmp_path / "20260107-000000-quick" / "run.json").mkdir()  # not even a file
    assert gate.find_baseline(tmp_path, "quick", exclude=tmp_path / "current") == build
    assert gate.default_baseline(tmp_path, "quick", exclude=tmp_path / "current") == (
        metrics(),
        build.name,
    )
    # A build's run.json before `command` existed still counts, if its metrics are a build's.
    (build / "run.json").write_text(
        json.dumps({key: value for key, value in record.items() if key != "command"}),
        encoding="utf-8",
    )
    assert gate.find_baseline(tmp_path, "quick", exclude=tmp_path / "current") == build
    (build / "metrics.json").write_text(json.dumps({"models": []}), encoding="utf-8")
    assert gate.find_baseline(tmp_path, "quick", exclude=tmp_path / "current") is None
    assert gate.default_baseline(tmp_path, "quick", exclude=tmp_path / "current") is None


def test_latest_is_never_a_baseline_of_its_own(tmp_path):
    """reports/latest is a link to a run already in the folder, or (restored from a CI artifact)
    a copy of one: either way it is not a run to compare with under the name "latest"."""
    _run(tmp_path, "latest", finished="2026-01-02T00:00:00")
    run = _run(tmp_path, "20260101-000000-quick", finished="2026-01-01T00:00:00")
    assert gate.find_baseline(tmp_path, "quick", exclude=tmp_path / "current") == run
