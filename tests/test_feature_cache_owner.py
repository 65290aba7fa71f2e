"""The feature cache is each user's own: evaluating images that someone else already
evaluated extracts them again and says nothing of the other user; a user's second
evaluation of the same images still comes from the cache."""

import pytest

from tests.builders import evaluated, image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset

pytestmark = pytest.mark.django_db

CLASSES = {"red": 6, "green": 6}


@pytest.fixture
def checkpoint(private_stores):
    return saved_checkpoint("tiny-resnet", "test_resnet")


def same_images(user, tmp_path, name):
    # The same seed: byte for byte the same images, whoever uploads them.
    return create_target_dataset(user, name, image_folder_zip(tmp_path / f"{name}.zip",
                                                              CLASSES, seed=3))


def only_result(evaluation):
    (result,) = evaluation.results.all()
    return result


def test_another_users_identical_images_are_not_reported_cached(owner, outsider, checkpoint,
                                                                tmp_path, outsider_api):
    alices = same_images(owner, tmp_path, "alices")
    mallorys = same_images(outsider, tmp_path, "mallorys")
    assert alices.content_hash == mallorys.content_hash

    first = only_result(evaluated(owner, alices, [checkpoint], ["tmi"]))
    theirs = evaluated(outsider, mallorys, [checkpoint], ["tmi"])

    result = only_result(theirs)
    assert not first.features_cached
    assert not result.features_cached and result.extraction_seconds > 0
    assert result.feature_key != first.feature_key
    body = outsider_api.get(f"/api/evaluations/{theirs.pk}/").json()
    assert [r["features_cached"] for r in body["results"]] == [False]


def test_the_same_users_second_evaluation_still_comes_from_the_cache(owner, checkpoint,
                                                                     tmp_path, api):
    dataset = same_images(owner, tmp_path, "alices")
    first = only_result(evaluated(owner, dataset, [checkpoint], ["tmi"]))
    # The same images uploaded again by the same user: theirs to reuse.
    again = evaluated(owner, same_images(owner, tmp_path, "alices-again"), [checkpoint],
                      ["tmi"])

    second = only_result(again)
    assert not first.features_cached
    assert second.features_cached and second.extraction_seconds == 0
    assert second.feature_key == first.feature_key
    body = api.get(f"/api/evaluations/{again.pk}/").json()
    assert [r["features_cached"] for r in body["results"]] == [True]
