"""A/B test training options on the lab's model and data: steps per second for each option,
interleaved over several rounds in one run (this machine's speed drifts by up to 1.6× from
minute to minute, so only interleaved, repeated measurements compare).

    .venv/bin/python benchmarks/train_options.py --steps 40 --rounds 3

Each option trains in its own process (a fresh TensorFlow, honest memory figures).
Prints a table and writes benchmarks/results/train_options.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipeline import environment  # peak memory as the report measures it (VmHWM)

OPTIONS = {
    "arrays": {},  # model.fit on NumPy arrays: the lab's way and the pipeline's default
    "tf.data": {"feed": "tfdata"},
    "pydataset": {"feed": "pydataset"},  # the lab notebook's batches (§6), as the build fits
    "xla": {"jit": True},
    "threads 2/1": {"threads": (2, 1)},
    "bfloat16": {"bf16": True},
    "unet": {"model": "unet"},
    "unet xla": {"model": "unet", "jit": True},
    "unet tf.data": {"model": "unet", "feed": "tfdata"},
    "unet xla tf.data": {"model": "unet", "jit": True, "feed": "tfdata"},
    "xla tf.data": {"jit": True, "feed": "tfdata"},
    "residual": {"model": "residual", "width": 32},
    "residual xla": {"model": "residual", "width": 32, "jit": True},
}


def child(option: dict, steps: int, batch: int) -> dict:
    """Runs in a fresh process: `steps` training steps after a warm-up, timed."""
    import numpy as np

    if "threads" in option:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(option["threads"][0])
        tf.config.threading.set_inter_op_parallelism_threads(option["threads"][1])
    import keras

    from pipeline import data, noise
    from pipeline.config import loss_for
    from pipeline.model import build

    if option.get("bf16"):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    dataset = data.load(data.locate(None))
    images = data.to_unit_float(dataset.train_images[: steps * batch * 2])
    noisy = noise.add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(0))
    model = build(option.get("model", "lab"), option.get("width", 16))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=loss_for(option.get("model", "lab"), "auto"),
        jit_compile=bool(option.get("jit")),
    )
    if option.get("feed") == "tfdata":
        import tensorflow as tf

        feed = (
            tf.data.Dataset.from_tensor_slices((noisy, images))
            .shuffle(len(images))
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )

        def fit(count):
            return model.fit(feed.take(count).repeat(), steps_per_epoch=count, epochs=1, verbose=0)
    elif option.get("feed") == "pydataset":
        from pipeline.train import Batches  # the lab notebook's batches (§6), line for line

        raw = dataset.train_images[: steps * batch * 2]  # uint8: each batch normalised and noised

        def gaussian(clean, rng):
            return noise.add_gaussian_noise(clean, 0.0, 0.4, rng)

        batches = Batches(raw, batch, 0, gaussian)

        def fit(count):
            return model.fit(batches, steps_per_epoch=count, epochs=1, verbose=0)
    else:

        def fit(count):
            return model.fit(
                noisy,
                images,
                batch_size=batch,
                steps_per_epoch=count,
                epochs=1,
                shuffle=True,
                verbose=0,
            )

    fit(5)  # warm-up: tracing and compilation are not throughput
    started = time.perf_counter()
    fit(steps)
    seconds = time.perf_counter() - started
    return {
        "steps_per_second": steps / seconds,
        "images_per_second": steps * batch / seconds,
        "peak_rss_bytes": environment.resources()["peak_rss_bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--options", default=",".join(OPTIONS), help="comma-separated names")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(OPTIONS[arguments.child], arguments.steps, arguments.batch)))
        return
    names = arguments.options.split(",")
    results = {name: [] for name in names}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for round_index in range(arguments.rounds):
        order = names if round_index % 2 == 0 else names[::-1]  # alternate: no option always first
        for name in order:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    name,
                    "--steps",
                    str(arguments.steps),
                    "--batch",
                    str(arguments.batch),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            ).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
            print(
                f"round {round_index + 1} {name:>12}: "
                f"{results[name][-1]['images_per_second']:8.0f} images/s",
                flush=True,
            )
    base = statistics.median(r["images_per_second"] for r in results[names[0]])
    print(f"\n{'option':>12} {'images/s (median)':>18} {'ratio':>6} {'peak RSS':>9}")
    summary = {}
    for name in names:
        rate = statistics.median(r["images_per_second"] for r in results[name])
        rss = max(r["peak_rss_bytes"] for r in results[name])
        summary[name] = {
            "images_per_second": rate,
            "ratio": rate / base,
            "peak_rss_bytes": rss,
            "rounds": results[name],
        }
        print(f"{name:>12} {rate:18.0f} {rate / base:6.2f} {rss / 2**20:7.0f} MB")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "train_options.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
