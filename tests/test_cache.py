import numpy as np
import pytest

from pipeline import cache
from pipeline.config import load_config
from pipeline.model import build_lab_autoencoder

DIGESTS = {"train-images-idx3-ubyte.gz": "abc"}


def key_of(*overrides):
    return cache.digest(cache.training_inputs(load_config("quick", overrides=list(overrides)).to_dict(), DIGESTS))


def test_training_key_follows_what_changes_the_model():
    base = key_of()
    assert key_of("report.title=Otro título", "report.lang=en") == base  # report-only
    assert key_of("quality.max_regression.psnr_db=1") == base
    for change in ("training.epochs=3", "seed=1", "noise.std=0.3", "split.val_fraction=0.2"):
        assert key_of(change) != base, change


def test_training_key_covers_data_code_and_versions(monkeypatch):
    config = load_config("quick").to_dict()
    inputs = cache.training_inputs(config, DIGESTS)
    assert set(inputs) == {"config", "dataset", "code", "versions"}
    assert set(inputs["code"]) == set(cache.TRAINING_CODE)
    assert inputs["versions"]["tensorflow"] and inputs["versions"]["keras"]
    other = cache.training_inputs(config, {"train-images-idx3-ubyte.gz": "abd"})
    assert cache.digest(other) != cache.digest(inputs)


def test_changed_names_the_leaves():
    before = {"config": {"training": {"epochs": 2, "batch_size": 256}}, "code": {"train.py": "a"}}
    after = {"config": {"training": {"epochs": 3, "batch_size": 256}}, "code": {"train.py": "b"}}
    assert cache._changed(before, after) == ["code.train.py", "config.training.epochs"]


@pytest.fixture
def tiny_history():
    return {"loss": [0.3], "val_loss": [0.29], "epoch_seconds": [1.0], "seconds": 1.0}


def test_store_then_lookup_and_decisions(tmp_path, tiny_history):
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS)
    first = cache.ModelCache(tmp_path, inputs, run_id="run-1")
    assert first.lookup() is None
    assert first.decision(None)["reason"] == "first"
    model = build_lab_autoencoder()
    first.store(model, tiny_history)

    again = cache.ModelCache(tmp_path, inputs, run_id="run-2")
    record = again.lookup()
    assert record["run"] == "run-1" and record["history"] == tiny_history
    assert again.decision(record) == {"trained": False, "key": first.key, "reused_from": "run-1", "reason": "same-inputs"}
    reloaded = build_lab_autoencoder()
    reloaded.load_weights(again.model_path())
    for a, b in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)

    forced = cache.ModelCache(tmp_path, inputs, run_id="run-3", retrain=True)
    assert forced.lookup() is None and forced.decision(None)["reason"] == "retrain"

    changed_inputs = cache.training_inputs(load_config("quick", overrides=["training.epochs=3"]).to_dict(), DIGESTS)
    changed = cache.ModelCache(tmp_path, changed_inputs, run_id="run-4").decision(None)
    assert changed["reason"] == "changed" and changed["changed"] == ["config.training.epochs"]
    assert changed["compared_with"] == "run-1"


def test_a_second_store_of_the_same_key_is_harmless(tmp_path, tiny_history):
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS)
    model = build_lab_autoencoder()
    cache.ModelCache(tmp_path, inputs, "run-1").store(model, tiny_history)
    cache.ModelCache(tmp_path, inputs, "run-2").store(model, tiny_history)  # lost the race
    assert cache.ModelCache(tmp_path, inputs, "run-3").lookup()["run"] == "run-1"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [cache.ModelCache(tmp_path, inputs, "x").key]


def test_notebook_index_needs_the_outputs(tmp_path):
    run = tmp_path / "run-1"
    (run / "figures").mkdir(parents=True)
    cache.remember_notebook(tmp_path, "k", run)
    assert cache.find_notebook(tmp_path, "k") is None  # outputs missing
    for name in ("answer-key.ipynb", "metrics.json", "model.keras"):
        (run / name).write_text("{}")
    assert cache.find_notebook(tmp_path, "k") == run.resolve()
    assert cache.find_notebook(tmp_path, "other") is None
