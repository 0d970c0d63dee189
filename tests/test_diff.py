"""`dae-report diff`: two run folders made by hand from the committed sample of a real quick
build, one config key and some metrics changed, compared in each format; bad input refused in
one line naming the path."""

import copy
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import RUN_SAMPLE_DIR

from pipeline import diff, gate
from pipeline.config import MaxRegression
from pipeline.errors import BadInput

SAMPLE_METRICS = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text(encoding="utf-8"))
SAMPLE_CONFIG = json.loads((RUN_SAMPLE_DIR / "config.json").read_text(encoding="utf-8"))
THRESHOLDS = MaxRegression(**SAMPLE_CONFIG["quality"]["max_regression"])
HEADLINE_PATHS = {name: path for name, path, *_ in gate.HEADLINES}


def put(tree: dict, path, value) -> None:
    """Set `tree`'s leaf at `path` (a dotted key or a tuple of keys and indices)."""
    *parents, last = path.split(".") if isinstance(path, str) else path
    for part in parents:
        tree = tree[part]
    tree[last] = value


def make_run(
    root: Path,
    name: str,
    *,
    settings: dict | None = None,
    headlines: dict | None = None,
    record: dict | None = None,
    metrics: bool = True,
) -> Path:
    """reports/<name>/ as a finished build leaves it: the sample's config.json and metrics.json
    with `settings` (dotted keys) and `headlines` (by gate.HEADLINES name) changed, and run.json."""
    folder = root / name
    folder.mkdir(parents=True)
    config = copy.deepcopy(SAMPLE_CONFIG)
    for key, value in (settings or {}).items():
        put(config, key, value)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if metrics:
        values = copy.deepcopy(SAMPLE_METRICS)
        for headline, value in (headlines or {}).items():
            put(values, HEADLINE_PATHS[headline], value)
        (folder / "metrics.json").write_text(json.dumps(values), encoding="utf-8")
    run = {
        "run_id": name,
        "command": "build",
        "profile": "quick",
        "status": "finished",
        "content_digest": f"digest-of-{name}",
        **(record or {}),
    }
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return folder


def sample(headline: str) -> float:
    return gate.headlines(SAMPLE_METRICS)[headline]


# B: MSE up by twice its allowance (a regression), PSNR up (better), one more epoch, more noise.
MSE_REGRESSED = sample("mse_mean") * (1 + 2 * THRESHOLDS.mse_relative)
PSNR_BETTER = sample("psnr_db") + THRESHOLDS.psnr_db / 2
B_SETTINGS = {
    "training.epochs": SAMPLE_CONFIG["training"]["epochs"] + 1,
    "noise.std": SAMPLE_CONFIG["noise"]["std"] + 0.1,
}


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    a = make_run(tmp_path, "20261101-031700-quick")
    b = make_run(
        tmp_path,
        "20261108-031700-quick",
        settings=B_SETTINGS,
        headlines={"mse_mean": MSE_REGRESSED, "psnr_db": PSNR_BETTER},
    )
    return a, b


def rendered(a: Path, b: Path, fmt: str) -> str:
    stream = io.StringIO()
    diff.main(a, b, fmt, stream)
    return stream.getvalue()


# --- text ---


def test_text_shows_each_changed_key_with_both_values(runs):
    text = rendered(*runs, "text")
    for key, after in B_SETTINGS.items():
        section, name = key.split(".")
        before = SAMPLE_CONFIG[section][name]
        (line,) = [line for line in text.splitlines() if line.split()[:1] == [key]]
        assert line.split()[1:] == [json.dumps(before), json.dumps(after)], line


def test_text_columns_are_aligned(runs):
    """Each table's cells start at the same offset on every line: a terminal reads columns."""
    lines = rendered(*runs, "text").splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["metric"])
    block = lines[header : header + 1 + len(gate.HEADLINES)]
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in block}
    assert len(starts) == 1, block


def test_text_names_the_regression_and_the_runs(runs):
    a, b = runs
    text = rendered(a, b, "text")
    assert a.name in text and b.name in text
    assert text.splitlines()[-1] == f"gate: regressed against {a.name}: mse_mean"
    (mse_line,) = [line for line in text.splitlines() if line.strip().startswith("mse_mean")]
    assert mse_line.rstrip().endswith("regressed")


def test_text_escapes_control_characters(tmp_path):
    """A run id is whatever run.json says: an escape sequence in it must not reach the terminal
    as one."""
    a = make_run(tmp_path, "a", record={"run_id": "evil\x1b[2J\nid"})
    b = make_run(tmp_path, "b")
    text = rendered(a, b, "text")
    assert "\x1b" not in text and "evil\\x1b[2J" in text


# --- Markdown ---


def cells(line: str) -> list[str]:
    """A Markdown table row's cells: split on pipes that are not escaped."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def tables(markdown: str) -> list[list[list[str]]]:
    """Every GitHub-flavoured table in `markdown`: its rows of cells, the delimiter row checked
    and dropped; every row as wide as the header."""
    found, block = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append(cells(line))
            continue
        if block:
            header, delimiter, *rows = block
            assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in delimiter), delimiter
            assert all(len(row) == len(header) for row in [delimiter, *rows]), block
            found.append([header, *rows])
            block = []
    return found


def test_markdown_tables_hold_runs_config_and_verdicts(runs):
    a, b = runs
    markdown = rendered(a, b, "md")
    run_table, config_table, metric_table = tables(markdown)
    assert [row[1] for row in run_table[1:]] == [f"`{a.name}`", f"`{b.name}`"]
    assert {row[0].strip("`") for row in config_table[1:]} == set(B_SETTINGS)
    header, *rows = metric_table
    verdicts = {row[0].strip("`"): row[header.index("verdict")] for row in rows}
    assert verdicts["mse_mean"] == "regressed" and verdicts["psnr_db"] == "better"
    assert verdicts["ssim_mean"] == "same"
    assert f"**Gate:** regressed against `{a.name}`: `mse_mean`" in markdown


def test_markdown_keeps_hostile_values_inside_their_cells(tmp_path):
    """report.title is any text: pipes, backticks, HTML and newlines stay one cell's code."""
    title = "a | b `c` <img src=x onerror=alert(1)>\n| d |"
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", settings={"report.title": title})
    markdown = rendered(a, b, "md")
    config_table = tables(markdown)[1]
    assert len(config_table) == 2 and config_table[1][0] == "`report.title`"
    value = config_table[1][2]
    assert value.startswith("``") and value.endswith("``")  # the fence outlasts the value's `
    assert "<img" not in markdown.replace(value, "")


def test_markdown_cuts_long_values(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", settings={"report.course": "x" * 5000})
    value = tables(rendered(a, b, "md"))[1][1][2]
    assert len(value) < 2 * diff.CELL_MAX_CHARS and "…" in value


# --- JSON ---


def test_json_round_trips_with_deltas_verdicts_and_config(runs):
    a, b = runs
    text = rendered(a, b, "json")
    result = json.loads(text)
    assert text == json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert result["a"]["run_id"] == a.name and result["b"]["run_id"] == b.name
    assert result["metrics"]["baseline"] == a.name
    assert result["metrics"]["regressions"] == ["mse_mean"]
    rows = {row["name"]: row for row in result["metrics"]["rows"]}
    assert list(rows) == [name for name, *_ in gate.HEADLINES]
    assert rows["mse_mean"]["change"] == pytest.approx(MSE_REGRESSED - sample("mse_mean"))
    assert rows["psnr_db"]["change"] == pytest.approx(PSNR_BETTER - sample("psnr_db"))
    assert rows["ssim_mean"]["change"] == 0
    verdicts = {name: row["verdict"] for name, row in rows.items()}
    assert verdicts["mse_mean"] == "regressed" and verdicts["psnr_db"] == "better"
    changed = {item["key"]: (item["a"], item["b"]) for item in result["config"]}
    assert changed == {
        key: (SAMPLE_CONFIG[key.split(".")[0]][key.split(".")[1]], value)
        for key, value in B_SETTINGS.items()
    }
    assert result["same_content"] is False


@pytest.mark.parametrize(
    "digest_a, digest_b, expected",
    [("same", "same", True), ("one", "other", False), (None, "other", None)],
)
def test_json_says_whether_the_content_digests_match(tmp_path, digest_a, digest_b, expected):
    """None: a run without a digest (failed before its gate) can be said neither same nor not."""
    a = make_run(tmp_path, "a", record={"content_digest": digest_a})
    b = make_run(tmp_path, "b", record={"content_digest": digest_b})
    for run in (a, b):  # the gate stage's copy in metrics.json is gone too
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        del metrics["content_digest"]
        (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert json.loads(rendered(a, b, "json"))["same_content"] is expected


def test_thresholds_are_b_s_own(tmp_path):
    """B's build judged itself with its own quality.max_regression: a 10 % MSE rise passes
    when B allowed 50 %, whatever A allowed."""
    a = make_run(tmp_path, "a", settings={"quality.max_regression.mse_relative": 0.01})
    b = make_run(
        tmp_path,
        "b",
        settings={"quality.max_regression.mse_relative": 0.5},
        headlines={"mse_mean": sample("mse_mean") * 1.1},
    )
    result = json.loads(rendered(a, b, "json"))
    assert result["thresholds"]["mse_relative"] == 0.5
    assert result["metrics"]["regressions"] == []
    assert result["metrics"]["rows"][0]["verdict"] == "worse_within_threshold"


def test_a_run_from_before_the_metric_rename_still_compares(tmp_path):
    a = make_run(tmp_path, "a")
    metrics_path = a / "metrics.json"
    old = json.loads(metrics_path.read_text(encoding="utf-8"))
    old["evaluation"] = old.pop("reconstruction")  # gate.RENAMED_KEYS
    metrics_path.write_text(json.dumps(old), encoding="utf-8")
    b = make_run(tmp_path, "b")
    result = json.loads(rendered(a, b, "json"))
    assert all(row["verdict"] == "same" for row in result["metrics"]["rows"])


def test_a_regression_is_reported_not_raised(runs):
    """diff reports: its exit code is 0 whatever the verdict (main returns, never raises)."""
    assert diff.main(*runs, "text", io.StringIO()) is None


# --- bad input ---


def fail_cases(root: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad run folder: (the path, a phrase its one-line error must hold)."""
    not_a_run = root / "holiday-photos"
    not_a_run.mkdir()
    a_file = root / "notes.txt"
    a_file.write_text("hello", encoding="utf-8")
    failed = make_run(
        root,
        "20261101-031700-quick",
        record={"status": "failed", "error": {"stage": "notebook", "message": "boom"}},
        metrics=False,
    )
    broken = make_run(root, "broken")
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    nan = make_run(root, "nan")
    (nan / "metrics.json").write_text('{"reconstruction": NaN}', encoding="utf-8")
    comparison = make_run(root, "comparison", record={"command": "compare"})
    no_config = make_run(root, "no-config")
    (no_config / "config.json").unlink()
    fifo = make_run(root, "fifo", metrics=False)
    os.mkfifo(fifo / "metrics.json")  # reading it would wait for a writer forever
    bad_threshold = make_run(root, "bad-threshold", settings={"quality.max_regression.ssim": -1})
    return {
        "missing": (root / "nowhere", "no such folder"),
        "a file": (a_file, "not a run folder"),
        "not a run": (not_a_run, "no run.json"),
        "failed without metrics": (failed, "failed in the notebook stage"),
        "run.json not JSON": (broken, "not a JSON file"),
        "metrics with NaN": (nan, "not a dae-report metrics.json"),
        "a compare run": (comparison, "not a build"),
        "no config.json": (no_config, "no such file"),
        "metrics.json a FIFO": (fifo, "metrics.json is a FIFO"),
        "a threshold out of range": (bad_threshold, "out of range"),
    }


BAD_CASES = [
    "missing",
    "a file",
    "not a run",
    "failed without metrics",
    "run.json not JSON",
    "metrics with NaN",
    "a compare run",
    "no config.json",
    "metrics.json a FIFO",
]


# Thresholds are B's alone (A's are never read), so only B's can be out of range.
@pytest.mark.parametrize(
    "case, side",
    [(case, side) for case in BAD_CASES for side in "ab"] + [("a threshold out of range", "b")],
)
def test_bad_input_is_one_line_naming_the_path(tmp_path, case, side):
    path, phrase = fail_cases(tmp_path)[case]
    good = make_run(tmp_path, "good")
    a, b = (path, good) if side == "a" else (good, path)
    stream = io.StringIO()
    with pytest.raises(BadInput) as raised:
        diff.main(a, b, "text", stream)
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert "\n" not in message and str(path) in message and phrase in message, message
    assert "--compare-to" not in message  # the gate's wording, rephrased for this command
    assert stream.getvalue() == ""  # nothing half-written


def test_an_unknown_format_is_refused_before_reading(tmp_path):
    with pytest.raises(BadInput, match="unknown format 'yaml'"):
        diff.main(tmp_path / "nowhere", tmp_path / "nor-here", "yaml", io.StringIO())


def test_a_failed_run_with_metrics_still_compares(tmp_path):
    """A run that failed after its gate (say in the PDF stage) has its numbers and, in
    metrics.json, its content digest: say so."""
    a = make_run(tmp_path, "a", record={"content_digest": SAMPLE_METRICS["content_digest"]})
    b = make_run(
        tmp_path,
        "b",
        record={"status": "failed", "error": {"stage": "pdf"}, "content_digest": None},
    )
    result = json.loads(rendered(a, b, "json"))
    assert result["b"]["status"] == "failed in the pdf stage"
    assert result["b"]["content_digest"] == SAMPLE_METRICS["content_digest"]
    assert result["same_content"] is True


def test_latest_link_is_named_by_its_run(tmp_path):
    a = make_run(tmp_path, "20261101-031700-quick")
    b = make_run(tmp_path, "20261108-031700-quick")
    (tmp_path / "latest").symlink_to(b.name, target_is_directory=True)
    result = json.loads(rendered(a, tmp_path / "latest", "json"))
    assert result["b"]["run_id"] == b.name and result["metrics"]["baseline"] == a.name


def test_the_sample_is_a_run_folder_once_it_has_run_json(tmp_path):
    """The committed sample (no run.json) is what these tests build on: copied, it loads."""
    copy_dir = tmp_path / "sample"
    shutil.copytree(RUN_SAMPLE_DIR, copy_dir)
    with pytest.raises(BadInput, match="no run.json"):
        diff.load(copy_dir)
    (copy_dir / "run.json").write_text('{"status": "finished"}', encoding="utf-8")
    assert diff.load(copy_dir)["run_id"] == "sample"
