"""Where a run came from: versions, code commit, machine; and a digest of what it shows."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from pipeline import artifacts

# Keys of metrics.json that change from build to build without the results changing.
RUN_SPECIFIC_KEYS = {
    "seconds",
    "epoch_seconds",
    "epoch_rss_bytes",
    "seconds_per_image",
    "cache",
    "content_digest",
    "baseline",
    "resources",
}


def package_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Library versions without importing them (TensorFlow takes seconds to import)."""
    return {
        "python": platform.python_version(),
        "tensorflow": package_version("tensorflow", "tensorflow-cpu"),
        "keras": package_version("keras"),
        "numpy": package_version("numpy"),
        "weasyprint": package_version("weasyprint"),
        "papermill": package_version("papermill"),
        "dae-report": package_version("dae-report"),
    }


def git_commit(folder: Path = artifacts.PACKAGE_DIR) -> dict | None:
    """The project's commit and whether the working tree differs from it; None outside git."""

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def _without_run_specifics(value):
    if isinstance(value, dict):
        return {
            k: _without_run_specifics(v) for k, v in value.items() if k not in RUN_SPECIFIC_KEYS
        }
    if isinstance(value, list):
        return [_without_run_specifics(v) for v in value]
    return value


def content_digest(run_dir: Path) -> str:
    """SHA-256 over everything the report shows except the run's identity and times: the
    metrics, the config, every figure's bytes and the templates' text. Equal digests mean
    an unchanged report."""
    hasher = hashlib.sha256()
    metrics = _without_run_specifics(artifacts.read_json(run_dir / artifacts.METRICS))
    config = artifacts.read_json(run_dir / artifacts.CONFIG)
    hasher.update(json.dumps([metrics, config], sort_keys=True).encode())
    for path in sorted((run_dir / artifacts.FIGURES).iterdir()):
        hasher.update(path.name.encode() + b"\0" + path.read_bytes())
    templates = sorted(artifacts.TEMPLATES_DIR.glob("*.j2")) + sorted(
        artifacts.TEMPLATES_DIR.glob("*.css")
    )
    templates += sorted((artifacts.TEMPLATES_DIR / "locale").rglob("*.po"))
    for path in templates:
        hasher.update(path.name.encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()
