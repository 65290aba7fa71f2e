"""Hub checkpoints evaluated by the suite's real worker process, which fetches their weights
from the suite's hub on loopback (``session_hub``) through HF_ENDPOINT, as a deployment
fetches from the real one: progress on the evaluation, sha256 recorded, faults survived."""

import hashlib

import pytest

from tests.conftest import wait_for
from tests.hub import talk_to
from tests.workers.test_evaluation_with_worker import run_evaluation, upload
from zoo.models import Checkpoint
from zoo.timm_catalog import import_catalog

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TIMM_NAMES = ["test_convnext.r160_in1k", "test_efficientnet.r160_in1k"]


@pytest.fixture
def hub(session_hub, monkeypatch, tmp_path):
    """The suite's hub with two timm repositories and a user's one, reached by this process
    (the web side) too; emptied afterwards."""
    talk_to(session_hub, monkeypatch, tmp_path)
    repos = {f"timm/{name}": name.partition(".")[0] for name in TIMM_NAMES}
    forget(session_hub, [*repos, "acme/glyph-vit"])  # the worker's cache starts without them
    session_hub.requests.clear()
    for seed, (repo_id, architecture) in enumerate(repos.items()):
        session_hub.add_timm_model(repo_id, architecture, seed=seed)
    session_hub.add_timm_model("acme/glyph-vit", "test_vit", num_classes=10, seed=5,
                               label_names=[f"glyph {i}" for i in range(10)],
                               card_license="cc-by-4.0")
    yield session_hub
    session_hub.bytes_per_second = None
    session_hub.faults.clear()
    for repo_id in [*repos, "acme/glyph-vit"]:
        session_hub.repos.pop(repo_id, None)
    forget(session_hub, [*repos, "acme/glyph-vit"])


def forget(hub, repo_ids):
    import shutil

    from huggingface_hub.file_download import repo_folder_name

    for repo_id in repo_ids:
        shutil.rmtree(hub.cache / repo_folder_name(repo_id=repo_id, repo_type="model"),
                      ignore_errors=True)


@pytest.fixture
def staff_api(django_user_model):
    from tests.conftest import _token_client

    from django.contrib.auth.models import Permission

    curator = django_user_model.objects.create_user("curator", password="curator-password-1",
                                                    is_staff=True)
    curator.user_permissions.add(Permission.objects.get(codename="add_checkpoint"))
    return _token_client(curator)


def sha256(hub, repo_id):
    return hashlib.sha256(hub.repos[repo_id].files["model.safetensors"]).hexdigest()


def test_a_worker_fetches_three_hub_checkpoints_with_progress_and_ranks_them(
        hub, api, staff_api, tmp_path, worker_process):
    # Two timm names as the catalog import makes them, one hf-hub: id added by staff.
    import_catalog(names=TIMM_NAMES, jobs=1, enable_new=True)
    added = staff_api.post("/api/checkpoints/", {"hub": "hf-hub:acme/glyph-vit",
                                                 "name": "glyphs"}, format="json")
    assert added.status_code == 202, added.content
    validated = wait_for(lambda: (body := staff_api.get(added["Location"]).json())["loads"]
                         is not None and body, timeout=120, what="the worker's validation")
    assert validated["loads"] is True, validated["load_message"]
    assert validated["fetch_message"].startswith("fetched from the hub to ")
    dataset = upload(api, tmp_path, name="hub-colours", seed=11)

    hub.bytes_per_second = 600_000  # about 2 s a file: time to see the progress
    response = api.post("/api/evaluations/", {"dataset": dataset["id"], "checkpoints": [
        *TIMM_NAMES, "glyphs"], "metrics": ["tmi", "logme", "leep"]}, format="json")
    assert response.status_code == 202, response.content
    seen = set()

    def finished():
        body = api.get(response["Location"]).json()
        seen.update(r["message"] for r in body["results"] if r["message"])
        return body["status"] in ("done", "failed") and body

    body = wait_for(finished, timeout=300, interval=0.1, what="the evaluation")

    assert body["status"] == "done", body["message"]
    assert any(m.startswith("downloading ") and " of " in m and m.endswith(" MB")
               for m in seen), seen
    by_name = {r["checkpoint"]["name"]: r for r in body["results"]}
    assert sorted(by_name) == sorted([*TIMM_NAMES, "glyphs"])
    for name, repo_id in [(n, f"timm/{n}") for n in TIMM_NAMES] + [("glyphs", "acme/glyph-vit")]:
        result = by_name[name]
        assert result["status"] == "done" and result["message"] == "", result["message"]
        checkpoint = api.get(f"/api/checkpoints/{result['checkpoint']['id']}/").json()
        assert checkpoint["hub_files"] == {"model.safetensors": sha256(hub, repo_id)}
        assert checkpoint["weights_bytes"] == len(hub.repos[repo_id].files["model.safetensors"])
        assert hub.downloads(repo_id) == 1  # glyphs: at validation, not again
    ranks = sorted(r["rank"] for r in body["results"])
    assert None not in ranks and ranks[0] == 1  # ranked (ties share a rank)
    assert "leep" in by_name["glyphs"]["scores"]  # its own ten-class head, from the hub
    assert checkpoint["license"] == "cc-by-4.0"  # glyphs, the last one


def test_hub_faults_on_a_real_worker_fail_one_checkpoint_and_spare_the_rest(
        hub, api, tmp_path, worker_process):
    import_catalog(names=TIMM_NAMES, jobs=1, enable_new=True)
    Checkpoint.objects.create(
        name="ghost", architecture="test_resnet", hub_id="acme/ghost", input_size=[3, 32, 32],
        mean=[0.5] * 3, std=[0.5] * 3, num_classes=1000)
    # convnext: a server error, then a download cut halfway; efficientnet: never answers.
    hub.fail("timm/test_convnext.r160_in1k", 500, times=1, method="HEAD")
    hub.fail("timm/test_convnext.r160_in1k", "cut", times=1, method="GET")
    hub.fail("timm/test_efficientnet.r160_in1k", 503, times=20)
    dataset = upload(api, tmp_path, name="hub-faults", seed=12)

    body = run_evaluation(api, dataset["id"], checkpoints=[*TIMM_NAMES, "ghost"],
                          metrics=["tmi", "logme"])

    by_name = {r["checkpoint"]["name"]: r for r in body["results"]}
    convnext = by_name["test_convnext.r160_in1k"]
    assert convnext["status"] == "done", convnext["message"]
    assert api.get(f"/api/checkpoints/{convnext['checkpoint']['id']}/").json()["hub_files"] \
        == {"model.safetensors": sha256(hub, "timm/test_convnext.r160_in1k")}
    assert [r.answered for r in hub.requests if r.repo_id == "timm/test_convnext.r160_in1k"
            and r.method == "GET"][:1] == ["cut"]  # the cut happened, and was recovered
    efficientnet = by_name["test_efficientnet.r160_in1k"]
    assert efficientnet["status"] == "failed"
    assert "the hub failed 3 times for timm/test_efficientnet.r160_in1k" in efficientnet["message"]
    assert by_name["ghost"]["status"] == "failed"
    assert "not on the hub: acme/ghost" in by_name["ghost"]["message"]
    assert body["status"] == "done" and "2 of 3 checkpoints failed" in body["message"]
    # No half file in the worker's cache, only whole blobs named by their sha256.
    blobs = [p for p in hub.cache.rglob("blobs/*") if p.is_file()]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name
               for p in blobs if len(p.name) == 64)
    assert not [p for p in hub.cache.rglob("*.incomplete")]
