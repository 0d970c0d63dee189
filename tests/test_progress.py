"""The progress display: a terminal that may go away (`| head -1`), and TensorFlow's stderr
kept out of it. Exit code 1 means a quality regression, never a closed pipe."""

import io
import json
import os
import subprocess
import sys

import pytest

from pipeline import progress
from tests.conftest import SUBSET_DIR
from tests.test_cli_paths import DAE_REPORT, TINY


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


def test_terminal_keeps_other_errors():
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        progress.Terminal(Full()).write("x\n")


def test_log_follower_goes_on_after_the_terminal_closes(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("1/2  loss 0.5\n")
    with progress.LogFollower(log, ClosedPipe()) as follower:
        follower._echo()
        with log.open("a") as file:
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
    result = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "[1/3] data  ours\ndone\n"
    assert log.read_text() == "E0000 absl: not for the user\n"


def closed_pipe_run(arguments: list[str], closed: str, cwd) -> subprocess.CompletedProcess:
    """Run dae-report with stderr, or stdout and stderr together (`2>&1 | head -1`), on a pipe
    whose reader has already gone: the first line written finds it closed."""
    read, write = os.pipe()
    os.close(read)
    environment = {key: value for key, value in os.environ.items() if key != "DAE_DATA_DIR"}
    with open(cwd / "other-stream.txt", "w") as other:
        streams = {"stdout": other, "stderr": write} if closed == "stderr" else {"stdout": write, "stderr": subprocess.STDOUT}
        try:
            return subprocess.run([str(DAE_REPORT), *arguments], cwd=cwd, env=environment, timeout=600, **streams)
        finally:
            os.close(write)


@pytest.mark.slow
@pytest.mark.parametrize("closed", ["stderr", "stdout and stderr"])
def test_a_closed_pipe_neither_stops_the_build_nor_changes_its_exit_code(tmp_path, closed):
    reports = tmp_path / "reports"
    result = closed_pipe_run(["build", *TINY, "--data-dir", str(SUBSET_DIR), "--out", str(reports)], closed, tmp_path)
    assert result.returncode == 0, (tmp_path / "other-stream.txt").read_text()[-3000:]
    (run,) = reports.glob("2*")
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert (reports / "latest").resolve() == run.resolve()
    log = (run / "build.log").read_text()
    assert "training: 540 images" in log and "1/1  loss" in log  # the notebook's lines, all kept
