"""Moving knowledge between checkpoints (KL+DP, docs/science.md section 5): requests.

``submit_transfer`` records a transfer from one or more teachers into a student on an
evaluation's target dataset, one step per teacher, and queues it (queue ``gpu``; the work is
in ``workers.transfers``); ``cancel_transfer`` stops one. ``suggest_pair`` names the pair the
evaluation page proposes: the top-ranked checkpoint as the student, and as teacher the
checkpoint with the most positive flips over it (the knowledge it lacks);
``propose_teachers`` (transferability.teacher_cover) a set of teachers for one student.
"""

from __future__ import annotations

import logging

import numpy as np

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from zoo.models import Checkpoint

from .models import Evaluation, Status, Transfer, TransferStep
from .submission import Conflict, SubmissionError, require_a_held_out_split

log = logging.getLogger(__name__)

TRANSFER_TASK = "workers.tasks.transfer_knowledge"


def _finished_checkpoint(evaluation: Evaluation, key, role: str):
    """A finished checkpoint of the evaluation, by id, name or object."""
    key = getattr(key, "pk", key)
    results = evaluation.results.select_related("checkpoint").filter(
        status=Status.DONE, checkpoint__in=Checkpoint.objects.visible_to(evaluation.owner))
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise SubmissionError(f"give the {role} as a checkpoint id or name")
    if isinstance(key, int) and not 0 < key < 2**63:
        key = ""  # names no row (and would overflow SQL)
    found = results.filter(**({"checkpoint_id": key} if isinstance(key, int)
                              else {"checkpoint__name": key})).first()
    if found is None:
        raise SubmissionError(f"{role} {key} is not a finished checkpoint of evaluation "
                              f"{evaluation.pk}")
    return found.checkpoint


MAX_TEACHERS = 8
# What the form and the API accept beside the paper's defaults (TransferRecipe).
EPOCHS = (1, 50)
LEARNING_RATES = (1e-6, 0.1)
TEMPERATURES = (0.1, 20.0)
CANCELLED = "cancelled by its owner"


def submit_transfer(owner, evaluation: Evaluation, teachers, student,
                    variant: str = Transfer.Variant.SUPERVISED, enqueue_work: bool = True, *,
                    mode: str = Transfer.Mode.SEQUENTIAL, order: str = Transfer.Order.ASCENDING,
                    epochs=None, learning_rate=None, temperature=None) -> Transfer:
    """Record and queue a transfer. ``teachers``: one checkpoint (id, name or object) or a
    list of them; ``mode`` and ``order`` as in :class:`Transfer`; ``epochs``,
    ``learning_rate``, ``temperature``: None for the paper's defaults."""
    if evaluation.owner_id != owner.pk:
        raise SubmissionError("that evaluation is not yours")
    if variant not in Transfer.Variant.values:
        raise SubmissionError(f"variant must be one of {', '.join(Transfer.Variant.values)}")
    if mode not in Transfer.Mode.values:
        raise SubmissionError(f"mode must be one of {', '.join(Transfer.Mode.values)}")
    if order not in Transfer.Order.values:
        raise SubmissionError(f"order must be one of {', '.join(Transfer.Order.values)}")
    recipe = {"epochs": _within(epochs, "epochs", EPOCHS, whole=True),
              "learning_rate": _within(learning_rate, "learning_rate", LEARNING_RATES),
              "temperature": _within(temperature, "temperature", TEMPERATURES)}
    if not evaluation.is_finished:
        raise Conflict("the evaluation is still running; transfer once it has finished")
    keys = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    if not keys:
        raise SubmissionError("give at least one teacher")
    if len(keys) > MAX_TEACHERS:
        raise SubmissionError(f"at most {MAX_TEACHERS} teachers in one transfer")
    chosen = [_finished_checkpoint(evaluation, key, "teacher") for key in keys]
    chosen = list({c.pk: c for c in chosen}.values())  # each once, in the order given
    student = _finished_checkpoint(evaluation, student, "student")
    if any(t.pk == student.pk for t in chosen):
        raise SubmissionError("the student cannot be one of its teachers")
    require_a_held_out_split(evaluation.dataset)
    with transaction.atomic():
        transfer = Transfer.objects.create(
            owner=owner, evaluation=evaluation, teacher=chosen[0], student=student,
            variant=variant, mode=mode, order=order,
            **{k: v for k, v in recipe.items() if v is not None})
        TransferStep.objects.bulk_create(
            [TransferStep(transfer=transfer, index=i, teacher=t) for i, t in enumerate(chosen)]
            + ([TransferStep(transfer=transfer, index=len(chosen))]
               if mode == Transfer.Mode.SOUP else []))
        if enqueue_work:
            transaction.on_commit(lambda: enqueue_transfer(transfer.pk))
    return transfer


def _within(value, name: str, bounds: tuple, whole: bool = False):
    """None, or ``value`` as a number within ``bounds``; else a SubmissionError naming it."""
    if value is None or value == "":
        return None
    low, high = bounds
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if whole:
            if number != int(number):
                raise ValueError
            number = int(number)
    except (TypeError, ValueError):
        kind = "a whole number" if whole else "a number"
        raise SubmissionError(f"{name} must be {kind} from {low:g} to {high:g}") from None
    if not low <= number <= high:
        raise SubmissionError(f"{name} must be from {low:g} to {high:g}, not {number:g}")
    return number


def cancel_transfer(transfer: Transfer) -> None:
    """Stop a transfer: its worker stops at the next batch and saves nothing."""
    with transaction.atomic():
        transfer = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.is_finished:
            raise Conflict(f"the transfer has already finished ({transfer.status})")
        now = timezone.now()
        Transfer.objects.filter(pk=transfer.pk).update(status=Status.FAILED, message=CANCELLED,
                                                      finished_at=now)
        transfer.steps.exclude(status__in=(Status.DONE, Status.FAILED)).update(
            status=Status.FAILED, message=CANCELLED)


def enqueue_transfer(transfer_id: int) -> None:
    from config.celery import app

    try:
        app.send_task(TRANSFER_TASK, args=(transfer_id,), queue="gpu")
    except Exception as exc:  # the broker is unreachable: say so instead of waiting forever
        log.exception("could not enqueue transfer %s", transfer_id)
        Transfer.objects.filter(pk=transfer_id, status=Status.PENDING).update(
            status=Status.FAILED, finished_at=timezone.now(),
            message=f"the task queue could not be reached: {exc}")


# A realised share of the teacher's flips is read from the site's finished transfers once
# there are this many; before that a suggestion needs a teacher more accurate than the student.
GAIN_HISTORY = 3


def realised_share(variant: str = Transfer.Variant.SUPERVISED) -> tuple[float | None, int]:
    """(median over the site's finished transfers of this variant of delta accuracy / the
    teacher's positive flips over the student before, how many); (None, n) below
    :data:`GAIN_HISTORY`. What a transfer has kept of the knowledge it was offered here."""
    shares = []
    for delta, flips in (Transfer.objects.filter(status=Status.DONE, variant=variant)
                         .values_list("delta", "flips_before")):
        offered = (flips or {}).get("negative")
        if delta and offered and delta.get("delta_accuracy") is not None:
            shares.append(delta["delta_accuracy"] / offered)
    if len(shares) < GAIN_HISTORY:
        return None, len(shares)
    return float(np.median(shares)), len(shares)


def suggest_pair(evaluation: Evaluation, rows, student: str | None = None,
                 variant: str = Transfer.Variant.SUPERVISED) -> dict | None:
    """The transfer the page proposes, or None when none is expected to help.

    Student: ``student`` (the page passes the recommended checkpoint), else the top-ranked.
    Teacher: the checkpoint with the most positive flips over it (the knowledge it lacks).
    Expected gain: the site's realised share of such flips (:func:`realised_share`) times
    these flips; no suggestion when it is not positive. Before the site has measured
    :data:`GAIN_HISTORY` transfers the gain is not estimated: only a teacher more accurate
    than the student is proposed, with the flips as the ceiling of the gain.

    Returns {"teacher", "student", "positive_flips", "expected_gain" (points or None),
    "basis"}.
    """
    report = evaluation.complementarity
    ranked = [r for r in rows if r.rank is not None]
    if not report or not (ranked or student):
        return None
    if student is None:
        student = min(ranked, key=lambda r: r.rank).checkpoint.name
    candidates = [p for p in report["pairs"] if p["b"] == student and p["positive_flips"] > 0]
    if not candidates:
        return None
    share, measured = realised_share(variant)
    if share is None:
        stronger = [p for p in candidates if p["positive_flips"] > p["negative_flips"]]
        if not stronger:
            return None
        best = max(stronger, key=lambda p: p["positive_flips"])
        return {"teacher": best["a"], "student": student,
                "positive_flips": best["positive_flips"], "expected_gain": None,
                "basis": f"not estimated yet: {measured} of the {GAIN_HISTORY} measured "
                         f"transfers it needs; the teacher is "
                         f"{best['positive_flips'] - best['negative_flips']:.1f} points more "
                         f"accurate, and at most {best['positive_flips']:.1f} points can be "
                         f"gained"}
    best = max(candidates, key=lambda p: p["positive_flips"])
    gain = share * best["positive_flips"]
    if gain <= 0:
        return None
    return {"teacher": best["a"], "student": student, "positive_flips": best["positive_flips"],
            "expected_gain": gain,
            "basis": f"{100 * share:.0f} % of the flips on offer, the median kept by the "
                     f"{measured} transfers measured on this site"}


def transfer_payload(transfer: Transfer, request=None) -> dict:
    url = reverse("api-transfer-detail", args=[transfer.pk])
    return {
        "id": transfer.pk,
        "url": request.build_absolute_uri(url) if request else url,
        "evaluation": transfer.evaluation_id,
        "teacher": transfer.teacher.name,
        "teachers": [t.name for t in transfer.teachers],
        "student": transfer.student.name,
        "variant": transfer.variant,
        "mode": transfer.mode,
        "order": transfer.order if transfer.mode == Transfer.Mode.SEQUENTIAL else None,
        "recipe": {"epochs": transfer.epochs, "learning_rate": transfer.learning_rate,
                   "temperature": transfer.temperature},
        "steps": [step_payload(step) for step in transfer.steps.all()],
        "status": transfer.status,
        "progress": round(transfer.progress, 4),
        "message": transfer.message,
        "delta": transfer.delta,
        "flips_before": transfer.flips_before,
        "flips_after": transfer.flips_after,
        "details": transfer.details,
        "checkpoint": transfer.result_checkpoint_id,
        "checkpoint_name": transfer.result_checkpoint.name if transfer.result_checkpoint else None,
        "created_at": transfer.created_at,
        "finished_at": transfer.finished_at,
    }


def step_payload(step: TransferStep) -> dict:
    return {
        "index": step.index,
        "teacher": step.teacher.name if step.teacher_id else None,
        "label": step.label,
        "status": step.status,
        "message": step.message,
        "progress": round(step.steps_done / step.steps_total, 4) if step.steps_total else (
            1.0 if step.status == Status.DONE else 0.0),
        "accuracy": step.accuracy,
        "delta": step.delta,
        "flips": step.flips,
        "seconds": step.seconds,
        "details": step.details,
    }
