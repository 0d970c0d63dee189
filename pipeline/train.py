"""Lab §6: compile and fit, with per-epoch progress and the history as plain data."""

from __future__ import annotations

import time

import keras
import numpy as np

from pipeline.config import TrainingConfig
from pipeline.errors import RunError
from pipeline.progress import format_duration, report


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: losses, the epoch's time and the time left at that pace."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._started)
        done = epoch + 1
        # ETA from the mean epoch time: the first epoch includes graph tracing, so it is slower.
        remaining = (self.epochs - done) * float(np.mean(self.epoch_seconds))
        report(
            f"epoch {done:>{len(str(self.epochs))}}/{self.epochs}"
            f"  loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}"
            f"  {self.epoch_seconds[-1]:.1f} s"
            + (f"  ETA {format_duration(remaining)}" if done < self.epochs else "")
        )


def train(
    model: keras.Model,
    train_pair: tuple[np.ndarray, np.ndarray],
    val_pair: tuple[np.ndarray, np.ndarray],
    settings: TrainingConfig,
) -> dict:
    """Fit noisy -> clean. Pairs are (clean, noisy), as `data.split_validation` returns them.

    Returns the history: per-epoch loss, val_loss and seconds, and the total seconds.
    """
    train_clean, train_noisy = train_pair
    val_clean, val_noisy = val_pair
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="binary_crossentropy",
    )
    progress = EpochProgress(settings.epochs)
    steps = -(-len(train_clean) // settings.batch_size)
    report(
        f"training: {len(train_clean)} images, {settings.epochs} epochs × {steps} batches "
        f"of {settings.batch_size}",
        echo=False,
    )
    started = time.perf_counter()
    history = model.fit(
        train_noisy,
        train_clean,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        shuffle=True,
        validation_data=(val_noisy, val_clean),
        verbose=0,
        callbacks=[progress, keras.callbacks.TerminateOnNaN()],
    )
    losses = history.history["loss"] + history.history.get("val_loss", [])
    if not np.all(np.isfinite(losses)):
        raise RunError(
            f"training diverged: the loss became {history.history['loss'][-1]} in epoch "
            f"{len(history.history['loss'])}; lower training.learning_rate "
            f"(now {settings.learning_rate})"
        )
    return {
        "loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        "epoch_seconds": progress.epoch_seconds,
        "seconds": time.perf_counter() - started,
    }
