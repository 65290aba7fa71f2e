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
    assert rec.basis == "best true accuracy, 91.5 %" and rec.margin == "11.5 points above a"


@pytest.mark.parametrize("status", ["failed", "running"])
def test_nothing_finished_nothing_recommended(status):
    assert recommend([row("a", {}, status=status)], [10, 10]) is None


def voted(rows, class_counts):
    """Ranks, then the flags and votes as results.ranked_rows sets them."""
    from transferability.recommendation import flag_votes

    ranked(rows)
    return flag_votes(rows, class_counts)


def test_a_metric_flagged_for_a_checkpoint_does_not_vote_for_it():
    # "wide" (d = 512 >= the 30 images of the smallest class) is first by the three
    # covariance metrics, whose values saturate for it; LogME and LEEP put "narrow" first.
    rows = [row("wide", {"hscore": 9, "gbc": 9, "sfda": 9, "logme": 1, "leep": 1}, d=512),
            row("narrow", {"hscore": 5, "gbc": 5, "sfda": 5, "logme": 3, "leep": 3}, d=8),
            row("mid", {"hscore": 4, "gbc": 4, "sfda": 4, "logme": 2, "leep": 2}, d=8)]
    warnings = voted(rows, [40, 30])
    assert rows[0].flagged == {"hscore", "gbc", "sfda"}
    assert rows[1].vote_ranks["hscore"] == 1  # ranked among those it can judge
    consensus, used = consensus_ranks(rows, warnings)
    assert consensus["narrow"] == 1 and consensus["wide"] == 3
    rec = recommend(rows, [40, 30])
    assert rec.checkpoint.name == "narrow"
    wide = recommend([rows[0]] + rows[1:], [40, 30])
    assert wide.checkpoint.name == "narrow"
    assert rec.first_by == 5 and rec.metrics_used == 5  # every metric that can judge it
    assert recommend(rows, [40, 30]).first_by == 5
    assert sum(1 for m in ("hscore", "gbc", "sfda") if rows[0].vote_ranks.get(m)) == 0


def test_the_lead_keeps_every_members_value_as_it_was_judged():
    """The lead is the aggregate the evidence judged (flagged values included); only the
    page's consensus and "first by" leave flagged values out."""
    from transferability.predictor_choice import Candidate
    from transferability.predictors import Lead

    rows = [row("wide", {"hscore": 9, "gbc": 9, "logme": 2}, d=512),
            row("narrow", {"hscore": 5, "gbc": 5, "logme": 3}, d=8),
            row("mid", {"hscore": 4, "gbc": 4, "logme": 1}, d=8)]
    voted(rows, [40, 30])
    lead = Lead(Candidate(("hscore", "gbc", "logme")), "test", False)
    scores = lead.scores(rows)
    assert max(scores, key=scores.get) == "wide"  # mean rank 4/3 against narrow's 5/3
    assert lead._scores(rows, voting_only=True)["narrow"] > lead._scores(
        rows, voting_only=True)["wide"]  # what the study compares it with
    rec = recommend(rows, [40, 30], lead=lead)
    assert rec.checkpoint.name == "wide"
    assert rec.flagged == ["H-score", "GBC"]
    assert "H-score, GBC cannot be estimated for wide here, so they do not vote for it" in \
        " ".join(rec.cautions)
    assert rec.first_by == 0 and rec.metrics_used == 1  # LogME alone votes for it: 2nd


def test_a_tie_is_called_a_tie_and_broken_by_what_separates_them():
    from transferability.predictor_choice import Candidate
    from transferability.predictors import Lead

    # "alpha" and "beta" tie by the lead (LogME); the other metrics put beta first.
    rows = [row("alpha", {"logme": 5, "leep": 1, "nce": 1, "probe_accuracy": 0.70}),
            row("beta", {"logme": 5, "leep": 3, "nce": 3, "probe_accuracy": 0.84}),
            row("gamma", {"logme": 1, "leep": 2, "nce": 2, "probe_accuracy": 0.75})]
    voted(rows, [300, 300])
    lead = Lead(Candidate(("logme",)), "test", False)
    rec = recommend(rows, [300, 300], lead=lead)
    assert rec.checkpoint.name == "beta"  # not the first by name
    assert rec.tied_with == ["alpha"] and "tied first by LogME with alpha" in rec.basis
    assert "consensus rank 1 against 2" in rec.separation
    assert "linear probe 84.0 % against 70.0 %" in rec.separation
    assert rec.cautions[0].startswith("a tie: beta and alpha are equal by LogME; beta is "
                                      "taken because consensus rank 1")
    assert rec.payload()["tied_with"] == ["alpha"]


def test_nothing_separates_a_tie_and_it_says_so():
    from transferability.predictor_choice import Candidate
    from transferability.predictors import Lead

    rows = [row("b", {"logme": 5}), row("a", {"logme": 5}), row("c", {"logme": 1})]
    voted(rows, [300, 300])
    rec = recommend(rows, [300, 300], lead=Lead(Candidate(("logme",)), "test", False))
    assert rec.tied_with and "nothing else separates them" in rec.cautions[0]


def test_a_partial_truth_claims_no_best():
    from transferability.predictor_choice import Candidate
    from transferability.predictors import Lead

    rows = [row("a", {"logme": 3}), row("b", {"logme": 2}), row("c", {"logme": 1})]
    voted(rows, [300, 300])
    lead = Lead(Candidate(("logme",)), "test", False)
    truth = {"status": "running", "accuracy": {"b": 90.4, "c": 82.8},
             "results": [{"checkpoint": n, "status": s} for n, s in
                         (("a", "pending"), ("b", "done"), ("c", "done"))]}
    rec = recommend(rows, [300, 300], truth=truth, lead=lead)
    assert rec.checkpoint.name == "a" and rec.basis.startswith("first by LogME")
    assert "best true accuracy" not in rec.basis and "points above" not in rec.margin
    assert rec.truth_note == ("true accuracy: 2 of 3 measured; the highest so far is b at "
                              "90.4 %, not final until the rest are measured")
    done = recommend(rows, [300, 300], lead=lead, truth={**truth, "status": "done",
                                                         "accuracy": {"a": 80.0, "b": 90.4,
                                                                      "c": 82.8}})
    assert done.checkpoint.name == "b" and done.basis == "best true accuracy, 90.4 %"
    assert done.truth_note == ""


def test_a_checkpoint_trained_on_this_data_is_passed_over_with_a_caution():
    from transferability.predictor_choice import Candidate
    from transferability.predictors import Lead

    rows = [row("student", {"logme": 9}), row("a", {"logme": 3}), row("b", {"logme": 1})]
    voted(rows, [300, 300])
    lead = Lead(Candidate(("logme",)), "test", False)
    leakage = {"student": "distilled on this dataset"}
    rec = recommend(rows, [300, 300], lead=lead, leakage=leakage)
    assert rec.checkpoint.name == "a"
    assert rec.cautions[0] == "left out of this answer: student, trained on this data"
    assert "1 other checkpoint (student) was trained on this data" in rec.cautions[1]
    # When every checkpoint leaked, the answer says so about the one it takes.
    alone = recommend(rows[:1] + [row("x", {"logme": 0})], [300, 300], lead=lead,
                      leakage={"student": "d", "x": "d"})
    assert alone.checkpoint.name == "student"
    assert alone.cautions[0].startswith("student was trained on this data")
    assert recommend(rows, [300, 300], lead=lead).checkpoint.name == "student"
