"""Progress that reaches the terminal from inside the notebook kernel.

The build runs the lab notebook in a separate kernel process, whose output goes into the
notebook. Stages and training epochs are also appended to the run's `build.log`, named by
$DAE_REPORT_LOG; the build follows that file and echoes new lines to the terminal.
Outside a build (a student's Jupyter) `report` only prints.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

LOG_ENV = "DAE_REPORT_LOG"


def report(message: str, *, echo: bool = True) -> None:
    """Print `message` (into the notebook) and append it to the build log, if there is one."""
    if echo:  # in `dae-report compare` this is the real stdout, perhaps a closed pipe
        stdout = Terminal(sys.stdout)
        stdout.write(message + "\n")
        stdout.flush()
    log_path = os.environ.get(LOG_ENV)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(message + "\n")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


# A write's errors that mean nobody reads any more: a closed pipe, and a terminal that hung up
# (an SSH session that dropped). Others, a full disk behind a redirection, are the run's to see.
READER_GONE = (errno.EPIPE, errno.EIO)


class Terminal:
    """The terminal end of the progress display, whose reader may go away before the run ends.

    `dae-report build 2>&1 | head -1` closes the pipe after one line; a terminal that hangs up
    fails every write after. The first write that finds the reader gone is swallowed, the
    stream's file descriptor is pointed at /dev/null (Python's advice for BrokenPipeError: else
    flushing it at exit fails again and the exit code becomes 120), and terminal output is
    dropped from then on. The run goes on, build.log keeps its lines, and the exit code stays the
    run's: 1 means a quality regression and nothing else.
    """

    def __init__(self, stream) -> None:
        self.stream, self.closed = stream, False

    def write(self, text: str) -> int:
        if not self.closed:
            with self._unless_reader_gone():
                self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        if not self.closed:
            with self._unless_reader_gone():
                self.stream.flush()

    @contextlib.contextmanager
    def _unless_reader_gone(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            if error.errno not in READER_GONE:
                raise
            self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed = True
        descriptor = _descriptor(self.stream)
        if descriptor is None:  # a StringIO: nothing is left to flush
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)  # what is still buffered for it now flushes harmlessly
        finally:
            os.close(devnull)


def terminal(stream=None) -> Terminal:
    """`stream` (by default stderr) as a Terminal; one that already is one is kept, so that
    every writer shares what it learnt about the reader."""
    stream = sys.stderr if stream is None else stream
    return stream if isinstance(stream, Terminal) else Terminal(stream)


def settle_standard_streams() -> None:
    """Flush stdout and stderr before the interpreter does: its own flush at exit turns a
    closed pipe into exit code 120 (or, in an exception handler, 1)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            Terminal(stream).flush()


class StderrInto:
    """File descriptor 2 pointed at `path` (appended to) until `close()`, for TensorFlow run in
    this process (`dae-report compare`): its C++ and absl start-up lines, which no environment
    variable silences, and Python's warnings land there, as a build's land in its kernel's
    kernel.log. `keep`, a Terminal on fd 2 carrying the tool's own lines, is moved to a copy
    of the old descriptor meanwhile, so that those lines still reach the terminal."""

    def __init__(self, path: Path, keep: Terminal | None = None) -> None:
        self.keep, self.kept = keep, None
        for stream in (sys.stderr, keep):
            if stream is not None:
                terminal(stream).flush()  # what is pending goes where it was meant to
        self.saved = os.dup(2)
        try:
            with open(path, "ab") as log:
                os.dup2(log.fileno(), 2)
        except BaseException:
            os.close(self.saved)
            raise
        if keep is not None and _descriptor(keep.stream) == 2:
            self.kept = keep.stream
            encoding = getattr(self.kept, "encoding", None) or "utf-8"
            keep.stream = open(  # line-buffered, as sys.stderr is
                os.dup(self.saved), "w", encoding=encoding, errors="backslashreplace", buffering=1
            )

    def close(self) -> None:
        if self.saved is None:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()  # what Python wrote meanwhile belongs in the log
        if self.kept is not None:
            self.keep.flush()
            with contextlib.suppress(OSError):
                self.keep.stream.close()
            self.keep.stream = self.kept
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.saved = None

    def __enter__(self) -> StderrInto:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class LogFollower:
    """Echo lines appended to `path` to `stream` while a stage runs (a `tail -f` in a thread)."""

    def __init__(self, path: Path, stream=None, prefix: str = "      ") -> None:
        self.path, self.stream, self.prefix = Path(path), terminal(stream), prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # Only what is appended from now on: earlier lines (the build's warnings) were shown.
        self._offset = self.path.stat().st_size if self.path.is_file() else 0

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._echo()  # whatever was written after the last poll

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._echo()

    def _echo(self) -> None:
        try:
            with self.path.open(encoding="utf-8") as log:
                log.seek(self._offset)
                text = log.read()
                self._offset = log.tell()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            self.stream.write(f"{self.prefix}{line}\n")
        self.stream.flush()


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
