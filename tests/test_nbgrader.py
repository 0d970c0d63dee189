"""The lab notebook in a real nbgrader course, as an instructor uses it: `nbgrader
generate_assignment` releases it without solutions or hidden tests (exactly the handout the
tool writes), and `nbgrader autograde` gives a build's executed answer key full marks on every
autograded cell and the blank handout none, even when the student rewrote the read-only tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from pipeline import data, i18n, notebook
from pipeline.config import load_config
from tests.conftest import SUBSET_DIR, TINY, assert_finished, dae_report

ASSIGNMENT = "dae"  # course/source/dae/dae.ipynb: the assignment and its one notebook
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
# nbgrader stops a cell after 30 s by default: enough for a few hundred images on an idle
# machine, not for a loaded CI runner importing TensorFlow (nor for the full lab's training).
CELL_TIMEOUT = 600
# TINY, with a second epoch: the training check asks that the loss went down.
BUILD = [*TINY, "--set", "training.epochs=2"]


def overrides(arguments: list[str]) -> list[str]:
    """The `--set` items of build `arguments` whose profile is `quick`."""
    assert arguments[:2] == ["--profile", "quick"], arguments
    pairs = zip(arguments[2::2], arguments[3::2], strict=True)
    return [value for flag, value in pairs if flag == "--set"]


# --- the course --------------------------------------------------------------------------------


def course_folder(tmp_path: Path, source: nbformat.NotebookNode, stub: str) -> Path:
    """A fresh nbgrader course: its nbgrader_config.py, a gradebook beside it, and the lab at
    source/dae/dae.ipynb. `stub` replaces each solution region in the release."""
    course = tmp_path / "course"
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.db_url = {gradebook_url(course)!r}\n"
        f"c.ClearSolutions.code_stub = {{'python': {stub!r}}}\n"
        f"c.Execute.timeout = {CELL_TIMEOUT}\n",
        encoding="utf-8",
    )
    nbformat.write(source, course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return course


def gradebook_url(course: Path) -> str:
    return f"sqlite:///{course.parent / 'gradebook.db'}"


def keras_home(tmp_path: Path) -> Path:
    """A $KERAS_HOME whose datasets/fashion-mnist holds the real subset: load_data() reads it
    offline, as on a course server that downloaded Fashion-MNIST once."""
    home = tmp_path / "keras-home"
    data.fill_keras_cache(SUBSET_DIR, home)
    return home


def nbgrader(course: Path, *arguments: str, keras: Path) -> subprocess.CompletedProcess:
    """`nbgrader ARGUMENTS` typed in the course folder. Jupyter's config, data and runtime
    folders are the test's own, so no nbgrader_config.py or kernel of this machine's user leaks
    in; TensorFlow's log level is left as an instructor's shell leaves it: unset."""
    scratch = course.parent / "jupyter"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TF_CPP_MIN_LOG_LEVEL", "DAE_DATA_DIR", "MPLBACKEND", "PYTHONWARNINGS"}
    }
    environment.update(
        JUPYTER_CONFIG_DIR=str(scratch / "config"),
        JUPYTER_DATA_DIR=str(scratch / "data"),
        JUPYTER_RUNTIME_DIR=str(scratch / "runtime"),
        KERAS_HOME=str(keras),
        # nbgrader runs the `alembic` command of its environment: an instructor's activated venv
        # has it on PATH; `make test` calls .venv/bin/python without activating anything.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *arguments],
        cwd=course,
        env=environment,
        check=False,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "[ERROR]" not in result.stderr, result.stderr[-5000:]
    return result


def submit(course: Path, student: str, submission: nbformat.NotebookNode) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(submission, folder / f"{ASSIGNMENT}.ipynb")


def scores(course: Path, student: str) -> dict[str, tuple[float | None, float]]:
    """grade_id -> (automatic score, points) of each graded cell of `student`'s submission."""
    with Gradebook(gradebook_url(course)) as gradebook:
        submitted = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {grade.name: (grade.auto_score, grade.max_score) for grade in submitted.grades}


def graded_notebook(course: Path, student: str) -> nbformat.NotebookNode:
    """The notebook autograde executed for `student`."""
    path = course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    return nbformat.read(path, as_version=4)


def why(course: Path, student: str, grade_ids) -> str:
    """The outputs of the named cells as autograde ran them: what failed, and how."""
    cells = nbgrader_cells(graded_notebook(course, student))
    return "\n".join(
        f"{grade_id}: {json.dumps(cells[grade_id].get('outputs', []), ensure_ascii=False)[:1500]}"
        for grade_id in grade_ids
    )


# --- the notebooks -----------------------------------------------------------------------------


def nbgrader_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """grade_id -> cell, for every cell nbgrader tracks (solution, graded or read-only)."""
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") or meta.get("grade") or meta.get("locked"):
            assert meta["grade_id"] not in cells, f"grade_id {meta['grade_id']} twice"
            cells[meta["grade_id"]] = cell
    return cells


def autograded(nb: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of each test cell nbgrader scores by itself (graded, not a solution)."""
    return {
        grade_id: float(cell.metadata.nbgrader["points"])
        for grade_id, cell in nbgrader_cells(nb).items()
        if cell.metadata.nbgrader.get("grade") and not cell.metadata.nbgrader.get("solution")
    }


def _split(source: str, stub: str) -> tuple[str, list[str]]:
    """`source` as nbgrader releases it (each solution region replaced by `stub` at the region's
    indentation, each hidden-test region dropped), and the lines it took out."""
    kept, taken, inside = [], [], None
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            indent = re.match(r"\s*", line).group(0)
            kept += [indent + stub_line for stub_line in stub.split("\n")]
            inside = "END SOLUTION"
        elif "BEGIN HIDDEN TESTS" in line:
            inside = "END HIDDEN TESTS"
        elif inside and inside in line:
            inside = None
        elif inside:
            taken.append(line)
        else:
            kept.append(line)
    assert inside is None, f"a region never ends:\n{source}"
    return "\n".join(kept), taken


def assert_released_clean(source: nbformat.NotebookNode, release: nbformat.NotebookNode, stub: str):
    """The release holds every cell of the source with its solution and hidden-test regions
    cleared, no marker and no output left; each solution cell has a region, shown as the stub."""
    assert [cell.source for cell in release.cells] == [
        _split(cell.source, stub)[0] for cell in source.cells
    ]
    released_text = "\n".join(cell.source for cell in release.cells)
    for marker in MARKERS:
        assert marker not in released_text
    for cell in release.cells:
        assert not cell.get("outputs"), cell.source
    released = nbgrader_cells(release)
    assert released.keys() == nbgrader_cells(source).keys()
    for grade_id, cell in nbgrader_cells(source).items():
        if cell.metadata.nbgrader.get("solution"):
            assert _split(cell.source, stub)[1], f"solution cell {grade_id}: no BEGIN/END SOLUTION"
            assert stub in released[grade_id].source, grade_id


def tampered(handout: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The blank handout with every read-only test rewritten to pass: what autograde must undo."""
    copy = nbformat.from_dict(json.loads(json.dumps(handout)))
    for grade_id in autograded(copy):
        nbgrader_cells(copy)[grade_id].source = "pass"
    return copy


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_nbgrader_course_grades_the_lab(tmp_path):
    config = load_config("quick", overrides=overrides(BUILD))
    source = notebook.source(config)
    handout = notebook.handout(config)
    placeholder = i18n.gettext(config.report.lang)("# TU CÓDIGO AQUÍ")
    tests = autograded(source)
    assert tests, "no autograded test cell in the source notebook"
    assert any("BEGIN HIDDEN TESTS" in cell.source for cell in source.cells)

    # The executed answer key of a real build with the same settings.
    home = tmp_path / "build"
    home.mkdir()
    built = dae_report("build", *BUILD, "--data-dir", str(SUBSET_DIR), cwd=home)
    key = nbformat.read(assert_finished(home / "reports", built) / "answer-key.ipynb", as_version=4)
    assert autograded(key) == tests

    course = course_folder(tmp_path, source, placeholder)
    keras = keras_home(tmp_path)
    nbgrader(course, "generate_assignment", ASSIGNMENT, keras=keras)
    release = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert_released_clean(source, release, placeholder)
    # What the tool hands students is what nbgrader releases, cell for cell.
    assert [cell.source.rstrip() for cell in handout.cells] == [
        cell.source.rstrip() for cell in release.cells
    ]
    assert autograded(handout) == autograded(release) == tests

    submit(course, "key", key)
    submit(course, "blank", handout)
    submit(course, "tampered", tampered(handout))
    nbgrader(course, "autograde", ASSIGNMENT, keras=keras)

    got = scores(course, "key")
    assert {grade_id: got[grade_id] for grade_id in tests} == {
        grade_id: (points, points) for grade_id, points in tests.items()
    }, why(course, "key", tests)
    for student in ("blank", "tampered"):
        got = scores(course, student)
        assert {grade_id: got[grade_id] for grade_id in tests} == {
            grade_id: (0.0, points) for grade_id, points in tests.items()
        }, why(course, student, tests)
        # The tests that ran are the instructor's, hidden ones included, whatever was submitted.
        ran = nbgrader_cells(graded_notebook(course, student))
        assert {grade_id: ran[grade_id].source for grade_id in tests} == {
            grade_id: nbgrader_cells(source)[grade_id].source for grade_id in tests
        }
