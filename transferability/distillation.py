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
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["kl_dp_mask", "kl_dp_loss", "transfer_delta"]


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
