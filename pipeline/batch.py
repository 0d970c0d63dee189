"""`dae-report batch`: a class set, each student's variant built as a Dask job, on a LocalCluster
sized to the machine or on an existing cluster.

Each job is one distinct variant's whole build (`pipeline.build.build`, a fresh papermill kernel)
in its own folder, variants/v<n>/; configs and paths travel to the workers, models never do. A
job takes one unit of the workers' `train` resource, so a worker trains one model at a time and
its memory holds; the kernel's thread counts come from the worker's share of the cores (Dask's
nanny sets OMP_NUM_THREADS=1 and the kernel would inherit it). A job whose worker died runs
again on another worker; a job that fails on its own input returns its error instead of
raising, so it is not run again. The batch folder must be a path every worker sees.

The batch folder, <out>/<assignment>/:
    variants/v<n>/<run-id>/   each variant's build: report, answer key (both marked as the
                              instructor's copy), handout, metrics; the variant's cache beside it
    handouts/<student>.ipynb  each student's handout, naming their settings; the student and
                              the variant in its metadata
    class.csv                 student → variant → settings → headline metrics, for an LMS
    batch.json                the plan and each variant's outcome
    index.html, index.pdf     every variant with its metrics, students and files; failures
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from pipeline import artifacts
from pipeline.config import Config
from pipeline.errors import BadInput, DaeReportError, QualityRegression, RunError

TRAIN_RESOURCE = "train"
# Exceptions a job raises (not its bad input, which it returns) run again this many times. A
# worker that dies mid-job is the scheduler's to handle: it reruns the job elsewhere, up to
# distributed.scheduler.allowed-failures times.
RETRIES = 2
# One build at a time per 3 GiB: in bench.py --full (2026-11-28) a 20-epoch full build peaked at
# 1.20 GiB with oneDNN's custom ops, 1.33 GiB without (its kernel, lab model), and compare's U-Net
# at 1.13 and 1.38 GiB; the rest is room for the Dask worker and the system.
MEMORY_PER_TRAINING = 3 * 2**30
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
POLL_SECONDS = 2  # how often the progress line counts the running jobs

CLASS_CSV = "class.csv"
HANDOUTS = "handouts"
VARIANTS_DIR = "variants"
RECORD = "batch.json"
INDEX_HTML = "index.html"
INDEX_PDF = "index.pdf"


@dataclass(frozen=True)
class Outcome:
    name: str
    run_dir: str | None  # the variant's finished run; None when it failed
    error: str | None = None  # why it failed, or (with run_dir) the quality regression
    regressed: bool = False


def cluster_size(cores: int, memory_bytes: int, jobs: int) -> tuple[int, int]:
    """(workers, threads per worker) for a LocalCluster: as many trainings at once as memory
    holds, at least two cores each (one TensorFlow training uses two well), never more workers
    than jobs."""
    by_memory = max(1, memory_bytes // MEMORY_PER_TRAINING)
    workers = max(1, min(jobs, by_memory, cores // 2 or 1))
    return workers, max(1, cores // workers)


def build_job(name: str, config: Config, folder: str, data_dir: str | None, threads: int | None):
    """One variant's build, run inside a Dask worker, with `threads` for TensorFlow (None: the
    worker's cores, shared by the trainings its `train` resource allows at once). Bad input and
    failed stages come back as an Outcome with the error (reported, not retried); a dying worker
    raises in the scheduler and Dask runs the job elsewhere."""
    from pipeline import build

    threads = threads or _worker_share()
    os.environ.update({variable: str(threads) for variable in THREAD_VARIABLES})
    # One class, one summary line per variant would be noise on the workflow run's page.
    os.environ.pop("GITHUB_STEP_SUMMARY", None)
    try:
        result = build.build(
            config=config,
            out_dir=Path(folder),
            data_dir=Path(data_dir) if data_dir else None,
            handout=True,
            stream=io.StringIO(),  # the batch shows one progress line, not every build's stages
        )
    except QualityRegression as regression:  # the whole report is written, and `latest`
        run_dir = (Path(folder) / artifacts.LATEST).resolve()
        return Outcome(name, str(run_dir), str(regression), regressed=True)
    except DaeReportError as error:
        return Outcome(name, None, str(error) or type(error).__name__)
    return Outcome(name, str(result.run_dir))


def run(
    jobs: dict[str, tuple[Config, Path]],
    data_dir: Path | None = None,
    scheduler: str | None = None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
    on_progress: Callable[[int], None] = lambda running: None,
) -> list[Outcome]:
    """Build every job {name: (config, folder)} on the cluster at `scheduler` (or
    $DASK_SCHEDULER_ADDRESS), else on a LocalCluster sized to this machine. `on_done` hears
    each outcome as it comes, `on_progress` how many jobs are running, every few seconds."""
    from distributed import Client, LocalCluster, wait

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    cluster = client = None
    try:  # a stop (Ctrl-C, SIGTERM, --timeout) while the cluster starts closes it too
        if address is None:
            workers, threads = cluster_size(os.cpu_count() or 1, _memory_bytes(), len(jobs))
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # the job's own threads are TensorFlow's, set per job
                resources={TRAIN_RESOURCE: 1},
                dashboard_address=None,
                # Its HTTP server on a free local port: another batch may hold the default 8787.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        try:
            client = Client(cluster or address)
        except OSError as error:  # no scheduler there: the user's address, so bad input
            raise BadInput(f"cannot reach the Dask scheduler at {address}: {error}") from None
        if cluster is None:
            _check_workers(client, address)
            threads = None  # each worker's own share, read where the job runs
        futures = {
            client.submit(
                build_job,
                name,
                config,
                str(folder),
                str(data_dir) if data_dir else None,
                threads,
                key=f"variant-{name}",
                resources={TRAIN_RESOURCE: 1},
                retries=RETRIES,
                pure=False,
            ): name
            for name, (config, folder) in jobs.items()
        }
        outcomes, pending = {}, set(futures)
        while pending:
            try:
                finished, pending = wait(pending, POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished = set()
            for future in finished:
                try:
                    outcome = future.result()
                except Exception as error:  # raised RETRIES + 1 times, or its workers died
                    outcome = Outcome(futures[future], None, f"{type(error).__name__}: {error}")
                outcomes[outcome.name] = outcome
                on_done(outcome)
            on_progress(_running(client, {future.key for future in pending}))
        return [outcomes[name] for name in jobs]
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _running(client, keys: set) -> int:
    """How many of `keys` run now. The scheduler hands a worker more jobs than its `train`
    resource runs at once (the worker queues the rest), so each worker counts up to that."""
    workers = client.scheduler_info()["workers"]
    return sum(
        min(
            len(keys.intersection(assigned)),
            workers.get(address, {}).get("resources", {}).get(TRAIN_RESOURCE, 1),
        )
        for address, assigned in client.processing().items()
    )


def _check_workers(client, address: str) -> None:
    """Workers that lack the `train` resource would leave every job waiting forever: bad input.
    A cluster with no worker yet (an adaptive one, a SLURM queue) is waited for."""
    workers = client.scheduler_info()["workers"].values()
    if workers and not any(TRAIN_RESOURCE in worker.get("resources", {}) for worker in workers):
        raise BadInput(
            f"no worker of the Dask cluster at {address} offers the `{TRAIN_RESOURCE}` resource: "
            f"start each worker with `dask worker {address} --resources {TRAIN_RESOURCE}=1`"
        )


def _worker_share() -> int:
    """The cores of the worker running this job, over the trainings it runs at once."""
    from distributed import get_worker

    worker = get_worker()
    return max(1, worker.state.nthreads // int(worker.state.total_resources.get(TRAIN_RESOURCE, 1)))


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return MEMORY_PER_TRAINING


def batch(
    *,
    roster_path: Path,
    variants_path: Path,
    out_dir: Path,
    data_dir: Path | None = None,
    secret_file: Path | None = None,
    scheduler: str | None = None,
    stream=None,
) -> Path:
    """`dae-report batch`: every student's variant built (one build per distinct variant), a
    handout per student, class.csv and the index, in out_dir/<assignment>/. Everything is
    checked before any job starts (BadInput, exit 2). Raises RunError (exit 3) when any variant
    failed, QualityRegression (exit 1) when any regressed, after writing everything else."""
    from pipeline import progress, roster, variants
    from pipeline.run import prepare_out_dir

    stream = progress.terminal(stream)
    _require_dask()
    students = roster.read(roster_path)
    assignment = variants.load(variants_path)
    course_secret = variants.secret(secret_file)
    planned = _checked_plan(assignment, students, course_secret, data_dir)
    folder = prepare_out_dir(Path(out_dir).absolute() / assignment.assignment)
    started = datetime.now().astimezone()
    stream.write(
        f"batch {assignment.assignment}: {len(students)} students, {len(planned)} variants "
        f"→ {folder}\n"
    )
    jobs = {v.name: (v.config, folder / VARIANTS_DIR / v.name) for v in planned}
    with ClassProgress(stream, len(jobs)) as shown:
        outcomes = {
            outcome.name: outcome
            for outcome in run(jobs, data_dir, scheduler, shown.done, shown.running)
        }
    handouts = write_handouts(folder, planned, outcomes, assignment.assignment)
    write_class_csv(folder / CLASS_CSV, students, planned, outcomes, handouts)
    record = write_record(folder, assignment, planned, outcomes, handouts, started)
    write_index(folder, record)
    failed = [name for name, outcome in outcomes.items() if outcome.run_dir is None]
    regressed = [name for name, outcome in outcomes.items() if outcome.regressed]
    stream.write(
        f"batch {assignment.assignment}: {len(jobs) - len(failed)} of {len(jobs)} variants "
        f"built, {len(failed)} failed, {len(handouts)} handouts in "
        f"{progress.format_duration(record['seconds'])} → {folder / INDEX_HTML}\n"
    )
    if failed:
        raise RunError(
            f"{len(failed)} of {len(jobs)} variants failed ({', '.join(failed)}); "
            f"errors in {folder / INDEX_HTML}"
        )
    if regressed:
        raise QualityRegression(f"variants {', '.join(regressed)} regressed; see their reports")
    return folder


def _require_dask() -> None:
    try:
        import distributed  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        raise BadInput(
            "dae-report batch runs on Dask, an optional extra: pip install 'dae-report[dask]'"
        ) from None


def _checked_plan(assignment, students, course_secret: bytes, data_dir: Path | None) -> list:
    """The distinct variants, each config checked against the data as a build checks it, so
    that a limit the data cannot meet is bad input now, not a failed job an hour in."""
    from pipeline import build, data, variants

    dataset = data.load(data.locate(data_dir))
    planned = variants.plan(assignment, students, course_secret, dataset.digests)
    for variant in planned:
        try:
            build.check_data(variant.config, dataset)
        except BadInput as error:
            raise type(error)(
                f"variant {variant.name} ({settings_text(variant)}): {error}"
            ) from None
    return planned


def settings_text(variant) -> str:
    return ", ".join(f"{key} = {value}" for key, value in variant.values.items())


class ClassProgress:
    """One line for the whole class: variants built, running, failed and left, with an ETA
    (tqdm's, from the pace of the variants done so far). It updates in place on a terminal; in a
    log (CI, a cluster's job output) each update is a line of its own, written when it changes."""

    def __init__(self, stream, total: int) -> None:
        from tqdm import tqdm

        self.stream, self.total = stream, total
        self.built = self.failed = self.active = 0
        tty = _is_terminal(stream)
        self.bar = tqdm(
            total=total,
            desc=self._counts(),
            file=stream if tty else _Lines(stream),
            bar_format="variants: {desc} · {elapsed} elapsed, ETA {remaining}",
            mininterval=0 if tty else float("inf"),  # a log line only when something changed
            dynamic_ncols=tty,
        )

    def done(self, outcome: Outcome) -> None:
        if outcome.run_dir is None:
            self.failed += 1
            self.bar.write(f"  {outcome.name} failed: {outcome.error}", file=self.stream)
        else:
            self.built += 1
        self.active = max(0, self.active - 1)
        self.bar.update(1)
        self._show()

    def running(self, count: int) -> None:
        if count != self.active:
            self.active = count
            self._show()
        elif _is_terminal(self.stream):
            self.bar.refresh()  # the elapsed time moves on

    def _counts(self) -> str:
        left = self.total - self.built - self.failed - self.active
        return f"{self.built} built, {self.active} running, {self.failed} failed, {left} left"

    def _show(self) -> None:
        self.bar.set_description_str(self._counts(), refresh=False)
        self.bar.refresh()

    def __enter__(self) -> ClassProgress:
        return self

    def __exit__(self, *_exc) -> None:
        self.bar.close()


class _Lines:
    """A log's view of tqdm's line: each refresh on a line of its own, no carriage returns."""

    def __init__(self, stream) -> None:
        self.stream, self.last = stream, None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream) -> bool:
    inner = getattr(stream, "stream", stream)
    return bool(getattr(inner, "isatty", lambda: False)())


# --- What the batch writes ---


def handout_names(students) -> dict[str, str]:
    """Each student's handout file name: the id where it is a safe file name, else the id made
    safe plus a short digest of the id, so that `a/b` never takes `a_b`'s file, nor `S1` and
    `s1` one file on a case-blind file system (macOS, Windows)."""
    safe = {
        s.id: "".join(c if c.isalnum() or c in "._-" else "_" for c in s.id)[:80].lstrip(".")
        for s in students
    }
    clean = [i for i, name in safe.items() if name == i]
    folded = [i.casefold() for i in clean]
    names = {}
    for student_id, name in safe.items():
        if student_id not in clean or folded.count(student_id.casefold()) > 1:
            name = f"{name}-{hashlib.sha256(student_id.encode()).hexdigest()[:8]}"
        names[student_id] = f"{name}.ipynb"
    if len({name.casefold() for name in names.values()}) != len(names):
        raise BadInput("two student ids give the same handout file name; rename one in the roster")
    return names


def write_handouts(folder: Path, planned: list, outcomes: dict, assignment: str) -> dict:
    """handouts/<student>.ipynb: the variant's handout, naming its settings on top and carrying
    the student and the variant in its metadata, so a grader recovers the variant. Returns
    {student id: file name} for the students whose variant built."""
    import nbformat

    names = handout_names([student for variant in planned for student in variant.students])
    (folder / HANDOUTS).mkdir(exist_ok=True)
    written = {}
    for variant in planned:
        run_dir = outcomes[variant.name].run_dir
        if run_dir is None:
            continue
        handout = nbformat.read(Path(run_dir) / artifacts.HANDOUT_NOTEBOOK, as_version=4)
        for student in variant.students:
            notebook = nbformat.from_dict(handout)
            notebook.metadata["dae_report"] = {
                "assignment": assignment,
                "student": student.id,
                "variant": variant.name,
                "settings": variant.values,
            }
            notebook.cells.insert(
                0,
                nbformat.v4.new_markdown_cell(
                    f"**{student.name}** ({student.id}) · {settings_text(variant)}"
                ),
            )
            artifacts.write_text(folder / HANDOUTS / names[student.id], nbformat.writes(notebook))
            written[student.id] = names[student.id]
    for earlier in (folder / HANDOUTS).glob("*.ipynb"):  # a student no longer on the roster
        if earlier.name not in written.values():
            earlier.unlink()
    return written


def write_class_csv(path: Path, students, planned: list, outcomes: dict, handouts: dict) -> None:
    """class.csv: one row per student (roster order), their variant, its settings, status and
    headline metrics."""
    from pipeline import gate

    keys = list(dict.fromkeys(key for variant in planned for key in variant.values))
    metric_names = [name for name, *_ in gate.HEADLINES]
    rows = []
    for variant in planned:
        outcome = outcomes[variant.name]
        metrics = _headlines(outcome)
        for student in variant.students:
            rows.append(
                [student.id, student.name, student.group, variant.name]
                + [variant.values.get(key, "") for key in keys]
                + [_status(outcome), handouts.get(student.id, "")]
                + [f"{metrics[name]:.6g}" if metrics else "" for name in metric_names]
            )
    order = {student.id: number for number, student in enumerate(students)}
    rows.sort(key=lambda row: order[row[0]])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "name", "group", "variant", *keys, "status", "handout", *metric_names])
    writer.writerows(rows)
    artifacts.write_text(path, buffer.getvalue())


def _status(outcome: Outcome) -> str:
    if outcome.run_dir is None:
        return "failed"
    return "regressed" if outcome.regressed else "built"


def _headlines(outcome: Outcome) -> dict | None:
    from pipeline import gate

    if outcome.run_dir is None:
        return None
    return gate.headlines(artifacts.read_json(Path(outcome.run_dir) / artifacts.METRICS))


def write_record(folder: Path, assignment, planned, outcomes, handouts, started) -> dict:
    """batch.json: the assignment, and each variant's settings, students, outcome and files
    (paths relative to the batch folder)."""
    record = {
        "assignment": assignment.assignment,
        "profile": assignment.profile,
        "vary": {key: list(values) for key, values in assignment.vary.items()},
        "set": assignment.shared,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now().astimezone() - started).total_seconds(), 1),
        "lang": planned[0].config.report.lang,
        "variants": [],
    }
    for variant in planned:
        outcome = outcomes[variant.name]
        run_dir = Path(outcome.run_dir) if outcome.run_dir else _newest_run(folder, variant)
        record["variants"].append(
            {
                "name": variant.name,
                "settings": variant.values,
                "key": variant.key,
                "status": _status(outcome),
                "error": outcome.error,
                "run": str(run_dir.relative_to(folder)) if run_dir else None,
                "headlines": _headlines(outcome),
                "students": [
                    {**asdict(student), "handout": handouts.get(student.id)}
                    for student in variant.students
                ],
            }
        )
    artifacts.write_json(folder / RECORD, record)
    return record


def _newest_run(folder: Path, variant) -> Path | None:
    """A failed variant's newest failed run folder (its failure.html), if the build got that
    far; a run cut off with its worker says `running` forever and is not it."""
    runs = sorted((folder / VARIANTS_DIR / variant.name).glob(f"*/{artifacts.FAILURE_LOG}"))
    return runs[-1].parent if runs else None


def write_index(folder: Path, record: dict) -> None:
    """index.html and index.pdf: every variant with its settings, metrics, students and files,
    and the failed ones with their error."""
    from babel.dates import format_datetime

    from pipeline import report, view

    started = datetime.fromisoformat(record["started"])
    environment = report.environment(record["lang"])
    html = environment.get_template("batch.html.j2").render(
        batch=record,
        view=view.batch(record, folder),
        created=record["started"],
        started=format_datetime(started, "medium", locale=record["lang"]),
    )
    artifacts.write_text(folder / INDEX_HTML, html)
    report.write_pdf(html, folder / INDEX_PDF, folder, [folder / CLASS_CSV], started)
