"""pipeline/history.py: the run history read back from hand-made run folders, each a copy of a
real quick build's metrics.json and config.json with the run.json a build, a failure, a kill
or a hand edit leaves behind."""

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline import gate, history
from pipeline.config import Config
from pipeline.errors import OutputError
from tests.conftest import RUN_SAMPLE_DIR

SAMPLE_METRICS = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text(encoding="utf-8"))
SAMPLE_CONFIG = json.loads((RUN_SAMPLE_DIR / "config.json").read_text(encoding="utf-8"))
READER_FILES = ("report.html", "report.pdf", "answer-key.ipynb")


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped): what a killed build leaves."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def started_of(name: str) -> str:
    """run.json's `started` for a run folder's name, as a build writes it."""
    return datetime.strptime(name[:15], "%Y%m%d-%H%M%S").astimezone().isoformat()


def write_run(
    reports: Path,
    name: str,
    *,
    status: str = "finished",
    profile: str = "quick",
    command: str = "build",
    regressions: tuple = (),
    reused_from: str | None = None,
    settings: dict | None = None,
    scale: float = 1.0,
    **record,
) -> Path:
    """A run folder as a build leaves it: run.json, config.json (the sample's, with `settings`
    as {section: {key: value}}), and for a finished run metrics.json (the sample's, its errors
    scaled by `scale`) and the reader's files. Keyword `record` entries go into run.json."""
    folder = reports / name
    folder.mkdir(parents=True)
    config = json.loads(json.dumps(SAMPLE_CONFIG))
    config["profile"] = profile
    for section, values in (settings or {}).items():
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    values = {
        "run_id": name,
        "command": command,
        "profile": profile,
        "status": status,
        "pid": 1,
        "started": started_of(name),
        "notebook": {"key": "0123456789abcdef", "reused_from": reused_from},
        "regressions": list(regressions),
        **record,
    }
    (folder / "run.json").write_text(json.dumps(values), encoding="utf-8")
    if status == "finished":
        metrics = json.loads(json.dumps(SAMPLE_METRICS))
        metrics["reconstruction"]["mse"]["mean"] *= scale
        (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        for file_name in READER_FILES:
            (folder / file_name).write_text(f"{name} {file_name}", encoding="utf-8")
    return folder


def write_failure(folder: Path, stage: str, message: str) -> None:
    """failure.log and failure.html, as pipeline.run.write_failure leaves them."""
    (folder / "failure.log").write_text(f"stage: {stage}\nerror: {message}\n", encoding="utf-8")
    (folder / "failure.html").write_text(f"<p>{message}</p>", encoding="utf-8")


# The run folders make_reports writes, oldest first, with the status each must read as.
EXPECTED = {
    "20260301-090000-quick": "finished",
    "20260302-090000-quick": "finished",
    "20260303-090000-quick": "regressed",
    "20260303-093000-full": "finished",
    "20260304-090000-compare": "finished",
    "20260305-090000-quick": "failed",
    "20260305-090000-quick-2": "failed",
    "20260306-090000-fast": "failed",
    "20260307-090000-quick": "interrupted",
    "20260308-090000-quick": "corrupt",
    "20260309-090000-quick": "corrupt",
    "20260310-090000-quick": "corrupt",
}
NOT_JSON, EDITED_METRICS, NO_RECORD = (
    "20260308-090000-quick",
    "20260309-090000-quick",
    "20260310-090000-quick",
)
REUSED, FAILED, FAILED_LOG_ONLY = (
    "20260302-090000-quick",
    "20260305-090000-quick",
    "20260305-090000-quick-2",
)


def make_reports(reports: Path) -> Path:
    """A reports folder holding every kind of run folder, and the things that are not runs."""
    write_run(reports, "20260301-090000-quick")
    write_run(
        reports,
        REUSED,
        reused_from="20260301-090000-quick",
        settings={"training": {"epochs": 5}, "report": {"date": "1 March", "title": "Grupo B"}},
    )
    write_run(reports, "20260303-090000-quick", regressions=("mse_mean", "mse_median"), scale=1.2)
    write_run(reports, "20260303-093000-full", profile="full", settings=Config().to_dict())
    compare = write_run(reports, "20260304-090000-compare", command="compare", notebook=None)
    (compare / "metrics.json").write_text(json.dumps({"models": []}), encoding="utf-8")
    error = {"stage": "notebook", "message": "RunError: the loss diverged at epoch 3"}
    failed = write_run(reports, FAILED, status="failed", notebook=None, error=error)
    write_failure(failed, "notebook", error["message"])
    log_only = write_run(reports, FAILED_LOG_ONLY, status="failed", notebook=None)
    write_failure(log_only, "pdf", "OSError: [Errno 28] No space left on device")
    write_run(reports, "20260306-090000-fast", profile="fast", status="failed", notebook=None)
    write_run(reports, "20260307-090000-quick", status="running", pid=dead_pid(), notebook=None)
    write_run(reports, NOT_JSON).joinpath("run.json").write_text('{"status": "fin', "utf-8")
    write_run(reports, EDITED_METRICS).joinpath("metrics.json").write_text("garbage", "utf-8")
    shutil.copytree(RUN_SAMPLE_DIR, reports / NO_RECORD)
    # Not runs: the link to the newest finished one, the cache, a batch, a file, a link
    (reports / "latest").symlink_to("20260303-093000-full", target_is_directory=True)
    (reports / ".cache" / "models").mkdir(parents=True)
    write_run(reports / "dae-2026" / "variants" / "v1", "20260301-100000-quick")
    (reports / "notes.txt").write_text("not a run", encoding="utf-8")
    (reports / "20260311-090000-quick").symlink_to("20260301-090000-quick")
    return reports


@pytest.fixture
def reports(tmp_path) -> Path:
    return make_reports(tmp_path / "reports")


@pytest.fixture
def entries(reports) -> dict[str, history.RunEntry]:
    return {entry.id: entry for entry in history.runs(reports)}


def test_every_run_folder_is_listed_newest_first_with_its_status(reports):
    listed = history.runs(reports)
    assert [entry.id for entry in listed] == list(reversed(EXPECTED))
    assert {entry.id: entry.status for entry in listed} == EXPECTED
    assert all(entry.folder == reports / entry.id for entry in listed)


def test_finished_runs_carry_their_headlines_and_how_their_notebook_ran(entries):
    assert entries["20260301-090000-quick"].headlines == gate.headlines(SAMPLE_METRICS)
    raised = entries["20260303-090000-quick"].headlines
    assert raised["mse_mean"] == pytest.approx(
        1.2 * SAMPLE_METRICS["reconstruction"]["mse"]["mean"]
    )
    assert entries["20260303-090000-quick"].regressions == ("mse_mean", "mse_median")
    assert (entries["20260301-090000-quick"].trained, entries[REUSED].trained) == (True, False)
    assert entries[REUSED].reused_from == "20260301-090000-quick"
    compare = entries["20260304-090000-compare"]
    assert (compare.command, compare.headlines, compare.trained) == ("compare", None, None)
    assert entries["20260303-090000-quick"].started == datetime.fromisoformat(
        started_of("20260303-090000-quick")
    )


def test_changed_lists_the_settings_that_differ_from_the_labs_defaults(entries):
    quick_profile = {
        f"{section}.{key}": value
        for section, values in SAMPLE_CONFIG.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if Config().to_dict()[section].get(key) != value
    }
    assert quick_profile  # the sample is a quick build: fewer images and epochs than the lab
    assert entries["20260301-090000-quick"].changed == quick_profile
    # The cover's text (report.date, report.title) is not a setting that changes a result
    assert entries[REUSED].changed == {**quick_profile, "training.epochs": 5}
    assert entries["20260303-093000-full"].changed == {}


def test_a_key_the_runs_config_lacks_is_no_difference(tmp_path):
    """A run from before a setting existed ran with that setting's default behaviour."""
    reports = tmp_path / "reports"
    folder = write_run(reports, "20260301-090000-full", settings=Config().to_dict())
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    del config["report"]["instructor_copy"], config["training"]["jit_compile"]
    config["training"]["epochs"] = 7
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert history.runs(reports)[0].changed == {"training.epochs": 7}


def test_failed_runs_name_their_stage_and_error(entries, reports):
    assert entries[FAILED].error == {
        "stage": "notebook",
        "message": "RunError: the loss diverged at epoch 3",
    }
    # run.json without its error (its last write failed): failure.log still says
    assert entries[FAILED_LOG_ONLY].error == {
        "stage": "pdf",
        "message": "OSError: [Errno 28] No space left on device",
    }
    assert entries["20260306-090000-fast"].error["stage"] is None
    assert entries[FAILED].files == {"failure": f"{FAILED}/failure.html"}
    assert entries[FAILED].headlines is None


def test_corrupt_runs_say_what_is_wrong_in_one_line(entries):
    problems = {name: entries[name].problem for name in (NOT_JSON, EDITED_METRICS, NO_RECORD)}
    assert problems[NOT_JSON].startswith("run.json is not JSON")
    assert problems[EDITED_METRICS].startswith("metrics.json is not JSON")
    assert problems[NO_RECORD] == "no run.json"
    assert all("\n" not in problem for problem in problems.values())
    assert all(
        entries[name].problem is None for name, status in EXPECTED.items() if status != "corrupt"
    )
    # A corrupt run's report, if it has one, is still linked
    assert entries[EDITED_METRICS].files["report"] == f"{EDITED_METRICS}/report.html"


NOT_A_NUMBER = "metrics.json: reconstruction.psnr_of_mean_mse is not a number"


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    [
        ("run.json", "[]", "run.json is not a JSON object"),
        ("run.json", '{"status": "finished"}', "run.json has no profile"),
        ("run.json", {"status": "done"}, "run.json: status 'done' is not running"),
        ("run.json", {"profile": 5}, "run.json: profile is not text: 5"),
        ("run.json", {"started": "yesterday"}, 'run.json: started is not a date: "yesterday"'),
        ("run.json", {"regressions": "psnr_db"}, "run.json: regressions is not a list"),
        ("run.json", {"regressions": [1]}, "run.json: regressions is not a list of names"),
        ("run.json", {"notebook": {"reused_from": 3}}, "run.json: notebook.reused_from is not"),
        ("run.json", {"status": "running", "pid": -1}, "run.json: pid -1 is not a process id"),
        ("run.json", {"status": "running", "pid": "12"}, "run.json: pid is not an integer"),
        ("run.json", {"status": "running", "pid": True}, "run.json: pid is not an integer"),
        ("run.json", "\xff\xfe", "run.json is not JSON"),
        ("metrics.json", "NaN", "metrics.json is not JSON (it holds NaN"),
        (
            "metrics.json",
            {"training": {"val_loss": []}},
            "metrics.json has no training.val_loss[-1]",
        ),
        ("metrics.json", {"reconstruction": {"psnr_of_mean_mse": "14"}}, NOT_A_NUMBER),
        ("metrics.json", {"reconstruction": {"psnr_of_mean_mse": 10**400}}, NOT_A_NUMBER),
        ("metrics.json", {"reconstruction": {"psnr_of_mean_mse": None}}, NOT_A_NUMBER),
        ("metrics.json", {"reconstruction": None}, "metrics.json has no reconstruction.mse.mean"),
        ("config.json", "{", "config.json is not JSON"),
        ("config.json", None, "no config.json"),
        ("metrics.json", None, "no metrics.json"),
    ],
)
def test_each_kind_of_damage_is_a_corrupt_entry(tmp_path, file_name, content, problem):
    """`content` replaces the file (None removes it); a dict updates the file's JSON instead."""
    reports = tmp_path / "reports"
    path = write_run(reports, "20260301-090000-quick") / file_name
    if content is None:
        path.unlink()
    elif isinstance(content, dict):
        path.write_text(json.dumps(_updated(json.loads(path.read_text("utf-8")), content)), "utf-8")
    else:
        path.write_bytes(content.encode("latin-1"))
    (entry,) = history.runs(reports)
    assert entry.status == "corrupt"
    assert entry.problem.startswith(problem), entry.problem


def test_a_number_too_large_for_a_float_is_no_headline(tmp_path):
    """1e999 is valid JSON, read as infinity: a hand edit, not a measurement."""
    reports = tmp_path / "reports"
    path = write_run(reports, "20260301-090000-quick") / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["reconstruction"]["psnr_of_mean_mse"] = "INFINITE"
    path.write_text(json.dumps(metrics).replace('"INFINITE"', "1e999"), encoding="utf-8")
    (entry,) = history.runs(reports)
    assert entry.problem == f"{NOT_A_NUMBER}: Infinity"


def _updated(values: dict, changes: dict) -> dict:
    """`values` with `changes` written into it, nested dicts merged key by key."""
    for key, change in changes.items():
        if isinstance(change, dict) and isinstance(values.get(key), dict):
            _updated(values[key], change)
        else:
            values[key] = change
    return values


def test_a_failed_runs_damaged_config_is_no_corruption(tmp_path):
    """What failed may be the disk the config was written to: the run is still a failure."""
    reports = tmp_path / "reports"
    folder = write_run(reports, "20260301-090000-quick", status="failed")
    (folder / "config.json").write_text("{", encoding="utf-8")
    (entry,) = history.runs(reports)
    assert (entry.status, entry.changed) == ("failed", None)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_for_run_json_is_corrupt_not_a_hang(tmp_path):
    reports = tmp_path / "reports"
    folder = write_run(reports, "20260301-090000-quick")
    (folder / "run.json").unlink()
    os.mkfifo(folder / "run.json")
    (entry,) = history.runs(reports)
    assert entry.status == "corrupt" and "FIFO" in entry.problem


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_running_run_is_alive_only_while_its_own_process_runs(tmp_path):
    """This test's own process stands for a build: alive if it started before the run did; a
    run.json from before it started names a pid that has since been reused."""
    reports = tmp_path / "reports"
    now = datetime.now().astimezone()
    write_run(reports, f"{now:%Y%m%d-%H%M%S}-quick", status="running", pid=os.getpid())
    earlier = now - timedelta(days=30)
    started = earlier.isoformat(timespec="seconds")
    name = f"{earlier:%Y%m%d-%H%M%S}-quick"
    write_run(reports, name, status="running", pid=os.getpid(), started=started)
    assert [entry.status for entry in history.runs(reports)] == ["running", "interrupted"]


def test_runs_started_in_one_second_are_ordered_by_their_number(tmp_path):
    """create_run_dir names them quick, quick-2, … quick-10: -10 is the newest."""
    names = ["20260301-090000-quick"] + [f"20260301-090000-quick-{n}" for n in range(2, 11)]
    for name in names:
        (tmp_path / name).mkdir()
    assert [entry.id for entry in history.runs(tmp_path)] == list(reversed(names))


def test_deleting_a_run_folder_drops_it(reports):
    before = [entry.id for entry in history.runs(reports)]
    shutil.rmtree(reports / FAILED)
    assert [entry.id for entry in history.runs(reports)] == [i for i in before if i != FAILED]


def test_a_missing_reports_folder_is_bad_input(tmp_path):
    with pytest.raises(OutputError, match="cannot read the reports folder"):
        history.runs(tmp_path / "nowhere")
    assert history.runs(tmp_path) == []
