"""Shared fixtures: the committed real Fashion-MNIST subset and copies of it to break."""

import shutil
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
SUBSET_DIR = TESTS_DIR / "data" / "fashion-mnist"  # first 4 000 train / 1 000 test images
RUN_SAMPLE_DIR = TESTS_DIR / "data" / "run"  # metrics.json + config.json of a quick build


@pytest.fixture
def subset_copy(tmp_path) -> Path:
    """A writable copy of the real subset, for tests that damage a file."""
    target = tmp_path / "fashion-mnist"
    shutil.copytree(SUBSET_DIR, target)
    return target
