import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transferability.distillation import kl_dp_loss, kl_dp_mask, transfer_delta

# Sample 0: teacher more confident on the true class 0.
# Sample 1: teacher more confident overall (class 2) but less on the true class 1.
# Sample 2: s0 more confident on both counts.
TEACHER = torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 5.0], [0.0, 1.0, 0.0]])
INITIAL = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 6.0]])
LABELS = torch.tensor([0, 1, 2])


def test_supervised_mask_picks_the_teacher_where_it_is_more_confident_on_the_true_class():
    p_t = F.softmax(TEACHER, dim=1)[torch.arange(3), LABELS]
    p_0 = F.softmax(INITIAL, dim=1)[torch.arange(3), LABELS]
    mask = kl_dp_mask(TEACHER, INITIAL, LABELS)
    assert mask.tolist() == [True, False, False]
    assert torch.equal(mask, p_t > p_0)


def test_unsupervised_mask_compares_max_probabilities():
    assert kl_dp_mask(TEACHER, INITIAL).tolist() == [True, True, False]


def test_ties_go_to_the_initial_student():
    assert kl_dp_mask(INITIAL, INITIAL, LABELS).tolist() == [False, False, False]


@pytest.mark.parametrize("labels", [LABELS, None])
def test_loss_is_zero_when_the_student_equals_the_chosen_target(labels):
    mask = kl_dp_mask(TEACHER, INITIAL, labels)
    student = torch.where(mask[:, None], TEACHER, INITIAL)
    assert kl_dp_loss(student, TEACHER, INITIAL, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_dp_loss(TEACHER, TEACHER, INITIAL, labels).item() > 0.01


def test_loss_matches_the_kl_divergence_by_hand():
    student = torch.tensor([[0.5, 0.2, -1.0], [1.0, 1.0, 1.0], [2.0, -2.0, 0.0]])
    target = F.softmax(torch.stack([TEACHER[0], INITIAL[1], INITIAL[2]]), dim=1)
    log_student = F.log_softmax(student, dim=1)
    expected = (target * (target.log() - log_student)).sum(dim=1).mean()
    assert kl_dp_loss(student, TEACHER, INITIAL, LABELS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_temperature_softens_both_sides_and_scales_by_its_square():
    student = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))
    t = 2.0
    mask = kl_dp_mask(TEACHER, INITIAL, LABELS, temperature=t)
    target = F.softmax(torch.where(mask[:, None], TEACHER, INITIAL) / t, dim=1)
    expected = (target * (target.log() - F.log_softmax(student / t, dim=1))).sum(1).mean() * t**2
    loss = kl_dp_loss(student, TEACHER, INITIAL, LABELS, temperature=t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_flows_only_to_the_student():
    student = torch.zeros(3, 3, requires_grad=True)
    teacher = TEACHER.clone().requires_grad_(True)
    initial = INITIAL.clone().requires_grad_(True)
    kl_dp_loss(student, teacher, initial, LABELS).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    assert initial.grad is None


def test_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="teacher_logits"):
        kl_dp_loss(torch.zeros(3, 3), torch.zeros(3, 4), INITIAL)
    with pytest.raises(ValueError, match="labels"):
        kl_dp_loss(torch.zeros(3, 3), TEACHER, INITIAL, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="temperature"):
        kl_dp_loss(torch.zeros(3, 3), TEACHER, INITIAL, temperature=0)


def test_transfer_delta_by_hand():
    before = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)   # 37.5 %
    after = torch.tensor([1, 0, 1, 1, 1, 0, 0, 1], dtype=torch.bool)  # 62.5 %
    delta = transfer_delta(before, after)
    assert delta == {
        "n_samples": 8,
        "accuracy_before": 37.5,
        "accuracy_after": 62.5,
        "delta_accuracy": 25.0,
        "positive_flips": 37.5,  # samples 2, 3, 7
        "negative_flips": 12.5,  # sample 1
    }


def test_transfer_delta_is_positive_minus_negative_flips():
    rng = np.random.default_rng(0)
    before, after = rng.random((2, 997)) < 0.7
    delta = transfer_delta(before, after)
    assert delta["delta_accuracy"] == pytest.approx(
        delta["positive_flips"] - delta["negative_flips"], abs=1e-12
    )


def test_transfer_delta_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="samples"):
        transfer_delta([True, False], [True])


# --- the whole transfer on a target task -------------------------------------------------

from transferability.distillation import (  # noqa: E402
    flips_against, kl_dp_transfer, probe_head, TransferRecipe, with_target_head)
from transferability.probes import make_probe  # noqa: E402


def test_flips_against_the_teacher():
    flips = flips_against([1, 1, 0, 0], [1, 0, 1, 0])
    assert flips == {"positive": 25.0, "negative": 25.0}
    with pytest.raises(ValueError, match="3 samples, teacher 2"):
        flips_against([1, 0, 1], [1, 0])


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_probe_head_predicts_what_the_probe_predicts(n_classes):
    rng = np.random.default_rng(n_classes)
    labels = np.repeat(np.arange(n_classes), 25)
    features = rng.standard_normal((labels.size, 6)) * [1, 5, 0.1, 2, 1, 30] + labels[:, None]
    weight, bias = probe_head(features, labels, n_classes)
    logits = torch.as_tensor(features, dtype=torch.float32) @ weight.T + bias
    expected = make_probe().fit(features, labels).predict(features)
    assert weight.shape == (n_classes, 6)
    assert (logits.argmax(1).numpy() == expected).mean() >= 0.99  # float32 ties aside


def test_a_head_needs_every_class_in_the_train_split():
    with pytest.raises(ValueError, match="2 of the 3 classes"):
        probe_head(np.zeros((4, 2)), np.array([0, 0, 1, 1]), 3)


def colour_images(n_per_class=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    pixels = rng.integers(0, 120, (labels.size, 3, 16, 16)).astype(np.uint8)
    pixels[np.arange(labels.size), labels] += 60 + rng.integers(0, 60, labels.size).astype(np.uint8)[:, None, None]
    return pixels, labels


def colour_transfer(**kwargs):
    """A ResNet teacher into a ViT student on three colours, two epochs: (pixels, labels,
    test, teacher, its weights before, trained student, report)."""
    import timm

    pixels, labels = colour_images()
    test = np.arange(0, labels.size, 3)
    train = np.setdiff1d(np.arange(labels.size), test)
    torch.manual_seed(0)
    teacher = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    student = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    norm = ([0.5] * 3, [0.25] * 3)
    trained, report = kl_dp_transfer(
        teacher, student, pixels, pixels, labels, train, test, teacher_norm=norm,
        student_norm=norm, recipe=TransferRecipe(epochs=2, learning_rate=1e-3, batch_size=8),
        **kwargs)
    return pixels, labels, test, teacher, teacher_before, trained, report


@pytest.mark.parametrize("supervised", [True, False])
def test_kl_dp_transfer_trains_the_student_and_reports_on_held_out_data(supervised):
    pixels, labels, test, teacher, teacher_before, trained, report = colour_transfer(
        supervised=supervised)
    delta = report["delta"]
    assert delta["n_samples"] == len(test) == report["test"]
    assert delta["delta_accuracy"] == pytest.approx(
        delta["positive_flips"] - delta["negative_flips"])
    for flips in (report["flips_before"], report["flips_after"]):
        assert set(flips) == {"positive", "negative"}
    # Before: the student's flips against the teacher match the two accuracies.
    assert (report["flips_before"]["positive"] - report["flips_before"]["negative"]
            == pytest.approx(delta["accuracy_before"] - report["teacher_accuracy"]))
    assert (report["flips_after"]["positive"] - report["flips_after"]["negative"]
            == pytest.approx(delta["accuracy_after"] - report["teacher_accuracy"]))
    assert 0.0 <= report["teacher_guided"] <= 1.0 and report["supervised"] is supervised
    assert trained.get_classifier().out_features == 3
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    # The trained student is a plain timm model: what it predicts is what was reported.
    with torch.inference_mode():
        x = (torch.from_numpy(pixels[test]).float() - 127.5) / 63.75
        right = (trained(x).argmax(1).numpy() == labels[test]).mean() * 100
    assert right == pytest.approx(delta["accuracy_after"])


def test_with_target_head_copies_the_model():
    import timm

    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    weight, bias = torch.ones(3, model.num_features), torch.zeros(3)
    headed = with_target_head(model, weight, bias)
    assert headed.get_classifier().out_features == 3 and model.get_classifier().out_features == 10


def test_kl_dp_keeps_the_students_batch_norm_statistics():
    import timm

    pixels, labels = colour_images(8)
    train, test = np.arange(0, 24, 2), np.arange(1, 24, 2)
    torch.manual_seed(1)
    student = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    teacher = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    norm = ([0.5] * 3, [0.25] * 3)
    trained, _ = kl_dp_transfer(teacher, student, pixels, pixels, labels, train, test,
                                teacher_norm=norm, student_norm=norm,
                                recipe=TransferRecipe(epochs=1, learning_rate=1e-3, batch_size=4))
    before = {k: v for k, v in student.state_dict().items() if "running_" in k}
    after = trained.state_dict()
    assert before and all(torch.equal(v, after[k].to(v.device)) for k, v in before.items())
    changed = [k for k, v in student.state_dict().items()
               if k.endswith("weight") and "running" not in k and k in after
               and v.shape == after[k].shape and not torch.equal(v, after[k])]
    assert changed  # the weights did train


# Several teachers -------------------------------------------------------------------------

def test_choose_targets_picks_the_most_confident_candidate_ties_to_the_lower_index():
    from transferability.distillation import choose_targets

    s0 = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    t1 = torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    t2 = torch.tensor([[5.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1])
    assert choose_targets(torch.stack([s0, t1, t2]), labels).tolist() == [2, 0, 1]
    # Two candidates: exactly kl_dp_mask.
    both = torch.stack([s0, t1])
    assert choose_targets(both, labels).bool().tolist() == kl_dp_mask(t1, s0, labels).tolist()
    assert choose_targets(both).bool().tolist() == kl_dp_mask(t1, s0).tolist()


def test_a_soup_is_the_uniform_average_of_the_weights():
    from transferability.distillation import soup

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    mixed = soup([a, b])
    assert torch.allclose(mixed.weight, (a.weight + b.weight) / 2)
    assert torch.allclose(mixed.bias, (a.bias + b.bias) / 2)
    with pytest.raises(ValueError, match="one architecture"):
        soup([a, torch.nn.Linear(2, 3, bias=False)])


def _three_teachers():
    import timm

    torch.manual_seed(0)
    from transferability.distillation import Teacher

    norm = ([0.5] * 3, [0.25] * 3)
    pixels, labels = colour_images()
    return [Teacher(f"t{i}", timm.create_model("test_resnet", pretrained=False, num_classes=0),
                    pixels, norm) for i in range(3)], pixels, labels, norm


@pytest.mark.parametrize("mode", ["sequential", "parallel", "soup"])
def test_every_form_reports_its_steps_flips_against_every_teacher(mode):
    import timm

    from transferability.distillation import multi_teacher_transfer

    teachers, pixels, labels, norm = _three_teachers()
    test = np.arange(0, labels.size, 3)
    train = np.setdiff1d(np.arange(labels.size), test)
    student = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)
    seen = []
    trained, report = multi_teacher_transfer(
        teachers, student, pixels, labels, train, test, student_norm=norm, mode=mode,
        recipe=TransferRecipe(epochs=1, learning_rate=1e-3, batch_size=8),
        progress=lambda step, done, total: seen.append((step, done, total)))
    steps = report["steps"]
    assert len(steps) == {"sequential": 3, "parallel": 1, "soup": 4}[mode]
    for step in steps:
        assert set(step["flips"]) == {"t0", "t1", "t2"}
        assert step["delta"]["n_samples"] == len(test)
    assert report["delta"]["accuracy_after"] == pytest.approx(steps[-1]["accuracy"])
    assert {s for s, _, _ in seen} == set(range({"parallel": 1}.get(mode, 3)))
    if mode == "sequential":  # ascending by the teachers' held-out accuracy
        accuracy = report["teacher_accuracy"]
        assert [accuracy[t] for t in report["teachers"]] == sorted(accuracy.values())
    if mode == "parallel":
        guided = np.array(steps[0]["guided"]["per_class"])
        assert guided.shape == (4, 3) and guided.sum() == len(train)
        assert steps[0]["guided"]["candidates"][0] == "initial student"
    with torch.inference_mode():
        x = (torch.from_numpy(pixels[test]).float() - 127.5) / 63.75
        right = (trained(x).argmax(1).numpy() == labels[test]).mean() * 100
    assert right == pytest.approx(report["delta"]["accuracy_after"])


def test_sequential_resets_the_reference_to_the_current_student(monkeypatch):
    """Before each teacher, s0 is the student as the previous step left it."""
    import timm

    from transferability import distillation

    teachers, pixels, labels, norm = _three_teachers()
    test = np.arange(0, labels.size, 3)
    train = np.setdiff1d(np.arange(labels.size), test)
    real, references, after = distillation._distil, [], []

    def recording(task, student, candidates, *args):
        references.append(candidates[0].clone())
        out = real(task, student, candidates, *args)
        after.append(task.logits(student))
        return out

    monkeypatch.setattr(distillation, "_distil", recording)
    student = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)
    distillation.multi_teacher_transfer(
        teachers[:2], student, pixels, labels, train, test, student_norm=norm,
        recipe=TransferRecipe(epochs=1, learning_rate=1e-2, batch_size=8))
    assert torch.allclose(references[1], after[0], atol=1e-5)
    assert not torch.allclose(references[1], references[0], atol=1e-3)


def test_a_cancel_raised_by_progress_stops_the_transfer():
    import timm

    from transferability.distillation import Cancelled, multi_teacher_transfer

    teachers, pixels, labels, norm = _three_teachers()
    student = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=16)

    def cancel(step, done, total):
        if step == 1:
            raise Cancelled("cancelled by its owner")

    with pytest.raises(Cancelled):
        test = np.arange(0, labels.size, 3)
        multi_teacher_transfer(teachers, student, pixels, labels,
                               np.setdiff1d(np.arange(labels.size), test), test,
                               student_norm=norm, mode="soup",
                               recipe=TransferRecipe(epochs=1, batch_size=8), progress=cancel)
