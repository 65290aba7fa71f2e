"""The work behind the Celery tasks, as plain functions that tests can call directly.

``evaluate_checkpoint`` scores one checkpoint of an evaluation; the call that finishes the
last one claims the final step and returns the evaluation's id, and its caller (the Celery
task, or ``run_inline``) runs ``finalize_evaluation``, which computes complementarity and
the final state. Every step claims its row with a conditional update, so a redelivered task
is harmless.
"""

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from scipy.special import softmax

from transferability.archives import read_manifest
from transferability.metrics import (REGISTRY, PanelScore, applicable_metrics, get_metric,
                                     score_panel)
from transferability.metrics.backends import backend_for
from transferability.metrics.registry import SOURCE_PROBS
from transferability.metrics.resampling import resampled_scores
from transferability.models import (CheckpointResult, Evaluation, GroundTruth, MetricScore,
                                    Status)
from transferability.complementarity import complementarity_report
from transferability.probes import probe_correctness, source_head_correctness
from zoo.hub import downloading_message
from zoo.loading import build_model
from zoo.models import Checkpoint

from . import caches, healing
from .device import choose_device
from .extraction import LOGITS, PRE_LOGITS, extract, pixel_batches, pixel_key, precision

log = logging.getLogger(__name__)

UNFINISHED = (Status.PENDING, Status.RUNNING)
MAX_ATTEMPTS = 2
PROBE_CORRECT = "probe_correct"


@dataclass
class Features:
    key: str
    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    stage_names: list[str]


def claim(model, pk: int, gave_up: str, **also) -> bool:
    """Take an unfinished row of ``model`` (a checkpoint result, a ground-truth row, a
    transfer) for this worker; at most MAX_ATTEMPTS claims in all. A row claimed that often
    already (its worker died each time) is recorded as failed with ``gave_up``."""
    if model.objects.filter(pk=pk, status__in=UNFINISHED, attempts__lt=MAX_ATTEMPTS).update(
            status=Status.RUNNING, attempts=F("attempts") + 1, heartbeat_at=timezone.now(),
            message="", **also):
        return True
    model.objects.filter(pk=pk, status__in=UNFINISHED).update(
        status=Status.FAILED, finished_at=timezone.now(),
        message=f"{gave_up}, {MAX_ATTEMPTS} times")
    return False


def evaluate_checkpoint(result_id: int) -> int | None:
    """Score one checkpoint; return the evaluation id if the final step is now ours.

    A redelivered task (the worker died) claims its row again, at most MAX_ATTEMPTS times
    in all; after that the checkpoint is recorded as failed, so that a checkpoint that
    kills its worker cannot keep the evaluation from finishing.
    """
    evaluation_id = (CheckpointResult.objects.filter(pk=result_id)
                     .values_list("evaluation_id", flat=True).first())
    if evaluation_id is None:
        return None  # deleted with its evaluation
    if not claim(CheckpointResult, result_id, "the worker stopped while scoring this checkpoint",
                 started_at=timezone.now()):
        # Already finished: but the run that finished it may have died before the final
        # step was claimed or enqueued. finalize_evaluation is safe to run twice.
        if claim_final_step(evaluation_id) or Evaluation.objects.filter(
                pk=evaluation_id, status=Status.FINALIZING).exists():
            return evaluation_id
        return None
    result = CheckpointResult.objects.select_related("evaluation__dataset", "checkpoint").get(
        pk=result_id
    )
    evaluation = result.evaluation
    Evaluation.objects.filter(pk=evaluation.pk, status=Status.PENDING).update(
        status=Status.RUNNING, started_at=timezone.now()
    )
    try:
        with healing.deadline():
            features = obtain_features(result, want_stages=evaluation.score_stages)
            scoring_started = time.perf_counter()
            score_features(result, features)
        # Only a row still ours: one cancelled (or failed by a sweep) meanwhile stays so.
        CheckpointResult.objects.filter(pk=result.pk, status=Status.RUNNING).update(
            status=Status.DONE,
            scoring_seconds=time.perf_counter() - scoring_started,
            finished_at=timezone.now(),
        )
    except Exception as exc:  # one checkpoint failing must not fail the others
        log.exception("checkpoint %s failed in evaluation %s", result.checkpoint, evaluation.pk)
        CheckpointResult.objects.filter(pk=result.pk, status=Status.RUNNING).update(
            status=Status.FAILED, message=_reason(exc), finished_at=timezone.now()
        )
    return evaluation.pk if claim_final_step(evaluation.pk) else None


def run_inline(evaluation_id: int) -> None:
    """Run a whole evaluation in this process: the headless path of ``manage.py rank``."""
    ids = CheckpointResult.objects.filter(evaluation_id=evaluation_id).values_list("pk", flat=True)
    for result_id in list(ids):
        evaluate_checkpoint(result_id)
    claim_final_step(evaluation_id)
    finalize_evaluation(evaluation_id)


def feature_key(checkpoint: Checkpoint, dataset, device) -> str:
    """The cache key of ``checkpoint``'s features on ``dataset``.

    It names the dataset's owner beside its content: features found in the cache show
    as "cached" on the page and in the API, which would tell a user that someone else had
    already evaluated the same images. Each user's evaluations share their own features.
    """
    config = checkpoint.data_config()
    return caches.content_key(
        precision=precision(device),
        weights=checkpoint.weights_identity(),
        architecture=checkpoint.architecture,
        model_kwargs=checkpoint.model_kwargs,
        dataset=dataset.content_hash,
        owner=dataset.owner_id,
        pixels=pixel_key(config),
        mean=list(config["mean"]),
        std=list(config["std"]),
    )


def obtain_features(result: CheckpointResult, want_stages: bool = False) -> Features:
    """Features of one checkpoint on the evaluation's dataset: from the cache, else extracted."""
    checkpoint, dataset = result.checkpoint, result.evaluation.dataset
    _, paths, labels = dataset_samples(dataset)
    device = choose_device()
    key = feature_key(checkpoint, dataset, device)
    store = caches.features
    wanted = [PRE_LOGITS] + ([LOGITS] if checkpoint.has_source_head else [])
    # Stage names are known only once the model has run with stages (None until then).
    stages = _cached_stage_names(key) if want_stages else []
    if stages is not None and all(store.has(key, name) for name in wanted + stages):
        arrays = {name: store.load(key, name) for name in wanted + stages}
        CheckpointResult.objects.filter(pk=result.pk).update(
            images_done=len(paths), images_total=len(paths), features_cached=True,
            feature_key=key, feature_dim=arrays[PRE_LOGITS].shape[1], extraction_seconds=0.0,
        )
        return Features(key, arrays, labels, stages)

    CheckpointResult.objects.filter(pk=result.pk).update(images_done=0, images_total=len(paths))
    model = build_model(checkpoint, download_progress=_download_writer(result.pk))
    CheckpointResult.objects.filter(pk=result.pk, message__startswith="downloading ").update(
        message="")
    config = checkpoint.data_config()
    batch_size = 64 if device.type == "cpu" else 256
    extracted = extract(
        model, device,
        pixel_batches(dataset.root, dataset.content_hash, paths, config, batch_size,
                      also=_other_preprocessings(result)),
        total=len(paths), data_config=config, want_logits=checkpoint.has_source_head,
        want_stages=want_stages, batch_size=batch_size, progress=_progress_writer(result.pk),
    )
    for name, array in extracted.arrays.items():
        store.save(key, name, array)
    if want_stages:
        store.save(key, "stage_names", np.array(extracted.stage_names))
    dim = extracted.arrays[PRE_LOGITS].shape[1]
    CheckpointResult.objects.filter(pk=result.pk).update(
        images_done=len(paths), features_cached=False, feature_key=key, feature_dim=dim,
        device=extracted.device, extraction_seconds=extracted.seconds,
    )
    Checkpoint.objects.filter(pk=checkpoint.pk).filter(
        Q(feature_dim__isnull=True) | Q(param_count__isnull=True)
    ).update(feature_dim=dim, param_count=sum(p.numel() for p in model.parameters()))
    return Features(key, extracted.arrays, labels, extracted.stage_names)


def dataset_samples(dataset) -> tuple[list[str], list[str], np.ndarray]:
    """Class names, image paths and label indices of a stored dataset, in sample order."""
    class_names, files = read_manifest(dataset.root)
    return class_names, [path for path, _ in files], np.array([label for _, label in files])


def _other_preprocessings(result: CheckpointResult) -> list[dict]:
    """Data configs of the evaluation's checkpoints still to run: decoded in the same pass."""
    others = (CheckpointResult.objects.filter(evaluation_id=result.evaluation_id,
                                              status=Status.PENDING)
              .exclude(pk=result.pk).select_related("checkpoint"))
    return [other.checkpoint.data_config() for other in others]


def _cached_stage_names(key: str) -> list[str] | None:
    if not caches.features.has(key, "stage_names"):
        return None
    return [str(s) for s in caches.features.load(key, "stage_names")]


def _row_writer(result_id: int, fields, every_seconds: float = 0.5):
    """A progress callback (done, total) that writes ``fields(done, total)`` and a heartbeat
    to the result row at most every ``every_seconds``, and always at the end; it stops the
    task past its deadline."""
    last = [0.0]

    def write(done: int, total: int) -> None:
        healing.check_deadline()
        now = time.monotonic()
        if done == total or now - last[0] >= every_seconds:
            last[0] = now
            CheckpointResult.objects.filter(pk=result_id).update(
                **fields(done, total), heartbeat_at=timezone.now())

    return write


def _progress_writer(result_id: int, every_seconds: float = 0.5):
    return _row_writer(result_id, lambda done, total: {"images_done": done,
                                                       "images_total": total},
                       every_seconds)


def _download_writer(result_id: int, every_seconds: float = 0.5):
    """Hub download progress on the result row ("downloading 97.8 of 102 MB"), with a
    heartbeat: a large download is a sign of life, not a stall."""
    return _row_writer(result_id, lambda done, total: {
        "message": downloading_message(done, total)}, every_seconds)


def score_features(result: CheckpointResult, features: Features) -> None:
    """Run the evaluation's metric panel on the features; one row per metric and layer.

    Metrics relative to the candidate set store their raw components and no value yet:
    ``finalize_evaluation`` combines them across the evaluation's checkpoints.
    """
    evaluation = result.evaluation
    specs = applicable_metrics(
        has_source_head=LOGITS in features.arrays, names=evaluation.metrics or None
    )
    source_probs = None
    if LOGITS in features.arrays and any(s.needs == SOURCE_PROBS for s in specs):
        source_probs = softmax(features.arrays[LOGITS].astype(np.float64), axis=1)
    device = choose_device()
    # The panel's N-sized arithmetic goes to the GPU when the worker has one.
    panel_device = device if device.type == "cuda" else None

    def beat(_score) -> None:
        # A sign of life between metrics, some of which take minutes on large datasets.
        healing.check_deadline()
        CheckpointResult.objects.filter(pk=result.pk).update(heartbeat_at=timezone.now())

    def panel(layer: str, layer_specs) -> list[MetricScore]:
        if not layer_specs:
            return []
        scores = score_panel(features.arrays[layer], features.labels, layer_specs,
                             source_probs=source_probs, device=panel_device, after_each=beat)
        return [_row(score, layer) for score in scores]

    # The cheap answer first: the transferability metrics are stored (and shown) as soon
    # as they are computed; the baselines (the linear probe and k-NN fit classifiers, most
    # of an evaluation's time) follow, then the resamples and the stages.
    rows = panel(PRE_LOGITS, [s for s in specs if s.kind != "baseline"])
    _store(result, rows)
    rows += panel(PRE_LOGITS, [s for s in specs if s.kind == "baseline"])
    _store(result, rows)
    # The lead and the consensus's metrics on resampled images: how sure the ranking is
    # (P(first), rank intervals). The forms of TMI are resampled only when one leads.
    from transferability.predictors import lead_members

    leading = set(lead_members())
    resampled = resampled_scores(features.arrays[PRE_LOGITS], features.labels,
                                 [s for s in specs if s.variant_of is None or s.name in leading],
                                 source_probs=source_probs, backend=backend_for(panel_device),
                                 after_each=beat)
    for row in rows:
        if row.metric in resampled and row.value is not None:
            row.details = {**row.details, "resamples": resampled[row.metric]}
    best_stage = ""
    if evaluation.score_stages and features.stage_names:
        feature_specs = [s for s in specs if s.needs != SOURCE_PROBS]
        for stage in features.stage_names:
            rows += panel(stage, feature_specs)
        best_stage = _best_layer(rows, features.stage_names + [PRE_LOGITS])
    needs_correctness = (evaluation.correctness_source == Evaluation.CorrectnessSource.TARGET
                         and evaluation.results.count() > 1)  # pairs need two checkpoints
    if needs_correctness:
        if not caches.features.has(features.key, PROBE_CORRECT):
            try:
                correct = probe_correctness(features.arrays[PRE_LOGITS], features.labels,
                                            device=panel_device)
            except ValueError as exc:  # e.g. a class with one image: reported at the end
                log.info("no probe correctness for %s: %s", result.checkpoint, exc)
            else:
                caches.features.save(features.key, PROBE_CORRECT, correct)
    _store(result, rows, best_stage=best_stage)


def _store(result: CheckpointResult, rows: list[MetricScore], **fields) -> None:
    """Replace the result's scores with ``rows`` in one transaction (readers see the old
    set or the new one, never a half)."""
    with transaction.atomic():
        # Two runs of one task at once (a duplicate delivery) take turns here.
        CheckpointResult.objects.select_for_update().filter(pk=result.pk).first()
        MetricScore.objects.filter(result=result).delete()
        for row in rows:
            row.pk = None
            row.result = result
        MetricScore.objects.bulk_create(rows)
        if fields:
            CheckpointResult.objects.filter(pk=result.pk).update(**fields)


def _row(score: PanelScore, layer: str) -> MetricScore:
    value, error, details = score.value, score.error, dict(score.details)
    components = details.get("components")
    if components is not None and not all(np.isfinite(v) for v in components.values()):
        # Nothing to combine (and JSON has no inf or NaN): an error like any other metric's.
        del details["components"]
        error = f"{score.name} is not finite on these features"
    return MetricScore(metric=score.name, layer=layer, value=value, error=error,
                       seconds=score.seconds, details=details)


def _best_layer(rows: list[MetricScore], layers: list[str]) -> str:
    """The layer the lead predictor scores best; "" when nothing was scored.

    Metrics relative to the candidate set have no value yet, so they do not take part.
    """
    from transferability.predictors import lead_metric_among

    metric = lead_metric_among(r.metric for r in rows)
    if metric is None:
        return ""
    spec = get_metric(metric)
    values = {r.layer: r.value for r in rows if r.metric == metric and r.value is not None}
    if not values:
        return ""
    pick = max if spec.higher_is_better else min
    return pick((layer for layer in layers if layer in values), key=values.get)


def claim_final_step(evaluation_id: int) -> bool:
    """True for exactly one caller, once no checkpoint of the evaluation is unfinished."""
    if CheckpointResult.objects.filter(evaluation_id=evaluation_id,
                                       status__in=UNFINISHED).exists():
        return False
    return bool(Evaluation.objects.filter(
        pk=evaluation_id, status__in=(Status.PENDING, Status.RUNNING)
    ).update(status=Status.FINALIZING))


def _named(name: str, message: str) -> str:
    """"name: message", without a second "name: " when the message starts with one."""
    return message if message.startswith(f"{name}: ") else f"{name}: {message}"


def finalize_evaluation(evaluation_id: int) -> None:
    evaluation = Evaluation.objects.select_related("dataset").get(pk=evaluation_id)
    if evaluation.status != Status.FINALIZING:
        return
    results = list(evaluation.results.select_related("checkpoint").order_by("checkpoint__name"))
    done = [r for r in results if r.status == Status.DONE]
    failed = [r for r in results if r.status == Status.FAILED]
    messages = []
    if failed:
        messages.append(f"{len(failed)} of {len(results)} checkpoints failed: "
                        + "; ".join(_named(r.checkpoint.name, r.message) for r in failed[:5]))
    combine_set_scores(done)
    report = None
    if len(done) >= 2:
        try:
            report = complementarity_for(evaluation, done)
        except (ValueError, OSError) as exc:
            messages.append(f"complementarity could not be computed: {exc}")
    finished = Evaluation.objects.filter(pk=evaluation.pk, status=Status.FINALIZING).update(
        status=Status.DONE if done else Status.FAILED,
        complementarity=report,
        message=" ".join(messages),
        finished_at=timezone.now(),
    )
    if finished and done and evaluation.truth_on_finish \
            and not GroundTruth.objects.filter(evaluation=evaluation).exists():
        _measure_truth_on_finish(evaluation)  # once: a retry later finishes it again


def _measure_truth_on_finish(evaluation: Evaluation) -> None:
    """Queue the ground truth asked for at submission (said in the message if refused)."""
    from transferability.submission import SubmissionError
    from transferability.verification import submit_truth

    evaluation.refresh_from_db()
    try:
        submit_truth(evaluation, mode=evaluation.truth_on_finish)
    except SubmissionError as exc:
        Evaluation.objects.filter(pk=evaluation.pk).update(
            message=" ".join(filter(None, [evaluation.message,
                                           f"Ground truth not started: {exc}."])))


def combine_set_scores(done: list[CheckpointResult]) -> None:
    """Values of the metrics relative to the candidate set, from the stored components.

    Two sets: the pre-logits scores of the finished checkpoints, and their stage scores
    (every checkpoint's every stage together). Recomputed from the components each time,
    so running it again (a second finalize, a retry) gives the values over whatever has
    finished by then. A row with an error, or without components, is left as it is.
    """
    for spec in REGISTRY.values():
        if not spec.relative_to_set:
            continue
        rows = [row for row in MetricScore.objects.filter(result__in=done, metric=spec.name)
                .order_by("pk") if row.details.get("components") and not row.error]
        pre_logits = [row for row in rows if row.layer == MetricScore.PRE_LOGITS]
        stages = [row for row in rows if row.layer != MetricScore.PRE_LOGITS]
        for group in (pre_logits, stages):
            if not group:
                continue
            values = spec.combine([row.details["components"] for row in group])
            for row, value in zip(group, values, strict=True):
                row.value = float(value) if np.isfinite(value) else None
            MetricScore.objects.bulk_update(group, ["value"])


def complementarity_for(evaluation: Evaluation, done: list[CheckpointResult]) -> dict:
    class_names, _, labels = dataset_samples(evaluation.dataset)
    rows = []
    for result in done:
        if evaluation.correctness_source == Evaluation.CorrectnessSource.SOURCE:
            logits = caches.features.load(result.feature_key, LOGITS)
            index = {i: result.checkpoint.source_classes.index(name)
                     for i, name in enumerate(class_names)
                     if name in result.checkpoint.source_classes}
            rows.append(source_head_correctness(logits, labels, index))
        else:
            rows.append(caches.features.load(result.feature_key, PROBE_CORRECT))
    named_labels = np.array(class_names, dtype=object)[labels]
    report = complementarity_report(np.vstack(rows).astype(bool), named_labels,
                                    [r.checkpoint.name for r in done])
    report["source"] = evaluation.correctness_source
    return report


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 2000 else text[:2000] + "…"
