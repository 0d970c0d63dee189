"""Never retrain for nothing: trained models and executed notebooks, keyed by what made them.

Three kinds of entry, all under <reports>/.cache/:

- models/<key>/: a trained model and its history. The key covers the whole config but for the
  keys in MODEL_EXCLUDED, the dataset digests, the source of the stages that produce the model,
  and the library versions. A run with the same key loads the model instead of training it.
- notebooks/<key>.json: which finished run executed the lab notebook with these inputs (the
  whole config but for NOTEBOOK_EXCLUDED, and the code and text the notebook runs). When only
  the report's templates or cover changed, a build copies that run's notebook outputs and only
  re-renders the report.
- backup/<key>/: Keras BackupAndRestore's state while a model trains, so an interrupted build
  resumes from its last finished epoch.

A cache entry can be wrong only on the side of work done again. Each is written under a
temporary name and renamed into place, so no reader sees half of one; each records the SHA-256
digests of its files (and of itself), checked on every read. A damaged entry is discarded with
one line naming it, and what it held is made again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline import artifacts, provenance
from pipeline.config import COVER_KEYS, differences
from pipeline.errors import DaeReportError
from pipeline.progress import report

CACHE_DIR = ".cache"
RECORD = "record.json"  # inside models/<key>/, next to model.keras
# A record holds a few hundred numbers per epoch; anything far larger is not one of ours.
MAX_RECORD_BYTES = 64 * 2**20

# The code that decides the trained weights. A build trains inside the lab notebook: its code
# cells up to the fit (pipeline.notebook.training_code), with the harness's fit and seeding.
# `dae-report compare` trains with the package's own data, noise and model.
TRAINING_CODE = ("train.py", "environment.py", "harness.py")
COMPARE_TRAINING_CODE = ("data.py", "noise.py", "model.py", "train.py", "environment.py")

# Config keys that provably do not change what an entry holds, by full dotted name. Every other
# key, including any added later, is part of the key: forgetting one here costs a rerun, never a
# wrong result. tests/test_cache.py changes each key in turn and checks both lists.
PRESENTATION = (
    # The report's cover: read when the HTML is rendered, after the notebook has run.
    *COVER_KEYS,
    "report.instructor_copy",  # marks the report and answer key after the notebook has run
    # The quality gate: read by the gate stage, after the notebook has run.
    "quality.max_regression.psnr_db",
    "quality.max_regression.mse_relative",
    "quality.max_regression.ssim",
    "quality.max_regression.val_loss_relative",
)
# report.lang is not here: the notebook's cells, printed text and answers are translated.
NOTEBOOK_EXCLUDED = PRESENTATION
MODEL_EXCLUDED = PRESENTATION + (
    "profile",  # a name for a set of values, each in the key itself; training never reads it
    "report.lang",  # the language of the text around the model, not of its training
    # The studies after training (§10): they use the trained model, never change it.
    "evaluation.baselines",
    "evaluation.generalisation",
    "evaluation.selection_images",
    "evaluation.generalisation_images",
)


class CacheDamaged(DaeReportError):
    """`dae-report cache verify` found entries that cannot be used (exit code 3)."""

    exit_code = 3


class Damaged(Exception):
    """Why one cache entry cannot be used; never leaves this module."""


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_digests(paths) -> dict[str, str]:
    return {Path(p).name: _file_digest(Path(p)) for p in paths}


def without(config: dict, excluded) -> dict:
    """`config` (a `Config.to_dict()`) less the dotted keys `excluded`."""
    kept = copy.deepcopy(config)
    for name in excluded:
        *sections, leaf = name.split(".")
        table = kept
        for section in sections:
            table = table[section]
        del table[leaf]
    return kept


def training_inputs(
    config: dict, dataset_digests: dict, machine: dict, notebook_code: str | None = None
) -> dict:
    """Everything that decides the trained model, as plain data (the cache key hashes it).
    `machine`: the precision and XLA this machine uses (environment.machine_choices: only what
    was chosen, not the measurements behind it). `notebook_code`: the lab's code up to its fit,
    for a model the notebook trains; None for one that `dae-report compare` trains. Markdown
    text is not code: editing it retrains nothing."""
    if notebook_code is None:
        code = file_digests(artifacts.PACKAGE_DIR / name for name in COMPARE_TRAINING_CODE)
    else:
        code = file_digests(artifacts.PACKAGE_DIR / name for name in TRAINING_CODE)
        code[artifacts.LAB_NOTEBOOK.name] = digest(notebook_code)
    return {
        "config": without(config, MODEL_EXCLUDED),
        "machine": {name: choice["used"] for name, choice in machine.items()},
        "dataset": dataset_digests,
        "code": code,
        "versions": {
            name: provenance.versions()[name] for name in ("tensorflow", "keras", "numpy")
        },
    }


def notebook_inputs(training: dict, config: dict) -> dict:
    """Everything that decides the executed notebook: the training inputs, the config but for
    the report's presentation, and the code and text it runs (the notebook, every pipeline
    module, the answers, the catalogs)."""
    sources = [artifacts.LAB_NOTEBOOK, artifacts.TEMPLATES_DIR / "answers.html.j2"]
    sources += sorted(artifacts.PACKAGE_DIR.glob("*.py"))
    sources += sorted((artifacts.TEMPLATES_DIR / "locale").rglob("*.po"))
    return {
        "training": training,
        "config": without(config, NOTEBOOK_EXCLUDED),
        "code": file_digests(sources),
    }


@dataclass
class ModelCache:
    """The model cache of one training key; the notebook's training cell uses it."""

    root: Path
    inputs: dict
    run_id: str
    retrain: bool = False

    @property
    def key(self) -> str:
        return digest(self.inputs)[:16]

    @property
    def entry(self) -> Path:
        return self.root / "models" / self.key

    @property
    def backup_dir(self) -> Path:
        return self.root / "backup" / self.key

    def lookup(self) -> dict | None:
        """The cached model's record, or None when it must be trained. A damaged entry is
        discarded with one line saying why, and the model is trained again."""
        if self.retrain or not os.path.lexists(self.entry):
            return None
        try:
            return check_model(self.entry)
        except Damaged as damage:
            _discard(self.entry)
            report(f"cache: discarded models/{self.key}: {damage}; training again")
            return None

    def check_backup(self) -> None:
        """Discard the resume state of an interrupted build if it cannot be read, so that the
        model trains from its first epoch instead of failing at every build."""
        if not os.path.lexists(self.backup_dir):
            return
        try:
            check_backup(self.backup_dir)
        except Damaged as damage:
            _discard(self.backup_dir)
            report(f"cache: discarded backup/{self.key}: {damage}; training from the first epoch")

    def store(self, model, history: dict) -> None:
        """Save model and history as one entry, atomically. Another build that stored the same
        key first keeps its entry; a retraining build (or a damaged entry) is replaced."""
        models = self.root / "models"
        models.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=models, prefix=f".{self.key}."))
        try:
            model.save(staging / artifacts.MODEL)
            record = {
                "key": self.key,
                "run": self.run_id,
                "stored": time.time(),
                "history": history,
                "inputs": self.inputs,
                "files": file_digests([staging / artifacts.MODEL]),
            }
            _write_sealed(staging / RECORD, record)
            _install(staging, self.entry, replace=self.retrain)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was installed

    def model_path(self) -> Path:
        return self.entry / artifacts.MODEL

    def decision(self, record: dict | None, resumed_from_epoch: int = 0) -> dict:
        """What the report says about the model: trained here or reused, and why."""
        if record is not None:
            return {
                "trained": False,
                "key": self.key,
                "reused_from": record["run"],
                "reason": "same-inputs",
            }
        if self.retrain:
            return {
                "trained": True,
                "key": self.key,
                "reason": "retrain",
                "resumed_from_epoch": resumed_from_epoch,
            }
        previous = self._latest_record()
        changed = (
            sorted(differences(previous["inputs"], self.inputs)) if previous is not None else []
        )
        return {
            "trained": True,
            "key": self.key,
            "reason": "changed" if previous is not None else "first",
            "changed": changed,
            "compared_with": previous["run"] if previous is not None else None,
            "resumed_from_epoch": resumed_from_epoch,
        }

    def _latest_record(self) -> dict | None:
        records = []
        for path in (self.root / "models").glob(f"*/{RECORD}"):
            if path.parent.name == self.key or path.parent.name.startswith("."):
                continue
            try:
                record = _read_sealed(path)
            except Damaged:
                continue  # a damaged record is no comparison
            if isinstance(record.get("inputs"), dict) and isinstance(
                record.get("stored"), (int, float)
            ):
                records.append(record)
        return max(records, key=lambda record: record["stored"], default=None)


# The notebook's outputs that a later build may reuse; figures/ is copied whole.
NOTEBOOK_OUTPUTS = (artifacts.ANSWER_KEY, artifacts.METRICS, artifacts.MODEL)


def remember_notebook(root: Path, key: str, run_dir: Path) -> None:
    """Index `run_dir` as the run whose notebook ran with inputs `key`, with the digests of the
    outputs a later build will copy from it."""
    names = list(NOTEBOOK_OUTPUTS)
    names += sorted(
        path.relative_to(run_dir).as_posix()
        for path in (run_dir / artifacts.FIGURES).rglob("*")
        if path.is_file()
    )
    files = {name: _file_digest(run_dir / name) for name in names}
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    index = {"run_dir": str(run_dir.resolve()), "files": files}
    _write_sealed(root / "notebooks" / f"{key}.json", index)


def reuse_notebook(root: Path, key: str, run_dir: Path, warn) -> Path | None:
    """Copy the notebook outputs of the earlier run indexed under `key` into `run_dir`, each
    checked against its digest as it is copied; return that run's folder.

    None when there is no such run: then the notebook must run. A damaged entry (index or
    outputs) is discarded, whatever was copied is removed, and `warn` gets one line saying so.
    """
    index = root / "notebooks" / f"{key}.json"
    if not os.path.lexists(index):
        return None
    try:
        source, files = _notebook_entry(index)
        for name, expected in files.items():
            _copy_checked(source, run_dir, name, expected)
    except Damaged as damage:
        for name in NOTEBOOK_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / artifacts.FIGURES, ignore_errors=True)
        _discard(index)
        warn(f"cache: discarded notebooks/{key}: {damage}; executing the notebook again")
        return None
    return source


# Checking entries ---------------------------------------------------------------------------


def check_model(entry: Path) -> dict:
    """The record of the model entry `entry`, once it and model.keras match their digests."""
    record = _read_sealed(entry / RECORD)
    if record.get("key") != entry.name:
        raise Damaged(f"{RECORD} is the record of another key")
    _check_files(entry, record, (artifacts.MODEL,))
    return record


def check_backup(backup: Path) -> None:
    """Resume state that Keras and EpochProgress can read: its JSON parses, its HDF5 opens."""
    import h5py

    try:
        paths = sorted(backup.iterdir())
    except OSError as error:
        raise Damaged(f"cannot be read: {error.strerror}") from None
    for path in paths:
        _regular(path, path.name)
        if path.name.endswith(".json"):
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise Damaged(f"{path.name} is not valid JSON") from None
        elif path.name.endswith((".h5", ".h5.bkp")):
            try:
                with h5py.File(path, "r"):
                    pass
            except (OSError, ValueError):
                raise Damaged(f"{path.name} is not a readable weights file") from None


def _notebook_entry(index: Path) -> tuple[Path, dict[str, str]]:
    """The earlier run and the digests of its outputs, from a sound notebook index."""
    values = _read_sealed(index)
    source = values.get("run_dir")
    if not isinstance(source, str) or not Path(source).is_absolute():
        raise Damaged(f"{index.name} names no run folder")
    source = Path(source)
    if not source.is_dir():
        raise Damaged(f"its run {source.name} no longer exists")
    files = values.get("files")
    _check_names(index.name, files, NOTEBOOK_OUTPUTS)
    for name in files:  # only what the notebook made: never run.json or config.json
        if name not in NOTEBOOK_OUTPUTS and not name.startswith(f"{artifacts.FIGURES}/"):
            raise Damaged(f"{index.name} names a file the notebook does not make: {name!r}")
    return source, files


def _check_notebook(index: Path) -> None:
    source, files = _notebook_entry(index)
    for name, expected in files.items():
        if _checked_digest(source / name, f"run {source.name}: {name}") != expected:
            raise Damaged(f"run {source.name}: {name} does not match its digest")


def _check_files(folder: Path, record: dict, required: tuple[str, ...]) -> None:
    files = record.get("files")
    _check_names(RECORD, files, required)
    for name, expected in files.items():
        if _checked_digest(folder / name, name) != expected:
            raise Damaged(f"{name} does not match its digest")


def _check_names(owner: str, files, required: tuple[str, ...]) -> None:
    """`files` maps relative paths inside the entry (none leaving it) to SHA-256 digests."""
    if not isinstance(files, dict) or not all(isinstance(value, str) for value in files.values()):
        raise Damaged(f"{owner} lists no file digests")
    for name in files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise Damaged(f"{owner} names a file outside its entry: {name!r}")
    missing = [name for name in required if name not in files]
    if missing:
        raise Damaged(f"{owner} has no digest of {missing[0]}")


def _regular(path: Path, name: str) -> Path:
    """`path`, if it is a regular file (a FIFO would block the read; a link could lead out)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise Damaged(f"{name} is missing") from None
    except OSError as error:
        raise Damaged(f"{name} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        raise Damaged(f"{name} is not a regular file")
    return path


def _file_digest(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _checked_digest(path: Path, name: str) -> str:
    try:
        return _file_digest(_regular(path, name))
    except OSError as error:
        raise Damaged(f"{name} cannot be read: {error.strerror}") from None


def _copy_checked(source: Path, target: Path, name: str, expected: str) -> None:
    """Copy source/name to target/name, hashing the bytes copied: what lands is what was kept."""
    origin = _regular(source / name, f"run {source.name}: {name}")
    destination = target / name
    destination.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    try:
        with open(origin, "rb") as reader, open(destination, "wb") as writer:
            while chunk := reader.read(1 << 20):
                hasher.update(chunk)
                writer.write(chunk)
    except OSError as error:
        raise Damaged(f"run {source.name}: {name} cannot be copied: {error.strerror}") from None
    if hasher.hexdigest() != expected:
        raise Damaged(f"run {source.name}: {name} does not match its digest")
    shutil.copystat(origin, destination)


def _write_sealed(path: Path, values: dict) -> None:
    """JSON with the digest of its own content, written atomically."""
    plain = artifacts._plain(values)  # what read_json will give back: lists, None for NaN
    artifacts.write_json(path, {**plain, "digest": digest(plain)})


def _read_sealed(path: Path) -> dict:
    name = path.name
    try:
        if _regular(path, name).stat().st_size > MAX_RECORD_BYTES:
            raise Damaged(f"{name} is larger than any record this tool writes")
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise Damaged(f"{name} cannot be read: {error.strerror}") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Damaged(f"{name} is not valid JSON") from None
    if not isinstance(values, dict) or not isinstance(values.get("digest"), str):
        raise Damaged(f"{name} has no digest")
    sealed = values.pop("digest")
    if digest(values) != sealed:
        raise Damaged(f"{name} does not match its digest")
    return values


def _install(staging: Path, entry: Path, replace: bool) -> None:
    """Rename `staging` to `entry`. An existing sound entry stays unless `replace`."""
    try:
        os.rename(staging, entry)  # atomic; fails if the entry exists
        return
    except OSError:
        pass
    if not replace:
        try:
            check_model(entry)
            return  # another build got there first with the same model
        except Damaged:
            pass
    _discard(entry)
    try:
        os.rename(staging, entry)
    except OSError:
        pass  # yet another build installed one in between: it is as fresh as this one


def _discard(path: Path) -> None:
    """Remove an entry: renamed out of the way first (atomic), so no build reads half of it."""
    trash = path.with_name(f".{path.name}.discarded-{os.getpid()}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return  # another build discarded it first
    except OSError:
        trash = path
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)


# `dae-report cache verify` and `dae-report cache clear` -------------------------------------

KINDS = ("models", "notebooks", "backup")
# Temporaries (staging folders, discarded entries) younger than this may belong to a build
# that is running now: `clear` leaves them.
TEMPORARY_GRACE_SECONDS = 24 * 3600


def entries(root: Path) -> list[Path]:
    """Every entry under the cache folder `root`, models first."""
    found = []
    for kind in KINDS:
        folder = root / kind
        if folder.is_dir():
            found += sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    return found


def label(entry: Path) -> str:
    """How the tool names an entry: models/<key>, notebooks/<key>, backup/<key>."""
    return f"{entry.parent.name}/{entry.name.removesuffix('.json')}"


def problem(entry: Path) -> str | None:
    """Why `entry` cannot be used, or None when it is sound."""
    try:
        if entry.parent.name == "models":
            check_model(entry)
        elif entry.parent.name == "notebooks":
            _check_notebook(entry)
        else:
            check_backup(entry)
    except Damaged as damage:
        return str(damage)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    return None


def verify(*, out_dir: Path, stream) -> int:
    """Check every entry of `out_dir`'s cache; one line per damaged one. Returns how many were
    checked; raises CacheDamaged when any is damaged."""
    root = Path(out_dir) / CACHE_DIR
    found = entries(root)
    bad = 0
    for entry in found:
        reason = problem(entry)
        if reason is not None:
            bad += 1
            stream.write(f"{label(entry)}: {reason}\n")
    if bad:
        raise CacheDamaged(
            f"{bad} of {len(found)} cache entries in {root} cannot be used: a build discards and "
            "remakes each one it needs; `dae-report cache clear` removes them all"
        )
    if found:
        stream.write(f"{len(found)} cache entries in {root}: all sound\n")
    else:
        stream.write(f"no cache entries in {root}\n")
    return len(found)


def clear(*, out_dir: Path, older_than_days: float | None = None, stream) -> tuple[int, int]:
    """Remove the cache entries of `out_dir` (those older than `older_than_days`, if given) and
    the temporaries interrupted builds left; returns (entries removed, bytes freed)."""
    root = Path(out_dir) / CACHE_DIR
    now = time.time()
    cutoff = None if older_than_days is None else now - older_than_days * 86400
    removed = freed = 0
    for entry in entries(root):
        if cutoff is not None and _modified(entry) >= cutoff:
            continue
        size = _size(entry)
        _discard(entry)
        removed, freed = removed + 1, freed + size
    for kind in KINDS:
        folder = root / kind
        leftovers = sorted(folder.glob(".*")) if folder.is_dir() else []
        for temporary in leftovers:
            if _modified(temporary) < now - TEMPORARY_GRACE_SECONDS:
                freed += _size(temporary)
                _discard(temporary)
    age = "" if older_than_days is None else f" older than {older_than_days:g} day"
    age += "s" if older_than_days not in (None, 1) else ""
    stream.write(f"removed {removed} cache entries{age} from {root}, freed {_human(freed)}\n")
    return removed, freed


def _modified(path: Path) -> float:
    """When an entry last changed: the newest of it and what it holds."""
    return max((status.st_mtime for status in _statuses(path)), default=0.0)


def _size(path: Path) -> int:
    return sum(status.st_size for status in _statuses(path) if not stat.S_ISDIR(status.st_mode))


def _statuses(path: Path) -> list[os.stat_result]:
    """lstat of `path` and of all it holds; what a running build removes meanwhile is skipped."""
    items = [path]
    if path.is_dir() and not path.is_symlink():
        items += list(path.rglob("*"))
    statuses = []
    for item in items:
        try:
            statuses.append(item.lstat())
        except OSError:
            continue
    return statuses


def _human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"
