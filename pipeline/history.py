"""The run history: every run folder in reports/, newest first, read from the folders themselves.

Nothing is stored apart from the runs: the history is rebuilt from each folder's run.json,
metrics.json and config.json every time it is asked for, so deleting a run folder drops it and
a restored or copied folder joins it. A folder that cannot be read as a run becomes a `corrupt`
entry naming its problem in one line; reading the history never fails on one damaged folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import artifacts, gate
from pipeline.config import COVER_KEYS, Config, differences
from pipeline.errors import OutputError
from pipeline.run import RUN_NAME

STATUSES = ("finished", "regressed", "failed", "interrupted", "running", "corrupt")

# Bounds on what a run folder's JSON files can be: a build writes a few kB of run.json and
# config.json and some 30 kB of metrics.json; anything far larger was not written by a build.
RECORD_MAX_BYTES = 4 * 2**20
CONFIG_MAX_BYTES = 1 * 2**20

# The cover's text changes no number a run shows, and report.date and report.logo differ
# from run to run (a date, an absolute path): listed, they would bury the settings that explain
# a change in the metrics. `profile` has its own column.
NOT_LISTED = ("profile", *COVER_KEYS)

# The files a reader opens, by role; each is listed only where it exists.
READER_FILES = {
    "report": artifacts.REPORT_HTML,
    "pdf": artifacts.REPORT_PDF,
    "answer_key": artifacts.ANSWER_KEY,
    "failure": artifacts.FAILURE_HTML,
}


class Damaged(ValueError):
    """What makes a run folder unreadable as a run, in one line: its entry's `problem`."""


@dataclass(frozen=True)
class RunEntry:
    """One run folder as the history sees it. `status` is one of STATUSES; `problem` says
    what is wrong with a corrupt one. `trained` is False when the run reused an earlier run's
    executed notebook (`reused_from`), None when unknown (a compare, or a run that stopped
    first). `files` holds paths relative to the reports folder, for links from its index."""

    id: str
    folder: Path
    status: str
    command: str | None = None
    profile: str | None = None
    problem: str | None = None
    started: datetime | None = None
    trained: bool | None = None
    reused_from: str | None = None
    headlines: dict[str, float] | None = None
    changed: dict[str, Any] | None = None
    regressions: tuple[str, ...] = ()
    error: dict[str, str | None] | None = None
    files: dict[str, str] = field(default_factory=dict)
    content_digest: str | None = None


def runs(out_dir: Path) -> list[RunEntry]:
    """Every run folder directly in `out_dir`, newest first. A folder that is missing or
    cannot be listed is an OutputError (bad input: the user named it)."""
    out_dir = Path(out_dir)
    try:
        children = list(out_dir.iterdir())
    except OSError as error:
        raise OutputError(f"cannot read the reports folder {out_dir}: {error.strerror}") from None
    folders = [child for child in children if is_run_folder(child)]
    return [entry(folder) for folder in sorted(folders, key=age, reverse=True)]


def is_run_folder(path: Path) -> bool:
    """A folder named as create_run_dir names runs. `latest`, `.cache`, a batch's folder and
    links (a link is another name for a run listed under its own) are not runs."""
    return RUN_NAME.fullmatch(path.name) is not None and path.is_dir() and not path.is_symlink()


def age(folder: Path) -> tuple[str, str, int]:
    """Sort key: the folder name's time stamp, then its name (two profiles started in one
    second: no order between them, but a fixed one), then the -n that create_run_dir adds to a
    second run of one name in one second, as a number: -10 is later than -9."""
    suffix = RUN_NAME.fullmatch(folder.name).group(1) or ""
    return folder.name[:15], folder.name.removesuffix(suffix), int(suffix[1:] or 1)


def entry(folder: Path) -> RunEntry:
    """The history's entry for one run folder; whatever is wrong with it makes it corrupt."""
    known = {
        "id": folder.name,
        "folder": folder,
        "started": _started_from_name(folder.name),
        "files": _files(folder),
    }
    try:
        record = _read_object(folder / artifacts.RUN_RECORD, RECORD_MAX_BYTES)
        return _from_record(folder, record, known)
    except Damaged as problem:
        return RunEntry(status="corrupt", problem=str(problem), **known)
    except (KeyError, TypeError, IndexError) as error:  # a shape no check above foresaw
        problem = f"unexpected content ({type(error).__name__}: {error})"
        return RunEntry(status="corrupt", problem=problem, **known)


def _from_record(folder: Path, record: dict, known: dict) -> RunEntry:
    """The entry of a folder whose run.json is a JSON object, its fields checked."""
    status = _field(record, "status", str)
    if status not in ("running", "finished", "failed"):
        raise Damaged(f"run.json: status {status!r} is not running, finished or failed")
    command = _field(record, "command", str, default="build")  # not recorded by early builds
    regressions = _field(record, "regressions", list, default=[])
    if not all(isinstance(name, str) for name in regressions):
        raise Damaged("run.json: regressions is not a list of names")
    started = _started(record) or known["started"]
    values = {
        **known,
        "started": started,
        "command": command,
        "profile": _field(record, "profile", str),
        "regressions": tuple(regressions),
        "content_digest": _field(record, "content_digest", str, default=None),
        **_notebook(record),
    }
    if status == "finished":
        headlines = _headlines(folder, command)
        config = _read_object(folder / artifacts.CONFIG, CONFIG_MAX_BYTES)
        status = "regressed" if regressions else "finished"
        return RunEntry(status=status, headlines=headlines, changed=changed(config), **values)
    changed_keys = _changed_if_readable(folder)
    if status == "failed":
        return RunEntry(
            status="failed", error=_error(folder, record), changed=changed_keys, **values
        )
    alive = _alive(_field(record, "pid", int), started)
    return RunEntry(status="running" if alive else "interrupted", changed=changed_keys, **values)


_MISSING = object()
KINDS = {str: "text", int: "an integer", list: "a list", dict: "an object"}


def _field(record: dict, name: str, kind: type, default=_MISSING):
    """run.json's `name`, which must be a `kind` (or the default, where one is given)."""
    if name not in record or (record[name] is None and default is None):
        if default is _MISSING:
            raise Damaged(f"run.json has no {name}")
        return default
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise Damaged(f"run.json: {name} is not {KINDS[kind]}: {_short(value)}")
    return value


def _short(value: Any) -> str:
    """A value as JSON, cut to 40 characters: a problem stays one short line."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _started(record: dict) -> datetime | None:
    """When the run started, as run.json says (with its offset); None if it does not."""
    started = _field(record, "started", str, default=None)
    if started is None:
        return None
    try:
        moment = datetime.fromisoformat(started)
    except ValueError:
        raise Damaged(f"run.json: started is not a date: {_short(started)}") from None
    return moment if moment.tzinfo else moment.astimezone()


def _started_from_name(name: str) -> datetime | None:
    """The time in a run folder's name (local time, as create_run_dir wrote it)."""
    try:
        return datetime.strptime(name[:15], "%Y%m%d-%H%M%S").astimezone()
    except ValueError:  # 8 + 6 digits that are no date, e.g. 20261399-…
        return None


def _notebook(record: dict) -> dict:
    """`trained` and `reused_from` from run.json's notebook entry: a build that reused an
    earlier run's executed notebook names that run; one that ran it names none. A compare, or
    a build that stopped before its notebook stage, has no entry: unknown."""
    notebook = _field(record, "notebook", dict, default=None)
    if notebook is None or "reused_from" not in notebook:
        return {"trained": None, "reused_from": None}
    reused_from = notebook["reused_from"]
    if reused_from is not None and not isinstance(reused_from, str):
        raise Damaged(f"run.json: notebook.reused_from is not a run: {_short(reused_from)}")
    return {"trained": reused_from is None, "reused_from": reused_from}


def _read_object(path: Path, max_bytes: int) -> dict:
    """A JSON object from `path`, read as a regular file of at most `max_bytes` (a FIFO in a
    run folder must not hang the history); anything else is Damaged."""
    try:
        content = artifacts.read_regular(path, path.name, Damaged, max_bytes)
    except FileNotFoundError:
        raise Damaged(f"no {path.name}") from None
    except OSError as error:
        raise Damaged(f"cannot read {path.name}: {error.strerror or error}") from None
    try:
        value = json.loads(content.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise Damaged(f"{path.name} is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, NaN, 5 000 digits
        raise Damaged(f"{path.name} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise Damaged(f"{path.name} is not a JSON object")
    return value


def _refuse_constant(name: str):
    """NaN and Infinity: Python's json reads them, but a build never writes them (NaN
    becomes null), so a file holding one was edited by hand."""
    raise ValueError(f"it holds {name}, not a number")


def _changed_if_readable(folder: Path) -> dict[str, Any] | None:
    """changed() for a run that did not finish: its config.json may be missing or damaged
    without the run being corrupt (what failed may be the very disk it was written to)."""
    try:
        return changed(_read_object(folder / artifacts.CONFIG, CONFIG_MAX_BYTES))
    except Damaged:
        return None


def _headlines(folder: Path, command: str) -> dict[str, float] | None:
    """A finished build's headline metrics (gate.HEADLINES), each a finite number. A compare's
    metrics.json holds one row per model, no headlines: None (it must still be JSON)."""
    metrics = gate.upgrade(_read_object(folder / artifacts.METRICS, gate.METRICS_MAX_BYTES))
    if command != "build":
        return None
    # Walked here rather than with gate.metrics_schema(): importing jsonschema takes seconds,
    # and the history is read at the end of every build.
    return {name: _headline(metrics, path) for name, path, *_ in gate.HEADLINES}


def _headline(metrics: dict, path: tuple) -> float:
    """The number at `path` in metrics.json, or Damaged naming where it is missing or wrong."""
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)[1:]
    value: Any = metrics
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise Damaged(f"metrics.json has no {where}") from None
    try:
        if isinstance(value, bool) or not math.isfinite(value):  # a str or list: TypeError
            raise TypeError
        return float(value)
    except (TypeError, OverflowError):  # OverflowError: a 400-digit integer, past any float
        raise Damaged(f"metrics.json: {where} is not a number: {_short(value)}") from None


def changed(config: dict) -> dict[str, Any]:
    """The settings of a run's config.json that differ from the lab's defaults, by dotted key,
    with the run's value; NOT_LISTED is left out. A key config.json lacks is one added since the
    run: it ran with that key's default behaviour, so it is no difference."""
    defaults = Config().to_dict()
    return {
        key: after
        for key, (_before, after) in differences(defaults, config).items()
        if key not in NOT_LISTED and _holds(config, key)
    }


def _holds(config: dict, key: str) -> bool:
    """Whether the nested dict `config` has the dotted `key`."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _error(folder: Path, record: dict) -> dict[str, str | None]:
    """A failed run's stage and message: run.json's, else failure.log's (a run whose final
    run.json write failed on a full disk still wrote its failure.log first)."""
    error = record.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        stage = error.get("stage")
        return {"stage": stage if isinstance(stage, str) else None, "message": error["message"]}
    try:
        content = artifacts.read_regular(
            folder / artifacts.FAILURE_LOG, artifacts.FAILURE_LOG, Damaged, CONFIG_MAX_BYTES
        )
        lines = content.decode("utf-8", errors="replace").splitlines()
    except (OSError, Damaged):
        return {"stage": None, "message": "no error recorded (no failure.log)"}
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    stage = fields.get("stage")
    message = fields.get("error", "no error recorded in failure.log")
    return {"stage": None if stage in (None, "None") else stage, "message": message}


def _files(folder: Path) -> dict[str, str]:
    """The reader's files that exist, by role, relative to the reports folder."""
    return {
        role: f"{folder.name}/{name}"
        for role, name in READER_FILES.items()
        if _is_file(folder / name)
    }


def _is_file(path: Path) -> bool:
    """Path.is_file, but False where the folder cannot even be searched (is_file raises
    PermissionError there): such a folder is listed as corrupt, not a crash."""
    try:
        return path.is_file()
    except OSError:
        return False


def _alive(pid: int, started: datetime | None) -> bool:
    """Whether the process that wrote a `running` run.json still runs. Killed (SIGKILL, a
    machine that went down), it left `running` behind. A pid is reused: where /proc tells when
    the process with that pid started, one started after the run is another process (a reports/
    folder restored on another machine, a container's small pids)."""
    if pid <= 0:  # 0 and -1 would address a process group or every process
        raise Damaged(f"run.json: pid {pid} is not a process id")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except OverflowError:
        raise Damaged(f"run.json: pid {pid} is not a process id") from None
    process = _process_start(pid)
    if process is None or started is None:
        return True
    # run.json's time is cut to the second, after the process started: allow for both.
    return process <= started + timedelta(seconds=2)


def _process_start(pid: int) -> datetime | None:
    """When process `pid` started, from Linux's /proc; None where that cannot be told, and for
    a zombie (killed, not yet reaped), as if it started now: it runs no more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
            if line.startswith("btime ")
        )
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
        if fields[0] == "Z":
            return datetime.now().astimezone()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK")).astimezone()
    except (OSError, ValueError, IndexError, StopIteration):
        return None
