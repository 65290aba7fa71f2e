"""Knowledge transfer work: distil a teacher into a student with KL+DP, save the result.

The split is the ground truth's (``truth_split``, 30 % held out, seed 0), so a transfer's
numbers sit beside the true accuracies of the same evaluation. The distilled student is
saved as a new local checkpoint whose recipe records its lineage. It is made from the
evaluation owner's data, so it is theirs: other users neither see nor evaluate it. Its
lineage names the datasets it was trained on, so that evaluating it on them again (target
leakage) is left out by default and flagged when asked for (``transferability.leakage``).
"""

import logging
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from safetensors.torch import save_file

from transferability.distillation import (Cancelled, Teacher, TransferRecipe,
                                          multi_teacher_transfer)
from transferability.ground_truth import truth_split
from transferability.leakage import trained_on_entries
from transferability.models import Status, Transfer, TransferStep
from transferability.transfers import CANCELLED
from zoo.loading import build_model
from zoo.models import Checkpoint
from zoo.weights import sha256_of_path

from . import healing
from .device import choose_device
from .extraction import cached_pixels
from .jobs import _reason, claim, dataset_samples

log = logging.getLogger(__name__)


def transfer_knowledge(transfer_id: int) -> None:
    if not claim(Transfer, transfer_id, "the worker stopped during this transfer"):
        return
    transfer = Transfer.objects.select_related("evaluation__dataset", "teacher", "student").get(
        pk=transfer_id)
    # A claim after a dead worker starts afresh: nothing of that attempt is kept.
    transfer.steps.update(status=Status.PENDING, message="", steps_done=0, steps_total=0,
                          accuracy=None, delta=None, flips=None, seconds=None, details={})
    started = time.perf_counter()
    runs = Runs(transfer)
    try:
        with healing.deadline():
            student_model, report = distil(transfer, runs)
        with transaction.atomic():  # cancelled at the last moment: still nothing saved
            if not Transfer.objects.select_for_update().filter(
                    pk=transfer.pk, status=Status.RUNNING).exists():
                raise Cancelled(CANCELLED)
            checkpoint = save_distilled(transfer, student_model, report)
            Transfer.objects.filter(pk=transfer.pk).update(
                status=Status.DONE, delta=report["delta"],
                flips_before=_first(report["flips_before"], transfer),
                flips_after=_first(report["flips_after"], transfer),
                details={k: v for k, v in report.items()
                         if k not in ("delta", "flips_before", "flips_after", "steps")}
                | {"seconds": time.perf_counter() - started,
                   "flips_before_all": report["flips_before"],
                   "flips_after_all": report["flips_after"]},
                result_checkpoint=checkpoint, finished_at=timezone.now())
    except Cancelled:
        log.info("transfer %s cancelled", transfer.pk)
        runs.fail_unfinished(CANCELLED)
    except Exception as exc:  # recorded on the row; the worker carries on
        log.exception("transfer %s failed", transfer.pk)
        reason = _reason(exc)
        runs.fail_current(reason)
        Transfer.objects.filter(pk=transfer.pk, status=Status.RUNNING).update(
            status=Status.FAILED, message=runs.describe(reason), finished_at=timezone.now())


def _first(flips: dict, transfer: Transfer) -> dict | None:
    """Against the first teacher asked for: the single-teacher fields kept as they were."""
    return flips.get(transfer.teacher.name)


class Runs:
    """The transfer's steps as the worker goes: progress, each step's figures as it ends,
    the cancel check before every batch, and which step a failure belongs to."""

    def __init__(self, transfer: Transfer):
        self.transfer = transfer
        self.steps = list(transfer.steps.select_related("teacher"))
        self.current: TransferStep | None = None
        self.last_write = 0.0

    def by_position(self, index: int) -> TransferStep:
        return self.steps[index]

    def plan(self, names: list[str]) -> None:
        """The order the teachers run in (sequential: by accuracy): the steps follow it."""
        by_name = {s.teacher.name: s for s in self.steps if s.teacher_id}
        ordered = [by_name[name] for name in names] + [s for s in self.steps if not s.teacher_id]
        with transaction.atomic():  # two passes: the (transfer, index) pairs stay unique
            for offset, step in enumerate(ordered):
                TransferStep.objects.filter(pk=step.pk).update(index=1000 + offset)
            for offset, step in enumerate(ordered):
                TransferStep.objects.filter(pk=step.pk).update(index=offset)
                step.index = offset
        self.steps = ordered

    def progress(self, index: int, done: int, total: int) -> None:
        """After every batch: stop if the transfer was cancelled; write at most once a
        second (and at each step's end)."""
        healing.check_deadline()
        if not Transfer.objects.filter(pk=self.transfer.pk, status=Status.RUNNING).exists():
            raise Cancelled(CANCELLED)
        step = self.steps[index]
        if self.current is not step:
            self.current = step
            TransferStep.objects.filter(pk=step.pk).update(status=Status.RUNNING)
        now = time.monotonic()
        if done == total or now - self.last_write >= 1.0:
            self.last_write = now
            runs = len([s for s in self.steps if s.teacher_id]) \
                if self.transfer.mode != Transfer.Mode.PARALLEL else 1
            TransferStep.objects.filter(pk=step.pk).update(steps_done=done, steps_total=total)
            Transfer.objects.filter(pk=self.transfer.pk).update(
                steps_done=index * total + done, steps_total=runs * total,
                heartbeat_at=timezone.now())

    def step_done(self, index: int, report: dict) -> None:
        step = self.steps[index] if self.transfer.mode != Transfer.Mode.PARALLEL else \
            self.steps[0]
        TransferStep.objects.filter(pk=step.pk).update(
            status=Status.DONE, accuracy=report["accuracy"], delta=report["delta"],
            flips=report["flips"], seconds=report["seconds"],
            details={k: v for k, v in report.items()
                     if k not in ("accuracy", "delta", "flips", "seconds", "teacher")})
        if self.transfer.mode == Transfer.Mode.PARALLEL:  # one run: every teacher's step
            TransferStep.objects.filter(transfer=self.transfer).exclude(pk=step.pk).update(
                status=Status.DONE)
        self.current = None

    def fail_current(self, reason: str) -> None:
        if self.current is not None:
            TransferStep.objects.filter(pk=self.current.pk).update(status=Status.FAILED,
                                                                   message=reason)
        self.fail_unfinished("not run: an earlier part failed")

    def fail_unfinished(self, reason: str) -> None:
        self.transfer.steps.exclude(status__in=(Status.DONE, Status.FAILED)).update(
            status=Status.FAILED, message=reason)

    def describe(self, reason: str) -> str:
        if self.current is None:
            return reason
        if self.transfer.mode == Transfer.Mode.SOUP and self.current.teacher_id:
            return (f"the single-teacher run from {self.current.teacher.name} failed, so "
                    f"there is no soup: {reason}")
        return f"step {self.current.index + 1} ({self.current.label}) failed: {reason}"


def distil(transfer: Transfer, runs: Runs | None = None):
    dataset = transfer.evaluation.dataset
    _, paths, labels = dataset_samples(dataset)
    train, test = truth_split(labels)
    student = transfer.student
    s_config = student.data_config()
    teachers = []
    for step in (runs.steps if runs else transfer.steps.select_related("teacher")):
        if not step.teacher_id:
            continue
        if runs:
            runs.current = step
        config = step.teacher.data_config()
        teachers.append(Teacher(step.teacher.name, build_model(step.teacher),
                                cached_pixels(dataset, paths, config),
                                (config["mean"], config["std"])))
    if runs:
        runs.current = None
    device = choose_device()
    recipe = TransferRecipe(epochs=transfer.epochs, learning_rate=transfer.learning_rate,
                            temperature=transfer.temperature)
    model, report = multi_teacher_transfer(
        teachers, build_model(student), cached_pixels(dataset, paths, s_config),
        labels, train, test, student_norm=(s_config["mean"], s_config["std"]),
        mode=transfer.mode, order=transfer.order,
        supervised=transfer.variant == Transfer.Variant.SUPERVISED,
        recipe=recipe, device=device,
        progress=runs.progress if runs else None,
        on_plan=runs.plan if runs else None,
        on_step=runs.step_done if runs else None)
    report["device"] = str(device)
    return model, report


def save_distilled(transfer: Transfer, model, report: dict) -> Checkpoint:
    student, teachers = transfer.student, [t.name for t in transfer.teachers]
    dataset = transfer.evaluation.dataset
    several = len(teachers) > 1
    source = f"{transfer.mode}_{len(teachers)}_teachers" if several else teachers[0][:80]
    name = f"{student.name[:80]}.kldp_from_{source}_{transfer.pk}"
    from config.local_cache import delete_object, local_cache, publish_file, store_is_remote

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if store_is_remote():  # in the object store, where every host finds it
        # Short: a FileField holds 100 characters; the transfer names it uniquely.
        object_name = f"weights/distilled/transfer_{transfer.pk}.safetensors"
        path = local_cache().temporary(".safetensors")
        save_file(state, str(path))
        sha256 = sha256_of_path(path)
        publish_file(object_name, path, f"weights/{sha256}/transfer_{transfer.pk}.safetensors")
        weights = dict(weights_source=Checkpoint.WeightsSource.UPLOAD, weights_file=object_name,
                       weights_sha256=sha256)
    else:
        folder = Path(settings.MEDIA_ROOT) / "weights" / "distilled"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.safetensors"
        save_file(state, str(path))
        weights = dict(weights_source=Checkpoint.WeightsSource.LOCAL,
                       weights_path=str(path.resolve()), weights_sha256=sha256_of_path(path))
    try:
        return _distilled_row(transfer, model, report, name, weights, several)
    except BaseException:  # no weights without their row
        if store_is_remote():
            delete_object(weights["weights_file"])
        else:
            path.unlink(missing_ok=True)
        raise


def _distilled_row(transfer, model, report, name, weights, several) -> Checkpoint:
    student, teachers = transfer.student, [t.name for t in transfer.teachers]
    dataset = transfer.evaluation.dataset
    return Checkpoint.objects.create(
        name=name, owner_id=transfer.evaluation.owner_id,
        architecture=student.architecture, pretrained_tag="",
        family=student.family, **weights,
        model_kwargs=student.model_kwargs, input_size=student.input_size,
        interpolation=student.interpolation, crop_pct=student.crop_pct,
        crop_mode=student.crop_mode, mean=student.mean, std=student.std,
        num_classes=len(dataset.class_names), source_classes=dataset.class_names,
        feature_dim=student.feature_dim,
        param_count=sum(p.numel() for p in model.parameters()),
        source_dataset=dataset.name[:120],
        # No source top-1: its head is the target's, and its accuracy there is in the lineage.
        source_top1=None,
        recipe={"lineage": {"method": f"KL+DP ({transfer.variant})"
                                      + (f", {transfer.get_mode_display()}" if several else ""),
                            "teacher": " + ".join(teachers), "teachers": teachers,
                            "mode": transfer.mode,
                            "order": transfer.order if several and
                            transfer.mode == Transfer.Mode.SEQUENTIAL else None,
                            "student": student.name, "dataset": dataset.name,
                            "dataset_id": dataset.pk, "dataset_hash": dataset.content_hash,
                            "evaluation": transfer.evaluation_id, "transfer": transfer.pk,
                            # Held-out (truth_split) accuracy on the dataset it was made on, %.
                            "target_top1": round(report["delta"]["accuracy_after"], 2),
                            # What evaluations leave out by default (transferability.leakage).
                            "trained_on": trained_on_entries(dataset, student,
                                                             *transfer.teachers)},
                "recipe": report["recipe"]},
    )
