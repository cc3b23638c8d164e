"""Reports of judge scores and benchmark results.

Results are described as :class:`Table` and :class:`Chart` objects and
rendered two ways: Markdown (terminals, READMEs) and one self-contained HTML
page (inline CSS, charts as inline base64 PNGs drawn by matplotlib's Agg
backend). matplotlib is an optional extra (``pip install aidsafe[report]``):
without it the HTML page has the tables only and says so.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from aidsafe import __version__

_INTERVAL = re.compile(r"\[[^\]]*,[^\]]*\]")  # a "[low, high]" interval: kept on one line


@dataclass
class Table:
    """A titled table of strings, with optional notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Chart:
    """Grouped bars with error bars: ``series`` maps a series name to one
    ``(value, low, high)`` per label (``None`` values are left out).

    ``better`` gives each label's direction, ``"higher"`` or ``"lower"`` (is
    better). A chart never mixes the two on one axis: :func:`split_by_direction`
    draws one chart per direction. Without ``better`` the HTML report takes
    the directions from a table with ``metric`` and ``direction`` columns."""

    title: str
    labels: list[str]
    series: dict[str, list[tuple[float | None, float | None, float | None]]]
    ylabel: str = ""
    ylim: tuple[float, float] | None = None
    better: list[str] | None = None


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    """One table as GitHub-flavoured Markdown, numbers right-aligned."""
    widths = [max(len(_md_cell(c)), *(len(_md_cell(r[i])) for r in table.rows)) if table.rows else len(c)
              for i, c in enumerate(table.columns)]
    numeric = [bool(table.rows) and all(_looks_numeric(r[i]) for r in table.rows) for i in range(len(table.columns))]

    def line(cells):
        return "| " + " | ".join(_md_cell(c).rjust(w) if num else _md_cell(c).ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    out = [f"### {table.title}", "", line(table.columns),
           "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"]
    out += [line(r) for r in table.rows]
    if table.notes:
        out.append("")
        out += [f"- {n}" for n in table.notes]
    return "\n".join(out)


def _looks_numeric(text: str) -> bool:
    head = str(text).split(" ")[0].rstrip("%")
    try:
        float(head)
        return True
    except ValueError:
        return head == "n/a"


def to_markdown(tables: Sequence[Table], title: str | None = None) -> str:
    """All tables as one Markdown document."""
    parts = [f"## {title}"] if title else []
    parts += [markdown_table(t) for t in tables]
    return "\n\n".join(parts) + "\n"


def have_matplotlib() -> bool:
    """Whether the optional ``report`` extra (matplotlib) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# Charts are drawn at the size the page shows them (CHART_WIDTH_PX CSS pixels,
# never scaled down in the page's column) and rendered at CHART_SCALE times
# that for sharp text: a 10 pt label is then ~13 px on screen, however many
# labels or series there are (more labels make the chart taller, not smaller).
CHART_WIDTH_PX = 800
CHART_SCALE = 2
_CSS_DPI = 100
_FONT_PT = 10


def chart_height_px(chart: Chart) -> int:
    """The displayed height of :func:`chart_png`'s image, in CSS pixels."""
    rows = len(chart.labels) * max(len(chart.series), 1)
    legend = 26 * len(chart.series) if len(chart.series) > 1 else 0
    return int(110 + 26 * rows + 12 * len(chart.labels) + legend)


def split_by_direction(chart: Chart) -> list[Chart]:
    """``chart`` as one chart per direction (higher / lower is better), each
    titled with its direction; a chart without ``better`` is returned as is."""
    if not chart.better:
        return [chart]
    out = []
    for direction in ("higher", "lower"):
        keep = [i for i, b in enumerate(chart.better) if b == direction]
        if not keep:
            continue
        out.append(Chart(f"{chart.title}: {direction} is better", [chart.labels[i] for i in keep],
                         {name: [values[i] for i in keep] for name, values in chart.series.items()},
                         chart.ylabel, chart.ylim, [direction] * len(keep)))
    return out


def _has_value(point) -> bool:
    value = point[0]
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def drop_empty(chart: Chart) -> Chart | None:
    """``chart`` without the labels no series has a value for (n/a), or None
    when nothing is left to draw: a chart is never an empty set of axes."""
    keep = [i for i in range(len(chart.labels)) if any(_has_value(v[i]) for v in chart.series.values() if i < len(v))]
    if not keep:
        return None
    if len(keep) == len(chart.labels):
        return chart
    return Chart(chart.title, [chart.labels[i] for i in keep],
                 {name: [values[i] for i in keep] for name, values in chart.series.items()},
                 chart.ylabel, chart.ylim, [chart.better[i] for i in keep] if chart.better else None)


def chart_png(chart: Chart) -> bytes:
    """Draw a chart with matplotlib's Agg backend (no display needed):
    horizontal bars, so labels are never rotated or squeezed, at
    :data:`CHART_WIDTH_PX` wide and :data:`CHART_SCALE` times the resolution."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    names = list(chart.series)
    n_labels, n_series = len(chart.labels), max(len(names), 1)
    fig = Figure(figsize=(CHART_WIDTH_PX / _CSS_DPI, chart_height_px(chart) / _CSS_DPI), dpi=_CSS_DPI)
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / n_series
    for s, name in enumerate(names):
        ys, xs, err_lo, err_hi = [], [], [], []
        for i, (value, low, high) in enumerate(chart.series[name]):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            # The first series on top, as in the legend and the tables.
            ys.append(i + (s - (n_series - 1) / 2) * height)
            xs.append(value)
            err_lo.append(max(value - (low if low is not None else value), 0))
            err_hi.append(max((high if high is not None else value) - value, 0))
        ax.barh(ys, xs, height=height * 0.9, label=name, xerr=[err_lo, err_hi], capsize=3)
    ax.set_yticks(range(n_labels))
    ax.set_yticklabels(chart.labels, fontsize=_FONT_PT)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=_FONT_PT)
    ax.set_xlabel(chart.ylabel, fontsize=_FONT_PT)
    ax.set_title(chart.title, fontsize=_FONT_PT + 1, loc="left")
    if chart.ylim:
        ax.set_xlim(*chart.ylim)
    if len(names) > 1:
        ax.legend(fontsize=_FONT_PT, loc="upper center", bbox_to_anchor=(0.5, -0.12 if chart.ylabel else -0.07),
                  ncol=1, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_CSS_DPI * CHART_SCALE)
    return buffer.getvalue()


def _directions_from_tables(tables: Sequence[Table]) -> dict[str, str]:
    """metric name -> "higher"/"lower" from tables with ``metric`` and
    ``direction`` ("higher is better") columns (the benchmark table)."""
    out: dict[str, str] = {}
    for table in tables:
        if "metric" in table.columns and "direction" in table.columns:
            m, d = table.columns.index("metric"), table.columns.index("direction")
            for row in table.rows:
                word = str(row[d]).split(" ")[0]
                if word in ("higher", "lower"):
                    out[str(row[m])] = word
    return out


def _with_directions(chart: Chart, directions: dict[str, str]) -> Chart:
    if chart.better or not directions:
        return chart
    better = [directions.get(label, directions.get(label.split(": ", 1)[-1])) for label in chart.labels]
    if any(b is None for b in better):
        return chart
    return Chart(chart.title, chart.labels, chart.series, chart.ylabel, chart.ylim, better)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.ci{white-space:nowrap;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.85em}
.meta{color:#666;font-size:.85em}
img{max-width:100%;height:auto;border:1px solid #eee}
.table-wrap{overflow-x:auto}
"""


def to_html(title: str, tables: Sequence[Table], charts: Sequence[Chart] = (), meta: dict | None = None) -> str:
    """One self-contained HTML page: tables, then charts as inline PNGs (or
    a line saying why there are none)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    stamp = {"generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "engine": f"aidsafe {__version__}"}
    stamp.update(meta or {})
    parts.append("<p class='meta'>" + "<br>".join(f"{html.escape(str(k))}: {html.escape(str(v))}"
                                                   for k, v in stamp.items()) + "</p>")
    for table in tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2><div class='table-wrap'><table><tr>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr>")
        for row in table.rows:
            cells = [f"<td class='num'>{html.escape(str(c))}</td>" if _looks_numeric(c)
                     else f"<td class='ci'>{html.escape(str(c))}</td>" if _INTERVAL.search(str(c))
                     else f"<td>{html.escape(str(c))}</td>" for c in row]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table></div>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in table.notes]
    if charts:
        parts.append("<h2>Charts</h2>")
        if have_matplotlib():
            directions = _directions_from_tables(tables)
            for drawn in [c for whole in charts for c in split_by_direction(_with_directions(whole, directions))]:
                chart = drop_empty(drawn)
                if chart is None:
                    parts.append(f"<p class='note'>No chart for {html.escape(drawn.title)}: every value is n/a "
                                 "(see the table).</p>")
                    continue
                data = base64.b64encode(chart_png(chart)).decode("ascii")
                # Shown at the size it was drawn for (width/height), so labels keep their size.
                parts.append(f"<figure><img alt='{html.escape(chart.title)}' width='{CHART_WIDTH_PX}' "
                             f"height='{chart_height_px(chart)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption class='note'>{html.escape(chart.title)}</figcaption></figure>")
        else:
            parts.append("<p class='note'>Charts are not included: matplotlib is not installed. "
                         "Install the report extra (<code>pip install 'aidsafe[report]'</code>) to get them; "
                         "the tables above hold the same numbers.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, title: str, tables: Sequence[Table], charts: Sequence[Chart] = (),
               meta: dict | None = None) -> Path:
    """Write :func:`to_html` to ``path`` (atomically)."""
    from aidsafe._util.atomic import atomic_write

    path = Path(path)
    text = to_html(title, tables, charts, meta)
    with atomic_write(path) as handle:
        handle.write(text)
    return path


__all__ = ["CHART_WIDTH_PX", "Chart", "Table", "chart_height_px", "chart_png", "drop_empty", "have_matplotlib", "markdown_table",
           "split_by_direction", "to_html", "to_markdown", "write_html"]
