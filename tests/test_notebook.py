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
    titles = set(notebook.section_titles(nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)).values())
    for number in range(10):
        assert any(title.startswith(f"Sección {number} ") for title in titles), number


class _Failure:
    def __init__(self, ename, evalue):
        self.ename, self.evalue, self.exec_count = ename, evalue, 7


@pytest.mark.parametrize(
    "ename, expected, exit_code",
    [("DataError", DataError, 2), ("ConfigError", ConfigError, 2), ("RunError", RunError, 3)],
)
def test_our_errors_keep_their_type_across_the_kernel(ename, expected, exit_code):
    error = notebook._translate(_Failure(ename, "the message"))
    assert type(error) is expected and str(error) == "the message" and error.exit_code == exit_code


def test_other_cell_errors_are_run_failures():
    error = notebook._translate(_Failure("ValueError", "bad shape"))
    assert isinstance(error, RunError)
    assert str(error) == "notebook cell 7 failed with ValueError: bad shape"
