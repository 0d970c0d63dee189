"""`dae-report prune --keep N`: the N newest runs of a reports folder, and only the cache they use.

A run folder goes when it is not among the N newest (by run id) and nothing still needs it:
never the run `latest` points at, the run the gate would compare the next build of a profile
with (gate.find_baseline), or a run whose process is alive. A folder with no run.json, or one
that cannot be read, is judged by its age alone: it is what a killed or broken run leaves.

Then the cache keeps what the runs that stay use:

- models/<key>: kept while a run that stays names the key (metrics.json's `training.cache.key`)
  or trained it (its record's `run`: `compare` runs name no key in their metrics.json).
- notebooks/<key>.json: points at the run that executed the notebook. When that run goes, a
  finished run that stays and reused its outputs (run.json's `notebook.key`) holds the same
  files: the index is pointed at it, so the next build still only re-renders. With no such
  run the index goes, as it does when its run is gone already. An index pointing at a run
  folder elsewhere (a copied reports/) is not this folder's to judge.
- backup/<key>: Keras deletes it when training ends, so one that is here is the resume state of
  an interrupted training, which the next build with that config resumes from whichever run was
  interrupted: no count of runs makes it unused. It goes only once it is stale, when a kept
  models/<key> holds the finished training (a build reuses that model and never reads it).

While any run is running, models and backups all stay: the build may be between checking a
model and loading it, or writing its resume state, and no file says which key it uses yet.
Only names that a run or the cache gives its own are removed (run ids, .cache/'s entries): a
batch folder, an index.html or a user's notes in the reports folder are never touched.
Entries under temporary names (a build's staging, a discarded entry) are `cache clear`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import artifacts, cache, gate, history
from pipeline.errors import BadInput

# Bounds on what prune reads from a run folder: a build's run.json is a few kB, its
# metrics.json some 30 kB. Anything larger is not a run's record and names no key.
RUN_RECORD_MAX_BYTES = 1 * 2**20
RECORD_MAX_BYTES = cache.MAX_RECORD_BYTES


@dataclass
class RunFolder:
    """One run folder, as the history reads it, and why it must stay whatever its age."""

    entry: history.RunEntry
    protected: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.entry.id

    @property
    def path(self) -> Path:
        return self.entry.folder


def prune(out_dir: Path, keep: int, stream, dry_run: bool = False) -> tuple[list[str], int]:
    """Remove the run folders of `out_dir` beyond the `keep` newest, but for protected ones, and
    the cache entries no remaining run uses; one line on `stream` per thing removed and per
    protected run kept beyond the newest, then the total. With `dry_run`, say the same ("would
    remove") and remove nothing. Returns the names removed (run ids, cache labels such as
    models/<key>) and the bytes freed."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise BadInput(f"--keep must be a whole number of runs, at least 1 (got {keep!r})")
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise BadInput(f"--out {out_dir}: no reports folder there")
    runs = [RunFolder(entry) for entry in reversed(history.runs(out_dir))]  # oldest first
    _protect(out_dir, runs)
    newest = {run.name for run in runs[-keep:]}
    doomed = [run for run in runs if run.name not in newest and not run.protected]
    running = [run for run in runs if run.entry.status == "running"]

    verb = "would remove" if dry_run else "removed"
    removed, freed = [], 0

    def remove(path: Path, label: str, why: str) -> None:
        nonlocal freed
        size = cache._size(path)
        done = size if dry_run else _discard(path, size)
        removed.append(label)
        freed += done or 0
        stream.write(f"{verb} {label}: {why}\n")
        if done is not None and done < size:
            stream.write(f"      {cache._human(size - done)} of it could not be removed\n")

    for run in runs:
        if run.name not in newest and run.protected:
            stream.write(f"kept {run.name}: {'; '.join(run.protected)}\n")
    for run in doomed:
        remove(run.path, run.name, _older(keep))

    gone = {run.path.resolve() for run in doomed}
    staying = [path for path in _folders(out_dir) if path.resolve() not in gone]
    root = out_dir / cache.CACHE_DIR
    unused, moved, notes = _unused_entries(root, staying, gone, running)
    for entry, (source, heir) in moved.items():
        why = f"its run {source.name} is removed; this one holds the same outputs"
        if not dry_run:
            try:
                cache.remember_notebook(root, entry.stem, heir)
            except OSError:  # the heir lost a file meanwhile: no index is better than a wrong one
                unused.append((entry, f"its run {source.name} is removed"))
                continue
        stream.write(
            f"{'would point' if dry_run else 'pointed'} {cache.label(entry)} at "
            f"{heir.name}: {why}\n"
        )
    for entry, why in unused:
        remove(entry, cache.label(entry), why)
    for note in notes:
        stream.write(f"{note}\n")

    entries_removed = len(removed) - len(doomed)
    would = "would free" if dry_run else "freed"
    stream.write(
        f"{verb} {_runs(len(doomed))} and {entries_removed} cache "
        f"entr{'y' if entries_removed == 1 else 'ies'} from {out_dir}, {would} "
        f"{cache._human(freed)}\n"
    )
    return removed, freed


def _discard(path: Path, size: int) -> int | None:
    """Remove a run folder or a cache entry of `size` bytes; returns the bytes freed, None if
    another process removed it first. It is renamed aside first, as cache._discard does (to a
    name `cache clear` cleans up, inside the cache), so that no build or gate sees half of it."""
    trash = path.with_name(f".{path.name}.discarded-{os.getpid()}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return None  # another prune, or a build discarding a damaged entry, was first
    except OSError:
        trash = path
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        with suppress(OSError):
            trash.unlink()
    return size - (cache._size(trash) if os.path.lexists(trash) else 0)


def _older(keep: int) -> str:
    return "older than the newest run" if keep == 1 else f"older than the {keep} newest runs"


def _runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


# Runs -----------------------------------------------------------------------------------------


def _protect(out_dir: Path, runs: list[RunFolder]) -> None:
    """Say, on each run that must stay whatever its age, why."""
    by_path = {run.path.resolve(): run for run in runs}
    latest = out_dir / artifacts.LATEST
    if latest.is_symlink() and latest.resolve() in by_path:
        by_path[latest.resolve()].protected.append(f"{artifacts.LATEST} points at it")
    profiles = {run.entry.profile for run in runs if run.entry.profile is not None}
    # No run is excluded: the next build's own folder does not exist yet.
    nothing = out_dir / f".{cache.CACHE_DIR}-no-run"
    for profile in sorted(profiles):
        baseline = gate.find_baseline(out_dir, profile, exclude=nothing)
        if baseline is not None and baseline.resolve() in by_path:
            by_path[baseline.resolve()].protected.append(
                f"the next {profile} build compares with it"
            )
    for run in runs:
        if run.entry.status == "running":  # its process is alive (history checks the pid)
            run.protected.append("still running")


def _folders(out_dir: Path) -> list[Path]:
    """Every folder of `out_dir` but hidden ones: runs, `latest` (a link or a restored copy),
    runs renamed by hand, batch folders. Whatever stays of them may name a cache key."""
    return [path for path in out_dir.iterdir() if not path.name.startswith(".") and path.is_dir()]


# The cache ------------------------------------------------------------------------------------


def _unused_entries(
    root: Path, staying: list[Path], gone: set[Path], running: list[RunFolder]
) -> tuple[list[tuple[Path, str]], dict[Path, tuple[Path, Path]], list[str]]:
    """The cache entries to remove, each with why, in cache.entries' order (models first); the
    notebook indexes to point at another run (index -> (removed run, run that stays)); and the
    lines that say why entries a reader might expect to go stay."""
    kept_names = {path.name for path in staying}
    used = set()
    for folder in staying:
        for name in (artifacts.METRICS, artifacts.RUN_RECORD):
            used |= _keys_named(folder / name)
    heirs = _notebook_holders(staying)
    unused, moved, notes, kept_models, skipped = [], {}, [], set(), False
    for entry in cache.entries(root):
        kind = entry.parent.name
        if kind == "notebooks":
            source = _indexed_run(entry)
            if source is not None and source in gone and entry.stem in heirs:
                moved[entry] = (source, heirs[entry.stem])
            elif source is not None and source in gone:
                unused.append((entry, f"its run {source.name} is removed"))
            elif source is not None and not os.path.lexists(source):
                unused.append((entry, f"its run {source.name} is gone"))
        elif running:
            skipped = True  # see the module's docstring: a running build may be using any of them
        elif kind == "models":
            if entry.name in used or _trained_by(entry) in kept_names:
                kept_models.add(entry.name)
            else:
                unused.append((entry, "no run that stays uses it"))
        elif kind == "backup":
            model = root / "models" / entry.name
            if entry.name in kept_models and cache.problem(model) is None:
                unused.append((entry, f"stale: models/{entry.name} holds the finished training"))
            else:
                notes.append(
                    f"kept {cache.label(entry)}: an interrupted training, which the next build "
                    "with its config resumes"
                )
    if skipped:
        names = ", ".join(run.name for run in running)
        verb = "is" if len(running) == 1 else "are"
        notes.append(f"kept every model and backup: {names} {verb} running and may use them")
    return unused, moved, notes


def _notebook_holders(staying: list[Path]) -> dict[str, Path]:
    """Notebook key -> the newest finished run that stays and holds that notebook's outputs
    (it executed the notebook, or copied them from the run that did)."""
    holders = {}
    # Run folders only: `latest` and other folders are not where a build looks for its own runs.
    runs = [path for path in staying if history.is_run_folder(path)]
    for folder in sorted(runs, key=history.age):
        record = _read_json(folder / artifacts.RUN_RECORD, RUN_RECORD_MAX_BYTES)
        record = record if isinstance(record, dict) else {}
        notebook = record.get("notebook")
        if record.get("status") == "finished" and isinstance(notebook, dict):
            if isinstance(notebook.get("key"), str):
                holders[notebook["key"]] = folder.resolve()
    return holders


def _keys_named(path: Path) -> set[str]:
    """The model cache keys a run's JSON file names: the `key` of every `cache` object in it
    (a build's training.cache; the same in a comparison's models, wherever they are kept)."""
    content = _read_json(path, gate.METRICS_MAX_BYTES)
    keys, pending = set(), [content]
    while pending:  # a loop, not recursion: a file nested 10 000 deep is no error here
        value = pending.pop()
        if isinstance(value, dict):
            decision = value.get("cache")
            if isinstance(decision, dict) and isinstance(decision.get("key"), str):
                keys.add(decision["key"])
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return keys


def _trained_by(entry: Path) -> str | None:
    record = _read_json(entry / cache.RECORD, RECORD_MAX_BYTES)
    run = record.get("run") if isinstance(record, dict) else None
    return run if isinstance(run, str) else None


def _indexed_run(index: Path) -> Path | None:
    """The run folder a notebook index points at (resolved), or None if it names none: a
    damaged index is left to `cache verify` and to the build that reads it."""
    values = _read_json(index, RECORD_MAX_BYTES)
    source = values.get("run_dir") if isinstance(values, dict) else None
    if not isinstance(source, str) or not Path(source).is_absolute():
        return None
    return Path(source).resolve()


def _read_json(path: Path, max_bytes: int):
    """The JSON value in `path`, or None when it is missing, not a regular file, too large or
    not JSON: whatever a run or an entry left, prune goes on."""
    try:
        content = artifacts.read_regular(path, path.name, ValueError, max_bytes)
        return json.loads(content.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
