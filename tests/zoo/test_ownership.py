"""A checkpoint made from a user's data (a distilled student) is that user's: the zoo pages,
the API and every way of submitting it show and accept it for them alone, while the shared
zoo (no owner) stays everyone's. The admin shows all of them with their owner."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from tests.builders import image_folder_zip
from transferability.datasets import create_target_dataset
from transferability.forms import EvaluationForm
from transferability.management.commands.rank import Command as RankCommand
from transferability.models import CheckpointResult, Evaluation, Status, Transfer
from transferability.submission import SubmissionError, submit_evaluation
from transferability.transfers import submit_transfer
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

PRIVATE_DATASET = "alice-private-orchids"


def catalog_entry(name: str, **fields) -> Checkpoint:
    return Checkpoint.objects.create(
        name=name, architecture="resnet18", family="resnet", input_size=[3, 32, 32],
        mean=[0.5] * 3, std=[0.5] * 3, feature_dim=4, **fields)


@pytest.fixture(autouse=True)
def own_media_and_cache(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def shared():
    return catalog_entry("common-net")


@pytest.fixture
def distilled(owner):
    return catalog_entry("alice-student.kldp_from_teacher_7", owner=owner,
                         source_dataset=PRIVATE_DATASET, source_classes=["secretrose"])


def dataset_of(user, tmp_path):
    archive = image_folder_zip(tmp_path / f"{user.username}.zip", {"a": 3, "b": 3})
    return create_target_dataset(user, f"{user.username}-data", archive)


def logged_in(client, user):
    client.force_login(user)
    return client


def test_visible_to_is_the_shared_zoo_and_the_users_own(owner, outsider, shared, distilled):
    assert set(Checkpoint.objects.visible_to(owner)) == {shared, distilled}
    assert list(Checkpoint.objects.visible_to(outsider)) == [shared]
    assert list(Checkpoint.objects.visible_to(AnonymousUser())) == [shared]


def test_the_zoo_pages_show_it_to_its_owner_alone(client, owner, outsider, shared, distilled):
    detail = reverse("checkpoint-detail", args=[distilled.pk])
    logged_in(client, outsider)
    page = client.get(reverse("checkpoint-list")).content.decode()
    assert shared.name in page
    assert distilled.name not in page and PRIVATE_DATASET not in page
    assert client.get(detail).status_code == 404
    assert client.get(reverse("checkpoint-detail", args=[shared.pk])).status_code == 200
    dashboard = client.get(reverse("dashboard")).context
    assert (dashboard["zoo_size"], dashboard["zoo_enabled"]) == (1, 1)

    logged_in(client, owner)
    assert distilled.name in client.get(reverse("checkpoint-list")).content.decode()
    response = client.get(detail)
    assert response.status_code == 200 and PRIVATE_DATASET in response.content.decode()
    assert client.get(reverse("dashboard")).context["zoo_size"] == 2


def test_the_api_lists_it_to_its_owner_alone(api, outsider_api, shared, distilled):
    def names(client):
        body = client.get(reverse("api-checkpoint-list")).json()
        return [c["name"] for c in body.get("results", body)]

    assert names(outsider_api) == [shared.name]
    assert sorted(names(api)) == sorted([distilled.name, shared.name])
    searched = outsider_api.get(reverse("api-checkpoint-list"), {"search": "kldp"}).json()
    assert searched.get("results", searched) == []


@pytest.mark.parametrize("by", ["id", "name"])
def test_others_cannot_submit_it_through_the_api(outsider, outsider_api, tmp_path, shared,
                                                 distilled, sent_tasks, by):
    dataset = dataset_of(outsider, tmp_path)
    key = distilled.pk if by == "id" else distilled.name
    response = outsider_api.post("/api/evaluations/",
                                 {"dataset": dataset.pk, "checkpoints": [shared.pk, key]},
                                 format="json")
    assert response.status_code == 400
    assert f"Unknown or disabled checkpoints: {key}." in response.content.decode()
    assert not Evaluation.objects.exists()


def test_all_leaves_out_others_checkpoints(outsider, outsider_api, tmp_path, shared, distilled,
                                           sent_tasks):
    dataset = dataset_of(outsider, tmp_path)
    response = outsider_api.post("/api/evaluations/",
                                 {"dataset": dataset.pk, "checkpoints": "all"}, format="json")
    assert response.status_code == 202, response.content
    assert [r["checkpoint"]["name"] for r in response.json()["results"]] == [shared.name]


@pytest.mark.parametrize("checkpoints", [lambda d: [d.pk], lambda d: [d.name], lambda d: "all"])
def test_its_owner_can_submit_it_through_the_api(owner, api, tmp_path, shared, distilled,
                                                 sent_tasks, checkpoints):
    dataset = dataset_of(owner, tmp_path)
    response = api.post("/api/evaluations/",
                        {"dataset": dataset.pk, "checkpoints": checkpoints(distilled)},
                        format="json")
    assert response.status_code == 202, response.content
    assert distilled.name in [r["checkpoint"]["name"] for r in response.json()["results"]]


def test_the_evaluation_form_offers_it_to_its_owner_alone(client, owner, outsider, tmp_path,
                                                          shared, distilled):
    assert list(EvaluationForm(user=outsider).fields["checkpoints"].queryset) == [shared]
    assert not EvaluationForm({"checkpoints": [distilled.pk], "correctness_source": "target"},
                              user=outsider).is_valid()
    assert EvaluationForm({"checkpoints": [distilled.pk], "correctness_source": "target"},
                          user=owner).is_valid()

    dataset = dataset_of(outsider, tmp_path)
    page = logged_in(client, outsider).get(dataset.get_absolute_url())
    assert page.status_code == 200
    assert shared.name in page.content.decode() and distilled.name not in page.content.decode()
    client.post(dataset.get_absolute_url(), {"checkpoints": [distilled.pk],
                                             "correctness_source": "target"})
    assert not Evaluation.objects.exists()


def test_submit_evaluation_refuses_another_users_checkpoint(owner, outsider, tmp_path, shared,
                                                            distilled):
    dataset = dataset_of(outsider, tmp_path)
    with pytest.raises(SubmissionError, match=f"not yours: {distilled.name}"):
        submit_evaluation(outsider, dataset, [shared, distilled], enqueue_work=False)
    assert not Evaluation.objects.exists()
    mine = submit_evaluation(owner, dataset_of(owner, tmp_path), [shared, distilled],
                             enqueue_work=False)
    assert set(mine.checkpoints.all()) == {shared, distilled}


def test_a_transfer_cannot_take_another_users_checkpoint(outsider, tmp_path, shared, distilled):
    # An evaluation holding it from before checkpoints had owners.
    evaluation = Evaluation.objects.create(owner=outsider, dataset=dataset_of(outsider, tmp_path),
                                           status=Status.DONE)
    for checkpoint in (shared, distilled):
        CheckpointResult.objects.create(evaluation=evaluation, checkpoint=checkpoint,
                                        status=Status.DONE)
    with pytest.raises(SubmissionError, match="is not a finished checkpoint"):
        submit_transfer(outsider, evaluation, shared.name, distilled.name, enqueue_work=False)
    with pytest.raises(SubmissionError, match="is not a finished checkpoint"):
        submit_transfer(outsider, evaluation, distilled.pk, shared.pk, enqueue_work=False)
    assert not Transfer.objects.exists()


def test_the_rank_command_uses_the_shared_zoo(shared, distilled, django_user_model):
    cli = django_user_model.objects.create_user("cli")
    assert RankCommand()._checkpoints([], cli) == [shared]
    with pytest.raises(Exception, match=distilled.name):
        RankCommand()._checkpoints([distilled.name], cli)


def test_the_admin_shows_every_checkpoint_with_its_owner(client, django_user_model, owner,
                                                         shared, distilled):
    staff = django_user_model.objects.create_superuser("sam", "sam@example.org", "sam-pw-123")
    logged_in(client, staff)
    changelist = reverse("admin:zoo_checkpoint_changelist")
    response = client.get(changelist)
    assert {shared, distilled} <= set(response.context["cl"].result_list)
    assert "owner" in response.context["cl"].list_display
    theirs = client.get(changelist, {"owner__id__exact": owner.pk}).context["cl"].result_list
    assert list(theirs) == [distilled]
    common = client.get(changelist, {"owner__isnull": "True"}).context["cl"].result_list
    assert list(common) == [shared]


def test_the_migration_gives_earlier_distilled_checkpoints_their_owner(owner, tmp_path, shared):
    made = catalog_entry("older-student.kldp_from_common-net_3")
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset_of(owner, tmp_path),
                                           status=Status.DONE)
    Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=shared, student=shared,
                            status=Status.DONE, result_checkpoint=made)
    migration = importlib.import_module("zoo.migrations.0003_checkpoint_owner")
    migration.owners_of_distilled(apps, None)
    made.refresh_from_db()
    shared.refresh_from_db()
    assert made.owner == owner and shared.owner is None
