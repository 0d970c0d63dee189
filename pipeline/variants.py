"""Per-student variants of one assignment: which settings vary, and which value each student draws.

VARIANTS.toml names the assignment, the profile, the settings that vary with their allowed values
and the settings every variant shares:

    assignment = "dae-2026"
    profile = "full"
    [vary]                      # each a list of values; a student draws one of each
    "noise.std" = [0.3, 0.4, 0.5]
    "noise.type" = ["gaussian", "speckle"]
    [set]                       # shared by every variant, like --set
    "training.epochs" = 20

A student's draw is HMAC-SHA256 keyed by the course secret over (assignment, student id): the
same on every machine and every re-run, unguessable without the secret (a student who knows a
classmate's id cannot work out their variant), and uniform over the values. The roster never
holds the secret.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import config as config_module
from pipeline.errors import ConfigError

SECRET_ENV = "DAE_COURSE_SECRET"
TOP_LEVEL = {"assignment", "profile", "vary", "set"}
ASSIGNMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Every variant is the instructor's copy: its report and answer key say "do not distribute".
INSTRUCTOR_COPY = {"report.instructor_copy": True}


@dataclass(frozen=True)
class Variants:
    assignment: str
    profile: str
    vary: dict[str, tuple]  # setting -> its allowed values, in the file's order
    shared: dict[str, Any] = field(default_factory=dict)  # [set]

    def combinations(self) -> list[dict[str, Any]]:
        """Every distinct variant (the product of the values), in a stable order."""
        keys = list(self.vary)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*self.vary.values())
        ]


def load(path: Path) -> Variants:
    """VARIANTS.toml, checked in full: every combination must make a valid config."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(values) - TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(TOP_LEVEL))})"
        )
    assignment = values.get("assignment")
    if not isinstance(assignment, str) or not ASSIGNMENT_NAME.fullmatch(assignment):
        raise ConfigError(
            f"{path}: `assignment` = {assignment!r} must be a name of letters, digits, '.', '-' "
            "and '_', e.g. \"dae-2026\" (it names the batch folder)"
        )
    profile = values.get("profile", "full")
    vary = values.get("vary", {})
    for key, allowed in vary.items():
        if (
            not isinstance(allowed, list)
            or not allowed
            or len(set(map(repr, allowed))) != len(allowed)
        ):
            raise ConfigError(f"{path}: vary.{key!r} must be a list of distinct values")
    variants = Variants(
        assignment, profile, {k: tuple(v) for k, v in vary.items()}, values.get("set", {})
    )
    for combination in variants.combinations():
        settings(variants, combination)  # a value the config refuses fails now, before any work
    return variants


def settings(variants: Variants, combination: dict[str, Any]) -> config_module.Config:
    """The config of one variant: the profile, marked as the instructor's copy, then [set],
    then the drawn values."""
    values = {**INSTRUCTOR_COPY, **variants.shared, **combination}
    overrides = [f"{key}={_toml_value(value)}" for key, value in values.items()]
    return config_module.load_config(variants.profile, overrides=overrides)


def _toml_value(value: Any) -> str:
    """A TOML literal for --set: strings quoted, lists as arrays, numbers and booleans as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def secret(secret_file: Path | None = None) -> bytes:
    """The course secret, from `secret_file` or $DAE_COURSE_SECRET; never from the roster."""
    if secret_file is not None:
        try:
            value = Path(secret_file).read_bytes().strip()
        except OSError as error:
            raise ConfigError(
                f"cannot read the secret file {secret_file}: {error.strerror}"
            ) from None
    else:
        value = os.environ.get(SECRET_ENV, "").strip().encode()
    if not value:
        raise ConfigError(
            f"no course secret: set {SECRET_ENV} "
            f"(e.g. export {SECRET_ENV}=$(openssl rand -hex 16)) "
            "or pass --secret-file FILE; keep it, as it decides every student's variant"
        )
    return value


def draw(variants: Variants, student_id: str, course_secret: bytes) -> dict[str, Any]:
    """The student's value of each varying setting: a pure function of (assignment, student id,
    secret). Each setting reads its own 8 bytes of the HMAC, so adding a value to one setting
    does not reshuffle the others."""
    message = f"{variants.assignment}\0{student_id}".encode()
    drawn = {}
    for key, allowed in variants.vary.items():
        digest = hmac.new(course_secret, message + b"\0" + key.encode(), hashlib.sha256).digest()
        drawn[key] = allowed[int.from_bytes(digest[:8], "big") % len(allowed)]
    return drawn


@dataclass(frozen=True)
class Variant:
    """One distinct draw of the class set and the students who drew it."""

    name: str  # v<n>: the n-th combination of VARIANTS.toml, the same whoever is on the roster
    values: dict[str, Any]  # the drawn settings
    config: config_module.Config
    key: str  # its notebook cache key
    students: tuple = ()  # roster.Student, in roster order


def plan(variants: Variants, students, course_secret: bytes, digests: dict[str, str]) -> list:
    """Each distinct variant with its students, in the order of VARIANTS.toml's combinations.

    A class of 120 drawing 6 distinct settings gets 6 variants, one build each. What is distinct
    is what the notebook cache key says (pipeline.build.notebook_keys): a [vary] setting that
    leaves the key unchanged (the cover's text, the gate's thresholds) would give students
    the same lab under different names, and is refused. The keys leave out the machine's
    choices (precision, XLA): they only tell this class's variants apart."""
    from pipeline.build import notebook_keys

    combinations = variants.combinations()
    names = {_identity(values): f"v{number}" for number, values in enumerate(combinations, 1)}
    keys: dict[str, dict] = {}
    for values in combinations:
        key = notebook_keys(settings(variants, values), digests, {})[1]
        if key in keys:
            same = [name for name in values if values[name] != keys[key][name]]
            raise ConfigError(
                f"vary.{same[0]!r}: {keys[key][same[0]]!r} and {values[same[0]]!r} give the "
                "same lab (the build does not depend on it); move it to [set]"
            )
        keys[key] = values
    groups: dict[tuple, Variant] = {}
    for student in students:
        values = draw(variants, student.id, course_secret)
        identity = _identity(values)
        if identity not in groups:
            config = settings(variants, values)
            key = notebook_keys(config, digests, {})[1]
            groups[identity] = Variant(names[identity], values, config, key)
        variant = groups[identity]
        groups[identity] = dataclasses.replace(variant, students=variant.students + (student,))
    return sorted(groups.values(), key=lambda variant: int(variant.name[1:]))


def _identity(values: dict[str, Any]) -> tuple:
    return tuple((key, repr(value)) for key, value in values.items())
