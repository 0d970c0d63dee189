"""reports/index.html: every run in the reports folder on one static page, with trend plots.

Compute → structure → render, as for the report: pipeline.history reads the runs, `view` makes
the rows the page shows (labels, links, settings as text), `trend_svg` draws each profile's
headline metrics over time, and templates/index.html.j2 renders them. The page has no script
and fetches nothing: the plots are inline SVG and every link is relative to the reports
folder, so it opens from disk, from a CI artifact, or from any static file server.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import markupsafe

from pipeline import artifacts, batch, gate, history, report
from pipeline.errors import OutputError
from pipeline.history import RunEntry
from pipeline.progress import terminal

INDEX_HTML = "index.html"
TEMPLATE = "index.html.j2"

# The headline metrics as the page names them, in gate.HEADLINES' order.
METRIC_NAMES = {
    "mse_mean": "MSE mean",
    "mse_median": "MSE median",
    "psnr_db": "PSNR (dB)",
    "ssim_mean": "SSIM mean",
    "final_val_loss": "final val_loss",
}
STATUS_NAMES = {
    "finished": "finished",
    "regressed": "regressed (failed its gate)",
    "failed": "failed",
    "interrupted": "interrupted (killed)",
    "running": "running",
    "corrupt": "corrupt",
}
FILE_NAMES = {"report": "HTML", "pdf": "PDF", "answer_key": "answer key", "failure": "error"}

# The plots' look: the report's blue for runs that passed their gate, red crosses for those
# that failed it; small text (the figure is drawn at the size it is shown).
PASSED_COLOR, REGRESSED_COLOR = "#2f5d8f", "#a3201c"
REGRESSED_MARKER = {"marker": "X", "markersize": 7, "color": REGRESSED_COLOR, "zorder": 3}
FIGURE_SIZE = (7.2, 4.0)  # inches: three panels a row fill the page's 52rem
# Fixed margins (fractions of the figure) that fit the tick labels: a constrained layout
# draws the figure several times over, doubling the index's time at the end of every build.
PANEL_SPACING = {
    "left": 0.08,
    "right": 0.98,
    "bottom": 0.08,
    "top": 0.93,
    "wspace": 0.4,
    "hspace": 0.5,
}
PLOT_STYLE = {
    "svg.fonttype": "none",  # text as <text>, not one path per glyph: a few kB, not 100
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # the report's font; the browser's sans-serif otherwise
    "font.size": 8,
    "svg.hashsalt": "dae-report",  # fixed marker and clip ids: the same runs, the same SVG
}
# No <metadata> block: its date would change every page, and its RDF names URLs.
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def write(out_dir: Path) -> Path:
    """Write `out_dir`/index.html (atomically) for the runs there now; returns its path. A
    missing or unreadable folder, or one that cannot be written, is an OutputError; so is a
    class set's folder, whose index.html is the batch's own (dae-report batch writes it)."""
    out_dir = Path(out_dir)
    if (out_dir / batch.RECORD).exists():
        raise OutputError(
            f"{out_dir} is a class set's folder ({batch.RECORD}): its {INDEX_HTML} is the batch's"
        )
    entries = history.runs(out_dir)
    html = render(entries, latest=_latest(out_dir))
    path = out_dir / INDEX_HTML
    artifacts.write_text(path, html)
    return path


def refresh(out_dir: Path, stream=None) -> None:
    """write(), for the end of a build: whatever goes wrong costs one warning line on
    `stream`, never the build (its report is written; the index is a convenience)."""
    try:
        write(out_dir)
    except Exception as error:  # a broken index must not fail a build that wrote its report
        message = str(error) if str(error) else type(error).__name__
        terminal(stream).write(f"warning: {INDEX_HTML} not updated: {_one_line(message)}\n")


def _one_line(text: str) -> str:
    """`text` with its line breaks as spaces: a warning is one line."""
    return " ".join(text.split())


def _latest(out_dir: Path) -> str | None:
    """The run reports/latest links to, by name; None if it is no link to a run here."""
    link = out_dir / artifacts.LATEST
    if not link.is_symlink():
        return None
    try:
        target = link.readlink()
    except OSError:
        return None
    return target.name if len(target.parts) == 1 else None


def render(entries: Sequence[RunEntry], latest: str | None = None) -> str:
    """The page's HTML for `entries` (newest first)."""
    environment = report.environment("en")
    values = view(entries, latest)
    return environment.get_template(TEMPLATE).render(**values)


def view(entries: Sequence[RunEntry], latest: str | None = None) -> dict:
    """What the page shows: one row per run, the counts by status, and one trend figure per
    profile that has runs with metrics."""
    counts = {status: 0 for status in history.STATUSES}
    for entry in entries:
        counts[entry.status] += 1
    return {
        "rows": [row(entry, latest) for entry in entries],
        "counts": [
            {"status": status, "name": STATUS_NAMES[status], "count": count}
            for status, count in counts.items()
            if count
        ],
        "figures": figures(entries),
        "metric_names": METRIC_NAMES,
        "columns": 6 + len(METRIC_NAMES),  # a failed or corrupt run's detail spans the table
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def row(entry: RunEntry, latest: str | None) -> dict:
    """One run as the table shows it."""
    return {
        "id": entry.id,
        "latest": entry.id == latest,
        "status": entry.status,
        "status_name": STATUS_NAMES[entry.status],
        "profile": entry.profile or "—",
        "command": entry.command or "—",
        "started": f"{entry.started.astimezone():%Y-%m-%d %H:%M}" if entry.started else "—",
        "trained": _trained(entry),
        "headlines": entry.headlines,
        "changed": [f"{key} = {_setting(value)}" for key, value in (entry.changed or {}).items()],
        "regressions": [METRIC_NAMES.get(name, name) for name in entry.regressions],
        "problem": entry.problem,
        "error": entry.error,
        "files": [{"name": FILE_NAMES[role], "href": path} for role, path in entry.files.items()],
    }


def _trained(entry: RunEntry) -> str:
    """How the run's model came about: trained, reused from an earlier run, or unknown."""
    if entry.trained is None:
        return "—"
    return "trained" if entry.trained else f"reused {entry.reused_from}"


def _setting(value) -> str:
    """A setting as the user would write it after --set: text as is, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def figures(entries: Sequence[RunEntry]) -> list[dict]:
    """One trend figure per profile, for the builds that have headline metrics (a failed,
    running or corrupt run has none; a compare's metrics are per model, not headlines)."""
    by_profile: dict[str, list[RunEntry]] = {}
    for entry in entries:
        if entry.headlines is not None and entry.started is not None:
            by_profile.setdefault(entry.profile, []).append(entry)
    result = []
    for number, profile in enumerate(sorted(by_profile), start=1):
        runs = sorted(by_profile[profile], key=lambda entry: entry.started)
        figure_id = f"trend-{number}"
        result.append(
            {
                "id": figure_id,
                "profile": profile,
                "runs": f"{len(runs)} build{'' if len(runs) == 1 else 's'}",
                "regressed": sum(entry.status == "regressed" for entry in runs),
                "svg": markupsafe.Markup(trend_svg(runs, figure_id)),  # drawn here: no user markup
            }
        )
    return result


def trend_svg(runs: Sequence[RunEntry], figure_id: str) -> str:
    """Small multiples of the headline metrics over time (one panel each, a legend in the
    sixth), as inline SVG: every id in it starts with `figure_id`, so that several on one page
    never share one. `runs` are in time order and all have headlines."""
    import matplotlib
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    times = [entry.started.astimezone().replace(tzinfo=None) for entry in runs]  # local time
    regressed = [entry.status == "regressed" for entry in runs]
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=FIGURE_SIZE)
        axes = figure.subplots(2, 3, gridspec_kw=PANEL_SPACING).ravel()
        for axis, (name, _path, better, *_) in zip(axes, gate.HEADLINES, strict=False):
            values = [entry.headlines[name] for entry in runs]
            _panel(axis, times, values, regressed, name)
            axis.set_title(f"{METRIC_NAMES[name]}, {better} is better", fontsize=8)
            locator = AutoDateLocator(minticks=2, maxticks=4)
            axis.xaxis.set_major_locator(locator)
            axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        legend = axes[-1]
        legend.axis("off")
        handles = [Line2D([], [], color=PASSED_COLOR, marker="o", markersize=4)]
        labels = ["passed its gate"]
        if any(regressed):
            handles.append(Line2D([], [], linestyle="none", **REGRESSED_MARKER))
            labels.append("regressed (failed its gate)")
        legend.legend(handles, labels, loc="center left", frameon=False, fontsize=8)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    return _inline(buffer.getvalue(), figure_id)


def _panel(axis, times: list, values: list[float], regressed: list[bool], gid: str) -> None:
    """One metric: every run joined in time order, those that failed their gate as red
    crosses on top (their own SVG group, `<gid>-regressed`)."""
    axis.plot(times, values, color=PASSED_COLOR, marker="o", markersize=3, linewidth=1)
    marked = [
        (time, value) for time, value, bad in zip(times, values, regressed, strict=True) if bad
    ]
    if marked:
        (crosses,) = axis.plot(*zip(*marked, strict=True), linestyle="none", **REGRESSED_MARKER)
        crosses.set_gid(f"{gid}-regressed")
    axis.tick_params(labelsize=7)
    axis.spines[["top", "right"]].set_visible(False)
    axis.margins(x=0.08, y=0.15)
    if min(times) == max(times):  # one run: a day either side, not the years Matplotlib picks
        axis.set_xlim(min(times) - timedelta(days=1), max(times) + timedelta(days=1))


_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)  # the XML declaration and the DOCTYPE
_NAMESPACE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'(\bid="|xlink:href="#|url\(#)')


def _inline(svg: str, figure_id: str) -> str:
    """Matplotlib's SVG file as an element of the page. HTML's parser puts <svg> in the SVG
    namespace by itself, so the declarations (and their w3.org addresses, never fetched but
    still URLs) go; so do the DOCTYPE and XML declaration, which only a file has. Matplotlib
    numbers its ids per figure (figure_1, axes_1, …): each is prefixed with `figure_id`."""
    svg = _PROLOGUE.sub("", svg, count=1)
    svg = _NAMESPACE.sub("", svg)
    return _ID.sub(lambda match: f"{match.group(1)}{figure_id}-", svg).strip()
