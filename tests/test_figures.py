import numpy as np
import pytest
from matplotlib.figure import Figure

from pipeline import figures

RNG = np.random.default_rng(0)
TEXT = {"x": "x", "y": "y", "train": "train", "val": "val"}


@pytest.mark.parametrize(
    "draw, name",
    [
        (
            lambda d: figures.image_grid(
                [RNG.integers(0, 256, (9, 28, 28), dtype=np.uint8)],
                list("abcdefghi"),
                d,
                "grid",
                columns=3,
            ),
            "grid",
        ),
        (
            lambda d: figures.image_grid(
                [RNG.random((4, 28, 28, 1))] * 2, ["clean", "noisy"], d, "rows"
            ),
            "rows",
        ),
        (lambda d: figures.bar_chart(["a", "b"], [1200, 3400], d, "bars", TEXT), "bars"),
        (
            lambda d: figures.histograms(
                [RNG.random(1000), RNG.random(1000)], d, "hist", TEXT, labels=["a", "b"]
            ),
            "hist",
        ),
        (
            lambda d: figures.loss_curves({"loss": [0.4, 0.3], "val_loss": [0.35, 0.31]}, d, TEXT),
            "loss_curves",
        ),
    ],
)
def test_each_figure_is_saved_as_png_and_svg(tmp_path, draw, name):
    png = draw(tmp_path)
    assert png == tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / f"{name}.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_figures_hold_no_timestamp(tmp_path):
    """Unchanged results must give byte-identical figures (for caching and diffs)."""

    def draw():
        return figures.loss_curves({"loss": [0.4, 0.3], "val_loss": [0.35, 0.31]}, tmp_path, TEXT)

    draw()
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    draw()
    assert first == {p.name: p.read_bytes() for p in tmp_path.iterdir()}


def test_thousands_use_a_thin_space():
    assert figures._thousands(1_500_000) == "1\u2009500\u2009000"
    assert figures._thousands(0.25) == "0.25"


@pytest.mark.parametrize("epochs", [1, 2, 20])
def test_the_epoch_axis_shows_whole_epochs_only(epochs):
    """One epoch (the `fast` profile) once got ticks from 0.96 to 1.04 around its point."""
    axis = Figure().subplots()
    axis.plot(np.arange(1, epochs + 1), np.linspace(0.3, 0.2, epochs), marker="o")
    figures._epoch_axis(axis, epochs)
    low, high = axis.get_xlim()
    shown = [tick for tick in axis.get_xticks() if low <= tick <= high]
    assert shown and all(tick == int(tick) and 1 <= tick <= epochs for tick in shown)
