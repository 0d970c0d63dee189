import ast
import dataclasses
import itertools
import json
import re
import sys

import nbformat
import numpy as np
import pytest

from pipeline import artifacts, compare, data, noise, notebook
from pipeline import model as lab_model
from pipeline import train as train_module
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError, DataError, RunError
from tests.conftest import SUBSET_DIR


def test_lab_notebook_is_valid_and_runs_in_this_environment():
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    nbformat.validate(lab)
    assert lab.metadata.kernelspec == {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    parameters = [
        cell for cell in lab.cells if notebook.PARAMETERS in cell.metadata.get("tags", [])
    ]
    assert len(parameters) == 1
    assert all(not cell.get("outputs") for cell in lab.cells if cell.cell_type == "code")


def test_every_lab_section_is_in_the_notebook():
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    titles = [
        line[3:]
        for cell in lab.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    for number in range(10):
        assert any(title.startswith(f"Sección {number} ") for title in titles), number


def test_the_report_takes_the_labs_own_text_from_the_notebook():
    """Passages the report repeats (objective, notes, section 9) have one home, a markdown cell
    of the lab, and one catalog entry: the report shows the cell's text in its language, without
    the cell's heading and out of its quote."""
    import re

    used = re.findall(
        r'lab_text\("([^"]+)"\)',
        (artifacts.TEMPLATES_DIR / "report.html.j2").read_text(encoding="utf-8"),
    )
    assert len(used) >= 6
    lab = {
        cell.get("id"): cell for cell in nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4).cells
    }
    for cell_id in used:
        for lang in ("es", "en"):
            text = notebook.passage(cell_id, lang)
            assert text and not text.startswith(("#", ">")), (cell_id, lang)
        source = lab[cell_id].source
        assert notebook.passage(cell_id, "es") in source.replace("> ", "").replace(">\n", "\n")
    section_9 = notebook.passage("seccion-9-consideraciones", "en")
    assert section_9.startswith("- **Noise selection.** The type") and "Sección" not in section_9
    assert notebook.passage("reflexion-ruido", "es").startswith("**Reflexión.** Observa")
    with pytest.raises(ValueError, match="no markdown cell 'parameters'"):
        notebook.passage("parameters", "es")  # a code cell is no passage


class _Failure:
    def __init__(self, ename, evalue, cell_index=0):
        self.ename, self.evalue, self.exec_count, self.cell_index = ename, evalue, 7, cell_index


@pytest.mark.parametrize(
    "ename, expected, exit_code",
    [("DataError", DataError, 2), ("ConfigError", ConfigError, 2), ("RunError", RunError, 3)],
)
def test_our_errors_keep_their_type_across_the_kernel(tmp_path, ename, expected, exit_code):
    error = notebook._translate(_Failure(ename, "the message"), tmp_path / "none.ipynb")
    assert type(error) is expected and str(error) == "the message" and error.exit_code == exit_code


def test_other_cell_errors_are_run_failures(tmp_path):
    error = notebook._translate(_Failure("ValueError", "bad shape"), tmp_path / "none.ipynb")
    assert isinstance(error, RunError)
    assert str(error) == "notebook cell 7 failed with ValueError: bad shape"


def test_an_error_ipython_could_not_format_still_reaches_the_user(tmp_path):
    """IPython sometimes prints "Unexpected exception formatting exception" and the traceback as
    plain text; papermill then reports CellExecutionError with no message. The message is read
    back from the failed cell's printed text, as a real build left it."""
    executed = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display(HTML(report.answer(...)))")
    cell.outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text=(
                "['Unexpected exception formatting exception. "
                "Falling back to standard exception\\n']"
            ),
        ),
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text=(
                "['Traceback (most recent call last):\\n', '  File \"x.py\", line 1\\n', "
                '"jinja2.exceptions.UndefinedError: list object has no element 1\\n"]'
            ),
        ),
    ]
    executed.cells = [nbformat.v4.new_markdown_cell("# Lab"), cell]
    path = tmp_path / "answer-key.ipynb"
    nbformat.write(executed, path)
    error = notebook._translate(_Failure("CellExecutionError", "", cell_index=1), path)
    assert str(error) == "notebook cell 7 failed with UndefinedError: list object has no element 1"
    # with nothing to read back, the user still gets what papermill said
    unreadable = notebook._translate(
        _Failure("CellExecutionError", "", cell_index=1), tmp_path / "no.ipynb"
    )
    assert str(unreadable) == "notebook cell 7 failed with CellExecutionError: "


# Every combination of the settings that choose a variant cell of the lab.
VARIANTS = [
    [f"noise.type={kind}", f"model.name={name}", f"training.schedule={schedule}"]
    + (["noise.std_range=[0.1,0.7]"] if ranged else [])
    for kind, name, schedule, ranged in itertools.product(
        ("gaussian", "speckle", "poisson", "salt_pepper"),
        ("lab", "residual", "unet"),
        ("constant", "cosine"),
        (False, True),
    )
    if not (ranged and kind != "gaussian")
]
STANDARD_LIBRARY = set(sys.stdlib_module_names)
ALLOWED_IMPORTS = {"numpy", "matplotlib", "tensorflow", "keras"}


def _config(*overrides: str, profile: str = "quick") -> Config:
    return load_config(profile, overrides=overrides)


def _imports(cell_source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(cell_source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def _grade_ids(notebook_node) -> list[str]:
    return [c.metadata.nbgrader.grade_id for c in notebook_node.cells if "nbgrader" in c.metadata]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda overrides: ",".join(overrides))
def test_every_setting_gets_one_plain_lab(overrides):
    """Whatever the config, the notebook a reader gets holds one cell per step (the variant for
    its noise, model and schedule), each plain Python that imports nothing but the standard
    library, NumPy, Keras/TensorFlow and Matplotlib, with the run's own constants."""
    config = _config(*overrides)
    source = notebook.source(config)
    nbformat.validate(source)
    ids = _grade_ids(source)
    assert len(ids) == len(set(ids))
    assert {"normalise", "noise", "split", "model", "training", "predict", "mse"} <= set(ids)
    for cell in source.cells:
        assert notebook.HARNESS not in cell.metadata.get("tags", [])
        if cell.cell_type == "code":
            assert _imports(cell.source) <= ALLOWED_IMPORTS | STANDARD_LIBRARY, cell.source
            assert "pipeline" not in cell.source and "metrics[" not in cell.source
            assert not re.search(r"(?<!\w)_\(", cell.source)  # translated into plain literals
    constants = {}
    exec(
        source.cells[
            [c.metadata.get("tags") for c in source.cells].index([notebook.PARAMETERS])
        ].source,
        constants,
    )
    assert constants["SEED"] == config.seed and constants["EPOCHS"] == config.training.epochs
    assert constants["TRAIN_LIMIT"] == config.data.train_limit
    assert constants["LOSS"] == ("binary_crossentropy" if config.model.name == "lab" else "mse")


def test_the_lab_keeps_the_harness_apart():
    """The build's cells are tagged, and only they know the package; the template names no
    `metrics[...]` and no config object anywhere."""
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    harness = [c for c in lab.cells if notebook.HARNESS in c.metadata.get("tags", [])]
    assert [c.source.strip().splitlines()[-1] for c in harness] == [
        "harness.start(globals())",
        "harness.before_training(denoising_autoencoder)",
        "harness.finish(globals())",
    ]
    for cell in lab.cells:
        if cell.cell_type == "code" and cell not in harness:
            assert (
                "pipeline" not in cell.source
                and "metrics[" not in cell.source
                and "cfg" not in cell.source
            )


@pytest.mark.parametrize(
    "lang, placeholder", [("es", "# TU CÓDIGO AQUÍ"), ("en", "# YOUR CODE HERE")]
)
def test_handout_gaps_are_only_the_solution_regions(lang, placeholder):
    """The handout is the source with each solution region replaced by the placeholder at its
    indentation and the hidden tests removed: imports, loading, plots, signatures, docstrings
    and the visible checks stay, line for line."""
    config = _config(f"report.lang={lang}")
    source, student = notebook.source(config), notebook.handout(config)
    assert [c.id for c in student.cells] == [c.id for c in source.cells]
    regions = 0
    for original, handed_out in zip(source.cells, student.cells, strict=True):
        if original.cell_type == "markdown":
            assert handed_out.source == original.source
            continue
        assert handed_out.outputs == [] and handed_out.execution_count is None
        assert (
            notebook.BEGIN_SOLUTION not in handed_out.source
            and notebook.BEGIN_HIDDEN not in handed_out.source
        )
        kept = [line for line in original.source.split("\n")]
        expected, inside = [], None
        for line in kept:
            if line.strip() in (notebook.BEGIN_SOLUTION, notebook.BEGIN_HIDDEN):
                inside = line.strip()
                if inside == notebook.BEGIN_SOLUTION:
                    regions += 1
                    expected.append(line.replace(notebook.BEGIN_SOLUTION, placeholder))
            elif line.strip() in (notebook.END_SOLUTION, notebook.END_HIDDEN):
                inside = None
            elif inside is None:
                expected.append(line)
        assert handed_out.source == "\n".join(expected).rstrip("\n"), original.id
        if original.metadata.get("nbgrader", {}).get("solution"):
            assert placeholder in handed_out.source
        elif notebook.BEGIN_HIDDEN not in original.source:
            assert handed_out.source == original.source  # scaffolding and checks: untouched
    assert regions == 7  # normalise, the noise function, split, model, training, predict, mse
    by_id = {c.id: c for c in student.cells}
    assert "load_data()" in by_id["x-train-y-train-x-test-y-test-ke"].source
    assert "def add_gaussian_noise(images, mean, std, rng):" in by_id["noise"].source
    assert "plt.hist(x_sample_noisy" in "".join(c.source for c in student.cells)


def test_answer_key_drops_the_harness_and_answers_after_each_question():
    config = _config()
    executed = notebook.lab(config)
    key = notebook.answer_key(
        executed,
        lambda name: (
            f'<div class="answer"><p><strong>{name}.</strong> <code>val_loss</code> 0,5</p></div>'
        ),
    )
    assert not [c for c in key.cells if notebook.HARNESS in c.metadata.get("tags", [])]
    answers = [
        (i, c)
        for i, c in enumerate(key.cells)
        if c.metadata.get(notebook.METADATA, {}).get("answer")
    ]
    assert [c.metadata[notebook.METADATA]["answer"] for _, c in answers] == [
        "noise",
        "overfitting",
        "details",
        "residual",
        "blur",
        "anomalies",
    ]
    for index, cell in answers:
        assert cell.cell_type == "markdown" and "<" not in cell.source  # markdown, not HTML
        assert cell.source == f"**{cell.metadata[notebook.METADATA]['answer']}.** `val_loss` 0,5"
        question = next(
            c
            for c in reversed(key.cells[:index])
            if not c.metadata.get(notebook.METADATA, {}).get("answer")
        )
        assert (
            cell.metadata[notebook.METADATA]["answer"]
            in question.metadata[notebook.METADATA]["answers"]
        )


# --- One model, one noise, one split: the notebook's code and the package's agree ---------


def _cell(notebook_node, grade_id: str) -> str:
    """The source of the cell nbgrader grades as `grade_id`, or else of the cell of that id."""
    (cell,) = [
        c for c in notebook_node.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    ] or [c for c in notebook_node.cells if c.id == grade_id]
    return cell.source


def _run(code: str, **names) -> dict:
    import keras
    from keras import layers

    namespace = {"np": np, "keras": keras, "layers": layers, **names}
    exec(code, namespace)
    return namespace


@pytest.fixture(scope="module")
def subset():
    dataset = data.load(SUBSET_DIR)
    return dataset.train_images[:500], dataset.test_images[:100]


def test_normalisation_equals_the_package(subset):
    train, test = subset
    lab = notebook.lab(_config())
    values = _run(_cell(lab, "normalise"), x_train=train, x_test=test)
    values = _run(_cell(lab, "normalise-test-set"), **values, print=lambda *args: None)
    for ours, theirs in (
        (values["normalise"](train), data.to_unit_float(train)),
        (values["x_test"], data.to_unit_float(test)),
    ):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    assert values["x_train"] is train  # uint8: §6 normalises each batch


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["noise.std=0.7", "noise.mean=0.1"],
        ["noise.std_range=[0.1,0.7]"],
        ["noise.type=speckle"],
        ["noise.type=poisson"],
        ["noise.type=salt_pepper", "noise.amount=0.2"],
        ["seed=7"],
    ],
    ids=str,
)
def test_noise_split_and_batches_equal_the_package_bit_for_bit(subset, overrides):
    """Same seed, same images: the notebook's §2–§4 and its training batches (§6) are the
    package's (compare.prepare, train.Batches) bit for bit, batch by batch, epoch after epoch."""
    config = _config(*overrides)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, train_limit=None, test_limit=None)
    )
    lab = notebook.lab(config)
    train, test = subset
    names = {**_upper(_run(_cell(lab, "parameters"))), "x_train": train, "x_test": test}
    names |= {"rng": np.random.default_rng(names["SEED"]), "print": lambda *args: None}
    for cell in ("normalise", "normalise-test-set", "noise", "split", "training-batches"):
        names = _run(_cell(lab, cell), **names)
    dataset = data.Dataset(train, np.zeros(len(train)), test, np.zeros(len(test)), SUBSET_DIR, {})
    prepared = compare.prepare(config, dataset)
    assert names["x_sample_noisy"].dtype == np.float32 and len(names["x_sample"]) == len(train)
    # 500 images are fewer than the sample: the sample's size is held to the package's by name
    assert f"x_train[:{compare.NOISE_SAMPLE}]" in _cell(lab, "noise")
    for name, expected in (
        ("x_test", prepared.test[0]),
        ("x_test_noisy", prepared.test[1]),
        ("x_val_clean", prepared.val[0]),
        ("x_val_noisy", prepared.val[1]),
        ("x_train_clean", prepared.train),
    ):
        assert names[name].dtype == expected.dtype and np.array_equal(names[name], expected), name
    ours = names["train_batches"]
    theirs = train_module.Batches(
        prepared.train,
        config.training.batch_size,
        config.seed,
        lambda clean, rng: noise.corrupt(clean, config.noise, rng, training=True),
    )
    assert len(ours) == len(theirs) > 1
    for _epoch in range(2):
        for index in (0, len(ours) - 1):
            for a, b in zip(ours[index], theirs[index], strict=True):
                assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
        first = ours[0][0]
        assert np.array_equal(ours[0][0], first)  # a batch asked for twice is the same batch
        ours.on_epoch_end(), theirs.on_epoch_end()
    assert not np.array_equal(ours[0][1], names["normalise"](train[: len(ours[0][1])]))


def _upper(values: dict) -> dict:
    return {name: value for name, value in values.items() if name.isupper()}


@pytest.mark.parametrize("name", ["lab", "residual", "unet"])
def test_the_notebook_model_is_the_package_model(name):
    """Layer for layer: type, name, output shape and parameters; 74 497 and 7×7×64 for the lab."""
    config = _config(f"model.name={name}", "model.width=16")
    lab = notebook.lab(config)
    code = _cell(lab, "model").replace("denoising_autoencoder.summary()", "")
    ours = _run(code, **_upper(_run(_cell(lab, "parameters"))), print=lambda *args: None)[
        "denoising_autoencoder"
    ]
    theirs = lab_model.build(name, 16)

    def layers(model):
        return [
            (type(layer).__name__, layer.name, tuple(layer.output.shape[1:]), layer.count_params())
            for layer in model.layers
        ]

    assert layers(ours) == layers(theirs)
    assert ours.count_params() == theirs.count_params()
    if name == "lab":
        assert ours.count_params() == 74497 and lab_model.latent_shape(ours) == (7, 7, 64)


# --- The notebooks people receive, executed the way they hold them -----------------------


def _kernel_env(tmp_path, monkeypatch, without_package: bool = True) -> None:
    """The kernel a student has: Keras' cache holding the data (as after its download), and no
    `pipeline` to import (a package of that name that refuses to load comes first on the path)."""
    keras_home = tmp_path / "keras"
    data.fill_keras_cache(SUBSET_DIR, keras_home)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    if without_package:
        fake = tmp_path / "no-package" / "pipeline"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text('raise ImportError("dae-report is not installed here")\n')
        monkeypatch.setenv("PYTHONPATH", str(fake.parent))


TINY_CONSTANTS = {"TRAIN_LIMIT": 600, "TEST_LIMIT": 200, "EPOCHS": 2}
NO_PACKAGE_CHECK = """
try:
    import pipeline
except ImportError as error:
    print("no package:", error)
else:
    raise AssertionError("the kernel could import pipeline")
"""


def test_answer_key_reads_as_a_solved_lab(quick_build):
    """The shared build's key: plain code, its outputs, the run's answers; nothing of ours."""
    key = nbformat.read(quick_build.run_dir / artifacts.ANSWER_KEY, as_version=4)
    code = [c for c in key.cells if c.cell_type == "code"]
    assert all("pipeline" not in c.source and "metrics[" not in c.source for c in code)
    assert not [c for c in key.cells if notebook.HARNESS in c.metadata.get("tags", [])]
    assert all(_imports(c.source) <= ALLOWED_IMPORTS | STANDARD_LIBRARY for c in code)
    solved = {
        c.metadata.nbgrader.grade_id: c
        for c in code
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    assert "rng.standard_normal" in solved["noise"].source and "np.clip" in solved["noise"].source
    assert "layers.Conv2D(32" in solved["model"].source and ".fit(" in solved["training"].source
    assert ".compile(" in solved["training"].source
    figures = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(figures) >= 8  # every plot of the lab, drawn by the lab's own code
    assert "Epoch 2/2" in "".join(o.get("text", "") for o in solved["training"].outputs)
    metrics = json.loads((quick_build.run_dir / artifacts.METRICS).read_text(encoding="utf-8"))
    answers = [c.source for c in key.cells if c.metadata.get(notebook.METADATA, {}).get("answer")]
    assert len(answers) == 6
    threshold = metrics["anomalies"]["threshold"]
    assert any(f"{threshold:.4f}".replace(".", ",") in answer for answer in answers)


@pytest.mark.slow
def test_answer_key_runs_without_the_package(quick_build, tmp_path, monkeypatch):
    """Harness cells dropped, the key runs top to bottom in a kernel where `pipeline` cannot be
    imported, on the test subset: what Colab or a JupyterHub does with it."""
    import papermill

    key = nbformat.read(quick_build.run_dir / artifacts.ANSWER_KEY, as_version=4)
    key.cells.append(nbformat.v4.new_code_cell(NO_PACKAGE_CHECK))
    _kernel_env(tmp_path, monkeypatch)
    executed = papermill.execute_notebook(
        key,
        str(tmp_path / "key.ipynb"),
        parameters=TINY_CONSTANTS,
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    assert "no package: dae-report is not installed here" in executed.cells[-1].outputs[0].text
    checks = [c for c in executed.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks and all(c.execution_count for c in checks)  # every check ran, and passed


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["es", "en"])
def test_handout_runs_up_to_the_first_gap_and_its_check_fails(tmp_path, monkeypatch, lang):
    """A student's first run: every cell before the first gap works without the package; the
    gap's own cell runs (the placeholder is a comment); the check after it fails with its
    message, as the blank handout should."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    config = _config(
        "data.train_limit=600", "data.test_limit=200", "training.epochs=1", f"report.lang={lang}"
    )
    student = notebook.handout(config)
    placeholder = {"es": "# TU CÓDIGO AQUÍ", "en": "# YOUR CODE HERE"}[lang]
    first_gap = next(
        i for i, c in enumerate(student.cells) if c.cell_type == "code" and placeholder in c.source
    )
    assert any("load_data()" in c.source for c in student.cells[:first_gap])
    student.cells.insert(first_gap, nbformat.v4.new_code_cell(NO_PACKAGE_CHECK))
    _kernel_env(tmp_path, monkeypatch)
    with pytest.raises(PapermillExecutionError) as failure:
        papermill.execute_notebook(
            student,
            str(tmp_path / "handout.ipynb"),
            cwd=str(tmp_path),
            kernel_name="python3",
            progress_bar=False,
        )
    executed = nbformat.read(tmp_path / "handout.ipynb", as_version=4)
    ran = [c for c in executed.cells if c.cell_type == "code" and c.execution_count]
    (failed,) = [
        c for c in executed.cells if any(o.output_type == "error" for o in c.get("outputs", []))
    ]
    assert failed.metadata.nbgrader.grade_id == "check_normalise"
    assert failure.value.ename == "AssertionError"
    message = {
        "es": "normalise debe devolver un array float32",
        "en": "normalise must return a float32 array",
    }[lang]
    assert message in failure.value.evalue
    assert ran[-1] is failed and placeholder in ran[-2].source  # the gap ran, then its check
    assert len(ran) == len(
        [c for c in executed.cells[: executed.cells.index(failed) + 1] if c.cell_type == "code"]
    )


def test_the_instructors_copy_marks_the_answer_key_once_and_comes_off_again():
    answers = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Lab"),
            nbformat.v4.new_markdown_cell("## Sección 1"),
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_markdown_cell("## Sección 2"),
        ]
    )
    plain = [cell.source for cell in answers.cells]
    mark = "**⚠ Answer key: do not distribute**"
    for _ in range(2):  # a key reused from a marked build is not marked twice
        notebook.mark_instructor_copy(answers, "en", True)
        sources = [cell.source for cell in answers.cells]
        assert sources == [mark, "# Lab", mark, "## Sección 1", "x = 1", mark, "## Sección 2", mark]
        assert answers.metadata["dae_report"]["instructor_copy"] is True
    notebook.mark_instructor_copy(answers, "es", False)
    assert [cell.source for cell in answers.cells] == plain
    assert answers.metadata["dae_report"]["instructor_copy"] is False


def test_the_kernel_keeps_one_malloc_arena_unless_the_user_chose(tmp_path, monkeypatch):
    """The kernel's memory peak rests on it (README, Performance); a user's own setting wins."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    harness = {"onednn": {"used": False}}
    settings = notebook._kernel_environment(tmp_path / "log", harness, tmp_path / "keras")
    assert settings["MALLOC_ARENA_MAX"] == "1"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    settings = notebook._kernel_environment(tmp_path / "log", harness, tmp_path / "keras")
    assert settings["MALLOC_ARENA_MAX"] == "4"


@pytest.mark.parametrize(("used", "value"), [(True, "1"), (False, "0")])
def test_the_kernel_gets_onednn_as_the_build_chose_it(tmp_path, monkeypatch, used, value):
    """TensorFlow reads TF_ENABLE_ONEDNN_OPTS at import, in the kernel: the build's choice is
    what it finds there, whatever the shell had."""
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0" if used else "1")
    harness = {"onednn": {"setting": "auto", "used": used, "reason": "measured"}}
    settings = notebook._kernel_environment(tmp_path / "log", harness, tmp_path / "keras")
    assert settings["TF_ENABLE_ONEDNN_OPTS"] == value
