"""The HTML pages, through Django's test client: two people, alice (owner) and mallory."""

import csv
import io
import json
import re
import uuid
import zipfile

import numpy as np
import pytest
from django.urls import reverse

from tests.builders import image_folder_zip, png_bytes
from transferability.complementarity import complementarity_report
from transferability.datasets import create_target_dataset
from transferability.models import (CheckpointResult, Evaluation, MetricScore, Status,
                                    TargetDataset)
from workers.ingest import ingest_upload
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test gets its own MEDIA_ROOT, so 'nothing left behind' can be checked exactly."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def alice(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def mallory(client, outsider):
    client.force_login(outsider)
    return client


def checkpoint(name, **fields):
    defaults = dict(architecture="resnet18", family="resnet", input_size=[3, 224, 224],
                    mean=[0.5] * 3, std=[0.5] * 3, feature_dim=512)
    return Checkpoint.objects.create(name=name, **{**defaults, **fields})


def dataset_row(owner, name="flowers", classes=("daisy", "rose", "tulip"), counts=(4, 4, 4)):
    return TargetDataset.objects.create(
        owner=owner, name=name, store_dir=uuid.uuid4().hex, class_names=list(classes),
        class_counts=list(counts), num_images=sum(counts), content_hash="ab" * 32,
    )


# The checkpoints of a finished evaluation and their scores. Names sort differently from
# the ranking so that rank order is visible in the page. With no ground truth on the site
# the lead is the demo study's best predictor scored here: LogME (TMI agreed worst).
SCORES = {
    "alpha-net": {"tmi": 1.25, "logme": -0.5},
    "mid-net": {"tmi": 2.5, "logme": 0.75},
    "zeta-net": {"tmi": 3.125, "logme": 0.25},
}
RANKED = ["mid-net", "zeta-net", "alpha-net"]


def finished_evaluation(owner):
    dataset = dataset_row(owner)
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, metrics=["tmi", "logme"],
                                           status=Status.DONE)
    names = sorted(SCORES)
    for i, name in enumerate(names):
        result = CheckpointResult.objects.create(
            evaluation=evaluation, status=Status.DONE,
            checkpoint=checkpoint(name, feature_dim=64 * (i + 1), param_count=1_000_000 * (i + 1),
                                  source_top1=70.0 + i),
            feature_dim=64 * (i + 1), images_done=12, images_total=12,
        )
        for metric, value in SCORES[name].items():
            MetricScore.objects.create(result=result, metric=metric, value=value)
    labels = np.repeat(dataset.class_names, 4)
    correct = np.array([
        [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0],  # alpha-net: right on daisies
        [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0],  # mid-net: right on roses and tulips
        [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1],  # zeta-net
    ], dtype=bool)
    evaluation.complementarity = complementarity_report(correct, labels, names)
    evaluation.save()
    return evaluation


def table(html: str, table_id: str) -> str:
    match = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert match, f"no table #{table_id} in the page"
    return match.group(0)


def page(response) -> str:
    return response.content.decode()


# Logging in ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/datasets/new/", "/datasets/1/", "/evaluations/1/",
                                 "/evaluations/1/export.csv", "/zoo/"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_it_shows_the_login_form(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert 'name="username"' in page(response) and 'name="password"' in page(response)


def test_it_logs_in_and_lands_on_the_dashboard(client, owner):
    response = client.post(reverse("login"), {"username": "alice",
                                              "password": "alice-password-1"}, follow=True)

    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    assert "Log out alice" in page(response)


# Dashboard ----------------------------------------------------------------------------------

def test_it_shows_helpful_empty_states_on_the_dashboard(alice):
    response = alice.get(reverse("dashboard"))

    html = page(response)
    assert response.status_code == 200
    assert "No evaluations yet. Open a dataset and choose checkpoints to score." in html
    assert "No datasets yet." in html
    assert f'<a href="{reverse("dataset-upload")}">Upload a zip</a>' in html
    assert 'id="evaluations"' not in html and 'id="datasets"' not in html


def test_it_lists_only_my_datasets_and_evaluations(alice, owner, outsider,
                                                    django_assert_max_num_queries):
    mine = finished_evaluation(owner)
    dataset_row(outsider, name="mallorys-secret-set")

    with django_assert_max_num_queries(12):  # not one query per listed evaluation
        html = page(alice.get(reverse("dashboard")))

    evaluations = table(html, "evaluations")
    assert mine.get_absolute_url() in evaluations
    assert '<td data-sort="3">3</td>' in evaluations  # its three checkpoints
    datasets = table(html, "datasets")
    assert "flowers" in datasets and "mallorys-secret-set" not in datasets
    assert "No datasets yet." not in html


def test_it_counts_every_dataset_on_the_dashboard_not_just_the_listed_ones(alice, owner):
    for i in range(23):
        dataset_row(owner, name=f"set-{i}")

    html = page(alice.get(reverse("dashboard")))

    assert re.search(r'<span class="num">23</span>\s*datasets', html), "count capped by the list"
    assert table(html, "datasets").count("<tr>") == 1 + 20  # header + the 20 newest


# Uploading ----------------------------------------------------------------------------------

def test_it_uploads_a_zip_and_redirects_to_the_dataset(alice, owner, tmp_path, media_root,
                                                       sent_tasks):
    archive = image_folder_zip(tmp_path / "colours.zip", {"red": 3, "green": 2, "blue": 4})

    with open(archive, "rb") as f:
        response = alice.post(reverse("dataset-upload"), {"name": "colours", "file": f})

    dataset = TargetDataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == dataset.get_absolute_url()
    assert dataset.owner == owner and dataset.name == "colours"
    assert dataset.state == "ingesting" and (media_root / dataset.upload_name).is_file()
    followed = page(alice.get(response["Location"]))
    assert "Dataset colours uploaded" in followed and "being checked and unpacked" in followed
    assert 'id="ingest-progress"' in followed and 'data-state="ingesting"' in followed
    assert 'id="evaluate-form"' not in followed  # nothing to evaluate yet

    assert ingest_upload(dataset.pk) == "ready"

    dataset.refresh_from_db()
    assert dataset.class_names == ["blue", "green", "red"]
    assert dataset.class_counts == [4, 2, 3] and dataset.num_images == 9
    assert dataset.root.parent == media_root / "datasets" and dataset.root.is_dir()
    assert dataset.upload_name == "" and list((media_root / "uploads").glob("*")) == []
    ready = page(alice.get(dataset.get_absolute_url()))
    assert 'id="evaluate-form"' in ready and "ingest-progress" not in ready


def bad_archives(tmp_path):
    one_class = image_folder_zip(tmp_path / "one.zip", {"only": 5})
    corrupt = tmp_path / "corrupt.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(corrupt, "w") as zf:
        zf.writestr("cat/ok.png", png_bytes(rng))
        zf.writestr("dog/ok.png", png_bytes(rng))
        zf.writestr("dog/broken.png", png_bytes(rng)[:40])  # a truncated PNG
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_bytes(b"this is not a zip archive at all")
    return {
        "one class": (one_class, "a target dataset needs at least 2 class folders with images"),
        "corrupt image": (corrupt, "1 images could not be used"),
        "not a zip": (not_a_zip, "the file is not a zip archive"),
    }


def test_it_refuses_what_is_not_a_zip_on_the_form(alice, tmp_path, media_root):
    archive, message = bad_archives(tmp_path)["not a zip"]

    with open(archive, "rb") as f:
        response = alice.post(reverse("dataset-upload"), {"name": "bad", "file": f})

    assert response.status_code == 200
    assert message in page(response)
    assert 'id="upload-form"' in page(response)
    assert response.context["form"].errors["file"][0].startswith(message)
    assert not TargetDataset.objects.exists()
    assert not (media_root / "uploads").exists() or not list((media_root / "uploads").iterdir())


@pytest.mark.parametrize("problem", ["one class", "corrupt image"])
def test_it_shows_why_an_archive_was_refused(alice, tmp_path, media_root, sent_tasks, problem):
    archive, message = bad_archives(tmp_path)[problem]
    with open(archive, "rb") as f:
        response = alice.post(reverse("dataset-upload"), {"name": "bad", "file": f})
    dataset = TargetDataset.objects.get()

    assert ingest_upload(dataset.pk) == "refused"

    html = page(alice.get(response["Location"]))
    assert message in html and "Refused" in html and 'data-state="refused"' in html
    assert "Upload a corrected archive" in html
    for folder in ("datasets", "uploads"):  # nothing of the archive is kept
        store = media_root / folder
        assert not store.exists() or list(store.iterdir()) == []
    dashboard = page(alice.get(reverse("dashboard")))
    assert "Refused" in table(dashboard, "datasets")


def test_the_upload_page_says_what_refuses_and_what_warns(alice):
    html = page(alice.get(reverse("dataset-upload")))
    policy = html[html.index('id="ingest-policy"'):]
    assert "more than 1% of the images unreadable" in policy
    assert "unreadable images, up to 1% of the images" in policy


def test_it_requires_a_name_and_a_file(alice):
    response = alice.post(reverse("dataset-upload"), {"name": ""})

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"name", "file"}
    assert not TargetDataset.objects.exists()


# The dataset page and starting an evaluation -----------------------------------------------

def test_it_shows_the_dataset_with_its_classes_and_the_enabled_checkpoints(alice, owner):
    dataset = dataset_row(owner, classes=("daisy", "rose"), counts=(3, 9))
    checkpoint("resnet-a")
    checkpoint("retired-b", enabled=False)

    html = page(alice.get(dataset.get_absolute_url()))

    classes = table(html, "classes")
    assert classes.index("daisy") < classes.index("rose")  # name order, not by count
    form = re.search(r'<form[^>]*id="evaluate-form".*?</form>', html, re.S).group(0)
    assert "resnet-a" in form and "retired-b" not in form
    assert "Start evaluation" in form


def test_it_explains_an_empty_zoo_on_the_dataset_page(alice, owner):
    dataset = dataset_row(owner)

    html = page(alice.get(dataset.get_absolute_url()))

    assert "The zoo has no enabled checkpoints." in html
    assert "Start evaluation" not in html


def test_it_starts_an_evaluation_of_the_chosen_checkpoints(
        alice, owner, django_capture_on_commit_callbacks):
    dataset = dataset_row(owner)
    first, second, _ = checkpoint("a-net"), checkpoint("b-net"), checkpoint("c-net")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice.post(dataset.get_absolute_url(), {
            "checkpoints": [first.pk, second.pk], "metrics": ["tmi", "logme"],
            "correctness_source": "target",
        })

    evaluation = Evaluation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == evaluation.get_absolute_url()
    assert evaluation.owner == owner and evaluation.dataset == dataset
    assert evaluation.metrics == ["tmi", "logme"] and evaluation.status == Status.PENDING
    results = CheckpointResult.objects.filter(evaluation=evaluation)
    assert sorted(r.checkpoint.name for r in results) == ["a-net", "b-net"]
    assert all(r.images_total == dataset.num_images for r in results)
    assert len(callbacks) == 1  # the work is enqueued once the transaction commits


def test_it_refuses_an_evaluation_without_checkpoints(alice, owner):
    dataset = dataset_row(owner)
    checkpoint("a-net")

    response = alice.post(dataset.get_absolute_url(), {"checkpoints": [],
                                                       "correctness_source": "target"})

    assert response.status_code == 200
    assert "checkpoints" in response.context["form"].errors
    assert not Evaluation.objects.exists()


def test_it_shows_why_an_evaluation_cannot_be_made(alice, owner):
    dataset = dataset_row(owner)
    headless = checkpoint("headless-net", num_classes=0)

    response = alice.post(dataset.get_absolute_url(), {"checkpoints": [headless.pk],
                                                       "correctness_source": "source"})

    assert response.status_code == 200
    assert "headless-net cannot judge correctness with its own head" in page(response)
    assert not Evaluation.objects.exists()


def test_it_deletes_a_dataset_and_its_folder(alice, owner, tmp_path, media_root):
    archive = image_folder_zip(tmp_path / "a.zip", {"cat": 2, "dog": 2})
    dataset = create_target_dataset(owner, "pets", archive)
    root = dataset.root
    assert root.is_dir()

    response = alice.post(reverse("dataset-delete", args=[dataset.pk]), follow=True)

    assert response.redirect_chain == [(reverse("dashboard"), 302)]
    assert "Dataset pets deleted." in page(response)
    assert not TargetDataset.objects.exists()
    assert not root.exists()


def test_it_deletes_only_on_post(alice, owner):
    dataset = dataset_row(owner)

    response = alice.get(reverse("dataset-delete", args=[dataset.pk]))

    assert response.status_code == 405
    assert TargetDataset.objects.filter(pk=dataset.pk).exists()


# Someone else's things ---------------------------------------------------------------------

def test_it_hides_other_peoples_datasets_evaluations_and_exports(mallory, owner):
    evaluation = finished_evaluation(owner)
    dataset = evaluation.dataset
    urls = [dataset.get_absolute_url(), evaluation.get_absolute_url(),
            reverse("evaluation-export", args=[evaluation.pk, "csv"]),
            reverse("evaluation-export", args=[evaluation.pk, "json"])]

    for url in urls:
        assert mallory.get(url).status_code == 404, url
    assert mallory.post(reverse("dataset-delete", args=[dataset.pk])).status_code == 404
    response = mallory.post(dataset.get_absolute_url(), {
        "checkpoints": [Checkpoint.objects.first().pk], "correctness_source": "target"})
    assert response.status_code == 404
    assert TargetDataset.objects.filter(pk=dataset.pk).exists()
    assert Evaluation.objects.count() == 1


# The evaluation page -------------------------------------------------------------------------

def test_it_shows_a_finished_evaluation_ranked(alice, owner):
    evaluation = finished_evaluation(owner)

    response = alice.get(evaluation.get_absolute_url())

    html = page(response)
    assert response.status_code == 200
    ranking = table(html, "ranking")
    assert re.findall(r'data-checkpoint="([^"]+)"', ranking) == RANKED
    ranks = re.findall(r'<tr data-result="\d+"[^>]*>\s*<td data-sort="(\d+)">', ranking)
    assert ranks == ["1", "2", "3"]
    headers = re.findall(r'<th class="metric[^"]*"[^>]*>([^<]+)</th>', ranking)
    assert headers == ["TMI&nbsp;↑", "LogME&nbsp;↑"]
    assert "Ranked by LogME, the lead predictor;" in html
    assert "the consensus of its 5 best predictors), of which 1 scored here" in html
    assert ">3.125<" in ranking and ">-0.5<" in ranking
    assert ranking.count('class="badge done"') == 3
    assert 'id="chart-logme"' in html and "Plotly.newPlot" in html
    assert 'id="chart-flips"' in html
    pairs = table(html, "pairs")
    links = re.findall(r'<tr><td><a href="([^"]+)">([^<]+)</a></td><td><a href="\1">([^<]+)</a>',
                       pairs)
    assert len(links) == 6  # every ordered pair of three, each linked to its page
    report = evaluation.complementarity
    best = max(report["pairs"], key=lambda p: p["positive_flips"])
    ids = {c.name: c.pk for c in Checkpoint.objects.all()}
    assert best["positive_flips"] > 0 and links[0][1:] == (best["a"], best["b"])
    assert links[0][0] == reverse("evaluation-pair",
                                  args=[evaluation.pk, ids[best["a"]], ids[best["b"]]])
    assert re.search(r'id="pairs-count">6 of 6 pairs<', html)
    assert "Scores appear here" not in html
    assert 'id="relative-to-set-note"' not in html and 'id="approximation-notes"' not in html


NCTI = {"alpha-net": 2.0, "mid-net": -1.0, "zeta-net": 0.5}
KNN_NOTE = "k-NN on 5 of 12 samples"


def with_ncti_and_a_subsampled_knn(evaluation):
    """NCTI (relative to the set) and k-NN accuracy (on a subsample) for every checkpoint."""
    for result in evaluation.results.select_related("checkpoint"):
        MetricScore.objects.create(result=result, metric="ncti",
                                   value=NCTI[result.checkpoint.name],
                                   details={"components": {"seli": 1.0, "ncc": 0.5, "vc": 0.1}})
        MetricScore.objects.create(result=result, metric="knn_accuracy", value=0.75,
                                   details={"note": KNN_NOTE})
    Evaluation.objects.filter(pk=evaluation.pk).update(
        metrics=["tmi", "logme", "ncti", "knn_accuracy"])
    return evaluation


def test_it_marks_scores_relative_to_the_set_and_approximated_ones(alice, owner):
    evaluation = with_ncti_and_a_subsampled_knn(finished_evaluation(owner))

    html = page(alice.get(evaluation.get_absolute_url()))

    ranking = table(html, "ranking")
    header = re.search(r'<th class="metric relative-to-set[^"]*" data-metric="ncti"[^>]*? title="([^"]+)">(.*?)</th>',
                       ranking)
    assert header, "NCTI's header is marked as relative to the set"
    assert "relative to this set of checkpoints" in header.group(1)
    assert header.group(2).startswith("NCTI&nbsp;↑") and "†" in header.group(2)
    knn_header = re.search(r'<th class="metric[^"]*" data-metric="knn_accuracy"[^>]*? title="[^"]*">k‑NN accuracy(.*?)</th>',
                           ranking)
    assert knn_header and "*" in knn_header.group(1) and "†" not in knn_header.group(1)
    assert ranking.count(f'title="{KNN_NOTE}"') == 3  # each k-NN cell says how
    assert ">-1<" in ranking  # NCTI's values are shown like any other
    note = re.search(r'<p[^>]*id="relative-to-set-note"[^>]*>(.*?)</p>', html, re.S)
    assert note and "NCTI" in note.group(1)
    assert "relative to this set of checkpoints" in note.group(1)
    approximations = re.search(r'<p[^>]*id="approximation-notes"[^>]*>(.*?)</p>', html, re.S)
    assert approximations and f"k-NN accuracy, {KNN_NOTE}" in approximations.group(1)


def test_a_set_score_waits_for_the_set(alice, owner):
    dataset = dataset_row(owner)
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.RUNNING)
    done = CheckpointResult.objects.create(evaluation=evaluation, checkpoint=checkpoint("a-net"),
                                           status=Status.DONE)
    CheckpointResult.objects.create(evaluation=evaluation, checkpoint=checkpoint("b-net"),
                                    status=Status.RUNNING)
    MetricScore.objects.create(result=done, metric="ncti", value=None,
                               details={"components": {"seli": 1.0, "ncc": 0.5, "vc": 0.1}})

    ranking = table(page(alice.get(evaluation.get_absolute_url())), "ranking")

    assert 'title="computed across the set when every checkpoint is done">–<' in ranking


def test_it_shows_an_evaluation_in_progress(alice, owner):
    dataset = dataset_row(owner)
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.RUNNING)
    CheckpointResult.objects.create(evaluation=evaluation, checkpoint=checkpoint("a-net"),
                                    status=Status.RUNNING, images_done=5, images_total=12)

    html = page(alice.get(evaluation.get_absolute_url()))

    assert 'data-status="running"' in html
    assert 'class="result-progress" max="12" value="5"' in html
    assert "5/12" in html
    assert "Scores appear here as checkpoints finish." in html
    assert "Ranked by" not in html  # nothing is ranked yet
    assert "Computed when every checkpoint is done." in html
    assert 'id="chart-tmi"' not in html and 'id="pairs"' not in html


def test_it_loads_plotly_from_its_own_static_files(alice, owner):
    evaluation = finished_evaluation(owner)

    html = page(alice.get(evaluation.get_absolute_url()))

    sources = re.findall(r'<script src="([^"]+)"', html)
    # Fetched when a chart comes near the viewport (base.html), from this URL.
    plotly = re.findall(r'window\.zoorankLazyPlotly = "([^"]+)"', html)
    assert plotly == ["/static/plotly/plotly.min.js"], html[:500]
    assert all(s.startswith("/static/") for s in sources), "every script is local"
    response = alice.get(plotly[0])
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    body = b"".join(response.streaming_content)
    assert len(body) > 1_000_000 and b"plotly.js" in body[:1000]


# Exports ----------------------------------------------------------------------------------

def test_it_exports_the_ranking_as_csv(alice, owner):
    evaluation = finished_evaluation(owner)

    response = alice.get(reverse("evaluation-export", args=[evaluation.pk, "csv"]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        f'attachment; filename="evaluation-{evaluation.pk}.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["checkpoint"] for r in rows] == RANKED
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        assert float(row["tmi"]) == SCORES[row["checkpoint"]]["tmi"]
        assert float(row["logme"]) == SCORES[row["checkpoint"]]["logme"]
        assert row["status"] == "done"
        assert row["notes"] == ""


def test_its_exports_say_which_scores_are_relative_or_approximated(alice, owner):
    evaluation = with_ncti_and_a_subsampled_knn(finished_evaluation(owner))

    response = alice.get(reverse("evaluation-export", args=[evaluation.pk, "csv"]))

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {r["checkpoint"]: float(r["ncti"]) for r in rows} == NCTI
    for row in rows:
        assert row["notes"] == ("ncti: relative to this set of checkpoints; "
                                f"knn_accuracy: {KNN_NOTE}")
    body = json.loads(alice.get(reverse("evaluation-export",
                                        args=[evaluation.pk, "json"])).content)
    assert body["relative_to_set"] == ["ncti"]
    assert {r["checkpoint"]["name"]: r["scores"]["ncti"] for r in body["results"]} == NCTI
    assert all(r["notes"] == {"knn_accuracy": KNN_NOTE} for r in body["results"])


def test_it_exports_the_ranking_as_json(alice, owner):
    evaluation = finished_evaluation(owner)

    response = alice.get(reverse("evaluation-export", args=[evaluation.pk, "json"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["id"] == evaluation.pk and body["status"] == "done"
    assert [r["checkpoint"]["name"] for r in body["results"]] == RANKED
    assert {r["checkpoint"]["name"]: r["scores"] for r in body["results"]} == SCORES
    assert body["complementarity"]["names"] == sorted(SCORES)


def test_it_has_no_export_in_other_formats(alice, owner):
    evaluation = finished_evaluation(owner)

    response = alice.get(reverse("evaluation-export", args=[evaluation.pk, "xml"]))

    assert response.status_code == 404


# The zoo ----------------------------------------------------------------------------------

@pytest.fixture
def zoo():
    checkpoint("resnet50.a1_in1k", architecture="resnet50", family="resnet",
               param_count=25_000_000, source_top1=80.4)
    checkpoint("resnet18.tv_in1k", architecture="resnet18", family="resnet",
               param_count=11_000_000, source_top1=69.8, enabled=False)
    checkpoint("vit_small_patch16_224.augreg_in21k", architecture="vit_small_patch16_224",
               family="vit", param_count=22_000_000, source_top1=81.4)
    checkpoint("convnext_tiny.fb_in1k", architecture="convnext_tiny", family="convnext",
               param_count=28_000_000, source_top1=82.1)


def zoo_names(response) -> list[str]:
    return re.findall(r'<tr><td><a href="/zoo/\d+/">([^<]+)</a></td>',
                      table(page(response), "checkpoints"))


def test_it_lists_the_zoo_by_name(alice, zoo):
    response = alice.get(reverse("checkpoint-list"))

    assert zoo_names(response) == ["convnext_tiny.fb_in1k", "resnet18.tv_in1k",
                                   "resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k"]
    assert "4 checkpoints" in page(response)
    first = Checkpoint.objects.get(name="convnext_tiny.fb_in1k")
    assert f'<a href="/zoo/{first.pk}/">convnext_tiny.fb_in1k</a>' in page(response)


def test_it_searches_the_zoo(alice, zoo):
    assert zoo_names(alice.get("/zoo/?q=RESNET")) == ["resnet18.tv_in1k", "resnet50.a1_in1k"]
    assert zoo_names(alice.get("/zoo/?q=patch16")) == ["vit_small_patch16_224.augreg_in21k"]


def test_it_filters_the_zoo_by_family_and_enabled(alice, zoo):
    assert zoo_names(alice.get("/zoo/?family=resnet")) == ["resnet18.tv_in1k",
                                                           "resnet50.a1_in1k"]
    assert zoo_names(alice.get("/zoo/?family=resnet&enabled=1")) == ["resnet50.a1_in1k"]


def test_it_sorts_the_zoo(alice, zoo):
    by_params = zoo_names(alice.get("/zoo/?order=-param_count"))
    by_top1 = zoo_names(alice.get("/zoo/?order=source_top1"))
    unknown = zoo_names(alice.get("/zoo/?order=password"))

    assert by_params == ["convnext_tiny.fb_in1k", "resnet50.a1_in1k",
                         "vit_small_patch16_224.augreg_in21k", "resnet18.tv_in1k"]
    assert by_top1 == ["resnet18.tv_in1k", "resnet50.a1_in1k",
                       "vit_small_patch16_224.augreg_in21k", "convnext_tiny.fb_in1k"]
    assert unknown == sorted(unknown)


def test_its_sort_links_keep_the_search_and_filters(alice, zoo):
    response = alice.get("/zoo/?q=resnet50&family=resnet&enabled=1")

    html = page(response)
    assert zoo_names(response) == ["resnet50.a1_in1k"]

    headers = re.search(r"<thead>.*?</thead>", html, re.S).group(0)
    links = re.findall(r'href="([^"]+)"', headers)
    assert links, "the zoo table has sort links"
    for link in links:
        assert "q=resnet50" in link and "family=resnet" in link and "enabled=1" in link, link


def test_it_shows_the_empty_zoo_state(alice, zoo):
    response = alice.get("/zoo/?q=no-such-model")

    assert response.status_code == 200
    assert "No checkpoints match." in page(response)
    assert 'id="checkpoints"' not in page(response)


def test_it_offers_to_retry_failed_checkpoints_and_queues_them(
        alice, owner, monkeypatch, django_capture_on_commit_callbacks):
    evaluation = finished_evaluation(owner)
    assert 'id="retry-form"' not in page(alice.get(f"/evaluations/{evaluation.pk}/"))
    failed = evaluation.results.first()
    CheckpointResult.objects.filter(pk=failed.pk).update(status=Status.FAILED, message="offline")

    assert "Retry 1 failed checkpoint" in page(alice.get(f"/evaluations/{evaluation.pk}/"))
    sent = []
    monkeypatch.setattr("transferability.submission.enqueue",
                        lambda evaluation_id, result_ids=None: sent.append(
                            (evaluation_id, result_ids)))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(f"/evaluations/{evaluation.pk}/retry/", follow=True)

    assert "1 checkpoint queued again." in page(response)
    assert sent == [(evaluation.pk, [failed.pk])]
    failed.refresh_from_db()
    evaluation.refresh_from_db()
    assert failed.status == Status.PENDING and failed.scores.count() == 0
    assert evaluation.status == Status.RUNNING
    again = alice.post(f"/evaluations/{evaluation.pk}/retry/", follow=True)
    assert "Nothing retried: the evaluation is still running; a checkpoint is retried" in page(again)


# The answer first, and the checkpoint page -------------------------------------------------

def test_it_answers_first_with_a_recommendation_and_its_evidence(alice, owner):
    evaluation = finished_evaluation(owner)
    html = page(alice.get(evaluation.get_absolute_url()))
    answer = re.search(r'<section class="recommendation card" id="recommendation">(.*?)</section>',
                       html, re.S).group(1)
    # zeta-net: TMI 1st, LogME 2nd; mid-net: TMI 2nd, LogME 1st; LogME leads.
    assert re.search(r"Take <a href=\"/zoo/\d+/\"><strong>mid-net</strong></a>", answer)
    assert "first by LogME, the lead predictor" in answer
    assert "TMI 2/3" in answer and "LogME 1/3" in answer
    assert "the metrics disagree: others put first zeta-net (TMI)" in answer
    assert "a small dataset (12 images, 4 in the smallest class)" in answer
    ranking = table(html, "ranking")
    assert 'class="sortable compact"' in ranking and 'id="metric-choice"' in html
    assert re.findall(r'<td data-metric="tmi"[^>]*class="score extra"', ranking)
    links = re.findall(r'<td class="sticky-name"><a href="/zoo/(\d+)/">([^<]+)</a>', ranking)
    assert [name for _, name in links] == RANKED


def test_a_metric_equal_for_every_checkpoint_is_flagged(alice, owner):
    evaluation = finished_evaluation(owner)
    for result in evaluation.results.all():
        MetricScore.objects.create(result=result, metric="hscore", value=2.0)
    html = page(alice.get(evaluation.get_absolute_url()))
    assert html.count('<span class="warn" title="the same value (2) for every checkpoint') == 3
    assert "Cannot discriminate: H-score, the same value (2) for every checkpoint" in html


def test_the_checkpoint_page_is_a_model_card_with_its_scores(alice, owner, outsider):
    evaluation = finished_evaluation(owner)
    zeta = Checkpoint.objects.get(name="zeta-net")
    html = page(alice.get(f"/zoo/{zeta.pk}/"))
    card = table(html, "checkpoint-scores")
    assert f'href="{evaluation.get_absolute_url()}"' in card and "3.125" in card
    for fact in ("resnet18", "Feature width d", "192", "3,000,000", "72.0", "Model hub"):
        assert fact in html, fact
    assert alice.get("/zoo/999999/").status_code == 404


def test_the_checkpoint_page_hides_other_peoples_scores(mallory, owner):
    finished_evaluation(owner)
    zeta = Checkpoint.objects.get(name="zeta-net")
    html = page(mallory.get(f"/zoo/{zeta.pk}/"))
    assert 'id="checkpoint-scores"' not in html and "Not evaluated on any of your datasets" in html
