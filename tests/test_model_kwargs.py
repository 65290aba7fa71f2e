"""A catalog entry's model_kwargs reach timm.create_model on every worker: only an
allow-list of harmless arguments (the network's shape, its dropout) is accepted, in the
admin with a message naming the key, and again when a worker loads the row."""

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from safetensors.torch import save as safetensors_bytes

from tests.builders import saved_checkpoint
from tests.zoo.test_admin import add_form, tiny_state_dict
from zoo.demo_zoo import DEMO_ZOO
from zoo.loading import build_model
from zoo.models import Checkpoint
from zoo.weights import WeightsError

pytestmark = pytest.mark.django_db

DANGEROUS = [
    {"checkpoint_path": "/etc/passwd"},
    {"pretrained_cfg_overlay": {"file": "/srv/other-users/weights.pth"}},
    {"pretrained_cfg": {"url": "http://evil/weights.pth"}},
    {"cache_dir": "/tmp/anywhere"},
    {"img_size": 32, "act_layer": "gelu"},
]


@pytest.fixture(autouse=True)
def own_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


def entry(**model_kwargs) -> Checkpoint:
    return Checkpoint(name="ck", architecture="test_resnet", input_size=[3, 32, 32],
                      mean=[0.5] * 3, std=[0.5] * 3, model_kwargs=model_kwargs)


def refused_key(kwargs: dict) -> str:
    return next(key for key in kwargs if key != "img_size")


@pytest.mark.parametrize("kwargs", DANGEROUS, ids=refused_key)
def test_a_key_outside_the_allow_list_is_refused_by_name(kwargs):
    key = refused_key(kwargs)
    with pytest.raises(ValidationError) as refused:
        entry(**kwargs).full_clean()
    (message,) = refused.value.message_dict["model_kwargs"]
    assert f'may not set "{key}"' in message


def test_a_value_that_is_a_structure_is_refused():
    with pytest.raises(ValidationError, match="img_size"):
        entry(img_size={"file": "/etc/passwd"}).full_clean()


@pytest.mark.parametrize("recipe", DEMO_ZOO, ids=lambda r: r.name)
def test_the_demo_zoos_own_kwargs_are_allowed(recipe):
    entry(**recipe.model_kwargs).full_clean()


def test_the_admin_shows_the_refusal_on_the_field(admin_client):
    upload = SimpleUploadedFile("ck.safetensors", safetensors_bytes(tiny_state_dict()))
    form = {**add_form("sneaky", upload), "model_kwargs": '{"checkpoint_path": "/etc/passwd"}'}

    response = admin_client.post(reverse("admin:zoo_checkpoint_add"), form)

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors["model_kwargs"]
    assert any('may not set "checkpoint_path"' in e for e in errors)
    assert not Checkpoint.objects.filter(name="sneaky").exists()


def test_a_worker_refuses_a_row_that_went_around_the_admin(monkeypatch):
    checkpoint = saved_checkpoint("sneaky", "test_resnet")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(
        model_kwargs={"checkpoint_path": "/etc/passwd"})
    checkpoint.refresh_from_db()
    made = []
    monkeypatch.setattr("timm.create_model", lambda *a, **k: made.append((a, k)))

    with pytest.raises(WeightsError, match='sneaky: not loaded: .*"checkpoint_path"'):
        build_model(checkpoint)
    assert made == []


def test_a_row_with_allowed_kwargs_still_loads():
    checkpoint = saved_checkpoint("fine", "test_resnet")
    Checkpoint.objects.filter(pk=checkpoint.pk).update(model_kwargs={"drop_rate": 0.1})
    checkpoint.refresh_from_db()
    assert build_model(checkpoint).training is False
