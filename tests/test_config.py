import json

import pytest

from pipeline import i18n
from pipeline.config import LANGUAGES, Config, load_config
from pipeline.errors import ConfigError


def test_defaults_are_the_lab():
    config = load_config()
    assert config.seed == 123
    assert (config.noise.mean, config.noise.std) == (0.0, 0.4)
    assert config.split.val_fraction == 0.1
    assert (config.training.epochs, config.training.batch_size) == (20, 256)
    assert config.training.learning_rate == 1e-3
    assert config.data.train_limit is None and config.data.test_limit is None


def test_fast_profile_is_the_unet_recipe():
    config = load_config("fast")
    assert (
        config.model.name == "unet"
        and config.training.loss == "mse"
        and config.training.jit_compile
    )
    assert config.evaluation.baselines is False


def test_report_languages_are_those_with_a_catalog():
    assert LANGUAGES is i18n.LANGUAGES  # one list: the CLI's --lang choices and report.lang's
    with pytest.raises(ConfigError, match="report.lang = 'fr' is not one of: es, en"):
        load_config(overrides=["report.lang=fr"])


def test_quick_profile_is_small():
    config = load_config("quick")
    assert config.profile == "quick"
    assert config.data.train_limit <= 5000 and config.training.epochs <= 2


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("noise.std=0.3", ("noise", "std"), 0.3),
        ("noise.std=1", ("noise", "std"), 1.0),  # an integer is a fine number
        ("training.epochs=5", ("training", "epochs"), 5),
        ("data.train_limit=100", ("data", "train_limit"), 100),
        ("report.title=Mi informe", ("report", "title"), "Mi informe"),
        ('report.title="Práctica 2 ¿DAE?"', ("report", "title"), "Práctica 2 ¿DAE?"),
        ("seed=7", ("seed",), 7),
    ],
)
def test_set_overrides(override, key, expected):
    value = load_config(overrides=[override])
    for part in key:
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["noise.sdt=0.3"], "unknown config key 'noise.sdt'"),
        (["nosie.std=0.3"], "unknown config key 'nosie'"),
        (["training.epochs=ten"], "training.epochs must be an integer, got 'ten'"),
        (["training.epochs=2.5"], "training.epochs must be an integer"),
        (["training.epochs=true"], "training.epochs must be an integer"),
        (["training.epochs=0"], "training.epochs = 0 is out of range"),
        (["training.batch_size=0"], "training.batch_size = 0 is out of range"),
        (["training.learning_rate=0"], "training.learning_rate = 0.0 is out of range"),
        (["noise.std=-0.1"], "noise.std = -0.1 is out of range"),
        (["noise.std=0"], "noise.std = 0.0 is out of range"),
        (["noise.std=nan"], "noise.std must be a finite number"),
        (["split.val_fraction=0"], "split.val_fraction = 0.0 is out of range"),
        (["split.val_fraction=1"], "split.val_fraction = 1.0 is out of range"),
        (["data.train_limit=0"], "data.train_limit = 0 is out of range"),
        (["report.title="], "report.title must not be empty"),
        (["training.epochs"], "--set expects section.key=value"),
        (["profile=quick"], "the profile is chosen with --profile"),
    ],
)
def test_bad_values_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config(overrides=overrides)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == 2


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")


def test_toml_file_then_set(tmp_path):
    path = tmp_path / "course.toml"
    path.write_text(
        'seed = 5\n[training]\nepochs = 3\n[report]\ntitle = "Curso"\n', encoding="utf-8"
    )
    config = load_config("quick", path, ["training.epochs=4"])
    assert (config.seed, config.training.epochs, config.report.title) == (5, 4, "Curso")
    assert config.data.train_limit == 4000  # the profile still applies under the file


@pytest.mark.parametrize(
    "text, message",
    [
        ("[training\nepochs = 3", "is not valid TOML"),
        ("[training]\nepochs = 'ten'", "training.epochs must be an integer"),
        ("training = 3", "'training' must be a table of settings"),
        ("[modle]\nname = 'unet'", "unknown config key 'modle'"),
    ],
)
def test_bad_toml_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(config_file=path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(config_file=tmp_path / "nope.toml")


def test_round_trip_through_dict():
    config = load_config("quick", overrides=["noise.std=0.25"])
    assert Config.from_dict(config.to_dict()) == config


def test_to_dict_is_json_data_that_survives_the_notebook_parameters():
    """papermill writes each parameter as a Python literal in the kernel: a tuple arrives as
    its str(), which the kernel's Config.from_dict rejected (every std_range build failed)."""
    import ast

    from papermill.translators import PythonTranslator

    config = load_config("quick", overrides=["noise.std_range=[0.1, 0.2]"])
    values = config.to_dict()
    assert values["noise"]["std_range"] == [0.1, 0.2]
    assert json.loads(json.dumps(values)) == values
    literal = PythonTranslator.translate(values)
    assert Config.from_dict(ast.literal_eval(literal)) == config


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        load_config().seed = 1
