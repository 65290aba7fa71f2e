"""Ground truth work: each checkpoint transferred to the target, one task per checkpoint.

``verify_checkpoint`` measures one checkpoint's held-out accuracy (full fine-tuning, or the
linear probe on the evaluation's cached features); the call that finishes the last one
claims the final step, and ``finalize_truth`` records the outcome. Rows are claimed with
conditional updates, as in ``workers.jobs``, so a redelivered task is harmless.
"""

import logging
import time

import numpy as np
from django.utils import timezone

from dataclasses import replace

from transferability.budget import survivors
from transferability.ground_truth import (FinetuneRecipe, finetune_accuracy,
                                          probe_accuracy_on_split, repeat_summary,
                                          truth_split)
from transferability.models import CheckpointResult, GroundTruth, Status, TruthResult
from zoo.loading import build_model

from . import caches, healing
from .device import choose_device
from .extraction import PRE_LOGITS, cached_pixels
from .jobs import UNFINISHED, _reason, claim, dataset_samples, obtain_features

log = logging.getLogger(__name__)


def verify_checkpoint(truth_result_id: int) -> int | None:
    """Measure one checkpoint; return the ground truth's id if its final step is now ours."""
    truth_id = (TruthResult.objects.filter(pk=truth_result_id)
                .values_list("truth_id", flat=True).first())
    if truth_id is None:
        return None  # deleted with its evaluation, or replaced by a newer request
    if not claim(TruthResult, truth_result_id,
                 "the worker stopped while measuring this checkpoint"):
        return truth_id if claim_truth_final(truth_id) else None
    row = TruthResult.objects.select_related("truth__evaluation__dataset", "checkpoint").get(
        pk=truth_result_id)
    GroundTruth.objects.filter(pk=truth_id, status=Status.PENDING).update(status=Status.RUNNING)
    started = time.perf_counter()
    try:
        with healing.deadline():
            details = measure(row)
        TruthResult.objects.filter(pk=row.pk).update(
            status=Status.DONE, accuracy=details["accuracy"], details=details,
            seconds=time.perf_counter() - started, finished_at=timezone.now())
    except Exception as exc:  # one checkpoint failing must not fail the others
        log.exception("ground truth of %s failed", row.checkpoint)
        TruthResult.objects.filter(pk=row.pk).update(
            status=Status.FAILED, message=_reason(exc), seconds=time.perf_counter() - started,
            finished_at=timezone.now())
    return truth_id if claim_truth_final(truth_id) else None


def measure(row: TruthResult) -> dict:
    """One checkpoint's truth: a run per split seed (``truth.seed`` + 0 .. seeds - 1), each
    choosing on its own train part and scoring on its own test part; their mean with its
    standard error (:func:`~transferability.ground_truth.repeat_summary`)."""
    truth = row.truth
    evaluation, checkpoint = truth.evaluation, row.checkpoint
    dataset = evaluation.dataset
    _, paths, labels = dataset_samples(dataset)
    seeds = [truth.seed + k for k in range(max(1, truth.seeds))]
    beat = _heartbeat(row.pk)

    def each_seed(done_seeds: int):
        def progress(done: int, total: int) -> None:
            beat(done_seeds * total + done, len(seeds) * total)
        return progress

    repeats = []
    if truth.mode == GroundTruth.Mode.PROBE:
        features = _pre_logits(evaluation, checkpoint)
        for seed in seeds:
            train, test = truth_split(labels, truth.test_fraction, seed)
            repeats.append({**probe_accuracy_on_split(features, labels, train, test,
                                                      seed=seed), "seed": seed})
            healing.check_deadline()
        return {**repeat_summary(repeats), "mode": truth.mode}
    device = choose_device()
    config = checkpoint.data_config()
    pixels = cached_pixels(dataset, paths, config)
    model = build_model(checkpoint)
    recipe = FinetuneRecipe()
    if truth.plan.get("rungs"):  # on a budget: this rung's schedule
        recipe = replace(recipe, epochs=truth.plan["rungs"][truth.plan["rung"]]["epochs"])
    for k, seed in enumerate(seeds):
        train, test = truth_split(labels, truth.test_fraction, seed)
        repeats.append({**finetune_accuracy(model, pixels, labels, train, test,
                                            mean=config["mean"], std=config["std"],
                                            recipe=recipe, seed=seed, device=device,
                                            progress=each_seed(k)), "seed": seed})
    return {**repeat_summary(repeats), "mode": truth.mode, "device": str(device)}


def _pre_logits(evaluation, checkpoint) -> np.ndarray:
    """The evaluation's features of this checkpoint: from the cache, else extracted again."""
    result = CheckpointResult.objects.select_related("evaluation__dataset", "checkpoint").get(
        evaluation=evaluation, checkpoint=checkpoint)
    if result.feature_key and caches.features.has(result.feature_key, PRE_LOGITS):
        return caches.features.load(result.feature_key, PRE_LOGITS)
    return obtain_features(result).arrays[PRE_LOGITS]


def _heartbeat(row_id: int, every_seconds: float = 2.0):
    last = [0.0]

    def beat(done: int, total: int) -> None:
        healing.check_deadline()
        now = time.monotonic()
        if done == total or now - last[0] >= every_seconds:
            last[0] = now
            TruthResult.objects.filter(pk=row_id).update(
                heartbeat_at=timezone.now(), details={"steps_done": done, "steps_total": total})

    return beat


def claim_truth_final(truth_id: int) -> bool:
    """True for exactly one caller, once no checkpoint of the ground truth is unfinished."""
    if TruthResult.objects.filter(truth_id=truth_id, status__in=UNFINISHED).exists():
        return False
    return bool(GroundTruth.objects.filter(
        pk=truth_id, status__in=(Status.PENDING, Status.RUNNING)
    ).update(status=Status.FINALIZING))


def finalize_truth(truth_id: int) -> None:
    if advance_rung(truth_id):
        return
    results = list(TruthResult.objects.filter(truth_id=truth_id).select_related("checkpoint"))
    failed = [r for r in results if r.status == Status.FAILED]
    message = ""
    if failed:
        message = (f"{len(failed)} of {len(results)} checkpoints could not be measured: "
                   + "; ".join(f"{r.checkpoint.name}: {r.message}" for r in failed[:5]))
    done = len(results) - len(failed)
    GroundTruth.objects.filter(pk=truth_id, status=Status.FINALIZING).update(
        status=Status.DONE if done else Status.FAILED, message=message,
        finished_at=timezone.now())


def advance_rung(truth_id: int, enqueue: bool = True) -> bool:
    """On a halving budget with rungs to go: the better checkpoints of the finished rung go
    on to the next, longer schedule; the others stop there, their short-schedule accuracy
    kept in the plan's history, not as a true accuracy. True when a rung was started.

    One transaction with the truth's row locked: a redelivered or concurrent final step
    finds it RUNNING (or its rows already moved on) and changes nothing."""
    from django.db import transaction

    from transferability.verification import enqueue_truth

    with transaction.atomic():
        truth = GroundTruth.objects.select_for_update().filter(
            pk=truth_id, status=Status.FINALIZING).first()
        if truth is None or not truth.plan.get("rungs"):
            return False
        plan = truth.plan
        rung, rungs = plan["rung"], plan["rungs"]
        active = list(TruthResult.objects.filter(truth_id=truth_id).exclude(
            status=Status.DONE, accuracy__isnull=True).select_related("checkpoint"))
        measured = {r.checkpoint.name: r.accuracy for r in active if r.status == Status.DONE}
        for name, accuracy in measured.items():
            history = plan["history"].setdefault(name, [])
            if not any(entry["rung"] == rung for entry in history):
                history.append({"rung": rung, "epochs": rungs[rung]["epochs"],
                                "accuracy": accuracy})
        if rung + 1 >= len(rungs) or not measured:
            GroundTruth.objects.filter(pk=truth_id).update(plan=plan)
            return False
        # A lone survivor (the others failed) still goes on to the full schedule.
        going_on = survivors(measured, rungs[rung + 1]["checkpoints"], plan["order"])
        for row in active:
            name = row.checkpoint.name
            if name in going_on or row.status != Status.DONE:
                continue
            TruthResult.objects.filter(pk=row.pk).update(
                accuracy=None, message=f"stopped after {rungs[rung]['epochs']} epoch"
                f"{'s' if rungs[rung]['epochs'] > 1 else ''} at {measured[name]:.1f} %: the "
                f"better {len(going_on)} went on")
        again = [r.pk for r in active if r.checkpoint.name in going_on]
        TruthResult.objects.filter(pk__in=again).update(
            status=Status.PENDING, accuracy=None, attempts=0, heartbeat_at=None,
            finished_at=None, message="")
        plan["rung"] = rung + 1
        GroundTruth.objects.filter(pk=truth_id).update(status=Status.RUNNING, plan=plan)
        if enqueue:
            transaction.on_commit(lambda: enqueue_truth(truth_id, only=again))
    return True


def run_truth_inline(truth_id: int) -> None:
    """Measure a whole ground truth in this process (tests, management commands)."""
    while True:
        for row_id in list(TruthResult.objects.filter(truth_id=truth_id, status__in=UNFINISHED)
                           .values_list("pk", flat=True)):
            verify_checkpoint(row_id)
        claim_truth_final(truth_id)
        if not advance_rung(truth_id, enqueue=False):
            break
    finalize_truth(truth_id)
