"""dae-report compare: recipes, and the command line reaching compare_models."""

import json
import os
import re
import subprocess

import pytest

from pipeline import cli, compare
from pipeline.config import load_config
from tests.conftest import SUBSET_DIR
from tests.test_cli_paths import DAE_REPORT, TINY


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


@pytest.mark.slow
def test_compare_keeps_the_terminal_to_its_own_lines(tmp_path):
    """TensorFlow runs inside `compare`: its C++ start-up lines go to the run's kernel.log, as a
    build's kernel's do. Its epochs go to stdout, here a pipe already closed (`| head -1`):
    that loses the lines, not the run nor its exit code."""
    read, write = os.pipe()
    os.close(read)
    reports = tmp_path / "reports"
    environment = {key: value for key, value in os.environ.items() if key != "DAE_DATA_DIR"}
    try:
        result = subprocess.run(
            [str(DAE_REPORT), "compare", *TINY, "--models", "lab", "--data-dir", str(SUBSET_DIR), "--out", str(reports)],
            cwd=tmp_path, env=environment, stdout=write, stderr=subprocess.PIPE, text=True, timeout=600,
        )  # fmt: skip
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("[1/4] data ") and lines[-1].startswith("done in "), lines[:3]
    own = re.compile(r"\[\d/4\] (data|lab|figures|report) |done in ")
    assert [line for line in lines if not own.match(line)] == []
    (run,) = reports.glob("*-compare")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["command"] == "compare"
    assert (run / "kernel.log").is_file()
