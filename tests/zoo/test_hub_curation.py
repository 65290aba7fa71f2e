"""Curating the zoo from the hub: a timm name or an hf-hub: id, added through the API or the
admin, its fields read from the repository's config.json and model card (tests/hub.py on
loopback); the weights fetched, checked and loaded by the worker's own task functions."""

import hashlib

import pytest
from django.urls import reverse

from tests.hub import local_hub  # noqa: F401  (fixture)
from zoo.hub_curation import FETCH_QUEUED, PREFETCH_QUEUED
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

API = "/api/checkpoints/"
LABELS = [f"glyph {i}" for i in range(10)]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("curator", password="curator-password-1",
                                                 is_staff=True, is_superuser=True)


@pytest.fixture
def staff_api(staff):
    from tests.conftest import _token_client

    return _token_client(staff)


@pytest.fixture
def hub_zoo(local_hub):
    """A timm repository (timm's own config, no card) and a user's repository (ten classes
    with names, a model card with a licence)."""
    local_hub.add_timm_model("timm/test_resnet.r160_in1k", "test_resnet")
    local_hub.add_timm_model("acme/glyph-vit", "test_vit", num_classes=10, seed=3,
                             label_names=LABELS, card_license="cc-by-4.0")
    return local_hub


def run_worker_task(name, sent_tasks):
    """Run what the API queued, as the worker would (the task function, in this process)."""
    from workers import tasks

    (task, args, queue), = [s for s in sent_tasks if s[0] == f"workers.tasks.{name}"]
    assert queue == "gpu"
    getattr(tasks, name)(*args)


def test_staff_add_a_timm_name_through_the_api_and_a_worker_fetches_and_loads_it(
        hub_zoo, staff_api, sent_tasks):
    response = staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"].endswith(f"/api/checkpoints/{body['id']}/")
    assert body["name"] == "test_resnet.r160_in1k"
    assert body["architecture"] == "test_resnet" and body["pretrained_tag"] == "r160_in1k"
    assert body["hub_id"] == "timm/test_resnet.r160_in1k"
    assert body["input_size"] == [3, 160, 160] and body["interpolation"] == "bilinear"
    assert body["num_classes"] == 1000 and body["license"] == "apache-2.0"
    assert body["loads"] is None and body["fetch_message"] == FETCH_QUEUED

    run_worker_task("validate_checkpoints", sent_tasks)

    checkpoint = staff_api.get(response["Location"]).json()
    weights = hub_zoo.repos["timm/test_resnet.r160_in1k"].files["model.safetensors"]
    assert checkpoint["loads"] is True, checkpoint["load_message"]
    assert checkpoint["hub_files"] == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    assert checkpoint["weights_bytes"] == len(weights)
    assert checkpoint["fetch_message"].startswith("fetched from the hub to ")
    assert checkpoint["feature_dim"] > 0 and checkpoint["param_count"] > 0


def test_an_hf_hub_id_takes_its_classes_and_licence_from_the_repository(
        hub_zoo, staff_api, sent_tasks, client, staff):
    response = staff_api.post(API, {"hub": "hf-hub:acme/glyph-vit", "name": "glyphs"},
                              format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["name"] == "glyphs" and body["hub_id"] == "acme/glyph-vit"
    assert body["architecture"] == "test_vit" and body["pretrained_tag"] == ""
    assert body["num_classes"] == 10 and body["license"] == "cc-by-4.0"
    checkpoint = Checkpoint.objects.get(pk=body["id"])
    assert checkpoint.source_classes == LABELS and checkpoint.curated

    run_worker_task("validate_checkpoints", sent_tasks)

    checkpoint.refresh_from_db()
    assert checkpoint.loads is True, checkpoint.load_message
    assert checkpoint.has_source_head  # the ten-class head was kept, not replaced
    sha = checkpoint.hub_files["model.safetensors"]
    # The model card shows what was fetched: size, licence and sha256.
    client.force_login(staff)
    card = client.get(reverse("checkpoint-detail", args=[checkpoint.pk])).content.decode()
    assert f"model.safetensors sha256 {sha}" in card
    assert f"{checkpoint.weights_bytes:,} bytes" in card and "cc-by-4.0" in card
    assert "fetched from the hub to" in card


def test_the_loaded_head_is_the_repositorys(hub_zoo, staff_api, sent_tasks):
    import torch

    from zoo.loading import build_model

    state = hub_zoo.add_timm_model("acme/ten", "test_resnet", num_classes=10, seed=9)
    body = staff_api.post(API, {"hub": "hf-hub:acme/ten"}, format="json").json()
    model = build_model(Checkpoint.objects.get(pk=body["id"]))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("reference, message", [
    ("hf-hub:acme/ghost", "not on the hub: acme/ghost"),
    ("test_resnet", "is an architecture; name its pretrained weights, e.g. test_resnet.r160_in1k"),
    ("acme/glyph-vit", "write hub repositories as hf-hub:acme/glyph-vit"),
    ("no-such-thing", "neither a pretrained name in timm's registry"),
    ("hf-hub:../etc", "is not an hf-hub: id"),
])
def test_a_reference_that_cannot_be_added_is_refused_with_its_reason_and_adds_nothing(
        hub_zoo, staff_api, sent_tasks, reference, message):
    response = staff_api.post(API, {"hub": reference}, format="json")

    assert response.status_code == 400
    assert message in response.json()["hub"][0]
    assert Checkpoint.objects.count() == 0 and sent_tasks == []


def test_a_repository_whose_config_asks_for_something_unsafe_is_refused(hub_zoo, staff_api):
    import json

    files = dict(hub_zoo.repos["acme/glyph-vit"].files)
    config = json.loads(files["config.json"])
    hub_zoo.add_repo("acme/odd", {**files, "config.json": json.dumps(
        {**config, "architecture": "not_a_timm_model"}).encode()})
    hub_zoo.add_repo("acme/sneaky", {**files, "config.json": json.dumps(
        {**config, "model_args": {"pretrained_file": "/etc/passwd"}}).encode()})

    odd = staff_api.post(API, {"hub": "hf-hub:acme/odd"}, format="json")
    sneaky = staff_api.post(API, {"hub": "hf-hub:acme/sneaky"}, format="json")

    assert odd.status_code == 400 and "'not_a_timm_model' is not one timm" in odd.json()["hub"][0]
    assert sneaky.status_code == 400 and "pretrained_file" in sneaky.json()["hub"][0]
    assert Checkpoint.objects.count() == 0


def test_a_name_already_in_the_zoo_is_refused(hub_zoo, staff_api, sent_tasks):
    assert staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json").status_code == 202
    again = staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json")
    assert again.status_code == 400 and "is in the zoo already" in again.json()["hub"][0]
    assert Checkpoint.objects.count() == 1


def test_only_staff_add_checkpoints(hub_zoo, api, sent_tasks):
    response = api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json")
    assert response.status_code == 403 and "Only staff" in response.json()["detail"]
    assert Checkpoint.objects.count() == 0 and hub_zoo.requests == []


def test_a_timm_name_is_added_from_timms_registry_when_the_hub_cannot_answer(
        hub_zoo, staff_api, sent_tasks):
    hub_zoo.fail("timm/test_resnet.r160_in1k", 500, times=5)

    response = staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["input_size"] == [3, 160, 160] and body["license"] == "apache-2.0"
    assert "from timm's registry" in body["note"] and "500" in body["note"]


def test_a_worker_that_cannot_fetch_says_why_on_the_row(hub_zoo, staff_api, sent_tasks):
    body = staff_api.post(API, {"hub": "hf-hub:acme/glyph-vit"}, format="json").json()
    hub_zoo.fail("acme/glyph-vit", 404, times=10)  # gone from the hub before the worker ran

    run_worker_task("validate_checkpoints", sent_tasks)

    checkpoint = Checkpoint.objects.get(pk=body["id"])
    assert checkpoint.loads is False
    assert "not on the hub: acme/glyph-vit" in checkpoint.load_message
    assert checkpoint.fetch_message.startswith("failed: ")


# The admin ----------------------------------------------------------------------------------

def test_the_admin_adds_from_the_hub_and_says_what_is_wrong(hub_zoo, client, staff,
                                                            sent_tasks):
    client.force_login(staff)
    changelist = client.get(reverse("admin:zoo_checkpoint_changelist")).content.decode()
    assert reverse("admin:zoo_checkpoint_from_hub") in changelist

    refused = client.post(reverse("admin:zoo_checkpoint_from_hub"), {"hub": "hf-hub:acme/ghost",
                                                                     "enabled": "on"})
    assert refused.status_code == 200 and "not on the hub: acme/ghost" in refused.content.decode()
    assert Checkpoint.objects.count() == 0

    added = client.post(reverse("admin:zoo_checkpoint_from_hub"),
                        {"hub": "hf-hub:acme/glyph-vit", "name": "glyphs", "enabled": "on"},
                        follow=True)
    checkpoint = Checkpoint.objects.get(name="glyphs")
    assert added.redirect_chain[-1][0] == reverse("admin:zoo_checkpoint_change",
                                                  args=[checkpoint.pk])
    assert "a worker is fetching its weights" in added.content.decode()
    assert [name for name, _, _ in sent_tasks] == ["workers.tasks.validate_checkpoints"]


def test_prefetch_brings_the_chosen_hub_weights_into_the_cache_with_progress(
        hub_zoo, client, staff, sent_tasks, settings, monkeypatch):
    from tests.builders import saved_checkpoint

    client.force_login(staff)
    for reference in ("test_resnet.r160_in1k", "hf-hub:acme/glyph-vit"):
        client.post(reverse("admin:zoo_checkpoint_from_hub"), {"hub": reference,
                                                               "enabled": "on"})
    local = saved_checkpoint("local-one")
    sent_tasks.clear()
    chosen = list(Checkpoint.objects.values_list("pk", flat=True))

    response = client.post(reverse("admin:zoo_checkpoint_changelist"),
                           {"action": "prefetch", "_selected_action": chosen}, follow=True)

    assert "2 checkpoints queued for fetching" in response.content.decode()
    assert "1 without hub weights left alone" in response.content.decode()
    assert set(Checkpoint.objects.exclude(pk=local.pk).values_list("fetch_message", flat=True)) \
        == {PREFETCH_QUEUED}
    messages = []
    real_update = Checkpoint.objects.filter(pk=0).update.__func__

    def watching_update(queryset, **fields):  # what the Weights column shows, as it changes
        if "fetch_message" in fields:
            messages.append(fields["fetch_message"])
        return real_update(queryset, **fields)

    monkeypatch.setattr(type(Checkpoint.objects.all()), "update", watching_update)
    run_worker_task("prefetch_checkpoints", sent_tasks)

    assert any(m.startswith("downloading ") and " of " in m for m in messages)
    rows = {c.name: c for c in Checkpoint.objects.all()}
    assert rows["test_resnet.r160_in1k"].fetch_message.startswith("fetched from the hub to ")
    assert rows["acme/glyph-vit"].hub_files and rows["acme/glyph-vit"].weights_bytes
    assert rows["test_resnet.r160_in1k"].loads is None  # fetched, not validated
    assert hub_zoo.downloads("acme/glyph-vit") == 1
    changelist = client.get(reverse("admin:zoo_checkpoint_changelist")).content.decode()
    assert "fetched from the hub to" in changelist


def test_staff_without_the_permission_to_add_checkpoints_is_refused(hub_zoo, django_user_model,
                                                                    sent_tasks):
    from tests.conftest import _token_client

    helper = django_user_model.objects.create_user("helper", password="helper-password-1",
                                                   is_staff=True)
    response = _token_client(helper).post(API, {"hub": "test_resnet.r160_in1k"}, format="json")
    assert response.status_code == 403 and Checkpoint.objects.count() == 0


def test_when_the_queue_cannot_be_reached_nothing_is_added(hub_zoo, staff_api, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker at 127.0.0.1:6379 refused the connection")

    monkeypatch.setattr("config.celery.app.send_task", broker_down)
    response = staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json")

    assert response.status_code == 503
    assert "task queue could not be reached" in response.json()["detail"]
    assert Checkpoint.objects.count() == 0


def test_a_row_is_enabled_only_once_its_fetch_is_queued(hub_zoo, staff_api, monkeypatch):
    seen = []

    def send_task(name, args, queue):  # what an evaluation would see at that moment
        seen.append(Checkpoint.objects.get(pk=args[0][0]).enabled)

    monkeypatch.setattr("config.celery.app.send_task", send_task)
    body = staff_api.post(API, {"hub": "test_resnet.r160_in1k"}, format="json").json()

    assert seen == [False] and body["enabled"] is True
    off = staff_api.post(API, {"hub": "hf-hub:acme/glyph-vit", "enabled": False},
                         format="json").json()
    assert off["enabled"] is False


def test_a_config_too_large_to_be_one_is_not_read(hub_zoo, staff_api, sent_tasks):
    files = dict(hub_zoo.repos["acme/glyph-vit"].files)
    hub_zoo.add_repo("acme/huge", {**files, "config.json": b"{" + b" " * 2_000_000 + b"}"})

    response = staff_api.post(API, {"hub": "hf-hub:acme/huge"}, format="json")

    assert response.status_code == 400
    assert "config.json of acme/huge is 2.0 MB; at most 1.0 MB is read" in response.json()["hub"][0]
    assert not [r for r in hub_zoo.requests if r.method == "GET" and r.repo_id == "acme/huge"]


def test_a_validation_whose_worker_is_faster_than_the_request_keeps_its_outcome(
        hub_zoo, staff_api, monkeypatch):
    from workers import tasks

    # The worker runs the task the moment it is sent, before the request goes on.
    monkeypatch.setattr("config.celery.app.send_task",
                        lambda name, args, queue: getattr(tasks, name.rsplit(".", 1)[1])(*args))
    body = staff_api.post(API, {"hub": "hf-hub:acme/glyph-vit"}, format="json").json()

    assert body["loads"] is True and body["fetch_message"].startswith("fetched from the hub")
