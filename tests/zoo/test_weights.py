"""Weights load only from safetensors or plain tensor pickles; nothing runs code."""

import os

import pytest
import torch
from safetensors.torch import save_file

from tests.builders import saved_checkpoint
from zoo.loading import build_model
from zoo.models import Checkpoint
from zoo.weights import WeightsError, read_state_dict

MARKER = "zoorank-pickle-ran"


class RunsCode:
    """Unpickling this would create a marker file: what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_it_reads_safetensors_and_plain_state_dicts(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(state, str(tmp_path / "a.safetensors"))
    torch.save({"state_dict": {"module.w": state["w"]}}, tmp_path / "b.pth")
    assert torch.equal(read_state_dict(tmp_path / "a.safetensors")["w"], state["w"])
    assert torch.equal(read_state_dict(tmp_path / "b.pth")["w"], state["w"])  # unwrapped


def test_a_pickle_that_needs_code_is_refused_and_nothing_of_it_runs(tmp_path):
    marker = tmp_path / MARKER
    torch.save({"w": torch.zeros(1), "payload": RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.parametrize("name, content, message", [
    ("w.safetensors", b"garbage", "not a valid safetensors"),
    ("w.pth", b"garbage", "refused"),
    ("w.onnx", b"garbage", "unsupported weights format"),
])
def test_bad_files_get_a_clear_message(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        read_state_dict(tmp_path / name)


@pytest.mark.django_db
def test_build_model_loads_local_weights_exactly():
    checkpoint = saved_checkpoint("exact", "test_convnext", num_classes=3, seed=5)
    torch.manual_seed(5)
    import timm

    reference = timm.create_model("test_convnext", pretrained=False, num_classes=3)
    model = build_model(checkpoint)
    assert not model.training
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.django_db
def test_build_model_says_when_weights_do_not_fit_the_architecture():
    checkpoint = saved_checkpoint("misfit", "test_resnet", num_classes=3)
    Checkpoint.objects.filter(pk=checkpoint.pk).update(architecture="test_vit")
    checkpoint.refresh_from_db()
    with pytest.raises(WeightsError, match="do not fit test_vit"):
        build_model(checkpoint)


@pytest.mark.django_db
def test_an_offline_hub_checkpoint_fails_with_a_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = Checkpoint.objects.create(
        name="test_resnet.r160_in1k", architecture="test_resnet", pretrained_tag="r160_in1k",
        hub_id="timm/test_resnet.r160_in1k", input_size=[3, 160, 160], mean=[0.5] * 3,
        std=[0.5] * 3, num_classes=1000)
    with pytest.raises(WeightsError, match="not in the local hub cache and the hub is offline"):
        build_model(checkpoint)


@pytest.mark.django_db
def test_the_weights_identity_changes_when_the_weights_do(tmp_path):
    checkpoint = saved_checkpoint("ident", "test_resnet")
    before = checkpoint.weights_identity()
    path = checkpoint.weights_path
    os.utime(path, ns=(1, 1))  # the file at the same path was replaced
    assert checkpoint.weights_identity() != before

    as_local = checkpoint.weights_identity()
    checkpoint.weights_source = Checkpoint.WeightsSource.HUB
    checkpoint.hub_id = "timm/test_resnet.r160_in1k"
    assert checkpoint.weights_identity() == "hub:timm/test_resnet.r160_in1k" != as_local


def test_the_checkpoint_page_does_not_import_torch(tmp_path):
    """Pages run in web processes, which never load torch (seconds, and memory)."""
    import os
    import subprocess
    import sys

    code = """
import os, sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
from zoo.models import Checkpoint
c = Checkpoint.objects.create(name="x", architecture="resnet18", weights_source="local",
                              weights_path="/nowhere/x.safetensors", input_size=[3, 8, 8],
                              mean=[0.5] * 3, std=[0.5] * 3)
client = Client()
client.force_login(get_user_model().objects.create_user("u", password="p"))
response = client.get(f"/zoo/{c.pk}/")
print(response.status_code, "torch" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.test_settings", ZOORANK_VAR_DIR=str(tmp_path),
               ALLOWED_HOSTS="testserver")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.getcwd())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "200 False"
