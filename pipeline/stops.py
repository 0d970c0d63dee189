"""Stops from outside a command, ended as Ctrl-C ends it: SIGTERM, SIGHUP and --timeout.

SIGTERM is how CI runners, systemd and Kubernetes end a job, and SIGHUP reaches a build whose
terminal closed (an SSH session to a cluster that dropped); left to their default they kill the
process at once, with no failure.log and run.json still `running`. Ctrl-C already ends a run as
the exit codes promise: Python raises KeyboardInterrupt in the main thread, Run.open writes
failure.log and failure.html and marks run.json `failed`, `latest` is left alone, the kernel exits
with its build (it polls its parent) and the next build resumes the training. So SIGTERM, SIGHUP,
and SIGALRM when --timeout runs out, raise `Interrupted`, a KeyboardInterrupt that carries its
message, and take that same path.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# --timeout's units, as GNU timeout(1) spells them: a CI job's limit is often written `30m`.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LONGEST_SECONDS = 365 * 86400  # setitimer overflows far beyond; a year is already a typo

# What failure.log and run.json say for each signal that stops a command.
STOPPING_SIGNALS = {
    signal.SIGTERM: "stopped by SIGTERM",
    signal.SIGHUP: "stopped by SIGHUP (its terminal closed)",
}


class Interrupted(KeyboardInterrupt):
    """A stop that is not Ctrl-C, raised where Ctrl-C's KeyboardInterrupt would be, so every
    path that ends a run on Ctrl-C ends it on this too; `message` says what stopped it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def message(interruption: KeyboardInterrupt) -> str:
    """What stopped the command, for the terminal, failure.log and run.json."""
    return interruption.message if isinstance(interruption, Interrupted) else "interrupted"


@dataclass(frozen=True)
class Timeout:
    seconds: float
    text: str  # as the user wrote it (a bare number with its `s`), for the message


def timeout(text: str) -> Timeout:
    """--timeout's value (an argparse type): seconds, or a number followed by s, m, h or d."""
    spelled = text.strip().lower()
    number, unit = (spelled[:-1].strip(), spelled[-1]) if spelled[-1:] in UNITS else (spelled, "s")
    try:
        seconds = float(number) * UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SECONDS or a number with s, m, h or d (30m, 2h), got {text!r}"
        ) from None
    if not 0 < seconds <= LONGEST_SECONDS:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"need more than 0 and at most 365d, got {text!r}")
    return Timeout(seconds, f"{number}{unit}")


@contextmanager
def as_interruptions(limit: Timeout | None = None) -> Iterator[None]:
    """Inside the block SIGTERM, SIGHUP and `limit` running out raise Interrupted in the main
    thread.

    The handlers before the block come back after it: tests call cli.main in-process. Only the
    main thread may set handlers; elsewhere (a Dask worker's thread running a build) the block
    runs without them, and the process's own owner decides what its signals do. A signal
    ignored when the command starts stays ignored, as Python leaves an ignored SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def stop(reason: str):
        def handler(signum, frame) -> None:
            if limit is not None:  # one stop at a time: the alarm must not cut the failure.log
                signal.setitimer(signal.ITIMER_REAL, 0)
            raise Interrupted(reason)

        return handler

    for number, reason in STOPPING_SIGNALS.items():
        if signal.getsignal(number) is not signal.SIG_IGN:  # as under `nohup`: left ignored
            previous[number] = signal.signal(number, stop(reason))
    if limit is not None:
        reason = f"timed out after {limit.text} (--timeout)"
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, stop(reason))
        signal.setitimer(signal.ITIMER_REAL, limit.seconds)
    try:
        yield
    finally:
        if limit is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in previous.items():
            # None: a handler set outside Python, which Python cannot put back; the default is
            # what such a process had before Python started.
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
