"""Choosing the lead predictor by leave-one-dataset-out agreement with ground truth.

Pure: evidence built in code.
"""

import numpy as np
import pytest

from transferability.predictor_choice import (Candidate, DatasetEvidence, agreement, choose,
                                              mean_rows, agreement_table)

HIGHER = {"good": True, "noisy": True, "bad": True, "loss": False, "a": True, "b": True,
          "c": True}


def evidence(name, truth, **scores):
    names = [f"m{i}" for i in range(len(truth))]
    return DatasetEvidence(name, dict(zip(names, truth)),
                           {p: dict(zip(names, v)) for p, v in scores.items()})


def test_a_lower_is_better_predictor_is_turned_before_it_is_judged():
    e = evidence("d", [90, 80, 70], loss=[0.1, 0.2, 0.3])
    result = agreement(Candidate(("loss",)).scores(e.scores, HIGHER), e.truth)
    assert result["kendall_tau"] == pytest.approx(1.0)
    assert result["pick"] == "m0" and result["top1_relative_accuracy"] == 1.0


def test_the_consensus_is_the_mean_rank_of_its_members():
    e = evidence("d", [90, 80, 70], a=[3, 2, 1], b=[1, 3, 2])
    # ranks a: m0 1, m1 2, m2 3; b: m0 3, m1 1, m2 2 -> means 2, 1.5, 2.5
    scores = Candidate(("a", "b")).scores(e.scores, HIGHER)
    assert scores == {"m0": -2.0, "m1": -1.5, "m2": -2.5}
    assert Candidate(("a", "b")).name == "consensus:a+b"


def test_with_too_few_datasets_there_is_no_choice_to_make():
    data = [evidence("d1", [3, 2, 1], good=[3, 2, 1]), evidence("d2", [3, 2, 1], good=[3, 2, 1])]
    choice = choose(data, ["good"], HIGHER)
    assert choice.lead is None and choice.method == "default"


def test_a_predictor_that_agrees_everywhere_is_chosen_and_checked_out_of_sample():
    rng = np.random.default_rng(0)
    data = []
    for i in range(4):
        truth = rng.uniform(50, 90, 8)
        data.append(evidence(f"d{i}", truth, good=truth + rng.normal(0, 1, 8),
                             noisy=rng.uniform(0, 1, 8), bad=-truth))
    choice = choose(data, ["good", "noisy", "bad"], HIGHER, consensus_sizes=(2,))
    assert choice.lead == Candidate(("good",)) and choice.method == "single"
    folds = choice.leave_one_out["single"]["folds"]
    assert set(folds) == {"d0", "d1", "d2", "d3"}
    assert all(f["pick"] == "good" for f in folds.values())
    # The consensus of good and noisy is worse out of sample: the aggregate is not kept.
    assert choice.leave_one_out["consensus:2"]["mean"] < choice.loo_mean
    assert choice.ranked_singles[0] == "good" and choice.ranked_singles[-1] == "bad"


def test_an_aggregate_is_kept_only_where_it_wins_out_of_sample():
    """a and b each err on a different half of the checkpoints; their consensus does not."""
    data = []
    for i in range(4):
        truth = np.arange(8, 0, -1, dtype=float)
        a = truth.copy(); a[[0, 1]] = a[[1, 0]]; a[[4, 6]] = a[[6, 4]]
        b = truth.copy(); b[[2, 3]] = b[[3, 2]]; b[[5, 7]] = b[[7, 5]]
        if i % 2:
            a, b = b, a
        data.append(evidence(f"d{i}", truth, a=a, b=b, c=-truth))
    choice = choose(data, ["a", "b", "c"], HIGHER, consensus_sizes=(2,))
    loo = choice.leave_one_out
    assert loo["consensus:2"]["mean"] > loo["single"]["mean"]
    assert choice.method == "consensus:2" and set(choice.lead.members) == {"a", "b"}


def test_mean_rows_average_over_datasets_and_keep_the_worst_pick():
    data = [evidence("d1", [90, 80, 70], good=[3, 2, 1]),
            evidence("d2", [90, 80, 70], good=[1, 2, 3])]
    row = mean_rows(agreement_table(data, [Candidate(("good",))], HIGHER))["good"]
    assert row["kendall_tau"] == pytest.approx(0.0) and row["datasets"] == 2
    assert row["worst_top1_relative_accuracy"] == pytest.approx(70 / 90)


def test_a_consensus_leaves_out_a_member_that_missed_some_checkpoints():
    e = evidence("d", [90, 80, 70], a=[3, 2, 1], b=[1, 3, 2])
    scores = {**e.scores, "c": {"m0": 5.0}}  # e.g. LEEP: only the checkpoint with a head
    assert Candidate(("a", "b", "c")).scores(scores, HIGHER) == {"m0": -2.0, "m1": -1.5,
                                                                 "m2": -2.5}
