"""Lab §0: library versions and compute devices, and seeding."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
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


def resources() -> dict:
    """This process's peak resident memory (the notebook kernel's, where the lab runs): Linux's
    VmHWM, not ru_maxrss, which Linux carries over from the parent across exec (a kernel started
    by a larger build process would report the build's peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return {"peak_rss_bytes": int(line.split()[1]) * 1024}
    except OSError:
        pass  # not Linux: ru_maxrss is the best there is (bytes on macOS, kB elsewhere)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_bytes": peak if sys.platform == "darwin" else peak * 1024}
