"""CLI tests: arguments reach `build`, and errors become one line and the right exit code."""

from pathlib import Path

import pytest

from pipeline import cli
from pipeline.errors import DataError, QualityRegression, RunError


@pytest.fixture
def build_calls(monkeypatch):
    calls = []
    monkeypatch.setattr("pipeline.build.build", lambda **kwargs: calls.append(kwargs))
    return calls


def test_build_gets_the_resolved_config_and_paths(build_calls, tmp_path):
    code = cli.main(
        ["build", "--profile", "quick", "--set", "noise.std=0.3", "--set", "seed=9",
         "--data-dir", "data", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    (call,) = build_calls
    assert call["config"].profile == "quick"
    assert call["config"].noise.std == 0.3 and call["config"].seed == 9
    # relative paths reach the library absolute, against the folder the command ran in
    assert call["data_dir"] == Path.cwd() / "data" and call["out_dir"] == tmp_path
    assert call["handout"] is False


def test_lang_and_handout_options(build_calls):
    assert cli.main(["build", "--lang", "en", "--handout"]) == 0
    (call,) = build_calls
    assert call["config"].report.lang == "en" and call["handout"] is True


def test_handout_command(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("pipeline.build.handout", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["handout", "--lang", "en", "--set", "report.course=IA", "--out", str(tmp_path)]) == 0
    (call,) = calls
    assert call["config"].report.lang == "en" and call["config"].report.course == "IA"
    assert call["out_dir"] == tmp_path


def test_defaults(build_calls):
    assert cli.main(["build"]) == 0
    (call,) = build_calls
    assert call["config"].profile == "full" and call["out_dir"] == Path.cwd() / "reports"
    assert call["data_dir"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--set", "training.epochs=0"], "training.epochs = 0 is out of range"),
        (["build", "--set", "noise.sdt=1"], "unknown config key 'noise.sdt'"),
        (["build", "--config", "/nonexistent.toml"], "config file not found"),
        (["build", "--lang", "en", "--set", "report.lang=es"], "conflicting options: --lang en and --set report.lang=es"),
        (["build", "--set", "report.lang=fr"], "report.lang = 'fr' is not one of: es, en"),
        (["build", "--set", "report.logo=/nonexistent/logo.png"], "report.logo: file not found"),
    ],
)
def test_bad_config_exits_2_before_any_work(build_calls, capsys, argv, message):
    assert cli.main(argv) == 2
    assert build_calls == []
    error = capsys.readouterr().err
    assert error.startswith("dae-report: error: ") and message in error
    assert error.count("\n") == 1 and "Traceback" not in error


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["build", "--profile", "huge"])
    assert raised.value.code == 2


@pytest.mark.parametrize(
    "error, code", [(DataError("bad file"), 2), (RunError("cell failed"), 3), (QualityRegression("worse"), 1)]
)
def test_known_errors_map_to_their_exit_codes(monkeypatch, capsys, error, code):
    def fail(**kwargs):
        raise error

    monkeypatch.setattr("pipeline.build.build", fail)
    assert cli.main(["build"]) == code
    assert capsys.readouterr().err == f"dae-report: error: {error}\n"


def test_unexpected_errors_are_one_line_and_exit_3(monkeypatch, capsys):
    def fail(**kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("pipeline.build.build", fail)
    assert cli.main(["build"]) == 3
    err = capsys.readouterr().err
    assert err == "dae-report: error: ZeroDivisionError: boom (--debug shows the traceback)\n"


def test_bad_data_exits_2_and_writes_no_run(tmp_path, capsys):
    out = tmp_path / "reports"
    code = cli.main(["build", "--profile", "quick", "--data-dir", str(tmp_path / "missing"), "--out", str(out)])
    assert code == 2
    assert "data folder" in capsys.readouterr().err
    assert not out.exists()


def test_data_limit_beyond_the_data_exits_2(tmp_path, capsys):
    from tests.conftest import SUBSET_DIR

    out = tmp_path / "reports"
    code = cli.main(
        ["build", "--profile", "quick", "--set", "data.train_limit=5000",
         "--data-dir", str(SUBSET_DIR), "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    assert "data.train_limit = 5000 but the train set has 4000 images" in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    from tests.conftest import SUBSET_DIR

    out = tmp_path / "reports"
    out.write_text("")
    code = cli.main(["build", "--profile", "quick", "--data-dir", str(SUBSET_DIR), "--out", str(out)])
    assert code == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_module_entry_point_runs():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "build" in result.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("data.test_limit=1", "data.test_limit = 1 leaves no test image of T-shirt/top, Trouser,"),
        ("data.train_limit=9", "split.val_fraction = 0.1 leaves 0 of 9 training images for validation"),
    ],
)
def test_a_limit_the_report_cannot_use_exits_2_before_any_work(tmp_path, capsys, setting, message):
    from tests.conftest import SUBSET_DIR

    out = tmp_path / "reports"
    code = cli.main(["build", "--profile", "quick", "--set", setting, "--data-dir", str(SUBSET_DIR), "--out", str(out)])
    assert code == 2
    error = capsys.readouterr().err.splitlines()
    assert message in error[-1] and error[-1].startswith("dae-report: error: ")
    assert not out.exists()
