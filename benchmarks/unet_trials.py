"""Goal 5's trials: how far the U-Net of `dae-report compare` gets at the lab's noise (std 0.4)
when it is widened, trained longer or on smaller batches, rearranged, or averaged with its mirror
image, on the full data.

    .venv/bin/python benchmarks/unet_trials.py                     # every trial, ~5 h on 2 cores
    .venv/bin/python benchmarks/unet_trials.py --trials compare,inner-x1.5
    .venv/bin/python benchmarks/unet_trials.py --trials compare --seed 7   # run-to-run spread

Each trial trains the way `compare` trains its U-Net (compare.prepare's images and noise,
train.train's batches, MSE loss, cosine-decayed Adam, oneDNN as this machine's probe chose for
the U-Net) with its own width, growth and recipe, in its own process, one after another.
It prints each epoch's losses and time as the epoch ends, then the trial's validation MSE by
epoch, its test MSE and the PSNR of the mean MSE on the 10 000 test images, plain and averaged
with the prediction on the horizontally flipped image (geometric self-ensemble). Each trial's
result replaces its entry in benchmarks/results/unet_trials.json as the trial ends; the others'
entries stay. `--seed` trains and scores with another seed than the config's (weights, batch order,
training noise, validation and test noise); a run with `--seed` or `--epochs` saves under an entry
of its own ("TRIAL seed N", "TRIAL epochs 1"), so a smoke run never replaces a measured trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline import environment


def unet_trial(width: int, growth: tuple[int, int], batch: int, rate: float, epochs: int) -> dict:
    """A U-Net of `width` channels at 28×28 (`growth` times as many at 14×14 and 7×7), trained
    with Adam at `rate` (cosine) on batches of `batch` for `epochs`."""
    return {
        "width": width,
        "growth": growth,
        "training": {"batch_size": batch, "learning_rate": rate, "epochs": epochs},
    }


# Each trial spells its recipe out, so that its recorded result stays what it measured when
# compare's recipe changes; only "compare" follows compare.TRAINING_RECIPES["unet"].
TRIALS = {
    "compare": {"width": 16, "growth": (2, 4), "training": {}},
    "b128": unet_trial(16, (2, 4), 128, 3e-3, 10),  # compare's recipe until 2026-12-07
    "inner-x1.5": unet_trial(16, (3, 6), 256, 4e-3, 12),
    "wide-24": unet_trial(24, (2, 4), 256, 4e-3, 8),
    "wide-24-b128": unet_trial(24, (2, 4), 128, 3e-3, 6),  # 2.25× the arithmetic of b128's
    "wide-32": unet_trial(32, (2, 4), 128, 3e-3, 10),  # 4× the arithmetic of b128's
    # The same U-Net with more, smaller steps: 8 440 at batch 64, 16 880 at batch 32.
    "b64": unet_trial(16, (2, 4), 64, 2e-3, 10),
    "b64-14": unet_trial(16, (2, 4), 64, 2e-3, 14),
    "b32": unet_trial(16, (2, 4), 32, 1.5e-3, 10),
    # Space-to-depth (as FFDNet): the U-Net works on four 14×14 sub-images, at half of compare's
    # cost per epoch, so twice the epochs fit in compare's time.
    "s2d-32": {**unet_trial(32, (2,), 64, 2e-3, 24), "layout": "space-to-depth"},
}


def build_space_to_depth(base: int, growth: tuple[int]):
    """A U-Net on the image's four 14×14 sub-images (pixel unshuffle): `base` channels at
    14×14 and `growth[0]` times as many at 7×7; its four outputs are shuffled back to 28×28."""
    import keras
    from keras import layers

    from pipeline.model import INPUT_SHAPE, _double_conv

    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Reshape((14, 2, 14, 2))(inputs)
    subimages = layers.Reshape((14, 14, 4))(layers.Permute((1, 3, 2, 4))(x))
    level1 = _double_conv(subimages, base, "enc1")
    bottom = _double_conv(layers.MaxPooling2D(2)(level1), growth[0] * base, "bottom")
    x = layers.Concatenate()([layers.UpSampling2D(2)(bottom), level1, subimages])
    x = layers.Reshape((14, 14, 2, 2))(layers.Conv2D(4, 1)(_double_conv(x, base, "dec1")))
    x = layers.Reshape(INPUT_SHAPE)(layers.Permute((1, 3, 2, 4))(x))
    outputs = layers.Activation("sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="unet_space_to_depth")


def child(name: str, epochs: int | None = None, seed: int | None = None) -> dict:
    """Runs in a fresh process: trial `name` trained and scored on the full data (for `epochs`
    instead of the trial's, and with `seed` instead of the config's, if given)."""
    from pipeline import compare, data, evaluate
    from pipeline.config import load_config

    trial = TRIALS[name]
    config = compare.variant(load_config("full"), "unet")
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, width=trial["width"]),
        training=dataclasses.replace(config.training, jit_compile=False, **trial["training"]),
    )
    if epochs:
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, epochs=epochs)
        )
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    training = config.training  # oneDNN as measured for this U-Net, before TensorFlow's import
    onednn = environment.choose_onednn("auto", "unet", trial["width"], training.batch_size)
    environment.apply_onednn(onednn)
    import keras

    from pipeline import train
    from pipeline.model import build_unet

    environment.seed_everything(config.seed)
    arrays = compare.prepare(config, data.load(data.locate(None)))
    keras.utils.set_random_seed(config.seed)
    if trial.get("layout") == "space-to-depth":
        model = build_space_to_depth(trial["width"], trial["growth"])
    else:
        model = build_unet(trial["width"], trial["growth"])
    history = train.train(model, arrays.train, arrays.val, config, jit_compile=False)
    clean, noisy = arrays.test
    plain = model.predict(noisy, batch_size=256, verbose=0)
    mirrored = model.predict(noisy[:, :, ::-1], batch_size=256, verbose=0)[:, :, ::-1]
    scores = {}
    for label, denoised in (("plain", plain), ("flip-averaged", (plain + mirrored) / 2)):
        mse = evaluate.per_image_mse(clean, denoised)
        scores[label] = {"mse": float(mse.mean()), "psnr": evaluate.psnr_of_mean_mse(mse)}
    return {
        "trial": {**trial, "training": dataclasses.asdict(config.training)},
        "seed": config.seed,
        "parameters": int(model.count_params()),
        "onednn": {**onednn, "active": environment.onednn_active()},
        "training_seconds": history["seconds"],
        "epoch_seconds": history["epoch_seconds"],
        "val_mse": history["val_mse"],
        "loss": history["loss"],
        "scores": scores,
    }


def entry(name: str, epochs: int | None, seed: int | None) -> str:
    """Trial `name`'s key in the results: its name, and what the run changed in it."""
    return " ".join(
        [name] + [f"seed {seed}"] * (seed is not None) + [f"epochs {epochs}"] * bool(epochs)
    )


def run_child(name: str, epochs: int | None, seed: int | None, env: dict) -> dict:
    """Trial `name` in a fresh process; its per-epoch lines are passed on as they come, and its
    last line is the result."""
    command = [sys.executable, __file__, "--child", name]
    command += ["--epochs", str(epochs)] if epochs else []
    command += ["--seed", str(seed)] if seed is not None else []
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child_process:
        for line in child_process.stdout:
            lines.append(line)
            if not line.startswith("{"):
                print(f"{name:>12}: {line}", end="", flush=True)
    if child_process.returncode:
        raise SystemExit(f"trial {name} failed (exit {child_process.returncode})")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=",".join(TRIALS), help="comma-separated names")
    parser.add_argument("--epochs", type=int, help="every trial this many epochs (a smoke run)")
    parser.add_argument("--seed", type=int, help="another seed than the config's")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(arguments.child, arguments.epochs, arguments.seed)))
        return
    names = arguments.trials.split(",")
    if unknown := sorted(set(names) - set(TRIALS)):
        raise SystemExit(f"unknown trial {', '.join(unknown)} (choose from: {', '.join(TRIALS)})")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    saved = Path(__file__).parent / "results" / "unet_trials.json"
    saved.parent.mkdir(exist_ok=True)
    for name in names:
        result = run_child(name, arguments.epochs, arguments.seed, env)
        key = entry(name, arguments.epochs, arguments.seed)
        # Saved as each trial ends, so that stopping a long run keeps the trials it finished.
        results = json.loads(saved.read_text()) if saved.exists() else {}
        saved.write_text(json.dumps({**results, key: result}, indent=2))
        curve = " ".join(f"{value:.4f}" for value in result["val_mse"])
        print(
            f"{key:>12}: {result['parameters']:7d} parameters, "
            f"{result['training_seconds']:5.0f} s of training "
            f"(epochs {min(result['epoch_seconds']):.0f}–{max(result['epoch_seconds']):.0f} s), "
            f"test {result['scores']['plain']['psnr']:.2f} dB "
            f"(flip-averaged {result['scores']['flip-averaged']['psnr']:.2f}); "
            f"validation MSE by epoch {curve}",
            flush=True,
        )


if __name__ == "__main__":
    main()
