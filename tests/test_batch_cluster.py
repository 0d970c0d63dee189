"""A real Dask cluster of separate processes, as a course runs one: a worker machine that dies in
the middle of a variant's build has that variant built on another worker, and the batch still
finishes with every student's variant."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import variants
from tests.conftest import SUBSET_DIR

distributed = pytest.importorskip(
    "distributed", reason="the dask extra (distributed) is not installed: pip install '.[dask]'"
)
import psutil  # noqa: E402  (distributed's own dependency, so present whenever it is)

ROOT = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
ASSIGNMENT = "dae-cluster"
SECRET = "kill-a-worker"  # draws s0..s3 over both noise levels (checked in the test)
STUDENTS = [f"s{n}" for n in range(4)]
TINY_SETTINGS = {
    "data.train_limit": 600,
    "data.test_limit": 200,
    "training.epochs": 1,
    "evaluation.baselines": "false",
    "evaluation.generalisation": "false",
}
STARTUP_SECONDS = 120
BATCH_SECONDS = 600
TRAINING_SECONDS = 3  # into the notebook stage: the kernel is up and the job is well under way


def _environment() -> dict:
    # Workers import `pipeline` from this checkout, as they would from a shared folder, and the
    # batch must reach the cluster we name, not one the caller's shell points at.
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DAE_DATA_DIR", "DASK_SCHEDULER_ADDRESS")
    }
    python_path = [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    environment.update(PYTHONPATH=os.pathsep.join(python_path), TF_CPP_MIN_LOG_LEVEL="3")
    return environment


def _start(command: list, log: Path, **extra: str) -> subprocess.Popen:
    # A session of its own: killpg takes the nanny and the worker it spawned together, as a
    # machine that dies would.
    with log.open("wb") as output:
        return subprocess.Popen(
            [str(part) for part in command],
            cwd=ROOT,
            env={**_environment(), **extra},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen) -> list[int]:
    """SIGKILL the process's group and every descendant; returns the pids that lived outside the
    group. Jupyter starts a kernel in a session of its own, so killpg alone would leave it."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    outside = []
    for child in descendants:
        with suppress(OSError):
            if os.getpgid(child.pid) != process.pid:
                outside.append(child.pid)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with suppress(psutil.NoSuchProcess):
            child.kill()
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    return outside


def _tail(log: Path, characters: int = 3000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-characters:] if log.exists() else ""


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and two `dask worker`s (one training each, two threads), as separate
    process groups; a Client on the scheduler file once both workers have registered."""
    scheduler_file = tmp_path / "scheduler.json"
    processes, logs = [], {}

    def start(name: str, command: list) -> subprocess.Popen:
        logs[name] = tmp_path / f"{name}.log"
        processes.append(_start(command, logs[name]))
        return processes[-1]

    client = None
    try:
        scheduler = start(
            "scheduler",
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--scheduler-file",
                scheduler_file,
                "--no-dashboard",
            ],
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not scheduler_file.exists():
            assert scheduler.poll() is None, _tail(logs["scheduler"])
            assert time.monotonic() < deadline, _tail(logs["scheduler"])
            time.sleep(0.2)
        workers = [
            start(
                name,
                [
                    DASK,
                    "worker",
                    "--scheduler-file",
                    scheduler_file,
                    "--host",
                    "127.0.0.1",
                    "--name",
                    name,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "2",
                    "--resources",
                    "train=1",
                    "--no-dashboard",
                    "--local-directory",
                    tmp_path / name,
                ],
            )
            for name in ("worker-a", "worker-b")
        ]
        client = distributed.Client(scheduler_file=str(scheduler_file), timeout=STARTUP_SECONDS)
        client.wait_for_workers(2, timeout=STARTUP_SECONDS)
        yield SimpleNamespace(
            address=client.scheduler.address, client=client, workers=workers, logs=logs
        )
    finally:
        if client is not None:
            client.close()
        for process in reversed(processes):
            _kill(process)


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    roster = folder / "roster.csv"
    roster.write_text(
        "id,name,group\n" + "".join(f"{student},Student {student},A\n" for student in STUDENTS)
    )
    variants_file = folder / "VARIANTS.toml"
    variants_file.write_text(
        f'assignment = "{ASSIGNMENT}"\nprofile = "quick"\n[vary]\n"noise.std" = [0.3, 0.5]\n'
        "[set]\n" + "".join(f'"{key}" = {value}\n' for key, value in TINY_SETTINGS.items())
    )
    return roster, variants_file


def _run_records(folder: Path):
    """(run folder, run.json) of every run the variants have started, `latest` links aside."""
    for path in sorted(folder.glob("variants/*/*/run.json")):
        if path.parent.is_symlink():
            continue
        with suppress(OSError, ValueError):  # written atomically; read mid-rename at worst
            yield path.parent, json.loads(path.read_text(encoding="utf-8"))


def _training(record: dict) -> bool:
    notebook = record.get("stages", {}).get("notebook", {})
    return record.get("status") == "running" and "started" in notebook and "ended" not in notebook


def _kill_a_worker_mid_build(cluster, folder: Path, batch: subprocess.Popen) -> SimpleNamespace:
    """Wait for a variant's kernel to be training, then SIGKILL the worker that runs it (nanny,
    worker and kernel): what the scheduler sees when a worker's machine dies."""
    seen: dict[Path, float] = {}
    deadline = time.monotonic() + BATCH_SECONDS
    while time.monotonic() < deadline and batch.poll() is None:
        for run_dir, record in _run_records(folder):
            if not _training(record):
                continue
            first_seen = seen.setdefault(run_dir, time.monotonic())
            if time.monotonic() - first_seen < TRAINING_SECONDS:
                continue
            pid = record["pid"]  # the build's process: the Dask worker that runs the job
            owner = [worker for worker in cluster.workers if worker.pid == os.getpgid(pid)]
            pids = cluster.client.run(os.getpid)  # scheduler_info() names no pid
            addresses = [address for address, worker_pid in pids.items() if worker_pid == pid]
            assert owner and addresses, f"pid {pid} is none of our workers"
            processing = cluster.client.processing(addresses)[addresses[0]]
            key = f"variant-{run_dir.parent.name}"
            assert key in processing, (key, processing)
            kernels = [child.pid for child in psutil.Process(pid).children(recursive=True)]
            outside = _kill(owner[0])
            return SimpleNamespace(
                run_dir=run_dir,
                pid=pid,
                address=addresses[0],
                key=key,
                processing=list(processing),
                kernels=kernels,
                outside_group=outside,
                notebook_started=record["stages"]["notebook"]["started"],
            )
        time.sleep(0.5)
    pytest.fail("no variant reached its notebook stage while the batch ran")


@pytest.mark.slow
def test_a_worker_killed_mid_build_has_its_variant_built_on_the_other_worker(cluster, tmp_path):
    roster, variants_file = _write_inputs(tmp_path)
    drawn = {
        variants.draw(variants.load(variants_file), student, SECRET.encode())["noise.std"]
        for student in STUDENTS
    }
    assert drawn == {0.3, 0.5}, f"the secret must draw both variants, drew {drawn}"
    out = tmp_path / "out"
    folder = out / ASSIGNMENT
    log = tmp_path / "batch.log"
    batch = _start(
        [
            sys.executable,
            "-m",
            "pipeline",
            "batch",
            roster,
            "--variants",
            variants_file,
            "--scheduler",
            cluster.address,
            "--out",
            out,
            "--data-dir",
            SUBSET_DIR,
        ],
        log,
        DAE_COURSE_SECRET=SECRET,
    )
    try:
        killed = _kill_a_worker_mid_build(cluster, folder, batch)
        returncode = batch.wait(timeout=BATCH_SECONDS)
    finally:
        _kill(batch)
    output = _tail(log)
    assert returncode == 0, output

    # The kill cut a build short: its run never finished, and its variant was built again in a
    # new run, by the worker that survived.
    killed_record = json.loads((killed.run_dir / "run.json").read_text(encoding="utf-8"))
    assert killed_record["status"] == "running", killed_record["status"]
    assert "ended" not in killed_record["stages"]["notebook"]
    rebuilt = (killed.run_dir.parent / "latest").resolve()
    assert rebuilt != killed.run_dir
    rebuilt_record = json.loads((rebuilt / "run.json").read_text(encoding="utf-8"))
    assert rebuilt_record["status"] == "finished"
    assert rebuilt_record["pid"] != killed.pid
    survivors = cluster.client.scheduler_info()["workers"]
    assert killed.address not in survivors and len(survivors) == 1, list(survivors)

    variant_folders = sorted((folder / "variants").iterdir())
    assert [path.name for path in variant_folders] == ["v1", "v2"], variant_folders
    for variant_folder in variant_folders:
        assert (variant_folder / "latest" / "report.pdf").stat().st_size > 0, variant_folder
    rows = list(csv.DictReader((folder / "class.csv").open(encoding="utf-8")))
    assert sorted(row["id"] for row in rows) == STUDENTS
    assert {row["status"] for row in rows} == {"built"}, rows
    assert {row["noise.std"] for row in rows} == {"0.3", "0.5"}
    print(
        f"killed {killed.address} (pid {killed.pid}) running {killed.key} "
        f"{killed.processing}, notebook started {killed.notebook_started}; "
        f"kernel pids {killed.kernels}, outside the worker's process group {killed.outside_group}"
    )
