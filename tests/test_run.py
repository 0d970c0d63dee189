"""pipeline.run: the run folder, run.json, stages on the terminal, `latest`, and how a run ends
(finished, or failed as the exit codes promise), without training anything."""

import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from pipeline import artifacts, run
from pipeline.config import load_config
from pipeline.errors import DataError, OutputError, RunError
from pipeline.run import Run, create_run_dir, error_message, mark_latest

STAGE_LINE = re.compile(r"\[(\d)/(\d)\] (\w+) +(.*?)  \(\d+\.\d s\)")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def started_run(tmp_path: Path, command: str = "build") -> tuple[Run, io.StringIO]:
    shown = io.StringIO()
    return Run(command, load_config("quick"), tmp_path / "reports", shown, stage_count=2), shown


def test_a_finished_run_says_each_stage_and_points_latest_at_itself(tmp_path):
    started, shown = started_run(tmp_path)
    with started.stages.run("data") as stage:
        stage.detail = "checked"
    with started.open("quick", warnings=["a glyph is missing"], show_folder=True) as run_dir:
        with started.stages.run("pdf", "printing"):
            pass
    seconds = started.finish(latest=True, regressions=[])
    lines = shown.getvalue().splitlines()
    assert [STAGE_LINE.fullmatch(line).groups() for line in (lines[0], lines[3])] == [
        ("1", "2", "data", "checked"),
        ("2", "2", "pdf", "done"),
    ]
    assert lines[1:3] == [f"      run folder {run_dir}", "[2/2] pdf      printing"]
    assert lines[-1].startswith("done in ") and lines[-1].endswith(f": {run_dir}") and seconds > 0
    assert re.fullmatch(r"\d{8}-\d{6}-quick", run_dir.name)
    record = read_json(run_dir / artifacts.RUN_RECORD)
    assert list(record) == [
        *("run_id", "command", "profile", "status", "pid", "started", "versions", "git"),
        *("warnings", "finished", "regressions", "stages", "notebook"),
    ]
    assert (record["command"], record["status"], list(record["stages"])) == (
        "build",
        "finished",
        ["data", "pdf"],
    )
    assert (run_dir / artifacts.BUILD_LOG).read_text(encoding="utf-8") == (
        "warning: a glyph is missing\n"
    )
    assert read_json(run_dir / artifacts.CONFIG) == load_config("quick").to_dict()
    assert (run_dir.parent / artifacts.LATEST).resolve() == run_dir.resolve()


def test_a_comparison_finishes_without_becoming_latest(tmp_path):
    started, _ = started_run(tmp_path, "compare")
    with started.open("compare") as run_dir:
        pass
    started.finish()
    assert read_json(run_dir / artifacts.RUN_RECORD)["command"] == "compare"
    assert run_dir.name.endswith("-compare")
    assert not (run_dir.parent / artifacts.LATEST).exists()


@pytest.mark.parametrize(
    "error, raised, message",
    [
        (ValueError("a library's fault"), RunError, "ValueError: a library's fault"),
        (DataError("the kernel refused the data"), RunError, "the kernel refused the data"),
        (RunError("training diverged"), RunError, "training diverged"),
        (KeyboardInterrupt(), KeyboardInterrupt, "interrupted"),
    ],
)
def test_an_error_inside_the_run_leaves_a_failed_run(tmp_path, error, raised, message):
    """failure.log, failure.html and run.json name the stage; a library's error and bad input
    found during the run become a RunError naming the stage (exit 3), ours stay as they are."""
    started, shown = started_run(tmp_path)
    with pytest.raises(raised) as caught, started.open("quick") as run_dir:
        with started.stages.run("notebook"):
            raise error
    if raised is RunError and not isinstance(error, RunError):
        assert str(caught.value).startswith(f"the notebook stage failed: {message}")
    else:
        assert caught.value is error
    failure = (run_dir / artifacts.FAILURE_LOG).read_text(encoding="utf-8")
    assert failure == f"stage: notebook\nerror: {message}\n"
    assert message.replace("'", "&#39;") in (run_dir / artifacts.FAILURE_HTML).read_text("utf-8")
    record = read_json(run_dir / artifacts.RUN_RECORD)
    assert record["status"] == "failed"
    assert record["error"] == {"stage": "notebook", "message": message}
    assert "[1/2] notebook" not in shown.getvalue()  # a failed stage prints no finished line
    assert not (run_dir.parent / artifacts.LATEST).exists()


def test_a_run_json_that_cannot_be_written_leaves_no_run_folder(tmp_path, monkeypatch):
    """A full disk at the run's very first write is bad input (exit 2): no run folder stays."""

    def full_disk(path, value):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(artifacts, "write_json", full_disk)
    started, _ = started_run(tmp_path)
    with pytest.raises(OutputError, match="No space left"), started.open("quick"):
        pass
    assert list((tmp_path / "reports").iterdir()) == []


def test_error_message_is_one_line_for_the_user():
    assert error_message(KeyboardInterrupt()) == "interrupted"
    assert error_message(DataError("bad file")) == "bad file"
    assert error_message(ZeroDivisionError("boom")) == "ZeroDivisionError: boom"


def test_run_folders_never_collide(tmp_path):
    moment = datetime(2026, 1, 2, 3, 4, 5)
    first, second = (
        create_run_dir(tmp_path, moment, "quick"),
        create_run_dir(tmp_path, moment, "quick"),
    )
    assert first.name == "20260102-030405-quick" and second.name == "20260102-030405-quick-2"
    mark_latest(first)
    mark_latest(second)
    assert (tmp_path / "latest").resolve() == second.resolve()


def test_out_that_is_a_file_is_bad_input(tmp_path):
    (tmp_path / "reports").write_text("notes", encoding="utf-8")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        run.prepare_out_dir(tmp_path / "reports")


def test_mark_latest_leaves_no_temporary_link_when_the_rename_fails(tmp_path, monkeypatch):
    first = create_run_dir(tmp_path, datetime(2026, 1, 1), "quick")
    mark_latest(first)
    second = create_run_dir(tmp_path, datetime(2026, 1, 2), "quick")

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(
        OutputError, match="cannot point .*latest at 20260102-000000-quick: Permission denied"
    ):
        mark_latest(second)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "20260101-000000-quick",
        "20260102-000000-quick",
        "latest",
    ]
    assert (tmp_path / "latest").resolve() == first.resolve()
    # A copy in latest's place goes back there if the link cannot replace it.
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "run.json").write_text(
        '{"status": "finished", "run_id": "20260101-000000-quick"}', encoding="utf-8"
    )
    with pytest.raises(OutputError):
        mark_latest(second)
    assert (tmp_path / "latest" / "run.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "20260101-000000-quick",
        "20260102-000000-quick",
        "latest",
    ]
    # When it can, the copy of a run that is here already is simply replaced.
    monkeypatch.undo()
    note = mark_latest(second)
    assert (
        note == "latest was a copy of run 20260101-000000-quick, not a link: "
        "removed (20260101-000000-quick/ is here); latest → 20260102-000000-quick"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "20260101-000000-quick",
        "20260102-000000-quick",
        "latest",
    ]
    assert (tmp_path / "latest").resolve() == second.resolve()
