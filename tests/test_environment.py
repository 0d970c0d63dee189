"""pipeline/environment.py (lab §0): versions and devices as plain data, seeding that makes a run
repeatable, XLA allowed on a CPU under op determinism, the CPU's name, peak memory."""

import json
import os
import platform
import random
import shutil
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

from pipeline import environment


@pytest.fixture
def op_determinism():
    """TensorFlow's op-determinism flag as the test found it, put back after (other tests share
    this process)."""
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    yield tf_config
    (tf_config.enable_op_determinism if was else tf_config.disable_op_determinism)()


def test_versions_and_devices_gives_the_installed_versions_and_no_gpu_when_none_is_visible():
    """In its own process, with CUDA_VISIBLE_DEVICES=-1: no GPU, whatever the machine has."""
    script = (
        "import json\nfrom pipeline import environment\n"
        "print(json.dumps(environment.versions_and_devices()))"
    )
    environment_variables = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "-1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment_variables,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    described = json.loads(result.stdout.splitlines()[-1])  # plain data: it went through JSON
    assert described == {
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
        "numpy": version("numpy"),
        "cpu": environment.cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }


def draws() -> list:
    """One draw from each generator the lab's code uses: Python's, NumPy's global, TensorFlow's,
    and Keras' weight initialiser."""
    import keras
    import tensorflow as tf

    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    return [
        random.random(),
        float(np.random.rand()),
        float(tf.random.uniform(())),
        layer.kernel.numpy().tolist(),
    ]


def test_the_same_seed_gives_the_same_draws_and_turns_on_op_determinism(op_determinism):
    op_determinism.disable_op_determinism()
    environment.seed_everything(123)
    assert op_determinism.is_op_determinism_enabled()
    first = draws()
    environment.seed_everything(123)
    assert draws() == first
    environment.seed_everything(124)
    other = draws()
    assert all(a != b for a, b in zip(other, first, strict=True))  # every generator was seeded


def tiny_model():
    import keras

    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(1, 3, padding="same")])


def test_xla_is_allowed_inside_and_op_determinism_is_back_after(op_determinism):
    """Keras drops jit_compile under op determinism; inside xla_allowed(True) on a CPU it keeps
    it, and the flag is on again afterwards, also when the block raises."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("on a GPU xla_allowed keeps op determinism on: a CPU test")
    op_determinism.enable_op_determinism()
    outside = tiny_model()
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        outside.compile(loss="mse", jit_compile=True)
    assert outside.jit_compile is False  # what xla_allowed is there for
    inside = tiny_model()
    with environment.xla_allowed(True):
        assert not op_determinism.is_op_determinism_enabled()
        inside.compile(loss="mse", jit_compile=True)
    assert inside.jit_compile is True
    assert op_determinism.is_op_determinism_enabled()
    with pytest.raises(KeyError), environment.xla_allowed(True):
        raise KeyError("a failing fit")
    assert op_determinism.is_op_determinism_enabled()


@pytest.mark.parametrize("determinism", [True, False])
def test_without_jit_compile_or_determinism_xla_allowed_changes_nothing(
    op_determinism, determinism
):
    (
        op_determinism.enable_op_determinism
        if determinism
        else op_determinism.disable_op_determinism
    )()
    with environment.xla_allowed(False):
        assert op_determinism.is_op_determinism_enabled() is determinism
    with environment.xla_allowed(True):
        if not determinism:
            assert not op_determinism.is_op_determinism_enabled()
    assert op_determinism.is_op_determinism_enabled() is determinism  # never turned on by it


def cpu_name_with(cpuinfo: str, tmp_path) -> str:
    """cpu_name() in a process that sees `cpuinfo` as /proc/cpuinfo (a bind mount in a private
    mount namespace: the machine's own file is untouched)."""
    if not shutil.which("unshare"):
        pytest.skip("needs util-linux unshare")
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo, encoding="utf-8")
    script = "from pipeline import environment; print(environment.cpu_name())"
    for unshare in (["unshare", "-m"], ["unshare", "-r", "-m"]):  # root, else a user namespace
        command = [
            *unshare,
            "sh",
            "-c",
            'mount --bind "$0" /proc/cpuinfo && exec "$1" -c "$2"',
            str(fake),
            sys.executable,
            script,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, encoding="utf-8", timeout=60
        )
        if result.returncode == 0:
            return result.stdout.removesuffix("\n")  # print's newline, nothing of cpu_name's
    pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")


def test_cpu_name_is_the_model_name_line_of_cpuinfo(tmp_path):
    cpuinfo = (
        "processor\t: 0\nvendor_id\t: Fake\n"
        "model name\t: Fake CPU 9000 @ 1.00GHz  \nflags\t\t: fpu\n"
    )
    assert cpu_name_with(cpuinfo, tmp_path) == "Fake CPU 9000 @ 1.00GHz"


def test_cpu_name_without_a_model_name_line_is_what_platform_knows(tmp_path):
    """ARM's /proc/cpuinfo has no `model name`."""
    expected = platform.processor() or platform.machine()
    assert (
        cpu_name_with("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n", tmp_path)
        == expected
    )


def test_peak_memory_is_the_process_own_not_its_parents():
    """The kernel's own high-water mark (VmHWM, kB in /proc/self/status) after 256 MiB were
    touched, even when the process that started it had touched 768 MiB first: Linux carries a
    parent's ru_maxrss into the child across exec, as the build's into the notebook kernel."""
    script = (
        "import json\nfrom pipeline import environment\n"
        "block = bytearray(256 * 2**20)\n"
        "peak = environment.resources()['peak_rss_bytes']\n"
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print(json.dumps([peak, int(hwm.split()[1]) * 1024]))\n"
    )
    larger_parent = (
        "import subprocess, sys\nblock = bytearray(768 * 2**20)\n"
        "sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    )
    command = [sys.executable, "-c", larger_parent, sys.executable, "-c", script]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", timeout=60)
    assert result.returncode == 0, result.stderr
    peak, high_water_mark = json.loads(result.stdout)
    assert 256 * 2**20 <= peak < 768 * 2**20
    assert abs(peak - high_water_mark) <= 4 * 2**20
