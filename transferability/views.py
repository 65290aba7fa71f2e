import hashlib
import json
import tempfile

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from config.middleware import no_nonce, nonce_scripts
from workers import caches
from zoo.models import Checkpoint

from . import charts
from .api.cancellation import UNFINISHED, cancel_evaluation, delete_evaluation
from .api.serializers import evaluation_payload
from .api.throttling import page_refusal
from .comparison import MAX_COMPARED, CompareError, compare, parse_ids
from .datasets import (TINY_CLASS_IMAGES, ArchiveError, accept_upload, archive_limits,
                       dataset_warnings, ensure_statistics, ingest_policy, queue_thumbnails)
from .exports import SpreadsheetWriter
from .images import (ImageNotFound, ThumbnailsNotMade, dataset_files, placeholder_png,
                     thumbnail_path)
from .forms import DatasetUploadForm, EvaluationForm
from .leakage import leaked_checkpoints
from .models import Evaluation, GroundTruth, MetricScore, Status, TargetDataset, Transfer
from .metrics import REGISTRY
from .pairs import (PRE_LOGITS, direction_summary, find_pair, flip_examples, pair_rows,
                    sample_correctness)
from .predictors import predictor_report
from .quota import storage_use
from .recommendation import recommend
from .results import approximation_notes, lead_of, metric_columns, rank_choices, ranked_rows
from .submission import SubmissionError, retry, stalled_results, submit_evaluation
from .teacher_cover import propose_all
from .transfer_recipe import TransferRecipe
from .transfers import MAX_TEACHERS, submit_transfer, suggest_pair
from .verification import (MAX_SEEDS, PAGE_SEEDS, REFERENCES, estimate_minutes, submit_truth,
                           truth_payload)


@login_required
def dashboard(request):
    datasets = TargetDataset.objects.filter(owner=request.user)
    evaluations = Evaluation.objects.filter(owner=request.user)
    return render(request, "transferability/dashboard.html", {
        "datasets": datasets[:20],
        # Results prefetched: each row's checkpoint count, progress and questions read them.
        "evaluations": with_questions(evaluations.select_related("dataset")
                                      .defer("complementarity").prefetch_related("results")[:20]),
        "dataset_count": datasets.count(),
        "evaluation_count": evaluations.count(),
        "zoo_size": Checkpoint.objects.visible_to(request.user).count(),
        "zoo_enabled": Checkpoint.objects.visible_to(request.user).filter(enabled=True).count(),
        "storage": storage_use(request.user),
    })


@login_required
def predictors(request):
    """Which predictor to trust: every predictor's agreement with the site's ground truths,
    the chooser's leave-one-dataset-out check, and the lead it picked."""
    report = predictor_report(request.user)
    measuring = (GroundTruth.objects.filter(evaluation__owner=request.user)
                 .exclude(status__in=(Status.DONE, Status.FAILED))
                 .select_related("evaluation__dataset").prefetch_related("results"))
    return render(request, "transferability/predictors.html",
                  {**report, "measuring": measuring})


@login_required
def dataset_upload(request):
    if request.method == "POST" and (refusal := page_refusal(request)):
        return _refused_form(request, "transferability/dataset_upload.html", refusal, {
            "form": DatasetUploadForm(request.POST, request.FILES), "limits": archive_limits(),
            "policy": ingest_policy(), "storage": storage_use(request.user)})
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = accept_upload(request.user, form.cleaned_data["name"],
                                    form.cleaned_data["file"])
        except ArchiveError as exc:
            form.add_error("file", str(exc))
        else:
            messages.success(request, f"Dataset {dataset.name} uploaded "
                                      f"({dataset.archive_bytes / 2**20:.1f} MiB); its images "
                                      f"are being checked and unpacked.")
            return redirect(dataset)
    return render(request, "transferability/dataset_upload.html", {
        "form": form, "limits": archive_limits(), "policy": ingest_policy(),
        "storage": storage_use(request.user)})


@login_required
def dataset_detail(request, pk):
    dataset = get_object_or_404(TargetDataset, pk=pk, owner=request.user)
    if not dataset.is_ready:
        return render(request, "transferability/dataset_ingest.html", {"dataset": dataset})
    refusal = page_refusal(request) if request.method == "POST" else None
    form = EvaluationForm(request.POST or None, user=request.user, dataset=dataset)
    if refusal is not None:
        form.full_clean()  # the user's choices stay on the form, with the reason above them
        form.add_error(None, refusal[0])
    elif request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            evaluation = submit_evaluation(
                request.user, dataset, data["checkpoints"], metrics=data["metrics"],
                correctness_source=data["correctness_source"], score_stages=data["score_stages"],
            )
        except SubmissionError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect(evaluation)
    classes = sorted(zip(dataset.class_names, dataset.class_counts), key=lambda c: c[0])
    stats = ensure_statistics(dataset, max_images=STATS_ON_VIEW_LIMIT)
    twins = (TargetDataset.objects.filter(owner=request.user, content_hash=dataset.content_hash)
             .exclude(pk=dataset.pk).only("pk", "name"))
    page = Paginator(classes, GRID_CLASSES_PER_PAGE).get_page(request.GET.get("page"))
    response = render(request, "transferability/dataset_detail.html", {
        "dataset": dataset, "form": form, "classes": classes,
        "delete_question": dataset_delete_question(dataset),
        "evaluations": dataset.evaluations.defer("complementarity")
                              .prefetch_related("results")[:20],
        "stats": stats, "warnings": dataset_warnings(dataset, stats), "twins": list(twins),
        "stats_sides": [(label, stats[key]) for label, key in (("Width", "width"),
                                                               ("Height", "height"))
                        if key in stats],
        "tiny_class": TINY_CLASS_IMAGES,
        "balance_chart": charts.class_balance(dataset.class_names, dataset.class_counts,
                                              TINY_CLASS_IMAGES) if dataset.class_names else "",
        "grid": page, "grid_classes": _thumbnail_grid(dataset, page.object_list),
        "duplicate_examples": _duplicate_examples(dataset, stats),
        "storage": storage_use(request.user),
    })
    return _with_refusal(response, refusal)


def _refused_form(request, template: str, refusal: tuple[str, int], context: dict):
    """A form page whose POST was over the submission limit: the form again, the reason
    and when to retry above it, 429 with the API's Retry-After."""
    context["form"].full_clean()
    context["form"].add_error(None, refusal[0])
    return _with_refusal(render(request, template, context), refusal)


def _with_refusal(response, refusal):
    if refusal is not None:
        response.status_code = 429
        response["Retry-After"] = str(refusal[1])
    return response


STATS_ON_VIEW_LIMIT = 5000  # a dataset from before upload-time statistics: measured on view
GRID_CLASSES_PER_PAGE = 24
GRID_IMAGES_PER_CLASS = 6


def _thumbnail_grid(dataset, classes) -> list[dict] | None:
    """A few image indices per class shown; None when the images are not in the store."""
    try:
        class_names, files = dataset_files(dataset)
    except ImageNotFound:
        return None
    wanted = {name for name, _ in classes}
    picks: dict[str, list[int]] = {name: [] for name in wanted}
    for index, (_, label) in enumerate(files):
        name = class_names[label]
        if name in wanted and len(picks[name]) < GRID_IMAGES_PER_CLASS:
            picks[name].append(index)
    return [{"name": name, "count": count, "indices": picks.get(name, [])}
            for name, count in classes]


def _duplicate_examples(dataset, stats) -> list[list[dict]]:
    """The stored duplicate groups as (index, class) entries for thumbnails."""
    groups = ((stats or {}).get("duplicates") or {}).get("examples") or []
    if not groups:
        return []
    try:
        class_names, files = dataset_files(dataset)
    except ImageNotFound:
        return []
    return [[{"index": i, "class": class_names[files[i][1]]} for i in group if i < len(files)]
            for group in groups]


@login_required
@require_GET
def dataset_image(request, pk, index):
    """The thumbnail of image ``index`` of one of my datasets, as ingest stored it: the file
    is found through the dataset's manifest, never through a path in the URL, and no image
    is decoded here. A dataset stored before thumbnails were made at ingest gets a grey
    placeholder, not cached, while a worker makes them."""
    dataset = get_object_or_404(TargetDataset, pk=pk, owner=request.user)
    try:
        path = thumbnail_path(dataset, index)
    except ThumbnailsNotMade:
        queue_thumbnails(dataset)
        response = HttpResponse(placeholder_png(), content_type="image/png")
        response["Cache-Control"] = "no-store"
        return response
    except ImageNotFound as exc:
        raise Http404(str(exc)) from None
    etag = '"' + hashlib.sha256(f"{dataset.store_dir}/{index}".encode()).hexdigest()[:24] + '"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified()
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise Http404(f"the thumbnail of image {index} cannot be read: {exc}") from None
    response = HttpResponse(body, content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    response["ETag"] = etag
    return response


@login_required
@require_POST
def dataset_delete(request, pk):
    dataset = get_object_or_404(TargetDataset, pk=pk, owner=request.user)
    name = dataset.name
    dataset.delete()
    messages.success(request, f"Dataset {name} deleted.")
    return redirect("dashboard")


@login_required
@require_POST
def evaluation_retry(request, pk):
    evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
    if refusal := page_refusal(request):
        messages.error(request, refusal[0])
        return redirect(evaluation)
    try:
        count = retry(evaluation)
    except SubmissionError as exc:
        messages.error(request, f"Nothing retried: {exc}.")
    else:
        messages.success(request, f"{count} checkpoint{'s' if count != 1 else ''} "
                                  f"queued again.")
    return redirect(evaluation)


@login_required
@require_POST
def evaluation_truth(request, pk):
    evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
    if refusal := page_refusal(request):
        messages.error(request, refusal[0])
        return redirect(f"{evaluation.get_absolute_url()}#truth")
    mode = request.POST.get("mode", GroundTruth.Mode.FINETUNE)
    budget, strategy = request.POST.get("budget"), request.POST.get("strategy", "")
    seeds = request.POST.get("seeds", "1")
    try:
        if not (seeds.isdecimal() and seeds.isascii() and 1 <= int(seeds) <= MAX_SEEDS):
            raise SubmissionError(f"the seeds must be a whole number from 1 to {MAX_SEEDS}")
        if budget is not None and not (budget.isdecimal() and budget.isascii()
                                       and 1 <= int(budget) <= 1000):
            raise SubmissionError("the budget must be a whole number of fine-tunes from 1 "
                                  "to 1000")
        truth = submit_truth(evaluation, mode=mode, budget=int(budget) if budget else None,
                             strategy=strategy if budget else "", seeds=int(seeds))
    except SubmissionError as exc:
        messages.error(request, f"Ground truth not started: {exc}.")
    else:
        messages.success(request, f"Measuring the true accuracy of {truth.results.count()} "
                                  f"checkpoints by {truth.get_mode_display().lower()}.")
    return redirect(f"{evaluation.get_absolute_url()}#truth")


@login_required
@require_POST
def evaluation_transfer(request, pk):
    evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
    if refusal := page_refusal(request):
        messages.error(request, refusal[0])
        return redirect(f"{evaluation.get_absolute_url()}#transfer")
    post = request.POST
    try:
        transfer = submit_transfer(
            request.user, evaluation, post.getlist("teachers") or post.get("teacher", ""),
            post.get("student", ""), variant=post.get("variant", Transfer.Variant.SUPERVISED),
            mode=post.get("mode", Transfer.Mode.SEQUENTIAL),
            order=post.get("order", Transfer.Order.ASCENDING), epochs=post.get("epochs"),
            learning_rate=post.get("learning_rate"), temperature=post.get("temperature"))
    except SubmissionError as exc:
        messages.error(request, f"Transfer not started: {exc}.")
    else:
        teachers = [t.name for t in transfer.teachers]
        how = f", {transfer.get_mode_display()}" if len(teachers) > 1 else ""
        messages.success(request, f"Transferring {' + '.join(teachers)} into "
                                  f"{transfer.student.name} ({transfer.get_variant_display()}"
                                  f"{how}).")
        return redirect(transfer)
    return redirect(f"{evaluation.get_absolute_url()}#transfer")


@login_required
def evaluation_detail(request, pk):
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"),
                                   pk=pk, owner=request.user)
    rank_by = request.GET.get("rank") or None
    rows = ranked_rows(evaluation, rank_by=rank_by)
    choices = rank_choices(rows)
    rank_by = rank_by if rank_by in choices else None
    columns = metric_columns(rows)
    if not evaluation.is_finished:
        # Every column the evaluation will fill, so that scores can appear as they come.
        columns = [spec for name, spec in REGISTRY.items()
                   if name in (evaluation.metrics or REGISTRY) or spec in columns]
    lead = lead_of(rows)  # what ranks the table: the lead, or the predictor picked
    evidence_lead = rows.evidence_lead
    ranking = lead.chart_metric if lead else None
    chart_spec = REGISTRY[ranking] if ranking else None
    notes = approximation_notes(rows)
    truth = truth_payload(evaluation, rows)
    class_counts = evaluation.dataset.class_counts
    warnings, consensus, consensus_metrics = (rows.warnings, rows.consensus,
                                              rows.consensus_metrics)
    leakage = leaked_checkpoints(evaluation)  # trained on these images
    recommendation = recommend(rows, class_counts, truth, lead=evidence_lead, leakage=leakage)
    report_names = (evaluation.complementarity or {}).get("names", [])
    ids_by_name = {r.checkpoint.name: r.checkpoint.pk for r in rows
                   if r.checkpoint.name in report_names}
    pair_base = reverse("evaluation-pair", args=[evaluation.pk, 0, 0]).removesuffix("0/0/")
    context = {
        "evaluation": evaluation, "rows": rows, "columns": columns,
        "leakage": leakage,
        "set_columns": [s for s in columns if s.relative_to_set],
        "notes": notes, "noted": {spec.name for spec, _ in notes},
        "failed_count": sum(r.result.status == Status.FAILED for r in rows),
        "stalled_count": 0 if evaluation.is_finished else stalled_results(evaluation).count(),
        "rank_label": lead.label if lead else "",
        "lead": lead, "evidence_lead": evidence_lead,
        "rank_by": rank_by or "", "rank_choices": choices,
        # Headers may wrap between words but not at a hyphen ("H-" / "score").
        "column_labels": {s.name: s.label.replace("-", "\u2011") for s in columns},
        **_evaluation_charts(evaluation, rows, columns, chart_spec, truth, rank_by),
        "pairs": _linked(pair_rows(evaluation.complementarity, ids_by_name), pair_base),
        "pair_total": len(report_names) * (len(report_names) - 1),
        "pair_models": len(report_names),
        # Keyed by the names as the heatmap shows them: its clicks give those.
        "pair_ids": json.dumps({charts.plain(name): pk for name, pk in ids_by_name.items()}),
        "pair_base": pair_base,
        "has_probe": any("probe_accuracy" in r.scores for r in rows),
        "cached_features": {r.result.pk for r in rows if r.result.feature_key
                            and caches.features.has(r.result.feature_key, PRE_LOGITS)},
        "stages": _stage_rows(rows, chart_spec) if evaluation.score_stages and chart_spec else [],
        "truth": truth,
        "recommendation": recommendation,
        "confidence": recommendation.confidence if recommendation else {},
        **_verify_budget(evaluation, rows),
        **evaluation_questions(evaluation, list(evaluation.results.all()),
                               GroundTruth.objects.filter(evaluation=evaluation).exists(),
                               evaluation.transfers.count()),
        "consensus": consensus,
        "consensus_metrics": consensus_metrics,
        "warnings": warnings,
        "warning_notes": _warning_notes(warnings),
        "chosen_metric": ranking or next((s.name for s in columns if s.kind == "metric"), ""),
        "transfers": evaluation.transfers.select_related("teacher", "student",
                                                         "result_checkpoint")
                               .prefetch_related("steps__teacher"),
        "transfer_choices": [r.checkpoint.name for r in rows if r.result.status == Status.DONE],
        "transfer_variants": Transfer.Variant.choices,
        "transfer_modes": Transfer.Mode.choices, "transfer_orders": Transfer.Order.choices,
        "transfer_recipe": TransferRecipe(),
        "transfer_max_teachers": MAX_TEACHERS,
        "suggestion": suggest_pair(evaluation, rows, recommendation.checkpoint.name
                                   if recommendation else None),
        "teacher_proposals": teacher_proposals(evaluation, rows),
        "truth_modes": GroundTruth.Mode.choices,
        "seed_choices": [(1, "1 split"), (PAGE_SEEDS, f"{PAGE_SEEDS} splits: mean ± error"),
                         (5, "5 splits")], "page_seeds": PAGE_SEEDS,
        "agreement_rows": _agreement_rows(truth),
        "truth_train_percent": round(100 * (1 - truth["test_fraction"])) if truth else None,
        # Checkpoints whose learning-rate search hit its bound (the choice at an edge).
        "edge_names": [r["checkpoint"] for r in (truth or {}).get("results", [])
                       if r["at_edge"]],
        # Kendall's tau over M checkpoints moves in steps of 4 / (M (M - 1)).
        "tau_step": 4 / (len(truth["accuracy"]) * (len(truth["accuracy"]) - 1))
        if truth and len(truth["accuracy"]) >= 2 else None,
        "truth_chart": charts.truth_scatter(rows, truth, _truth_chart_specs(columns, chart_spec))
        if truth and truth["agreement"] else "",
    }
    return render(request, "transferability/evaluation_detail.html", context)


VERIFY_BUDGET = 3


def _verify_budget(evaluation, rows) -> dict:
    """The page's "Verify the top 3 (about N min)": the budget and its estimated time."""
    ranked = [r.checkpoint.name for r in rows if r.rank is not None]
    if evaluation.status != Status.DONE or len(ranked) <= VERIFY_BUDGET:
        return {"verify_budget": None, "verify_minutes": None}
    return {"verify_budget": VERIFY_BUDGET,
            "verify_minutes": estimate_minutes(evaluation, ranked[:VERIFY_BUDGET])}


CHARTS_CACHE_SECONDS = 24 * 3600


def _evaluation_charts(evaluation, rows, columns, chart_spec, truth,
                       rank_by=None) -> dict[str, str]:
    """The evaluation page's charts of scores, cost, agreement, probe and flips.

    A finished evaluation's charts change only when it finishes again (a retry) or its
    ground truth moves on, so they are drawn once per such state and cached (without a
    CSP nonce; each request's is put on when they are used): drawing them is most of the
    page's work (the agreement matrix alone is a Kendall tau per pair of metrics).
    """
    def draw() -> dict[str, str]:
        specs = _chart_specs(columns, chart_spec) if chart_spec else []
        finished = evaluation.is_finished
        return {
            "score_chart": charts.score_bars(rows, specs, chart_spec) if chart_spec else "",
            "flips_chart": charts.flips_heatmap(evaluation.complementarity)
            if evaluation.complementarity else "",
            "cost_chart": charts.cost_scatter(rows, specs) if finished and chart_spec else "",
            "agreement_chart": charts.agreement_heatmap(rows, columns) if finished else "",
            "probe_chart": charts.probe_scatter(rows, specs) if finished else "",
        }

    if not evaluation.is_finished:
        return draw()
    state = (evaluation.created_at.isoformat(), evaluation.status,
             evaluation.finished_at.isoformat() if evaluation.finished_at else "", truth and truth["status"], truth and str(truth["finished_at"]),
             [r.checkpoint.name for r in rows], rank_by, chart_spec and chart_spec.name)
    key = "evaluation-charts:" + hashlib.sha256(
        f"{evaluation.pk}|{state}".encode()).hexdigest()[:32]
    drawn = cache.get(key)
    if drawn is None:
        with no_nonce():
            drawn = draw()
        cache.set(key, drawn, CHARTS_CACHE_SECONDS)
    return {name: nonce_scripts(html) for name, html in drawn.items()}


def _warning_notes(warnings) -> list[tuple[str, str]]:
    """One line per metric: why it cannot discriminate, for all or for some checkpoints."""
    notes = []
    for name, where in warnings.items():
        label = REGISTRY[name].label
        if "*" in where:
            notes.append((label, where["*"]))
        else:
            first = next(iter(where.values()))
            notes.append((label, f"for {len(where)} checkpoint{'s' if len(where) > 1 else ''}"
                                 f" ({', '.join(list(where)[:3])}{'…' if len(where) > 3 else ''})"
                                 f": {first.split(':')[0]}"))
    return notes


def _agreement_rows(truth) -> list[dict]:
    """The agreement table: best weighted tau first, undefined last."""
    if not truth or not truth["agreement"]:
        return []
    rows = [{"name": name, **entry} for name, entry in truth["agreement"].items()]
    rows.sort(key=lambda r: (r["weighted_tau"] is None, -(r["weighted_tau"] or 0.0)))
    return rows


def _truth_chart_specs(columns, ranking_spec) -> list:
    """The ranking metric first, then the other columns, then the references."""
    return _chart_specs(columns, ranking_spec) + REFERENCES


def _stage_rows(rows, spec) -> list[dict]:
    """Per checkpoint: the metric at each stage, in network order, then at the pre-logits."""
    stage_rows = []
    for row in rows:
        layers = [(layer, scores.get(spec.name)) for layer, scores in row.stage_scores.items()]
        if not layers:
            continue
        layers.append((MetricScore.PRE_LOGITS, row.scores.get(spec.name)))
        stage_rows.append({"checkpoint": row.checkpoint.name, "layers": layers,
                           "best": row.result.best_stage})
    return stage_rows


def _linked(pairs: list[dict], base: str) -> list[dict]:
    """Each pair with the URL of its page (``base``/a/b/), when both ids are known."""
    for pair in pairs:
        if pair["a_id"] and pair["b_id"]:
            pair["url"] = f"{base}{pair['a_id']}/{pair['b_id']}/"
    return pairs


def _chart_specs(columns, ranking_spec) -> list:
    """The ranking metric first, then the other metrics and baselines, registry order."""
    return ([ranking_spec] if ranking_spec else []) + [s for s in columns if s != ranking_spec]


@login_required
def evaluation_export(request, pk, fmt):
    """The ranking as CSV or JSON, with the answer: ``rank`` by ``ranked_by`` (the lead, or
    the predictor of ``?rank=``), the consensus rank, the true accuracy (mean and standard
    error) where measured, and the recommendation with its basis and cautions."""
    if fmt not in ("csv", "json"):
        raise Http404("exports are CSV or JSON")
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"),
                                   pk=pk, owner=request.user)
    rows = ranked_rows(evaluation, rank_by=request.GET.get("rank") or None)
    filename = f"evaluation-{evaluation.pk}.{fmt}"
    payload = evaluation_payload(evaluation, rows)
    if fmt == "json":
        body = json.dumps(payload, cls=DjangoJSONEncoder, indent=2)
        response = HttpResponse(body, content_type="application/json")
    else:
        columns = metric_columns(rows)
        answer = payload["recommendation"] or {}
        ranked_by = (payload["ranked_by"] or {}).get("label", "")
        response = HttpResponse(content_type="text/csv")
        writer = SpreadsheetWriter(response)
        writer.writerow(["rank", "ranked_by", "checkpoint", "consensus_rank",
                         "true_accuracy", "true_accuracy_se", "recommended", "architecture",
                         "feature_dim", "param_count", "source_top1", "status"]
                        + [s.name for s in columns]
                        + ["flagged", "notes", "recommendation", "cautions"])
        for row, result in zip(rows, payload["results"]):
            truth = result["true_accuracy"] or {}
            chosen = row.checkpoint.name == answer.get("checkpoint")
            writer.writerow(
                [row.rank or "", ranked_by, row.checkpoint.name,
                 result["consensus_rank"] or "", _cell(truth.get("mean")),
                 _cell(truth.get("standard_error")), "yes" if chosen else "",
                 row.checkpoint.architecture, row.result.feature_dim or "",
                 row.checkpoint.param_count or "",
                 row.checkpoint.source_top1 if row.checkpoint.source_top1 is not None else "",
                 row.result.status]
                + [_cell(row.scores.get(s.name)) for s in columns]
                + ["; ".join(result["flagged"]), _csv_notes(row, columns),
                   _answer_text(answer) if chosen else "",
                   " | ".join(answer.get("cautions", [])) if chosen else ""])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _answer_text(answer: dict) -> str:
    """"Take X: basis; margin; confidence" as the page says it."""
    parts = [answer["basis"], answer.get("margin"), answer.get("truth_note"),
             answer.get("confidence")]
    return f"Take {answer['checkpoint']}: " + "; ".join(p for p in parts if p)


def _cell(value):
    return "" if value is None else repr(float(value))


def _csv_notes(row, columns) -> str:
    """What a spreadsheet cannot show beside the numbers: "ncti: relative to this set of
    checkpoints; knn_accuracy: k-NN on 10,000 of 50,000 samples"."""
    notes = []
    for spec in columns:
        if spec.relative_to_set:
            notes.append(f"{spec.name}: relative to this set of checkpoints")
        if spec.name in row.notes:
            notes.append(f"{spec.name}: {row.notes[spec.name]}")
    return "; ".join(notes)


# One pair of checkpoints -----------------------------------------------------------------------

PAIR_EXAMPLES_PER_CLASS = 4
PAIR_EXAMPLE_CLASSES = 12


@login_required
def evaluation_pair(request, pk, a, b):
    """Checkpoint ``a`` against checkpoint ``b`` (ids) in one of my evaluations: the flips
    both ways, where they fall among the classes, and images one gets right and the other
    wrong."""
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"),
                                   pk=pk, owner=request.user)
    results = {r.checkpoint_id: r for r in evaluation.results.select_related("checkpoint")
               .filter(checkpoint_id__in=[a, b])}
    if a == b or a not in results or b not in results:
        raise Http404("both checkpoints must be different checkpoints of this evaluation")
    result_a, result_b = results[a], results[b]
    name_a, name_b = result_a.checkpoint.name, result_b.checkpoint.name
    report = evaluation.complementarity
    forward = find_pair(report, name_a, name_b)
    backward = find_pair(report, name_b, name_a)
    context = {"evaluation": evaluation, "result_a": result_a, "result_b": result_b,
               "a": result_a.checkpoint, "b": result_b.checkpoint,
               "report": report, "pair": forward}
    if forward is None or backward is None:
        return render(request, "transferability/evaluation_pair.html", context)
    n_samples = report["n_samples"]
    accuracy = dict(zip(report["names"], report["accuracy"]))
    classes = forward["breakdown"]["classes"]
    data = sample_correctness(evaluation, result_a, result_b, forward)
    examples = {}
    if data.available:
        for key, right, wrong in (("ab", data.correct_a, data.correct_b),
                                  ("ba", data.correct_b, data.correct_a)):
            examples[key] = flip_examples(right, wrong, data.labels, data.class_names,
                                          PAIR_EXAMPLES_PER_CLASS, PAIR_EXAMPLE_CLASSES)
    context.update({
        "n_samples": n_samples, "n_classes": report.get("n_classes", len(classes)),
        "accuracy_a": accuracy.get(name_a), "accuracy_b": accuracy.get(name_b),
        "forward": direction_summary(forward, n_samples),
        "backward": direction_summary(backward, n_samples),
        "oracle": forward["oracle"],
        "oracle_gain": forward["oracle"] - max(accuracy.get(name_a, 0.0),
                                               accuracy.get(name_b, 0.0)),
        "chart": charts.pair_breakdown(classes, forward["breakdown"]["counts"],
                                       backward["breakdown"]["counts"], name_a, name_b),
        "samples": data, "examples": examples,
        "per_class": PAIR_EXAMPLES_PER_CLASS, "example_classes": PAIR_EXAMPLE_CLASSES,
        "can_transfer": evaluation.status == Status.DONE,
        "source": report.get("source", evaluation.correctness_source),
    })
    return render(request, "transferability/evaluation_pair.html", context)


# Exporting one checkpoint's features -----------------------------------------------------------

@login_required
@require_GET
def result_features(request, pk, result_id):
    """``features.npz`` of one checkpoint of my evaluation: arrays ``features`` (N x d, the
    pre-logits), ``labels`` (N label indices) and ``class_names``, in dataset order."""
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"),
                                   pk=pk, owner=request.user)
    result = get_object_or_404(evaluation.results.select_related("checkpoint"), pk=result_id)
    name = result.checkpoint.name

    def missing(reason: str):
        return render(request, "transferability/missing.html", {
            "evaluation": evaluation, "title": f"No features for {name}", "reason": reason,
        }, status=404)

    if result.status != Status.DONE:
        return missing("The checkpoint has not finished: its features are exported once it "
                       "is done." if not evaluation.is_finished else
                       "The checkpoint failed, so it has no features.")
    if not result.feature_key or not caches.features.has(result.feature_key, PRE_LOGITS):
        return missing(f"Its features are no longer in the feature cache (it was cleared "
                       f"since the evaluation ran). Start a new evaluation of {name} on "
                       f"{evaluation.dataset.name} to extract them again.")
    try:
        class_names, files = dataset_files(evaluation.dataset)
    except ImageNotFound:
        return missing("The dataset's images are no longer in the dataset store, so the "
                       "labels of the features are unknown.")
    features = caches.features.load(result.feature_key, PRE_LOGITS, mmap=True)
    labels = np.array([label for _, label in files], dtype=np.int64)
    if features.shape[0] != labels.shape[0]:
        return missing(f"The cached features cover {features.shape[0]} images; the dataset "
                       f"has {labels.shape[0]}.")
    out = tempfile.TemporaryFile()
    np.savez(out, features=features, labels=labels, class_names=np.array(class_names, dtype=str))
    out.seek(0)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return FileResponse(out, as_attachment=True, content_type="application/octet-stream",
                        filename=f"evaluation-{evaluation.pk}-{safe}-features.npz")


# Evaluations side by side ----------------------------------------------------------------------

@login_required
def evaluation_compare(request):
    """``?ids=1,2``: two or more of my evaluations side by side."""
    context = {"max_compared": MAX_COMPARED}
    try:
        ids = parse_ids(request.GET.getlist("ids"))
    except CompareError as exc:
        raise Http404(str(exc)) from None
    evaluations = {e.pk: e for e in Evaluation.objects.filter(pk__in=ids, owner=request.user)
                   .select_related("dataset").defer("complementarity")}
    if len(evaluations) != len(ids):
        raise Http404("no such evaluation")
    if len(ids) < 2:
        context["problem"] = "Choose at least two evaluations to compare."
    elif len(ids) > MAX_COMPARED:
        context["problem"] = f"Compare at most {MAX_COMPARED} evaluations at once."
    else:
        context["comparison"] = compare([evaluations[pk] for pk in ids],
                                        rank_by=request.GET.get("rank") or None)
    context["ids"] = ids
    return render(request, "transferability/evaluation_compare.html", context)


# Cancelling, deleting and re-running an evaluation ---------------------------------------------

def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


def _listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]])) if items else ""


def evaluation_questions(evaluation, results, has_truth: bool, transfers: int) -> dict:
    """The confirmations of an evaluation's Cancel and Delete buttons, naming what goes.

    ``results`` are its result rows. Deleting cascades to its results and their scores, its
    ground truth and its transfers; a distilled checkpoint outlives its transfer (the
    transfer's link to it is all that goes), so it is kept.
    """
    name = f"evaluation {evaluation.pk} of dataset '{evaluation.dataset.name}'"
    parts = [f"its {_counted(len(results), 'result')}"]
    if has_truth:
        parts.append("its ground truth")
    if transfers:
        parts.append(_counted(transfers, "transfer"))
    delete = f"Delete {name} with {_listed(parts)}?"
    if not evaluation.is_finished:
        delete += " It is cancelled first."
    if transfers:
        delete += " Distilled checkpoints are kept."
    unfinished = sum(r.status in UNFINISHED for r in results)
    finished = len(results) - unfinished
    if unfinished:
        cancel = (f"Cancel {name}? Its {_counted(unfinished, 'unfinished checkpoint')} "
                  f"{'stops and is' if unfinished == 1 else 'stop and are'} marked failed")
        if finished:
            cancel += (f"; {_counted(finished, 'finished checkpoint')} "
                       f"{'keeps its' if finished == 1 else 'keep their'} scores")
        cancel += ". Retry resumes the stopped ones."
    else:
        cancel = f"Cancel {name}? Its checkpoints are scored; its last step is stopped."
    return {"delete_question": delete, "cancel_question": cancel}


def with_questions(evaluations) -> list:
    """The evaluations (results prefetched), each with its ``delete_question`` and
    ``cancel_question``: two queries for all of them."""
    evaluations = list(evaluations)
    ids = [e.pk for e in evaluations]
    truths = set(GroundTruth.objects.filter(evaluation__in=ids)
                 .values_list("evaluation_id", flat=True))
    transfers = dict(Transfer.objects.filter(evaluation__in=ids).values("evaluation_id")
                     .annotate(n=Count("pk")).values_list("evaluation_id", "n"))
    for e in evaluations:
        questions = evaluation_questions(e, list(e.results.all()), e.pk in truths,
                                         transfers.get(e.pk, 0))
        e.delete_question, e.cancel_question = (questions["delete_question"],
                                                questions["cancel_question"])
    return evaluations


def dataset_delete_question(dataset) -> str:
    """The dataset's Delete confirmation: deleting it deletes its images and its
    evaluations with all of theirs; distilled checkpoints are kept."""
    evaluations = dataset.evaluations.count()
    question = (f"Delete dataset '{dataset.name}' with its {_counted(dataset.num_images, 'image')}"
                f" and {_counted(evaluations, 'evaluation')}")
    if evaluations:
        question += " (their results, ground truths and transfers)"
    question += "?"
    if Transfer.objects.filter(evaluation__dataset=dataset).exists():
        question += " Distilled checkpoints are kept."
    return question


def _back(request, fallback):
    """To the page the form names in ``next`` (the dashboard), else to ``fallback``."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)


@login_required
@require_POST
def evaluation_cancel(request, pk):
    evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
    try:
        count = cancel_evaluation(evaluation)
    except SubmissionError as exc:
        messages.error(request, f"Evaluation {pk} not cancelled: {exc}.")
    else:
        messages.success(request, f"Evaluation {pk} cancelled: "
                                  f"{_counted(count, 'unfinished checkpoint')} stopped; Retry "
                                  f"resumes them.")
    return _back(request, evaluation)


@login_required
@require_POST
def evaluation_delete(request, pk):
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"), pk=pk,
                                   owner=request.user)
    try:
        delete_evaluation(evaluation)
    except SubmissionError as exc:
        messages.error(request, f"Evaluation {pk} not deleted: {exc}.")
        return _back(request, evaluation)
    messages.success(request, f"Evaluation {pk} of dataset {evaluation.dataset.name} deleted.")
    return redirect("dashboard")


@login_required
@require_POST
def evaluation_rerun(request, pk):
    """A new evaluation of the same dataset with the same checkpoints, metrics and options;
    checkpoints since disabled or no longer visible are left out, and the message says so."""
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"), pk=pk,
                                   owner=request.user)
    if refusal := page_refusal(request):
        messages.error(request, f"Evaluation {pk} not re-run: {refusal[0]}")
        return _back(request, evaluation)
    checkpoints = list(Checkpoint.objects.filter(results__evaluation=evaluation).order_by("name"))
    visible = set(Checkpoint.objects.visible_to(request.user)
                  .filter(pk__in=[c.pk for c in checkpoints]).values_list("pk", flat=True))
    left_out = [f"{c.name} ({'no longer in your zoo' if c.pk not in visible else 'disabled'})"
                for c in checkpoints if c.pk not in visible or not c.enabled]
    kept = [c for c in checkpoints if c.pk in visible and c.enabled]
    left_out_note = f" Left out: {', '.join(left_out)}." if left_out else ""
    try:
        if not kept:
            raise SubmissionError("none of its checkpoints can be evaluated now")
        new = submit_evaluation(request.user, evaluation.dataset, kept,
                                metrics=evaluation.metrics,
                                correctness_source=evaluation.correctness_source,
                                score_stages=evaluation.score_stages)
    except SubmissionError as exc:
        messages.error(request, f"Evaluation {pk} not re-run: {exc}.{left_out_note}")
        return _back(request, evaluation)
    messages.success(request, f"Evaluation {new.pk} re-runs evaluation {pk} with "
                              f"{len(kept)} of its {_counted(len(checkpoints), 'checkpoint')}."
                              f"{left_out_note}")
    return redirect(new)


def teacher_proposals(evaluation, rows) -> list[dict]:
    """For every finished checkpoint as the student, the proposed teachers (a greedy cover
    of its errors); empty until the evaluation is done."""
    if evaluation.status != Status.DONE:
        return []
    return propose_all(evaluation)
