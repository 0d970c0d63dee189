"""Every figure of the report. Figures take finished arrays and draw; they never compute metrics.

Each function draws one matplotlib Figure (no pyplot state, Agg canvas), saves it as
`<name>.png` and `<name>.svg` in `folder`, closes it, and returns the PNG's path. Text on the
figures comes in as arguments: pipeline.analysis, in the run's language, holds the words.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

PNG_DPI = 150  # sharp in the notebook and on screen; the report embeds the SVG
# Figures are drawn at the size they are printed (A4 less margins is 6.85 in wide), so their
# 10 pt text matches the report's.
PAGE_WIDTH = 6.6
IMAGE_STYLE = {"cmap": "gray", "vmin": 0.0, "interpolation": "nearest"}
# image_grid's spacing, in points at print size: white between images, room for a title.
GRID_GAP_POINTS = 6
GRID_TITLE_POINTS = 13


def _thousands(value: float, _position=None) -> str:
    """Counts with a thin space between thousands (1 500 000): read the same in any language."""
    return f"{value:,.0f}".replace(",", "\u2009") if float(value).is_integer() else f"{value:g}"


THOUSANDS = FuncFormatter(_thousands)


def save(figure: Figure, folder: Path, name: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # No dates and a fixed id salt: unchanged figures stay byte-equal from run to run.
    with matplotlib.rc_context({"svg.hashsalt": "dae-report"}):
        figure.savefig(folder / f"{name}.svg", metadata={"Date": None})
    figure.savefig(folder / f"{name}.png", dpi=PNG_DPI, metadata={"Software": None})
    figure.clear()
    return folder / f"{name}.png"


def image_grid(
    rows: Sequence[np.ndarray],
    titles: Sequence[str],
    folder: Path,
    name: str,
    columns: int | None = None,
) -> Path:
    """Images in a grid. `rows` holds one array of images (K, 28, 28[, 1]) per row, or a single
    array wrapped into rows of `columns`. `titles` has one label per row (written at the row's
    left) or one title per image.

    The images are laid into one mosaic drawn by a single Axes, white between them: one
    imshow instead of one Axes per image, which cost a second per figure (8 rows of 6 images
    made 48 Axes) for the same picture."""
    images = [np.asarray(row) for row in rows]
    if columns is not None:  # one array, wrapped into rows
        flat = np.concatenate(images)
        images = [flat[i : i + columns] for i in range(0, len(flat), columns)]
    n_rows, n_cols = len(images), max(len(row) for row in images)
    per_row = len(titles) == n_rows and columns is None
    label_width = 1.0 if per_row else 0.0  # inches for the row labels
    cell = min(1.3, (PAGE_WIDTH - label_width) / n_cols)  # inches per image
    size = images[0].shape[1]  # pixels per image side
    points = cell * 72 / size  # points per image pixel
    gap = max(1, round(GRID_GAP_POINTS / points))
    title = 0 if per_row else int(np.ceil(GRID_TITLE_POINTS / points))
    step_x, step_y = size + gap, title + size + gap
    mosaic = np.full((n_rows * step_y - gap, n_cols * step_x - gap), np.nan)
    for r, row in enumerate(images):
        scale = 255.0 if row.dtype == np.uint8 else 1.0
        for c, image in enumerate(row):
            top, left = r * step_y + title, c * step_x
            mosaic[top : top + size, left : left + size] = image.reshape(size, size) / scale
    height, width = mosaic.shape
    figure = Figure(
        figsize=(cell * width / size + label_width, cell * height / size + 0.05),
        layout="constrained",
    )
    axis = figure.subplots()
    axis.imshow(mosaic, **IMAGE_STYLE, vmax=1.0)  # NaN (between images) is left blank
    axis.set_axis_off()
    for r, row in enumerate(images):
        top = r * step_y + title
        if per_row:  # horizontal, wrapped: long labels do not outgrow a small row
            label = textwrap.fill(titles[r], 13, break_long_words=False)
            axis.text(-gap, top + size / 2 - 0.5, label, fontsize=8, ha="right", va="center")
            continue
        for c in range(len(row)):
            axis.text(
                c * step_x + size / 2 - 0.5,
                top - 0.5 - gap / 2,
                titles[r * n_cols + c],
                fontsize=8,
                ha="center",
                va="bottom",
            )
    return save(figure, folder, name)


def bar_chart(
    labels: Sequence[str], values: Sequence[float], folder: Path, name: str, text: Mapping[str, str]
) -> Path:
    figure = Figure(figsize=(PAGE_WIDTH * 0.9, 3.0), layout="constrained")
    axis = figure.subplots()
    axis.yaxis.set_major_formatter(THOUSANDS)
    bars = axis.bar(range(len(values)), values, color="#3b6ea8")
    axis.bar_label(bars, labels=[THOUSANDS(v) for v in values], fontsize=7, padding=2)
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(text["y"])
    axis.margins(y=0.12)
    axis.spines[["top", "right"]].set_visible(False)
    return save(figure, folder, name)


def histograms(
    series: Sequence[np.ndarray],
    folder: Path,
    name: str,
    text: Mapping[str, str],
    labels: Sequence[str] | None = None,
    bins: int = 50,
    log: bool = False,
) -> Path:
    """One histogram panel per array, side by side, sharing the y axis (lab §1.3, §3.3, §8.1)."""
    figure = Figure(figsize=(min(PAGE_WIDTH, 3.3 * len(series) + 1.5), 2.9), layout="constrained")
    axes = figure.subplots(1, len(series), sharey=True, squeeze=False)[0]
    for index, (axis, values) in enumerate(zip(axes, series, strict=True)):
        counts, edges = _histogram(values, bins)
        axis.stairs(counts, edges, fill=True, color="#3b6ea8")
        if log:
            axis.set_yscale("log")
        axis.set_xlabel(text["x"])
        if labels is not None:
            axis.set_title(labels[index], fontsize=9)
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel(text["y"])
    axes[0].yaxis.set_major_formatter(THOUSANDS)
    return save(figure, folder, name)


def _histogram(values: np.ndarray, bins: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram over chunks of images: 47 million pixels never become one float64 array."""
    values = np.asarray(values)
    edges = np.histogram_bin_edges(
        np.array([values.min(), values.max()], dtype=np.float64), bins=bins
    )
    counts = np.zeros(bins, dtype=np.int64)
    for start in range(0, len(values), chunk):
        counts += np.histogram(values[start : start + chunk], bins=edges)[0]
    return counts, edges


def loss_curves(
    history: Mapping[str, Sequence[float]], folder: Path, text: Mapping[str, str]
) -> Path:
    """Lab §6.1: training and validation loss per epoch (epochs numbered from 1)."""
    figure = Figure(figsize=(PAGE_WIDTH * 0.85, 3.2), layout="constrained")
    axis = figure.subplots()
    epochs = np.arange(1, len(history["loss"]) + 1)
    axis.plot(epochs, history["loss"], marker="o", markersize=3, label=text["train"])
    axis.plot(epochs, history["val_loss"], marker="o", markersize=3, label=text["val"])
    axis.set_xlabel(text["x"])
    axis.set_ylabel(text["y"])
    _epoch_axis(axis, len(epochs))
    axis.legend()
    axis.grid(True, alpha=0.3)
    return save(figure, folder, "loss_curves")


def _epoch_axis(axis, epochs: int) -> None:
    """Whole epochs on the x axis, half an epoch of margin each side: one epoch (the `fast`
    profile) gets a tick "1", not matplotlib's 0.96 to 1.04 around a single point."""
    axis.set_xlim(0.5, epochs + 0.5)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def signed_maps(
    maps: np.ndarray, titles: Sequence[str], folder: Path, name: str, text: Mapping[str, str]
) -> Path:
    """Signed images (e.g. mean residual per class) on one symmetric diverging scale: blue is
    below zero, red above, white zero."""
    limit = float(np.abs(maps).max()) or 1.0
    columns = min(5, len(maps))
    rows = -(-len(maps) // columns)
    figure = Figure(figsize=(PAGE_WIDTH, 1.45 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= len(maps):
            axis.set_visible(False)
            continue
        shown = axis.imshow(
            maps[index], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
        )
        axis.set_title(titles[index], fontsize=8)
    bar = figure.colorbar(shown, ax=axes, shrink=0.8, pad=0.02)
    bar.set_label(text["scale"], fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return save(figure, folder, name)


def curves(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    folder: Path,
    name: str,
    text: Mapping[str, str],
    marker: float | None = None,
) -> Path:
    """Lines over a shared x axis (e.g. PSNR against noise level); `marker` draws a dashed
    vertical line (e.g. the level the model was trained on)."""
    figure = Figure(figsize=(PAGE_WIDTH * 0.85, 3.2), layout="constrained")
    axis = figure.subplots()
    for label, values in series.items():
        axis.plot(x, values, marker="o", markersize=4, label=label)
    if marker is not None:
        axis.axvline(marker, color="#888", linestyle="--", linewidth=1)
    axis.set_xlabel(text["x"])
    axis.set_ylabel(text["y"])
    axis.legend()
    axis.grid(True, alpha=0.3)
    return save(figure, folder, name)


def loss_curves_many(
    histories: Mapping[str, Mapping[str, Sequence[float]]], folder: Path, text: Mapping[str, str]
) -> Path:
    """Several models' validation MSE per epoch (solid) and training MSE (dashed, same colour)."""
    figure = Figure(figsize=(PAGE_WIDTH * 0.85, 3.4), layout="constrained")
    axis = figure.subplots()
    for index, (label, history) in enumerate(histories.items()):
        colour = f"C{index}"
        epochs = np.arange(1, len(history["val_mse"]) + 1)
        axis.plot(epochs, history["val_mse"], marker="o", markersize=3, color=colour, label=label)
        axis.plot(epochs, history["mse"], linestyle="--", color=colour, alpha=0.6)
    axis.set_xlabel(text["x"])
    axis.set_ylabel(text["y"])
    axis.set_yscale("log")
    _epoch_axis(axis, max(len(history["val_mse"]) for history in histories.values()))
    axis.legend()
    axis.grid(True, alpha=0.3, which="both")
    return save(figure, folder, "models_loss_curves")
