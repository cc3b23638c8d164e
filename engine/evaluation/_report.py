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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from aidsafe import __version__


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
    ``(value, low, high)`` per label (``None`` values are left out)."""

    title: str
    labels: list[str]
    series: dict[str, list[tuple[float | None, float | None, float | None]]]
    ylabel: str = ""
    ylim: tuple[float, float] | None = None


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


def chart_png(chart: Chart) -> bytes:
    """Draw a chart with matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    names = list(chart.series)
    n_labels, n_series = len(chart.labels), max(len(names), 1)
    fig = Figure(figsize=(max(5.0, 0.9 * n_labels * n_series + 2), 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / n_series
    for s, name in enumerate(names):
        xs, ys, err_lo, err_hi = [], [], [], []
        for i, (value, low, high) in enumerate(chart.series[name]):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            xs.append(i + (s - (n_series - 1) / 2) * width)
            ys.append(value)
            err_lo.append(max(value - (low if low is not None else value), 0))
            err_hi.append(max((high if high is not None else value) - value, 0))
        ax.bar(xs, ys, width=width * 0.95, label=name, yerr=[err_lo, err_hi], capsize=3)
    ax.set_xticks(range(n_labels))
    ax.set_xticklabels(chart.labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(chart.ylabel)
    ax.set_title(chart.title, fontsize=10)
    if chart.ylim:
        ax.set_ylim(*chart.ylim)
    if len(names) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.85em}
.meta{color:#666;font-size:.85em}
img{max-width:100%;border:1px solid #eee}
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
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in table.columns) + "</tr>")
        for row in table.rows:
            cells = [f"<td class='num'>{html.escape(str(c))}</td>" if _looks_numeric(c)
                     else f"<td>{html.escape(str(c))}</td>" for c in row]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in table.notes]
    if charts:
        parts.append("<h2>Charts</h2>")
        if have_matplotlib():
            for chart in charts:
                data = base64.b64encode(chart_png(chart)).decode("ascii")
                parts.append(f"<figure><img alt='{html.escape(chart.title)}' src='data:image/png;base64,{data}'>"
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


__all__ = ["Chart", "Table", "chart_png", "have_matplotlib", "markdown_table", "to_html", "to_markdown",
           "write_html"]
