"""Shared fixtures and helpers: the committed real Fashion-MNIST subset, copies of it to break,
the CLI as users type it, and one real quick build shared by every test that only reads it."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS_DIR = Path(__file__).parent
SUBSET_DIR = TESTS_DIR / "data" / "fashion-mnist"  # first 4 000 train / 1 000 test images
RUN_SAMPLE_DIR = TESTS_DIR / "data" / "run"  # metrics.json + config.json of a quick build
DAE_REPORT = Path(sys.executable).parent / "dae-report"

# Every stage on a few hundred real images, one epoch: for tests of paths, options and faults,
# where the model is not under test.
TINY = [
    "--profile",
    "quick",
    "--set",
    "data.train_limit=600",
    "--set",
    "data.test_limit=200",
    "--set",
    "training.epochs=1",
    "--set",
    "evaluation.baselines=false",
    "--set",
    "evaluation.generalisation=false",
]


def interruptible() -> None:
    """preexec_fn for a build a test will interrupt: SIGINT back to its default. A shell that
    starts a job in the background (`make test &`, some CI runners) makes it ignore SIGINT, a
    child inherits that, and Python then never raises KeyboardInterrupt: Ctrl-C would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def dae_report(
    *arguments: str, cwd: Path, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`dae-report ARGUMENTS` typed in `cwd`, without the caller's $DAE_DATA_DIR."""
    environment = {key: value for key, value in os.environ.items() if key != "DAE_DATA_DIR"}
    environment.update(env or {})
    return subprocess.run(
        [str(DAE_REPORT), *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def assert_finished(reports: Path, result: subprocess.CompletedProcess) -> Path:
    """The build exited 0 and `reports/latest` links to a finished run holding the report."""
    assert result.returncode == 0, result.stderr[-3000:]
    latest = reports / "latest"
    assert latest.is_symlink() and latest.is_dir(), sorted(p.name for p in reports.iterdir())
    for name in ("report.html", "report.pdf", "answer-key.ipynb", "metrics.json", "run.json"):
        assert (latest / name).stat().st_size > 0, name
    assert json.loads((latest / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    return latest.resolve()


@pytest.fixture(scope="session", autouse=True)
def machine_measurements(tmp_path_factory):
    """This machine's speed probes (oneDNN, XLA) kept for the session, not in the user's own
    cache: the first build that needs one measures it, every later build of the run reads it."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture
def subset_copy(tmp_path) -> Path:
    """A writable copy of the real subset, for tests that damage a file."""
    target = tmp_path / "fashion-mnist"
    shutil.copytree(SUBSET_DIR, target)
    return target


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> SimpleNamespace:
    """`dae-report build --profile quick --handout`, typed in a fresh folder: the one full quick
    build of the suite (two epochs on 3 600 images, every stage). Tests that only read its
    outputs share it; a test that builds on top of it works in `quick_reports_copy`.

    out: its reports/ folder; run_dir: the run; stderr: what the terminal showed."""
    home = tmp_path_factory.mktemp("quick-build")
    result = dae_report(
        "build", "--profile", "quick", "--handout", "--data-dir", str(SUBSET_DIR), cwd=home
    )
    run_dir = assert_finished(home / "reports", result)
    return SimpleNamespace(home=home, out=home / "reports", run_dir=run_dir, stderr=result.stderr)


@pytest.fixture
def quick_reports_copy(quick_build, tmp_path) -> Path:
    """A private copy of the shared build's reports/ (its cache included, `latest` still a link to
    the copied run): later builds into it find the shared build's model and notebook, and leave the
    shared folder as every other test sees it."""
    target = tmp_path / "reports"
    shutil.copytree(quick_build.out, target, symlinks=True)
    return target


def pytest_collection_modifyitems(items):
    """A test that reads or builds on the shared quick build is an end-to-end test: mark it slow."""
    for item in items:
        if {"quick_build", "quick_reports_copy"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
