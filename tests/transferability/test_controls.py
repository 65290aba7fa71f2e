"""Cancel, Delete and Re-run on the evaluation page and the dashboard, and the questions
their confirmations ask, through Django's test client: alice (owner) and mallory."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.transferability.test_pages import checkpoint, dataset_row, finished_evaluation
from transferability.models import (CheckpointResult, Evaluation, GroundTruth, MetricScore,
                                    Status, TargetDataset, Transfer)
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

ROUTES = ["evaluation-cancel", "evaluation-delete", "evaluation-rerun"]


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def alice(owner):
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def mallory(outsider):
    client = Client()
    client.force_login(outsider)
    return client


def running_evaluation(owner):
    """Evaluation of flowers: one checkpoint done, one running, one waiting."""
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset_row(owner),
                                           metrics=["tmi"], status=Status.RUNNING)
    for name, status in (("done-net", Status.DONE), ("busy-net", Status.RUNNING),
                         ("queued-net", Status.PENDING)):
        CheckpointResult.objects.create(
            evaluation=evaluation, status=status, images_total=12,
            checkpoint=Checkpoint.objects.filter(name=name).first() or checkpoint(name))
    return evaluation


def distilled_transfer(evaluation, status=Status.DONE) -> Transfer:
    teacher, student = [r.checkpoint for r in evaluation.results.order_by("pk")[:2]]
    number = Transfer.objects.count() + 1
    distilled = checkpoint(f"{student.name}-distilled-{number}", owner=evaluation.owner)
    return Transfer.objects.create(owner=evaluation.owner, evaluation=evaluation,
                                   teacher=teacher, student=student, status=status,
                                   result_checkpoint=distilled)


def flashes(response) -> list[str]:
    return [html.unescape(m) for m in
            re.findall(r'<p class="flash[^"]*">(.*?)</p>', response.content.decode(), re.S)]


def confirmation(response, form_id: str) -> str:
    """The question a form's data-confirm asks, as the browser reads it."""
    match = re.search(rf'<form[^>]*id="{form_id}"[^>]*data-confirm="([^"]*)"',
                      response.content.decode())
    assert match, f"no form #{form_id} with a confirmation"
    return html.unescape(match.group(1))


# Cancel --------------------------------------------------------------------------------------

def test_it_cancels_a_running_evaluation(alice, owner):
    evaluation = running_evaluation(owner)

    response = alice.post(reverse("evaluation-cancel", args=[evaluation.pk]), follow=True)

    assert response.redirect_chain == [(evaluation.get_absolute_url(), 302)]
    assert (f"Evaluation {evaluation.pk} cancelled: 2 unfinished checkpoints stopped; Retry "
            f"resumes them.") in flashes(response)
    evaluation.refresh_from_db()
    assert (evaluation.status, evaluation.message) == (Status.FAILED, "cancelled")
    assert sorted(evaluation.results.values_list("status", flat=True)) == [
        Status.DONE, Status.FAILED, Status.FAILED]


def test_it_says_why_a_finished_evaluation_is_not_cancelled(alice, owner):
    evaluation = finished_evaluation(owner)

    response = alice.post(reverse("evaluation-cancel", args=[evaluation.pk]), follow=True)

    assert (f"Evaluation {evaluation.pk} not cancelled: the evaluation has already finished "
            f"(done).") in flashes(response)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE


def test_it_goes_back_to_the_dashboard_from_the_dashboard_and_nowhere_else(alice, owner):
    evaluation, other = running_evaluation(owner), running_evaluation(owner)
    url = reverse("evaluation-cancel", args=[evaluation.pk])

    from_dashboard = alice.post(url, {"next": reverse("dashboard")})
    elsewhere = alice.post(reverse("evaluation-cancel", args=[other.pk]),
                           {"next": "https://evil.example.org/"})

    assert from_dashboard["Location"] == reverse("dashboard")
    assert elsewhere["Location"] == other.get_absolute_url()


def test_it_offers_cancel_only_while_the_evaluation_runs(alice, owner):
    running, finished = running_evaluation(owner), finished_evaluation(owner)

    running_page = alice.get(running.get_absolute_url()).content.decode()
    finished_page = alice.get(finished.get_absolute_url()).content.decode()

    assert reverse("evaluation-cancel", args=[running.pk]) in running_page
    assert reverse("evaluation-cancel", args=[finished.pk]) not in finished_page
    for page in (running_page, finished_page):
        assert 'id="delete-form"' in page and 'id="rerun-form"' in page


# Delete --------------------------------------------------------------------------------------

def test_it_deletes_an_evaluation_with_its_results_truth_and_transfers(alice, owner):
    evaluation = finished_evaluation(owner)
    GroundTruth.objects.create(evaluation=evaluation, status=Status.DONE)
    transfer = distilled_transfer(evaluation)

    response = alice.post(reverse("evaluation-delete", args=[evaluation.pk]), follow=True)

    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    assert f"Evaluation {evaluation.pk} of dataset flowers deleted." in flashes(response)
    assert not Evaluation.objects.filter(pk=evaluation.pk).exists()
    assert not (CheckpointResult.objects.exists() or MetricScore.objects.exists()
                or GroundTruth.objects.exists() or Transfer.objects.exists())
    assert Checkpoint.objects.filter(pk=transfer.result_checkpoint_id).exists()  # kept
    assert TargetDataset.objects.filter(pk=evaluation.dataset_id).exists()
    assert f'href="{evaluation.get_absolute_url()}"' not in response.content.decode()


def test_a_refused_delete_says_why(alice, owner):
    evaluation = finished_evaluation(owner)
    GroundTruth.objects.create(evaluation=evaluation, status=Status.RUNNING)

    response = alice.post(reverse("evaluation-delete", args=[evaluation.pk]), follow=True)

    assert response.redirect_chain == [(evaluation.get_absolute_url(), 302)]
    assert (f"Evaluation {evaluation.pk} not deleted: its ground truth is being measured; "
            f"delete it once that has finished.") in flashes(response)
    assert Evaluation.objects.filter(pk=evaluation.pk).exists()


# Re-run --------------------------------------------------------------------------------------

def test_it_reruns_with_the_same_checkpoints_metrics_and_options(alice, owner, sent_tasks):
    evaluation = finished_evaluation(owner)
    Evaluation.objects.filter(pk=evaluation.pk).update(score_stages=True)

    response = alice.post(reverse("evaluation-rerun", args=[evaluation.pk]), follow=True)

    new = Evaluation.objects.exclude(pk=evaluation.pk).get()
    assert response.redirect_chain == [(new.get_absolute_url(), 302)]
    assert (f"Evaluation {new.pk} re-runs evaluation {evaluation.pk} with 3 of its "
            f"3 checkpoints.") in flashes(response)
    assert set(new.checkpoints.all()) == set(evaluation.checkpoints.all())
    assert (new.dataset, new.metrics, new.correctness_source, new.score_stages) == (
        evaluation.dataset, ["tmi", "logme"], "target", True)
    assert set(new.results.values_list("status", flat=True)) == {Status.PENDING}


def test_a_rerun_leaves_out_disabled_and_unseen_checkpoints_and_says_why(alice, owner,
                                                                         outsider, sent_tasks):
    evaluation = finished_evaluation(owner)
    Checkpoint.objects.filter(name="alpha-net").update(enabled=False)
    Checkpoint.objects.filter(name="zeta-net").update(owner=outsider)

    response = alice.post(reverse("evaluation-rerun", args=[evaluation.pk]), follow=True)

    new = Evaluation.objects.exclude(pk=evaluation.pk).get()
    assert [c.name for c in new.checkpoints.all()] == ["mid-net"]
    assert (f"Evaluation {new.pk} re-runs evaluation {evaluation.pk} with 1 of its 3 "
            f"checkpoints. Left out: alpha-net (disabled), zeta-net (no longer in your zoo).") \
        in flashes(response)


def test_a_rerun_with_nothing_left_to_evaluate_says_why(alice, owner, sent_tasks):
    evaluation = finished_evaluation(owner)
    Checkpoint.objects.update(enabled=False)

    response = alice.post(reverse("evaluation-rerun", args=[evaluation.pk]), follow=True)

    assert response.redirect_chain == [(evaluation.get_absolute_url(), 302)]
    assert (f"Evaluation {evaluation.pk} not re-run: none of its checkpoints can be evaluated "
            f"now. Left out: alpha-net (disabled), mid-net (disabled), zeta-net (disabled).") \
        in flashes(response)
    assert Evaluation.objects.count() == 1


def test_a_rerun_the_submission_refuses_says_why(alice, owner, sent_tasks):
    evaluation = finished_evaluation(owner)
    TargetDataset.objects.filter(pk=evaluation.dataset_id).update(
        state=TargetDataset.State.INGESTING)

    response = alice.post(reverse("evaluation-rerun", args=[evaluation.pk]), follow=True)

    assert any(f.startswith(f"Evaluation {evaluation.pk} not re-run: the dataset is ingesting")
               for f in flashes(response)), flashes(response)
    assert Evaluation.objects.count() == 1


# Only alice's, only by POST ------------------------------------------------------------------

@pytest.mark.parametrize("route", ROUTES)
def test_another_persons_evaluation_is_not_found(route, mallory, owner, sent_tasks):
    evaluation = running_evaluation(owner)

    response = mallory.post(reverse(route, args=[evaluation.pk]))

    assert response.status_code == 404
    evaluation.refresh_from_db()
    assert evaluation.status == Status.RUNNING
    assert Evaluation.objects.count() == 1


@pytest.mark.parametrize("route", ROUTES)
def test_it_acts_only_on_post(route, alice, owner):
    evaluation = running_evaluation(owner)

    response = alice.get(reverse(route, args=[evaluation.pk]))

    assert response.status_code == 405
    evaluation.refresh_from_db()
    assert evaluation.status == Status.RUNNING
    assert Evaluation.objects.count() == 1


@pytest.mark.parametrize("route", ROUTES)
def test_it_needs_the_csrf_token(route, owner):
    evaluation = running_evaluation(owner)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)

    assert client.post(reverse(route, args=[evaluation.pk])).status_code == 403
    assert Evaluation.objects.get().status == Status.RUNNING


# What each confirmation names ----------------------------------------------------------------

def test_the_delete_question_names_the_evaluation_and_counts_what_goes(alice, owner):
    evaluation = finished_evaluation(owner)
    GroundTruth.objects.create(evaluation=evaluation, status=Status.DONE)
    distilled_transfer(evaluation)
    distilled_transfer(evaluation)

    response = alice.get(evaluation.get_absolute_url())

    assert confirmation(response, "delete-form") == (
        f"Delete evaluation {evaluation.pk} of dataset 'flowers' with its 3 results, its ground "
        f"truth and 2 transfers? Distilled checkpoints are kept.")


def test_the_questions_of_a_running_evaluation_say_what_stops(alice, owner):
    evaluation = running_evaluation(owner)

    response = alice.get(evaluation.get_absolute_url())

    assert confirmation(response, "delete-form") == (
        f"Delete evaluation {evaluation.pk} of dataset 'flowers' with its 3 results? It is "
        f"cancelled first.")
    assert confirmation(response, "cancel-form") == (
        f"Cancel evaluation {evaluation.pk} of dataset 'flowers'? Its 2 unfinished checkpoints "
        f"stop and are marked failed; 1 finished checkpoint keeps its scores. Retry resumes "
        f"the stopped ones.")


def test_the_dashboard_rows_ask_the_same_questions(alice, owner,
                                                   django_assert_max_num_queries):
    running, finished = running_evaluation(owner), finished_evaluation(owner)
    distilled_transfer(finished)

    with django_assert_max_num_queries(14):  # not a query per row
        response = alice.get(reverse("dashboard"))

    assert confirmation(response, f"delete-{finished.pk}") == (
        f"Delete evaluation {finished.pk} of dataset 'flowers' with its 3 results and 1 "
        f"transfer? Distilled checkpoints are kept.")
    assert confirmation(response, f"cancel-{running.pk}").startswith(
        f"Cancel evaluation {running.pk} of dataset 'flowers'? Its 2 unfinished")
    assert f'id="cancel-{finished.pk}"' not in response.content.decode()
    assert f'form="rerun-{finished.pk}"' in response.content.decode()


def test_a_name_with_quotes_is_escaped_in_the_question(alice, owner):
    evaluation = finished_evaluation(owner)
    TargetDataset.objects.filter(pk=evaluation.dataset_id).update(name='o\'k "<b>"')

    response = alice.get(evaluation.get_absolute_url())

    assert 'o\'k "<b>"' not in response.content.decode()
    assert confirmation(response, "delete-form").startswith(
        f"Delete evaluation {evaluation.pk} of dataset 'o'k \"<b>\"' with")


def test_the_dataset_question_counts_its_images_and_evaluations(alice, owner):
    evaluation = finished_evaluation(owner)
    Evaluation.objects.create(owner=owner, dataset=evaluation.dataset, status=Status.DONE)
    distilled_transfer(evaluation)

    response = alice.get(evaluation.dataset.get_absolute_url())

    assert "onsubmit" not in response.content.decode()
    assert confirmation(response, "dataset-delete-form") == (
        "Delete dataset 'flowers' with its 12 images and 2 evaluations (their results, ground "
        "truths and transfers)? Distilled checkpoints are kept.")
