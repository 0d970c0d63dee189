import json
import shutil
import subprocess

import pytest

from pipeline import artifacts, provenance
from tests.conftest import RUN_SAMPLE_DIR


def _run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    shutil.copy(RUN_SAMPLE_DIR / "metrics.json", run / "metrics.json")
    shutil.copy(RUN_SAMPLE_DIR / "config.json", run / "config.json")
    (run / "figures" / "loss_curves.svg").write_text("<svg/>", encoding="utf-8")
    return run


def _edit_metrics(run, change):
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    change(metrics)
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def test_content_digest_ignores_times_and_run_identity(tmp_path):
    run = _run_folder(tmp_path)
    before = provenance.content_digest(run)
    _edit_metrics(
        run,
        lambda m: m["training"].update(
            seconds=999.0, epoch_seconds=[1.0, 2.0], cache={"reused_from": "other-run"}
        ),
    )
    assert provenance.content_digest(run) == before


def test_content_digest_follows_results_and_figures(tmp_path):
    run = _run_folder(tmp_path)
    before = provenance.content_digest(run)
    _edit_metrics(run, lambda m: m["reconstruction"]["mse"].update(mean=0.5))
    after_metric = provenance.content_digest(run)
    assert after_metric != before
    (run / "figures" / "loss_curves.svg").write_text("<svg></svg>", encoding="utf-8")
    assert provenance.content_digest(run) != after_metric


def test_versions_are_read_from_package_metadata():
    versions = provenance.versions()
    assert versions["tensorflow"] and versions["weasyprint"] and versions["python"]


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder, *arguments: str) -> str:
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *arguments]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A real git repository with one commit; git looks no higher than tmp_path for another."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "project"
    folder.mkdir()
    _git(folder, "init", "-q")
    (folder / "code.py").write_text("x = 1\n", encoding="utf-8")
    _git(folder, "add", "code.py")
    _git(folder, "commit", "-q", "-m", "first")
    return folder


@needs_git
def test_git_commit_is_the_checkouts_head_and_says_whether_the_tree_differs(repository):
    head = _git(repository, "rev-parse", "HEAD")
    assert provenance.git_commit(repository) == {"commit": head, "dirty": False}
    (repository / "notes.txt").write_text("untracked\n", encoding="utf-8")
    assert provenance.git_commit(repository) == {"commit": head, "dirty": False}  # untracked: clean
    (repository / "code.py").write_text("x = 2\n", encoding="utf-8")
    assert provenance.git_commit(repository) == {"commit": head, "dirty": True}
    _git(repository, "commit", "-q", "-am", "second")
    second = _git(repository, "rev-parse", "HEAD")
    assert second != head
    assert provenance.git_commit(repository) == {"commit": second, "dirty": False}


@needs_git
def test_git_commit_outside_a_repository_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    assert provenance.git_commit(tmp_path / "plain") is None


@needs_git
def test_git_commit_defaults_to_the_package_checkout():
    """What run.json records: the commit of the checkout the package runs from (None when the
    package is installed outside one)."""
    here = artifacts.PACKAGE_DIR
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True)
    expected = found.stdout.strip() if found.returncode == 0 else None
    assert (provenance.git_commit() or {}).get("commit") == expected
