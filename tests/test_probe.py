"""pipeline/probe.py: XLA chosen per machine by a measurement, cached per model, width and batch
size; a failed probe means plain TensorFlow, never a failed build; the machine's id."""

import json
import os
import re
import subprocess
import sys
from datetime import date

import pytest

from pipeline import probe


class FakeMeasure:
    """A probe that answers `speeds` at once and counts its calls."""

    def __init__(self, xla: float = 150.0, plain: float = 100.0, **speeds: float) -> None:
        self.speeds = speeds or {"xla_images_per_second": xla, "plain_images_per_second": plain}
        self.calls = []

    def __call__(self, model_name, width, batch_size):
        self.calls.append((model_name, width, batch_size))
        return dict(self.speeds)


def cache_file(cache_dir):
    return cache_dir / "probes" / f"{probe.machine_id()}.json"


def test_a_miss_measures_once_and_a_second_call_reads_the_cache(tmp_path):
    measure = FakeMeasure(xla=162.0, plain=100.0)
    first = probe.xla_choice("unet", 16, 128, tmp_path, measure=measure)
    assert measure.calls == [("unet", 16, 128)]
    assert first == (
        True,
        "XLA measured 1.62× plain TensorFlow on this machine (unet, width 16, batch 128)",
    )

    def must_not_measure(*arguments):
        raise AssertionError("measured again although the cache holds the answer")

    assert probe.xla_choice("unet", 16, 128, tmp_path, measure=must_not_measure) == first


@pytest.mark.parametrize(
    ("xla", "plain", "use_xla"),
    [
        (150.0, 100.0, True),
        (110.0, 100.0, True),  # exactly the margin
        (105.0, 100.0, False),  # faster, but within the drift of one machine's speed
        (100.0, 100.0, False),
        (40.0, 100.0, False),
    ],
)
def test_xla_only_when_it_is_at_least_ten_percent_faster(tmp_path, xla, plain, use_xla):
    chosen, reason = probe.xla_choice("lab", 32, 256, tmp_path, measure=FakeMeasure(xla, plain))
    assert chosen is use_xla
    assert f"{xla / plain:.2f}× plain TensorFlow" in reason
    assert reason.endswith(": off") is not use_xla


def test_the_reason_for_a_slower_xla_is_one_line_ending_off(tmp_path):
    chosen, reason = probe.xla_choice("lab", 32, 256, tmp_path, measure=FakeMeasure(41.0, 100.0))
    assert (chosen, reason) == (
        False,
        "XLA measured 0.41× plain TensorFlow on this machine (lab, width 32, batch 256): off",
    )


def test_the_cache_file_holds_both_speeds_the_ratio_and_the_date(tmp_path):
    probe.xla_choice("unet", 16, 128, tmp_path, measure=FakeMeasure(xla=300.0, plain=200.0))
    stored = json.loads(cache_file(tmp_path).read_text(encoding="utf-8"))
    assert stored == {
        "xla/unet/16/128": {
            "xla_images_per_second": 300.0,
            "plain_images_per_second": 200.0,
            "ratio": 1.5,
            "measured": stored["xla/unet/16/128"]["measured"],
        }
    }
    measured = date.fromisoformat(stored["xla/unet/16/128"]["measured"])
    assert abs((measured - date.today()).days) <= 1  # a UTC date
    assert [path.name for path in (tmp_path / "probes").iterdir()] == [cache_file(tmp_path).name]


def test_another_width_is_measured_again_and_kept_beside_the_first(tmp_path):
    measure = FakeMeasure()
    probe.xla_choice("unet", 16, 128, tmp_path, measure=measure)
    probe.xla_choice("unet", 32, 128, tmp_path, measure=measure)
    probe.xla_choice("unet", 16, 128, tmp_path, measure=measure)
    assert measure.calls == [("unet", 16, 128), ("unet", 32, 128)]
    stored = json.loads(cache_file(tmp_path).read_text(encoding="utf-8"))
    assert sorted(stored) == ["xla/unet/16/128", "xla/unet/32/128"]


def test_a_damaged_cache_file_is_measured_again_and_rewritten(tmp_path):
    cache_file(tmp_path).parent.mkdir(parents=True)
    cache_file(tmp_path).write_text('{"xla/unet/16/128": {"ratio": ', encoding="utf-8")
    measure = FakeMeasure()
    assert probe.xla_choice("unet", 16, 128, tmp_path, measure=measure)[0] is True
    assert len(measure.calls) == 1
    assert json.loads(cache_file(tmp_path).read_text(encoding="utf-8"))["xla/unet/16/128"]


def test_a_cache_that_cannot_be_written_still_gives_the_measured_choice(tmp_path):
    """Not fatal either: the next build measures again."""
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be", encoding="utf-8")
    measure = FakeMeasure(xla=150.0, plain=100.0)
    assert probe.xla_choice("unet", 16, 128, not_a_folder, measure=measure)[0] is True
    assert probe.xla_choice("unet", 16, 128, not_a_folder, measure=measure)[0] is True
    assert len(measure.calls) == 2


def failing_measure(model_name, width, batch_size):
    raise RuntimeError("oneDNN said no\nInternalError: XLA compilation failed")


@pytest.mark.parametrize(
    ("measure", "detail"),
    [
        (failing_measure, "InternalError: XLA compilation failed"),  # the last line only
        (FakeMeasure(xla=0.0), "xla_images_per_second is 0.0, not a positive number"),
        (
            lambda *arguments: {"plain_images_per_second": 1.0},
            "the probe gave no xla_images_per_second",
        ),
    ],
)
def test_a_failed_measurement_means_plain_tensorflow_and_nothing_cached(tmp_path, measure, detail):
    assert probe.xla_choice("unet", 16, 128, tmp_path, measure=measure) == (
        False,
        f"XLA probe failed: {detail}",
    )
    assert not cache_file(tmp_path).exists()


def completed(returncode=0, stdout="", stderr=""):
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


def test_the_default_probe_runs_the_child_and_reads_its_last_line(tmp_path, monkeypatch, capsys):
    calls = []

    def run(command, **options):
        calls.append((command, options))
        return completed(stdout='{"xla_images_per_second": 80, "plain_images_per_second": 200}\n')

    monkeypatch.setattr(probe.subprocess, "run", run)
    chosen, reason = probe.xla_choice("unet", 16, 128, tmp_path)
    assert (chosen, reason) == (
        False,
        "XLA measured 0.40× plain TensorFlow on this machine (unet, width 16, batch 128): off",
    )
    [(command, options)] = calls
    assert command[:4] == [sys.executable, "-m", "pipeline.probe", "xla"]
    assert {"--model=unet", "--width=16", "--batch-size=128"} <= set(command)
    assert options["timeout"] == probe.TIMEOUT_SECONDS
    assert "probing XLA for unet/16 on this machine" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("outcome", "detail"),
    [
        (completed(1, stderr="Traceback ...\nKeyError: 'vgg'\n"), "exit code 1: KeyError: 'vgg'"),
        (completed(0, stdout="not json\n"), "the probe printed no JSON line"),
        (completed(0, stdout=""), "the probe printed no JSON line"),
        (subprocess.TimeoutExpired("python", 300), "no answer within 300 s"),
    ],
)
def test_a_failing_child_means_plain_tensorflow_and_nothing_cached(
    tmp_path, monkeypatch, outcome, detail
):
    def run(command, **options):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(probe.subprocess, "run", run)
    assert probe.xla_choice("unet", 16, 128, tmp_path) == (False, f"XLA probe failed: {detail}")
    assert not (tmp_path / "probes").exists()


def test_asking_does_not_import_tensorflow():
    """The CLI asks: only the child may pay TensorFlow's seconds of import."""
    script = (
        "import sys\nfrom pipeline import probe\nprobe.machine_id()\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_machine_id_is_16_hex_characters_and_stable():
    assert re.fullmatch(r"[0-9a-f]{16}", probe.machine_id())
    assert probe.machine_id() == probe.machine_id()


def test_the_machine_id_follows_the_cpu_flags_not_their_order(monkeypatch):
    def cpu(flags):
        monkeypatch.setattr(probe, "cpu_model_and_flags", lambda: ("AMD EPYC", flags))
        return probe.machine_id()

    avx2 = cpu(["sse4_2", "avx2", "fma"])
    assert cpu(["fma", "avx2", "sse4_2"]) == avx2
    assert cpu(["sse4_2", "avx2", "fma", "avx512f"]) != avx2
    monkeypatch.setattr(probe.os, "cpu_count", lambda: 128)
    assert cpu(["sse4_2", "avx2", "fma"]) != avx2


def test_the_cpu_is_read_from_proc_cpuinfo_where_there_is_one():
    model_name, flags = probe.cpu_model_and_flags()
    assert model_name
    if sys.platform == "linux" and "flags" in open("/proc/cpuinfo").read():
        assert flags and all(" " not in flag for flag in flags)


@pytest.mark.slow
def test_the_real_probe_times_both_ways_in_a_child_process():
    """The lab's model, a few small steps: both speeds come back as positive numbers."""
    speeds = probe.measure_in_subprocess("lab", 32, 64, steps=2, rounds=1)
    for name in ("xla_images_per_second", "plain_images_per_second"):
        assert isinstance(speeds[name], float) and speeds[name] > 0, speeds


# --- oneDNN's custom ops: a child per setting, since TensorFlow reads the variable at import ---


def fake_onednn(on: float = 150.0, off: float = 100.0) -> FakeMeasure:
    """A oneDNN probe that answers at once and counts its calls."""
    return FakeMeasure(on_images_per_second=on, off_images_per_second=off)


@pytest.mark.parametrize(
    ("on", "off", "use"),
    [(233.0, 100.0, True), (110.0, 100.0, True), (105.0, 100.0, False), (90.0, 100.0, False)],
)
def test_onednn_only_when_it_is_at_least_ten_percent_faster(tmp_path, on, off, use):
    chosen, reason = probe.onednn_choice("lab", 32, 256, tmp_path, measure=fake_onednn(on, off))
    assert chosen is use
    assert reason.startswith(f"oneDNN's custom ops measured {on / off:.2f}× the speed without them")
    assert "(lab, width 32, batch 256)" in reason
    assert reason.endswith(": off") is not use


def test_onednn_is_measured_once_per_model_and_kept_beside_xla(tmp_path):
    measure = fake_onednn(on=180.0, off=100.0)
    first = probe.onednn_choice("lab", 32, 256, tmp_path, measure=measure)
    assert probe.onednn_choice("lab", 32, 256, tmp_path, measure=measure) == first
    probe.onednn_choice("unet", 8, 64, tmp_path, measure=measure)
    assert measure.calls == [("lab", 32, 256), ("unet", 8, 64)]
    probe.xla_choice("lab", 32, 256, tmp_path, measure=FakeMeasure(), onednn=True)
    stored = json.loads(cache_file(tmp_path).read_text(encoding="utf-8"))
    assert sorted(stored) == ["onednn/lab/32/256", "onednn/unet/8/64", "xla/lab/32/256/onednn"]
    assert stored["onednn/lab/32/256"]["on_images_per_second"] == 180.0
    assert stored["onednn/lab/32/256"]["ratio"] == 1.8


def test_a_failed_onednn_measurement_turns_it_off_and_caches_nothing(tmp_path):
    assert probe.onednn_choice("lab", 32, 256, tmp_path, measure=failing_measure) == (
        False,
        "oneDNN probe failed: InternalError: XLA compilation failed",
    )
    assert not cache_file(tmp_path).exists()


def test_the_onednn_probe_alternates_children_off_and_on_and_keeps_the_fastest(monkeypatch):
    speeds = iter([700.0, 1100.0, 760.0, 1000.0])  # off, on, off, on
    calls = []

    def run(command, **options):
        onednn = options["env"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
        calls.append((command[3], options["env"]["TF_ENABLE_ONEDNN_OPTS"]))
        line = json.dumps({"images_per_second": next(speeds), "onednn": onednn})
        return completed(stdout=f"TensorFlow says hello\n{line}\n")

    monkeypatch.setattr(probe.subprocess, "run", run)
    assert probe.measure_onednn_in_subprocesses("lab", 32, 256) == {
        "on_images_per_second": 1100.0,
        "off_images_per_second": 760.0,
    }
    assert calls == [("speed", "0"), ("speed", "1"), ("speed", "0"), ("speed", "1")]


def test_a_tensorflow_that_ignores_the_variable_fails_the_probe(monkeypatch, tmp_path):
    """A TensorFlow built without oneDNN: "on" would time the same thing twice."""

    def run(command, **options):
        return completed(stdout='{"images_per_second": 700.0, "onednn": false}\n')

    monkeypatch.setattr(probe.subprocess, "run", run)
    assert probe.onednn_choice("lab", 32, 256, tmp_path) == (
        False,
        "oneDNN probe failed: TF_ENABLE_ONEDNN_OPTS=1 left oneDNN off",
    )


@pytest.mark.parametrize("onednn", [False, True])
def test_the_xla_probe_trains_with_onednn_as_the_build_will(tmp_path, monkeypatch, onednn):
    environments = []

    def run(command, **options):
        environments.append(options["env"]["TF_ENABLE_ONEDNN_OPTS"])
        return completed(stdout='{"xla_images_per_second": 80, "plain_images_per_second": 200}\n')

    monkeypatch.setattr(probe.subprocess, "run", run)
    probe.xla_choice("unet", 16, 128, tmp_path, onednn=onednn)
    assert environments == ["1" if onednn else "0"]


def test_measurements_are_kept_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert probe.default_cache_dir() == tmp_path / "dae-report"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert probe.default_cache_dir() == tmp_path / "home" / ".cache" / "dae-report"


@pytest.mark.parametrize("value", ["0", "1"])
def test_the_speed_child_trains_and_says_whether_onednn_is_on(value):
    """The real child, one batch timed: TensorFlow must honour the variable it is started with."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.probe", "speed", "--model=lab", "--width=32"]
        + ["--batch-size=32", "--steps=1", "--rounds=1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": value, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["onednn"] is (value == "1")
    assert answer["images_per_second"] > 0 and "xla_images_per_second" not in answer
