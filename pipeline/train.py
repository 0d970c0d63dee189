"""Lab §6: fit with per-epoch progress, resumable and cached, and the history as plain data.

The build fits inside the lab notebook (pipeline.harness wraps the model's own `fit`);
`dae-report compare` compiles and fits here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from pipeline import artifacts, data, environment, noise
from pipeline.config import Config, loss_for
from pipeline.errors import RunError
from pipeline.progress import format_duration, report


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch (losses, the epoch's time, the time left at that pace), and the
    history so far in `history_path`, so a resumed run still has every epoch's losses. The
    history also keeps each epoch's seconds and the process's resident memory at its end
    (`epoch_rss_bytes`, None where it cannot be read), so a creep shows epoch by epoch."""

    def __init__(self, epochs: int, history_path: Path | None = None, echo: bool = True) -> None:
        super().__init__()
        self.epochs, self.history_path, self.echo = epochs, history_path, echo
        self.history = {"loss": [], "val_loss": [], "epoch_seconds": []}
        self.resumed_from_epoch = 0
        self._first = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first and epoch > 0 and self.history_path and self.history_path.is_file():
            # BackupAndRestore restored the weights of `epoch` finished epochs.
            saved = artifacts.read_json(self.history_path)
            self.history = {key: values[:epoch] for key, values in saved.items()}
            self.resumed_from_epoch = epoch
            report(
                f"resumed after epoch {epoch}/{self.epochs} of an interrupted build", echo=self.echo
            )
        self._first = False
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss", "mse", "val_mse"):
            if key in logs:  # mse: when the model was compiled with it (dae-report compare)
                self.history.setdefault(key, []).append(float(logs[key]))
        self.history["epoch_seconds"].append(time.perf_counter() - self._started)
        self.history.setdefault("epoch_rss_bytes", []).append(environment.rss())
        if self.history_path:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            artifacts.write_json(self.history_path, self.history)
        done = epoch + 1
        # ETA from this process's epochs: the first includes graph tracing, so it is slower.
        timed = self.history["epoch_seconds"][self.resumed_from_epoch :]
        remaining = (self.epochs - done) * float(np.mean(timed))
        report(
            f"{done:>{len(str(self.epochs))}}/{self.epochs}"
            f"  loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}"
            f"  {self.history['epoch_seconds'][-1]:.1f} s"
            + (f"  ETA {format_duration(remaining)}" if done < self.epochs else ""),
            echo=self.echo,  # in the notebook, Keras prints its own line per epoch
        )


class Feed(keras.callbacks.Callback):
    """A PyDataset's batches, served through tf.data instead of Keras' PyDataset adapter: the
    same arrays in the same order, epoch after epoch, trained 1.4–1.5× faster on the TensorFlow
    backend. The adapter goes through tf.data's from_generator, which sets glibc's trim
    threshold to 128 KiB for the whole process, so every buffer TensorFlow frees is faulted in
    again at the next step (README, Performance). Here a sequential `tf.numpy_function` map
    makes each batch (ahead of the step where op determinism allows the prefetch).

    The dataset keeps its own contract: it serves `dataset[index]` and advances on
    `on_epoch_end()`, which the feed calls itself, in order, before the first batch of each
    epoch. A fit resumed at epoch e (BackupAndRestore) starts the feed there: the dataset is
    first advanced through the e epochs it missed, so it serves what an uninterrupted fit does.
    Pass `inputs` to `fit` as x, with `steps_per_epoch=steps`, and the feed among the callbacks.
    (A resumed fit's feed is longer than the fit: tf.data may make the next batch or two, for
    nothing, after the last epoch.)
    """

    def __init__(self, dataset: keras.utils.PyDataset, epochs: int) -> None:
        import tensorflow as tf

        super().__init__()
        self.dataset, self.steps = dataset, len(dataset)
        self.first_epoch: int | None = None  # the fit's, known when its first epoch begins
        self._epoch = 0  # how many on_epoch_end() the dataset has seen
        specs = [tf.TensorSpec((None, *array.shape[1:]), array.dtype) for array in dataset[0]]

        def serve(step):  # in tf.data's thread: the sequential map calls it in step order
            epoch, index = divmod(self.first_epoch * self.steps + int(step), self.steps)
            while self._epoch < epoch:
                self.dataset.on_epoch_end()
                self._epoch += 1
            return self.dataset[index]

        def batch(step):
            arrays = tf.numpy_function(serve, [step], [spec.dtype for spec in specs])
            return tuple(tf.ensure_shape(a, s.shape) for a, s in zip(arrays, specs, strict=True))

        self.inputs = tf.data.Dataset.range(epochs * self.steps).map(batch).prefetch(2)

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch


class Batches(keras.utils.PyDataset):
    """The lab's NoisyBatches (§6), line for line, for `compare`: (noisy, clean) batches made
    from the uint8 `images` when asked for, normalised as §2 does and corrupted by
    `make_noisy(clean, rng)`. Each epoch's order and each batch's noise come from generators
    seeded with (seed, epoch[, batch]), so a model trained here is the one the notebook trains,
    and no float copy of the training set exists."""

    def __init__(self, images, batch_size, seed, make_noisy, **kwargs):
        super().__init__(**kwargs)
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.make_noisy = make_noisy
        self.epoch = 0
        self.order = np.random.default_rng([seed, 0]).permutation(len(images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        pairs = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        clean = data.to_unit_float(self.images[pairs])
        noise_rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.make_noisy(clean, noise_rng), clean

    def on_epoch_end(self):
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))


def train(
    model: keras.Model,
    train_images: np.ndarray,
    val_pair: tuple[np.ndarray, np.ndarray],
    config: Config,
    jit_compile: bool,
    cache=None,
    track_mse: bool = True,
) -> dict:
    """Compile (with XLA if `jit_compile`: the machine's choice) and fit noisy -> clean on
    batches of the uint8 `train_images` with the config's training noise (`Batches`); the
    validation pair is (clean, noisy), as `compare.prepare` returns it. See `fit` for the
    cache and the history returned; with `track_mse` (compare's models) it also holds the
    training and validation MSE per epoch, whatever the loss."""
    settings = config.training
    val_clean, val_noisy = val_pair
    steps = -(-len(train_images) // settings.batch_size)
    compile_model(model, config, jit_compile, steps, track_mse)

    def make_noisy(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return noise.corrupt(clean, config.noise, rng, training=True)

    batches = Batches(train_images, settings.batch_size, config.seed, make_noisy)

    def run_fit(callbacks: list, **feed) -> None:  # feed: `batches` through tf.data
        model.fit(
            **feed,
            epochs=settings.epochs,
            validation_data=(val_noisy, val_clean),
            validation_batch_size=settings.batch_size,
            shuffle=False,  # Batches shuffles: its order depends on the epoch alone
            verbose=0,
            callbacks=callbacks,
        )

    announce(len(train_images), settings.epochs, settings.batch_size)
    history = fit(model, run_fit, config, jit_compile, cache, dataset=batches)
    if track_mse and model.loss == "mse":  # the same numbers under the metric's names
        history.setdefault("mse", history["loss"])
        history.setdefault("val_mse", history["val_loss"])
    return history


def compile_model(
    model: keras.Model, config: Config, jit_compile: bool, steps_per_epoch: int, track_mse: bool
) -> None:
    """Adam at training.learning_rate (decayed to 0 over the epochs with the cosine schedule)
    and the config's loss; XLA if `jit_compile`. With `track_mse`, MSE is a metric unless the
    loss is the MSE already (a metric is computed again at every training step)."""
    settings = config.training
    loss = loss_for(config.model.name, settings.loss)
    rate = settings.learning_rate
    if settings.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=settings.epochs * steps_per_epoch
        )
    with environment.xla_allowed(jit_compile):
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=rate),
            loss=loss,
            metrics=["mse"] if track_mse and loss != "mse" else None,
            jit_compile=jit_compile,
        )


def announce(images: int, epochs: int, batch_size: int) -> None:
    """The build log's line before training: how much work the epochs are."""
    steps = -(-images // batch_size)
    report(
        f"training: {images} images, {epochs} epoch{'s' * (epochs != 1)} × {steps} batches "
        f"of {batch_size}",
        echo=False,
    )


def dataset_size(batches: keras.utils.PyDataset) -> tuple[int, int]:
    """(images, batch size) of a dataset that serves its own batches, as the lab's NoisyBatches
    (§6) does: every batch full but the last. Reads the first and the last batch."""
    batch_size = len(batches[0][0])
    return (len(batches) - 1) * batch_size + len(batches[len(batches) - 1][0]), batch_size


def fit(
    model: keras.Model,
    run_fit: Callable[..., object],
    config: Config,
    jit_compile: bool,
    cache=None,
    echo: bool = True,
    dataset: keras.utils.PyDataset | None = None,
) -> dict:
    """Train `model` by calling `run_fit(callbacks, **feed)`, which fits it (lab §6) with our
    callbacks added: per-epoch progress and, with a `cache.ModelCache`, resuming an interrupted
    run. `jit_compile`: whether the model was compiled with XLA (op determinism is lifted for it).
    `dataset`: the PyDataset the fit draws its batches from, if it does; `feed` then holds the
    fit arguments that replace it (x, steps_per_epoch: see `Feed`), else nothing.

    With a cache, a model trained before on the same inputs is loaded instead and `run_fit` is
    not called; a newly trained one is stored. Returns the history (per-epoch losses and
    seconds, total seconds) and, with a cache, what was decided about the model. A loss that
    is not finite is a RunError.
    """
    settings = config.training
    record = cache.lookup() if cache is not None else None
    if record is not None:
        model.load_weights(cache.model_path())
        report(
            f"model reused from run {record['run']} (cache key {cache.key}): nothing that "
            "affects training changed",
            echo=echo,
        )
        return {**record["history"], "cache": cache.decision(record)}

    if cache is not None:
        cache.check_backup()  # an unreadable resume state is dropped, not fatal at every build
    history_path = cache.backup_dir / "history.json" if cache is not None else None
    progress = EpochProgress(settings.epochs, history_path, echo=echo)
    callbacks = [progress, keras.callbacks.TerminateOnNaN()]
    if cache is not None:  # after `progress`, so the history is saved before the weights
        callbacks.append(keras.callbacks.BackupAndRestore(str(cache.backup_dir)))
    feed = {}
    if dataset is not None:
        feeder = Feed(dataset, settings.epochs)
        callbacks.append(feeder)
        feed = {"x": feeder.inputs, "steps_per_epoch": feeder.steps}
    started = time.perf_counter()
    with environment.xla_allowed(jit_compile):
        run_fit(callbacks, **feed)
    history = {**progress.history, "seconds": time.perf_counter() - started}
    losses = history["loss"] + history["val_loss"]
    if len(history["loss"]) < settings.epochs or not np.all(np.isfinite(losses)):
        raise RunError(
            f"training diverged: the loss became {history['loss'][-1]} in epoch "
            f"{len(history['loss'])}; lower training.learning_rate (now {settings.learning_rate})"
        )
    if cache is not None:
        history["seconds"] += sum(history["epoch_seconds"][: progress.resumed_from_epoch])
        decision = cache.decision(None, progress.resumed_from_epoch)  # before this model is stored
        cache.store(model, history)
        history["cache"] = decision
    return history
