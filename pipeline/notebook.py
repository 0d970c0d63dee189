"""The lab notebook: rendered for a config, executed by papermill, published as the answer
key (solutions, outputs, this run's answers) and as the student handout (gaps to fill).

templates/lab.ipynb is the lab in plain NumPy, Keras and Matplotlib. Its cells carry nbgrader's
metadata and markers; cells tagged `harness` connect it to the build and are dropped from every
notebook a reader receives.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager

from pipeline import artifacts, i18n
from pipeline.config import RESIDUAL_DEPTH, Config, loss_for
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
        elif current and PARAMETERS not in cell.metadata.get("tags", []):
            titles[index] = current
    return titles


# How templates/lab.ipynb marks its cells, set once so the answer key and the handout never drift.
PARAMETERS = "parameters"  # tag: the lab's constants, which render() writes from the config
HARNESS = (
    "harness"  # tag: the build's plumbing (seeding, cache, progress, analysis); no reader sees it
)
METADATA = "dae_report"  # cell metadata: "when" (the settings a variant cell is for) and
# "answers" (the answers.html.j2 macros that answer this cell's questions, in the answer key)
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"  # nbgrader's markers
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
PLACEHOLDER = "# TU CÓDIGO AQUÍ"  # what the handout shows in place of a solution region
FIT_CELL = "training"  # nbgrader grade_id of the cell that compiles and fits the model


# The comment beside each constant of the parameters cell (Spanish: catalogs translate it).
CONSTANT_COMMENTS = {
    "SEED": "semilla de NumPy y Keras",
    "TRAIN_LIMIT": "None: todas las imágenes de entrenamiento",
    "TEST_LIMIT": "None: todas las imágenes de test",
    "NOISE_MEAN": "media del ruido gaussiano",
    "NOISE_STD": "desviación típica del ruido",
    "NOISE_STD_RANGE": "entrenamiento: desviación típica por imagen en este intervalo",
    "POISSON_PEAK": "fotones que recibe un píxel blanco",
    "SALT_PEPPER_AMOUNT": "fracción de píxeles que pasan a 0 o a 1",
    "VAL_FRACTION": "fracción del entrenamiento reservada para validación",
    "MODEL_WIDTH": "canales de la primera capa",
    "MODEL_DEPTH": "capas convolucionales",
    "LEARNING_RATE": "tasa de aprendizaje de Adam",
    "LOSS": "función de pérdida",
    "PRECISION": '"mixed_bfloat16" donde el hardware calcula bfloat16 de forma nativa',
}
PARAMETERS_TITLE = "Parámetros de la práctica"


def constants(config: Config, precision: str | None = None) -> dict[str, object]:
    """The lab's named constants for `config`, only those its cells use. The parameters cell
    holds them, so a reader sees the run's own values. `precision`: the one this machine trains
    in (environment.choose_precision), else the config's, with "auto" as float32: a handout
    leaves for students' machines, which this one cannot judge."""
    noise, training = config.noise, config.training
    values = {
        "SEED": config.seed,
        "TRAIN_LIMIT": config.data.train_limit,
        "TEST_LIMIT": config.data.test_limit,
    }
    if noise.type == "gaussian":
        values["NOISE_MEAN"] = noise.mean
    if noise.type in ("gaussian", "speckle"):
        values["NOISE_STD"] = noise.std
    if noise.std_range is not None:
        values["NOISE_STD_RANGE"] = tuple(noise.std_range)
    if noise.type == "poisson":
        values["POISSON_PEAK"] = noise.peak
    if noise.type == "salt_pepper":
        values["SALT_PEPPER_AMOUNT"] = noise.amount
    values["VAL_FRACTION"] = config.split.val_fraction
    if config.model.name != "lab":
        values["MODEL_WIDTH"] = config.model.width
    if config.model.name == "residual":
        values["MODEL_DEPTH"] = RESIDUAL_DEPTH
    values.update(
        EPOCHS=training.epochs,
        BATCH_SIZE=training.batch_size,
        LEARNING_RATE=training.learning_rate,
        LOSS=loss_for(config.model.name, training.loss),
        PRECISION=policy(precision or training.precision),
    )
    return values


def policy(precision: str) -> str:
    """The Keras dtype policy that lab §0 sets for a precision: "auto" is float32 here."""
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


def lab(config: Config, precision: str | None = None) -> nbformat.NotebookNode:
    """The lab notebook as the build executes it: the variant cells `config` asks for, its
    constants in the parameters cell (`precision`: see `constants`), and every text in its
    language. Harness cells included."""
    notebook = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    settings = _flatten(config.to_dict())
    translate = i18n.gettext(config.report.lang)
    cells = []
    for cell in notebook.cells:
        if not _applies(cell.metadata.get(METADATA, {}).get("when"), settings):
            continue
        cell.metadata.get(METADATA, {}).pop("when", None)
        if PARAMETERS in cell.metadata.get("tags", []):
            cell.source = _constants_cell(config, translate, precision)
        elif cell.cell_type == "markdown":
            cell.source = translate(cell.source)
        else:
            cell.source = translate_code(cell.source, translate)
        cells.append(cell)
    notebook.cells = cells
    return notebook


def passage(cell_id: str, lang: str) -> str:
    """The text of the lab's markdown cell `cell_id` in `lang`, as the report repeats it: the
    same catalog entry as the notebook's, without the cell's heading (the report numbers its
    own sections) and out of its quote (the report frames its notes itself)."""
    cells = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4).cells
    found = [cell for cell in cells if cell.get("id") == cell_id and cell.cell_type == "markdown"]
    if not found:
        raise ValueError(f"{artifacts.LAB_NOTEBOOK.name} has no markdown cell {cell_id!r}")
    lines = i18n.gettext(lang)(found[0].source).split("\n")
    body = [re.sub(r"^> ?", "", line) for line in lines if not re.match(r"#{1,6} ", line)]
    return "\n".join(body).strip()


def training_code(config: Config) -> str:
    """The code cells that decide the trained model for `config`, as the template has them (any
    language): every code cell up to and including the one that fits. The model cache's key."""
    notebook = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    settings, code = _flatten(config.to_dict()), []
    for cell in notebook.cells:
        if cell.cell_type != "code" or not _applies(
            cell.metadata.get(METADATA, {}).get("when"), settings
        ):
            continue
        code.append(cell.source)
        if cell.metadata.get("nbgrader", {}).get("grade_id") == FIT_CELL:
            return "\n\n".join(code)
    raise ValueError(f"{artifacts.LAB_NOTEBOOK.name} has no cell {FIT_CELL!r}")


def source(config: Config) -> nbformat.NotebookNode:
    """The lab as an nbgrader source notebook: solution and hidden-test regions marked, checks
    graded, no harness. An instructor can put it in a course's source/ folder."""
    notebook = lab(config)
    notebook.cells = [
        cell for cell in notebook.cells if HARNESS not in cell.metadata.get("tags", [])
    ]
    for cell in notebook.cells:
        if cell.metadata.get(METADATA) == {}:
            del cell.metadata[METADATA]
    return notebook


def handout(config: Config) -> nbformat.NotebookNode:
    """The student's notebook: the source with each solution region replaced by a placeholder
    (`# TU CÓDIGO AQUÍ`), hidden tests removed, and no outputs. Everything around the regions
    (imports, loading, plotting, signatures, docstrings, checks) stays."""
    notebook = source(config)
    placeholder = i18n.gettext(config.report.lang)(PLACEHOLDER)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = _replace_regions(cell.source, BEGIN_SOLUTION, END_SOLUTION, placeholder)
            cell.source = _replace_regions(cell.source, BEGIN_HIDDEN, END_HIDDEN, None)
            cell.outputs, cell.execution_count = [], None
        marks = cell.metadata.get("nbgrader", {})
        if marks.get("solution") or marks.get("grade") or marks.get("locked"):
            cell.metadata["deletable"] = False  # as nbgrader's release locks them in Jupyter
        if marks.get("locked"):
            cell.metadata["editable"] = False
    return notebook


def answer_key(
    executed: nbformat.NotebookNode, answers: Callable[[str], str]
) -> nbformat.NotebookNode:
    """The executed lab as instructors receive it: harness cells dropped, and after each
    question the run's answer (`answers(name)`, HTML) as a markdown cell."""
    from markdownify import markdownify

    cells = []
    for cell in executed.cells:
        if HARNESS in cell.metadata.get("tags", []):
            continue
        cells.append(cell)
        for name in cell.metadata.get(METADATA, {}).get("answers", []):
            text = markdownify(answers(name), heading_style="ATX", escape_underscores=False)
            answer = nbformat.v4.new_markdown_cell(re.sub(r"\n{3,}", "\n\n", text).strip())
            answer.metadata[METADATA] = {"answer": name}
            cells.append(answer)
    executed.cells = cells
    return executed


INSTRUCTOR_COPY = "Solucionario: no distribuir"


def mark_instructor_copy(answers: nbformat.NotebookNode, lang: str, marked: bool):
    """The answer key with the instructor's-copy line on top, before each section and at the
    end (a printed notebook carries it on every page), or without it. Earlier marks are removed
    first: a key reused from another build gets this build's marks, never two."""
    cells = [cell for cell in answers.cells if not cell.metadata.get(METADATA, {}).get("copy")]
    if marked:
        line = f"**⚠ {i18n.gettext(lang)(INSTRUCTOR_COPY)}**"
        marked_cells = []
        for cell in cells:
            if not marked_cells or (cell.cell_type == "markdown" and cell.source.startswith("## ")):
                marked_cells.append(_copy_mark(line))
            marked_cells.append(cell)
        cells = [*marked_cells, _copy_mark(line)]
    answers.cells = cells
    answers.metadata.setdefault(METADATA, {})["instructor_copy"] = marked
    return answers


def _copy_mark(line: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(line)
    cell.metadata[METADATA] = {"copy": True}
    return cell


def _constants_cell(config: Config, translate, precision: str | None) -> str:
    lines = [f"# {translate(PARAMETERS_TITLE)}"]
    for name, value in constants(config, precision).items():
        comment = CONSTANT_COMMENTS.get(name)
        lines.append(
            f"{name} = {_literal(value) if isinstance(value, str) else repr(value)}"
            + (f"  # {translate(comment)}" if comment else "")
        )
    return "\n".join(lines)


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _applies(when: dict | None, settings: dict) -> bool:
    """Whether a cell is for these settings: each condition lists the values it is for, or is
    "set" (any value but None)."""
    for key, allowed in (when or {}).items():
        value = settings[key]
        if allowed == "set" and value is None:
            return False
        if allowed != "set" and value not in allowed:
            return False
    return True


def _replace_regions(text: str, begin: str, end: str, placeholder: str | None) -> str:
    """Each `begin` … `end` region (marker lines included) becomes `placeholder` at the marker's
    indentation, or nothing."""
    lines, inside, out = text.split("\n"), False, []
    for line in lines:
        stripped = line.strip()
        if stripped == begin:
            inside = True
            if placeholder is not None:
                out.append(line[: len(line) - len(line.lstrip())] + placeholder)
        elif stripped == end:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out).rstrip("\n")


def translate_code(text: str, translate: Callable[[str], str]) -> str:
    """A code cell in the reader's language: `_("…")` becomes the translated string literal,
    and each comment and docstring is translated. nbgrader's markers stay as they are."""
    replacements = []  # (start, end, new text), positions as (row, column)
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT and not token.string.startswith("###"):
            message = token.string[1:].strip()
            replacements.append((token.start, token.end, f"# {translate(message)}"))
        elif token.type == tokenize.STRING and token.string.startswith('"""'):
            message = token.string[3:-3]
            replacements.append((token.start, token.end, f'"""{translate(message)}"""'))
        elif (
            token.type == tokenize.NAME
            and token.string == "_"
            and index + 3 < len(tokens)
            and tokens[index + 1].string == "("
            and tokens[index + 2].type == tokenize.STRING
            and tokens[index + 3].string == ")"
        ):
            message = ast.literal_eval(tokens[index + 2].string)
            replacements.append((token.start, tokens[index + 3].end, _literal(translate(message))))
    starts = [0]  # offset of each line's first character
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for (row, column), (end_row, end_column), new in reversed(replacements):
        text = text[: starts[row - 1] + column] + new + text[starts[end_row - 1] + end_column :]
    return text


def code_messages(text: str) -> list[str]:
    """The messages `translate_code` translates in one code cell, for the catalogs."""
    found = []
    translate_code(text, lambda message: found.append(message) or message)
    return found


def _literal(text: str) -> str:
    """A double-quoted Python string literal for `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


SETTINGS_ENV = "DAE_REPORT_HARNESS"  # the kernel's copy of harness_settings(), as JSON


def harness_settings(
    config: Config,
    dataset: dict,
    training_inputs: dict,
    cache_dir: Path | None,
    run_id: str,
    retrain: bool,
    machine: dict,
) -> dict:
    """What the harness cells (pipeline.harness) need from the build, as plain JSON data."""
    return {
        # precision, oneDNN and XLA as this machine uses them, and why (machine_choices)
        **machine,
        "config": config.to_dict(),
        "dataset": dataset,  # source, digests and sizes of the verified files
        "training_inputs": training_inputs,  # the model cache's key, as the build computed it
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "run_id": run_id,
        "retrain": retrain,
    }


def execute(run_dir: Path, config: Config, harness: dict, keras_home: Path, stream=None) -> Path:
    """Execute the lab notebook for `config` inside `run_dir`; returns the executed notebook.

    `harness` is what the harness cells need from the build (`harness_settings`);
    `keras_home` holds datasets/fashion-mnist, so the lab's own `load_data()` works offline.
    Progress (section headings, training epochs) goes to `stream` as it happens.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    stream = terminal(stream)  # on_cell_start must not fail the cell when the reader goes
    output = run_dir / artifacts.ANSWER_KEY
    log_path = run_dir / artifacts.BUILD_LOG
    notebook = lab(config, harness["precision"]["used"])
    titles, shown = section_titles(notebook), set()

    def on_cell_start(cell, cell_index):
        title = titles.get(cell_index)
        if title and title not in shown:
            shown.add(title)
            stream.write(f"    ▸ {title}\n")
            stream.flush()

    kernel_env = _kernel_environment(log_path, harness, keras_home)
    kernel_manager = _KernelManager(
        kernel_name="python3", stderr_path=run_dir / artifacts.KERNEL_LOG
    )
    try:
        with _environment(kernel_env), LogFollower(log_path, stream, prefix="      "):
            papermill.execute_notebook(
                notebook,
                str(output),
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


def _kernel_environment(log_path: Path, harness: dict, keras_home: Path) -> dict[str, str]:
    """What the kernel's environment gains for one run: where progress goes, the harness
    settings, the Keras cache with the verified data, the inline plotting backend, and oneDNN's
    custom ops as the build chose them (read when the kernel imports TensorFlow)."""
    import json

    from pipeline import environment

    return {
        **environment.onednn_environment(harness["onednn"]["used"]),
        LOG_ENV: str(log_path),
        SETTINGS_ENV: json.dumps(harness),
        "KERAS_HOME": str(keras_home),
        # The lab's plt.show() draws into the notebook, whatever the user's own setting.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        # One glibc malloc arena for all of TensorFlow's threads, not one each, each keeping
        # its own freed memory: a one-epoch full build's kernel peaked at 0.88 / 1.14 / 1.24 GiB
        # (sections 1-5 / training and 6-8 / analysis) against 0.96 / 1.29 / 1.25 with glibc's
        # default, training no slower (README, Performance).
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "1"),
    }


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
