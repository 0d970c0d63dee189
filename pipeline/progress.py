"""Progress that reaches the terminal from inside the notebook kernel.

The build runs the lab notebook in a separate kernel process, whose output goes into the
notebook. Stages and training epochs are also appended to the run's `build.log`, named by
$DAE_REPORT_LOG; the build follows that file and echoes new lines to the terminal.
Outside a build (a student's Jupyter) `report` only prints.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

LOG_ENV = "DAE_REPORT_LOG"


def report(message: str, *, echo: bool = True) -> None:
    """Print `message` (into the notebook) and append it to the build log, if there is one."""
    if echo:
        print(message, flush=True)
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


class LogFollower:
    """Echo lines appended to `path` to `stream` while a stage runs (a `tail -f` in a thread)."""

    def __init__(self, path: Path, stream=None, prefix: str = "      ") -> None:
        self.path, self.stream, self.prefix = Path(path), stream or sys.stderr, prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._offset = 0

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
