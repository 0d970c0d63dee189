"""Lab §0: library versions and compute devices, and seeding."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


def versions_and_devices() -> dict:
    """Versions and devices as plain data (imports TensorFlow)."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global generator and TensorFlow, as lab §0 does, and make
    TensorFlow's ops deterministic: the same config, seed and machine give the same numbers.

    Our own randomness (noise) takes an explicit numpy Generator; this covers Keras'
    weight initialisation and the shuffling inside `fit`.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def xla_allowed(jit_compile: bool):
    """Compile and train with XLA (`jit_compile`) on a CPU, where op determinism would forbid it.

    Keras turns `jit_compile` off whenever TensorFlow's op determinism is on, and TensorFlow's
    XLA bridge refuses some gradients (MaxPool's) under it, because a GPU has no deterministic
    XLA kernel for them. XLA's CPU kernels are deterministic (tests/test_train.py trains twice
    and compares weights), so with no GPU the flag is lifted while Keras compiles and fits, and
    put back after. On a GPU, or without `jit_compile`, nothing changes.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # no public way to turn it off

    lift = (
        jit_compile
        and tf_config.is_op_determinism_enabled()
        and not tf.config.list_physical_devices("GPU")
    )
    if lift:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if lift:
            tf_config.enable_op_determinism()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_choices(config, cache_dir: Path | None = None, stream=None, onednn=None) -> dict:
    """How this machine trains `config`'s model: {"precision", "onednn", "jit_compile"}, each
    {"setting", "used", "reason"} (metrics.json and the report show them; the cache key holds
    what was used). "auto" for oneDNN and XLA is measured here once per machine (pipeline.probe)
    and cached under `cache_dir`, by default the user's (probe.default_cache_dir). `onednn`: a
    choice already in force in this process (`apply_onednn`), which no longer can change."""
    from pipeline import probe

    training, model = config.training, config.model
    if onednn is None:
        onednn = choose_onednn(
            training.onednn, model.name, model.width, training.batch_size, cache_dir
        )
    setting = training.jit_compile
    if setting == "auto":
        used, reason = probe.xla_choice(
            model.name,
            model.width,
            training.batch_size,
            cache_dir,
            stream=stream,
            onednn=onednn["used"],
        )
    else:
        used, reason = setting, f"training.jit_compile = {str(setting).lower()}"
    return {
        "precision": choose_precision(training.precision).to_dict(),
        "onednn": onednn,
        "jit_compile": {"setting": setting, "used": used, "reason": reason},
    }


def choose_onednn(
    setting, model_name: str, width: int, batch_size: int, cache_dir: Path | None = None
) -> dict:
    """`training.onednn` resolved for this machine: {"setting", "used", "reason", "basis"}.
    "auto" keeps a TF_ENABLE_ONEDNN_OPTS the user set (basis "environment"), else measures
    (pipeline.probe.onednn_choice, basis "probe"), cached under `cache_dir`, by default the
    user's (probe.default_cache_dir)."""
    from pipeline import probe

    if setting != "auto":
        reason = f"training.onednn = {str(setting).lower()}"
        return {"setting": setting, "used": setting, "reason": reason, "basis": "setting"}
    value = os.environ.get(ONEDNN_VARIABLE, "").strip()
    if value.lower() in ONEDNN_VALUES:
        reason = f"{ONEDNN_VARIABLE}={value} set by the user"
        used = ONEDNN_VALUES[value.lower()]
        return {"setting": setting, "used": used, "reason": reason, "basis": "environment"}
    used, reason = probe.onednn_choice(model_name, width, batch_size, cache_dir)
    return {"setting": setting, "used": used, "reason": reason, "basis": "probe"}


ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"  # read once, when TensorFlow is imported
# What TensorFlow reads in it (tsl's ReadBoolFromEnvVar, case-insensitive).
ONEDNN_VALUES = {"1": True, "true": True, "0": False, "false": False}


def onednn_environment(used: bool) -> dict[str, str]:
    """The environment variable that puts oneDNN's custom ops on or off in a TensorFlow started
    with it (the notebook's kernel, the probe's children)."""
    return {ONEDNN_VARIABLE: "1" if used else "0"}


def apply_onednn(choice: dict) -> dict:
    """Put `choice` ({"setting", "used", "reason"}) in force in this process, which trains
    itself (`dae-report compare`): TensorFlow reads the variable when it is imported. Returns the
    choice as it holds: if TensorFlow was imported already, what that import turned on."""
    if "tensorflow" not in sys.modules:
        os.environ.update(onednn_environment(choice["used"]))
        return choice
    active = onednn_active()
    if active is None or active == choice["used"]:
        return choice
    reason = f"{choice['reason']}; TensorFlow was imported already, with oneDNN's custom ops " + (
        "on" if active else "off"
    )
    return {**choice, "used": active, "reason": reason}


def onednn_active() -> bool | None:
    """Whether oneDNN's custom ops are on in this process's TensorFlow (imports it); None where
    this TensorFlow does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # the flag TensorFlow's ops read
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


# CPU flags (Linux /proc/cpuinfo) of a native bfloat16 dot product: AVX512_BF16, or AMX's tiles.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_GPU_CAPABILITY = 8.0  # NVIDIA Ampere and newer compute bfloat16 in their tensor cores


@dataclass(frozen=True)
class Precision:
    """The precision a run trains in, and why (the report's environment table says both)."""

    setting: str  # training.precision: auto, float32 or bfloat16
    used: str  # float32 or bfloat16
    reason: str  # one line, in English (build log, metrics.json)
    # what decided it: "setting", or for auto "gpu" / "cpu" (native bfloat16 found on
    # `device`) or "none" (neither has it); the report words it in its language
    basis: str = "setting"
    device: str = ""

    @property
    def policy(self) -> str:
        """Keras' global dtype policy for it (lab §0 sets it)."""
        return "mixed_bfloat16" if self.used == "bfloat16" else "float32"

    def to_dict(self) -> dict:
        return asdict(self)


def choose_precision(setting: str, flags: set[str] | None = None, gpus=None) -> Precision:
    """`training.precision` resolved for this machine. "auto" trains in mixed bfloat16 only
    where the hardware computes it natively: emulated on an AVX2 CPU it ran the lab's model 9×
    slower, native on AVX512_BF16 1.55× faster with the same test MSE to four digits
    (../shared/reference/measurements-avx512-bf16.json). `flags` and `gpus` ([(name, compute
    capability)]) default to this machine's."""
    if setting != "auto":
        return Precision(setting, setting, f"training.precision = {setting}")
    gpus = gpu_capabilities() if gpus is None else gpus
    native = [(name, capability) for name, capability in gpus if capability >= BF16_GPU_CAPABILITY]
    if native:
        name, capability = native[0]
        reason = f"{name} computes bfloat16 natively (compute capability {capability})"
        return Precision(setting, "bfloat16", reason, "gpu", name)
    if gpus:
        name, capability = gpus[0]
        reason = f"{name} has no native bfloat16 (compute capability {capability} < 8.0)"
        return Precision(setting, "float32", reason, "none", name)
    flags = cpu_flags() if flags is None else flags
    found = [flag.upper() for flag in BF16_CPU_FLAGS if flag in flags]
    if found:
        reason = f"the CPU computes bfloat16 natively ({found[0]})"
        return Precision(setting, "bfloat16", reason, "cpu", found[0])
    reason = "no native bfloat16 (no AVX512_BF16 or AMX, no GPU): emulated, it is slower"
    return Precision(setting, "float32", reason, "none", "")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def gpu_capabilities() -> tuple[tuple[str, float], ...]:
    """(name, compute capability) of each NVIDIA GPU that nvidia-smi lists, without importing
    TensorFlow (the CLI decides before the notebook's kernel starts); none without nvidia-smi."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return ()
    try:
        listed = subprocess.run(
            [command, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in listed.splitlines():
        name, _, capability = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(capability)))
        except ValueError:
            continue
    return tuple(gpus)


def resources(stages: dict | None = None) -> dict:
    """This process's peak resident memory (the notebook kernel's, where the lab runs), and
    `stages`' peaks ({stage: bytes}, from `stage_peak`): the whole is the largest of them."""
    peak = peak_rss()
    found = {"peak_rss_bytes": max([peak, *(stages or {}).values()])}
    return {**found, "stages": stages} if stages else found


def _status_bytes(field: str) -> int | None:
    """A memory figure of this process from Linux's /proc/self/status ("VmRSS"...), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss() -> int | None:
    """This process's resident memory now (Linux), or None where it cannot be read."""
    return _status_bytes("VmRSS")


def peak_rss() -> int:
    """Peak resident memory of this process since it started or since `reset_peak_rss`: Linux's
    VmHWM, not ru_maxrss, which Linux carries over from the parent across exec (a kernel started
    by a larger build process would report the build's peak)."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource  # not Linux: ru_maxrss is the best there is (bytes on macOS, kB elsewhere)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> None:
    """Start `peak_rss` again from the memory resident now (Linux: "5" into clear_refs), so a
    stage's peak is its own; elsewhere the peak stays the process's."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")


# glibc's mallopt parameters, and their default (what TensorFlow's from_generator sets).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, THRESHOLD = -1, -3, 128 * 1024


def trim_memory(from_now_on: bool = False) -> None:
    """Give back to the system the memory glibc's malloc keeps after it is freed (malloc_trim)
    and, `from_now_on`, give back every freed block over 128 KiB at once.

    glibc keeps what a process frees for its next allocation, and after freeing large blocks it
    serves blocks up to their size from that kept memory: after training, a few hundred MiB of
    TensorFlow's buffers. Mapping large blocks on their own again (M_MMAP_THRESHOLD) and trimming
    the heap's top (M_TRIM_THRESHOLD) keep the analysis's peak down, but they would slow training
    1.4× (every step's buffers faulted in again: README, Performance), so pass `from_now_on` only
    once the process trains no more. Does nothing without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)
    if from_now_on:
        libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD)


def stage_peak(stages: dict, name: str) -> None:
    """Record the peak since the last reset as stage `name`'s, and reset for the next stage."""
    stages[name] = peak_rss()
    reset_peak_rss()
