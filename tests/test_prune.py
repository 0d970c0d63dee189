"""pipeline.prune on a reports folder made by hand: runs with the run.json a build writes and the
sample metrics.json of a quick build, cache entries laid out as pipeline.cache lays them out.
No training: every test takes a fraction of a second."""

import functools
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import cache, gate, prune
from pipeline.errors import BadInput
from pipeline.run import RUN_NAME
from tests.conftest import RUN_SAMPLE_DIR

SAMPLE_METRICS = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text(encoding="utf-8"))
MODEL_BYTES = 700_000  # a lab model.keras is about 0.9 MB: the total freed is in MB, as it is


@functools.cache
def dead_pid() -> int:
    """The pid of a process that has ended: what a killed build leaves in its run.json."""
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(process.stdout)


def make_run(
    out: Path,
    name: str,
    status: str = "finished",
    *,
    command: str = "build",
    regressions: tuple = (),
    key: str | None = None,
    pid: int | None = None,
    notebook: dict | None = None,
) -> Path:
    """A run folder as a build leaves it, as far as prune and the gate read it: run.json, the
    sample metrics.json naming the model `key` (a build's training.cache.key), config.json,
    and the notebook's outputs a notebook index points at."""
    run_dir = out / name
    (run_dir / "figures").mkdir(parents=True)
    stamp = f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:{name[11:13]}:{name[13:15]}+00:00"
    record = {
        "run_id": name,
        "command": command,
        "profile": "full" if name.endswith("-full") else "quick",
        "status": status,
        "pid": pid if pid is not None else dead_pid(),
        # A live process started before its run did; history takes a later start for a pid
        # reused by another process.
        "started": datetime.now(UTC).isoformat() if pid is not None else stamp,
    }
    if status != "running":
        record.update(finished=stamp, regressions=list(regressions), notebook=notebook)
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.copy(RUN_SAMPLE_DIR / "config.json", run_dir / "config.json")
    if command == "compare":  # a comparison's metrics.json names no model key
        metrics = {"models": [{"name": "lab", "history": {"loss": [0.3], "val_loss": [0.29]}}]}
    else:
        metrics = json.loads(json.dumps(SAMPLE_METRICS))
        metrics["training"]["cache"]["key"] = key or "0" * 16
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (run_dir / "answer-key.ipynb").write_text("{}", encoding="utf-8")
    (run_dir / "model.keras").write_bytes(b"m" * MODEL_BYTES)
    (run_dir / "figures" / "loss.svg").write_text("<svg/>", encoding="utf-8")
    return run_dir


def make_model(root: Path, key: str, trained_by: str) -> Path:
    """models/<key>/ as ModelCache.store writes it: model.keras and its sealed record."""
    entry = root / "models" / key
    entry.mkdir(parents=True)
    (entry / "model.keras").write_bytes(b"w" * MODEL_BYTES)
    record = {
        "key": key,
        "run": trained_by,
        "stored": 0.0,
        "history": {"loss": [0.3], "val_loss": [0.29]},
        "inputs": {},
        "files": cache.file_digests([entry / "model.keras"]),
    }
    cache._write_sealed(entry / cache.RECORD, record)
    assert cache.problem(entry) is None  # laid out as the cache reads it
    return entry


def make_backup(root: Path, key: str) -> Path:
    """backup/<key>/: what an interrupted training leaves (Keras removes it when one ends)."""
    entry = root / "backup" / key
    entry.mkdir(parents=True)
    (entry / "history.json").write_text('{"loss": [0.3]}', encoding="utf-8")
    (entry / "latest.weights.h5").write_bytes(b"h" * 5000)
    return entry


def size_of(*paths: Path) -> int:
    """Bytes in the files under `paths`, counted here without pipeline.cache's helper."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        for folder, _, files in os.walk(path):
            total += sum((Path(folder) / name).lstat().st_size for name in files)
    return total


def tree(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` with its kind and size: equal trees mean nothing changed."""
    found = {}
    for path in sorted(folder.rglob("*")):
        status = path.lstat()
        found[str(path.relative_to(folder))] = (status.st_mode, status.st_size)
    return found


def run_names(out: Path) -> set[str]:
    return {path.name for path in out.iterdir() if RUN_NAME.fullmatch(path.name)}


def run_prune(out: Path, keep: int, dry_run: bool = False) -> tuple[list[str], int, list[str]]:
    stream = io.StringIO()
    removed, freed = prune.prune(out, keep, stream, dry_run=dry_run)
    return removed, freed, stream.getvalue().splitlines()


# Runs: the newest, latest, the gate's baselines, running ones -------------------------------


@pytest.fixture
def history(tmp_path) -> Path:
    """A reports folder with a run of each kind, oldest first, and things that are not runs."""
    out = tmp_path / "reports"
    out.mkdir()
    (out / "20260101-080000-quick").mkdir()  # killed before run.json: no run.json
    (out / "20260101-080000-quick" / "config.json").write_text("{}", encoding="utf-8")
    make_run(out, "20260101-081000-quick")
    (out / "20260101-081000-quick" / "run.json").write_text('{"status": "fini', encoding="utf-8")
    make_run(out, "20260101-082000-quick")
    (out / "20260101-082000-quick" / "run.json").unlink()
    (out / "20260101-082000-quick" / "run.json").mkdir()  # not a file at all
    make_run(out, "20260101-083000-quick")
    (out / "20260101-083000-quick" / "run.json").unlink()
    os.mkfifo(out / "20260101-083000-quick" / "run.json")  # reading it would wait forever
    make_run(out, "20260101-090000-quick")
    make_run(out, "20260101-100000-full")  # the only full build: the next full one's baseline
    make_run(out, "20260101-110000-quick")  # the newest quick build that passed its gate
    make_run(out, "20260101-120000-quick", regressions=("psnr_db",))  # never a baseline
    (out / "latest").symlink_to("20260101-120000-quick", target_is_directory=True)
    make_run(out, "20260101-130000-quick", "running", pid=os.getpid())
    make_run(out, "20260101-140000-quick", "running")  # killed: its pid is dead
    make_run(out, "20260101-150000-quick", "failed")
    make_run(out, "20260101-160000-compare", command="compare")
    make_run(out, "20260101-170000-quick", "failed")
    # Not runs: a class set, the index, notes, a look-alike name, a link to a run elsewhere.
    make_run(out / "dae-2026" / "variants" / "v1", "20250101-000000-full")
    (out / "index.html").write_text("<!doctype html>", encoding="utf-8")
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    make_run(out, "20250101-000000-quick.old")
    make_run(tmp_path / "elsewhere", "20250101-000000-quick")
    (out / "20250101-000000-quick").symlink_to(tmp_path / "elsewhere" / "20250101-000000-quick")
    return out


def test_latest_baselines_and_running_runs_survive_however_old(history):
    baselines = {
        profile: gate.find_baseline(history, profile, history / "x")
        for profile in ("quick", "full")
    }
    removed, _, lines = run_prune(history, 2)

    assert run_names(history) == {
        "20250101-000000-quick",  # a link named like a run: not a run folder of this one
        "20260101-100000-full",
        "20260101-110000-quick",
        "20260101-120000-quick",
        "20260101-130000-quick",
        "20260101-160000-compare",
        "20260101-170000-quick",
    }
    assert removed == [
        "20260101-080000-quick",
        "20260101-081000-quick",
        "20260101-082000-quick",
        "20260101-083000-quick",
        "20260101-090000-quick",
        "20260101-140000-quick",
        "20260101-150000-quick",
    ]
    assert lines[:4] == [
        "kept 20260101-100000-full: the next full build compares with it",
        "kept 20260101-110000-quick: the next quick build compares with it",
        "kept 20260101-120000-quick: latest points at it",
        "kept 20260101-130000-quick: still running",
    ]
    for name in removed:
        assert f"removed {name}: older than the 2 newest runs" in lines
    # The gate compares the next build of each profile with the same run as before.
    for profile, baseline in baselines.items():
        assert gate.find_baseline(history, profile, history / "x") == baseline
    assert (history / "latest").resolve().name == "20260101-120000-quick"


def test_only_run_folders_are_touched(history, tmp_path):
    others = {
        path: tree(path) if path.is_dir() else path.read_bytes()
        for path in (history / "dae-2026", history / "20250101-000000-quick.old")
    }
    run_prune(history, 1)
    for path, before in others.items():
        assert (tree(path) if path.is_dir() else path.read_bytes()) == before
    assert (history / "index.html").read_text(encoding="utf-8") == "<!doctype html>"
    assert (history / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (history / "20250101-000000-quick").is_symlink()
    assert (tmp_path / "elsewhere" / "20250101-000000-quick" / "run.json").is_file()
    assert not [path.name for path in history.iterdir() if "discarded" in path.name]


def test_runs_are_ordered_by_their_id_and_attempt(tmp_path):
    """create_run_dir names the tenth build of a second ...-quick-10: newer than ...-quick-2."""
    out = tmp_path / "reports"
    for name in ("20260101-090000-quick", "20260101-090000-quick-2", "20260101-090000-quick-10"):
        make_run(out, name, "failed")
    removed, _, _ = run_prune(out, 1)
    assert removed == ["20260101-090000-quick", "20260101-090000-quick-2"]
    assert run_names(out) == {"20260101-090000-quick-10"}


def test_keeping_more_runs_than_there_are_removes_nothing(history):
    before = tree(history)
    removed, freed, lines = run_prune(history, 100)
    assert (removed, freed) == ([], 0) and tree(history) == before
    assert lines[-1] == f"removed 0 runs and 0 cache entries from {history}, freed 0 B"


@pytest.mark.parametrize("keep", [0, -1, True, 2.5])
def test_keep_below_one_is_bad_input(history, keep):
    before = tree(history)
    with pytest.raises(BadInput) as raised:
        run_prune(history, keep)
    assert raised.value.exit_code == 2
    assert "--keep" in str(raised.value) and "\n" not in str(raised.value)
    assert tree(history) == before


def test_a_missing_reports_folder_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no reports folder"):
        run_prune(tmp_path / "nowhere", 1)
    assert not (tmp_path / "nowhere").exists()


# The cache: what the runs that stay use ------------------------------------------------------


@pytest.fixture
def cached(tmp_path) -> Path:
    """Three runs and their cache. A trained kA and kB; B reused kB (its metrics.json names
    it), the comparison C trained kC (its metrics.json names no key). A executed the notebook
    `na`, B reused its outputs. With --keep 1, A goes."""
    out = tmp_path / "reports"
    root = out / ".cache"
    notebook = {"key": "na", "reused_from": None}
    run_a = make_run(out, "20260101-090000-quick", key="a" * 16, notebook=notebook)
    notebook = {"key": "na", "reused_from": run_a.name}
    run_b = make_run(out, "20260101-100000-quick", key="b" * 16, notebook=notebook)
    (out / "latest").symlink_to(run_b.name, target_is_directory=True)
    make_run(out, "20260101-110000-compare", command="compare")
    make_model(root, "a" * 16, trained_by=run_a.name)
    make_model(root, "b" * 16, trained_by=run_a.name)
    make_model(root, "c" * 16, trained_by="20260101-110000-compare")
    make_model(root, "d" * 16, trained_by=run_a.name)
    (root / "models" / ("d" * 16) / cache.RECORD).unlink()  # damaged, and no run names it
    cache.remember_notebook(root, "na", run_a)
    cache.remember_notebook(root, "nb", run_b)
    cache.remember_notebook(root, "nold", run_a)  # no run that stays holds its outputs
    gone = make_run(out, "20250101-000000-quick")
    cache.remember_notebook(root, "ngone", gone)
    shutil.rmtree(gone)  # deleted by hand
    elsewhere = make_run(tmp_path / "copied-from", "20250101-000000-quick")
    cache.remember_notebook(root, "nelsewhere", elsewhere)  # a copied reports/'s index
    make_backup(root, "b" * 16)  # stale: models/bbbb… holds the finished training
    make_backup(root, "e" * 16)  # an interrupted training that no model finished yet
    (root / "models" / f".{'f' * 16}.tmp").mkdir()  # a build's staging: `cache clear`'s
    return out


def test_unused_cache_entries_go_and_used_ones_stay(cached):
    root = cached / ".cache"
    doomed = [
        cached / "20260101-090000-quick",
        root / "models" / ("a" * 16),
        root / "models" / ("d" * 16),
        root / "notebooks" / "ngone.json",
        root / "notebooks" / "nold.json",
        root / "backup" / ("b" * 16),
    ]
    expected = size_of(*doomed)
    removed, freed, lines = run_prune(cached, 1)

    assert removed == [
        "20260101-090000-quick",
        f"models/{'a' * 16}",
        f"models/{'d' * 16}",
        "notebooks/ngone",
        "notebooks/nold",
        f"backup/{'b' * 16}",
    ]
    assert not any(os.path.lexists(path) for path in doomed)
    assert freed == expected
    assert lines == [
        "kept 20260101-100000-quick: latest points at it; the next quick build compares with it",
        "removed 20260101-090000-quick: older than the newest run",
        "pointed notebooks/na at 20260101-100000-quick: its run 20260101-090000-quick is "
        "removed; this one holds the same outputs",
        f"removed models/{'a' * 16}: no run that stays uses it",
        f"removed models/{'d' * 16}: no run that stays uses it",
        "removed notebooks/ngone: its run 20250101-000000-quick is gone",
        "removed notebooks/nold: its run 20260101-090000-quick is removed",
        f"removed backup/{'b' * 16}: stale: models/{'b' * 16} holds the finished training",
        f"kept backup/{'e' * 16}: an interrupted training, which the next build with its "
        "config resumes",
        f"removed 1 run and 5 cache entries from {cached}, freed {expected / 1e6:.1f} MB",
    ]
    # What stays is still sound: a later build reuses it as it would have before.
    kept = [f"models/{'b' * 16}", f"models/{'c' * 16}", "notebooks/na", "notebooks/nb"]
    kept += ["notebooks/nelsewhere", f"backup/{'e' * 16}"]
    assert [cache.label(entry) for entry in cache.entries(root)] == kept
    for entry in cache.entries(root)[:5]:
        assert cache.problem(entry) is None, cache.label(entry)
    # The next build with the notebook `na` still only copies its outputs: from B now.
    target = cached / "20260102-000000-quick"
    target.mkdir()
    assert (
        cache.reuse_notebook(root, "na", target, warn=pytest.fail)
        == (cached / "20260101-100000-quick").resolve()
    )
    assert (root / "models" / f".{'f' * 16}.tmp").is_dir()


def test_dry_run_removes_nothing_and_says_what_would_go(cached):
    before = tree(cached)
    removed, freed, lines = run_prune(cached, 1, dry_run=True)

    assert tree(cached) == before
    assert len(removed) == 6 and freed > 2 * MODEL_BYTES
    assert not [line for line in lines if line.startswith("removed")]
    assert lines[-1] == (
        f"would remove 1 run and 5 cache entries from {cached}, would free {freed / 1e6:.1f} MB"
    )
    # What it says is what the real prune then does, line for line.
    real_removed, real_freed, real_lines = run_prune(cached, 1)
    assert (real_removed, real_freed) == (removed, freed)
    said = [
        line.replace("would remove", "removed")
        .replace("would free", "freed")
        .replace("would point", "pointed")
        for line in lines
    ]
    assert said == real_lines


def test_while_a_build_runs_models_and_backups_stay(cached):
    make_run(cached, "20260101-120000-quick", "running", pid=os.getpid())
    root = cached / ".cache"
    before = tree(root / "models"), tree(root / "backup")
    removed, _, lines = run_prune(cached, 1)

    assert removed == [
        "20260101-090000-quick",
        "20260101-110000-compare",
        "notebooks/ngone",
        "notebooks/nold",
    ]
    assert (tree(root / "models"), tree(root / "backup")) == before
    assert lines[-2] == (
        "kept every model and backup: 20260101-120000-quick is running and may use them"
    )
