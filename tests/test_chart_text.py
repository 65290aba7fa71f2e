"""Names a user chose (classes, checkpoints) are plain text on the charts, and no chart
offers to send itself to Chart Studio.

Plotly renders a subset of HTML in its labels: a class named ``<a href=...>`` would be a
live link on the tick labels and in the hover boxes.
"""

import html as html_module
import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from django.contrib.staticfiles import finders

from config.finders import PLOTLY_JS
from transferability import charts

EVIL = '<a href="http://evil">x</a>'
SHOWN = "&lt;a href=\"http://evil\"&gt;x&lt;/a&gt;"
TEMPLATE = "%{y}"


def figures(html: str) -> dict[str, tuple]:
    """Every Plotly.newPlot call in ``html``: div id -> (data, layout, config)."""
    decoder = json.JSONDecoder()
    found = {}
    for match in re.finditer(r"Plotly\.newPlot\(\s*", html):
        args, at = [], match.end()
        for _ in range(4):
            value, at = decoder.raw_decode(html, at)
            args.append(value)
            at = re.compile(r"\s*,?\s*").match(html, at).end()
        found[args[0]] = tuple(args[1:])
    return found


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)


def only_figure(html: str) -> tuple:
    (figure,) = figures(html).values()
    return figure


def assert_plain(figure):
    texts = list(strings(figure[:2]))
    assert not [t for t in texts if "<a" in t or "</a>" in t], "markup reached plotly"
    assert any(SHOWN in t for t in texts), "the name is shown, escaped"


def test_a_class_name_is_text_on_the_class_balance_chart():
    data, layout, config = figure = only_figure(charts.class_balance([EVIL, "b&c"], [3, 9]))
    assert_plain(figure)
    assert data[0]["x"] == [SHOWN, "b&amp;c"]


def test_plotly_reads_the_escaped_name_back_as_typed():
    # Plotly decodes &lt; &gt; &amp; (and a few more) in what it draws.
    assert html_module.unescape(charts.plain(EVIL + " & more")) == EVIL + " & more"
    assert charts.plain("&lt;") == "&amp;lt;"


def test_class_and_checkpoint_names_are_text_on_the_pair_chart():
    figure = only_figure(charts.pair_breakdown([EVIL, "b"], [1, 2], [3, 4], EVIL, TEMPLATE))
    assert_plain(figure)
    data = figure[0]
    assert {trace["name"] for trace in data} == {f"{SHOWN} right, {TEMPLATE} wrong",
                                                 f"{TEMPLATE} right, {SHOWN} wrong"}
    # A name is data, never part of a hover template (where %{y} would be read).
    assert not [t for t in data if TEMPLATE in t["hovertemplate"] or "evil" in t["hovertemplate"]]


def test_checkpoint_names_are_text_on_the_flips_heatmap():
    report = {"names": [EVIL, "b"], "positive_flips": [[0.0, 1.0], [2.0, 0.0]]}
    figure = only_figure(charts.flips_heatmap(report))
    assert_plain(figure)
    assert figure[0][0]["x"] == [SHOWN, "b"]


def rows_named(*names):
    spec = SimpleNamespace(name="tmi", label="TMI", higher_is_better=True)
    rows = [SimpleNamespace(
        checkpoint=SimpleNamespace(name=name, param_count=1000 * (i + 1)),
        result=SimpleNamespace(status="done", feature_dim=8, features_cached=False,
                               extraction_seconds=1.0 + i, images_total=10,
                               device=EVIL if i else "cpu"),
        scores={"tmi": float(i) - 0.5, "probe_accuracy": 0.5 + 0.1 * i})
        for i, name in enumerate(names)]
    return rows, spec


def test_checkpoint_names_are_text_on_the_score_cost_and_probe_charts():
    rows, spec = rows_named(EVIL, "b", "c")
    for html in (charts.score_bars(rows, [spec]), charts.cost_scatter(rows, [spec]),
                 charts.probe_scatter(rows, [spec])):
        assert_plain(only_figure(html))
    bars = only_figure(charts.score_bars(rows, [spec]))
    assert bars[1]["xaxis"]["categoryarray"] == bars[0][0]["x"]  # the order still applies


def test_step_teacher_and_class_names_are_text_on_the_transfer_charts():
    assert_plain(only_figure(charts.transfer_accuracy([(EVIL, 50.0)], 40.0, {EVIL: 60.0})))
    assert_plain(only_figure(charts.transfer_flips(
        [(EVIL, {"positive_flips": 1.0, "negative_flips": 2.0})])))
    assert_plain(only_figure(charts.transfer_guidance(
        {"candidates": [EVIL], "per_class": [[1, 2]]}, [EVIL, "b"])))


def test_no_chart_offers_to_send_itself_to_chart_studio():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plotly.py warns of a switch plotly.js lacks
        config = only_figure(charts.class_balance(["a", "b"], [1, 2]))[2]
    assert config["showSendToCloud"] is False  # plotly.js shows the button by default
    assert config["displaylogo"] is False
    assert "plotlyServerURL" not in config
    # The older switches for that button: should plotly.js know them again, set them too.
    plotly_js = Path(finders.find(PLOTLY_JS)).read_text()
    assert "showSendToCloud" in plotly_js
    assert "showEditInChartStudio" not in plotly_js and "showLink" not in plotly_js


@pytest.mark.django_db
def test_the_heatmaps_clicks_still_find_a_checkpoint_with_markup_in_its_name(client, owner,
                                                                            tmp_path, settings):
    from tests.transferability.test_analysis_pages import CORRECT, evaluation_with_cache
    from transferability.complementarity import complementarity_report
    from zoo.models import Checkpoint

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
    evaluation = evaluation_with_cache(owner, tmp_path)
    Checkpoint.objects.filter(name="alpha-net").update(name=EVIL)
    names = [EVIL, "mid-net", "zeta-net"]
    evaluation.complementarity = complementarity_report(
        CORRECT, np.repeat(["blue", "green", "red"], 4).astype(object), names)
    evaluation.save()
    client.force_login(owner)

    page = client.get(evaluation.get_absolute_url()).content.decode()

    heatmap = figures(page)["chart-flips"]
    assert_plain(heatmap)
    ids = json.loads(html_module.unescape(re.search(r'data-pair-ids="([^"]+)"', page).group(1)))
    assert set(ids) == set(heatmap[0][0]["x"])
    assert ids[SHOWN] == Checkpoint.objects.get(name=EVIL).pk
