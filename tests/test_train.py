"""Lab §6: training is reproducible, with XLA too, and its history is plain data."""

import numpy as np
import pytest

from pipeline import compare, data, environment, train
from pipeline.config import load_config
from pipeline.model import build
from tests.conftest import SUBSET_DIR


def _train_unet_with_xla():
    config = load_config(
        "quick",
        overrides=[
            "model.name=unet",
            "model.width=4",
            "training.epochs=1",
            "training.jit_compile=true",
            "data.train_limit=512",
            "data.test_limit=64",
            "training.batch_size=128",
        ],
    )
    environment.seed_everything(config.seed)
    arrays = compare.prepare(config, data.load(SUBSET_DIR))
    model = build(config.model.name, config.model.width)
    history = train.train(model, arrays.train, arrays.val, config, jit_compile=True)
    clean, noisy = arrays.test
    return model, history, model.predict(noisy, verbose=0)  # determinism is on again here


def test_xla_is_used_under_op_determinism_and_trains_the_same_twice():
    first, first_history, first_denoised = _train_unet_with_xla()
    second, second_history, second_denoised = _train_unet_with_xla()
    assert first.jit_compile and second.jit_compile  # Keras did not silently turn it off
    from tensorflow.python.framework import config as tf_config

    assert tf_config.is_op_determinism_enabled()  # and determinism is back on for the rest
    assert first_history["loss"] == second_history["loss"]
    assert first_history["val_loss"] == second_history["val_loss"]
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first_denoised, second_denoised)


def test_the_log_counts_the_images_of_a_dataset_that_serves_its_own_batches():
    images = np.zeros((540, 28, 28), "uint8")

    def noisy(clean, rng):
        return clean + 1

    batches = train.Batches(images, batch_size=256, seed=0, make_noisy=noisy)
    assert len(batches) == 3  # 256 + 256 + 28
    assert train.dataset_size(batches) == (540, 256)
    assert train.dataset_size(train.Batches(images[:512], 256, 0, noisy)) == (512, 256)


class _Interrupted(Exception):
    pass


def _fit_two_epochs(root, interrupt: bool) -> list[np.ndarray]:
    """A small model fitted for two epochs on `train.Batches` through `train.fit` with a model
    cache in `root`; `interrupt`: stop after the first epoch, as a killed build does."""
    import keras

    from pipeline import cache

    config = load_config("quick", overrides=["training.epochs=2"])
    environment.seed_everything(config.seed)
    images = data.load(SUBSET_DIR).train_images[:96]
    val = data.to_unit_float(images[:32])
    batches = train.Batches(images, 32, config.seed, lambda clean, rng: clean + rng.random())
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(optimizer="adam", loss="mse")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Interrupted

    def run_fit(callbacks):
        extra = [Interrupt()] * interrupt
        model.fit(
            batches,
            epochs=2,
            validation_data=(val, val),
            shuffle=False,
            verbose=0,
            callbacks=callbacks + extra,
        )

    model_cache = cache.ModelCache(root, {"test": "resume"}, run_id="run")
    train.fit(model, run_fit, config, jit_compile=False, cache=model_cache, dataset=batches)
    return model.get_weights()


def test_a_resumed_training_is_the_uninterrupted_one(tmp_path):
    """Resuming after epoch 1 restores the weights (BackupAndRestore), and the batches: the
    second epoch's order and noise, not the first's again, so the model ends the same."""
    uninterrupted = _fit_two_epochs(tmp_path / "once", interrupt=False)
    with pytest.raises(_Interrupted):
        _fit_two_epochs(tmp_path / "twice", interrupt=True)
    resumed = _fit_two_epochs(tmp_path / "twice", interrupt=False)
    for a, b in zip(uninterrupted, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
