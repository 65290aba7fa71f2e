"""True transfer accuracy, the pure functions: the split, fine-tuning, the probe."""

import numpy as np
import pytest
import timm
import torch

from transferability.ground_truth import (FinetuneRecipe, bracketed_search,
                                          finetune_accuracy, probe_accuracy_on_split,
                                          repeat_summary, standard_error, truth_split)


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


def test_fine_tuning_learns_the_target_chosen_on_validation_with_every_run_kept():
    pixels, labels = colour_pixels()
    train, test = truth_split(labels, 0.3)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    recipe = FinetuneRecipe(learning_rates=(3e-3, 1e-5), epochs=3, batch_size=16,
                            max_extensions=1)
    result = finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                               std=[0.25] * 3, recipe=recipe,
                               progress=lambda d, t: steps.append((d, t)))
    tried = {run["learning_rate"] for run in result["runs"]}
    # The upper edge won the grid, so one step beyond it was tried (the bound is 1).
    assert tried == {3e-3, 1e-5, 3e-2}
    assert len(result["runs"]) == 3 * 3 or any(r["diverged"] for r in result["runs"])
    chosen = next(r for r in result["runs"] if r["learning_rate"] == result["chosen"][
        "learning_rate"] and r["epochs"] == result["chosen"]["epochs"])
    assert result["accuracy"] == chosen["test_accuracy"] >= 90.0  # three colours: easy
    assert chosen["val_accuracy"] == max(r["val_accuracy"] for r in result["runs"])
    assert result["fit"] + result["validation"] == result["train"] == len(train)
    assert result["test"] == len(test)
    assert steps[-1][0] == steps[-1][1]
    # The checkpoint itself is left as it was: each run trains a copy.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_selection_never_reads_the_test_part():
    pixels, labels = colour_pixels(12, seed=5)
    train, test = truth_split(labels, 0.3)
    recipe = FinetuneRecipe(learning_rates=(1e-3, 1e-4), epochs=2, batch_size=8,
                            max_extensions=1)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    honest = finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                               std=[0.25] * 3, recipe=recipe)
    # The same data with the test part's labels scrambled: the choice must not move.
    scrambled = labels.copy()
    scrambled[test] = (labels[test] + 1) % 3
    other = finetune_accuracy(model, pixels, scrambled, train, test, mean=[0.5] * 3,
                              std=[0.25] * 3, recipe=recipe)
    assert other["chosen"] == honest["chosen"]
    assert [r["val_accuracy"] for r in other["runs"]] == [r["val_accuracy"]
                                                          for r in honest["runs"]]
    assert [r["test_accuracy"] for r in other["runs"]] != [r["test_accuracy"]
                                                           for r in honest["runs"]]


def test_the_search_extends_at_an_edge_and_stops_at_its_bound():
    calls = []

    def rising(value):  # better and better: never bracketed
        calls.append(value)
        return value

    up = bracketed_search(rising, (1e-3, 1e-4), 10.0, 3)
    assert calls == [1e-3, 1e-4, 1e-2, 1e-1, 1.0]
    assert up["best"] == 1.0 and up["at_edge"] and up["extensions"] == 3

    down = bracketed_search(lambda v: -v, (1e-3, 1e-4), 10.0, 3)
    assert down["best"] == pytest.approx(1e-7) and down["at_edge"]

    peaked = bracketed_search(lambda v: -abs(np.log10(v) + 2), (1e-3, 1e-4), 10.0, 3)
    assert peaked["best"] == pytest.approx(1e-2)
    # 1e-2 won at the edge, 1e-1 was tried and lost: bracketed, one step used.
    assert not peaked["at_edge"] and peaked["extensions"] == 2
    with pytest.raises(ValueError, match="above 1"):
        bracketed_search(rising, (1.0,), 1.0, 3)


def test_fine_tuning_is_deterministic_for_a_seed():
    pixels, labels = colour_pixels(12, seed=3)
    train, test = truth_split(labels, 0.5)
    recipe = FinetuneRecipe(learning_rates=(1e-3,), epochs=1, batch_size=8)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)
    runs = [finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                              std=[0.25] * 3, recipe=recipe, seed=s) for s in (7, 7)]
    assert runs[0]["runs"] == runs[1]["runs"]


def test_repeats_give_a_mean_and_a_standard_error_across_seeds():
    repeats = [{"accuracy": a, "test": 100, "seed": s, "chosen": {"learning_rate": lr},
                "at_edge": edge, "runs": [{"learning_rate": lr, "epochs": 1}]}
               for a, s, lr, edge in ((80.0, 0, 1e-3, False), (84.0, 1, 1e-3, False),
                                      (82.0, 2, 1e-2, True))]
    summary = repeat_summary(repeats)
    assert summary["mean"] == summary["accuracy"] == pytest.approx(82.0)
    assert summary["standard_error"] == pytest.approx(2.0 / np.sqrt(3))
    assert summary["seeds"] == 3 and summary["at_edge"] is True
    assert summary["chosen"] == {"learning_rate": 1e-3}
    assert [r["seed"] for r in summary["runs"]] == [0, 1, 2]
    one = repeat_summary(repeats[:1])
    assert one["standard_error"] == pytest.approx(standard_error(80.0, 100))


def test_the_probe_variant_fits_on_train_and_scores_on_test():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = rng.standard_normal((60, 5)) + 4.0 * labels[:, None]
    train, test = truth_split(labels)
    result = probe_accuracy_on_split(features, labels, train, test)
    assert result["accuracy"] == 100.0 and result["test"] == len(test)
    # C chosen by cross-validation on the train part, every value tried kept.
    assert result["chosen"] == {"C": result["C"]}
    assert result["C"] in [r["C"] for r in result["runs"]] and len(result["runs"]) >= 3
    fixed = probe_accuracy_on_split(features, labels, train, test, C=1.0)
    assert fixed["C"] == 1.0 and "runs" not in fixed
    noise = probe_accuracy_on_split(rng.standard_normal((60, 5)), labels, train, test)
    assert noise["accuracy"] < 90.0
    with pytest.raises(ValueError, match="NaN"):
        probe_accuracy_on_split(np.full((60, 5), np.nan), labels, train, test)


def test_standard_error_is_binomial_in_points():
    assert standard_error(50.0, 100) == pytest.approx(5.0)
    assert standard_error(100.0, 10) == 0.0
