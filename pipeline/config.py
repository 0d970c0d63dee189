"""One typed, frozen configuration: defaults ← profile ← TOML file ← --set overrides.

Every default is the lab's own value (practica-dae-fashion-mnist.md) unless its comment says
otherwise. Unknown keys, wrong types and out-of-range values raise ConfigError before any work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import artifacts, logo
from pipeline.errors import ConfigError
from pipeline.i18n import LANGUAGES  # the report's languages: those with a catalog


def _range(low=None, high=None, *, low_open=False, high_open=False):
    """Field metadata: the closed or open interval a value must lie in."""
    return {"low": low, "high": high, "low_open": low_open, "high_open": high_open}


@dataclass(frozen=True)
class DataConfig:
    # None: every image, as in the lab. Limits take the first N images of each set.
    train_limit: int | None = field(default=None, metadata=_range(1))
    test_limit: int | None = field(default=None, metadata=_range(1))


@dataclass(frozen=True)
class NoiseConfig:
    # The lab trains on Gaussian noise; §9 asks about others, which the model can train on too.
    type: str = field(
        default="gaussian", metadata={"choices": ("gaussian", "poisson", "speckle", "salt_pepper")}
    )
    mean: float = field(default=0.0, metadata=_range(-1.0, 1.0))
    # The lab's helper defaults to 0.3 but §3 calls it with std=0.4: 0.4 is what it trains on.
    std: float = field(default=0.4, metadata=_range(0.0, 5.0, low_open=True))
    # [low, high]: train on a std drawn per image in this range (test stays at `std`).
    std_range: tuple[float, float] | None = field(
        default=None, metadata=_range(0.0, 5.0, low_open=True)
    )
    peak: float = field(
        default=10.0, metadata=_range(0.0, 1e6, low_open=True)
    )  # poisson: photons at white
    amount: float = field(
        default=0.1, metadata=_range(0.0, 1.0, low_open=True, high_open=True)
    )  # salt_pepper

    def __post_init__(self) -> None:
        if self.std_range is not None and self.type != "gaussian":  # noise.corrupt would ignore it
            raise ConfigError(
                f"noise.std_range applies to gaussian noise only, not noise.type = {self.type!r}"
            )


# Each model (pipeline.model builds them) with the loss it trains on when training.loss is
# "auto": the lab's binary cross-entropy for the lab's model; MSE, what PSNR measures, for the
# others.
MODEL_LOSSES = {"lab": "binary_crossentropy", "residual": "mse", "unet": "mse"}
RESIDUAL_DEPTH = 8  # convolutions of the residual model (not a setting)


def loss_for(model_name: str, loss: str) -> str:
    """The loss a model trains on: `loss`, or with "auto" the model's own."""
    return MODEL_LOSSES[model_name] if loss == "auto" else loss


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(default="lab", metadata={"choices": tuple(MODEL_LOSSES)})
    # Base channel count of the residual and U-Net models; the lab's model ignores it.
    width: int = field(default=32, metadata=_range(4, 256))


@dataclass(frozen=True)
class SplitConfig:
    # The first 10 % of the training set is validation (§4: x_train[:val_size]).
    val_fraction: float = field(
        default=0.1, metadata=_range(0.0, 1.0, low_open=True, high_open=True)
    )


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = field(default=20, metadata=_range(1, 10_000))
    batch_size: int = field(default=256, metadata=_range(1, 65_536))
    learning_rate: float = field(default=1e-3, metadata=_range(0.0, 1e6, low_open=True))
    # auto: the model's own loss (binary cross-entropy for the lab's, MSE for the others).
    loss: str = field(
        default="auto", metadata={"choices": ("auto", "binary_crossentropy", "mse", "mae")}
    )
    # constant: the lab's fixed learning rate; cosine: decays it to zero over the run.
    schedule: str = field(default="constant", metadata={"choices": ("constant", "cosine")})
    # XLA compilation: 0.4-0.5× the speed for the lab's model on the CPUs measured, 1.1-2× for
    # the U-Net on one of them (benchmarks/train_options.py). "auto" measures it on this machine
    # once (pipeline.probe); off unless a profile or the user turns it on.
    jit_compile: bool | str = field(default=False, metadata={"choices": (False, True, "auto")})
    # auto: mixed bfloat16 where the hardware computes it natively (AVX512_BF16 or AMX on the
    # CPU, a GPU of compute capability 8.0 or newer), float32 elsewhere: emulated bfloat16 is
    # several times slower (pipeline.environment.choose_precision).
    precision: str = field(default="auto", metadata={"choices": ("auto", "float32", "bfloat16")})
    # oneDNN's custom ops (TensorFlow's TF_ENABLE_ONEDNN_OPTS): on by TensorFlow's own choice
    # only on some CPUs; on an AVX2 one where it left them off, they trained the lab's model
    # 1.4-1.9× faster, deterministic, with the same test MSE to 3 % (README, Performance). "auto"
    # keeps the variable if the user set it, else measures both on this machine once
    # (pipeline.probe) and turns them on where they are at least 10 % faster.
    onednn: bool | str = field(default="auto", metadata={"choices": (False, True, "auto")})


@dataclass(frozen=True)
class EvaluationConfig:
    """Beyond the lab (§9): classical baselines and noise the model was not trained on."""

    baselines: bool = True
    generalisation: bool = True
    # Validation images that choose each classical parameter (never test images).
    # 1000, 300 and 100 chose the same value for every method and variant (benchmarks/
    # baselines.py), at a tenth of the time for 100 → 300 keeps a margin.
    selection_images: int = field(default=300, metadata=_range(1))
    # Test images of the generalisation study (each condition runs the baseline on them).
    generalisation_images: int = field(default=2000, metadata=_range(1))


@dataclass(frozen=True)
class MaxRegression:
    """How much worse than the earlier run a headline metric may get before the build exits 1."""

    psnr_db: float = field(default=0.3, metadata=_range(0.0, 100.0))  # dB of PSNR lost
    mse_relative: float = field(default=0.05, metadata=_range(0.0, 100.0))  # 0.05: MSE up 5 %
    ssim: float = field(default=0.01, metadata=_range(0.0, 1.0))  # mean SSIM lost
    val_loss_relative: float = field(default=0.02, metadata=_range(0.0, 100.0))


@dataclass(frozen=True)
class QualityConfig:
    max_regression: MaxRegression = MaxRegression()


LOGO_TYPES = (".png", ".jpg", ".jpeg", ".svg")


@dataclass(frozen=True)
class ReportConfig:
    title: str | None = None  # None: the lab's own title, in the report's language
    lang: str = field(default="es", metadata={"choices": LANGUAGES})
    # Shown on the cover of the report and the handout; None leaves the line out.
    course: str | None = None
    instructor: str | None = None
    institution: str | None = None
    date: str | None = None  # None: the day of the run
    logo: str | None = field(default=None, metadata={"file": LOGO_TYPES})  # a local image
    # The instructor's copy: every page of the report and the answer key says "do not
    # distribute" (`dae-report batch` sets it for each variant's key).
    instructor_copy: bool = False


# The cover's text and logo: what the report shows about the course, never a number of the run.
COVER_KEYS = tuple(
    f"report.{name}" for name in ("title", "course", "instructor", "institution", "date", "logo")
)


@dataclass(frozen=True)
class Config:
    seed: int = field(default=123, metadata=_range(0, 2**32 - 1))  # lab §0: SEED = 123
    profile: str = "full"
    data: DataConfig = DataConfig()
    noise: NoiseConfig = NoiseConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    report: ReportConfig = ReportConfig()
    quality: QualityConfig = QualityConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: tuples become lists (papermill passes a tuple parameter to the
        notebook as its str(), which the kernel's Config.from_dict rejects)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Rebuild a config from `to_dict()` output (e.g. config.json), checking it again."""
        return _build(cls, values, prefix="")


# Each profile is a set of overrides on the defaults. `full` is exactly the lab; `quick`
# exercises every stage on a few thousand images in well under two minutes on 2 CPU cores.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "data": {"train_limit": 4000, "test_limit": 1000},
        "training": {"epochs": 2},
        "evaluation": {"selection_images": 300, "generalisation_images": 300},
    },
    # The lab's quality (test MSE <= 0.0118) in under a tenth of its time: one epoch of a U-Net of
    # 8 base channels, small batches, MSE and a cosine-decayed learning rate, with XLA where this
    # machine measures it faster; chosen on measured trials (README, Performance). The
    # beyond-the-lab studies are left out: they cost more than this training.
    "fast": {
        "model": {"name": "unet", "width": 8},
        "training": {
            "epochs": 1,
            "batch_size": 64,
            "learning_rate": 5e-3,
            "loss": "mse",
            "schedule": "cosine",
            "jit_compile": "auto",
        },
        "evaluation": {"baselines": False, "generalisation": False},
    },
}


def differences(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> dict:
    """{dotted key: (before, after)} for each leaf that differs between two nested dicts (two
    configs' `to_dict()` or config.json, a cache's inputs); a key one side lacks is None there."""
    changed = {}
    for key in sorted(set(before) | set(after)):
        name = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changed.update(differences(old, new, f"{name}."))
        elif old != new:
            changed[name] = (old, new)
    return changed


def load_config(
    profile: str = "full",
    config_file: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    working_dir: Path | None = None,
) -> Config:
    """Resolve the run's config: defaults, then the profile, the TOML file, the --set overrides.

    A relative file setting (report.logo) is relative to the TOML file that names it, or, given
    with --set, to `working_dir` (the folder the command was typed in; default: the current one).
    The resolved config holds absolute paths only.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose one of: {', '.join(PROFILES)})")
    working_dir = Path.cwd() if working_dir is None else working_dir
    values: dict[str, Any] = {}
    _merge(values, PROFILES[profile])
    if config_file is not None:
        config_file = absolute(config_file, working_dir)
        _merge(values, _files_relative_to(_read_toml(config_file), config_file.parent))
    for item in overrides:
        key, value = _parse_override(item)
        for part in reversed(key.split(".")):  # quality.max_regression.psnr_db=0.5 nests
            value = {part: value}
        _merge(values, _files_relative_to(value, working_dir))
    if values.get("profile", profile) != profile:
        raise ConfigError("the profile is chosen with --profile, not in the config file or --set")
    values["profile"] = profile
    return _build(Config, values, prefix="")


def absolute(path: str | Path, base: Path) -> Path:
    """`path` (with ~ expanded) made absolute against `base`, without following links."""
    return Path(os.path.normpath(base / Path(path).expanduser()))


def _file_keys(
    cls: type | None = None, prefix: tuple[str, ...] = ()
) -> typing.Iterator[tuple[str, ...]]:
    """The keys of the settings that name a local file, e.g. ("report", "logo")."""
    hints = typing.get_type_hints(cls or Config)
    for item in dataclasses.fields(cls or Config):
        if dataclasses.is_dataclass(hints[item.name]):
            yield from _file_keys(hints[item.name], (*prefix, item.name))
        elif "file" in item.metadata:
            yield (*prefix, item.name)


def _files_relative_to(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """`values` with each relative file setting made absolute against `base` (in place)."""
    for *sections, name in _file_keys():
        table = values
        for section in sections:
            table = table.get(section) if isinstance(table, dict) else None
        if isinstance(table, dict) and isinstance(table.get(name), str) and table[name].strip():
            table[name] = str(absolute(table[name], base))
    return values


CONFIG_MAX_BYTES = 2**20  # a settings file is a few hundred bytes; a megabyte is not one


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        content = artifacts.read_regular(path, "config file", ConfigError, CONFIG_MAX_BYTES)
        return tomllib.loads(content.decode("utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None


def _parse_override(item: str) -> tuple[str, Any]:
    """`section.key=value`: the value is read as TOML (numbers, booleans, quoted strings),
    and kept as plain text when it is not TOML (`--set report.title=Mi informe`)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects section.key=value, got '{item}'")
    try:
        return key, tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return key, raw.strip()
    except RecursionError:
        raise ConfigError(f"--set {key}: the value nests arrays or tables too deeply") from None


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = dict(value)
        else:
            into[key] = value


def _build(cls: type, values: Mapping[str, Any], prefix: str):
    if not isinstance(values, Mapping):
        raise ConfigError(f"'{prefix.rstrip('.')}' must be a table of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(prefix + name for name in fields)
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (known: {known})")
    kwargs = {}
    for name, value in values.items():
        hint, key = hints[name], prefix + name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix=f"{key}.")
        else:
            kwargs[name] = _check_value(key, value, hint, fields[name].metadata)
    return cls(**kwargs)


def _check_value(key: str, value: Any, hint: Any, limits: Mapping[str, Any]) -> Any:
    optional = type(None) in typing.get_args(hint)
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    if value is None and optional:
        return None
    names = {int: "an integer", float: "a number", str: "text"}
    choices = limits.get("choices", ())
    if typing.get_origin(hint) is not None and bool in typing.get_args(hint) and choices:
        # a switch that is also "auto": true, false or one of its words, compared by type too
        if not any(type(value) is type(choice) and value == choice for choice in choices):
            shown = ", ".join(_literal(choice) for choice in choices)
            raise ConfigError(f"{key} = {value!r} is not one of: {shown}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if typing.get_origin(kind) is tuple:
        return _check_pair(key, value, limits)
    # bool is an int in Python; "epochs = true" is still a mistake.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{key} must be {names[str]}, got {value!r}")
    if kind is str and not value.strip():
        raise ConfigError(f"{key} must not be empty")
    if "choices" in limits and value not in limits["choices"]:
        raise ConfigError(f"{key} = {value!r} is not one of: {', '.join(limits['choices'])}")
    if "file" in limits:
        return _check_file(key, value, limits["file"])
    low, high = limits.get("low"), limits.get("high")
    if low is None and high is None:
        return value
    too_low = low is not None and (value <= low if limits["low_open"] else value < low)
    too_high = high is not None and (value >= high if limits["high_open"] else value > high)
    if too_low or too_high:
        left = "(" if limits["low_open"] else "["
        right = ")" if limits["high_open"] else "]"
        span = f"{left}{'-∞' if low is None else low}, {'∞' if high is None else high}{right}"
        raise ConfigError(f"{key} = {value!r} is out of range: it must lie in {span}")
    return value


def _literal(value: Any) -> str:
    """A choice as TOML writes it: true, false, "auto"."""
    return json.dumps(value)


def _check_file(key: str, value: str, suffixes: tuple[str, ...]) -> str:
    """A local image of one of `suffixes`, already absolute (load_config makes it so), parsed
    now: a logo that cannot be shown fails before any work, not after the training."""
    path = Path(value)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{key} = {value!r} must be a {', '.join(suffixes)} file")
    if not path.is_absolute():
        raise ConfigError(f"{key}: file not found: {value}")
    logo.read(path, key)
    return str(path)


def _check_pair(key: str, value: Any, limits: Mapping[str, Any]) -> tuple[float, float]:
    """[low, high], two numbers in the field's range with low < high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key} must be [low, high], got {value!r}")
    low, high = (_check_value(key, item, float, limits) for item in value)
    if not low < high:
        raise ConfigError(f"{key} = {list(value)!r}: low must be below high")
    return (low, high)
