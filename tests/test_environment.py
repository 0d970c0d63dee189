"""pipeline/environment.py (lab §0): versions and devices as plain data, seeding that makes a run
repeatable, XLA allowed on a CPU under op determinism, the CPU's name, peak memory and
freed memory given back."""

import json
import os
import platform
import random
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

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


# --- training.precision: bfloat16 only where the hardware computes it ---------------------------


def test_auto_precision_is_float32_without_native_bfloat16(monkeypatch):
    """The AVX2 machine of the measurements: no bf16 flag, no GPU. Emulated bfloat16 trained
    the lab's model 9× slower there, so auto must not pick it."""
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    monkeypatch.setattr(environment, "gpu_capabilities", lambda: ())
    chosen = environment.choose_precision("auto")
    assert (chosen.used, chosen.policy, chosen.basis) == ("float32", "float32", "none")
    assert "no native bfloat16" in chosen.reason


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_precision_is_bfloat16_where_the_cpu_has_it(monkeypatch, flag):
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"avx512f", flag}))
    monkeypatch.setattr(environment, "gpu_capabilities", lambda: ())
    chosen = environment.choose_precision("auto")
    assert (chosen.used, chosen.policy, chosen.basis) == ("bfloat16", "mixed_bfloat16", "cpu")
    assert flag.upper() in chosen.reason and chosen.device == flag.upper()


@pytest.mark.parametrize(
    ("capability", "used"), [(9.0, "bfloat16"), (8.0, "bfloat16"), (7.5, "float32")]
)
def test_auto_precision_on_a_gpu_follows_its_compute_capability(capability, used):
    """A GPU decides, whatever the CPU has: a T4 (7.5) emulates bfloat16, an A100 (8.0) or H100
    (9.0) computes it in its tensor cores."""
    chosen = environment.choose_precision("auto", frozenset({"amx_bf16"}), [("GPU X", capability)])
    assert chosen.used == used and "GPU X" in chosen.reason


@pytest.mark.parametrize("setting", ["float32", "bfloat16"])
def test_a_precision_set_in_the_config_is_used_as_set(monkeypatch, setting):
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset())
    chosen = environment.choose_precision(setting, gpus=[])
    assert (chosen.setting, chosen.used, chosen.basis) == (setting, setting, "setting")


def test_gpu_capabilities_read_nvidia_smi(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 9.0'\necho 'Tesla T4, 7.5'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    environment.gpu_capabilities.cache_clear()
    try:
        assert environment.gpu_capabilities() == (("NVIDIA H200", 9.0), ("Tesla T4", 7.5))
    finally:
        environment.gpu_capabilities.cache_clear()


def test_machine_choices_measure_xla_only_when_asked(monkeypatch, tmp_path):
    from pipeline import probe
    from pipeline.config import load_config

    asked = []

    def xla_choice(model, width, batch_size, cache_dir, **_):
        asked.append((model, width, batch_size, cache_dir))
        return True, "XLA measured 1.50× plain TensorFlow"

    monkeypatch.setattr(probe, "xla_choice", xla_choice)
    monkeypatch.setattr(probe, "onednn_choice", lambda *arguments: (False, "measured"))
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset())
    monkeypatch.setattr(environment, "gpu_capabilities", lambda: ())
    fast = environment.machine_choices(load_config("fast"), tmp_path)
    assert fast["jit_compile"] == {
        "setting": "auto",
        "used": True,
        "reason": "XLA measured 1.50× plain TensorFlow",
    }
    assert asked == [("unet", 8, 64, tmp_path)]
    full = environment.machine_choices(load_config("full"), tmp_path)
    assert full["jit_compile"]["used"] is False and len(asked) == 1  # the lab's: off, not probed
    assert full["precision"]["used"] == "float32"


def test_a_stage_peak_is_its_own():
    """After a reset the peak is what is resident now, not the process's earlier peak."""
    stages = {}
    big = np.ones(40_000_000)  # 320 MB
    del big
    environment.stage_peak(stages, "big")
    environment.stage_peak(stages, "small")
    assert stages["big"] > stages["small"] + 200 * 2**20
    assert environment.resources(stages)["peak_rss_bytes"] >= stages["big"]


_FREE_BLOCKS = r"""
import numpy as np
from pipeline import environment

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

for _ in range(3):  # freeing a mapped 24 MiB block teaches glibc to keep blocks that large
    block = np.ones(3 * 2**20)
    del block
environment.trim_memory(from_now_on=True)  # as the harness does once the lab's fit is done
before, blocks, kept = resident(), [], []
for _ in range(8):  # 192 MiB, each block under a smaller one that stays (2 MiB in all)
    blocks.append(np.ones(3 * 2**20))
    kept.append(np.ones(2**15))  # 256 KiB: above any free scraps of the imports
del blocks
print((resident() - before) / 2**20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux's /proc only")
def test_after_training_freed_memory_goes_back_to_the_system():
    """Once glibc has learnt to keep freed 24 MiB blocks (as after training), 192 MiB of them
    freed go back to the system after `trim_memory(from_now_on=True)`: they are mapped on their
    own again. (Without the call glibc kept 170 MiB of them here, but how much it keeps depends
    on the heap's layout, so only the call's side is asserted.) In a child process: the setting
    would slow every later training in this one."""
    run = subprocess.run(
        [sys.executable, "-c", _FREE_BLOCKS], capture_output=True, text=True, check=True
    )
    assert float(run.stdout) < 8  # MiB: the 2 MiB of blocks that stay, and no more


def onednn_probe(monkeypatch, used=True):
    """probe.onednn_choice answering `used` at once; returns the list of what it was asked."""
    from pipeline import probe

    asked = []

    def onednn_choice(model, width, batch_size, cache_dir):
        asked.append((model, width, batch_size, cache_dir))
        return used, f"oneDNN's custom ops measured {'2.00' if used else '0.95'}×"

    monkeypatch.setattr(probe, "onednn_choice", onednn_choice)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    return asked


def test_onednn_auto_is_measured_for_the_configs_model_and_xla_measured_with_it(
    monkeypatch, tmp_path
):
    from pipeline import probe
    from pipeline.config import load_config

    asked = onednn_probe(monkeypatch, used=True)
    xla_asked = []

    def xla_choice(model, width, batch_size, cache_dir, *, stream=None, onednn=False):
        xla_asked.append(onednn)
        return False, "XLA measured 0.50×: off"

    monkeypatch.setattr(probe, "xla_choice", xla_choice)
    fast = environment.machine_choices(load_config("fast"), tmp_path)
    assert fast["onednn"] == {
        "setting": "auto",
        "used": True,
        "reason": "oneDNN's custom ops measured 2.00×",
        "basis": "probe",
    }
    assert asked == [("unet", 8, 64, tmp_path)] and xla_asked == [True]


@pytest.mark.parametrize("setting", [True, False])
def test_onednn_set_in_the_config_is_not_measured(monkeypatch, tmp_path, setting):
    from pipeline.config import load_config

    asked = onednn_probe(monkeypatch)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # the config's word wins over the shell's
    config = load_config("quick", overrides=[f"training.onednn={str(setting).lower()}"])
    choice = environment.machine_choices(config, tmp_path)["onednn"]
    assert (choice["used"], choice["basis"], asked) == (setting, "setting", [])
    assert choice["reason"] == f"training.onednn = {str(setting).lower()}"


@pytest.mark.parametrize(("value", "used"), [("1", True), ("true", True), ("0", False)])
def test_onednn_auto_keeps_what_the_user_set_in_the_environment(monkeypatch, tmp_path, value, used):
    from pipeline.config import load_config

    asked = onednn_probe(monkeypatch)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
    choice = environment.machine_choices(load_config("quick"), tmp_path)["onednn"]
    assert choice == {
        "setting": "auto",
        "used": used,
        "reason": f"TF_ENABLE_ONEDNN_OPTS={value} set by the user",
        "basis": "environment",
    }
    assert asked == []


def test_a_value_tensorflow_would_not_read_is_not_a_users_choice(monkeypatch, tmp_path):
    from pipeline.config import load_config

    asked = onednn_probe(monkeypatch, used=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "maybe")
    choice = environment.machine_choices(load_config("quick"), tmp_path)["onednn"]
    assert (choice["used"], choice["basis"], len(asked)) == (False, "probe", 1)


APPLY_SCRIPT = """
import json, os, sys
from pipeline import environment
choice = {"setting": "auto", "used": sys.argv[1] == "1", "reason": "measured", "basis": "probe"}
if sys.argv[2] == "imported":
    import tensorflow
applied = environment.apply_onednn(choice)
print(json.dumps([applied, os.environ.get("TF_ENABLE_ONEDNN_OPTS"), environment.onednn_active()]))
"""


def apply_in_a_child(used: str, tensorflow: str, variable: str | None) -> tuple:
    """(the choice as applied, TF_ENABLE_ONEDNN_OPTS after, oneDNN active) in a fresh process
    started with `variable` (None: unset) that imports TensorFlow first if `tensorflow` says so."""
    environment_variables = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment_variables.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if variable is not None:
        environment_variables["TF_ENABLE_ONEDNN_OPTS"] = variable
    result = subprocess.run(
        [sys.executable, "-c", APPLY_SCRIPT, used, tensorflow],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment_variables,
        check=True,
    )
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("used", ["0", "1"])
def test_a_process_that_trains_itself_gets_the_choice_before_tensorflow_starts(used):
    """`compare` trains in its own process: the variable must be set before the import."""
    applied, variable, active = apply_in_a_child(used, "not yet", None)
    assert (applied["used"], variable, active) == (used == "1", used, used == "1")


def test_a_choice_too_late_for_tensorflow_says_what_it_got():
    applied, _, active = apply_in_a_child("1", "imported", "0")
    assert applied["used"] is False and active is False
    assert applied["reason"] == (
        "measured; TensorFlow was imported already, with oneDNN's custom ops off"
    )
