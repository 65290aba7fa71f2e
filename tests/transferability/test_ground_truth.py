"""True transfer accuracy, the pure functions: the split, fine-tuning, the probe."""

import numpy as np
import pytest
import timm
import torch

from transferability.ground_truth import (FinetuneRecipe, finetune_accuracy,
                                          probe_accuracy_on_split, standard_error, truth_split)


def test_the_split_is_stratified_sorted_and_seeded():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    train, test = truth_split(labels, 0.3, seed=1)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 60
    assert np.bincount(labels[test]).tolist() == [3, 6, 9]
    again = truth_split(labels, 0.3, seed=1)
    other = truth_split(labels, 0.3, seed=2)
    assert np.array_equal(again[1], test) and not np.array_equal(other[1], test)


def test_the_split_keeps_every_class_on_both_sides_of_a_tiny_dataset():
    labels = np.array([0, 0, 1, 1, 2, 2])
    train, test = truth_split(labels, 0.1)
    assert sorted(labels[train]) == [0, 1, 2] and sorted(labels[test]) == [0, 1, 2]


@pytest.mark.parametrize("labels, message", [
    (np.zeros(5, dtype=int), "at least 2 classes"),
    (np.array([0, 0, 1]), "classes with fewer: [1]"),
])
def test_the_split_says_what_is_wrong(labels, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        truth_split(labels)


def colour_pixels(n_per_class=24, seed=0):
    """N x 3 x 16 x 16 uint8: class c brightens channel c, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    pixels = rng.integers(0, 120, (labels.size, 3, 16, 16)).astype(np.uint8)
    pixels[np.arange(labels.size), labels] += 120
    return pixels, labels


def test_fine_tuning_learns_the_target_and_keeps_every_run_of_the_grid():
    pixels, labels = colour_pixels()
    train, test = truth_split(labels, 0.3)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    recipe = FinetuneRecipe(learning_rates=(3e-3, 1e-5), epochs=4, batch_size=16)
    result = finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                               std=[0.25] * 3, recipe=recipe, progress=lambda d, t: steps.append((d, t)))
    grid = {run["learning_rate"]: run["accuracy"] for run in result["grid"]}
    assert set(grid) == {3e-3, 1e-5}
    assert grid[3e-3] >= 90.0  # three colours: easy to learn
    assert result["accuracy"] == max(grid.values())
    assert result["learning_rate"] == 3e-3
    assert (result["train"], result["test"]) == (len(train), len(test))
    assert steps[-1][0] == steps[-1][1] == 2 * 4 * 4  # ceil(51 / 16) = 4 steps an epoch
    # The checkpoint itself is left as it was: each run trains a copy.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fine_tuning_is_deterministic_for_a_seed():
    pixels, labels = colour_pixels(12, seed=3)
    train, test = truth_split(labels, 0.5)
    recipe = FinetuneRecipe(learning_rates=(1e-3,), epochs=1, batch_size=8)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)
    runs = [finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                              std=[0.25] * 3, recipe=recipe, seed=s) for s in (7, 7)]
    assert runs[0]["grid"] == runs[1]["grid"]


def test_the_probe_variant_fits_on_train_and_scores_on_test():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = rng.standard_normal((60, 5)) + 4.0 * labels[:, None]
    train, test = truth_split(labels)
    result = probe_accuracy_on_split(features, labels, train, test)
    assert result["accuracy"] == 100.0 and result["test"] == len(test)
    noise = probe_accuracy_on_split(rng.standard_normal((60, 5)), labels, train, test)
    assert noise["accuracy"] < 90.0
    with pytest.raises(ValueError, match="NaN"):
        probe_accuracy_on_split(np.full((60, 5), np.nan), labels, train, test)


def test_standard_error_is_binomial_in_points():
    assert standard_error(50.0, 100) == pytest.approx(5.0)
    assert standard_error(100.0, 10) == 0.0
