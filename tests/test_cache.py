import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts, cache, notebook
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError
from pipeline.model import build_lab_autoencoder
from tests.conftest import SUBSET_DIR, TESTS_DIR, assert_finished, dae_report

DIGESTS = {"train-images-idx3-ubyte.gz": "abc"}
MACHINE = {  # as environment.machine_choices resolves them on a float32 machine without XLA
    "precision": {"setting": "auto", "used": "float32", "reason": "no native bfloat16"},
    "onednn": {"setting": "auto", "used": True, "reason": "measured 1.80×", "basis": "probe"},
    "jit_compile": {"setting": False, "used": False, "reason": "training.jit_compile = false"},
}


def key_of(*overrides):
    """The model key of a build with the quick profile and `overrides`."""
    config = load_config("quick", overrides=list(overrides))
    return cache.digest(
        cache.training_inputs(config.to_dict(), DIGESTS, MACHINE, notebook.training_code(config))
    )


def test_training_key_follows_what_changes_the_model():
    base = key_of()
    assert key_of("report.title=Otro título", "report.lang=en") == base  # report-only
    assert key_of("quality.max_regression.psnr_db=1") == base
    for change in ("training.epochs=3", "seed=1", "noise.std=0.3", "split.val_fraction=0.2"):
        assert key_of(change) != base, change


# What else the keys cover, shown by changing it. A fresh Python computes the keys, as
# a build does, with a changed copy of the package or a faked library version first on its
# PYTHONPATH; the checkout itself is never touched. --------------------------------------------

KEYS_SCRIPT = """
import json, sys
from pipeline import cache, notebook
from pipeline.config import load_config
config = load_config("quick").to_dict()
code = notebook.training_code(load_config("quick"))
machine = {"precision": {"used": "float32"}, "onednn": {"used": True},
           "jit_compile": {"used": False}}
training = cache.training_inputs(config, json.loads(sys.argv[1]), machine, code)
print(json.dumps([cache.digest(training), cache.digest(cache.notebook_inputs(training, config))]))
"""


def python_path(*folders: Path) -> dict:
    """The PYTHONPATH that makes Pythons (the CLI, the kernel) import from `folders` first."""
    paths = [str(folder) for folder in folders] + [os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(path for path in paths if path)}


def cache_keys(cwd: Path, *folders: Path, digests: dict = DIGESTS) -> tuple[str, str]:
    """(model key, notebook key) of the quick config, as a fresh Python with `folders` first on
    its path computes them."""
    result = subprocess.run(
        [sys.executable, "-c", KEYS_SCRIPT, json.dumps(digests)],
        cwd=cwd,
        env={**os.environ, **python_path(*folders)},
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    model, notebook = json.loads(result.stdout)
    return model, notebook


def package_copy(tmp_path: Path) -> Path:
    """A folder holding a copy of the package under test, its templates inside as the wheel ships
    them: put it on PYTHONPATH and change a file in it."""
    root = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "templates")
    shutil.copytree(artifacts.PACKAGE_DIR, root / "pipeline", ignore=skip)
    shutil.copytree(artifacts.TEMPLATES_DIR, root / "pipeline" / "templates", ignore=skip)
    return root


def version_shim(tmp_path: Path, library: str) -> Path:
    """A folder whose sitecustomize makes importlib.metadata report another version of
    `library` to every Python started with it on PYTHONPATH."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import importlib.metadata\n"
        "_real = importlib.metadata.version\n"
        "def version(name):\n"
        f"    return _real(name) + '.post1' if name == {library!r} else _real(name)\n"
        "importlib.metadata.version = version\n",
        encoding="utf-8",
    )
    return shim


@pytest.fixture(scope="module")
def installed_keys(tmp_path_factory) -> tuple[str, str]:
    return cache_keys(tmp_path_factory.mktemp("keys"))


def test_a_copy_of_the_package_elsewhere_has_the_same_keys(tmp_path, installed_keys):
    """Sources are keyed by content, not by where they are: a wheel and a checkout share a cache
    (and the tests below may change a copy)."""
    assert cache_keys(tmp_path, package_copy(tmp_path)) == installed_keys


# The README: the model's key covers the training code (the notebook's code up to the fit;
# train, harness, environment); the notebook's also the notebook, every module, the answers and
# the catalogs; the report's templates neither ("a change to the report templates only
# re-renders HTML and PDF"). data, noise and model are compare's training code, not a build's.
SOURCE_CHANGES = {  # file in the package: (changes the model key, changes the notebook key)
    "data.py": (False, True),
    "noise.py": (False, True),
    "model.py": (False, True),
    "train.py": (True, True),
    "environment.py": (True, True),
    "harness.py": (True, True),
    "evaluate.py": (False, True),
    "view.py": (False, True),  # the answers the key inserts after the questions
    "templates/lab.ipynb": (False, True),
    "templates/answers.html.j2": (False, True),
    "templates/locale/en/LC_MESSAGES/messages.po": (False, True),
    "templates/report.html.j2": (False, False),
    "templates/report.css": (False, False),
}


@pytest.mark.parametrize("source", SOURCE_CHANGES)
def test_cache_keys_follow_the_sources_they_cover(source, tmp_path, installed_keys):
    root = package_copy(tmp_path)
    with open(root / "pipeline" / source, "a", encoding="utf-8") as file:
        file.write("\n")  # one more byte: a change in content, nothing else
    model, notebook = cache_keys(tmp_path, root)
    assert (model != installed_keys[0], notebook != installed_keys[1]) == SOURCE_CHANGES[source]


def _edit_lab(root: Path, grade_id: str | None, edit) -> None:
    """Change one cell of the copy's lab notebook: the cell with nbgrader `grade_id`, or with
    None the first markdown cell."""
    import nbformat

    path = root / "pipeline" / "templates" / "lab.ipynb"
    lab = nbformat.read(path, as_version=4)
    cell = next(
        c
        for c in lab.cells
        if (
            c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
            if grade_id
            else c.cell_type == "markdown"
        )
    )
    edited = edit(cell.source)
    assert edited != cell.source, "the edit no longer matches the lab's text"
    cell.source = edited
    nbformat.write(lab, path)


@pytest.mark.parametrize(
    "grade_id, edit, retrains",
    [
        (None, lambda text: text + " Texto nuevo.", False),  # markdown: explanation, not code
        ("mse", lambda text: text + "\nprint(mse_per_image.std())", False),  # after the fit
        (
            "noise",
            lambda text: text.replace(
                "np.clip(noisy, 0.0, 1.0, out=noisy)", "np.clip(noisy, 0.0, 0.9, out=noisy)"
            ),
            True,
        ),
        ("training", lambda text: text.replace("epochs=EPOCHS,", "epochs=EPOCHS + 1,"), True),
    ],
    ids=["markdown", "code-after-fit", "noise-code", "fit-code"],
)
def test_the_model_key_covers_the_notebook_code_up_to_the_fit(
    grade_id, edit, retrains, tmp_path, installed_keys
):
    """Editing the lab's text, or its code after training, re-runs the notebook with the cached
    model; editing what trains it retrains."""
    root = package_copy(tmp_path)
    _edit_lab(root, grade_id, edit)
    model_key, notebook_key = cache_keys(tmp_path, root)
    assert notebook_key != installed_keys[1]
    assert (model_key != installed_keys[0]) == retrains


@pytest.mark.parametrize(
    "library, counts",
    [("tensorflow", True), ("keras", True), ("numpy", True), ("weasyprint", False)],
)
def test_library_versions_in_the_keys(library, counts, tmp_path, installed_keys):
    """The TensorFlow, Keras and NumPy versions decide the trained model (and so the notebook);
    WeasyPrint's only prints the report."""
    model, notebook = cache_keys(tmp_path, version_shim(tmp_path, library))
    assert (model != installed_keys[0], notebook != installed_keys[1]) == (counts, counts)


def test_dataset_digests_change_both_keys(tmp_path, installed_keys):
    other = {"train-images-idx3-ubyte.gz": "abd"}
    model, notebook = cache_keys(tmp_path, digests=other)
    assert model != installed_keys[0] and notebook != installed_keys[1]


def test_differences_name_the_leaves_with_both_values():
    from pipeline.config import differences

    before = {"config": {"training": {"epochs": 2, "batch_size": 256}}, "code": {"train.py": "a"}}
    after = {"config": {"training": {"epochs": 3, "batch_size": 256}}, "code": {"train.py": "b"}}
    assert differences(before, after) == {
        "code.train.py": ("a", "b"),
        "config.training.epochs": (2, 3),
    }
    assert differences({"a": {"b": 1}}, {"a": {}, "c": 2}) == {"a.b": (1, None), "c": (None, 2)}


@pytest.fixture
def tiny_history():
    return {"loss": [0.3], "val_loss": [0.29], "epoch_seconds": [1.0], "seconds": 1.0}


def test_store_then_lookup_and_decisions(tmp_path, tiny_history):
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS, MACHINE)
    first = cache.ModelCache(tmp_path, inputs, run_id="run-1")
    assert first.lookup() is None
    assert first.decision(None)["reason"] == "first"
    model = build_lab_autoencoder()
    first.store(model, tiny_history)

    again = cache.ModelCache(tmp_path, inputs, run_id="run-2")
    record = again.lookup()
    assert record["run"] == "run-1" and record["history"] == tiny_history
    assert again.decision(record) == {
        "trained": False,
        "key": first.key,
        "reused_from": "run-1",
        "reason": "same-inputs",
    }
    reloaded = build_lab_autoencoder()
    reloaded.load_weights(again.model_path())
    for a, b in zip(model.get_weights(), reloaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    forced = cache.ModelCache(tmp_path, inputs, run_id="run-3", retrain=True)
    assert forced.lookup() is None and forced.decision(None)["reason"] == "retrain"

    changed_inputs = cache.training_inputs(
        load_config("quick", overrides=["training.epochs=3"]).to_dict(), DIGESTS, MACHINE
    )
    changed = cache.ModelCache(tmp_path, changed_inputs, run_id="run-4").decision(None)
    assert changed["reason"] == "changed" and changed["changed"] == ["config.training.epochs"]
    assert changed["compared_with"] == "run-1"


def test_a_second_store_of_the_same_key_is_harmless(tmp_path, tiny_history):
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS, MACHINE)
    model = build_lab_autoencoder()
    cache.ModelCache(tmp_path, inputs, "run-1").store(model, tiny_history)
    cache.ModelCache(tmp_path, inputs, "run-2").store(model, tiny_history)  # lost the race
    assert cache.ModelCache(tmp_path, inputs, "run-3").lookup()["run"] == "run-1"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [
        cache.ModelCache(tmp_path, inputs, "x").key
    ]


# Every config key is in both keys unless a named list says otherwise. ------------------------


def leaves(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field]]:
    """Every setting of the config, by dotted key: seed, noise.std, quality.max_regression.ssim…"""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[item.name]):
            yield from leaves(hints[item.name], f"{prefix}{item.name}.")
        else:
            yield f"{prefix}{item.name}", item


KEYS = [name for name, _ in leaves()]


def with_value(values: dict, key: str, value) -> dict:
    changed = json.loads(json.dumps(values))
    *sections, leaf = key.split(".")
    table = changed
    for section in sections:
        table = table[section]
    table[leaf] = value
    return changed


def other_value(base: dict, key: str, item: dataclasses.Field, logo: Path):
    """Another value the config accepts for `key`: tried through the real validator."""
    *sections, leaf = key.split(".")
    value = base
    for section in sections + [leaf]:
        value = value[section]
    if "choices" in item.metadata:
        candidates = [choice for choice in item.metadata["choices"] if choice != value]
    elif "file" in item.metadata:
        candidates = [str(logo)]
    elif isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, (int, float)):
        candidates = [value + 1, value - 1, value * 2, value / 2, value + 0.05]
    elif isinstance(value, str):
        candidates = [value + " (bis)"]
    else:  # None: an optional number, text or [low, high]
        candidates = [1, "Otro valor", [0.1, 0.2]]
    for candidate in candidates:
        try:
            Config.from_dict(with_value(base, key, candidate))
        except ConfigError:
            continue
        if candidate != value:
            return candidate
    raise AssertionError(f"no other allowed value found for {key}: teach other_value() its type")


def keys_of(values: dict) -> tuple[str, str]:
    training = cache.training_inputs(values, DIGESTS, MACHINE)
    return cache.digest(training), cache.digest(cache.notebook_inputs(training, values))


@pytest.mark.parametrize("key", KEYS)
def test_every_config_key_is_in_both_cache_keys_unless_named(key, tmp_path, monkeypatch):
    """A key added to the config changes both cache keys by itself: forgetting the cache can
    only cost a rerun. Leaving a key out takes a line in MODEL_EXCLUDED or NOTEBOOK_EXCLUDED."""
    monkeypatch.setattr(cache, "file_digests", lambda paths: {})  # the config is under test
    logo = tmp_path / "logo.png"
    shutil.copy(TESTS_DIR / "data" / "pixel.png", logo)
    base = Config().to_dict()
    item = dict(leaves())[key]
    changed = Config.from_dict(with_value(base, key, other_value(base, key, item, logo))).to_dict()
    (model_before, notebook_before), (model_after, notebook_after) = keys_of(base), keys_of(changed)
    assert (model_after == model_before) == (key in cache.MODEL_EXCLUDED), key
    assert (notebook_after == notebook_before) == (key in cache.NOTEBOOK_EXCLUDED), key


def test_exclusion_lists_name_real_keys_only():
    for excluded in (cache.MODEL_EXCLUDED, cache.NOTEBOOK_EXCLUDED):
        assert len(set(excluded)) == len(excluded)
        assert set(excluded) <= set(KEYS), set(excluded) - set(KEYS)
    # What cannot change the notebook cannot change the model it trains.
    assert set(cache.NOTEBOOK_EXCLUDED) <= set(cache.MODEL_EXCLUDED)
    # The notebook's cells are translated; the studies after training read their settings.
    for key in (
        "report.lang",
        "evaluation.baselines",
        "evaluation.selection_images",
        "evaluation.generalisation_images",
        "profile",
    ):
        assert key not in cache.NOTEBOOK_EXCLUDED, key


# A damaged entry is discarded with one line, then made again. ---------------------------------


def discarded_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "cache: discarded" in line]


@pytest.fixture
def stored(tmp_path, tiny_history) -> cache.ModelCache:
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS, MACHINE)
    model_cache = cache.ModelCache(tmp_path, inputs, run_id="run-1")
    model_cache.store(build_lab_autoencoder(), tiny_history)
    return model_cache


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


MODEL_DAMAGE = {
    "garbage record.json": (
        lambda entry: (entry / "record.json").write_text("{garbage"),
        "record.json is not valid JSON",
    ),
    "record.json edited": (
        lambda entry: (entry / "record.json").write_text(
            (entry / "record.json").read_text().replace('"run-1"', '"run-9"')
        ),
        "record.json does not match its digest",
    ),
    "record.json of an older version": (
        lambda entry: (entry / "record.json").write_text('{"run": "run-0", "history": {}}'),
        "record.json has no digest",
    ),
    "truncated model.keras": (
        lambda entry: truncate(entry / "model.keras"),
        "model.keras does not match its digest",
    ),
    "deleted model.keras": (
        lambda entry: (entry / "model.keras").unlink(),
        "model.keras is missing",
    ),
    "model.keras a folder": (
        lambda entry: ((entry / "model.keras").unlink(), (entry / "model.keras").mkdir()),
        "model.keras is not a regular file",
    ),
}


@pytest.mark.parametrize("damage", MODEL_DAMAGE)
def test_a_damaged_model_entry_is_discarded_with_one_line(stored, damage, capsys):
    damage_entry, reason = MODEL_DAMAGE[damage]
    damage_entry(stored.entry)
    again = cache.ModelCache(stored.root, stored.inputs, run_id="run-2")
    assert again.lookup() is None
    assert discarded_lines(capsys.readouterr().out) == [
        f"cache: discarded models/{stored.key}: {reason}; training again"
    ]
    assert not stored.entry.exists() and list((stored.root / "models").iterdir()) == []
    assert again.decision(None)["reason"] == "first"  # nothing left to compare with


def test_retrain_replaces_an_entry(stored, tiny_history):
    retrained = cache.ModelCache(stored.root, stored.inputs, run_id="run-2", retrain=True)
    assert retrained.lookup() is None
    retrained.store(build_lab_autoencoder(), {**tiny_history, "loss": [0.2]})
    record = cache.ModelCache(stored.root, stored.inputs, run_id="run-3").lookup()
    assert record["run"] == "run-2" and record["history"]["loss"] == [0.2]
    assert [path.name for path in (stored.root / "models").iterdir()] == [stored.key]


def test_a_damaged_entry_is_replaced_even_without_retrain(stored, tiny_history):
    """A build that trained because the entry was unusable stores over whatever is there."""
    (stored.entry / "model.keras").write_bytes(b"")
    cache.ModelCache(stored.root, stored.inputs, run_id="run-2").store(
        build_lab_autoencoder(), tiny_history
    )
    assert cache.check_model(stored.entry)["run"] == "run-2"


def test_a_damaged_record_of_another_key_is_no_comparison(stored, tiny_history):
    (stored.entry / "record.json").write_text("[1, 2]")
    other = cache.training_inputs(
        load_config("quick", overrides=["seed=9"]).to_dict(), DIGESTS, MACHINE
    )
    assert cache.ModelCache(stored.root, other, run_id="run-2").decision(None)["reason"] == "first"


def test_an_unreadable_resume_state_is_discarded(stored, capsys):
    stored.backup_dir.mkdir(parents=True)
    (stored.backup_dir / "latest.weights.h5").write_bytes(b"not hdf5")
    stored.check_backup()
    assert discarded_lines(capsys.readouterr().out) == [
        f"cache: discarded backup/{stored.key}: latest.weights.h5 is not a readable weights file; "
        "training from the first epoch"
    ]
    assert not stored.backup_dir.exists()


@pytest.fixture
def executed(tmp_path) -> Path:
    """A finished run's notebook outputs, indexed under key "k"."""
    run = tmp_path / "run-1"
    (run / "figures").mkdir(parents=True)
    for name in ("answer-key.ipynb", "metrics.json", "model.keras"):
        (run / name).write_text(f"{name} of run-1")
    (run / "figures" / "samples.svg").write_text("<svg/>")
    (run / "figures" / "samples.png").write_bytes(b"png")
    cache.remember_notebook(tmp_path / ".cache", "k", run)
    return run


def test_notebook_outputs_are_copied_checked(tmp_path, executed):
    target = tmp_path / "run-2"
    target.mkdir()
    warnings = []
    assert (
        cache.reuse_notebook(tmp_path / ".cache", "k", target, warnings.append)
        == executed.resolve()
    )
    assert warnings == []
    assert (target / "figures" / "samples.svg").read_text() == "<svg/>"
    assert (target / "model.keras").read_text() == "model.keras of run-1"
    assert cache.reuse_notebook(tmp_path / ".cache", "other", target, warnings.append) is None
    assert warnings == []  # no entry is no damage


NOTEBOOK_DAMAGE = {
    "garbage index": (
        lambda index, run: index.write_text("\x00garbage"),
        "k.json is not valid JSON",
    ),
    "index a folder": (
        lambda index, run: (index.unlink(), index.mkdir()),
        "k.json is not a regular file",
    ),
    "truncated model.keras": (
        lambda index, run: truncate(run / "model.keras"),
        "run run-1: model.keras does not match its digest",
    ),
    "empty figure": (
        lambda index, run: (run / "figures" / "samples.svg").write_text(""),
        "run run-1: figures/samples.svg does not match its digest",
    ),
    "deleted metrics": (
        lambda index, run: (run / "metrics.json").unlink(),
        "run run-1: metrics.json is missing",
    ),
    "deleted run": (lambda index, run: shutil.rmtree(run), "its run run-1 no longer exists"),
    "index leaving the run": (
        lambda index, run: cache._write_sealed(
            index,
            {
                "run_dir": str(run),
                "files": {**json.loads(index.read_text())["files"], "../run.json": "0" * 64},
            },
        ),
        "k.json names a file outside its entry: '../run.json'",
    ),
}


@pytest.mark.parametrize("damage", NOTEBOOK_DAMAGE)
def test_a_damaged_notebook_entry_is_discarded_with_one_line(tmp_path, executed, damage):
    damage_entry, reason = NOTEBOOK_DAMAGE[damage]
    index = tmp_path / ".cache" / "notebooks" / "k.json"
    damage_entry(index, executed)
    target = tmp_path / "run-2"
    target.mkdir()
    (target / "config.json").write_text("{}")
    warnings = []
    assert cache.reuse_notebook(tmp_path / ".cache", "k", target, warnings.append) is None
    assert warnings == [f"cache: discarded notebooks/k: {reason}; executing the notebook again"]
    assert not os.path.lexists(index)
    assert sorted(path.name for path in target.iterdir()) == ["config.json"]  # no half copy


def test_verify_names_each_damaged_entry_and_clear_removes_them(tmp_path, executed, tiny_history):
    out, root = tmp_path, tmp_path / ".cache"  # `executed` indexed its run in tmp_path/.cache
    inputs = cache.training_inputs(load_config("quick").to_dict(), DIGESTS, MACHINE)
    stored = cache.ModelCache(root, inputs, run_id="run-1")
    stored.store(build_lab_autoencoder(), tiny_history)
    text = io.StringIO()
    assert cache.verify(out_dir=out, stream=text) == 2
    assert text.getvalue() == f"2 cache entries in {root}: all sound\n"

    (root / "models" / stored.key / "model.keras").write_bytes(b"")
    (executed / "figures" / "samples.png").write_bytes(b"")
    text = io.StringIO()
    with pytest.raises(cache.CacheDamaged, match="2 of 2 cache entries"):
        cache.verify(out_dir=out, stream=text)
    assert text.getvalue().splitlines() == [
        f"models/{stored.key}: model.keras does not match its digest",
        "notebooks/k: run run-1: figures/samples.png does not match its digest",
    ]
    assert (root / "models" / stored.key / "model.keras").exists()  # verify only reads

    text = io.StringIO()
    assert cache.clear(out_dir=out, older_than_days=1, stream=text) == (0, 0)
    assert text.getvalue() == f"removed 0 cache entries older than 1 day from {root}, freed 0 B\n"
    old = 3 * 86400
    for path in [root / "notebooks" / "k.json", *(root / "models").rglob("*")]:
        os.utime(
            path, (path.stat().st_atime - old, path.stat().st_mtime - old), follow_symlinks=False
        )
    removed, freed = cache.clear(out_dir=out, older_than_days=2, stream=text)
    assert removed == 2 and freed > 0
    assert cache.entries(root) == []
    assert executed.joinpath("metrics.json").exists()  # runs are never the cache's to remove


def test_cache_commands_call_the_library_with_an_absolute_out(monkeypatch, tmp_path):
    from pipeline import cli

    calls = []
    monkeypatch.setattr(cache, "verify", lambda **options: calls.append(("verify", options)))
    monkeypatch.setattr(cache, "clear", lambda **options: calls.append(("clear", options)))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["cache", "verify"]) == 0
    assert cli.main(["cache", "clear", "--out", "elsewhere/../mine", "--older-than", "2.5"]) == 0
    assert cli.main(["cache", "clear"]) == 0
    assert [
        (name, {key: value for key, value in options.items() if key != "stream"})
        for name, options in calls
    ] == [
        ("verify", {"out_dir": tmp_path / "reports"}),
        ("clear", {"out_dir": tmp_path / "mine", "older_than_days": 2.5}),
        ("clear", {"out_dir": tmp_path / "reports", "older_than_days": None}),
    ]
    for wrong in (
        ["cache"],
        ["cache", "clear", "--older-than", "-1"],
        ["cache", "clear", "--older-than", "nan"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(wrong)
        assert exit_info.value.code == 2, wrong


def test_cache_verify_exits_3_naming_the_damaged_entry(tmp_path, executed, capsys):
    from pipeline import cli

    assert cli.main(["cache", "verify", "--out", str(tmp_path)]) == 0
    (executed / "answer-key.ipynb").write_text("")
    assert cli.main(["cache", "verify", "--out", str(tmp_path)]) == 3
    out, err = capsys.readouterr()
    assert (
        out.splitlines()[-1] == "notebooks/k: run run-1: answer-key.ipynb does not match its digest"
    )
    assert err.startswith(
        f"dae-report: error: 1 of 1 cache entries in {tmp_path / '.cache'} cannot be used"
    )


# The same, end to end: each damage as a user meets it, between two builds. -------------------


def chain_damage(out: Path) -> dict:
    """What each case does to the reports folder `out`, and the entry its warning must name."""
    cache_dir = out / ".cache"

    def notebook_key() -> str:
        return json.loads((out / "latest" / "run.json").read_text(encoding="utf-8"))["notebook"][
            "key"
        ]

    def model_entry() -> Path:
        (entry,) = (cache_dir / "models").iterdir()
        return entry

    def forget_notebooks() -> None:  # an ordinary deletion: the notebook runs again, silently
        shutil.rmtree(cache_dir / "notebooks")

    def garbage_index():
        key = notebook_key()
        (cache_dir / "notebooks" / f"{key}.json").write_text("{garbage", encoding="utf-8")
        return f"notebooks/{key}: {key}.json is not valid JSON; executing the notebook again"

    def damaged_earlier_run():
        run = (out / "latest").resolve()
        truncate(run / "model.keras")
        next((run / "figures").glob("*.svg")).write_bytes(b"")
        return (
            f"notebooks/{notebook_key()}: run {run.name}: "
            "model.keras does not match its digest; executing the notebook again"
        )

    def garbage_record():
        forget_notebooks()
        (model_entry() / "record.json").write_text("garbage", encoding="utf-8")
        return f"models/{model_entry().name}: record.json is not valid JSON; training again"

    def truncated_model():
        forget_notebooks()
        truncate(model_entry() / "model.keras")
        return f"models/{model_entry().name}: model.keras does not match its digest; training again"

    def deleted_model():
        forget_notebooks()
        (model_entry() / "model.keras").unlink()
        return f"models/{model_entry().name}: model.keras is missing; training again"

    return {
        "garbage notebook index": garbage_index,
        "truncated files in a reused earlier run": damaged_earlier_run,
        "garbage model record.json": garbage_record,
        "truncated cached model.keras": truncated_model,
        "deleted cached model.keras": deleted_model,
    }


def assert_sound_outputs(run: Path) -> None:
    import zipfile
    from xml.etree import ElementTree

    with zipfile.ZipFile(run / "model.keras") as archive:
        assert archive.testzip() is None
    svgs = sorted((run / "figures").glob("*.svg"))
    assert svgs
    for svg in svgs:
        ElementTree.parse(svg)  # an empty or cut SVG does not parse


@pytest.mark.slow
def test_damaged_cache_entries_between_builds(tmp_path):
    """Each damage: the next build exits 0, says one line naming the entry, and is sound.
    Then --retrain replaces the model entry, and `cache verify` / `cache clear` see it all."""
    from tests.conftest import TINY, assert_finished, dae_report

    out = tmp_path / "reports"
    arguments = ("build", *TINY, "--data-dir", str(SUBSET_DIR), "--out", str(out))
    assert_finished(out, dae_report(*arguments, cwd=tmp_path))
    for case, damage in chain_damage(out).items():
        before = (out / "latest").resolve()
        expected = f"      cache: discarded {damage()}"
        result = dae_report(*arguments, cwd=tmp_path)
        run = assert_finished(out, result)
        assert run != before, case
        warnings = [line for line in result.stderr.splitlines() if "cache:" in line]
        assert warnings == [expected], (case, result.stderr[-3000:])
        assert_sound_outputs(run)

    (entry,) = (out / ".cache" / "models").iterdir()
    result = dae_report(*arguments, "--retrain", cwd=tmp_path)
    run = assert_finished(out, result)
    assert "cache:" not in result.stderr
    assert json.loads((entry / "record.json").read_text(encoding="utf-8"))["run"] == run.name

    result = dae_report("cache", "verify", "--out", "reports", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = len(cache.entries(out / ".cache"))
    assert result.stdout == f"{entries} cache entries in {out / '.cache'}: all sound\n"
    truncate(entry / "model.keras")
    result = dae_report("cache", "verify", "--out", "reports", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stdout == f"models/{entry.name}: model.keras does not match its digest\n"
    assert result.stderr.startswith(f"dae-report: error: 1 of {entries} cache entries in ")
    result = dae_report("cache", "clear", "--out", "reports", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    freed = re.fullmatch(
        rf"removed {entries} cache entries from (.+), freed [0-9.]+ (k|M)B\n", result.stdout
    )
    assert freed and freed.group(1) == str(out / ".cache"), result.stdout
    result = dae_report("cache", "verify", "--out", "reports", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"no cache entries in {out / '.cache'}\n")


# The cache end to end, each change on top of the suite's shared quick build (its cache copied),
# typed with its options but --handout (no key holds it: a PDF less). ---------------------------

# Excluded from the model's key, part of the notebook's; and they make the rerun notebook fast.
WITHOUT_STUDIES = (
    "--set",
    "evaluation.baselines=false",
    "--set",
    "evaluation.generalisation=false",
)


def rebuild(reports: Path, *options: str, env: dict | None = None) -> tuple[Path, dict, dict, str]:
    """`dae-report build --profile quick` into `reports`:
    (run, its metrics.json, run.json, stderr)."""
    result = dae_report(
        "build",
        "--profile",
        "quick",
        "--data-dir",
        str(SUBSET_DIR),
        "--out",
        str(reports),
        *options,
        cwd=reports.parent,
        env=env,
    )
    run = assert_finished(reports, result)
    return (
        run,
        artifacts.read_json(run / "metrics.json"),
        artifacts.read_json(run / "run.json"),
        result.stderr,
    )


def retrained(metrics: dict) -> dict:
    """What the build decided about its model, as far as a retraining is concerned."""
    decision = metrics["training"]["cache"]
    return {key: decision.get(key) for key in ("trained", "reason", "changed", "compared_with")}


@pytest.mark.slow
def test_model_reused_while_the_notebook_reruns(quick_build, quick_reports_copy):
    run, metrics, record, stderr = rebuild(quick_reports_copy, *WITHOUT_STUDIES)
    shared = artifacts.read_json(quick_build.run_dir / "metrics.json")
    assert record["notebook"]["reused_from"] is None and "Sección 6" in stderr  # the notebook ran
    assert "baselines" in shared and "baselines" not in metrics  # with the new settings
    assert metrics["training"]["cache"] == {
        "trained": False,
        "key": shared["training"]["cache"]["key"],
        "reused_from": quick_build.run_dir.name,
        "reason": "same-inputs",
    }
    assert metrics["training"]["loss"] == shared["training"]["loss"]


@pytest.mark.slow
def test_a_template_only_change_only_rerenders(quick_build, quick_reports_copy, tmp_path):
    root = package_copy(tmp_path)
    template = root / "pipeline" / "templates" / "report.html.j2"
    marker = "<!-- a template-only change -->"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("<body>", f"<body>{marker}", 1), encoding="utf-8")
    run, metrics, record, stderr = rebuild(quick_reports_copy, env=python_path(root))
    assert record["notebook"]["reused_from"] == quick_build.run_dir.name and "Sección" not in stderr
    for name in ("answer-key.ipynb", "model.keras"):
        assert (run / name).read_bytes() == (quick_build.run_dir / name).read_bytes(), name
    assert marker in (run / "report.html").read_text(encoding="utf-8")
    assert marker not in (quick_build.run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_changed_training_module_retrains(quick_build, quick_reports_copy, tmp_path):
    root = package_copy(tmp_path)
    with open(root / "pipeline" / "train.py", "a", encoding="utf-8") as file:
        file.write("# a change in the training code\n")
    run, metrics, record, _ = rebuild(quick_reports_copy, *WITHOUT_STUDIES, env=python_path(root))
    assert record["notebook"]["reused_from"] is None
    assert retrained(metrics) == {
        "trained": True,
        "reason": "changed",
        "changed": ["code.train.py"],
        "compared_with": quick_build.run_dir.name,
    }


@pytest.mark.slow
def test_a_changed_library_version_retrains(quick_build, quick_reports_copy, tmp_path):
    shim = version_shim(tmp_path, "tensorflow")
    run, metrics, record, _ = rebuild(quick_reports_copy, *WITHOUT_STUDIES, env=python_path(shim))
    assert record["versions"]["tensorflow"].endswith(
        ".post1"
    )  # the faked version reached the build
    assert retrained(metrics) == {
        "trained": True,
        "reason": "changed",
        "changed": ["versions.tensorflow"],
        "compared_with": quick_build.run_dir.name,
    }


def test_the_precision_and_xla_a_machine_uses_are_in_the_model_key():
    """Two machines that resolve "auto" differently train different models; so does an explicit
    training.precision."""
    config = load_config("quick")
    code = notebook.training_code(config)

    def key(machine, values=None):
        values = values or config.to_dict()
        return cache.digest(cache.training_inputs(values, DIGESTS, machine, code))

    bf16 = {**MACHINE, "precision": {**MACHINE["precision"], "used": "bfloat16"}}
    xla = {**MACHINE, "jit_compile": {**MACHINE["jit_compile"], "used": True}}
    # oneDNN's ops sum in another order: other weights, to the last digits
    without_onednn = {**MACHINE, "onednn": {**MACHINE["onednn"], "used": False}}
    assert len({key(MACHINE), key(bf16), key(xla), key(without_onednn)}) == 4
    reworded = {**MACHINE, "precision": {**MACHINE["precision"], "reason": "other words"}}
    assert key(reworded) == key(MACHINE)  # what was used, not how it was found
    explicit = load_config("quick", overrides=["training.precision=bfloat16"]).to_dict()
    assert key(MACHINE, explicit) != key(MACHINE)
