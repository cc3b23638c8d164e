"""The static ``--report`` charts: one chart per direction, labels drawn at
the size they are shown, intervals never wrapped inside a cell."""

from __future__ import annotations

import base64
import re

import pytest

from aidsafe.evaluation._report import CHART_WIDTH_PX, Chart, Table, chart_height_px, split_by_direction, to_html


def _bench_like():
    table = Table("Benchmarks", ["set", "metric", "value [95% CI]", "n", "unscored", "direction", "note"], [
        ["XSTest", "safe prompts: full compliance", "80.0% [70.0%, 90.0%]", "50", "0", "higher is better", ""],
        ["XSTest", "safe prompts: over-refusal", "20.0% [10.0%, 30.0%]", "50", "0", "lower is better", ""],
        ["StrongREJECT", "safe-response rate", "90.0% [80.0%, 95.0%]", "50", "0", "higher is better", ""],
        ["StrongREJECT", "StrongREJECT score", "0.100 [0.050, 0.150]", "50", "0", "lower is better", ""],
    ])
    chart = Chart("m: rates and scores (95% CI)", [
        "xstest: safe prompts: full compliance", "xstest: safe prompts: over-refusal",
        "strongreject: safe-response rate", "strongreject: StrongREJECT score"],
        {"m": [(0.8, 0.7, 0.9), (0.2, 0.1, 0.3), (0.9, 0.8, 0.95), (0.1, 0.05, 0.15)]}, ylim=(0, 1))
    return table, chart


def test_a_mixed_chart_is_split_by_direction():
    _, chart = _bench_like()
    chart.better = ["higher", "lower", "higher", "lower"]
    parts = split_by_direction(chart)
    assert [p.title.rsplit(": ", 1)[-1] for p in parts] == ["higher is better", "lower is better"]
    assert parts[1].labels == ["xstest: safe prompts: over-refusal", "strongreject: StrongREJECT score"]
    assert parts[1].series["m"] == [(0.2, 0.1, 0.3), (0.1, 0.05, 0.15)]


def test_more_labels_make_a_taller_chart_not_smaller_text():
    _, chart = _bench_like()
    many = Chart("t", [f"metric {i}" for i in range(12)], {"a": [(1, 0, 2)] * 12, "b": [(1, 0, 2)] * 12})
    assert chart_height_px(many) > chart_height_px(chart)


def test_html_report_splits_the_bench_chart_and_keeps_intervals_on_one_line():
    pytest.importorskip("matplotlib")
    table, chart = _bench_like()
    page = to_html("bench", [table], [chart])
    titles = re.findall(r"<figcaption class='note'>([^<]+)</figcaption>", page)
    assert titles == ["m: rates and scores (95% CI): higher is better", "m: rates and scores (95% CI): lower is better"]
    # displayed at the width it was drawn for, rendered at twice the resolution
    assert page.count(f"width='{CHART_WIDTH_PX}'") == 2
    png = base64.b64decode(re.search(r"base64,([^']+)'", page).group(1))
    width = int.from_bytes(png[16:20], "big")
    assert width == 2 * CHART_WIDTH_PX
    assert "white-space:nowrap" in page and "<td class='ci'>" not in page.split("<table>")[0]
    assert "<td class='num'>80.0% [70.0%, 90.0%]</td>" in page


def test_interval_only_cells_do_not_wrap():
    page = to_html("t", [Table("x", ["metric", "95% CI"], [["relevance", "[2.90, 3.50]"]])])
    assert "<td class='ci'>[2.90, 3.50]</td>" in page


def test_a_chart_of_only_n_a_values_is_a_note_not_empty_axes():
    pytest.importorskip("matplotlib")
    table = Table("Judge scores", ["metric", "mean [95% CI]"], [["relevance", "n/a"], ["coherence", "n/a"]])
    empty = Chart("Judge scores (mean, 95% CI)", ["relevance", "coherence"],
                  {"a": [(None, None, None)] * 2, "b": [(None, None, None)] * 2}, ylabel="score", ylim=(1, 5))
    page = to_html("eval", [table], [empty])
    assert "<img" not in page and "No chart for Judge scores (mean, 95% CI): every value is n/a" in page
    partly = Chart("t", ["relevance", "coherence"], {"a": [(3.0, 2.5, 3.5), (None, None, None)]})
    page = to_html("eval", [table], [partly])
    assert page.count("<img") == 1
    from aidsafe.evaluation._report import drop_empty

    assert drop_empty(partly).labels == ["relevance"]


def test_bench_charts_use_the_tables_units():
    from aidsafe.evaluation._benchmarks import BenchResult
    from aidsafe.evaluation._eval import bootstrap_mean

    result = BenchResult(model="m", suite="s", classifier="c")

    rate = type("M", (), {"name": "safe-response rate", "interval": bootstrap_mean([1.0, 0.0, 1.0, 1.0])})()
    score = type("M", (), {"name": "StrongREJECT score", "interval": bootstrap_mean([0.1, 0.2])})()
    result.sets = [type("S", (), {"name": "strongreject", "metrics": [rate, score]})()]
    rates, scores = result.charts()
    assert rates.ylim == (0, 100) and rates.series["m"][0][0] == pytest.approx(75.0)  # the table says 75.0%
    assert scores.ylim == (0, 1) and scores.series["m"][0][0] == pytest.approx(0.15)
