"""The lab's training, standalone, to time it on an accelerator with Keras 3 on JAX.

Stdlib + NumPy + Keras only (no `pipeline` import): it runs on a machine that has JAX but not
our package, TensorFlow or a network. It follows the lab notebook (templates/lab.ipynb) step
by step: Fashion-MNIST from the IDX .gz files, x/255 in float32 with a channel axis, Gaussian
noise N(0, 0.4²) from np.random.default_rng(123) clipped to [0, 1] (train noise, then test
noise), the first 10 % of the training set as validation, the lab's 74 497-parameter
convolutional autoencoder, Adam 1e-3 and binary cross-entropy, 20 epochs of 256.

    KERAS_BACKEND=jax python benchmarks/gpu_lab.py --data DIR --out DIR --precision bfloat16

writes DIR/lab-<precision>[-<tag>].json: per-epoch seconds, the whole fit's seconds, the test
set's per-image MSE, the final losses, the devices JAX used and the versions.
`--epochs 1 --limit 2000` is a quick check (the first 2 000 training and test images).
`benchmarks/gpu-kit/run.sh` runs it for float32 and bfloat16 on the GPU machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import socket
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

SEED = 123
NOISE_MEAN, NOISE_STD = 0.0, 0.4
VAL_FRACTION = 0.1
EPOCHS, BATCH_SIZE, LEARNING_RATE = 20, 256, 1e-3
PREDICT_BATCH = 1024
IMAGE_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the Fashion-MNIST .gz files")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out", help="JSON folder")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training images and the first N test images (quick check)",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=1,
        help="Keras steps_per_execution (1 = the lab); >1 runs several batches per device call",
    )
    parser.add_argument(
        "--matmul-precision",
        choices=("default", "high", "highest"),
        default="default",
        help="jax_default_matmul_precision; 'highest' rules out TF32 for float32 convolutions",
    )
    parser.add_argument(
        "--noise-draw",
        choices=("fixed", "per-batch"),
        default="fixed",
        help="fixed: the lab's training noise, drawn once (§3); per-batch: training batches "
        "made from the uint8 images, with fresh noise per batch from a generator seeded by "
        "(seed, epoch, batch) (issue 17's memory plan); validation and test noise stay fixed",
    )
    parser.add_argument("--tag", default="", help="suffix of the JSON's name, for extra runs")
    parser.add_argument(
        "--require-gpu",
        action="store_true",
        help="exit 3 before training when JAX's default backend is not a GPU",
    )
    return parser.parse_args(argv)


# --- data (lab §2-§4) ---


def read_idx_gz(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed) as a NumPy array: magic 0 0 <type> <ndim>, big-endian
    uint32 dimensions, then the items."""
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    zero, type_code, ndim = struct.unpack_from(">HBB", raw, 0)
    if zero != 0 or type_code not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack_from(f">{ndim}I", raw, 4)
    return np.frombuffer(raw, dtype=IDX_TYPES[type_code], offset=4 + 4 * ndim).reshape(dims)


def add_gaussian_noise(images: np.ndarray, mean: float, std: float, rng) -> np.ndarray:
    """The lab's §3: images + N(mean, std²) per pixel (float32 draws), clipped to [0, 1]."""
    noise = mean + std * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images + noise, 0.0, 1.0)


def load_data(folder: Path, limit: int | None, rng):
    x_train = read_idx_gz(folder / IMAGE_FILES["train"])[:limit]
    x_test = read_idx_gz(folder / IMAGE_FILES["test"])[:limit]
    if x_train.shape[1:] != (28, 28) or x_test.shape[1:] != (28, 28):
        raise ValueError(f"{folder}: images are {x_train.shape[1:]}, not 28×28")
    x_train = np.expand_dims(x_train.astype("float32") / 255.0, axis=-1)  # (N, 28, 28, 1)
    x_test = np.expand_dims(x_test.astype("float32") / 255.0, axis=-1)
    x_train_noisy = add_gaussian_noise(x_train, NOISE_MEAN, NOISE_STD, rng)
    x_test_noisy = add_gaussian_noise(x_test, NOISE_MEAN, NOISE_STD, rng)
    val_size = int(len(x_train) * VAL_FRACTION)
    if val_size == 0 or val_size == len(x_train):
        raise ValueError(f"--limit {limit} leaves {val_size} validation images")
    return {
        "train": (x_train[val_size:], x_train_noisy[val_size:]),  # (clean, noisy)
        "val": (x_train[:val_size], x_train_noisy[:val_size]),
        "test": (x_test, x_test_noisy),
    }


def streamed_batches(keras, images: np.ndarray, batch_size: int, seed: int):
    """(noisy, clean) training batches made from uint8 images one batch at a time: no float
    copy of the training set. Each epoch has its own order, each batch its own noise, both from
    generators seeded by (seed, epoch[, batch]), so any batch can be remade in any order."""

    class StreamedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(images))

        def __len__(self):
            return -(-len(images) // batch_size)

        def __getitem__(self, index):
            pairs = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
            clean = images[pairs, ..., None].astype("float32") / 255.0
            noise_rng = np.random.default_rng([seed, self.epoch, index])
            return add_gaussian_noise(clean, NOISE_MEAN, NOISE_STD, noise_rng), clean

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(images))

    return StreamedBatches()


# --- model (lab §5) ---


def build_model(keras):
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1), name="denoise_input")
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same", name="enc_conv1")(inputs)
    x = layers.MaxPooling2D((2, 2), padding="same", name="enc_pool1")(x)  # 14×14×32
    x = layers.Conv2D(64, (3, 3), activation="relu", padding="same", name="enc_conv2")(x)
    encoded = layers.MaxPooling2D((2, 2), padding="same", name="enc_pool2")(x)  # 7×7×64
    x = layers.Conv2D(64, (3, 3), activation="relu", padding="same", name="dec_conv1")(encoded)
    x = layers.UpSampling2D((2, 2), name="dec_up1")(x)  # 14×14×64
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same", name="dec_conv2")(x)
    x = layers.UpSampling2D((2, 2), name="dec_up2")(x)  # 28×28×32
    # float32 output under mixed precision too: the sigmoid and the loss stay in float32
    outputs = layers.Conv2D(
        1, (3, 3), activation="sigmoid", padding="same", dtype="float32", name="dec_output"
    )(x)
    model = keras.Model(inputs, outputs, name="denoising_autoencoder")
    if model.count_params() != 74497:
        raise AssertionError(f"the lab's model has 74 497 parameters, not {model.count_params()}")
    return model


def make_epoch_timer(keras, partial_path: Path, context: dict):
    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock seconds of each epoch (its training steps and its validation). After
        each epoch the times so far go to `partial_path`, so a run stopped by a timeout still
        leaves them."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.losses: list[list[float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            # float() waits for the device: the epoch's last step has finished when timed
            loss = [float(logs[k]) if k in logs else None for k in ("loss", "val_loss")]
            self.seconds.append(time.perf_counter() - self._started)
            self.losses.append(loss)
            partial = {
                **context,
                "epochs_seconds": [round(s, 4) for s in self.seconds],
                "loss_val_loss": self.losses,
                "finished": False,
            }
            partial_path.write_text(json.dumps(partial, indent=2) + "\n", encoding="utf-8")

    return EpochTimer()


def describe_devices(jax) -> list[str]:
    return [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '?')}" for d in jax.devices()]


def versions(keras, jax) -> dict:
    found = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "jax": jax.__version__,
    }
    try:
        import jaxlib

        found["jaxlib"] = jaxlib.__version__
    except (ImportError, AttributeError):
        pass
    try:
        from importlib import metadata

        for name in (
            "jax-cuda13-plugin",
            "jax-cuda13-pjrt",
            "jax-cuda12-plugin",
            "jax-cuda12-pjrt",
            "ml_dtypes",
            "optree",
            "h5py",
        ):
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    except ImportError:
        pass
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    started_all = time.perf_counter()

    import jax

    if args.matmul_precision != "default":
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    import keras

    backend = keras.config.backend()
    devices = describe_devices(jax)
    default_backend = jax.default_backend()
    print(f"keras {keras.__version__} (backend {backend}) · jax {jax.__version__}", flush=True)
    print(f"jax.devices(): {jax.devices()}", flush=True)
    print(f"default backend: {default_backend}", flush=True)
    if backend != "jax":
        print(f"error: KERAS_BACKEND is {backend!r}; this benchmark is for 'jax'", file=sys.stderr)
        return 2
    if args.require_gpu and default_backend != "gpu":
        print(
            f"error: --require-gpu but JAX's default backend is {default_backend!r}",
            file=sys.stderr,
        )
        return 3

    # Seeds as in the lab: NumPy's generator makes the noise; Keras the weights and shuffling
    rng = np.random.default_rng(SEED)
    keras.utils.set_random_seed(SEED)
    if args.precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    else:
        keras.mixed_precision.set_global_policy("float32")

    t0 = time.perf_counter()
    data = load_data(Path(args.data), args.limit, rng)
    data_seconds = time.perf_counter() - t0
    (train_clean, train_noisy), (val_clean, val_noisy) = data["train"], data["val"]
    test_clean, test_noisy = data["test"]
    print(
        f"data: {len(train_clean)} train, {len(val_clean)} val, {len(test_clean)} test "
        f"({data_seconds:.1f} s)",
        flush=True,
    )

    model = build_model(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="binary_crossentropy",
        steps_per_execution=args.steps_per_execution,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"lab-{args.precision}{'-' + args.tag if args.tag else ''}.json"
    partial_path = out / f"partial-{name}"
    context = {"precision": args.precision, "device": devices[0] if devices else None}
    timer = make_epoch_timer(keras, partial_path, context)
    t0 = time.perf_counter()
    if args.noise_draw == "per-batch":
        raw = read_idx_gz(Path(args.data) / IMAGE_FILES["train"])[: args.limit][len(val_clean) :]
        training = {"x": streamed_batches(keras, raw, args.batch_size, SEED)}
    else:
        training = {"x": train_noisy, "y": train_clean, "batch_size": args.batch_size}
    history = model.fit(
        **training,
        epochs=args.epochs,
        shuffle=True,
        validation_data=(val_noisy, val_clean),
        validation_batch_size=args.batch_size,
        verbose=2,
        callbacks=[timer],
    )
    fit_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    denoised = model.predict(test_noisy, batch_size=PREDICT_BATCH, verbose=0)
    predict_seconds = time.perf_counter() - t0
    denoised = np.asarray(denoised)
    mse = np.mean(
        np.square(test_clean.astype(np.float64) - denoised.astype(np.float64)), axis=(1, 2, 3)
    )
    epochs_seconds = [round(s, 4) for s in timer.seconds]
    after_first = timer.seconds[1:]
    losses = [float(v) for v in history.history["loss"]]
    val_losses = [float(v) for v in history.history["val_loss"]]

    result = {
        "precision": args.precision,
        "policy": keras.mixed_precision.global_policy().name,
        "layer_dtypes": {  # compute / variable dtype of each layer with weights
            layer.name: f"{layer.compute_dtype}/{layer.variable_dtype}"
            for layer in model.layers
            if layer.weights
        },
        "device": devices[0] if devices else None,
        "devices": devices,
        "default_backend": default_backend,
        "epochs_seconds": epochs_seconds,
        "fit_seconds": round(fit_seconds, 4),
        "first_epoch_seconds": epochs_seconds[0] if epochs_seconds else None,
        "mean_epoch_seconds_after_first": (
            round(float(np.mean(after_first)), 4) if after_first else None
        ),
        "median_epoch_seconds_after_first": (
            round(float(np.median(after_first)), 4) if after_first else None
        ),
        "predict_seconds": round(predict_seconds, 4),
        "data_seconds": round(data_seconds, 4),
        "total_seconds": round(time.perf_counter() - started_all, 4),
        "test_mse_mean": float(mse.mean()),
        "test_mse_median": float(np.median(mse)),
        "test_mse_min": float(mse.min()),
        "test_mse_max": float(mse.max()),
        "test_denoised_finite": bool(np.all(np.isfinite(denoised))),
        "final_loss": losses[-1] if losses else None,
        "final_val_loss": val_losses[-1] if val_losses else None,
        "loss": losses,
        "val_loss": val_losses,
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "steps_per_execution": args.steps_per_execution,
            "matmul_precision": args.matmul_precision,
            "limit": args.limit,
            "train_images": len(train_clean),
            "val_images": len(val_clean),
            "test_images": len(test_clean),
            "predict_batch_size": PREDICT_BATCH,
            "seed": SEED,
            "noise": {"mean": NOISE_MEAN, "std": NOISE_STD, "draw": args.noise_draw},
            "learning_rate": LEARNING_RATE,
            "parameters": int(model.count_params()),
        },
        "versions": versions(keras, jax),
        "host": socket.gethostname(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }

    print(
        f"{args.precision}: fit {fit_seconds:.2f} s, "
        f"first epoch {result['first_epoch_seconds']} s, "
        f"later epochs {result['mean_epoch_seconds_after_first']} s on average; "
        f"predict {predict_seconds:.2f} s",
        flush=True,
    )
    print(
        f"test MSE per image: mean {mse.mean():.6f}  median {np.median(mse):.6f}  "
        f"min {mse.min():.6f}  max {mse.max():.6f}; final val_loss {result['final_val_loss']:.5f}",
        flush=True,
    )
    (out / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    partial_path.unlink(missing_ok=True)
    print(f"wrote {out / name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
