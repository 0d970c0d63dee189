"""Run the lab notebook with papermill: the executed copy is the answer key."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager

from pipeline import artifacts, i18n
from pipeline.errors import DaeReportError, RunError
from pipeline.progress import LOG_ENV, LogFollower, terminal

# Our own errors raised inside the kernel keep their meaning (bad data is still exit code 2).
def _subclasses(cls: type) -> list[type]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _subclasses(child)]


KNOWN_ERRORS = {cls.__name__: cls for cls in _subclasses(DaeReportError)}


def section_titles(notebook: nbformat.NotebookNode) -> dict[int, str]:
    """For each code cell index, the heading of the `##` section it belongs to."""
    titles, current = {}, None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            match = re.search(r"^##\s+(.+)$", cell.source, flags=re.MULTILINE)
            current = match.group(1).strip() if match else current
        elif current and "parameters" not in cell.metadata.get("tags", []):
            titles[index] = current
    return titles


# Cell tags in templates/lab.ipynb, set once so the answer key and the handout never drift:
SOLUTION = "solution"  # code the student writes: emptied in the handout
ANSWER = "answer"  # a computed answer to a lab question: left out of the handout
KEY_ONLY = "key-only"  # the build's own plumbing (parameters, saving metrics): left out too


def lab(lang: str) -> nbformat.NotebookNode:
    """The lab notebook with its markdown in `lang` (code cells translate their own
    printed text through `i18n.gettext`)."""
    notebook = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    translate = i18n.gettext(lang)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = translate(cell.source)
    return notebook


def handout(lang: str) -> nbformat.NotebookNode:
    """The student's notebook: instructions and questions, solution cells emptied to a
    placeholder, no answers, no outputs."""
    notebook = lab(lang)
    _ = i18n.gettext(lang)
    placeholder = _("# TU CÓDIGO AQUÍ")
    cells = []
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if ANSWER in tags or KEY_ONLY in tags:
            continue
        if cell.cell_type == "code":
            if SOLUTION in tags:
                cell.source = placeholder
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    notebook.cells = cells
    return notebook


def execute(run_dir: Path, parameters: dict, lang: str, stream=None) -> Path:
    """Execute the lab notebook inside `run_dir` and save it there as the answer key.

    Progress (section headings, training epochs) goes to `stream` as it happens.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    stream = terminal(stream)  # on_cell_start must not fail the cell when the reader goes
    output = run_dir / artifacts.ANSWER_KEY
    log_path = run_dir / artifacts.BUILD_LOG
    notebook = lab(lang)
    titles, shown = section_titles(notebook), set()

    def on_cell_start(cell, cell_index):
        title = titles.get(cell_index)
        if title and title not in shown:
            shown.add(title)
            stream.write(f"    ▸ {title}\n")
            stream.flush()

    kernel_env = {
        LOG_ENV: str(log_path),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    kernel_manager = _KernelManager(kernel_name="python3", stderr_path=run_dir / artifacts.KERNEL_LOG)
    try:
        with _environment(kernel_env), LogFollower(log_path, stream, prefix="      "):
            papermill.execute_notebook(
                notebook,
                str(output),
                parameters=parameters,
                cwd=str(run_dir),
                kernel_name="python3",
                km=kernel_manager,
                # C-level writes to fd 1/2 (TensorFlow's logs) stay in kernel.log, not the notebook.
                extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                progress_bar=False,
                on_cell_start=on_cell_start,
            )
    except PapermillExecutionError as error:
        raise _translate(error, output) from None
    return output


class _KernelManager(AsyncKernelManager):
    """Starts the kernel with its stderr in kernel.log: TensorFlow's C++ start-up messages and
    the kernel's own warnings are kept for diagnosis, out of the terminal and the notebook."""

    def __init__(self, *, stderr_path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stderr_path = stderr_path

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        with open(self.stderr_path, "ab") as stderr:  # the child keeps its own copy of the fd
            return await super()._async_launch_kernel(kernel_cmd, **kw, stderr=stderr)


def _translate(error, executed: Path) -> DaeReportError:
    """A failed cell becomes our error: ours keep their type, others are run failures."""
    name, message = error.ename, error.evalue
    if not message.strip():  # IPython could not format the exception: its text is in the cell
        name, message = _exception_in_outputs(executed, error.cell_index) or (name, message)
    known = KNOWN_ERRORS.get(name)
    if known is not None:
        return known(message)
    return RunError(f"notebook cell {error.exec_count} failed with {name}: {message}")


def _exception_in_outputs(executed: Path, cell_index: int) -> tuple[str, str] | None:
    """The last `SomeError: message` that the failed cell printed, from the saved notebook."""
    try:
        cell = nbformat.read(executed, as_version=4).cells[cell_index]
    except (OSError, ValueError, IndexError):
        return None
    text = "\n".join(
        str(output.get("text", "")) + "\n".join(output.get("traceback", []))
        for output in cell.get("outputs", [])
    ).replace("\\n", "\n")
    found = re.findall(r"\b([A-Z]\w*(?:Error|Exception)): ([^\n'\"]+)", text)
    return found[-1] if found else None


@contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the kernel the block starts, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
