"""The lead predictor chosen by the site's ground truth, its page, and TMI's floor warning.

Evaluations and truths are rows made here; the choice itself is pure
(test_predictor_choice.py) and the worker's side is in tests/workers/test_budget.py.
"""

import re
import uuid

import pytest

from transferability.models import (CheckpointResult, Evaluation, GroundTruth, MetricScore,
                                    Status, TargetDataset, TruthResult)
from transferability.predictors import DEFAULT_LEAD_MEMBERS, lead_for_rows, site_choice
from transferability.results import ranked_rows
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

NAMES = ["ck-a", "ck-b", "ck-c", "ck-d", "ck-e"]
TRUTH = [90.0, 85.0, 80.0, 70.0, 60.0]


def checkpoint(name, d):
    return Checkpoint.objects.get_or_create(name=name, defaults=dict(
        architecture="resnet18", family="resnet", input_size=[3, 32, 32], mean=[0.5] * 3,
        std=[0.5] * 3, feature_dim=d))[0]


def evaluation_with(owner, name, scores, truth=None, diagnostics=None):
    """A finished evaluation of NAMES on a dataset of its own, scores per metric in NAMES'
    order; with ``truth``, a finished fine-tuning ground truth."""
    dataset = TargetDataset.objects.create(
        owner=owner, name=name, store_dir=uuid.uuid4().hex, class_names=["x", "y"],
        class_counts=[100, 100], num_images=200, content_hash=uuid.uuid4().hex)
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.DONE)
    for i, ck in enumerate(NAMES):
        result = CheckpointResult.objects.create(evaluation=evaluation, status=Status.DONE,
                                                 checkpoint=checkpoint(ck, 64 * (i + 1)),
                                                 feature_dim=64 * (i + 1))
        for metric, values in scores.items():
            details = {"diagnostics": diagnostics[i]} if metric == "tmi" and diagnostics else {}
            MetricScore.objects.create(result=result, metric=metric, value=values[i],
                                       details=details)
    if truth is not None:
        ground = GroundTruth.objects.create(evaluation=evaluation, status=Status.DONE)
        for ck, accuracy in zip(NAMES, truth):
            TruthResult.objects.create(truth=ground, checkpoint=Checkpoint.objects.get(name=ck),
                                       status=Status.DONE, accuracy=accuracy)
    return evaluation


# LogME follows the truth, TMI follows the width (the reverse of the truth here), SFDA is
# right at the top only.
AGREEING = {"logme": [5, 4, 3, 2, 1], "tmi": [1, 2, 3, 4, 5], "sfda": [5, 1, 2, 3, 4]}


def test_without_enough_truth_the_demo_studys_default_leads(owner):
    every = {m: [1, 2, 3, 4, 5] for m in DEFAULT_LEAD_MEMBERS}
    evaluation = evaluation_with(owner, "d0", {**every, "tmi": [5, 4, 3, 2, 1]})
    choice = site_choice()
    assert choice.lead is None and choice.method == "default"
    rows = ranked_rows(evaluation)
    lead = lead_for_rows(rows)
    assert lead.candidate.members == DEFAULT_LEAD_MEMBERS and not lead.chosen_by_evidence
    assert lead.label == "consensus of Shrinkage H-score, GBC, LogME, H-score, LEEP"
    assert "0 of the 3 datasets" in lead.basis
    assert [r.checkpoint.name for r in rows] == NAMES[::-1]  # its members agree, TMI does not
    # With only some of them scored, the consensus of those.
    fewer = evaluation_with(owner, "d1", {"logme": [5, 4, 3, 2, 1], "gbc": [5, 4, 3, 2, 1],
                                          "tmi": [1, 2, 3, 4, 5]})
    lead = lead_for_rows(ranked_rows(fewer))
    assert lead.name == "consensus:gbc+logme" and "of which 2 scored here" in lead.basis


def test_three_datasets_of_truth_choose_the_lead_and_rank_every_evaluation(owner, outsider,
                                                                           client):
    for i in range(2):
        evaluation_with(owner, f"d{i}", AGREEING, TRUTH)
    evaluation_with(outsider, "private-name", AGREEING, TRUTH)
    fresh = evaluation_with(owner, "new", AGREEING)

    choice = site_choice()
    assert choice.method == "single" and choice.lead.members == ("logme",)
    assert choice.loo_mean == pytest.approx(1.0)
    rows = ranked_rows(fresh)
    assert [r.checkpoint.name for r in rows] == NAMES and [r.rank for r in rows] == [1, 2, 3, 4, 5]

    client.force_login(owner)
    html = client.get("/predictors/").content.decode()
    assert "Rankings lead with <strong>LogME</strong>" in html
    table = re.search(r'<table class="sortable show-weighted_tau" id="predictor-agreement".*?</table>', html,
                      re.S).group(0)
    assert "a dataset of another user" in table and "private-name" not in html
    # Every predictor and the references, best first: LogME 1.00 ... TMI -1.00.
    order = re.findall(r'<tr data-predictor="([^"]+)"', table)
    assert order[0] == "logme" and order[-1] in ("tmi", "feature_dim")
    assert "feature_dim" in order
    check = re.search(r'<table class="compact-width" id="chooser-check".*?</table>', html,
                      re.S).group(0)
    assert "a dataset of another user left out" in check
    # The best single, the consensus of the 3 best, the established metrics' consensus.
    assert check.count("<td") == 3 * (1 + 3 + 1) and 'data-method="single" class="highlight"' in check

    page = client.get(fresh.get_absolute_url()).content.decode()
    assert "Ranked by <strong>LogME</strong>: chosen by agreement with the ground truth of 3 " \
           "datasets" in page


def test_a_new_truth_changes_the_choice(owner):
    for i in range(3):
        evaluation_with(owner, f"d{i}", AGREEING, TRUTH)
    assert site_choice().lead.members == ("logme",)
    # Three more datasets where SFDA is right and LogME wrong outweigh them.
    for i in range(4):
        evaluation_with(owner, f"e{i}", {"logme": [1, 2, 3, 4, 5], "tmi": [1, 2, 3, 4, 5],
                                         "sfda": [5, 4, 3, 2, 1]}, TRUTH)
    assert site_choice().lead.members == ("sfda",)


def test_the_floor_warning_is_on_the_page_and_in_the_api(owner, client, api):
    floored = [{"floored_share": s, "median_distance": 0.4, "floor": 1.0, "k": 3}
               for s in (0.9, 0.8, 0.75, 0.7, 0.75)]
    evaluation = evaluation_with(owner, "small", AGREEING, diagnostics=floored)
    client.force_login(owner)
    html = client.get(evaluation.get_absolute_url()).content.decode()
    sentence = "TMI measures feature width here: 78 % of neighbour distances are at its floor"
    assert sentence in html
    assert "(its order against feature width d: Kendall τ 1.00)" in html
    ranking = re.search(r'<table class="sortable compact" id="ranking".*?</table>', html,
                        re.S).group(0)
    assert ranking.count("of its k-th neighbour distances are below TMI") == 5  # beside each
    body = api.get(f"/api/evaluations/{evaluation.pk}/").json()
    assert any(c.startswith(sentence) for c in body["recommendation"]["cautions"])
    result = next(r for r in body["results"] if r["checkpoint"]["name"] == "ck-a")
    assert result["diagnostics"]["tmi"]["floored_share"] == 0.9
    # Spread-out features: no warning.
    spread = [{**f, "floored_share": 0.1} for f in floored]
    calm = evaluation_with(owner, "wide", AGREEING, diagnostics=spread)
    assert "TMI measures feature width" not in client.get(calm.get_absolute_url()).content.decode()


def test_the_predictor_page_explains_an_empty_site(owner, client):
    client.force_login(owner)
    html = client.get("/predictors/").content.decode()
    assert 'id="no-evidence"' in html and "(the default)" in html


def test_a_truth_on_a_budget_is_not_evidence(owner):
    """It measured the lead's favourites only: a biased sample of the zoo."""
    for i in range(3):
        evaluation_with(owner, f"d{i}", AGREEING, TRUTH)
    assert site_choice().lead is not None
    GroundTruth.objects.filter(evaluation__dataset__name="d2").update(strategy="top", budget=5)
    assert site_choice().lead is None


def test_a_dataset_whose_checkpoints_all_tie_is_no_evidence(owner):
    for i in range(3):
        evaluation_with(owner, f"d{i}", AGREEING, TRUTH)
    evaluation_with(owner, "saturated", AGREEING, [100.0] * 5)
    choice = site_choice()
    assert len(choice.datasets) == 3 and choice.lead.members == ("logme",)


def test_the_page_offers_a_budget_with_its_time_from_measured_fine_tunes(owner, client):
    measured = evaluation_with(owner, "measured", AGREEING, TRUTH)
    # 14 s per fine-tune of 140 training images, 5 epochs, 2 learning rates.
    TruthResult.objects.filter(truth__evaluation=measured).update(
        seconds=14.0, details={"grid": [{}, {}], "train": 140, "recipe": {"epochs": 5}})
    fresh = evaluation_with(owner, "fresh", AGREEING)  # 200 images: 140 to train on
    client.force_login(owner)
    html = client.get(fresh.get_absolute_url()).content.decode()
    form = re.search(r'<form[^>]*id="verify-budget-form".*?</form>', html, re.S).group(0)
    assert 'name="budget" value="3"' in form
    assert "Verify the top 3 (about 1 min)" in form  # 3 x 14 s
    # Nothing measured yet and no extraction timing: no figure rather than a guess.
    TruthResult.objects.all().delete()
    html = client.get(fresh.get_absolute_url()).content.decode()
    assert "Verify the top 3</button>" in html


def test_the_study_says_whether_leaving_flagged_values_out_helps(owner):
    import io

    from django.core.management import call_command

    from transferability.predictors import flag_vote_study

    # H-score saturates for the wide checkpoints (d >= the 100 images of a class) and puts
    # the widest first; LogME follows the truth. Left out, the consensus is LogME's order.
    evaluation_with(owner, "wide", {"logme": [5, 4, 3, 2, 1], "hscore": [2, 1, 3, 4, 5]},
                    truth=TRUTH)
    study, = flag_vote_study()
    assert study["flagged_cells"] == 4  # H-score for ck-b..ck-e (d 128..320)
    assert study["consensus_left_out"]["weighted_tau"] > study["consensus_voting"][
        "weighted_tau"]
    assert study["consensus_left_out"]["top1_relative_accuracy"] == 1.0
    out = io.StringIO()
    call_command("predictor_study", stdout=out)
    assert "| wide (evaluation " in out.getvalue().split("Flagged values voting")[1]
