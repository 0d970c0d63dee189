import nbformat
import pytest

from pipeline import artifacts, notebook
from pipeline.errors import ConfigError, DataError, RunError


def test_lab_notebook_is_valid_and_runs_in_this_environment():
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    nbformat.validate(lab)
    assert lab.metadata.kernelspec == {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = [cell for cell in lab.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    assert all(not cell.get("outputs") for cell in lab.cells if cell.cell_type == "code")


def test_every_lab_section_is_in_the_notebook():
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    titles = [line[3:] for cell in lab.cells if cell.cell_type == "markdown"
              for line in cell.source.splitlines() if line.startswith("## ")]  # fmt: skip
    for number in range(10):
        assert any(title.startswith(f"Sección {number} ") for title in titles), number


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
        nbformat.v4.new_output("stream", name="stderr", text="['Unexpected exception formatting exception. Falling back to standard exception\\n']"),
        nbformat.v4.new_output("stream", name="stderr", text="['Traceback (most recent call last):\\n', '  File \"x.py\", line 1\\n', \"jinja2.exceptions.UndefinedError: list object has no element 1\\n\"]"),
    ]  # fmt: skip
    executed.cells = [nbformat.v4.new_markdown_cell("# Lab"), cell]
    path = tmp_path / "answer-key.ipynb"
    nbformat.write(executed, path)
    error = notebook._translate(_Failure("CellExecutionError", "", cell_index=1), path)
    assert str(error) == "notebook cell 7 failed with UndefinedError: list object has no element 1"
    # with nothing to read back, the user still gets what papermill said
    unreadable = notebook._translate(_Failure("CellExecutionError", "", cell_index=1), tmp_path / "no.ipynb")
    assert str(unreadable) == "notebook cell 7 failed with CellExecutionError: "


def _by_id(notebook_node):
    return {cell.id: cell for cell in notebook_node.cells}


@pytest.mark.parametrize("lang", ["es", "en"])
def test_handout_has_no_solutions_no_answers_no_outputs(lang):
    key, student = notebook.lab(lang), notebook.handout(lang)
    placeholder = {"es": "# TU CÓDIGO AQUÍ", "en": "# YOUR CODE HERE"}[lang]
    kept = _by_id(student)
    for cell in key.cells:
        tags = cell.metadata.get("tags", [])
        if notebook.ANSWER in tags or notebook.KEY_ONLY in tags:
            assert cell.id not in kept
        elif notebook.SOLUTION in tags:
            assert kept[cell.id].source == placeholder
        else:  # instructions and questions: the same text in both, from one source
            assert kept[cell.id].source == cell.source
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    nbformat.validate(student)


def test_the_lab_marks_its_solutions_and_answers():
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    tags = [tag for cell in lab.cells for tag in cell.metadata.get("tags", [])]
    assert tags.count(notebook.SOLUTION) >= 15
    assert tags.count(notebook.ANSWER) >= 4
    untagged_code = [c.id for c in lab.cells if c.cell_type == "code" and not c.metadata.get("tags")]
    assert untagged_code == []  # every code cell says what the handout does with it


def _printed(cell) -> str:
    return "".join(output.text for output in cell.outputs if output.get("name") == "stdout")


def _shown(cell) -> list[list[str]]:
    """What a cell displayed besides printed text: the kinds of each figure or table."""
    return [sorted(output.data) for output in cell.outputs if output.output_type == "display_data"]


def _solutions_before_training(cells) -> list[str]:
    """Ids of the solution cells of sections 0-3: the lab up to "Sección 4" (split and training)."""
    ids = []
    for cell in cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Sección 4 "):
            return ids
        if cell.cell_type == "code" and notebook.SOLUTION in cell.metadata.get("tags", []):
            ids.append(cell.id)
    raise AssertionError("the lab has no Sección 4")


def test_a_student_can_start_from_the_handout(quick_build, tmp_path, monkeypatch):
    """The handout keeps every cell a student writes, in the key's order, and nothing the key's
    solutions need lives only in the cells it leaves out: with the key's own code written into
    the placeholders of sections 0-3 (up to training, to stay fast), the handout runs in a kernel
    and prints and shows, cell for cell, what the shared build's answer key did. The placeholders
    left (sections 4 on) run as the comments they are."""
    from nbclient import NotebookClient

    key = nbformat.read(quick_build.run_dir / "answer-key.ipynb", as_version=4)
    key_cells, student = _by_id(key), notebook.handout("es")
    written = _solutions_before_training(key.cells)
    for cell_id in written:
        _by_id(student)[cell_id].source = key_cells[cell_id].source  # KeyError: no place for it
    # the build's parameters (data folder, config) come first, as papermill put them in the key
    parameters = [c for c in key.cells if "injected-parameters" in c.metadata.get("tags", [])]
    student.cells[:0] = parameters
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the build's kernel setting; figures land in tmp_path
    in_tmp = {"metadata": {"path": str(tmp_path)}}
    client = NotebookClient(student, kernel_name="python3", timeout=300, resources=in_tmp)
    client.execute()  # raises at the first cell that fails

    ran = _by_id(student)
    assert [c.id for c in student.cells if c.id in written] == written  # in the key's order
    for cell_id in written:
        assert _printed(ran[cell_id]) == _printed(key_cells[cell_id]), cell_id
        assert _shown(ran[cell_id]) == _shown(key_cells[cell_id]), cell_id
    after = student.cells[len(parameters) :]
    left = [c for c in after if c.cell_type == "code" and c.id not in written]
    assert left and all(c.source == "# TU CÓDIGO AQUÍ" for c in left)
    assert all(c.execution_count and not c.outputs for c in left)
