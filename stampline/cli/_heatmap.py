"""The latency heat map in a terminal: stage pairs down, time buckets across, p99 as colour.

Red spots are where data is stuck. Colours step on a logarithmic scale between the lowest
and the highest p99 in the map (a hop of 50 µs and one of 50 ms both stay readable); the
legend under the map gives each colour's range.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from stampline.audit import format_ns
from stampline.rules import format_duration

# Green (fast) to red (slow), five steps.
PALETTE = ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027")
EMPTY = "·"


def colour_steps(p99: list[list[int | None]]) -> list[int]:
    """The lower edge of each palette step, in ns, spaced logarithmically over the map."""
    values = [v for row in p99 for v in row if v is not None and v > 0]
    if not values:
        return [0] * len(PALETTE)
    lo, hi = math.log(min(values)), math.log(max(values))
    step = (hi - lo) / len(PALETTE)
    return [0] + [int(math.exp(lo + i * step)) for i in range(1, len(PALETTE))]


def _step(value: int, edges: list[int]) -> int:
    return max(i for i, edge in enumerate(edges) if value >= edge)


def render_heatmap(matrix: dict[str, Any], title: str) -> Group:
    """A rich renderable of ``audit.heatmap``'s matrix: one row per stage pair, one cell per
    bucket (a coloured block; '·' when no hop ended in it), the row's peak p99 at the end."""
    p99: list[list[int | None]] = matrix["p99_ns"]
    edges = colour_steps(p99)
    buckets = matrix["buckets"]
    table = Table(title=(title), title_justify="left", box=None, pad_edge=False)
    table.add_column("hop", no_wrap=True)
    table.add_column("", no_wrap=True)  # the cells, one character each
    table.add_column("peak p99", justify="right", no_wrap=True)
    for pair, row in zip(matrix["pairs"], p99, strict=True):
        cells = Text()
        for value in row:
            if value is None:
                cells.append(EMPTY, style="dim")
            elif value < 0:
                cells.append("-", style="bold magenta")  # clocks disagree: not a latency
            else:
                cells.append("█", style=PALETTE[_step(value, edges)])
        peak = max((v for v in row if v is not None), default=None)
        table.add_row(
            Text(f"{pair['from_stage']} → {pair['to_stage']}"),
            cells,
            "—" if peak is None else format_duration(peak),
        )
    legend = Text("p99: ")
    for i, colour in enumerate(PALETTE):
        upper = edges[i + 1] if i + 1 < len(edges) else None
        label = f"≥{format_duration(edges[i])}" if upper is None else f"<{format_duration(upper)}"
        legend.append("█", style=colour)
        legend.append(f" {label}  ")
    legend.append(f"{EMPTY} no hop  - negative")
    span = Text(
        f"{len(buckets)} buckets of {format_duration(matrix['bucket_ns'])} "
        f"from {_utc(matrix['window']['start'])} to {_utc(matrix['window']['end'])}",
        style="dim",
    )
    return Group(table, legend, span)


def _utc(ns: int) -> str:
    return format_ns(ns)[:23] + "Z"
