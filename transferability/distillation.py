"""Knowledge transfer with data partitioning (KL+DP), as pure torch functions.

Fantastic Gains (Roth et al., "Fantastic Gains and Where to Find Them: On the Existence and
Prospect of General Knowledge Transfer between Any Pretrained Model", ICLR 2024, arXiv
2310.17653), section 4: to transfer the complementary knowledge of a teacher t into a
student s without the student forgetting what it knew, a frozen copy s0 of the initial
student acts as a second teacher. Each sample is routed to whichever of t and s0 is more
confident:

- supervised variant (labels given): the teacher where softmax(z_t)[y] > softmax(z_s0)[y];
- unsupervised variant (no labels): the teacher where max softmax(z_t) > max softmax(z_s0);

and the student is trained with KL(softmax(target) || softmax(z_s)), the target logits being
z_t on the teacher's samples and z_s0 elsewhere (docs/science.md, section 5). Ties go to
s0 (the comparison is strict). The paper uses temperature 1; other temperatures scale the
loss by T^2 (Hinton et al., 2015) so gradients keep their magnitude.

Success is judged by :func:`transfer_delta` on held-out data.

:func:`kl_dp_transfer` runs the whole procedure on a target task: both networks get a head
for the target classes (a linear probe fitted on their frozen features of the train split,
folded into a ``torch.nn.Linear``), the student is trained with :func:`kl_dp_loss` on the
train split, and the held-out split says what changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["kl_dp_mask", "kl_dp_loss", "transfer_delta", "flips_against", "probe_head",
           "with_target_head", "kl_dp_transfer", "TransferRecipe"]


def _check_logits(student_logits, teacher_logits, initial_student_logits, labels) -> None:
    shape = student_logits.shape
    if student_logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (B x C), got shape {tuple(shape)}")
    for name, logits in (("teacher_logits", teacher_logits),
                         ("initial_student_logits", initial_student_logits)):
        if logits.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(logits.shape)}, student_logits {tuple(shape)}"
            )
    if labels is not None and labels.shape != (shape[0],):
        raise ValueError(f"labels must have shape ({shape[0]},), got {tuple(labels.shape)}")


def kl_dp_mask(
    teacher_logits: torch.Tensor,
    initial_student_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Boolean B vector: True where the teacher guides the sample, False where s0 does.

    With ``labels``: the teacher's probability of the true class is strictly higher than
    the initial student's. Without: the teacher's highest probability is strictly higher.
    """
    with torch.no_grad():
        p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
        p_initial = F.softmax(initial_student_logits.detach() / temperature, dim=1)
        if labels is None:
            return p_teacher.max(dim=1).values > p_initial.max(dim=1).values
        index = labels.long().unsqueeze(1)
        return p_teacher.gather(1, index).squeeze(1) > p_initial.gather(1, index).squeeze(1)


def kl_dp_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    initial_student_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL+DP distillation loss, averaged over the batch (Roth et al., ICLR 2024, sec. 4).

    Args:
        student_logits: B x C logits of the student being trained (gradients flow here).
        teacher_logits: B x C logits of the teacher (detached).
        initial_student_logits: B x C logits of the frozen initial student s0 (detached).
        labels: B true classes for the supervised partition, or None for the unsupervised
            one (max probabilities).
        temperature: softmax temperature; the loss is multiplied by temperature ** 2.

    Returns:
        Scalar tensor: mean over samples of KL(softmax(target / T) || softmax(z_s / T)) * T^2,
        target = z_t where :func:`kl_dp_mask` is True, else z_s0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    _check_logits(student_logits, teacher_logits, initial_student_logits, labels)
    teacher_logits = teacher_logits.detach()
    initial_student_logits = initial_student_logits.detach()
    mask = kl_dp_mask(teacher_logits, initial_student_logits, labels, temperature)
    target_logits = torch.where(mask.unsqueeze(1), teacher_logits, initial_student_logits)
    log_target = F.log_softmax(target_logits / temperature, dim=1)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    # kl_div(input, target) is KL(target || input) with input in log space.
    loss = F.kl_div(log_student, log_target, reduction="batchmean", log_target=True)
    return loss * temperature**2


def _as_bool_vector(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {array.shape}")
    if array.dtype != bool and not np.all((array == 0) | (array == 1)):
        raise ValueError(f"{name} must contain only booleans or 0/1 values")
    return array.astype(bool)


def transfer_delta(before_correct, after_correct) -> dict:
    """Did the transfer help? Per-sample correctness of the student before and after.

    Returns a dict of Python floats, all in % of the N held-out samples:
    ``accuracy_before``, ``accuracy_after``, ``delta_accuracy`` (after - before; the
    transfer succeeded when positive), ``positive_flips`` (right after, wrong before),
    ``negative_flips`` (wrong after, right before), and ``n_samples``. delta_accuracy equals
    positive_flips - negative_flips up to rounding.
    """
    before = _as_bool_vector(before_correct, "before_correct")
    after = _as_bool_vector(after_correct, "after_correct")
    if before.shape != after.shape:
        raise ValueError(f"before has {before.size} samples, after {after.size}")
    n = before.size
    n_before, n_after = int(before.sum()), int(after.sum())
    return {
        "n_samples": n,
        "accuracy_before": n_before * 100.0 / n,
        "accuracy_after": n_after * 100.0 / n,
        "delta_accuracy": (n_after - n_before) * 100.0 / n,
        "positive_flips": int(np.sum(after & ~before)) * 100.0 / n,
        "negative_flips": int(np.sum(before & ~after)) * 100.0 / n,
    }


def flips_against(student_correct, teacher_correct) -> dict:
    """The student's flips against the teacher, in % of samples: ``positive`` where the
    student is right and the teacher wrong, ``negative`` the other way round (the teacher's
    knowledge the student lacks)."""
    student = _as_bool_vector(student_correct, "student_correct")
    teacher = _as_bool_vector(teacher_correct, "teacher_correct")
    if student.shape != teacher.shape:
        raise ValueError(f"student has {student.size} samples, teacher {teacher.size}")
    n = student.size
    return {"positive": int(np.sum(student & ~teacher)) * 100.0 / n,
            "negative": int(np.sum(teacher & ~student)) * 100.0 / n}


def probe_head(features, labels, n_classes: int, C: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (n_classes x D) and bias of a linear layer equal to the fitted linear probe
    (standardisation folded in), so that its logits' argmax is the probe's prediction."""
    from .probes import make_probe

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    present = np.unique(labels)
    if present.size != n_classes:
        raise ValueError(f"the train split holds {present.size} of the {n_classes} classes")
    probe = make_probe(C=C).fit(features, labels)
    scaler, logistic = probe[0], probe[-1]
    coef, intercept = logistic.coef_, logistic.intercept_
    if coef.shape[0] == 1:  # two classes: sigma(w x + b) is the softmax of (0, w x + b)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = coef / scale
    bias = intercept - weight @ scaler.mean_
    return torch.as_tensor(weight, dtype=torch.float32), torch.as_tensor(bias, dtype=torch.float32)


def with_target_head(model: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor):
    """A copy of a timm ``model`` whose classifier is the given linear head."""
    model = copy.deepcopy(model)
    model.reset_classifier(weight.shape[0])
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear) or head.weight.shape != weight.shape:
        raise ValueError(f"{type(model).__name__} has no linear classifier of shape "
                         f"{tuple(weight.shape)}")
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return model


@dataclass(frozen=True)
class TransferRecipe:
    epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 64
    weight_decay: float = 0.05
    temperature: float = 1.0


class _Normalised:
    """uint8 pixels (N x 3 x H x W, array or memory map) -> normalised float batches."""

    def __init__(self, pixels, mean, std, device):
        self.pixels, self.device = pixels, device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.pixels[index])).to(self.device)
        return (batch.float() - self.mean) / self.std


def _outputs(model, inputs: _Normalised, index: np.ndarray, pre_logits: bool) -> torch.Tensor:
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(index), 256):
            x = inputs(index[start:start + 256])
            features = model.forward_features(x)
            out.append(model.forward_head(features, pre_logits=pre_logits).float().cpu())
    return torch.cat(out)


def kl_dp_transfer(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    teacher_pixels,
    student_pixels,
    labels,
    train: np.ndarray,
    test: np.ndarray,
    *,
    teacher_norm: tuple,
    student_norm: tuple,
    supervised: bool = True,
    recipe: TransferRecipe = TransferRecipe(),
    seed: int = 0,
    device="cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Transfer the teacher's complementary knowledge into the student on a target task.

    ``teacher`` and ``student`` are timm models; each sees its own preprocessing of the same
    images (``*_pixels`` uint8, ``*_norm`` = (mean, std) on the 0-1 scale). Both get a
    target head from a linear probe on their frozen train features; the student (every
    weight) is then trained with KL+DP towards the teacher and its own frozen initial copy
    s0, with labels (``supervised``) or without. Returns the trained student (in eval mode,
    on the CPU, its classifier the target head) and a JSON-friendly report on the held-out
    split: ``delta`` (:func:`transfer_delta` of the student after vs before),
    ``flips_before`` and ``flips_after`` (:func:`flips_against` the teacher), the teacher's
    accuracy and the share of train samples the teacher guided.
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    teacher_in = _Normalised(teacher_pixels, *teacher_norm, device)
    student_in = _Normalised(student_pixels, *student_norm, device)
    teacher, student = teacher.to(device), student.to(device)

    # One pass per network over every image: the heads are fitted on the train rows of the
    # pre-logits, and the frozen networks' logits are those pre-logits through their head.
    everything = np.arange(labels.size)
    logits, heads = {}, {}
    for name, model, inputs in (("teacher", teacher, teacher_in), ("student", student, student_in)):
        features = _outputs(model, inputs, everything, pre_logits=True)
        heads[name] = probe_head(features[train].numpy(), labels[train], n_classes)
        weight, bias = heads[name]
        logits[name] = features @ weight.T + bias
    teacher_logits, initial_logits = logits["teacher"], logits["student"]
    initial = with_target_head(student, *heads["student"]).to(device).eval()
    y = torch.as_tensor(labels)

    trained = copy.deepcopy(initial).train()
    # Batch-norm statistics stay as they were: the target head was fitted on features made
    # with them, and letting them drift to the target's batches moved accuracy by tens of
    # points whatever the teacher taught (the same change with and without labels).
    for module in trained.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimiser = torch.optim.AdamW(trained.parameters(), lr=recipe.learning_rate,
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, total))
    order = np.random.default_rng(seed)
    done, guided, losses = 0, 0, []
    for _ in range(recipe.epochs):
        shuffled = train[order.permutation(len(train))]
        for start in range(0, len(shuffled), recipe.batch_size):
            index = shuffled[start:start + recipe.batch_size]
            z_t, z_0 = teacher_logits[index].to(device), initial_logits[index].to(device)
            target = y[index].to(device) if supervised else None
            loss = kl_dp_loss(trained(student_in(index)), z_t, z_0, target, recipe.temperature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            guided += int(kl_dp_mask(z_t, z_0, target, recipe.temperature).sum())
            losses.append(float(loss.detach()))
            done += 1
            if progress:
                progress(done, total)
    after_logits = _outputs(trained, student_in, test, pre_logits=False)
    truth = y[test]
    teacher_right = (teacher_logits[test].argmax(1) == truth).numpy()
    before_right = (initial_logits[test].argmax(1) == truth).numpy()
    after_right = (after_logits.argmax(1) == truth).numpy()
    report = {
        "delta": transfer_delta(before_right, after_right),
        "flips_before": flips_against(before_right, teacher_right),
        "flips_after": flips_against(after_right, teacher_right),
        "teacher_accuracy": float(teacher_right.mean() * 100.0),
        "teacher_guided": guided / max(1, recipe.epochs * len(train)),
        "final_loss": losses[-1] if losses else None,
        "supervised": supervised,
        "train": int(len(train)), "test": int(len(test)),
        "recipe": asdict(recipe),
    }
    return trained.cpu().eval(), report
