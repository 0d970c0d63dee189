"""CLI tests: options reach a real run, and errors become one line and the right exit code."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

from pipeline import cli
from pipeline.config import load_config
from pipeline.errors import DataError, QualityRegression, RunError
from tests.conftest import DAE_REPORT, SUBSET_DIR, TINY, assert_finished, dae_report, interruptible


@pytest.fixture
def build_calls(monkeypatch):
    """`build` replaced by a recorder, for tests of what must stop before it: should a check
    regress, the test fails instead of training the full lab in the current folder."""
    calls = []
    monkeypatch.setattr("pipeline.build.build", lambda **kwargs: calls.append(kwargs))
    return calls


def _stopped_early(*arguments: str, cwd: Path, env: dict | None = None) -> tuple[Path, dict, str]:
    """`dae-report build ARGUMENTS` typed in `cwd`, interrupted (Ctrl-C's SIGINT) when the notebook
    stage starts, config.json written: what the command resolved, without training anything.
    Returns the run folder, its config.json and what the terminal showed."""
    environment = {key: value for key, value in os.environ.items() if key != "DAE_DATA_DIR"}
    process = subprocess.Popen(
        [str(DAE_REPORT), "build", *arguments],
        cwd=cwd,
        env={**environment, **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,
        preexec_fn=interruptible,
    )
    shown = []
    for line in process.stderr:
        shown.append(line)
        if "] notebook " in line:
            break
    process.send_signal(signal.SIGINT)
    shown.append(process.communicate(timeout=120)[1])
    shown = "".join(shown)
    assert process.returncode == 3 and shown.endswith("\ndae-report: interrupted\n"), shown
    (run,) = (line.split("run folder ")[1] for line in shown.splitlines() if "run folder " in line)
    return Path(run), json.loads((Path(run) / "config.json").read_text(encoding="utf-8")), shown


def test_build_without_options_is_the_full_lab_into_reports_with_the_data_lookup(tmp_path):
    """`dae-report build` alone: profile full (the lab: every image, 20 epochs), no handout,
    run folders in ./reports, data found by the lookup (here its first place, $DAE_DATA_DIR)."""
    run, config, shown = _stopped_early(cwd=tmp_path, env={"DAE_DATA_DIR": str(SUBSET_DIR)})
    assert run.parent == tmp_path / "reports" and run.name.endswith("-full")
    assert config == load_config("full").to_dict()
    assert config["data"] == {"train_limit": None, "test_limit": None}
    assert config["training"]["epochs"] == 20
    assert f"[1/5] data     {SUBSET_DIR} (verified)" in shown  # five stages: no handout


def test_build_settings_and_folders_reach_the_run(tmp_path):
    """--profile, --set, --data-dir and --out: in config.json, the data stage, the run folder."""
    shutil.copytree(SUBSET_DIR, tmp_path / "data")
    run, config, shown = _stopped_early(
        "--profile",
        "quick",
        "--set",
        "noise.std=0.3",
        "--set",
        "seed=9",
        "--data-dir",
        "data",
        "--out",
        "out",
        cwd=tmp_path,
    )
    assert run.parent == tmp_path / "out" and run.name.endswith("-quick")
    assert config["profile"] == "quick" and config["noise"]["std"] == 0.3 and config["seed"] == 9
    assert f"[1/5] data     {tmp_path / 'data'} (verified)" in shown


def test_lang_en_and_handout_reach_a_real_build(tmp_path):
    """The wiring of --lang and --handout (test_i18n checks the English content)."""
    result = dae_report(
        "build", *TINY, "--lang", "en", "--handout", "--data-dir", str(SUBSET_DIR), cwd=tmp_path
    )
    run = assert_finished(tmp_path / "reports", result)
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["report"]["lang"] == "en"
    assert "[6/6] handout  handout.ipynb, handout.pdf" in result.stderr
    student = nbformat.read(run / "handout.ipynb", as_version=4)
    assert "# YOUR CODE HERE" in [cell.source for cell in student.cells]
    assert (run / "handout.pdf").read_bytes().startswith(b"%PDF")


def test_handout_command_writes_the_english_handout_with_the_course(tmp_path):
    result = dae_report(
        "handout", "--lang", "en", "--set", "report.course=IA", "--out", "out", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "handout.ipynb",
        "handout.pdf",
        "nbgrader-source.ipynb",
    ]
    student = nbformat.read(out / "handout.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in student.cells)
    assert "## Section 1 – Loading and exploring" in text and "# YOUR CODE HERE" in text
    assert "Sección" not in text and "TU CÓDIGO" not in text
    pages = [page.extract_text() for page in PdfReader(out / "handout.pdf").pages]
    assert "Course IA" in pages[0] and "Lab: student handout" in pages[0]
    assert "# YOUR CODE HERE" in pages[1] and not any("Sección" in page for page in pages)


def test_debug_adds_the_traceback_to_the_one_line_error(subset_copy, tmp_path):
    """README: errors are one line on stderr, `--debug` adds the traceback."""
    (subset_copy / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    arguments = ["build", *TINY, "--data-dir", str(subset_copy)]
    plain = dae_report(*arguments, cwd=tmp_path)
    debug = dae_report(*arguments, "--debug", cwd=tmp_path)
    for result in (plain, debug):
        assert result.returncode == 2
        last = result.stderr.splitlines()[-1]
        assert last.startswith("dae-report: error: ") and "is not a valid gzip file" in last
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert debug.stderr.startswith("Traceback (most recent call last):\n"), debug.stderr
    assert 'pipeline/data.py", line' in debug.stderr  # where the error was raised


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--set", "training.epochs=0"], "training.epochs = 0 is out of range"),
        (["build", "--set", "noise.sdt=1"], "unknown config key 'noise.sdt'"),
        (["build", "--config", "/nonexistent.toml"], "config file not found"),
        (
            ["build", "--lang", "en", "--set", "report.lang=es"],
            "conflicting options: --lang en and --set report.lang=es",
        ),
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


def test_compare_offers_every_model_the_package_builds(capsys):
    """--models takes its names from the config's list, which must be pipeline.model's."""
    from pipeline import model

    assert cli.MODEL_NAMES == tuple(model.BUILDERS)
    assert cli.parser().parse_args(["compare"]).models == list(model.BUILDERS)
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["compare", "--models", "lab,vgg"])
    assert "unknown model 'vgg' (choose from lab, residual, unet)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, code",
    [(DataError("bad file"), 2), (RunError("cell failed"), 3), (QualityRegression("worse"), 1)],
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
    code = cli.main(
        ["build", "--profile", "quick", "--data-dir", str(tmp_path / "missing"), "--out", str(out)]
    )
    assert code == 2
    assert "data folder" in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    out = tmp_path / "reports"
    out.write_text("", encoding="utf-8")
    code = cli.main(
        ["build", "--profile", "quick", "--data-dir", str(SUBSET_DIR), "--out", str(out)]
    )
    assert code == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert result.returncode == 0 and "build" in result.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("data.train_limit=5000", "data.train_limit = 5000 but the train set has 4000 images"),
        ("data.test_limit=1", "data.test_limit = 1 leaves no test image of T-shirt/top, Trouser,"),
        (
            "data.train_limit=9",
            "split.val_fraction = 0.1 leaves 0 of 9 training images for validation",
        ),
    ],
)
def test_a_limit_the_report_cannot_use_exits_2_before_any_work(tmp_path, capsys, setting, message):
    out = tmp_path / "reports"
    code = cli.main(
        [
            "build",
            "--profile",
            "quick",
            "--set",
            setting,
            "--data-dir",
            str(SUBSET_DIR),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err.splitlines()
    assert message in error[-1] and error[-1].startswith("dae-report: error: ")
    assert not out.exists()
