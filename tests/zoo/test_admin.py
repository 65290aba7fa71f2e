"""Curating the zoo in the admin: finding rows, uploading weights safely, validating, refreshing."""

import hashlib
import io
import pickle
from pathlib import Path

import pytest
import timm
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from safetensors.torch import save as safetensors_bytes

from tests.builders import saved_checkpoint
from zoo.models import Checkpoint
from zoo.timm_catalog import import_catalog

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:zoo_checkpoint_changelist")
ADD = reverse("admin:zoo_checkpoint_add")


@pytest.fixture(autouse=True)
def own_media_and_cache(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


def stored_files(settings) -> set[Path]:
    return {p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}


def catalog_row(name: str, **fields) -> Checkpoint:
    architecture, _, tag = name.partition(".")
    defaults = dict(architecture=architecture, pretrained_tag=tag, family="resnet",
                    hub_id=f"timm/{name}", input_size=[3, 224, 224], mean=[0.5] * 3,
                    std=[0.5] * 3, num_classes=1000, source_dataset="ImageNet-1k")
    return Checkpoint.objects.create(name=name, **{**defaults, **fields})


def shown(response) -> list[str]:
    return [c.name for c in response.context["cl"].result_list]


def tiny_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def add_form(name: str, upload: SimpleUploadedFile) -> dict:
    return {
        "name": name, "architecture": "test_resnet", "pretrained_tag": "", "family": "resnet",
        "weights_source": "upload", "hub_id": "", "weights_file": upload, "weights_path": "",
        "model_kwargs": "{}", "input_size": "[3, 32, 32]", "interpolation": "bilinear",
        "crop_pct": "1.0", "crop_mode": "center", "mean": "[0.5, 0.5, 0.5]",
        "std": "[0.25, 0.25, 0.25]", "num_classes": "0", "source_classes": "[]",
        "feature_dim": "", "param_count": "", "source_dataset": "", "source_top1": "",
        "license": "", "enabled": "on", "load_message": "", "_save": "Save",
    }


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_search_and_filters_find_the_right_rows(admin_client):
    catalog_row("resnet50.a1_in1k")
    catalog_row("resnet50.fb_swsl_ig1b_ft_in1k", source_dataset="Instagram-1B → ImageNet-1k")
    catalog_row("convnext_tiny.fb_in22k", family="convnext", source_dataset="ImageNet-22k",
                num_classes=21841)

    assert shown(admin_client.get(CHANGELIST, {"q": "swsl"})) == [
        "resnet50.fb_swsl_ig1b_ft_in1k"]
    assert shown(admin_client.get(CHANGELIST, {"q": "resnet50"})) == [
        "resnet50.a1_in1k", "resnet50.fb_swsl_ig1b_ft_in1k"]
    assert shown(admin_client.get(CHANGELIST, {"family__exact": "convnext"})) == [
        "convnext_tiny.fb_in22k"]
    assert shown(admin_client.get(CHANGELIST, {"source_dataset__exact": "ImageNet-1k"})) == [
        "resnet50.a1_in1k"]


def test_the_changelist_stays_quick_with_the_whole_registry(admin_client,
                                                            django_assert_max_num_queries):
    import_catalog(measure_sizes=False)  # ~1,800 rows
    assert Checkpoint.objects.count() > 1500

    with django_assert_max_num_queries(12):
        response = admin_client.get(CHANGELIST, {"family__exact": "convnext", "q": "fb_in22k"})

    expected = sorted(Checkpoint.objects.filter(family="convnext", name__icontains="fb_in22k")
                      .values_list("name", flat=True))
    assert expected and shown(response) == expected
    assert response.context["cl"].full_result_count == Checkpoint.objects.count()


def test_an_uploaded_safetensors_file_is_stored_with_its_sha256(admin_client, settings):
    data = safetensors_bytes(tiny_state_dict())

    response = admin_client.post(ADD, add_form(
        "tiny-upload", SimpleUploadedFile("tiny.safetensors", data)))

    assert response.status_code == 302, response.context["adminform"].form.errors
    row = Checkpoint.objects.get(name="tiny-upload")
    assert row.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert Path(row.weights_file.path).read_bytes() == data
    assert row.curated  # edited by hand: imports leave it alone


def test_a_plain_torch_state_dict_is_accepted(admin_client):
    data = torch_saved(tiny_state_dict())

    response = admin_client.post(ADD, add_form("tiny-pth", SimpleUploadedFile("tiny.pth", data)))

    assert response.status_code == 302, response.context["adminform"].form.errors
    row = Checkpoint.objects.get(name="tiny-pth")
    assert row.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert Path(row.weights_file.path).read_bytes() == data


class WritesAMarker:
    """Unpickling this creates a file: the code a malicious weights file would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


class NotATensor(torch.nn.Module):
    pass


def test_a_pickle_that_runs_code_is_refused_before_any_of_it_runs(admin_client, settings,
                                                                   tmp_path):
    marker = tmp_path / "pwned"
    data = torch_saved({"fc.weight": torch.zeros(2, 2), "payload": WritesAMarker(marker)})
    files_before = stored_files(settings)

    response = admin_client.post(ADD, add_form("evil", SimpleUploadedFile("evil.pth", data)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["weights_file"]
    assert "evil.pth was refused" in errors[0]
    assert not marker.exists()
    assert not Checkpoint.objects.exists()
    assert stored_files(settings) == files_before
    # The payload is real: a careless loader would have run it.
    pickle.loads(pickle.dumps(WritesAMarker(marker)))
    assert marker.exists()


def test_a_pickle_of_a_class_is_refused(admin_client, settings):
    data = torch_saved(NotATensor())

    response = admin_client.post(ADD, add_form("module", SimpleUploadedFile("net.pt", data)))

    assert response.status_code == 200
    assert "net.pt was refused" in response.context["adminform"].form.errors["weights_file"][0]
    assert not Checkpoint.objects.exists()
    assert not stored_files(settings)


def test_validate_queues_a_worker_task_and_records_what_loads(admin_client, sent_tasks):
    from workers.tasks import validate_checkpoints

    hub = catalog_row("test_resnet.r160_in1k", hub_id="timm/zoorank-test-never-cached",
                      input_size=[3, 160, 160])
    good = saved_checkpoint("z-tiny-local")  # sorts after the failing one
    missing = saved_checkpoint("m-missing-file")
    Path(missing.weights_path).unlink()

    response = admin_client.post(CHANGELIST, {
        "action": "validate", "_selected_action": [hub.pk, good.pk, missing.pk],
    }, follow=True)

    # The request only queues: nothing is loaded in it.
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("3 checkpoints queued for validation")
    [(name, (ids,), queue)] = sent_tasks
    assert (name, queue) == ("workers.tasks.validate_checkpoints", "gpu")
    assert sorted(ids) == sorted([hub.pk, good.pk, missing.pk])
    good.refresh_from_db()
    assert good.loads is None and good.load_message == "queued for validation on a worker"
    assert good.validated_at is None

    validate_checkpoints(ids)  # what the worker runs

    good.refresh_from_db()
    expected_params = sum(
        p.numel() for p in timm.create_model("test_resnet", num_classes=0).parameters())
    assert good.loads is True
    assert (good.feature_dim, good.param_count) == (96, expected_params)
    assert good.load_message == f"loaded: 96 features, {expected_params / 1e6:.1f}M parameters"
    assert good.validated_at is not None
    assert not good.curated

    hub.refresh_from_db()
    assert hub.loads is False
    assert "not in the local hub cache and the hub is offline" in hub.load_message
    assert hub.validated_at is not None and not hub.curated
    assert hub.param_count is None

    missing.refresh_from_db()
    assert missing.loads is False and "does not exist" in missing.load_message
    changelist = admin_client.get(CHANGELIST).content.decode()
    assert "does not exist" in changelist  # the outcome is shown in the list


def test_validate_says_when_the_queue_is_unreachable(admin_client, monkeypatch):
    good = saved_checkpoint("z-tiny-local")

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr("config.celery.app.send_task", refuse)
    response = admin_client.post(CHANGELIST, {"action": "validate",
                                              "_selected_action": [good.pk]}, follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert "Nothing queued: the task queue could not be reached (broker down)" in message
    good.refresh_from_db()
    assert good.load_message == ""


def test_short_lists_get_one_line_inputs_and_numbers_are_formatted(admin_client):
    checkpoint = saved_checkpoint("z-tiny-local", param_count=1234567, source_top1=97.25)
    form = admin_client.get(reverse("admin:zoo_checkpoint_change", args=[checkpoint.pk]))
    html = form.content.decode()
    for field in ("input_size", "mean", "std"):
        assert f'<input type="text" name="{field}"' in html, field
    listing = admin_client.get(CHANGELIST).content.decode()
    assert "1,234,567" in listing and "97.2" in listing


def test_refresh_restores_timms_fields_on_uncurated_rows_only(admin_client):
    import_catalog("resnet18.a*", jobs=1)
    stale = Checkpoint.objects.get(name="resnet18.a1_in1k")
    Checkpoint.objects.filter(pk=stale.pk).update(crop_pct=0.5, family="stale")
    curated = Checkpoint.objects.get(name="resnet18.a2_in1k")
    Checkpoint.objects.filter(pk=curated.pk).update(crop_pct=0.5, curated=True)
    own = catalog_row("my-finetune", hub_id="", num_classes=10)

    response = admin_client.post(CHANGELIST, {
        "action": "refresh_from_timm", "_selected_action": [stale.pk, curated.pk, own.pk],
    }, follow=True)

    stale.refresh_from_db()
    curated.refresh_from_db()
    assert (stale.crop_pct, stale.family) == (0.95, "resnet")
    assert curated.crop_pct == 0.5
    [message] = [str(m) for m in response.context["messages"]]
    assert "updated 1, unchanged 0, curated skipped 1, failed 1" in message
    assert "my-finetune: not a pretrained tag in timm's registry" in message


def test_a_checkpoint_uploaded_in_the_admin_scores_in_an_evaluation(admin_client, owner,
                                                                   tmp_path):
    from tests.builders import image_folder_zip
    from transferability.datasets import create_target_dataset
    from transferability.submission import submit_evaluation
    from workers.jobs import run_inline

    upload = SimpleUploadedFile("mine.safetensors", safetensors_bytes(tiny_state_dict()))
    response = admin_client.post(ADD, add_form("my-upload", upload))
    assert response.status_code == 302, response.context["adminform"].form.errors
    checkpoint = Checkpoint.objects.get(name="my-upload")
    dataset = create_target_dataset(
        owner, "colours", image_folder_zip(tmp_path / "d.zip", {"a": 6, "b": 6}))

    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["tmi", "logme"],
                                   enqueue_work=False)
    run_inline(evaluation.pk)

    result = evaluation.results.get()
    assert result.status == "done", result.message
    assert set(result.scores.values_list("metric", flat=True)) == {"tmi", "logme"}
    assert result.feature_dim == 96


@pytest.mark.parametrize("change, field, message", [
    ({"weights_file": SimpleUploadedFile("w.onnx", b"x")}, "weights_file",
     "Unsupported weights format .onnx"),
    ({"weights_file": ""}, "weights_file", "Upload a weights file"),
    ({"weights_source": "local", "weights_file": "", "weights_path": ""}, "weights_path",
     "Give the path of the weights file"),
])
def test_the_add_form_says_what_is_missing_or_wrong(admin_client, change, field, message):
    form = {**add_form("bad", SimpleUploadedFile("unused.safetensors", b"")), **change}
    response = admin_client.post(ADD, form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in e for e in errors[field]), errors
    assert not Checkpoint.objects.filter(name="bad").exists()


def test_enable_and_disable_actions(admin_client):
    catalog_row("resnet50.a1_in1k", enabled=False)
    catalog_row("resnet18.a1_in1k", enabled=False)
    admin_client.post(CHANGELIST, {"action": "enable", "_selected_action": list(
        Checkpoint.objects.values_list("pk", flat=True))})
    assert Checkpoint.objects.filter(enabled=True).count() == 2
    one = Checkpoint.objects.get(name="resnet18.a1_in1k")
    admin_client.post(CHANGELIST, {"action": "disable", "_selected_action": [one.pk]})
    assert list(Checkpoint.objects.filter(enabled=True).values_list("name", flat=True)) == [
        "resnet50.a1_in1k"]
