"""Never retrain for nothing: trained models and executed notebooks, keyed by what made them.

Two levels, both under <reports>/.cache/:

- models/<key>/: a trained model and its history. The key covers the training-relevant config,
  the dataset digests, the source of the stages that produce the model, and the library
  versions. A run with the same key loads the model instead of training it.
- notebooks/<key>.json: which finished run executed the lab notebook with these inputs. When
  only the report's templates or text changed, a build copies that run's notebook outputs and
  only re-renders the report.
- backup/<key>/: Keras BackupAndRestore's state while a model trains, so an interrupted build
  resumes from its last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import artifacts, provenance

CACHE_DIR = ".cache"

# The modules whose code decides the trained weights.
TRAINING_CODE = ("data.py", "noise.py", "model.py", "train.py", "environment.py")
# Config sections that do not change the model (only what the report says about it).
REPORT_ONLY = ("report", "quality", "profile", "evaluation")


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_digests(paths) -> dict[str, str]:
    return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def training_inputs(config: dict, dataset_digests: dict) -> dict:
    """Everything that decides the trained model, as plain data (the cache key hashes it)."""
    return {
        "config": {key: value for key, value in config.items() if key not in REPORT_ONLY},
        "dataset": dataset_digests,
        "code": file_digests(artifacts.PACKAGE_DIR / name for name in TRAINING_CODE),
        "versions": {name: provenance.versions()[name] for name in ("tensorflow", "keras", "numpy")},
    }


def notebook_inputs(training: dict, config: dict) -> dict:
    """Everything that decides the executed notebook: the training inputs, the notebook and
    the code and text it runs (every pipeline module, the answers, the catalogs), the language."""
    sources = [artifacts.LAB_NOTEBOOK, artifacts.TEMPLATES_DIR / "answers.html.j2"]
    sources += sorted(artifacts.PACKAGE_DIR.glob("*.py"))
    sources += sorted((artifacts.TEMPLATES_DIR / "locale").rglob("*.po"))
    return {"training": training, "lang": config["report"]["lang"], "code": file_digests(sources)}


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
        """The cached model's record, or None when it must be trained."""
        if self.retrain or not (self.entry / "record.json").is_file():
            return None
        return artifacts.read_json(self.entry / "record.json")

    def store(self, model, history: dict) -> None:
        """Save model and history; a concurrent build storing the same key is harmless."""
        self.root.joinpath("models").mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root / "models", prefix=f".{self.key}."))
        model.save(staging / artifacts.MODEL)
        record = {"key": self.key, "run": self.run_id, "stored": time.time(), "history": history,
                  "inputs": self.inputs}  # fmt: skip
        artifacts.write_json(staging / "record.json", record)
        try:
            os.rename(staging, self.entry)  # atomic; fails if another build got there first
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)

    def model_path(self) -> Path:
        return self.entry / artifacts.MODEL

    def decision(self, record: dict | None, resumed_from_epoch: int = 0) -> dict:
        """What the report says about the model: trained here or reused, and why."""
        if record is not None:
            return {"trained": False, "key": self.key, "reused_from": record["run"], "reason": "same-inputs"}
        if self.retrain:
            return {"trained": True, "key": self.key, "reason": "retrain", "resumed_from_epoch": resumed_from_epoch}
        previous = self._latest_record()
        changed = (
            sorted(_changed(previous["inputs"], self.inputs)) if previous is not None else []
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
        for path in (self.root / "models").glob("*/record.json"):
            if path.parent.name == self.key:
                continue
            try:
                records.append(artifacts.read_json(path))
            except (OSError, ValueError):
                continue
        return max(records, key=lambda record: record["stored"], default=None)


def _changed(before: dict, after: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ: config.training.epochs, code.train.py, …"""
    names = []
    for key in sorted(set(before) | set(after)):
        name = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += _changed(old, new, f"{name}.")
        elif old != new:
            names.append(name)
    return names


def find_notebook(root: Path, key: str) -> Path | None:
    """A finished run whose notebook ran with inputs `key`, if its outputs are still there."""
    index = root / "notebooks" / f"{key}.json"
    if not index.is_file():
        return None
    run_dir = Path(artifacts.read_json(index)["run_dir"])
    needed = (artifacts.ANSWER_KEY, artifacts.METRICS, artifacts.MODEL, artifacts.FIGURES)
    return run_dir if all((run_dir / name).exists() for name in needed) else None


def remember_notebook(root: Path, key: str, run_dir: Path) -> None:
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    artifacts.write_json(root / "notebooks" / f"{key}.json", {"run_dir": str(run_dir.resolve())})


def copy_notebook_outputs(source: Path, target: Path) -> None:
    """An earlier run's notebook outputs, for a build whose notebook inputs are unchanged."""
    for name in (artifacts.ANSWER_KEY, artifacts.METRICS, artifacts.MODEL):
        shutil.copy2(source / name, target / name)
    shutil.copytree(source / artifacts.FIGURES, target / artifacts.FIGURES)
