"""The progress display: a terminal that may go away (`| head -1`), and TensorFlow's stderr
kept out of it. Exit code 1 means a quality regression, never a closed pipe."""

import errno
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from pipeline import artifacts, progress
from tests.conftest import DAE_REPORT, SUBSET_DIR, TINY


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_terminal_drops_output_once_its_reader_is_gone():
    pipe = ClosedPipe()
    terminal = progress.Terminal(pipe)
    terminal.write("[1/5] data\n")
    terminal.flush()
    assert terminal.closed and terminal.write("[2/5] notebook\n") == len("[2/5] notebook\n")
    assert progress.terminal(terminal) is terminal  # every writer shares what was learnt


def test_terminal_points_a_closed_descriptor_at_devnull(tmp_path):
    """Python's advice: otherwise the bytes still buffered fail again at exit (code 120)."""
    read, write = os.pipe()
    os.close(read)
    stream = open(write, "w", buffering=1)
    terminal = progress.Terminal(stream)
    terminal.write("a line\n")
    assert terminal.closed
    stream.write("still buffered\n")
    stream.close()  # flushes into /dev/null: no BrokenPipeError


def test_a_terminal_that_hung_up_is_a_reader_gone():
    """After an SSH session drops, every write to its terminal fails with EIO."""

    class HungUp(io.StringIO):
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

    terminal = progress.Terminal(HungUp())
    terminal.write("dae-report: stopped by SIGHUP (its terminal closed)\n")
    terminal.flush()
    assert terminal.closed


def test_terminal_keeps_other_errors():
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        progress.Terminal(Full()).write("x\n")


def test_log_follower_goes_on_after_the_terminal_closes(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("1/2  loss 0.5\n", encoding="utf-8")
    with progress.LogFollower(log, ClosedPipe()) as follower:
        follower._echo()
        with log.open("a", encoding="utf-8") as file:
            file.write("2/2  loss 0.4\n")
    assert follower._offset == log.stat().st_size  # it read every line, and did not stop


def test_stderr_into_keeps_the_terminal_for_the_tools_lines(tmp_path):
    """What writes to fd 2 (TensorFlow's C++ logging) goes to the log; our lines do not."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from pipeline import progress\n"
        "stream = progress.terminal()\n"
        "with progress.StderrInto(Path(sys.argv[1]), keep=stream):\n"
        "    os.write(2, b'E0000 absl: not for the user\\n')\n"
        "    stream.write('[1/3] data  ours\\n')\n"
        "stream.write('done\\n')\n"
    )
    log = tmp_path / "kernel.log"
    result = subprocess.run(
        [sys.executable, "-c", script, str(log)], capture_output=True, encoding="utf-8", timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "[1/3] data  ours\ndone\n"
    assert log.read_text(encoding="utf-8") == "E0000 absl: not for the user\n"


def closed_pipe_run(arguments: list[str], closed: str, cwd) -> subprocess.CompletedProcess:
    """Run dae-report with stderr, or stdout and stderr together (`2>&1 | head -1`), on a pipe
    whose reader has already gone: the first line written finds it closed."""
    read, write = os.pipe()
    os.close(read)
    environment = {key: value for key, value in os.environ.items() if key != "DAE_DATA_DIR"}
    with open(cwd / "other-stream.txt", "w", encoding="utf-8") as other:
        streams = (
            {"stdout": other, "stderr": write}
            if closed == "stderr"
            else {"stdout": write, "stderr": subprocess.STDOUT}
        )
        try:
            return subprocess.run(
                [str(DAE_REPORT), *arguments], cwd=cwd, env=environment, timeout=600, **streams
            )
        finally:
            os.close(write)


@pytest.mark.slow
@pytest.mark.parametrize("closed", ["stderr", "stdout and stderr"])
def test_a_closed_pipe_neither_stops_the_build_nor_changes_its_exit_code(tmp_path, closed):
    reports = tmp_path / "reports"
    result = closed_pipe_run(
        ["build", *TINY, "--data-dir", str(SUBSET_DIR), "--out", str(reports)], closed, tmp_path
    )
    assert result.returncode == 0, (tmp_path / "other-stream.txt").read_text(encoding="utf-8")[
        -3000:
    ]
    (run,) = reports.glob("2*")
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert (reports / "latest").resolve() == run.resolve()
    log = (run / "build.log").read_text(encoding="utf-8")
    # the notebook's lines, all kept; 600 images less the 10 % for validation, batches of 256
    assert "training: 540 images, 1 epoch × 3 batches of 256\n" in log and "1/1  loss" in log


# --- Lines: durations, the epoch line, the build log ---


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (0, "0s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (61, "1m01s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3661, "1h01m"),
        (36000 + 7 * 60 + 30, "10h07m"),
    ],
)
def test_durations_are_short_and_rounded_to_the_second(seconds, shown):
    assert progress.format_duration(seconds) == shown


def test_report_prints_and_appends_to_the_build_log(tmp_path, monkeypatch, capsys):
    log = tmp_path / "build.log"
    log.write_text("warning: earlier line\n", encoding="utf-8")
    monkeypatch.setenv(progress.LOG_ENV, str(log))
    progress.report("1/2  loss 0.5000")
    progress.report("training: 540 images", echo=False)
    assert capsys.readouterr().out == "1/2  loss 0.5000\n"
    assert (
        log.read_text(encoding="utf-8")
        == "warning: earlier line\n1/2  loss 0.5000\ntraining: 540 images\n"
    )
    monkeypatch.delenv(progress.LOG_ENV)
    progress.report("outside a build")  # a student's Jupyter: printed only
    assert capsys.readouterr().out == "outside a build\n"
    assert log.read_text(encoding="utf-8").count("\n") == 3


EPOCH_LINE = re.compile(
    r"(?P<done> *\d+)/(?P<epochs>\d+)  loss (?P<loss>\d+\.\d{4})  val_loss (?P<val_loss>\d+\.\d{4})"
    r"  (?P<seconds>\d+\.\d) s(?:  ETA (?P<eta>(\d+h\d\dm|\d+m\d\ds|\d+s)))?"
)


def test_epoch_lines_give_losses_the_epochs_time_and_the_time_left(tmp_path, monkeypatch, capsys):
    """train.EpochProgress, the Keras callback the build trains with, fed the logs Keras gives."""
    from pipeline.train import EpochProgress

    monkeypatch.setenv(progress.LOG_ENV, str(tmp_path / "build.log"))
    callback = EpochProgress(epochs=10, history_path=tmp_path / "history.json")
    for epoch in range(10):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(
            epoch, {"loss": 0.5 / (epoch + 1), "val_loss": 0.25, "mse": 0.1, "val_mse": 0.1}
        )
    lines = capsys.readouterr().out.splitlines()
    assert lines == (tmp_path / "build.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10
    for epoch, line in enumerate(lines, start=1):
        match = EPOCH_LINE.fullmatch(line)
        assert match, line
        assert match["done"] == f"{epoch:>2}" and match["epochs"] == "10"  # aligned: " 1/10"
        assert float(match["loss"]) == round(0.5 / epoch, 4) and match["val_loss"] == "0.2500"
        assert (match["eta"] is None) == (epoch == 10), line  # time left, until the last epoch
    assert match["eta"] is None and lines[0].endswith("  ETA 0s")  # these epochs take no time
    assert artifacts.read_json(tmp_path / "history.json")["loss"] == [0.5 / e for e in range(1, 11)]


def test_log_follower_echoes_only_new_lines_as_they_come(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("warning: shown before the stage\n", encoding="utf-8")
    shown = io.StringIO()
    with progress.LogFollower(log, shown, prefix="      "):
        with log.open("a", encoding="utf-8") as file:
            file.write("training: 540 images\n")
        deadline = time.monotonic() + 10  # the follower polls every half second
        while "training" not in shown.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shown.getvalue() == "      training: 540 images\n"  # while the stage still runs
        with log.open("a", encoding="utf-8") as file:
            file.write("1/1  loss 0.5\n")
    assert (
        shown.getvalue() == "      training: 540 images\n      1/1  loss 0.5\n"
    )  # the rest, at the end


# --- A real build's terminal (README: each stage, each lab section, one line per epoch) ---


def lab_sections() -> list[str]:
    """The `##` sections of the quick build's lab notebook that hold code to run, in order."""
    from pipeline import notebook
    from pipeline.config import load_config

    sections, current = [], None
    for cell in notebook.lab(load_config("quick")).cells:
        if cell.cell_type == "markdown":
            headings = [
                line[3:].strip() for line in cell.source.splitlines() if line.startswith("## ")
            ]
            current = headings[0] if headings else current
        elif (
            current
            and current not in sections
            and "parameters" not in cell.metadata.get("tags", [])
        ):
            sections.append(current)
    return sections


STAGE_LINE = re.compile(
    r"\[(?P<n>\d)/6\] (?P<name>\w+) +(?P<detail>.*?)  \((?P<seconds>\d+\.\d) s\)"
)
NOTEBOOK_STARTS = "[2/6] notebook the lab, executed by papermill → answer-key.ipynb"
STAGES = ["data", "notebook", "gate", "html", "pdf", "handout"]  # with --handout


def test_a_builds_terminal_shows_each_stage_in_order(quick_build):
    lines = quick_build.stderr.splitlines()
    stages = [match for line in lines if (match := STAGE_LINE.fullmatch(line))]
    assert [(int(m["n"]), m["name"]) for m in stages] == list(enumerate(STAGES, start=1))
    assert lines.index(NOTEBOOK_STARTS) < lines.index(stages[1].group())  # said before it runs
    pages = len(PdfReader(quick_build.run_dir / "report.pdf").pages)
    assert stages[4]["detail"] == f"report.pdf, {pages} pages"
    done = re.fullmatch(r"done in (\d+m\d\ds|\d+s): (?P<run>.+)", lines[-1])
    assert done and Path(done["run"]).resolve() == quick_build.run_dir


def test_a_builds_terminal_shows_each_lab_section_as_the_notebook_reaches_it(quick_build):
    lines = quick_build.stderr.splitlines()
    start = lines.index(NOTEBOOK_STARTS)
    end = next(i for i, line in enumerate(lines) if line.startswith("[2/6] notebook done"))
    sections = [line.removeprefix("    ▸ ") for line in lines if line.startswith("    ▸ ")]
    assert sections == lab_sections()
    assert all(start < lines.index(f"    ▸ {section}") < end for section in sections)
    # the epochs are reported inside section 6, before the notebook reaches section 7
    assert sections[6].startswith("Sección 6") and sections[7].startswith("Sección 7")
    training = [i for i, line in enumerate(lines) if EPOCH_LINE.fullmatch(line.strip())]
    assert lines.index(f"    ▸ {sections[6]}") < min(training)
    assert max(training) < lines.index(f"    ▸ {sections[7]}")


def test_a_builds_terminal_shows_one_line_per_epoch_with_losses_and_time_left(quick_build):
    history = artifacts.read_json(quick_build.run_dir / "metrics.json")["training"]
    lines = [
        line.removeprefix("      ") for line in quick_build.stderr.splitlines()
    ]  # LogFollower's indent
    epochs = [match for line in lines if (match := EPOCH_LINE.fullmatch(line))]
    assert [(int(m["done"]), int(m["epochs"])) for m in epochs] == [(1, 2), (2, 2)]
    for index, match in enumerate(epochs):
        assert match["loss"] == f"{history['loss'][index]:.4f}"
        assert match["val_loss"] == f"{history['val_loss'][index]:.4f}"
        assert match["seconds"] == f"{history['epoch_seconds'][index]:.1f}"
    # the time left: the epochs still to run at the mean pace so far; none after the last
    left = (2 - 1) * history["epoch_seconds"][0]
    assert epochs[0]["eta"] == progress.format_duration(left) and epochs[1]["eta"] is None
