"""SIGTERM, SIGHUP and --timeout end a command as Ctrl-C does: in-process, with `build` replaced
by a stand-in, so each takes a second. tests/test_errors.py stops real builds the same ways."""

import argparse
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipeline import cli, stops
from pipeline.run import error_message


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("90", 90, "90s"),
        ("0.5", 0.5, "0.5s"),
        ("45s", 45, "45s"),
        ("30m", 1800, "30m"),
        ("2h", 7200, "2h"),
        ("1.5H", 5400, "1.5h"),
        ("1d", 86400, "1d"),
        ("365d", 365 * 86400, "365d"),
    ],
)
def test_timeout_takes_seconds_or_a_unit_and_says_it_as_written(text, seconds, shown):
    assert stops.timeout(text) == stops.Timeout(seconds, shown)


@pytest.mark.parametrize("text", ["0", "-5", "0m", "nan", "inf", "366d", "", "m", "3x", "1:30"])
def test_timeout_refuses_what_is_no_duration(text):
    with pytest.raises(argparse.ArgumentTypeError):
        stops.timeout(text)


@pytest.mark.parametrize(
    "command", [["build"], ["compare"], ["batch", "roster.csv", "--variants", "variants.toml"]]
)
def test_a_bad_timeout_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main([*command, "--timeout", "soon"])
    assert stopped.value.code == 2
    assert "argument --timeout: expected SECONDS" in capsys.readouterr().err


def test_the_reason_is_what_failure_log_and_run_json_say():
    assert error_message(stops.Interrupted("stopped by SIGTERM")) == "stopped by SIGTERM"
    assert error_message(KeyboardInterrupt()) == "interrupted"  # Ctrl-C says what it always said


class Sentinel:
    """A signal handler of the test's own: were the command's not in place, the signal would
    land here (not kill pytest); the command must put it back when it returns."""

    def __init__(self) -> None:
        self.caught = []

    def __call__(self, number, frame) -> None:
        self.caught.append(number)


@contextmanager
def sentinel_for(number: int) -> Iterator[Sentinel]:
    sentinel = Sentinel()
    saved = signal.signal(number, sentinel)
    try:
        yield sentinel
    finally:
        signal.signal(number, saved)


@pytest.fixture
def sigterm_sentinel():
    with sentinel_for(signal.SIGTERM) as sentinel:
        yield sentinel


def _main(monkeypatch, stand_in, *options: str) -> int:
    """`dae-report build OPTIONS` in-process, its build being `stand_in`."""
    monkeypatch.setattr("pipeline.build.build", lambda **kwargs: stand_in())
    return cli.main(["build", "--profile", "quick", *options])


def _signal_then_wait(number: int):
    os.kill(os.getpid(), number)
    time.sleep(30)  # the signal ends this at once, or the test fails on the exit code


# SIGTERM: CI runners, systemd, Kubernetes. SIGHUP: the terminal closed (an SSH session dropped).
@pytest.mark.parametrize(
    ("number", "said"),
    [
        (signal.SIGTERM, "stopped by SIGTERM"),
        (signal.SIGHUP, "stopped by SIGHUP (its terminal closed)"),
    ],
    ids=["SIGTERM", "SIGHUP"],
)
def test_a_stopping_signal_ends_the_command_as_ctrl_c_does_and_restores_the_handler(
    monkeypatch, capsys, number, said
):
    with sentinel_for(number) as sentinel:
        started = time.monotonic()
        assert _main(monkeypatch, lambda: _signal_then_wait(number)) == 3
        assert time.monotonic() - started < 20
        assert capsys.readouterr().err.splitlines()[-1] == f"dae-report: {said}"
        assert sentinel.caught == []
        assert signal.getsignal(number) is sentinel  # the test's handler is back


def test_timeout_ends_the_command_and_disarms_its_alarm(monkeypatch, capsys):
    before = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    assert _main(monkeypatch, lambda: time.sleep(30), "--timeout", "0.5") == 3
    assert 0.5 <= time.monotonic() - started < 20
    assert (
        capsys.readouterr().err.splitlines()[-1] == "dae-report: timed out after 0.5s (--timeout)"
    )
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_a_command_done_in_time_exits_0_and_disarms_its_alarm(monkeypatch):
    assert _main(monkeypatch, lambda: None, "--timeout", "1h") == 0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_sigterm_while_the_failure_is_written_is_not_cut_by_the_timeout(
    monkeypatch, capsys, sigterm_sentinel
):
    """A run stopped by SIGTERM then writes failure.log and run.json (Run.open): the alarm of
    --timeout, due meanwhile, must not interrupt that and replace the reason."""

    def stopped_then_slow_to_clean_up():
        try:
            _signal_then_wait(signal.SIGTERM)
        except stops.Interrupted:
            time.sleep(1.5)  # past the 1 s limit, as a slow disk writing the failure would be
            raise

    assert _main(monkeypatch, stopped_then_slow_to_clean_up, "--timeout", "1") == 3
    assert capsys.readouterr().err.splitlines()[-1] == "dae-report: stopped by SIGTERM"


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_an_ignored_stopping_signal_stays_ignored(monkeypatch, number):
    """As Python leaves an ignored SIGINT alone: whoever started the command chose that
    (`nohup dae-report build` ignores SIGHUP so that the build outlives its terminal)."""
    saved = signal.signal(number, signal.SIG_IGN)
    try:
        seen = []
        assert _main(monkeypatch, lambda: seen.append(signal.getsignal(number))) == 0
        assert seen == [signal.SIG_IGN]
        assert signal.getsignal(number) is signal.SIG_IGN
    finally:
        signal.signal(number, saved)


def test_outside_the_main_thread_nothing_is_installed():
    """A Dask worker's thread runs builds: signal handlers cannot be set there, and need not."""
    before = signal.getsignal(signal.SIGTERM)
    seen, failures = [], []

    def in_a_thread():
        try:
            with stops.as_interruptions(stops.timeout("0.1")):
                seen.append(signal.getsignal(signal.SIGTERM))
                time.sleep(0.3)  # past the limit: no alarm was set
        except BaseException as error:  # whatever it was, the test shows it
            failures.append(error)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert failures == [] and seen == [before]
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
