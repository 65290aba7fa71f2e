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

Several teachers (section 4 of the paper, its ``main_multidist.py``) in three forms, run by
:func:`multi_teacher_transfer`:

- ``sequential``: KL+DP with each teacher in turn; before each, the frozen reference s0 is
  reset to the current student and the optimiser is made anew;
- ``parallel``: one run in which every sample is distilled from whichever of s0 and all the
  teachers is the most confident (:func:`choose_targets`: the highest probability of the
  true class, or the highest top probability without labels; ties to s0, then to the
  earlier teacher);
- ``soup``: a separate single-teacher run from the same initial student per teacher, then
  the uniform average of their weights (:func:`soup`).

:func:`kl_dp_transfer` runs the whole procedure on a target task: both networks get a head
for the target classes (a linear probe fitted on their frozen features of the train split,
folded into a ``torch.nn.Linear``), the student is trained with :func:`kl_dp_loss` on the
train split, and the held-out split says what changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .transfer_recipe import MODES, ORDERS, TransferRecipe

__all__ = ["kl_dp_mask", "kl_dp_loss", "choose_targets", "transfer_delta", "flips_against",
           "probe_head", "with_target_head", "kl_dp_transfer", "multi_teacher_transfer",
           "soup", "TransferRecipe", "Teacher", "Cancelled", "MODES", "ORDERS"]


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


def choose_targets(candidate_logits: torch.Tensor, labels: torch.Tensor | None = None,
                   temperature: float = 1.0) -> torch.Tensor:
    """Which candidate guides each sample: K x B x C logits (index 0 the frozen initial
    student s0, then the teachers) -> B indices of the most confident candidate, on the true
    class (``labels``) or on its own top class. Ties go to the lower index, so with one
    teacher this is :func:`kl_dp_mask` (the teacher only where strictly more confident)."""
    with torch.no_grad():
        probabilities = F.softmax(candidate_logits.detach() / temperature, dim=2)
        if labels is None:
            confidence = probabilities.max(dim=2).values
        else:
            index = labels.long().view(1, -1, 1).expand(probabilities.shape[0], -1, 1)
            confidence = probabilities.gather(2, index).squeeze(2)
        # argmax returns the first of equal maxima: the lower index wins a tie.
        return confidence.argmax(dim=0)


class Cancelled(Exception):
    """The transfer was cancelled: stop at the next batch and keep nothing."""


@dataclass
class Teacher:
    """A teacher as the transfer sees it: its name, network, pixels and normalisation."""

    name: str
    model: torch.nn.Module
    pixels: object
    norm: tuple


class _Normalised:
    """uint8 pixels (N x 3 x H x W, array or memory map) -> normalised float batches."""

    def __init__(self, pixels, mean, std, device):
        self.pixels, self.device = pixels, device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, index: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.pixels[index])).to(self.device)
        return (batch.float() - self.mean) / self.std


def _outputs(model, inputs: _Normalised, index: np.ndarray, pre_logits: bool,
             precision=None) -> torch.Tensor:
    out = []
    model.eval()
    with torch.inference_mode(), (precision.autocast() if precision else nullcontext()):
        for start in range(0, len(index), 256):
            x = inputs(index[start:start + 256])
            features = model.forward_features(x)
            out.append(model.forward_head(features, pre_logits=pre_logits).float().cpu())
    return torch.cat(out)


class _Task:
    """The target task on one device: labels, splits, the student's inputs."""

    def __init__(self, labels, train, test, student_pixels, student_norm, device,
                 precision=None):
        from .precision import MixedPrecision

        self.precision = precision or MixedPrecision(device)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.train, self.test = np.asarray(train), np.asarray(test)
        self.n_classes = int(self.labels.max()) + 1
        self.y = torch.as_tensor(self.labels)
        self.device = torch.device(device)
        self.student_in = _Normalised(student_pixels, *student_norm, self.device)
        self.everything = np.arange(self.labels.size)

    def probed(self, model, inputs) -> tuple[torch.Tensor, tuple]:
        """A frozen network's target logits for every image, through a linear probe fitted
        on its train-split pre-logits, and that head."""
        features = _outputs(model.to(self.device), inputs, self.everything, pre_logits=True,
                            precision=self.precision)
        head = probe_head(features[self.train].numpy(), self.labels[self.train],
                          self.n_classes)
        return features @ head[0].T + head[1], head

    def logits(self, model) -> torch.Tensor:
        """The student-shaped ``model``'s logits (its target head) for every image."""
        return _outputs(model, self.student_in, self.everything, pre_logits=False,
                        precision=self.precision)

    def right(self, logits: torch.Tensor) -> np.ndarray:
        return (logits[self.test].argmax(1) == self.y[self.test]).numpy()


def _distil(task: _Task, student: torch.nn.Module, candidates: list[torch.Tensor],
            recipe: TransferRecipe, supervised: bool, seed: int, progress) -> dict:
    """Train ``student`` (in place) with KL+DP towards whichever candidate (index 0 the
    frozen reference, then teachers; N x C logits each) guides each sample. A new optimiser
    and schedule; batch-norm statistics kept. Returns the guiding counts per candidate and
    class and the last loss."""
    torch.manual_seed(seed)
    student.train()
    # Batch-norm statistics stay as they were: the target head was fitted on features made
    # with them, and letting them drift to the target's batches moved accuracy by tens of
    # points whatever the teacher taught (the same change with and without labels).
    for module in student.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimiser = torch.optim.AdamW(student.parameters(), lr=recipe.learning_rate,
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(task.train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, total))
    stacked = torch.stack(candidates)  # K x N x C
    guided = np.zeros((len(candidates), task.n_classes), dtype=np.int64)
    order = np.random.default_rng(seed)
    done, loss = 0, None
    for _ in range(recipe.epochs):
        shuffled = task.train[order.permutation(len(task.train))]
        for start in range(0, len(shuffled), recipe.batch_size):
            index = shuffled[start:start + recipe.batch_size]
            z = stacked[:, index].to(task.device)
            labels = task.y[index].to(task.device)
            chosen = choose_targets(z, labels if supervised else None, recipe.temperature)
            target = z[chosen, torch.arange(len(index), device=task.device)]
            # KL towards the chosen candidate's distribution: with one teacher, exactly
            # kl_dp_loss (its partition is choose_targets with two candidates).
            with task.precision.autocast():
                batch_loss = _kl(student(task.student_in(index)), target, recipe.temperature)
            optimiser.zero_grad(set_to_none=True)
            if task.precision.step(batch_loss, optimiser):  # False: skipped, schedule waits
                schedule.step()
            np.add.at(guided, (chosen.cpu().numpy(), task.labels[index]), 1)
            loss = float(batch_loss.detach())
            done += 1
            if progress:
                progress(done, total)
    student.eval()
    return {"guided": guided, "final_loss": loss}


def _kl(student_logits, target_logits, temperature: float) -> torch.Tensor:
    log_target = F.log_softmax(target_logits.detach() / temperature, dim=1)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, log_target, reduction="batchmean",
                    log_target=True) * temperature**2


def soup(students: list[torch.nn.Module]) -> torch.nn.Module:
    """The uniform average of the weights of students of one architecture (the integer
    buffers, batch-norm's counters, are the first student's)."""
    if not students:
        raise ValueError("a soup needs at least one student")
    states = [s.state_dict() for s in students]
    if any(state.keys() != states[0].keys() for state in states):
        raise ValueError("the students of a soup must share one architecture")
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(0) \
                .to(value.dtype)
        else:
            averaged[key] = value.clone()
    mixed = copy.deepcopy(students[0])
    mixed.load_state_dict(averaged)
    return mixed.eval()


def _step_report(task: _Task, name: str, model, before_right, teachers_right: dict,
                 seconds: float, guided=None, extra=None) -> dict:
    after_right = task.right(task.logits(model))
    report = {
        "teacher": name,
        "accuracy": float(after_right.mean() * 100.0),
        "delta": transfer_delta(before_right, after_right),
        "flips": {t: flips_against(after_right, right) for t, right in teachers_right.items()},
        "seconds": round(seconds, 3),
    }
    if guided is not None:
        report["guided"] = guided
    return report | (extra or {})


def multi_teacher_transfer(
    teachers: list[Teacher],
    student: torch.nn.Module,
    student_pixels,
    labels,
    train: np.ndarray,
    test: np.ndarray,
    *,
    student_norm: tuple,
    mode: str = "sequential",
    order: str = "ascending",
    supervised: bool = True,
    recipe: TransferRecipe = TransferRecipe(),
    seed: int = 0,
    device="cpu",
    progress: Callable[[int, int, int], None] | None = None,
    on_plan: Callable[[list[str]], None] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    precision=None,
) -> tuple[torch.nn.Module, dict]:
    """Transfer the knowledge of one or more teachers into the student (module docstring).

    ``mode``: sequential, parallel or soup; ``order`` (sequential): the teachers by their
    held-out accuracy, ascending (the paper's default) or descending. ``progress(step,
    done, total)`` is called after every batch (``step`` counts from 0); an exception it
    raises (:class:`Cancelled`) stops the transfer before anything is returned.
    ``on_plan(names)``: the teachers in the order they will be used, once their accuracies
    are known; ``on_step(index, step)``: each step's report as soon as it is done.
    ``precision``: a :class:`~.precision.MixedPrecision`; by default autocast on CUDA,
    float32 elsewhere (the report's ``precision`` says which).

    Returns the trained student (eval mode, CPU, its classifier the target head) and a
    JSON-friendly report: ``steps`` (one per teacher, or per single-teacher run of a soup,
    then the soup itself: teacher, held-out accuracy, ``delta`` against the initial
    student, ``flips`` against every teacher, seconds, and for the parallel form
    ``guided``: per candidate (s0 first) and class, how many train samples it guided),
    the whole transfer's ``delta``, ``flips_before``/``flips_after`` against every teacher,
    the teachers' accuracies and order, the recipe.
    """
    import time

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    if not teachers:
        raise ValueError("give at least one teacher")
    task = _Task(labels, train, test, student_pixels, student_norm, device, precision)
    student = student.to(task.device)

    teacher_logits, teachers_right = {}, {}
    for teacher in teachers:
        inputs = _Normalised(teacher.pixels, *teacher.norm, task.device)
        teacher_logits[teacher.name], _ = task.probed(teacher.model, inputs)
        teachers_right[teacher.name] = task.right(teacher_logits[teacher.name])
    accuracy = {name: float(right.mean() * 100.0) for name, right in teachers_right.items()}
    teachers = sorted(teachers, key=lambda t: accuracy[t.name], reverse=order == "descending") \
        if mode == "sequential" else list(teachers)
    if on_plan:
        on_plan([t.name for t in teachers])

    initial_logits, head = task.probed(student, task.student_in)
    initial = with_target_head(student, *head).to(task.device).eval()
    before_right = task.right(initial_logits)

    def reporting(step: int):
        return (lambda done, total: progress(step, done, total)) if progress else None

    steps = []

    def one_teacher(model, anchor_logits, i: int, teacher: Teacher) -> None:
        """Distil one teacher into ``model`` (guided against ``anchor_logits``): a step."""
        started = time.perf_counter()
        out = _distil(task, model, [anchor_logits, teacher_logits[teacher.name]], recipe,
                      supervised, seed + i, reporting(i))
        steps.append(_step_report(task, teacher.name, model, before_right, teachers_right,
                                  time.perf_counter() - started,
                                  extra={"guided_share": _share(out["guided"]),
                                         "final_loss": out["final_loss"]}))
        _done(steps, on_step)

    if mode == "sequential":
        current, reference_logits = copy.deepcopy(initial), initial_logits
        for i, teacher in enumerate(teachers):
            one_teacher(current, reference_logits, i, teacher)
            reference_logits = task.logits(current)  # s0 := the current student
        trained = current
    elif mode == "parallel":
        started = time.perf_counter()
        trained = copy.deepcopy(initial)
        out = _distil(task, trained, [initial_logits] + [teacher_logits[t.name]
                                                          for t in teachers],
                      recipe, supervised, seed, reporting(0))
        steps.append(_step_report(
            task, " + ".join(t.name for t in teachers), trained, before_right, teachers_right,
            time.perf_counter() - started,
            guided={"candidates": ["initial student"] + [t.name for t in teachers],
                    "per_class": out["guided"].tolist()}))
        _done(steps, on_step)
    else:
        singles = []
        for i, teacher in enumerate(teachers):
            single = copy.deepcopy(initial)
            one_teacher(single, initial_logits, i, teacher)
            singles.append(single)
        started = time.perf_counter()
        trained = soup(singles)
        steps.append(_step_report(task, "soup", trained, before_right, teachers_right,
                                  time.perf_counter() - started))
        _done(steps, on_step)
    after_right = task.right(task.logits(trained))
    report = {
        "mode": mode, "order": order if mode == "sequential" else None,
        "teachers": [t.name for t in teachers],
        "steps": steps,
        "delta": transfer_delta(before_right, after_right),
        "flips_before": {t: flips_against(before_right, r) for t, r in teachers_right.items()},
        "flips_after": {t: flips_against(after_right, r) for t, r in teachers_right.items()},
        "teacher_accuracy": accuracy,
        "supervised": supervised,
        "train": int(len(task.train)), "test": int(len(task.test)),
        "recipe": asdict(recipe), "precision": task.precision.name,
    }
    return trained.cpu().eval(), report


def _done(steps: list, on_step) -> None:
    if on_step:
        on_step(len(steps) - 1, steps[-1])


def _share(guided: np.ndarray) -> float:
    """The share of guided samples that the teacher (index 1) guided."""
    total = guided.sum()
    return float(guided[1:].sum() / total) if total else 0.0


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
    precision=None,
) -> tuple[torch.nn.Module, dict]:
    """Transfer one teacher's complementary knowledge into the student on a target task.

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
    trained, report = multi_teacher_transfer(
        [Teacher("teacher", teacher, teacher_pixels, teacher_norm)], student, student_pixels,
        labels, train, test, student_norm=student_norm, mode="sequential",
        supervised=supervised, recipe=recipe, seed=seed, device=device,
        progress=(lambda step, done, total: progress(done, total)) if progress else None,
        precision=precision)
    step = report["steps"][0]
    return trained, {
        "delta": report["delta"],
        "flips_before": report["flips_before"]["teacher"],
        "flips_after": report["flips_after"]["teacher"],
        "teacher_accuracy": report["teacher_accuracy"]["teacher"],
        "teacher_guided": step["guided_share"],
        "supervised": supervised,
        "train": report["train"], "test": report["test"],
        "recipe": report["recipe"], "precision": report["precision"],
    }
