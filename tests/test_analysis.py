"""pipeline.analysis on its own: the lab's outputs in, the report's metrics and figures out."""

import re

import numpy as np
import pytest

from pipeline import analysis, artifacts, data, evaluate
from pipeline.config import load_config
from pipeline.errors import RunError
from tests.conftest import SUBSET_DIR

REPORT_FIGURES = set(
    re.findall(r'figure\("(\w+)"', (artifacts.TEMPLATES_DIR / "report.html.j2").read_text())
)


@pytest.fixture(scope="module")
def outputs():
    """What the lab's cells hold after a run on 400 + 100 real images, with a "model" that
    halves the noise (so every number has a known source)."""
    dataset = data.load(SUBSET_DIR)
    x_train = data.to_unit_float(dataset.train_images[:400])
    x_test = data.to_unit_float(dataset.test_images[:100])
    rng = np.random.default_rng(0)
    noisy_train = np.clip(x_train + rng.normal(0, 0.4, x_train.shape), 0, 1).astype(np.float32)
    sample, noisy_sample = x_train[:200], noisy_train[:200]  # §3's sample, as the lab draws it
    noisy_test = np.clip(x_test + rng.normal(0, 0.4, x_test.shape), 0, 1).astype(np.float32)

    def predict(images):
        return images * 0.5 + 0.25

    return analysis.LabOutputs(
        x_train=dataset.train_images[:400],  # uint8, as the lab keeps it
        y_train=dataset.train_labels[:400],
        x_sample=sample,
        x_sample_noisy=noisy_sample,
        x_val_clean=x_train[:40],
        x_val_noisy=noisy_train[:40],
        x_test=x_test,
        y_test=dataset.test_labels[:100],
        x_test_noisy=noisy_test,
        x_test_denoised=predict(noisy_test),
        predict=predict,
        model_summary={"name": "stand-in", "parameters": 0, "latent_shape": None, "layers": []},
    )


HISTORY = {
    "loss": [0.40, 0.30],
    "val_loss": [0.35, 0.31],
    "epoch_seconds": [2.0, 1.5],
    "seconds": 3.5,
}


def test_metrics_and_figures_come_from_the_arrays(outputs, tmp_path):
    config = load_config(
        "quick", overrides=["evaluation.baselines=false", "evaluation.generalisation=false"]
    )
    seconds = {}
    metrics = analysis.analyse(outputs, config, HISTORY, tmp_path, seconds)
    assert list(seconds) == ["lab §1-§6", "lab §7-§8"]  # the studies beyond the lab are off
    assert all(value > 0 for value in seconds.values())
    assert set(metrics) == {
        "dataset",
        "normalised",
        "noise",
        "split",
        "model",
        "training",
        "error_analysis",
        "reconstruction",
        "anomalies",
    }
    expected = np.mean(
        (outputs.x_test.astype(np.float64) - outputs.x_test_denoised) ** 2, axis=(1, 2, 3)
    )
    assert metrics["reconstruction"]["mse"]["mean"] == pytest.approx(expected.mean(), rel=1e-12)
    assert metrics["reconstruction"]["images"] == 100
    assert metrics["split"] == {"val_fraction": 0.1, "train": 360, "validation": 40, "test": 100}
    assert metrics["dataset"]["pixels"]["max"] == 255.0 and metrics["dataset"]["train_shape"] == [
        400,
        28,
        28,
    ]
    assert sum(row["count"] for row in metrics["dataset"]["class_counts"]) == 400
    assert metrics["training"]["loss"] == HISTORY["loss"] and metrics["training"]["epochs"] == 2
    assert metrics["training"]["loss_function"] == "binary_crossentropy"
    assert metrics["noise"]["effect"] == evaluate.noise_effect(
        outputs.x_sample, outputs.x_sample_noisy
    )
    assert metrics["noise"]["sample"] == 200
    normalised = outputs.x_train.astype(np.float64) / 255  # §2's x / 255, from the uint8 bytes
    assert metrics["normalised"]["train"] == pytest.approx(
        {"min": 0.0, "max": 1.0, "mean": normalised.mean(), "std": normalised.std()}, rel=1e-9
    )
    drawn = {path.stem for path in tmp_path.glob("*.svg")}
    assert drawn == REPORT_FIGURES - {"baselines", "generalisation"}
    assert len(REPORT_FIGURES) == 14  # the regular expression found the report's figures


def test_collect_names_what_the_notebook_did_not_define():
    namespace = {"x_train": np.zeros((1, 28, 28, 1))}
    with pytest.raises(
        RunError, match=r"did not define y_train, x_sample, x_sample_noisy, .*autoencoder$"
    ):
        analysis.LabOutputs.collect(namespace, batch_size=32)
