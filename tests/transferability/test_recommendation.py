"""The answer first: consensus, warnings and the recommendation, on rows built in code."""

from types import SimpleNamespace

import pytest

from transferability.recommendation import consensus_ranks, metric_warnings, recommend
from transferability.results import ResultRow


def row(name, scores, d=64, status="done", source_top1=None):
    checkpoint = SimpleNamespace(name=name, feature_dim=d, pk=1, source_top1=source_top1)
    result = SimpleNamespace(status=status, feature_dim=d, checkpoint=checkpoint)
    r = ResultRow(result, scores=dict(scores))
    return r


def ranked(rows):
    """Ranks per metric as results.ranked_rows gives them (higher is better here)."""
    for name in {m for r in rows for m in r.scores}:
        scored = sorted((r for r in rows if r.scores.get(name) is not None
                         and r.result.status == "done"), key=lambda r: -r.scores[name])
        for position, r in enumerate(scored, start=1):
            r.ranks[name] = position
    for r in rows:
        r.rank = r.ranks.get("tmi")
    return rows


def test_consensus_is_the_mean_rank_over_informative_metrics():
    rows = ranked([row("a", {"tmi": 3, "logme": 1, "hscore": 2}),
                   row("b", {"tmi": 2, "logme": 3, "hscore": 2}),
                   row("c", {"tmi": 1, "logme": 2, "hscore": 2})])
    warnings = metric_warnings(rows, [100, 100])
    assert "*" in warnings["hscore"]  # constant: left out of the consensus
    ranks, used = consensus_ranks(rows, warnings)
    assert used == ["tmi", "logme"]
    # a: (1 + 3) / 2 = 2, b: (2 + 1) / 2 = 1.5, c: (3 + 2) / 2 = 2.5
    assert ranks == {"b": 1, "a": 2, "c": 3}


def test_covariance_metrics_warn_where_d_reaches_the_smallest_class():
    rows = ranked([row("wide", {"sfda": 0.5, "tmi": 1.0}, d=512),
                   row("narrow", {"sfda": 0.7, "tmi": 2.0}, d=8)])
    warnings = metric_warnings(rows, [40, 30])
    assert set(warnings["sfda"]) == {"wide"}
    assert "d = 512" in warnings["sfda"]["wide"] and "30 images" in warnings["sfda"]["wide"]
    assert "tmi" not in warnings


def test_it_recommends_by_consensus_with_ranks_margin_and_cautions():
    rows = ranked([row("a", {"tmi": 3, "logme": 3, "probe_accuracy": 0.9}),
                   row("b", {"tmi": 2, "logme": 2, "probe_accuracy": 0.8}),
                   row("c", {"tmi": 1, "logme": 1, "probe_accuracy": 0.7})])
    rec = recommend(rows, [300, 300], ranking="tmi")
    assert rec.checkpoint.name == "a" and rec.basis.startswith("best consensus rank over 2")
    assert rec.first_by == 2
    assert ("TMI", 1, 3) in rec.ranks and ("Linear probe accuracy", 1, 3) in rec.ranks
    assert rec.margin == "linear probe +10.0 points against the next, b"
    assert rec.cautions == []  # agreement, enough images, nothing saturated


def test_cautions_name_disagreement_small_data_and_saturation():
    rows = ranked([row("a", {"tmi": 3, "logme": 1, "hscore": 2, "probe_accuracy": 0.1}),
                   row("b", {"tmi": 1, "logme": 3, "hscore": 2, "probe_accuracy": 0.9}),
                   row("c", {"tmi": 2, "logme": 2, "hscore": 2, "probe_accuracy": 0.5})])
    rec = recommend(rows, [20, 10], ranking="tmi")
    text = " | ".join(rec.cautions)
    assert "the metrics disagree" in text
    assert "order the checkpoints differently" in text
    assert "a small dataset (30 images, 10 in the smallest class)" in text
    assert "cannot discriminate here: H-score" in text


def test_measured_truth_decides_the_recommendation():
    rows = ranked([row("a", {"tmi": 3}), row("b", {"tmi": 1})])
    rec = recommend(rows, [300, 300], truth={"accuracy": {"a": 80.0, "b": 91.5}})
    assert rec.checkpoint.name == "b"
    assert rec.basis == "best true accuracy (91.5 %)" and rec.margin == "11.5 points above a"


@pytest.mark.parametrize("status", ["failed", "running"])
def test_nothing_finished_nothing_recommended(status):
    assert recommend([row("a", {}, status=status)], [10, 10]) is None
