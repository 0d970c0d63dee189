"""`dae-report diff RUN_A RUN_B`: what changed from one run to another.

The config keys that differ (both values), each headline metric of B against A with the quality
gate's verdict (B's own `quality.max_regression`, as B's build judged itself), and whether the
two reports show the same content (their content digests). Three renderings of one result: text
for a terminal, GitHub-flavoured Markdown for a CI step summary or a pull-request comment, and
JSON for scripts. The Markdown tables are also what `pipeline.summary` writes after a build.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipeline import artifacts, gate
from pipeline.config import Config, MaxRegression, differences
from pipeline.errors import BadInput, ConfigError

FORMATS = ("text", "md", "json")
# run.json and config.json are a few kB, but a failed run's error may be long: the gate's bound
RECORD_MAX_BYTES = gate.METRICS_MAX_BYTES
CELL_MAX_CHARS = 80  # a report title of a thousand characters must not make a table unreadable


# --- Reading a run folder ---


def load(path: str | Path) -> dict:
    """A build's run folder: its run.json, config.json and metrics.json (an earlier version's
    metric names upgraded), the path as given, the run's id, status and content digest.

    A folder that is not a run, a file that cannot be read or is not a JSON object, a run
    without metrics (it failed before its notebook finished) or a `compare` run is a BadInput of
    one line naming `path`."""
    folder = Path(path)
    shown = printable(path)
    if not folder.is_dir():
        reason = "no such folder" if not folder.exists() else "a file, not a run folder"
        raise BadInput(f"{shown}: {reason}")
    if not (folder / artifacts.RUN_RECORD).exists():
        raise BadInput(f"{shown}: not a run folder (no {artifacts.RUN_RECORD})")
    record = read_object(folder / artifacts.RUN_RECORD, RECORD_MAX_BYTES)
    command = record.get("command", "build")  # run.json from before "command": a build's
    if command != "build":
        raise BadInput(f"{shown}: a `{printable(command)}` run, not a build: diff compares builds")
    run_config = read_object(folder / artifacts.CONFIG, RECORD_MAX_BYTES)
    if not (folder / artifacts.METRICS).exists():
        raise BadInput(f"{shown}: no {artifacts.METRICS} to compare ({outcome(record)})")
    metrics = _metrics(folder, shown)
    return {
        "path": str(path),
        "run_id": _text(record.get("run_id")) or folder.resolve().name,
        "profile": _text(record.get("profile")),
        "status": outcome(record),
        # run.json has it once the run finished; metrics.json from the gate stage on
        "content_digest": _text(record.get("content_digest"))
        or _text(metrics.get("content_digest")),
        "record": record,
        "config": run_config,
        "metrics": metrics,
    }


def read_object(path: Path, max_bytes: int) -> dict:
    """A run file that must be a JSON object, read as --compare-to is (a regular file of at most
    `max_bytes`); anything else is a BadInput of one line naming the file."""
    shown = printable(path)
    try:
        content = artifacts.read_regular(path, printable(path.name), BadInput, max_bytes)
        value = json.loads(content.decode("utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{shown}: no such file") from None
    except OSError as error:
        raise BadInput(f"cannot read {shown}: {error.strerror or error}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise BadInput(f"{shown}: not a JSON file") from None
    if not isinstance(value, dict):
        raise BadInput(f"{shown}: not a JSON object")
    return value


def _metrics(folder: Path, shown: str) -> dict:
    """metrics.json checked as the gate checks a baseline (its schema: finite headline numbers),
    with the gate's message reworded to name the run instead of --compare-to."""
    path = folder / artifacts.METRICS
    try:  # a FIFO or a huge file is named as this command's, before the gate words it
        artifacts.open_regular(path, path.name, BadInput, gate.METRICS_MAX_BYTES).close()
    except OSError as error:
        raise BadInput(f"cannot read {printable(path)}: {error.strerror or error}") from None
    try:
        return gate.load_baseline(folder)[0]
    except ConfigError as error:
        message = str(error).removeprefix(f"--compare-to {folder}: ")
        raise BadInput(f"{shown}: {message}") from None


def outcome(record: dict) -> str:
    """A run's state in one word or phrase: finished, regressed, running, or failed with its
    stage."""
    status = _text(record.get("status")) or "unknown"
    if status == "finished" and record.get("regressions"):
        return "regressed"
    if status == "failed":
        error = record.get("error") if isinstance(record.get("error"), dict) else {}
        stage = _text(error.get("stage"))
        return f"failed in the {stage} stage" if stage else "failed"
    return status


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def printable(value) -> str:
    """`value` as text on one line: a newline or an escape sequence in a path or a run's field
    would otherwise break the one-line error, or the terminal."""
    return "".join(
        character if character.isprintable() else repr(character)[1:-1] for character in str(value)
    )


# --- Comparing two runs ---


def compare(a: dict, b: dict) -> dict:
    """B against A (two `load` results): the runs, the config keys that differ, the headline
    metrics with the gate's verdicts and whether the reports' content is the same. Plain data,
    the same for every format."""
    thresholds = thresholds_of(b)
    digests = a["content_digest"], b["content_digest"]
    return {
        "a": _run_summary(a),
        "b": _run_summary(b),
        "config": [
            {"key": key, "a": before, "b": after}
            for key, (before, after) in differences(a["config"], b["config"]).items()
        ],
        "thresholds": dataclasses.asdict(thresholds),
        "metrics": gate.compare(b["metrics"], a["metrics"], thresholds, a["run_id"]),
        # None: a run without a digest (it failed before its gate) cannot be said to match
        "same_content": digests[0] == digests[1] if all(digests) else None,
    }


def thresholds_of(run: dict) -> MaxRegression:
    """The run's own `quality.max_regression` (config.json), checked as a config is; a
    config.json from before the setting existed gets the defaults, as its build did."""
    quality = run["config"].get("quality")
    try:
        checked = Config.from_dict({} if quality is None else {"quality": quality})
    except ConfigError as error:
        raise BadInput(f"{printable(run['path'])}: config.json: {error}") from None
    return checked.quality.max_regression


def _run_summary(run: dict) -> dict:
    fields = ("path", "run_id", "profile", "status", "content_digest")
    return {name: run[name] for name in fields}


# --- Rendering ---


def render(result: dict, fmt: str) -> str:
    """`compare`'s result as "text" (aligned columns), "md" (GitHub-flavoured Markdown) or
    "json" (sorted keys, indent 2)."""
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if fmt == "md":
        return _markdown(result)
    _check_format(fmt)
    return _text_report(result)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {printable(fmt)!r} (choose one of: {', '.join(FORMATS)})")


def main(run_a: str | Path, run_b: str | Path, fmt: str, stream) -> None:
    """`dae-report diff`: the two runs loaded, compared and rendered onto `stream`. The verdict
    is reported, never an exit code: only bad input (BadInput, exit 2) stops it."""
    _check_format(fmt)  # before reading anything: a wrong format is the first thing to say
    stream.write(render(compare(load(run_a), load(run_b)), fmt))
    stream.flush()


def metric_rows(comparison: dict, before: str, now: str) -> tuple[list[str], list[list[str]]]:
    """gate.compare's rows as a table (header, rows of cells): one table for every format and
    for the build's step summary."""
    header = ["metric", before, now, "change", "%", "allowed", "verdict"]
    rows = []
    for row in comparison["rows"]:
        relative = row["relative_change"]
        allowed = row["threshold"] * 100 if row["relative_threshold"] else row["threshold"]
        rows.append(
            [
                row["name"],
                f"{row['before']:.6g}",
                f"{row['now']:.6g}",
                f"{row['change']:+.3g}" if row["change"] else "0",
                _percent(relative),
                f"{allowed:g} %" if row["relative_threshold"] else f"{allowed:g}",
                row["verdict"].replace("_", " "),
            ]
        )
    return header, rows


def _percent(relative: float | None) -> str:
    """A relative change in %; none when the earlier value was 0 (no ratio to give)."""
    if relative is None:
        return ""
    return f"{relative * 100:+.2f} %" if relative else "0 %"


def config_rows(changes: list[dict], before: str, now: str) -> tuple[list[str], list[list[str]]]:
    """`compare`'s config differences as a table; each value as JSON (a string in quotes, a
    missing key `null`), cut to CELL_MAX_CHARS."""
    rows = [[change["key"], _value(change["a"]), _value(change["b"])] for change in changes]
    return ["key", before, now], rows


def _value(value) -> str:
    return _cut(json.dumps(value, ensure_ascii=False))


def _cut(text: str, limit: int = CELL_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gate_line(comparison: dict) -> str:
    """The gate's verdict in words, without Markdown."""
    regressions = comparison["regressions"]
    if regressions:
        return f"regressed against {comparison['baseline']}: {', '.join(regressions)}"
    return f"no regression against {comparison['baseline']}"


def gate_markdown(comparison: dict) -> str:
    """gate_line in Markdown: run and metric names as code."""
    baseline, regressions = code(comparison["baseline"]), comparison["regressions"]
    if regressions:
        return f"regressed against {baseline}: {', '.join(code(name) for name in regressions)}"
    return f"no regression against {baseline}"


def keys_differ(count: int) -> str:
    return f"{count} key differs" if count == 1 else f"{count} keys differ"


def _content_line(same: bool | None) -> str:
    if same is None:
        return "unknown (a run has no content digest)"
    return "identical (same content digest)" if same else "differs (content digests differ)"


# --- Text: aligned columns for a terminal ---


def _text_report(result: dict) -> str:
    runs = [
        [label, result[key]["run_id"], result[key]["profile"] or "", result[key]["status"]]
        for label, key in (("A", "a"), ("B", "b"))
    ]
    lines = _text_table(["run", "id", "profile", "status"], runs)
    lines += ["", f"content: {_content_line(result['same_content'])}", ""]
    if result["config"]:
        lines.append(f"config: {keys_differ(len(result['config']))}")
        lines += _text_table(*config_rows(result["config"], "A", "B"), indent="  ")
    else:
        lines.append("config: identical")
    lines += ["", "headline metrics: B against A, with B's quality.max_regression"]
    lines += _text_table(*metric_rows(result["metrics"], "A", "B"), indent="  ")
    lines += ["", f"gate: {gate_line(result['metrics'])}"]
    return "\n".join(printable(line) for line in lines) + "\n"


def _text_table(header: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    """Columns padded to their widest cell (control characters escaped first, so that they
    count as what the terminal shows)."""
    table = [[printable(cell) for cell in line] for line in [header, *rows]]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return [
        indent
        + "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


# --- Markdown: GitHub-flavoured tables ---


def _markdown(result: dict) -> str:
    runs = [
        [
            label,
            code(result[key]["run_id"]),
            code(result[key]["profile"] or ""),
            markdown_text(result[key]["status"]),
        ]
        for label, key in (("A", "a"), ("B", "b"))
    ]
    parts = [
        "### dae-report diff",
        markdown_table(["run", "id", "profile", "status"], runs),
        f"**Report content:** {_content_line(result['same_content'])}",
        config_markdown(result["config"], "A", "B"),
        "#### Headline metrics: B against A, with B's `quality.max_regression`",
        metrics_markdown(result["metrics"], "A", "B"),
        f"**Gate:** {gate_markdown(result['metrics'])}",
    ]
    return "\n\n".join(parts) + "\n"


def metrics_markdown(comparison: dict, before: str, now: str) -> str:
    """gate.compare's result (or metrics.json's "comparison") as a Markdown table."""
    header, rows = metric_rows(comparison, before, now)
    return markdown_table(header, [[code(row[0]), *row[1:]] for row in rows], numeric=range(1, 6))


def config_markdown(changes: list[dict], before: str, now: str, limit: int | None = None) -> str:
    """A heading and the config keys that differ as a Markdown table; past `limit` rows, a line
    says how many more there are."""
    if not changes:
        return "#### Config: identical"
    count = len(changes)
    shown = changes if limit is None else changes[:limit]
    header, rows = config_rows(shown, before, now)
    lines = [
        f"#### Config: {keys_differ(count)}",
        "",
        markdown_table(header, [[code(cell) for cell in row] for row in rows]),
    ]
    if len(shown) < count:
        lines += ["", f"… and {count - len(shown)} more (config.json in each run folder)"]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]], numeric=()) -> str:
    """A GitHub-flavoured Markdown table; `numeric` columns right-aligned. Cells are Markdown
    already (see `code`, `markdown_text`); a header is plain text."""
    align = ["---:" if column in numeric else "---" for column in range(len(header))]
    lines = [[markdown_text(cell) for cell in header], align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def code(text: str) -> str:
    """`text` as an inline code span safe in a table cell: on one line, cut to CELL_MAX_CHARS,
    pipes escaped (GitHub splits cells on them even inside code), fenced by more backticks than
    it holds. Inside a code span nothing is markup: no HTML, links, emphasis or @mentions."""
    text = _cut(printable(" ".join(str(text).split())))
    if not text:
        return ""
    fence = "`" * (_longest_backtick_run(text) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    escaped = text.replace("|", "\\|")
    return f"{fence}{padding}{escaped}{padding}{fence}"


def fenced(text: str, info: str = "text") -> str:
    """A fenced code block holding `text` verbatim, fenced by more backticks than it holds."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


MARKDOWN_ACTIVE = "\\`*_[]<>|#!~&"  # what CommonMark or GitHub might read as markup


def markdown_text(text: str) -> str:
    """Plain text for a Markdown paragraph or cell: on one line, each active character escaped."""
    text = printable(" ".join(str(text).split()))
    return "".join("\\" + ch if ch in MARKDOWN_ACTIVE else ch for ch in text)


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for character in text:
        run = run + 1 if character == "`" else 0
        longest = max(longest, run)
    return longest
