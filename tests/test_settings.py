"""Every value the README lists for model.name, noise.type, training.schedule and noise.std_range,
and the `fast` profile, each as the main model of a real build: a few hundred real images, one
epoch. Four builds run every value at least once; the id names the combination."""

import json
import math
import zipfile
from pathlib import Path

import pytest

from pipeline import gate
from tests.conftest import SUBSET_DIR, TINY, assert_finished, dae_report

pytestmark = pytest.mark.slow

# TINY's settings without its profile (every test here names one): every stage but the studies
# after training, on a few hundred images, one epoch.
SMALL = TINY[TINY.index("--set") :]

# id: (profile, --set values, what config.json must then hold)
BUILDS = {
    "lab, salt_pepper, constant": (
        "quick",
        {"model.name": "lab", "noise.type": "salt_pepper", "training.schedule": "constant"},
        {},
    ),
    "residual, poisson, cosine": (
        "quick",
        {"model.name": "residual", "noise.type": "poisson", "training.schedule": "cosine"},
        {},
    ),
    "unet, speckle, constant": (
        "quick",
        {"model.name": "unet", "noise.type": "speckle", "training.schedule": "constant"},
        {},
    ),
    # `fast` as it is (README: a small U-Net, MSE, cosine, XLA where measured faster), with the
    # std_range the README pairs it with (`--profile fast --models unet --std-range`), on the
    # Gaussian noise it applies to.
    "fast: unet, gaussian, cosine, std_range": (
        "fast",
        {"noise.std_range": [0.1, 0.2]},
        {
            "model.name": "unet",
            "model.width": 8,
            "noise.type": "gaussian",
            "training.schedule": "cosine",
            "training.loss": "mse",
            "training.jit_compile": "auto",
        },
    ),
}

KERAS_NAMES = {"lab": "denoising_autoencoder", "residual": "residual_denoiser", "unet": "unet"}


def at(values, path):
    for part in path:
        values = values[part]
    return values


def noise_as_defined(noise: dict, config: dict) -> bool:
    """What each noise does to the training images (metrics.json noise.effect), from its
    definition in pipeline/noise.py."""
    effect, kind = noise["effect"], noise["type"]
    if kind == "gaussian":  # additive: lifts part of the black pixels; no larger than its std
        largest = noise["std_range"][1] if noise["std_range"] else config["noise"]["std"]
        return effect["clipped_low"] < effect["clean_black"] and effect["added_std"] <= largest
    if kind in ("speckle", "poisson"):  # proportional to the pixel: black stays black
        return effect["clipped_low"] >= effect["clean_black"] > 0 and effect["added_std"] > 0
    # salt_pepper: a share `amount` of the pixels set to 0 or 1, half each
    expected_change = config["noise"]["amount"] * (0.5 - effect["clean"]["mean"])
    return abs(effect["added_mean"] - expected_change) < 0.005


def compiled(run: Path) -> dict:
    """How the saved model.keras was compiled: optimizer (with its schedule), loss, XLA."""
    with zipfile.ZipFile(run / "model.keras") as archive:
        return json.loads(archive.read("config.json"))["compile_config"]


@pytest.mark.parametrize("build", BUILDS)
def test_every_listed_setting_builds(build, tmp_path):
    profile, values, implied = BUILDS[build]
    options = [
        option
        for key, value in values.items()
        for option in ("--set", f"{key}={json.dumps(value)}")
    ]
    result = dae_report(
        "build", "--profile", profile, *SMALL, *options, "--data-dir", str(SUBSET_DIR), cwd=tmp_path
    )
    run = assert_finished(tmp_path / "reports", result)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))

    expected = {"profile": profile, "noise.std_range": None, **values, **implied}
    assert {key: at(config, key.split(".")) for key in expected} == expected
    assert metrics["model"]["name"] == KERAS_NAMES[config["model"]["name"]]
    assert metrics["noise"]["type"] == config["noise"]["type"]
    assert metrics["noise"]["std_range"] == config["noise"]["std_range"]
    assert metrics["training"]["schedule"] == config["training"]["schedule"]

    for name, path, *_ in gate.HEADLINES:
        assert isinstance(at(metrics, path), float) and math.isfinite(at(metrics, path)), name
    for history in ("loss", "val_loss"):  # the lab compiles with its loss alone
        assert len(metrics["training"][history]) == 1 and math.isfinite(
            metrics["training"][history][0]
        ), history

    assert noise_as_defined(metrics["noise"], config), metrics["noise"]
    rate = compiled(run)["optimizer"]["config"]["learning_rate"]
    if config["training"]["schedule"] == "cosine":  # decays to zero over the run's steps
        steps = math.ceil(540 / config["training"]["batch_size"])  # 600 images less 10 % validation
        assert isinstance(rate, dict), rate
        assert (rate["class_name"], rate["config"]["decay_steps"]) == ("CosineDecay", steps), rate
    else:
        assert rate == pytest.approx(config["training"]["learning_rate"]), rate
    # XLA as this machine's choice says (auto: measured once per machine), and why
    chosen = metrics["environment"]["jit_compile"]
    assert chosen["setting"] == config["training"]["jit_compile"]
    assert compiled(run)["jit_compile"] == chosen["used"], chosen
