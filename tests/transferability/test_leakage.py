"""Target leakage: a student distilled on a dataset is left out of that dataset's evaluations
by default (and of its twin's, the same images), and flagged when included anyway."""

import importlib
import re

import pytest
import timm

from tests.builders import colours_dataset, saved_checkpoint
from transferability.forms import EvaluationForm
from transferability.leakage import leakage_cautions, leaked_checkpoints
from transferability.models import Evaluation, Status, Transfer
from workers.transfers import save_distilled
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def colours(owner, tmp_path):
    return colours_dataset(owner, tmp_path, "colours")


@pytest.fixture
def twin(owner, tmp_path):
    """The same images uploaded again under another name: the same content hash."""
    return colours_dataset(owner, tmp_path, "colours-again")


@pytest.fixture
def shapes(owner, tmp_path):
    from tests.builders import image_folder_zip
    from transferability.datasets import create_target_dataset

    archive = image_folder_zip(tmp_path / "shapes.zip", {"round": 6, "square": 6}, seed=9)
    return create_target_dataset(owner, "shapes", archive)


@pytest.fixture
def teacher():
    return saved_checkpoint("teacher-resnet", "test_resnet", seed=1, source_top1=81.5)


@pytest.fixture
def plain():
    return saved_checkpoint("plain-vit", "test_vit", seed=3)


def distilled(owner, dataset, teacher, student, accuracy=92.14) -> Checkpoint:
    """A student saved by the transfer job's own code, as if distilled on ``dataset``."""
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.DONE)
    transfer = Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=teacher,
                                       student=student)
    model = timm.create_model(student.architecture, pretrained=False,
                              num_classes=dataset.num_classes)
    report = {"delta": {"accuracy_after": accuracy}, "recipe": {"epochs": 1}}
    checkpoint = save_distilled(transfer, model, report)
    Transfer.objects.filter(pk=transfer.pk).update(status=Status.DONE,
                                                   result_checkpoint=checkpoint)
    return checkpoint


@pytest.fixture
def student(owner, colours, teacher, plain):
    return distilled(owner, colours, teacher, plain)


def checkbox(page: str, checkpoint: Checkpoint) -> str:
    """The picker's checkbox for ``checkpoint`` with its label's text, as HTML."""
    found = re.search(r'<label[^>]*><input type="checkbox" name="checkpoints" value="%d"'
                      r'[^>]*>.*?</label>' % checkpoint.pk, page, re.S)
    assert found, f"no checkbox for {checkpoint.name}"
    return found.group(0)


def test_the_lineage_names_the_dataset_and_keeps_target_accuracy_out_of_source_top1(
        owner, colours, teacher, plain, student):
    lineage = student.recipe["lineage"]
    assert lineage["trained_on"] == [{"id": colours.pk, "name": "colours",
                                      "content_hash": colours.content_hash}]
    assert lineage["target_top1"] == 92.14 and student.target_top1 == 92.14
    assert student.source_top1 is None  # a target accuracy is not a source one
    assert student.trained_on_hashes == {colours.content_hash}
    assert student.trained_on(colours) is not None
    assert teacher.trained_on(colours) is None and teacher.trained_on_datasets == []


def test_a_student_of_a_student_inherits_what_its_parent_was_trained_on(
        owner, colours, shapes, teacher, student):
    grandchild = distilled(owner, shapes, teacher, student)
    assert [(d["name"], d.get("via")) for d in grandchild.trained_on_datasets] == [
        ("shapes", None), ("colours", student.name)]
    assert grandchild.trained_on(colours)["via"] == student.name


def test_an_older_lineage_is_read_through_its_hash_or_its_evaluation(owner, colours, twin,
                                                                     shapes, student):
    lineage = student.recipe["lineage"]
    old = {k: v for k, v in lineage.items() if k not in ("trained_on", "dataset_id")}
    student.recipe = {"lineage": old}
    assert student.trained_on(twin) is not None and student.trained_on(shapes) is None
    without_hash = {k: v for k, v in old.items() if k != "dataset_hash"}
    student.recipe = {"lineage": without_hash}  # only the evaluation says which dataset
    assert student.trained_on_hashes == {colours.content_hash}
    assert student.trained_on(colours) is not None and student.trained_on(shapes) is None


def test_the_form_leaves_the_student_unticked_on_its_dataset_and_its_twin(
        owner, client, colours, twin, shapes, teacher, plain, student):
    assert twin.content_hash == colours.content_hash != shapes.content_hash
    client.force_login(owner)
    for dataset in (colours, twin):
        form = EvaluationForm(user=owner, dataset=dataset)
        assert set(form.initial["checkpoints"]) == {teacher, plain}
        page = client.get(dataset.get_absolute_url()).content.decode()
        box = checkbox(page, student)
        assert " checked" not in box and "trained on this data" in box
        assert " checked" in checkbox(page, teacher)
        assert "trained on this data" not in checkbox(page, teacher)
    # Elsewhere it is a checkpoint like any other.
    assert set(EvaluationForm(user=owner, dataset=shapes).initial["checkpoints"]) == {
        teacher, plain, student}
    box = checkbox(client.get(shapes.get_absolute_url()).content.decode(), student)
    assert " checked" in box and "trained on this data" not in box


def test_ticking_the_student_anyway_evaluates_it_with_a_warning(owner, client, colours,
                                                                teacher, student,
                                                                sent_tasks):
    client.force_login(owner)
    response = client.post(colours.get_absolute_url(), {
        "checkpoints": [teacher.pk, student.pk], "correctness_source": "target"})
    assert response.status_code == 302, response.content.decode()[:2000]
    evaluation = Evaluation.objects.exclude(status=Status.DONE).get()
    assert leaked_checkpoints(evaluation) == {student.name: "distilled on this dataset"}
    page = client.get(response["Location"]).content.decode()
    warning = re.search(r'<p class="warning" id="leakage-warning">(.*?)</p>', page, re.S)
    assert warning and f"<strong>{student.name}</strong>" in warning.group(1)
    assert f"<strong>{teacher.name}</strong>" not in warning.group(1)
    row = re.search(r'<tr data-result="\d+" data-checkpoint="%s">(.*?)</tr>'
                    % re.escape(student.name), page, re.S).group(1)
    assert 'class="tag leak"' in row
    other = re.search(r'<tr data-result="\d+" data-checkpoint="%s">(.*?)</tr>'
                      % re.escape(teacher.name), page, re.S).group(1)
    assert 'class="tag leak"' not in other


def test_the_api_leaves_the_student_out_of_all_and_says_so(api, colours, twin, shapes,
                                                           teacher, plain, student,
                                                           sent_tasks):
    for dataset in (colours, twin):
        response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                            format="json")
        assert response.status_code == 202, response.content
        body = response.json()
        assert {r["checkpoint"]["name"] for r in body["results"]} == {teacher.name, plain.name}
        assert list(body["left_out"]) == [student.name]
        assert "distilled on" in body["left_out"][student.name]
        assert body["leakage"] == {}
    body = api.post("/api/evaluations/", {"dataset": shapes.pk, "checkpoints": "all"},
                    format="json").json()
    assert student.name in {r["checkpoint"]["name"] for r in body["results"]}
    assert body["left_out"] == {} and body["leakage"] == {}


def test_all_is_refused_when_every_checkpoint_was_trained_on_the_dataset(
        api, colours, teacher, plain, student, sent_tasks):
    Checkpoint.objects.exclude(pk=student.pk).update(enabled=False)
    response = api.post("/api/evaluations/", {"dataset": colours.pk, "checkpoints": "all"},
                        format="json")
    assert response.status_code == 400
    assert "trained on this dataset" in response.json()["checkpoints"][0]
    assert not Evaluation.objects.exclude(status=Status.DONE).exists()


def test_naming_the_student_in_the_api_warns_in_the_payload(api, twin, teacher, student,
                                                            sent_tasks):
    response = api.post("/api/evaluations/", {"dataset": twin.pk,
                                              "checkpoints": [teacher.name, student.name]},
                        format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["left_out"] == {}
    assert body["leakage"] == {student.name: "distilled on colours, the same images "
                                             "(identical content hash)"}
    assert api.get(body["url"]).json()["leakage"] == body["leakage"]


def test_the_recommendation_can_say_so():
    leakage = {"a": "distilled on this dataset", "b": "distilled on this dataset"}
    cautions = leakage_cautions(leakage, recommended="a")
    assert cautions[0].startswith("a was trained on this data (distilled on this dataset)")
    assert "1 other checkpoint (b) was trained on this data" in cautions[1]
    assert leakage_cautions({}, recommended="a") == []


def test_the_zoo_shows_a_target_accuracy_as_such(owner, client, colours, teacher, student):
    client.force_login(owner)
    page = client.get("/zoo/").content.decode()
    row = re.search(r"<tr><td><a [^>]*>%s</a>.*?</tr>" % re.escape(student.name), page,
                    re.S).group(0)
    assert "92.1 % on colours" in row and 'class="tag target"' in row
    teacher_row = re.search(r"<tr><td><a [^>]*>%s</a>.*?</tr>" % re.escape(teacher.name),
                            page, re.S).group(0)
    assert "81.5" in teacher_row and "target acc." not in teacher_row
    assert "its held-out accuracy on the dataset it was distilled on" in page  # the tooltip
    card = client.get(f"/zoo/{student.pk}/").content.decode()
    assert 'id="distilled-on"' in card and "92.1 % held-out" in card
    assert "Source data" not in card


def test_the_migration_moves_old_students_target_accuracy_and_records_their_dataset(
        owner, colours, teacher, plain, student):
    from django.apps import apps

    lineage = student.recipe["lineage"]
    old = {k: v for k, v in lineage.items()
           if k not in ("trained_on", "dataset_id", "target_top1")}
    Checkpoint.objects.filter(pk=student.pk).update(recipe={**student.recipe, "lineage": old},
                                                    source_top1=92.14)
    Transfer.objects.filter(result_checkpoint=student).update(
        delta={"accuracy_after": 92.1449})
    migration = importlib.import_module("zoo.migrations.0004_distilled_lineage")
    migration.record_what_students_were_trained_on(apps, None)
    student.refresh_from_db()
    assert student.source_top1 is None and student.target_top1 == 92.14
    assert student.recipe["lineage"]["trained_on"] == lineage["trained_on"]
    assert student.recipe["lineage"]["dataset_id"] == colours.pk
    teacher.refresh_from_db()
    assert teacher.source_top1 == 81.5  # the shared zoo is left alone
    migration.target_accuracy_back_into_source_top1(apps, None)
    student.refresh_from_db()
    assert student.source_top1 == 92.14
