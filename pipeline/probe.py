"""Whether XLA, and oneDNN's custom ops, train a model faster on this machine: measured once
per machine, then cached.

XLA (`jit_compile=True`) is no free speed-up on a CPU: it trained the lab's model at 0.40× plain
TensorFlow's speed on an AVX-512 CPU and about 0.5× on an AVX2 one, where a U-Net ran 1.1–2×
faster. oneDNN's custom ops (TF_ENABLE_ONEDNN_OPTS=1), which TensorFlow turns on by itself only
on some CPUs, trained the lab's model 1.4–1.9× faster on an AVX2 CPU where they were off. So
`training.jit_compile = "auto"` and `training.onednn = "auto"` ask this module, which times a
few training steps each way and keeps the answer in <cache>/probes/<machine id>.json, one entry
per model, width and batch size; the cache is the user's (`default_cache_dir`), as the machine
is, not one report folder's.

The timing runs in child processes (`python -m pipeline.probe xla|speed ...`), so the process
that asks, the CLI, never imports TensorFlow; oneDNN's setting is read when TensorFlow is
imported, so each of its settings needs a child of its own.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pipeline import artifacts, environment
from pipeline.errors import OutputError
from pipeline.progress import report

PROBES_DIR = "probes"  # inside the cache folder: <cache>/probes/<machine id>.json
# XLA only when it is at least this much faster: one machine's speed drifts by a few percent
# from run to run, and a choice that flips between builds would change nothing but the noise.
XLA_MARGIN = 1.1
TIMEOUT_SECONDS = 300  # the child takes 20–40 s on 2 cores; a hung one must not hold the build
STEPS = 4  # batches per timed round: 2–3 s of unet/16/128 on 2 cores, next to XLA's compile
ROUNDS = 3  # plain and XLA alternate, so a slow spell on the machine hits both alike
SPEEDS = ("xla_images_per_second", "plain_images_per_second")
# oneDNN on only when at least this much faster: on and off give slightly different numbers
# (other orders of floating-point sums), so a choice that flipped with the noise would retrain.
ONEDNN_MARGIN = 1.1
# Children off, on, off, on: a slow minute on the machine (speeds swing up to 1.6×) then slows
# one child of each setting, and the fastest of each is compared. The lab's model: ≈ 12 s each.
ONEDNN_PAIRS = 2
ONEDNN_STEPS, ONEDNN_ROUNDS = 4, 2
ONEDNN_SPEEDS = ("on_images_per_second", "off_images_per_second")


def default_cache_dir() -> Path:
    """Where measurements of this machine are kept: $XDG_CACHE_HOME/dae-report, by default
    ~/.cache/dae-report. A machine's speeds hold for every report folder on it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dae-report"


def machine_id() -> str:
    """16 hex characters naming what decides XLA's speed here: the CPU (model, instruction-set
    flags, core count), its GPUs and the TensorFlow that compiles for it. A new TensorFlow, a
    GPU added, or the same cache folder on another machine is a new id and so measures again."""
    model_name, flags = cpu_model_and_flags()
    parts = [model_name, " ".join(sorted(flags)), str(os.cpu_count()), tensorflow_version()]
    parts += [f"{name} {capability}" for name, capability in environment.gpu_capabilities()]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and its flags (environment's reading of /proc/cpuinfo)."""
    return environment.cpu_name(), sorted(environment.cpu_flags())


def tensorflow_version() -> str:
    """The installed TensorFlow's version, read from its metadata: importing it takes seconds."""
    for distribution in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "none"


def xla_choice(
    model_name: str,
    width: int,
    batch_size: int,
    cache_dir: Path | None,
    *,
    measure=None,
    stream=None,
    onednn: bool = False,
) -> tuple[bool, str]:
    """(use XLA?, a one-line reason with the measured ratio) for this model on this machine.

    The first call for a model, width and batch size measures (`measure(model_name, width,
    batch_size)`, by default `measure_in_subprocess`, with oneDNN as `onednn` says, since it
    changes plain TensorFlow's speed) and caches the speeds; later calls read them. A
    measurement that fails is never fatal: plain TensorFlow, with the failure as the reason, and
    nothing cached, so the next build tries again. `stream` is accepted for the caller's
    symmetry with other stages; progress goes through `progress.report`, which takes none.
    """
    if measure is None:
        measure = functools.partial(measure_in_subprocess, onednn=onednn)
    key = f"xla/{model_name}/{width}/{batch_size}" + ("/onednn" if onednn else "")
    try:
        ratio = _cached_ratio(
            cache_dir, key, lambda: measure(model_name, width, batch_size), SPEEDS
        )
    except Exception as error:  # a probe only tunes speed: whatever went wrong, train plain
        return False, f"XLA probe failed: {_last_line(str(error)) or type(error).__name__}"
    use_xla = ratio >= XLA_MARGIN
    reason = (
        f"XLA measured {ratio:.2f}× plain TensorFlow on this machine "
        f"({model_name}, width {width}, batch {batch_size})"
    )
    return use_xla, reason if use_xla else f"{reason}: off"


def onednn_choice(
    model_name: str, width: int, batch_size: int, cache_dir: Path | None, *, measure=None
) -> tuple[bool, str]:
    """(turn oneDNN's custom ops on?, a one-line reason with the measured ratio) for this model
    on this machine, measured once (`measure(model_name, width, batch_size)`, by default
    `measure_onednn_in_subprocesses`) and cached as XLA's choice is. A failed measurement turns
    them off, caches nothing and never fails the build."""
    measure = measure_onednn_in_subprocesses if measure is None else measure
    key = f"onednn/{model_name}/{width}/{batch_size}"
    try:
        ratio = _cached_ratio(
            cache_dir, key, lambda: measure(model_name, width, batch_size), ONEDNN_SPEEDS
        )
    except Exception as error:  # a probe only tunes speed: whatever went wrong, leave them off
        return False, f"oneDNN probe failed: {_last_line(str(error)) or type(error).__name__}"
    use_onednn = ratio >= ONEDNN_MARGIN
    reason = (
        f"oneDNN's custom ops measured {ratio:.2f}× the speed without them on this machine "
        f"({model_name}, width {width}, batch {batch_size})"
    )
    return use_onednn, reason if use_onednn else f"{reason}: off"


def _cached_ratio(cache_dir: Path | None, key: str, measure, names: tuple[str, str]) -> float:
    """The ratio of the two speeds `names` (faster setting first) under `key` in the machine's
    cache file, measured with `measure()` and stored on a miss. Raises what a failed
    measurement raised; a cache that cannot be written costs a measurement next time."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / PROBES_DIR / f"{machine_id()}.json"
    entry = _read_entries(path).get(key)
    if _is_entry(entry):
        return entry["ratio"]
    speeds = measure()
    tried, base = (_speed(speeds, name) for name in names)
    entry = {
        names[0]: tried,
        names[1]: base,
        # Two decimals: what the reason shows is what was decided on (no "1.10×: off").
        "ratio": round(tried / base, 2),
        "measured": datetime.now(UTC).date().isoformat(),
    }
    # Read again just before writing: another build may have added its own entry meanwhile.
    # Two that write at once lose one entry, which costs a measurement, never a wrong answer.
    entries = {**_read_entries(path), key: entry}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(path, entries)  # a temporary file renamed into place
    except (OSError, OutputError):
        pass  # a read-only cache costs a measurement next time, not this build
    return entry["ratio"]


def _read_entries(path: Path) -> dict:
    """The machine's cached entries; none when the file is missing or damaged (it is rewritten
    whole on the next measurement, so a damaged one costs measurements, not a failed build)."""
    try:
        entries = artifacts.read_json(path)
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _is_entry(entry) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("ratio"), int | float)
        and not isinstance(entry["ratio"], bool)
    )


def _speed(speeds: dict, name: str) -> float:
    value = speeds.get(name) if isinstance(speeds, dict) else None
    if value is None:
        raise ValueError(f"the probe gave no {name}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} is {value!r}, not a positive number")
    return float(value)


def _last_line(text: str) -> str:
    """The last non-blank line of `text` (a traceback's names the error), at most 200 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= 200 else last[:199] + "…"


def measure_in_subprocess(
    model_name: str,
    width: int,
    batch_size: int,
    *,
    steps: int = STEPS,
    rounds: int = ROUNDS,
    onednn: bool = False,
) -> dict:
    """The two speeds, from `python -m pipeline.probe xla ...` in a child process (oneDNN's
    custom ops on if `onednn`, as the build will train), which prints them as one JSON line. A
    failed, hung or garbled child raises ProbeFailed."""
    report(
        f"probing XLA for {model_name}/{width} on this machine (once per machine, about a minute)"
    )
    return _child("xla", model_name, width, batch_size, steps, rounds, onednn)


def measure_onednn_in_subprocesses(
    model_name: str,
    width: int,
    batch_size: int,
    *,
    pairs: int = ONEDNN_PAIRS,
    steps: int = ONEDNN_STEPS,
    rounds: int = ONEDNN_ROUNDS,
) -> dict:
    """Plain training's speed with oneDNN's custom ops on and off, each the fastest of `pairs`
    children (`python -m pipeline.probe speed ...`), which alternate off and on. A child whose
    oneDNN state is not the one asked for (a TensorFlow built without it) raises ProbeFailed."""
    report(
        f"probing oneDNN for {model_name}/{width} on this machine (once per machine, "
        f"{2 * pairs} short trainings)"
    )
    best = {False: 0.0, True: 0.0}
    for _ in range(pairs):
        for onednn in (False, True):
            result = _child("speed", model_name, width, batch_size, steps, rounds, onednn)
            if result.get("onednn") is not onednn:
                state = "on" if result.get("onednn") else "off"
                raise ProbeFailed(
                    f"{environment.ONEDNN_VARIABLE}={int(onednn)} left oneDNN {state}"
                )
            best[onednn] = max(best[onednn], _speed(result, "images_per_second"))
    return {"on_images_per_second": best[True], "off_images_per_second": best[False]}


def _child(
    command: str, model_name: str, width: int, batch_size: int, steps: int, rounds: int, onednn
) -> dict:
    """What `python -m pipeline.probe COMMAND ...` prints as its last line, run with oneDNN's
    custom ops on or off; raises ProbeFailed for a failed, hung or garbled child."""
    arguments = [
        sys.executable,
        "-m",
        "pipeline.probe",
        command,
        f"--model={model_name}",
        f"--width={width}",
        f"--batch-size={batch_size}",
        f"--steps={steps}",
        f"--rounds={rounds}",
    ]
    # TensorFlow's start-up lines go to stderr, where only a failure's last line is read.
    child_environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **environment.onednn_environment(onednn),
    }
    try:
        result = subprocess.run(
            arguments,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=TIMEOUT_SECONDS,
            env=child_environment,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"no answer within {TIMEOUT_SECONDS} s") from None
    except OSError as error:
        raise ProbeFailed(f"cannot start {sys.executable}: {error.strerror or error}") from None
    if result.returncode != 0:
        last = _last_line(result.stderr) or "no message"
        raise ProbeFailed(f"exit code {result.returncode}: {last}")
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ProbeFailed("the probe printed no JSON line") from None


class ProbeFailed(Exception):
    """The timing child failed; its message is one line for the reason."""


# --- The children: `python -m pipeline.probe xla|speed --model M --width W --batch-size B` ---


def time_training(
    model_name: str, width: int, batch_size: int, steps: int, rounds: int, xla=(False, True)
) -> dict:
    """Images per second of `train_on_batch` with each XLA setting in `xla`, each from the
    fastest of `rounds` timed rounds of `steps` batches, and whether oneDNN's custom ops are on
    in this process. Imports TensorFlow: run it in the child process."""
    import keras
    import numpy as np

    from pipeline.model import build

    # As a build trains: seeded, with op determinism on, which XLA has lifted while it runs.
    environment.seed_everything(0)
    rng = np.random.default_rng(0)
    shape = (batch_size * steps, 28, 28, 1)  # (N, 28, 28, 1): speed only, so any pixels will do
    inputs = rng.random(shape, dtype=np.float32)
    targets = rng.random(shape, dtype=np.float32)

    models = {}
    for jit_compile in xla:
        keras.utils.set_random_seed(0)  # the same starting weights for each
        model = build(model_name, width)
        with environment.xla_allowed(jit_compile):
            model.compile(optimizer=keras.optimizers.Adam(), loss="mse", jit_compile=jit_compile)
        if bool(model.jit_compile) != jit_compile:
            raise ProbeFailed("Keras turned jit_compile off: nothing to compare")
        models[jit_compile] = model

    def train(jit_compile: bool, count: int) -> float:
        """Seconds for `count` batches."""
        with environment.xla_allowed(jit_compile):
            start = time.perf_counter()
            for step in range(count):
                batch = slice(step * batch_size, (step + 1) * batch_size)
                models[jit_compile].train_on_batch(inputs[batch], targets[batch])
            return time.perf_counter() - start  # train_on_batch returns the loss: it waited

    # Warm-up, one batch each: the first call traces the training step, and XLA compiles it
    # (unet/16 on 2 cores: plain 7–15 s, XLA 25–30 s, most of the probe's time).
    warm_up = {jit_compile: train(jit_compile, 1) for jit_compile in xla}
    seconds = {jit_compile: [] for jit_compile in xla}
    for _ in range(rounds):
        for jit_compile in xla:
            seconds[jit_compile].append(train(jit_compile, steps))
    # The fastest round of each: other work on the machine only ever slows a round down, and a
    # median taken while it ran cached a wrong "off" (U-Net 0.89 at load 6, 1.41-1.49 quiet).
    speed = {key: batch_size * steps / float(np.min(times)) for key, times in seconds.items()}
    names = {False: "plain", True: "xla"}
    return {
        "model": model_name,
        "width": width,
        "batch_size": batch_size,
        "steps": steps,
        "rounds": rounds,
        "onednn": environment.onednn_active(),
        **{f"{names[key]}_images_per_second": round(value, 1) for key, value in speed.items()},
        "warm_up_seconds": {names[key]: round(value, 2) for key, value in warm_up.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.probe",
        description="Time training with and without XLA, or plain training's speed alone.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("xla", "print XLA's and plain TensorFlow's images/s as JSON"),
        (
            "speed",
            "print plain TensorFlow's images/s as JSON (oneDNN as TF_ENABLE_ONEDNN_OPTS says)",
        ),
    ):
        child = commands.add_parser(command, help=text)
        child.add_argument("--model", required=True, help="lab, residual or unet")
        child.add_argument(
            "--width", type=int, required=True, help="base channels (lab ignores it)"
        )
        child.add_argument("--batch-size", type=int, required=True)
        child.add_argument("--steps", type=int, default=STEPS, help="batches per timed round")
        child.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds of each")
    arguments = parser.parse_args(argv)
    for name in ("width", "batch_size", "steps", "rounds"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    start, load_before = time.perf_counter(), _load_average()
    result = time_training(
        arguments.model,
        arguments.width,
        arguments.batch_size,
        arguments.steps,
        arguments.rounds,
        xla=(False, True) if arguments.command == "xla" else (False,),
    )
    if arguments.command == "xla":
        plain, xla = result["plain_images_per_second"], result["xla_images_per_second"]
        result["ratio"] = round(xla / plain, 3)
    else:
        result["images_per_second"] = result.pop("plain_images_per_second")
    result["seconds"] = round(time.perf_counter() - start, 1)
    # Other processes on the cores skew the ratio (unet/16 on 2 cores: 1.41 at a load of 0.5,
    # 0.89 at 5): the load before and after shows whether a surprising one was measured so.
    result["load_average"] = [load_before, _load_average()]
    print(json.dumps(result), flush=True)
    return 0


def _load_average() -> float | None:
    """The last minute's load average (runnable processes), where the system tells it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows has none
        return None


if __name__ == "__main__":
    sys.exit(main())
