"""pipeline/index.py: reports/index.html for the hand-made reports folder of test_history,
read back with html.parser as a browser opening it from disk would."""

import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline import history, index, report
from pipeline.errors import OutputError
from tests.test_history import FAILED, make_reports, write_run

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Page(HTMLParser):
    """What a test needs of a page: its links, its inline SVGs (as text), its ids and tags,
    each element's text by id, and any tag left open or closed out of turn."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html, self.links, self.ids, self.tags, self.svgs = html, [], [], set(), []
        self.open: list[str] = []
        self.misnested: list[str] = []
        self.texts: dict[str, list[str]] = {}  # id -> text of the element (and its children)
        self.figures: dict[str, str] = {}  # data-profile -> its <svg>…</svg>
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attributes):
        self.handle_startendtag(tag, attributes)
        if tag not in VOID:
            self.open.append((tag, dict(attributes).get("id")))
        if tag == "svg":
            self.svg_start = self.getpos()
        if tag == "figure":
            self.profile = dict(attributes)["data-profile"]

    def handle_startendtag(self, tag, attributes):
        values = dict(attributes)
        self.tags.add(tag)
        if "id" in values:
            self.ids.append(values["id"])
        for name in ("href", "src", "xlink:href"):
            if name in values and not values[name].startswith("#"):
                self.links.append(values[name])

    def handle_endtag(self, tag):
        if not self.open or self.open[-1][0] != tag:
            self.misnested.append(f"</{tag}> at {self.getpos()}")
            return
        self.open.pop()
        if tag == "svg":
            svg = _between(self.html, self.svg_start, self.getpos())
            self.svgs.append(svg)
            self.figures[self.profile] = svg

    def handle_data(self, data):
        for _tag, element_id in self.open:
            if element_id:
                self.texts.setdefault(element_id, []).append(data)

    def text(self, element_id: str) -> str:
        return " ".join(" ".join(self.texts.get(element_id, [])).split())  # a tag breaks words


def _between(html: str, start: tuple[int, int], end: tuple[int, int]) -> str:
    """The page's text from one parser position (line, column) to another."""
    lines = html.splitlines(keepends=True)
    offset = [0]
    for line in lines:
        offset.append(offset[-1] + len(line))
    return html[offset[start[0] - 1] + start[1] : offset[end[0] - 1] + end[1]]


@pytest.fixture
def reports(tmp_path) -> Path:
    return make_reports(tmp_path / "reports")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[Path, Page]:
    """One reports folder and its index for the tests that only read them: drawing the figures
    is most of an index's time."""
    reports = make_reports(tmp_path_factory.mktemp("index") / "reports")
    path = index.write(reports)
    assert path == reports / "index.html"
    return reports, Page(path.read_text(encoding="utf-8"))


@pytest.fixture
def page(shared) -> Page:
    return shared[1]


@pytest.fixture
def shared_reports(shared) -> Path:
    return shared[0]


def test_the_page_is_well_formed_and_self_contained(page):
    assert page.misnested == [] and page.open == []
    assert "script" not in page.tags and "iframe" not in page.tags
    assert re.search(r"https?:", page.html) is None  # nothing to fetch, not even a namespace
    assert len(page.ids) == len(set(page.ids)), "two elements share an id"


def test_every_link_is_relative_and_resolves(page, shared_reports):
    assert page.links, "the page links the runs' files"
    for link in page.links:
        assert not Path(link).is_absolute() and ":" not in link, link
        assert (shared_reports / link).is_file(), link


def test_every_run_has_a_row_with_its_files(page, shared_reports):
    for entry in history.runs(shared_reports):
        row = page.text(f"run-{entry.id}")
        assert entry.id in row and index.STATUS_NAMES[entry.status] in row
        for path in entry.files.values():
            assert f'href="{path}"' in page.html
    finished = history.runs(shared_reports)[-1]
    mse = report.number(finished.headlines["mse_mean"], 4, locale="en")
    assert mse in page.text(f"run-{finished.id}")
    assert "training.epochs = 5" in page.text("run-20260302-090000-quick")
    assert "reused 20260301-090000-quick" in page.text("run-20260302-090000-quick")
    latest = (shared_reports / "latest").resolve().name
    rows = [element for element in page.ids if element.startswith("run-")]
    assert [row for row in rows if "latest" in page.text(row).split()] == [f"run-{latest}"]


def test_failed_and_corrupt_runs_show_their_error_and_problem(page, shared_reports):
    shown = page.text("runs")
    listed = history.runs(shared_reports)
    failed = [entry for entry in listed if entry.status == "failed"]
    corrupt = [entry for entry in listed if entry.status == "corrupt"]
    assert len(failed) == 3 and len(corrupt) == 3
    for entry in failed:
        assert " ".join(entry.error["message"].split()) in shown
    for entry in corrupt:
        assert " ".join(entry.problem.split()) in shown
    assert f'href="{FAILED}/failure.html"' in page.html


def test_one_inline_svg_per_profile_with_metrics(page, shared_reports):
    plotted = {
        entry.profile
        for entry in history.runs(shared_reports)
        if entry.headlines is not None  # not the failed `fast` runs, not the compare
    }
    assert set(page.figures) == plotted == {"quick", "full"}
    assert len(page.svgs) == len(plotted)
    for svg in page.svgs:
        assert len(svg) < 60_000, "an index is read over a slow link too"
        assert "<text" in svg and "DejaVuSans-" not in svg  # text as text, no glyph outlines


def test_regressed_runs_are_marked_in_their_figure_and_legend(page, shared_reports):
    regressed = [entry for entry in history.runs(shared_reports) if entry.status == "regressed"]
    assert {entry.profile for entry in regressed} == {"quick"}
    quick, full = page.figures["quick"], page.figures["full"]
    for name in index.METRIC_NAMES:
        group = re.search(rf'<g id="[\w-]*-{name}-regressed">(.*?)</g>\s*</g>', quick, re.DOTALL)
        assert group, name
        assert group.group(1).count("<use") == len(regressed), name
    assert "failed its gate" in quick
    assert "-regressed" not in full and "failed its gate" not in full


def test_deleting_a_run_folder_drops_it_from_the_next_index(reports, monkeypatch):
    monkeypatch.setattr(index, "trend_svg", lambda *_: "<svg></svg>")  # not under test here
    assert f"run-{FAILED}" in Page(index.write(reports).read_text("utf-8")).ids
    shutil.rmtree(reports / FAILED)
    page = Page(index.write(reports).read_text("utf-8"))
    assert f"run-{FAILED}" not in page.ids
    assert f'"{FAILED}/' not in page.html  # no link into it either


def test_an_empty_reports_folder_says_so(tmp_path):
    page = Page(index.write(tmp_path).read_text("utf-8"))
    assert page.svgs == [] and "No runs yet" in page.html


def test_text_from_a_run_folder_is_escaped(tmp_path):
    """run.json and config.json are files anyone can edit: their text is shown, not run."""
    hostile = '<script>alert("x")</script>'
    write_run(
        tmp_path, "20260301-090000-quick", profile=hostile, settings={"noise": {"type": hostile}}
    )
    page = Page(index.write(tmp_path).read_text("utf-8"))
    assert "script" not in page.tags
    assert hostile in page.text("run-20260301-090000-quick")
    assert set(page.figures) == {hostile}


def test_write_refuses_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="cannot read the reports folder"):
        index.write(tmp_path / "nowhere")


def test_write_leaves_a_class_sets_own_index_alone(tmp_path):
    """reports/<assignment>/ holds batch.json and the batch's index.html, not run folders."""
    (tmp_path / "batch.json").write_text("{}", encoding="utf-8")
    (tmp_path / "index.html").write_text("the class set", encoding="utf-8")
    with pytest.raises(OutputError, match="class set"):
        index.write(tmp_path)
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == "the class set"


@pytest.mark.parametrize("damage", ["index is a folder", "no reports folder", "a bug"])
def test_refresh_warns_in_one_line_and_never_raises(tmp_path, monkeypatch, damage):
    reports = tmp_path / "reports"
    write_run(reports, FAILED, status="failed")
    if damage == "index is a folder":  # unwritable even for root, unlike a chmod
        (reports / "index.html").mkdir()
    elif damage == "no reports folder":
        reports = tmp_path / "nowhere"
    else:
        monkeypatch.setattr(index, "view", lambda *_: 1 / 0)
    stream = io.StringIO()
    index.refresh(reports, stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: index.html not updated: "), lines


def test_refresh_writes_the_index_silently(tmp_path):
    reports = tmp_path / "reports"
    write_run(reports, "20260301-090000-quick")
    stream = io.StringIO()
    index.refresh(reports, stream)
    assert stream.getvalue() == ""
    assert Page((reports / "index.html").read_text("utf-8")).figures


def test_the_same_runs_give_the_same_figures(tmp_path):
    """Fixed SVG ids: the figures of an unchanged folder are byte-equal from build to build."""
    reports = tmp_path / "reports"
    write_run(reports, "20260301-090000-quick")
    write_run(reports, "20260302-090000-quick", regressions=("psnr_db",), scale=1.1)
    first = Page(index.write(reports).read_text("utf-8")).svgs
    assert Page(index.write(reports).read_text("utf-8")).svgs == first
