"""Charts for the run report, drawn with matplotlib and embedded as SVG data: no file, font or script to fetch.

matplotlib is used without pyplot (``Figure`` objects only), so drawing keeps no global
state and needs no display. Every chart is drawn on one thread of its own: a chart function
returns at once and the report goes on reading the next section's data from Spark (whose
waits release the GIL) while the chart is drawn; matplotlib itself only ever runs on that thread.
"""

from __future__ import annotations

import base64
import functools
import inspect
import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib
from matplotlib.figure import Figure

matplotlib.rcParams.update({
    "svg.hashsalt": "crm-spark",  # the same data draws the same file
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "font.size": 9, "axes.titlesize": 11, "axes.titleweight": "bold",
})
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


_DRAWER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-spark-charts")


@dataclass(frozen=True)
class Chart:
    """One picture of the report: its title, one line on how to read it, and its drawing.

    Attributes:
        title: the chart's title.
        how_to_read: one line on how to read it.
        drawn: the SVG as a data URI, once drawn on the drawing thread.
    """

    title: str
    how_to_read: str
    drawn: Future[str]

    @property
    def image(self) -> str:
        """The SVG as a data URI; waits for the drawing (and raises what drawing raised)."""
        return self.drawn.result()


def drawn_later(draw: Callable[..., Figure]) -> Callable[..., Chart]:
    """Return a chart function that hands ``draw`` (with its arguments) to the drawing thread and
    returns the chart at once; ``draw`` takes ``title`` and ``how_to_read`` and returns the figure."""
    signature = inspect.signature(draw)

    @functools.wraps(draw)
    def chart(*args, **kwargs) -> Chart:
        named = signature.bind(*args, **kwargs).arguments
        return Chart(named["title"], named["how_to_read"], _DRAWER.submit(lambda: svg(draw(*args, **kwargs))))

    chart.__annotations__ = {**draw.__annotations__, "return": "Chart"}  # the chart function returns the chart
    return chart


def new(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.4, 3.8)):
    """Return a figure with one titled, labelled plot area."""
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    return figure, axes


def svg(figure: Figure) -> str:
    """Return a figure rendered as an SVG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return f"data:image/svg+xml;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


@drawn_later
def bars(title: str, labels: Sequence[str], values: Sequence[float], xlabel: str, how_to_read: str,
         highlight: Sequence[bool] | None = None, log: bool = False) -> Figure:
    """Return a horizontal bar chart, largest value on top; ``highlight`` colours chosen bars."""
    figure, axes = new(title, xlabel, "", (6.4, max(2.4, 0.28 * len(labels) + 1.2)))
    order = sorted(range(len(labels)), key=lambda i: values[i])
    colours = [PALETTE[0] if highlight is None or highlight[i] else "#bbbbbb" for i in order]
    axes.barh([str(labels[i]) for i in order], [values[i] for i in order], color=colours)
    if log:
        axes.set_xscale("log")
    return figure


@drawn_later
def lines(title: str, series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
          how_to_read: str, diagonal: bool = False, dashed: Sequence[str] = (), marker: str | None = None,
          vertical: dict[str, float] | None = None) -> Figure:
    """Return a line chart of named series; ``dashed`` series (baselines) are drawn dashed."""
    figure, axes = new(title, xlabel, ylabel)
    for i, (name, (x, y)) in enumerate(series.items()):
        axes.plot(list(x), list(y), label=name, color=PALETTE[i % len(PALETTE)], marker=marker, markersize=3,
                  linestyle="--" if name in dashed else "-")
    if diagonal:
        axes.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="chance")
    names = list(series)
    for name, x in (vertical or {}).items():  # a marker in its series' colour
        axes.axvline(x, color=PALETTE[names.index(name) % len(PALETTE)] if name in names else "#999999",
                     linestyle=":", alpha=0.8)
    axes.legend(fontsize=8)
    return figure


@drawn_later
def grouped(title: str, groups: Sequence[str], series: dict[str, Sequence[float]], xlabel: str, ylabel: str,
            how_to_read: str) -> Figure:
    """Return a grouped (vertical) bar chart: one group per label, one bar per series."""
    figure, axes = new(title, xlabel, ylabel)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        axes.bar([g + i * width for g in range(len(groups))], list(values), width, label=name,
                 color=PALETTE[i % len(PALETTE)])
    axes.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], [str(g) for g in groups],
                    rotation=30 if max((len(str(g)) for g in groups), default=0) > 6 else 0, ha="right")
    axes.legend(fontsize=8)
    return figure


@drawn_later
def heatmap(title: str, rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]],
            xlabel: str, ylabel: str, how_to_read: str, centred: bool = False, annotate: bool = True) -> Figure:
    """Return a heat map with a colour bar; ``centred`` maps -1..1 on a diverging scale."""
    size = max(3.6, 0.32 * len(columns) + 2.4)
    figure, axes = new(title, xlabel, ylabel, (size + 1.2, max(3.0, 0.3 * len(rows) + 1.8)))
    axes.grid(False)
    kwargs = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1} if centred else {"cmap": "Blues"}
    image = axes.imshow([list(r) for r in values], aspect="auto", **kwargs)
    axes.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=60 if len(columns) > 6 else 0,
                    ha="right" if len(columns) > 6 else "center")
    axes.set_yticks(range(len(rows)), [str(r) for r in rows])
    if annotate and len(rows) * len(columns) <= 100:
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                dark = abs(value) > 0.6 if centred else value > 0.6 * image.norm.vmax
                axes.text(j, i, f"{value:.2f}" if centred else f"{value:,.0f}", ha="center", va="center", fontsize=7,
                          color="white" if dark else "black")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


@drawn_later
def histogram(title: str, edges: Sequence[float], counts: dict[str, Sequence[float]], xlabel: str,
              how_to_read: str) -> Figure:
    """Return a histogram from bin edges and counts per series."""
    figure, axes = new(title, xlabel, "count")
    for i, (name, values) in enumerate(counts.items()):
        axes.stairs(list(values), list(edges), label=name, color=PALETTE[i % len(PALETTE)], fill=len(counts) == 1,
                    alpha=0.7)
    if len(counts) > 1:
        axes.legend(fontsize=8)
    return figure
