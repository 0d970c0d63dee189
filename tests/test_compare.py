"""dae-report compare: recipes, and the command line reaching compare_models."""

import pytest

from pipeline import cli, compare
from pipeline.config import load_config


def test_lab_keeps_the_labs_recipe_and_others_their_own():
    config = load_config("full")
    lab = compare.variant(config, "lab")
    assert lab.training == config.training and lab.model.name == "lab"
    unet = compare.variant(config, "unet")
    assert unet.model.name == "unet" and unet.training.loss == "mse"
    assert unet.training.epochs == compare.RECIPES["unet"]["epochs"]


def test_quick_profile_keeps_its_epochs_and_std_range_changes_only_the_noise():
    quick = compare.variant(load_config("quick"), "unet", std_range=(0.1, 0.7))
    assert quick.training.epochs == 2
    assert quick.noise.std_range == (0.1, 0.7) and quick.noise.std == 0.4


def test_cli_reaches_compare_models(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("pipeline.compare.compare_models", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["compare", "--models", "lab,unet", "--std-range", "0.1,0.7", "--out", str(tmp_path)]) == 0
    (call,) = calls
    assert call["models"] == ["lab", "unet"] and call["std_range"] == (0.1, 0.7)


@pytest.mark.parametrize("argv", [["compare", "--models", "vgg"], ["compare", "--std-range", "0.7,0.1"]])
def test_cli_rejects_bad_compare_options(argv):
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2
