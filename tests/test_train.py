"""Lab §6: training is reproducible, with XLA too, and its history is plain data."""

import numpy as np
import pytest

from pipeline import compare, data, environment, train
from pipeline.config import load_config
from pipeline.model import build
from tests.conftest import SUBSET_DIR


def _train(name: str, *overrides: str, jit_compile: bool = False, track_mse: bool = True):
    """Model `name` (4 base channels) trained for one epoch on the test subset as `compare`
    trains it; returns the model, its history and its denoised test images."""
    config = load_config(
        "quick",
        overrides=[f"model.name={name}", "model.width=4", "training.epochs=1", *overrides],
    )
    environment.seed_everything(config.seed)
    arrays = compare.prepare(config, data.load(SUBSET_DIR))
    model = build(config.model.name, config.model.width)
    history = train.train(model, arrays.train, arrays.val, config, jit_compile, None, track_mse)
    clean, noisy = arrays.test
    return model, history, model.predict(noisy, verbose=0)  # determinism is on again here


def _train_unet_with_xla():
    return _train(
        "unet",
        "training.jit_compile=true",
        "data.train_limit=512",
        "data.test_limit=64",
        "training.batch_size=128",
        jit_compile=True,
    )


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


def test_every_model_has_its_mse_per_epoch_and_the_build_path_computes_no_metric():
    histories = {
        (name, track_mse): _train(
            name, "data.train_limit=256", "data.test_limit=16", track_mse=track_mse
        )[1]
        for name, track_mse in (("unet", True), ("lab", True), ("lab", False))
    }
    unet = histories["unet", True]  # MSE loss: the loss is the MSE, no metric computes it twice
    assert unet["mse"] == unet["loss"] and unet["val_mse"] == unet["val_loss"]
    lab = histories["lab", True]  # binary cross-entropy: the MSE is a metric of its own
    assert lab["val_mse"][0] < lab["val_loss"][0] and lab["mse"][0] != lab["loss"][0]
    assert "mse" not in histories["lab", False] and "val_mse" not in histories["lab", False]
    assert histories["lab", False]["loss"] == lab["loss"]  # a metric does not change training


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

    def run_fit(callbacks, **feed):
        extra = [Interrupt()] * interrupt
        model.fit(
            **feed,
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


def test_the_history_records_the_resident_memory_after_each_epoch():
    import keras

    config = load_config("quick", overrides=["training.epochs=3"])
    images = data.to_unit_float(data.load(SUBSET_DIR).train_images[:64])
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(optimizer="adam", loss="mse")

    def run_fit(callbacks):
        model.fit(
            images,
            images,
            epochs=3,
            validation_data=(images, images),
            verbose=0,
            callbacks=callbacks,
        )

    history = train.fit(model, run_fit, config, jit_compile=False)
    assert len(history["epoch_rss_bytes"]) == 3
    # A process that has imported TensorFlow holds hundreds of MiB; this one, less than 64 GiB.
    assert all(100 * 2**20 < value < 64 * 2**30 for value in history["epoch_rss_bytes"])


def test_the_feed_trains_on_the_datasets_batches_epoch_after_epoch():
    """Fitting through `train.fit`'s tf.data feed for three epochs is fitting, step for step,
    on epoch 0's batches, then epoch 1's, then epoch 2's: the model is bit for bit the one
    trained on those batches laid end to end (and Keras keeps the feed's iterator across
    epochs instead of starting it again)."""
    import keras

    epochs = 3
    config = load_config("quick", overrides=[f"training.epochs={epochs}"])
    images = data.load(SUBSET_DIR).train_images[:96]  # 3 full batches of 32 each epoch
    val = data.to_unit_float(images[:32])

    def batches():
        return train.Batches(images, 32, config.seed, lambda clean, rng: clean + rng.random())

    def model():
        environment.seed_everything(config.seed)
        model = keras.Sequential(
            [keras.Input((28, 28, 1)), keras.layers.Conv2D(1, 3, padding="same")]
        )
        model.compile(optimizer="adam", loss="mse")
        return model

    fed = model()
    train.fit(
        fed,
        lambda callbacks, **feed: fed.fit(
            **feed,
            epochs=epochs,
            validation_data=(val, val),
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        ),
        config,
        jit_compile=False,
        dataset=batches(),
    )
    dataset, pairs = batches(), []
    for _ in range(epochs):
        pairs += [dataset[index] for index in range(len(dataset))]
        dataset.on_epoch_end()
    noisy, clean = (np.concatenate(arrays) for arrays in zip(*pairs, strict=True))
    laid_out = model()
    laid_out.fit(noisy, clean, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(fed.get_weights(), laid_out.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_feed_serves_every_batch_of_every_epoch_in_order():
    """Each epoch's batches in order, the last one short, and no more; a fit resumed after
    epoch 1 starts at epoch 1's batches."""
    served = []

    class Recorded(train.Batches):
        def __getitem__(self, index):
            served.append((self.epoch, index))
            return super().__getitem__(index)

    def feed(first_epoch):
        images = np.zeros((100, 28, 28), "uint8")
        feed = train.Feed(Recorded(images, 32, 0, lambda clean, rng: clean), epochs=3)
        feed.on_epoch_begin(first_epoch)  # Keras calls it before it draws the first batch
        served.clear()  # the feed read batch 0 for its dtypes and shapes
        return feed

    shapes = [tuple(noisy.shape) for noisy, _ in feed(first_epoch=0).inputs]
    assert served == [(epoch, index) for epoch in range(3) for index in range(4)]
    assert shapes == ([(32, 28, 28, 1)] * 3 + [(4, 28, 28, 1)]) * 3

    list(feed(first_epoch=1).inputs.take(2 * 4))  # resumed: epochs 1 and 2 are left
    assert served[:8] == [(epoch, index) for epoch in (1, 2) for index in range(4)]
