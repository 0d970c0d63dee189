"""The CLI as users type it: a subprocess started in their own folder, with relative and default
paths. papermill runs the kernel inside the run folder, so a path relative to where the user
typed the command must be made absolute before that (the bug that broke `make report`)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SUBSET_DIR, TESTS_DIR, TINY, assert_finished, dae_report


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A user's folder whose name has a space and non-ASCII letters, holding the data, a config
    and a logo under relative names."""
    folder = tmp_path_factory.mktemp("user") / "Informes de prácticas"
    folder.mkdir()
    shutil.copytree(SUBSET_DIR, folder / "datos ñ")
    (folder / "ajustes").mkdir()
    shutil.copy(TESTS_DIR / "data" / "pixel.png", folder / "ajustes" / "escudo.png")
    # report.logo is relative to the TOML file, not to where the command runs
    (folder / "ajustes" / "curso.toml").write_text(
        '[report]\ncourse = "Aprendizaje profundo"\nlogo = "escudo.png"\n', encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def default_build(home) -> tuple[Path, subprocess.CompletedProcess]:
    """No --out: the default reports/, relative --data-dir and --config."""
    result = dae_report(
        "build", *TINY, "--data-dir", "datos ñ", "--config", "ajustes/curso.toml", cwd=home
    )
    return assert_finished(home / "reports", result), result


def test_default_out_is_reports_in_the_users_folder(home, default_build):
    run, result = default_build
    assert run.parent == (home / "reports").resolve()
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["report"]["logo"] == str(home / "ajustes" / "escudo.png")
    assert config["report"]["course"] == "Aprendizaje profundo"
    assert "data:image/png;base64," in (run / "report.html").read_text(encoding="utf-8")
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert str(home / "datos ñ") in result.stderr  # the data stage names the folder it used
    assert record["stages"]["notebook"]["seconds"] > 0


def test_relative_out_that_does_not_exist_yet_env_data_dir_and_compare_to(home, default_build):
    """A new nested --out, $DAE_DATA_DIR relative to the user's folder, a relative --compare-to."""
    result = dae_report(
        "build",
        *TINY,
        "--out",
        "nuevos/informes 2",
        "--compare-to",
        "reports/latest",
        cwd=home,
        env={"DAE_DATA_DIR": "datos ñ"},
    )
    run = assert_finished(home / "nuevos" / "informes 2", result)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["comparison"]["baseline"] == default_build[0].name


def test_reports_as_a_symlink_to_another_folder(tmp_path):
    elsewhere = tmp_path / "disco compartido" / "informes"
    elsewhere.mkdir(parents=True)
    (tmp_path / "proyecto").mkdir()
    (tmp_path / "proyecto" / "reports").symlink_to(elsewhere, target_is_directory=True)
    result = dae_report("build", *TINY, "--data-dir", str(SUBSET_DIR), cwd=tmp_path / "proyecto")
    run = assert_finished(elsewhere, result)
    assert run.parent == elsewhere.resolve()
    assert (tmp_path / "proyecto" / "reports" / "latest" / "report.pdf").is_file()


def test_handout_default_folder_is_relative_to_the_user(tmp_path):
    result = dae_report("handout", "--lang", "en", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "reports" / "handout"
    assert (folder / "handout.ipynb").stat().st_size > 0
    assert (folder / "handout.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--config", "ajustes/no-such.toml"],
            "config file not found: {home}/ajustes/no-such.toml",
        ),
        (
            ["--set", "report.logo=ajustes/curso.toml"],
            "report.logo = '{home}/ajustes/curso.toml' must be",
        ),
        (["--set", "report.logo=escudo.png"], "report.logo: file not found: {home}/escudo.png"),
        (["--data-dir", "datos"], "data folder {home}/datos"),
        (["--compare-to", "reports/none"], "--compare-to {home}/reports/none"),
    ],
)
def test_bad_relative_paths_are_named_absolute_in_one_line(home, arguments, message):
    result = dae_report("build", *TINY, *arguments, cwd=home)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message.format(home=home) in result.stderr
