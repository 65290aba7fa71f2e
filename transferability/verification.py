"""Ground truth on request ("verify"), and how well each metric predicted it.

``submit_truth`` asks the workers to transfer an evaluation's checkpoints to its target and
measure held-out accuracy (one task per checkpoint, queue ``gpu``; the work is in
``workers.verification``). ``agreement`` then scores every metric, every baseline and the
trivial references (source accuracy, parameter count, feature width d) against those
accuracies by weighted Kendall's tau, Kendall's tau and top-1 relative accuracy
(docs/science.md, section 6). It is computed when read, from the stored scores and
accuracies, so it always matches what the page shows.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from .budget import plan as budget_plan
from .ground_truth import standard_error
from .metrics import REGISTRY
from .models import Evaluation, GroundTruth, Status, TruthResult
from .ranking import ranking_summary
from .submission import Conflict, SubmissionError, require_a_held_out_split

log = logging.getLogger(__name__)

VERIFY_CHECKPOINT = "workers.tasks.verify_checkpoint"


@dataclass(frozen=True)
class Reference:
    """A trivial predictor scored exactly like a metric: "bigger is better", "better at the
    source is better"."""

    name: str
    label: str
    attribute: str

    kind = "reference"
    higher_is_better = True

    def value(self, row):
        if self.attribute == "feature_dim":
            return row.result.feature_dim or row.checkpoint.feature_dim
        return getattr(row.checkpoint, self.attribute)


REFERENCES = [
    Reference("source_accuracy", "Source accuracy", "source_top1"),
    Reference("param_count", "Parameter count", "param_count"),
    Reference("feature_dim", "Feature width d", "feature_dim"),
]


MAX_SEEDS = 10
PAGE_SEEDS = 3  # what the page offers: a mean with an error bar


def submit_truth(evaluation: Evaluation, checkpoints=None, mode: str = GroundTruth.Mode.FINETUNE,
                 enqueue_work: bool = True, budget: int | None = None,
                 strategy: str = "", seeds: int = 1) -> GroundTruth:
    """Create (or replace a finished) ground truth for ``evaluation`` and queue its work.

    ``checkpoints``: Checkpoint objects, ids or names among the evaluation's finished
    checkpoints; None for all of them. ``budget`` and ``strategy`` ("top", "halving"):
    verify on a budget of that many full fine-tunes over the lead predictor's order
    (:mod:`transferability.budget`) instead. ``seeds``: split seeds to repeat over (1 to
    :data:`MAX_SEEDS`); each checkpoint's truth is their mean with its standard error.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise SubmissionError(f"seeds must be a whole number from 1 to {MAX_SEEDS}")
    if mode not in GroundTruth.Mode.values:
        raise SubmissionError(f"mode must be one of {', '.join(GroundTruth.Mode.values)}")
    if budget is not None or strategy:
        if checkpoints is not None:
            raise SubmissionError("give either checkpoints or a budget, not both")
        if mode != GroundTruth.Mode.FINETUNE:
            raise SubmissionError("a budget counts fine-tunes: it needs mode 'finetune'")
        strategy = strategy or "top"
    if not evaluation.is_finished:
        raise Conflict("the evaluation is still running; ground truth is measured "
                              "once it has finished")
    done = {r.checkpoint.name: r.checkpoint for r in
            evaluation.results.select_related("checkpoint").filter(status=Status.DONE)}
    if not done:
        raise SubmissionError("no checkpoint of this evaluation finished")
    plan = {}
    if strategy:
        chosen, plan = _budget_plan(evaluation, done, strategy, budget)
    elif checkpoints is None:
        chosen = list(done.values())
    else:
        by_id = {c.pk: c for c in done.values()}
        chosen, unknown = [], []
        for item in checkpoints:
            key = getattr(item, "pk", item)
            found = by_id.get(key) if isinstance(key, int) else done.get(key)
            (chosen if found else unknown).append(found or item)
        if unknown:
            raise SubmissionError("not finished checkpoints of this evaluation: "
                                  + ", ".join(str(getattr(u, "name", u)) for u in unknown))
        chosen = list({c.pk: c for c in chosen}.values())
        if not chosen:
            raise SubmissionError("choose at least one checkpoint")
    require_a_held_out_split(evaluation.dataset)
    with transaction.atomic():
        Evaluation.objects.select_for_update().filter(pk=evaluation.pk).first()
        existing = GroundTruth.objects.filter(evaluation=evaluation).first()
        if existing is not None:
            if not existing.is_finished:
                raise Conflict("ground truth is already being measured for this "
                                      "evaluation")
            if strategy and existing.status == Status.DONE and not existing.strategy \
                    and existing.mode == GroundTruth.Mode.FINETUNE:
                raise Conflict("this evaluation has a full fine-tuning truth, which a budget "
                               "would replace: it already names the best; evaluate again to "
                               "try a budget")
            existing.delete()
        truth = GroundTruth.objects.create(evaluation=evaluation, mode=mode,
                                           strategy=strategy, budget=budget, plan=plan,
                                           seeds=seeds)
        TruthResult.objects.bulk_create(TruthResult(truth=truth, checkpoint=c) for c in chosen)
        if enqueue_work:
            transaction.on_commit(lambda: enqueue_truth(truth.pk))
    return truth


def _budget_plan(evaluation, done: dict, strategy: str, budget) -> tuple[list, dict]:
    """The checkpoints of the first rung and the plan, in the lead predictor's order."""
    from .ground_truth import FinetuneRecipe
    from .results import ranked_rows

    if budget is None:
        raise SubmissionError("give a budget: how many full fine-tunes to spend")
    order = [r.checkpoint.name for r in ranked_rows(evaluation)
             if r.rank is not None and r.checkpoint.name in done]
    order += sorted(set(done) - set(order))  # not scored by the lead: last
    try:
        rungs = budget_plan(strategy, budget, len(order), FinetuneRecipe().epochs)
    except ValueError as exc:
        raise SubmissionError(str(exc)) from None
    chosen = [done[name] for name in order[:rungs[0]["checkpoints"]]]
    return chosen, {"rungs": rungs, "rung": 0, "order": order, "history": {}}


RATE_SAMPLES = 500  # the latest measured fine-tunes an estimate reads


def _learning_rate_runs(details: dict) -> int:
    """How many fine-tuning runs (learning rates times seeds) a finished truth made."""
    details = details or {}
    if details.get("runs"):
        return len({(r.get("seed"), r["learning_rate"]) for r in details["runs"]})
    return len(details.get("grid") or ())


def _seconds_per_image_epoch(details: dict, seconds: float) -> float | None:
    """A finished fine-tune's training seconds per image and epoch of one run."""
    details = details or {}
    runs, trained = _learning_rate_runs(details), details.get("fit") or details.get("train")
    epochs = (details.get("recipe") or {}).get("epochs")
    return seconds / (trained * epochs * runs) if runs and trained and epochs else None


def estimate_minutes(evaluation: Evaluation, names: list[str], epochs: int | None = None,
                     seeds: int = 1) -> float | None:
    """Minutes a full fine-tune of ``names`` would take here: from this site's latest
    measured fine-tunes (seconds per training image and epoch, that checkpoint's, else the
    median over all), else from the evaluation's extraction throughput (a training step
    costs about three forward passes). None when nothing was measured."""
    from .ground_truth import FinetuneRecipe

    recipe = FinetuneRecipe()
    epochs = epochs or recipe.epochs
    rates: dict[str, list[float]] = {}
    run_counts = []  # learning rates a search tried, per seed
    for name, details, seconds in TruthResult.objects.filter(
            status=Status.DONE, truth__mode=GroundTruth.Mode.FINETUNE, seconds__gt=0
    ).order_by("-finished_at").values_list("checkpoint__name", "details", "seconds")[
            :RATE_SAMPLES]:
        rate = _seconds_per_image_epoch(details, seconds)
        if rate is not None:
            rates.setdefault(name, []).append(rate)
            run_counts.append(_learning_rate_runs(details) / max(1, (details or {}).get(
                "seeds", 1)))
    everyone = [r for values in rates.values() for r in values]
    test_fraction = GroundTruth._meta.get_field("test_fraction").default
    # Fit images (the train part less its validation share); learning rates per seed as the
    # site's searches tried them (the grid and one step beyond it before any was measured).
    train = round((1.0 - test_fraction) * (1.0 - recipe.validation_fraction)
                  * evaluation.dataset.num_images)
    runs = float(np.median(run_counts)) if run_counts else len(recipe.learning_rates) + 1
    total = 0.0
    for result in evaluation.results.select_related("checkpoint").filter(
            checkpoint__name__in=names):
        name = result.checkpoint.name
        if name in rates:
            rate = float(np.median(rates[name]))
        elif everyone:
            rate = float(np.median(everyone))
        elif result.extraction_seconds and result.images_total and not result.features_cached:
            rate = 3.0 * result.extraction_seconds / result.images_total
        else:
            return None
        total += rate * train * epochs * runs * seeds
    return total / 60.0


def enqueue_truth(truth_id: int, only=None) -> None:
    """One task per checkpoint, sent by name (the web process never imports torch);
    ``only``: those truth result ids (the survivors of a rung)."""
    from config.celery import app

    rows = TruthResult.objects.filter(truth_id=truth_id)
    if only is not None:
        rows = rows.filter(pk__in=only)
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    try:
        for result_id in ids:
            app.send_task(VERIFY_CHECKPOINT, args=(result_id,), queue="gpu")
    except Exception as exc:  # the broker is unreachable: say so instead of waiting forever
        log.exception("could not enqueue ground truth %s", truth_id)
        message = f"the task queue could not be reached: {exc}"
        now = timezone.now()
        TruthResult.objects.filter(pk__in=ids, status=Status.PENDING).update(
            status=Status.FAILED, message=message, finished_at=now)
        GroundTruth.objects.filter(pk=truth_id).update(status=Status.FAILED, message=message,
                                                       finished_at=now)


def _specs_with_scores(rows):
    """Registry metrics and baselines scored for these rows, then the references."""
    present = {name for row in rows for name, value in row.scores.items() if value is not None}
    return [spec for name, spec in REGISTRY.items() if name in present] + REFERENCES


def _score(spec, row):
    if isinstance(spec, Reference):
        return spec.value(row)
    return row.scores.get(spec.name)


BOOTSTRAP = 500  # resamples of the checkpoints behind an agreement interval


def agreement(rows, accuracy: dict[str, float], tied=(), intervals: bool = False
              ) -> dict[str, dict]:
    """Per metric, baseline and reference: how its order agrees with the true accuracies.

    ``rows``: the evaluation's ranked rows; ``accuracy``: checkpoint name -> true accuracy
    (the mean over seeds). Only checkpoints with both a score and a true accuracy take part
    (``checkpoints`` says how many); a tau is None where undefined (constant scores or
    truth), and a measure is left out when fewer than 2 checkpoints qualify. ``tied``: the
    checkpoints within noise of the best: a pick among them counts as right in the top-1
    relative accuracy. ``intervals``: a 90 % bootstrap interval of the weighted tau over
    checkpoints (``weighted_tau_interval``).
    """
    from .ranking import weighted_tau

    best = max(accuracy, key=accuracy.get) if accuracy else None
    right = set(tied) | ({best} if best else set())
    rng = np.random.default_rng(0)
    out = {}
    for spec in _specs_with_scores(rows):
        pairs = [(_score(spec, row), accuracy[row.checkpoint.name], row.checkpoint.name)
                 for row in rows if row.checkpoint.name in accuracy
                 and _score(spec, row) is not None and row.result.status == Status.DONE]
        pairs = [(float(v), float(t), n) for v, t, n in pairs if np.isfinite(v)]
        entry = {"label": spec.label, "kind": spec.kind,
                 "higher_is_better": spec.higher_is_better, "checkpoints": len(pairs),
                 "weighted_tau": None, "kendall_tau": None, "top1_relative_accuracy": None,
                 "weighted_tau_interval": None, "pick": None}
        if len(pairs) >= 2 and max(t for _, t, _ in pairs) > 0:
            scores, truth, names = zip(*pairs)
            summary = ranking_summary(scores, truth, spec.higher_is_better, ks=(1,))
            sign = 1.0 if spec.higher_is_better else -1.0
            # The pick (ties in the score resolved against it, as the summary does).
            pick = min(pairs, key=lambda p: (-sign * p[0], p[1]))[2]
            top1 = summary["top_1_relative_accuracy"]
            if pick in right:
                top1 = 1.0
            entry.update(weighted_tau=summary["weighted_tau"],
                         kendall_tau=summary["kendall_tau"], top1_relative_accuracy=top1,
                         pick=pick)
            if intervals and entry["weighted_tau"] is not None and len(pairs) >= 4:
                entry["weighted_tau_interval"] = _bootstrap(scores, truth, sign, rng,
                                                            weighted_tau)
        out[spec.name] = entry
    return out


def _bootstrap(scores, truth, sign, rng, measure) -> list[float] | None:
    """[5th, 95th] percentile of ``measure`` over checkpoints drawn with replacement."""
    scores, truth = sign * np.asarray(scores), np.asarray(truth)
    values = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(scores), len(scores))
        if np.ptp(scores[pick]) == 0 or np.ptp(truth[pick]) == 0:
            continue
        values.append(measure(scores[pick], truth[pick]))
    if len(values) < BOOTSTRAP // 2:
        return None
    return [float(np.percentile(values, 5)), float(np.percentile(values, 95))]


def tied_with_best(accuracy: dict[str, float], errors: dict[str, float]) -> list[str]:
    """Checkpoints whose accuracy is within noise of the best: its gap to the best at most
    the combined standard error sqrt(se_best² + se²); the best itself left out."""
    if len(accuracy) < 2:
        return []
    best = max(accuracy, key=accuracy.get)
    out = []
    for name, value in sorted(accuracy.items(), key=lambda item: -item[1]):
        if name == best:
            continue
        combined = float(np.hypot(errors.get(best, 0.0), errors.get(name, 0.0)))
        if accuracy[best] - value <= combined:
            out.append(name)
    return out


def stability(results) -> float | None:
    """Mean Kendall tau between the checkpoints' accuracies of every two split seeds; None
    with fewer than 2 seeds or 2 checkpoints."""
    from .ranking import ConstantInputError, kendall_tau

    by_seed: dict[int, dict[str, float]] = {}
    for r in results:
        for entry in (r.details or {}).get("per_seed") or []:
            by_seed.setdefault(entry["seed"], {})[r.checkpoint.name] = entry["accuracy"]
    seeds = sorted(by_seed)
    taus = []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            common = sorted(set(by_seed[a]) & set(by_seed[b]))
            if len(common) < 2:
                continue
            try:
                taus.append(kendall_tau([by_seed[a][n] for n in common],
                                        [by_seed[b][n] for n in common]))
            except (ConstantInputError, ValueError):
                continue
    return float(np.mean(taus)) if taus else None


def truth_payload(evaluation: Evaluation, rows) -> dict | None:
    """The evaluation's ground truth for the API and the page; None when none was asked."""
    truth = GroundTruth.objects.filter(evaluation=evaluation).first()
    if truth is None:
        return None
    results = list(truth.results.select_related("checkpoint"))
    accuracy = {r.checkpoint.name: r.accuracy for r in results
                if r.status == Status.DONE and r.accuracy is not None}
    errors = {}
    for r in results:
        details = r.details or {}
        if r.accuracy is None:
            continue
        if details.get("standard_error") is not None:
            errors[r.checkpoint.name] = details["standard_error"]
        elif details.get("test"):
            errors[r.checkpoint.name] = standard_error(r.accuracy, details["test"])
    values = list(accuracy.values())
    budget = _budget_payload(truth, evaluation, accuracy) if truth.strategy else None
    tied = tied_with_best(accuracy, errors)
    return {
        "status": truth.status,
        "mode": truth.mode,
        "progress": round(truth.progress, 4),
        "message": truth.message,
        "test_fraction": truth.test_fraction,
        "seeds": truth.seeds,
        "accuracy": accuracy,
        "standard_error": errors,
        # Within noise of the best (combined standard error), best first.
        "tied": tied,
        "best": max(accuracy, key=accuracy.get) if accuracy else None,
        "stability": stability(results),
        "spread": {"min": min(values), "max": max(values),
                   "range": max(values) - min(values),
                   "mean_standard_error": float(np.mean(list(errors.values())))
                   if errors else None} if values else None,
        "agreement": _agreement(truth, rows, accuracy, tied) if len(accuracy) >= 2 else {},
        "results": [_result_payload(r, errors) for r in results],
        "created_at": truth.created_at,
        "finished_at": truth.finished_at,
        # On a budget: the strategy, its rungs, the best found and its regret.
        "budget": budget,
    }


def _result_payload(r: TruthResult, errors: dict) -> dict:
    details = r.details or {}
    return {"checkpoint": r.checkpoint.name, "status": r.status, "accuracy": r.accuracy,
            "mean": r.accuracy, "standard_error": errors.get(r.checkpoint.name),
            "runs": details.get("runs", []), "chosen": details.get("chosen") or None,
            "at_edge": details.get("at_edge"), "message": r.message, "seconds": r.seconds,
            "details": details}


def _agreement(truth: GroundTruth, rows, accuracy, tied) -> dict:
    """The agreement table; with bootstrap intervals once the truth is finished (drawn
    once per state of the truth and the scores, cached)."""
    from django.core.cache import cache

    if not truth.is_finished:
        return agreement(rows, accuracy, tied)
    state = repr((truth.pk, truth.finished_at, sorted(accuracy.items()),
                  [(r.checkpoint.name, sorted(r.scores.items())) for r in rows]))
    key = "truth-agreement:" + hashlib.sha256(state.encode()).hexdigest()[:32]
    try:
        found = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache is an optimisation
        found = None
    if found is None:
        found = agreement(rows, accuracy, tied, intervals=True)
        try:
            cache.set(key, found, 24 * 3600)
        except Exception:  # noqa: BLE001
            pass
    return found


def full_truth_elsewhere(evaluation: Evaluation) -> dict[str, float]:
    """True accuracies of a finished full fine-tuning truth (not on a budget) of the same
    dataset content, the latest; {} when there is none."""
    truth = (GroundTruth.objects.filter(
        status=Status.DONE, mode=GroundTruth.Mode.FINETUNE, strategy="",
        evaluation__dataset__content_hash=evaluation.dataset.content_hash,
        evaluation__dataset__owner=evaluation.owner)
        .order_by("-finished_at").first())
    if truth is None:
        return {}
    return dict(truth.results.filter(status=Status.DONE, accuracy__isnull=False)
                .values_list("checkpoint__name", "accuracy"))


def _budget_payload(truth: GroundTruth, evaluation: Evaluation, accuracy: dict) -> dict:
    plan = truth.plan or {}
    found = max(accuracy, key=accuracy.get) if accuracy else None
    out = {"strategy": truth.strategy, "budget": truth.budget, "rungs": plan.get("rungs", []),
           "rung": plan.get("rung", 0), "order": plan.get("order", []),
           "history": plan.get("history", {}), "best_found": found,
           "best_found_accuracy": accuracy.get(found) if found else None,
           "regret": None, "full_truth_best": None}
    if found and truth.status == Status.DONE:
        full = full_truth_elsewhere(evaluation)
        if found in full and len(full) >= 2:
            best = max(full, key=full.get)
            out.update(regret=full[best] - full[found], full_truth_best=best)
    return out

