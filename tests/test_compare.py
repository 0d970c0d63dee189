"""dae-report compare: recipes, and the command line reaching compare_models."""

import json
import os
import re
import subprocess

import pytest

from pipeline import cache, cli, compare
from pipeline.config import load_config
from tests.conftest import DAE_REPORT, SUBSET_DIR, TINY, dae_report


def test_lab_keeps_the_labs_recipe_and_others_their_own():
    config = load_config("full")
    lab = compare.variant(config, "lab")
    assert lab.training == config.training and lab.model.name == "lab"
    unet = compare.variant(config, "unet")
    assert unet.model.name == "unet" and unet.training.loss == "mse"
    assert unet.training.epochs == compare.TRAINING_RECIPES["unet"]["epochs"]


def test_quick_profile_keeps_its_epochs_and_std_range_changes_only_the_noise():
    quick = compare.variant(load_config("quick"), "unet", std_range=(0.1, 0.7))
    assert quick.training.epochs == 2
    assert quick.noise.std_range == (0.1, 0.7) and quick.noise.std == 0.4


@pytest.mark.slow
def test_std_range_trains_the_first_model_again_on_random_levels_and_tests_at_std(tmp_path):
    """`compare --std-range 0.1,0.7`: the first model is trained twice, the second time on a std
    drawn per image (its cached record says so, and its losses differ); the test noise keeps the
    config's std 0.4 (as recorded: one tiny epoch is too little to tell the levels by the PSNR)."""
    result = dae_report(
        "compare",
        *TINY,
        "--models",
        "lab",
        "--std-range",
        "0.1,0.7",
        "--data-dir",
        str(SUBSET_DIR),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "reports").glob("*-compare")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    fixed, ranged = metrics["models"]
    assert (fixed["name"], fixed["std_range"]) == ("lab", None)
    assert (ranged["name"], ranged["std_range"]) == ("lab+std_range", [0.1, 0.7])
    assert metrics["noise"]["std"] == 0.4
    assert ranged["history"]["loss"] != fixed["history"]["loss"]  # other training noise
    trained = {}  # what each cached model was trained with
    for entry in (tmp_path / "reports" / cache.CACHE_DIR / "models").iterdir():
        noise = cache.check_model(entry)["inputs"]["config"]["noise"]
        trained[None if noise["std_range"] is None else tuple(noise["std_range"])] = noise["std"]
    assert trained == {None: 0.4, (0.1, 0.7): 0.4}


@pytest.mark.parametrize(
    "argv", [["compare", "--models", "vgg"], ["compare", "--std-range", "0.7,0.1"]]
)
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
            [
                str(DAE_REPORT),
                "compare",
                *TINY,
                "--models",
                "lab",
                "--data-dir",
                str(SUBSET_DIR),
                "--out",
                str(reports),
            ],
            cwd=tmp_path,
            env=environment,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            timeout=600,
        )
    finally:
        os.close(write)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("[1/4] data ") and lines[-1].startswith("done in "), lines[:3]
    own = re.compile(r"\[\d/4\] (data|lab|figures|report) |done in ")
    assert [line for line in lines if not own.match(line)] == []
    (run,) = reports.glob("*-compare")
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "finished" and record["command"] == "compare"
    assert (run / "kernel.log").is_file()
    assert run.name in (reports / "index.html").read_text(encoding="utf-8")  # listed, as builds


def test_a_std_range_the_noise_cannot_take_exits_2_before_any_work(tmp_path):
    result = subprocess.run(
        [
            str(DAE_REPORT),
            "compare",
            *TINY,
            "--models",
            "lab",
            "--std-range",
            "0.1,0.5",
            "--set",
            "noise.type=speckle",
            "--data-dir",
            str(SUBSET_DIR),
            "--out",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        result.stderr == "dae-report: error: noise.std_range applies to gaussian noise only, "
        "not noise.type = 'speckle'\n"
    )
    assert not (tmp_path / "reports").exists()
