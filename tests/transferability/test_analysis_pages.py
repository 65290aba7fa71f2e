"""The analysis pages, through Django's test client: a pair of checkpoints, dataset
thumbnails, features as .npz, evaluations side by side, and the evaluation page's charts.

alice owns everything; mallory must see none of it. The dataset is stored for real (a zip
unpacked into the store) and the feature cache holds what a worker would have left.
"""

import io
import json
import re
import zipfile

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from tests.builders import image_folder_zip, png_bytes
from transferability import charts
from transferability.complementarity import complementarity_report
from transferability.datasets import create_target_dataset, image_statistics
from transferability.models import (CheckpointResult, Evaluation, MetricScore, Status,
                                    TargetDataset)
from workers import caches
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

CLASSES = {"red": 4, "green": 4, "blue": 4}  # stored in name order: blue, green, red
NAMES = ["alpha-net", "mid-net", "zeta-net"]
# Per image (blue x4, green x4, red x4): is each checkpoint right?
CORRECT = np.array([
    [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0],  # alpha-net: right on every blue
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0],  # mid-net: right on green and most red
    [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1],  # zeta-net
], dtype=bool)
@pytest.fixture(autouse=True)
def tmi_leads(monkeypatch):
    """These pages' charts and comparisons are checked with TMI as the lead predictor (how
    the lead is chosen is tested in test_predictors.py)."""
    from transferability import predictors
    monkeypatch.setattr(predictors, "DEFAULT_ORDER", ("tmi",) + predictors.DEFAULT_ORDER)
    monkeypatch.setattr(predictors, "DEFAULT_LEAD_MEMBERS", ("tmi",))


SCORES = {"alpha-net": {"tmi": 1.25, "logme": -0.5, "probe_accuracy": 0.5},
          "mid-net": {"tmi": 2.5, "logme": 0.75, "probe_accuracy": 0.625},
          "zeta-net": {"tmi": 3.125, "logme": 0.25, "probe_accuracy": 0.75}}


@pytest.fixture(autouse=True)
def stores(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def alice(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def mallory(client, outsider):
    client.force_login(outsider)
    return client


def page(response) -> str:
    return response.content.decode()


def stored_dataset(owner, tmp_path, name="colours", classes=CLASSES, seed=0):
    archive = image_folder_zip(tmp_path / f"{name}-{seed}.zip", classes, seed=seed)
    return create_target_dataset(owner, name, archive)


def evaluation_with_cache(owner, tmp_path, source=Evaluation.CorrectnessSource.TARGET,
                          cache=True, dataset=None):
    """A finished evaluation of three checkpoints whose per-image correctness, features and
    scores are where the workers leave them."""
    dataset = dataset or stored_dataset(owner, tmp_path)
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.DONE,
                                           metrics=["tmi", "logme", "probe_accuracy"],
                                           correctness_source=source)
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        checkpoint = Checkpoint.objects.filter(name=name).first() or Checkpoint.objects.create(
            name=name, architecture="resnet18", family="resnet", input_size=[3, 32, 32],
            mean=[0.5] * 3, std=[0.5] * 3, feature_dim=8, param_count=1_000_000 * (i + 1),
            num_classes=3, source_classes=["blue", "green", "red"])
        key = f"{i:02d}{name}-{evaluation.pk}"
        result = CheckpointResult.objects.create(
            evaluation=evaluation, checkpoint=checkpoint, status=Status.DONE, feature_key=key,
            feature_dim=8, images_done=12, images_total=12, extraction_seconds=0.5 * (i + 1),
            device="cpu")
        for metric, value in SCORES[name].items():
            MetricScore.objects.create(result=result, metric=metric, value=value)
        if cache:
            caches.features.save(key, "pre_logits", rng.normal(size=(12, 8)).astype(np.float32))
            caches.features.save(key, "probe_correct", CORRECT[i])
            # Source-head logits that reproduce CORRECT: the right class where correct,
            # the next class where not.
            labels = np.repeat([0, 1, 2], 4)
            predicted = np.where(CORRECT[i], labels, (labels + 1) % 3)
            caches.features.save(key, "logits", np.eye(3, dtype=np.float32)[predicted] * 5)
    named = np.repeat(["blue", "green", "red"], 4).astype(object)
    evaluation.complementarity = complementarity_report(CORRECT, named, NAMES)
    evaluation.complementarity["source"] = source
    evaluation.save()
    return evaluation


def ids():
    return {c.name: c.pk for c in Checkpoint.objects.all()}


def pair_url(evaluation, a, b):
    return reverse("evaluation-pair", args=[evaluation.pk, ids()[a], ids()[b]])


# The pair page ------------------------------------------------------------------------------

def test_the_pair_page_shows_flips_both_ways_the_classes_and_example_images(alice, owner,
                                                                           tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)

    response = alice.get(pair_url(evaluation, "alpha-net", "mid-net"))

    html = page(response)
    assert response.status_code == 200
    # alpha right & mid wrong: the 4 blue images (4 of 12); mid right & alpha wrong:
    # 4 green + 1 red (5 of 12). Oracle: wrong only on the last red, 11 of 12.
    assert re.search(r'id="positive-flips">33.33 %<', html)
    assert re.search(r'id="negative-flips">41.67 %<', html)
    assert re.search(r'id="oracle">91.67 %<', html)
    assert "The difference in accuracy is the difference in flips" in html
    # The class-wise breakdown: one plotly figure, with counts and a Count/Share menu.
    assert html.count('class="plotly-graph-div"') == 1 and 'id="chart-pair-classes"' in html
    assert '"label":"Share"' in html
    forward = re.search(r'<div class="card direction" id="forward">(.*?)</table>', html, re.S)
    assert forward, "the first direction's summary"
    assert "in 1 of 3 classes" in forward.group(1)  # all on blue: concentrated
    assert "Entropy over classes <strong>0.00</strong> against log C = 1.10" in forward.group(1)
    assert "<td>blue</td><td>4</td>" in forward.group(1)
    backward = re.search(r'<div class="card direction" id="backward">(.*?)</table>', html, re.S)
    assert "in 2 of 3 classes" in backward.group(1)
    assert "<td>green</td><td>4</td>" in backward.group(1)
    # Thumbnails by index, from the dataset's own image view.
    ab = re.search(r'<div id="examples-ab">(.*?)</div>\s*<div id="examples-ba">', html, re.S)
    images = re.findall(r'src="/datasets/(\d+)/images/(\d+)\.png"', ab.group(1))
    assert [int(i) for _, i in images] == [0, 1, 2, 3]  # the four blue images
    assert {int(d) for d, _ in images} == {evaluation.dataset.pk}
    ba = re.search(r'<div id="examples-ba">(.*?)</section>', html, re.S).group(1)
    assert sorted(int(i) for i in re.findall(r'/images/(\d+)\.png', ba)) == [4, 5, 6, 7, 10]
    assert "samples-missing" not in html and "samples-mismatch" not in html


def test_the_pair_page_says_when_the_per_sample_data_is_gone(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path, cache=False)

    html = page(alice.get(pair_url(evaluation, "zeta-net", "alpha-net")))

    missing = re.search(r'<p class="warning" id="samples-missing">(.*?)</p>', html, re.S)
    assert missing, "the page says the per-sample data is gone"
    assert "The per-sample data is gone from the cache" in missing.group(1)
    assert "no longer in the feature cache" in missing.group(1)
    assert "/images/" not in html
    assert re.search(r'id="positive-flips">\d', html), "the stored numbers still show"


def test_the_pair_page_recomputes_source_head_correctness(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path, source=Evaluation.CorrectnessSource.SOURCE)
    for result in evaluation.results.all():  # no probe results: the logits must be used
        caches.features.path(result.feature_key, "probe_correct").unlink()

    html = page(alice.get(pair_url(evaluation, "alpha-net", "mid-net")))

    assert "each checkpoint's own head" in html
    ab = re.search(r'<div id="examples-ab">(.*?)</div>\s*<div id="examples-ba">', html, re.S)
    assert re.findall(r'/images/(\d+)\.png', ab.group(1)) == ["0", "1", "2", "3"]


def test_the_pair_page_notes_a_cache_that_disagrees_with_the_report(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    alpha = evaluation.results.get(checkpoint__name="alpha-net")
    caches.features.save(alpha.feature_key, "probe_correct", np.ones(12, dtype=bool))

    html = page(alice.get(pair_url(evaluation, "alpha-net", "mid-net")))

    assert 'id="samples-mismatch"' in html
    assert "this evaluation recorded 4" in html


def test_the_pair_page_waits_for_the_evaluation(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING,
                                                       complementarity=None)

    response = alice.get(pair_url(evaluation, "alpha-net", "mid-net"))

    assert response.status_code == 200
    assert "Complementarity is computed when every checkpoint of the evaluation is done" in page(
        response)
    assert 'class="plotly-graph-div"' not in page(response)


def test_the_pair_page_needs_two_different_checkpoints_of_the_evaluation(alice, owner,
                                                                        tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    stranger = Checkpoint.objects.create(name="not-in-it", architecture="resnet18",
                                         input_size=[3, 32, 32], mean=[0.5] * 3, std=[0.5] * 3)
    alpha = ids()["alpha-net"]

    for a, b in ((alpha, alpha), (alpha, stranger.pk), (alpha, 10**17)):
        url = reverse("evaluation-pair", args=[evaluation.pk, a, b])
        assert alice.get(url).status_code == 404, url
    assert alice.get(f"/evaluations/{evaluation.pk}/pairs/{alpha}/{'9' * 30}/").status_code == 404


def test_the_evaluation_page_links_every_pair_and_its_heatmap_cells(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)

    html = page(alice.get(evaluation.get_absolute_url()))

    box = re.search(r'<div class="chart clickable" id="flips-links" data-pair-base="([^"]+)" '
                    r'data-pair-ids="([^"]+)">', html)
    assert box, "the heatmap's container maps names to ids"
    assert box.group(1) == f"/evaluations/{evaluation.pk}/pairs/"
    assert json.loads(box.group(2).replace("&quot;", '"')) == ids()
    assert re.search(r'id="pairs-count">6 of 6 pairs<', html)
    assert "every ordered pair of the 3 checkpoints: 3 × 2" in html
    for a in NAMES:
        for b in NAMES:
            if a != b:
                assert f'href="{pair_url(evaluation, a, b)}"' in html


# Someone else's things ---------------------------------------------------------------------

def test_mallory_sees_none_of_alices_analysis_pages(mallory, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    result = evaluation.results.first()
    other = evaluation_with_cache(owner, tmp_path, dataset=evaluation.dataset)
    urls = [pair_url(evaluation, "alpha-net", "mid-net"),
            reverse("dataset-image", args=[evaluation.dataset.pk, 0]),
            reverse("result-features", args=[evaluation.pk, result.pk]),
            f"{reverse('evaluation-compare')}?ids={evaluation.pk},{other.pk}"]

    for url in urls:
        response = mallory.get(url)
        assert response.status_code == 404, url
        assert b"\x89PNG" not in response.content


def test_a_compare_of_my_evaluation_and_someone_elses_is_not_found(client, owner, outsider,
                                                                  tmp_path):
    mine = evaluation_with_cache(outsider, tmp_path)
    theirs = evaluation_with_cache(owner, tmp_path, dataset=stored_dataset(owner, tmp_path,
                                                                         seed=1))
    client.force_login(outsider)

    response = client.get(f"{reverse('evaluation-compare')}?ids={mine.pk},{theirs.pk}")

    assert response.status_code == 404


# Thumbnails --------------------------------------------------------------------------------

def test_it_serves_a_thumbnail_by_index(alice, owner, tmp_path):
    dataset = stored_dataset(owner, tmp_path)

    response = alice.get(reverse("dataset-image", args=[dataset.pk, 5]))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "private" in response["Cache-Control"]
    with Image.open(io.BytesIO(response.content)) as im:
        assert max(im.size) == 96  # a 12 x 12 image, scaled up
    again = alice.get(reverse("dataset-image", args=[dataset.pk, 5]),
                      HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert alice.get(reverse("dataset-image", args=[dataset.pk, 12])).status_code == 404


def test_a_thumbnail_never_leaves_the_dataset_folder(alice, owner, tmp_path, settings):
    dataset = stored_dataset(owner, tmp_path)
    secret = settings.MEDIA_ROOT / "secret.png"
    secret.write_bytes(png_bytes(np.random.default_rng(1)))
    manifest = dataset.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][0][0] = "../../secret.png"  # a tampered manifest
    manifest.write_text(json.dumps(data))

    response = alice.get(reverse("dataset-image", args=[dataset.pk, 0]))

    assert response.status_code == 404
    assert alice.get(reverse("dataset-image", args=[dataset.pk, 1])).status_code == 200


def test_there_is_no_thumbnail_when_the_store_lost_the_dataset(alice, owner, tmp_path):
    import shutil

    dataset = stored_dataset(owner, tmp_path)
    shutil.rmtree(dataset.root)

    assert alice.get(reverse("dataset-image", args=[dataset.pk, 0])).status_code == 404


# Features as .npz --------------------------------------------------------------------------

def test_it_exports_a_checkpoints_features_and_labels_as_npz(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    result = evaluation.results.get(checkpoint__name="mid-net")
    html = page(alice.get(evaluation.get_absolute_url()))
    url = reverse("result-features", args=[evaluation.pk, result.pk])
    assert f'href="{url}"' in html

    response = alice.get(url)

    assert response.status_code == 200
    assert 'filename="evaluation-' in response["Content-Disposition"]
    assert "mid-net-features.npz" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    with np.load(io.BytesIO(body)) as npz:
        assert set(npz.files) == {"features", "labels", "class_names"}
        np.testing.assert_array_equal(
            npz["features"], caches.features.load(result.feature_key, "pre_logits"))
        assert npz["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
        assert npz["class_names"].tolist() == ["blue", "green", "red"]


def test_a_features_export_that_is_not_cached_says_so(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path, cache=False)
    result = evaluation.results.first()
    other = evaluation_with_cache(owner, tmp_path, dataset=evaluation.dataset)

    response = alice.get(reverse("result-features", args=[evaluation.pk, result.pk]))

    assert response.status_code == 404
    assert "Its features are no longer in the feature cache" in page(response)
    assert "Start a new evaluation of alpha-net on colours" in page(response)
    assert 'result-features' not in page(alice.get(evaluation.get_absolute_url()))
    # A result of another evaluation is not one of this evaluation's.
    foreign = other.results.first()
    assert alice.get(reverse("result-features", args=[evaluation.pk, foreign.pk])
                     ).status_code == 404


# Evaluations side by side ------------------------------------------------------------------

def test_it_compares_two_evaluations_of_one_dataset(alice, owner, tmp_path):
    first = evaluation_with_cache(owner, tmp_path)
    second = evaluation_with_cache(owner, tmp_path, dataset=first.dataset)
    result = second.results.get(checkpoint__name="alpha-net")
    MetricScore.objects.filter(result=result, metric="tmi").update(value=9.0)  # now first

    response = alice.get(f"{reverse('evaluation-compare')}?ids={first.pk},{second.pk}")

    html = page(response)
    assert response.status_code == 200
    assert 'id="same-dataset"' in html and 'id="datasets-differ"' not in html
    rows = re.findall(r'<tr>\s*<td class="nowrap sticky-name"><a href="/zoo/\d+/">([^<]+)</a>'
                      r'</td>(.*?)</tr>', html, re.S)
    assert [name for name, _ in rows] == ["zeta-net", "alpha-net", "mid-net"]  # by mean rank
    alpha = dict(rows)["alpha-net"]
    chips = re.findall(r'class="rank-chip">(\d)/3<', alpha)
    assert chips == ["3", "3", "1", "3"]  # the lead's and the probe's ranks in each
    assert ">1.25 <" in alpha and ">9 <" in alpha and ">50.0 <" in alpha
    # The lead (TMI in this module) ranks each side.
    assert "<th title=\"rank among the evaluation's checkpoints, after the score\">TMI</th>" in html
    agreement = re.search(r'<table id="ranking-agreement".*?</table>', html, re.S).group(0)
    assert f"{first.pk} and {second.pk}" in agreement


def test_it_says_when_compared_evaluations_are_on_different_datasets(alice, owner, tmp_path):
    first = evaluation_with_cache(owner, tmp_path)
    other = stored_dataset(owner, tmp_path, name="other", classes={"cat": 3, "dog": 3}, seed=2)
    second = evaluation_with_cache(owner, tmp_path, dataset=other)

    html = page(alice.get(f"{reverse('evaluation-compare')}?ids={first.pk}&ids={second.pk}"))

    note = re.search(r'<p class="warning" id="datasets-differ">(.*?)</p>', html, re.S)
    assert note and "compare ranks, not scores" in note.group(1)
    assert "colours" in note.group(1) and "other" in note.group(1)


def test_the_compare_page_asks_for_two_evaluations(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)

    one = alice.get(f"{reverse('evaluation-compare')}?ids={evaluation.pk}")
    none = alice.get(reverse("evaluation-compare"))
    bad = alice.get(f"{reverse('evaluation-compare')}?ids=1,abc")

    assert "Choose at least two evaluations to compare." in page(one)
    assert "Choose at least two evaluations to compare." in page(none)
    assert bad.status_code == 404


def test_the_dashboard_and_the_dataset_page_offer_to_compare(alice, owner, tmp_path):
    first = evaluation_with_cache(owner, tmp_path)
    evaluation_with_cache(owner, tmp_path, dataset=first.dataset)

    for url in (reverse("dashboard"), first.dataset.get_absolute_url()):
        html = page(alice.get(url))
        form = re.search(r'<form method="get" action="/evaluations/compare/" '
                         r'id="compare-form">(.*?)</form>', html, re.S)
        assert form, url
        assert len(re.findall(r'<input type="checkbox" name="ids" value="\d+"',
                              form.group(1))) == 2
        assert "Compare the chosen evaluations" in form.group(1)


# The dataset page --------------------------------------------------------------------------

def test_the_dataset_page_shows_thumbnails_per_class_in_name_order(alice, owner, tmp_path):
    dataset = stored_dataset(owner, tmp_path, classes={"zebra": 8, "ant": 3})

    html = page(alice.get(dataset.get_absolute_url()))

    samples = re.search(r'<section id="samples">(.*?)</section>', html, re.S).group(1)
    captions = re.findall(r"<figcaption><strong>([^<]+)</strong>", samples)
    assert captions == ["ant", "zebra"]
    thumbs = re.findall(r'<img src="/datasets/\d+/images/(\d+)\.png" loading="lazy"', samples)
    assert thumbs == ["0", "1", "2", "3", "4", "5", "6", "7", "8"]  # 3 ants, 6 of 8 zebras
    assert 'id="chart-classes"' in html
    warnings = re.search(r'<ul class="dataset-warnings" id="dataset-warnings">(.*?)</ul>',
                         html, re.S).group(1)
    assert "1 class with fewer than 5 images: ant (3)" in warnings
    assert "imbalanced" not in warnings  # 8 / 3 is not


def test_the_dataset_page_pages_through_many_classes(alice, owner, tmp_path):
    classes = {f"class-{i:02d}": 1 for i in range(30)}
    dataset = stored_dataset(owner, tmp_path, classes=classes)

    first = page(alice.get(dataset.get_absolute_url()))
    second = page(alice.get(dataset.get_absolute_url() + "?page=2"))

    def captions(html):
        section = re.search(r'<section id="samples">(.*?)</section>', html, re.S).group(1)
        return re.findall(r"<figcaption><strong>([^<]+)</strong>", section)

    assert captions(first) == [f"class-{i:02d}" for i in range(24)]
    assert captions(second) == [f"class-{i:02d}" for i in range(24, 30)]
    assert "Next classes" in first


def test_it_measures_images_and_duplicates_at_upload(owner, tmp_path):
    rng = np.random.default_rng(0)
    same = png_bytes(rng, size=20)
    archive = tmp_path / "dupes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat/a.png", same)
        zf.writestr("cat/b.png", same)
        zf.writestr("dog/c.png", same)  # the same image under another label
        zf.writestr("dog/d.png", png_bytes(rng, size=40))

    dataset = create_target_dataset(owner, "dupes", archive)

    stats = TargetDataset.objects.get(pk=dataset.pk).image_stats
    assert stats["images"] == 4
    assert stats["width"] == {"min": 20, "median": 20.0, "max": 40, "mean": 25.0}
    assert stats["common_sizes"][0] == [20, 20, 3]
    assert stats["modes"] == {"RGB": 4} and stats["formats"] == {"PNG": 4}
    assert stats["duplicates"] == {"groups": 1, "extra": 2, "across_classes": 1,
                                   "examples": [[0, 1, 2]]}
    assert stats["tiny_images"] == 3


def test_the_dataset_page_warns_about_duplicates_imbalance_and_twins(alice, owner, tmp_path):
    rng = np.random.default_rng(0)
    same = png_bytes(rng)
    archive = tmp_path / "lopsided.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(11):
            zf.writestr(f"many/{i}.png", png_bytes(rng, size=40))
        zf.writestr("few/a.png", same)
        zf.writestr("few/b.png", same)
    dataset = create_target_dataset(owner, "lopsided", archive)
    twin = create_target_dataset(owner, "lopsided again", archive)

    html = page(alice.get(dataset.get_absolute_url()))

    warnings = re.search(r'<ul class="dataset-warnings" id="dataset-warnings">(.*?)</ul>',
                         html, re.S).group(1)
    assert "1 class with fewer than 5 images: few (2)" in warnings
    assert "the largest has 11 images, the smallest 2 (6×)" not in warnings  # 5.5: not > 10
    assert "1 image is a byte-identical copy of another (1 group)" in warnings
    assert f'<a href="{twin.get_absolute_url()}">lopsided again</a>' in warnings
    assert 'id="image-stats"' in html and "40×40 (11)" in html
    duplicates = re.search(r'<section id="duplicates">(.*?)</section>', html, re.S).group(1)
    assert re.findall(r'/images/(\d+)\.png', duplicates) == ["0", "1"]


def test_the_dataset_page_warns_about_imbalance(alice, owner, tmp_path):
    dataset = stored_dataset(owner, tmp_path, classes={"many": 22, "few": 2})

    html = page(alice.get(dataset.get_absolute_url()))

    assert "the largest has 22 images, the smallest 2 (11×)" in html


def test_a_dataset_from_before_upload_statistics_is_measured_on_view(alice, owner, tmp_path):
    dataset = stored_dataset(owner, tmp_path)
    TargetDataset.objects.filter(pk=dataset.pk).update(image_stats={})

    html = page(alice.get(dataset.get_absolute_url()))

    assert 'id="image-stats"' in html
    assert TargetDataset.objects.get(pk=dataset.pk).image_stats["images"] == 12


def test_the_dataset_page_says_when_its_images_are_gone(alice, owner, tmp_path):
    import shutil

    dataset = stored_dataset(owner, tmp_path)
    TargetDataset.objects.filter(pk=dataset.pk).update(image_stats={})
    shutil.rmtree(dataset.root)

    response = alice.get(dataset.get_absolute_url())

    assert response.status_code == 200
    assert "The images are no longer in the dataset store" in page(response)
    assert "/images/" not in page(response)


# The evaluation page's charts ----------------------------------------------------------------

def figure(html: str, div_id: str) -> dict:
    """The data and layout handed to Plotly.newPlot for one figure."""
    match = re.search(rf'Plotly\.newPlot\(\s*"{div_id}",\s+(\[.*?\]),\s+(\{{.*?\}}),\s+\{{"displaylogo"',
                      html, re.S)
    assert match, f"no figure {div_id}"
    return {"data": json.loads(match.group(1)), "layout": json.loads(match.group(2))}


def test_the_evaluation_page_switches_metrics_inside_each_chart(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)

    html = page(alice.get(evaluation.get_absolute_url()))

    scores = figure(html, "chart-tmi")
    menu = scores["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in menu] == ["TMI", "LogME", "Linear probe accuracy"]
    assert [t["visible"] for t in scores["data"]] == [True, False, False]
    # Each metric's bars best first: LogME puts mid-net first.
    assert menu[1]["args"][1]["xaxis.categoryarray"] == ["mid-net", "zeta-net", "alpha-net"]
    assert menu[1]["args"][0]["visible"] == [False, True, False]

    cost = figure(html, "chart-cost")
    assert len(cost["data"]) == 3 * 4  # points and front, in two panels, per metric
    assert [t["visible"] for t in cost["data"]] == [True] * 4 + [False] * 8
    params, speed = cost["data"][0], cost["data"][2]
    assert sorted(params["x"]) == [1_000_000, 2_000_000, 3_000_000]
    assert sorted(speed["x"]) == [8.0, 12.0, 24.0]  # 12 images in 1.5, 1 and 0.5 s
    # TMI grows with size and falls with speed here: every checkpoint is on both fronts.
    assert sorted(cost["data"][1]["text"]) == sorted(cost["data"][3]["text"]) == NAMES
    # By LogME, zeta-net (0.25) is bigger and slower than mid-net (0.75): off both fronts.
    assert cost["data"][5]["text"] == ["alpha-net", "mid-net"]  # by parameters
    assert cost["data"][7]["text"] == ["mid-net", "alpha-net"]  # by speed, slow to fast
    assert cost["data"][5]["line"]["shape"] == "hv" and cost["data"][7]["line"]["shape"] == "vh"

    probe = figure(html, "chart-probe")
    assert [b["label"] for b in probe["layout"]["updatemenus"][0]["buttons"]] == ["TMI", "LogME"]
    assert sorted(probe["data"][0]["y"]) == [50.0, 62.5, 75.0]
    assert "Kendall τ 1.00" in probe["layout"]["title"]["text"]

    agreement = figure(html, "chart-agreement")
    z = agreement["data"][0]["z"]
    assert agreement["data"][0]["x"] == ["TMI", "LogME", "Linear probe accuracy"]
    assert z[0][2] == pytest.approx(1.0)  # TMI and the probe: the same order
    assert z[0][1] == pytest.approx(1 / 3)


def test_the_agreement_matrix_leaves_undefined_cells_blank(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    MetricScore.objects.filter(result__evaluation=evaluation, metric="logme").update(value=1.0)

    html = page(alice.get(evaluation.get_absolute_url()))

    z = figure(html, "chart-agreement")["data"][0]["z"]
    assert z[1] == [None, None, None] and z[0][1] is None
    assert z[0][2] == pytest.approx(1.0)


def test_the_evaluation_page_explains_missing_probe_and_cost(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    MetricScore.objects.filter(result__evaluation=evaluation, metric="probe_accuracy").delete()
    CheckpointResult.objects.filter(evaluation=evaluation).update(features_cached=True)

    html = page(alice.get(evaluation.get_absolute_url()))

    assert "Linear probe accuracy was not computed in this evaluation" in html
    cost = figure(html, "chart-cost")
    notes = [a["text"] for a in cost["layout"]["annotations"]]
    assert "no measured extraction: the features came from the cache" in notes
    assert all(trace["x"] == [] for trace in cost["data"][2::4])


# The charts on their own ---------------------------------------------------------------------

def test_the_pareto_front_keeps_what_nothing_beats_on_both():
    # (cost, score): cheaper is better, higher score is better.
    points = [(1, 5), (2, 7), (3, 6), (4, 9), (4, 8), (5, 9)]

    assert charts.pareto_front(points, lower_x_is_better=True) == [0, 1, 3]
    # Faster is better: the fastest (5, 9) beats everything.
    assert charts.pareto_front(points, lower_x_is_better=False) == [5]


def test_throughput_is_not_measured_for_cached_features():
    class Result:
        features_cached, extraction_seconds, images_total = False, 2.0, 100

    assert charts.throughput(Result) == 50.0
    Result.features_cached = True
    assert charts.throughput(Result) is None


def test_image_statistics_of_an_empty_folder_list(tmp_path):
    stats = image_statistics(tmp_path, [])

    assert stats["images"] == 0 and stats["duplicates"]["extra"] == 0 and "width" not in stats


def test_the_pair_page_of_a_checkpoint_that_failed_says_so(alice, owner, tmp_path):
    evaluation = evaluation_with_cache(owner, tmp_path)
    CheckpointResult.objects.filter(evaluation=evaluation, checkpoint__name="mid-net").update(
        status=Status.FAILED)
    report = evaluation.complementarity
    report["pairs"] = [p for p in report["pairs"] if "mid-net" not in (p["a"], p["b"])]
    Evaluation.objects.filter(pk=evaluation.pk).update(complementarity=report)

    html = page(alice.get(pair_url(evaluation, "alpha-net", "mid-net")))

    assert "This pair is not in the evaluation's complementarity: mid-net did not finish" in html


def test_the_dataset_stats_command_measures_old_datasets(owner, tmp_path):
    from django.core.management import call_command

    dataset = stored_dataset(owner, tmp_path)
    TargetDataset.objects.filter(pk=dataset.pk).update(image_stats={})
    out = io.StringIO()

    call_command("dataset_stats", stdout=out)

    assert TargetDataset.objects.get(pk=dataset.pk).image_stats["images"] == 12
    assert f"dataset {dataset.pk} (colours): 12 images" in out.getvalue()


def test_a_finished_evaluations_charts_are_drawn_once_and_get_each_requests_nonce(
        alice, owner, tmp_path, monkeypatch):
    from django.core.cache import cache
    from django.utils import timezone

    cache.clear()
    evaluation = evaluation_with_cache(owner, tmp_path)
    Evaluation.objects.filter(pk=evaluation.pk).update(finished_at=timezone.now())
    drawn = []
    real = charts.agreement_heatmap
    monkeypatch.setattr(charts, "agreement_heatmap",
                        lambda *a, **kw: drawn.append(1) or real(*a, **kw))
    url = reverse("evaluation-detail", args=[evaluation.pk])

    first, second = alice.get(url), alice.get(url)

    assert len(drawn) == 1  # the second view took the drawn charts from the cache
    for response in (first, second):
        nonce = response.wsgi_request.csp_nonce
        scripts = re.findall(r"<script[^>]*>\s*window.PLOTLYENV", page(response))
        assert scripts and all(f'nonce="{nonce}"' in s for s in scripts)
    assert first.wsgi_request.csp_nonce != second.wsgi_request.csp_nonce
    assert figure(page(first), "chart-agreement") == figure(page(second), "chart-agreement")

    # Finishing again (say, after a retry) draws them anew.
    Evaluation.objects.filter(pk=evaluation.pk).update(finished_at=timezone.now())
    alice.get(url)
    assert len(drawn) == 2
