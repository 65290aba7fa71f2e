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
from django.utils import timezone
from safetensors.torch import save_file

from transferability.distillation import TransferRecipe, kl_dp_transfer
from transferability.ground_truth import truth_split
from transferability.leakage import trained_on_entries
from transferability.models import Status, Transfer
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
    started = time.perf_counter()
    try:
        with healing.deadline():
            student_model, report = distil(transfer)
        checkpoint = save_distilled(transfer, student_model, report)
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Status.DONE, delta=report["delta"], flips_before=report["flips_before"],
            flips_after=report["flips_after"],
            details={k: v for k, v in report.items()
                     if k not in ("delta", "flips_before", "flips_after")}
            | {"seconds": time.perf_counter() - started},
            result_checkpoint=checkpoint, finished_at=timezone.now())
    except Exception as exc:  # recorded on the row; the worker carries on
        log.exception("transfer %s failed", transfer.pk)
        Transfer.objects.filter(pk=transfer.pk).update(
            status=Status.FAILED, message=_reason(exc), finished_at=timezone.now())


def distil(transfer: Transfer):
    dataset = transfer.evaluation.dataset
    _, paths, labels = dataset_samples(dataset)
    train, test = truth_split(labels)
    teacher, student = transfer.teacher, transfer.student
    t_config, s_config = teacher.data_config(), student.data_config()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        healing.check_deadline()
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            Transfer.objects.filter(pk=transfer.pk).update(
                steps_done=done, steps_total=total, heartbeat_at=timezone.now())

    device = choose_device()
    model, report = kl_dp_transfer(
        build_model(teacher), build_model(student),
        cached_pixels(dataset, paths, t_config), cached_pixels(dataset, paths, s_config),
        labels, train, test,
        teacher_norm=(t_config["mean"], t_config["std"]),
        student_norm=(s_config["mean"], s_config["std"]),
        supervised=transfer.variant == Transfer.Variant.SUPERVISED,
        recipe=TransferRecipe(), device=device, progress=progress)
    report["device"] = str(device)
    return model, report


def save_distilled(transfer: Transfer, model, report: dict) -> Checkpoint:
    student, teacher = transfer.student, transfer.teacher
    dataset = transfer.evaluation.dataset
    name = f"{student.name[:80]}.kldp_from_{teacher.name[:80]}_{transfer.pk}"
    from config.local_cache import local_cache, publish_file, store_is_remote

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
        recipe={"lineage": {"method": f"KL+DP ({transfer.variant})", "teacher": teacher.name,
                            "student": student.name, "dataset": dataset.name,
                            "dataset_id": dataset.pk, "dataset_hash": dataset.content_hash,
                            "evaluation": transfer.evaluation_id, "transfer": transfer.pk,
                            # Held-out (truth_split) accuracy on the dataset it was made on, %.
                            "target_top1": round(report["delta"]["accuracy_after"], 2),
                            # What evaluations leave out by default (transferability.leakage).
                            "trained_on": trained_on_entries(dataset, student, teacher)},
                "recipe": report["recipe"]},
    )
