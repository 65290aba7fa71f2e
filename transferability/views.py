import csv
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from zoo.models import Checkpoint

from . import charts
from .api.serializers import evaluation_payload
from .datasets import ArchiveError, create_target_dataset
from .forms import DatasetUploadForm, EvaluationForm
from .models import Evaluation, GroundTruth, MetricScore, Status, TargetDataset, Transfer
from .metrics import REGISTRY
from .recommendation import consensus_ranks, metric_warnings, recommend
from .results import approximation_notes, metric_columns, ranked_rows, rows_ranking_metric
from .submission import SubmissionError, retry, stalled_results, submit_evaluation
from .transfers import submit_transfer, suggest_pair
from .verification import REFERENCES, submit_truth, truth_payload


@login_required
def dashboard(request):
    datasets = TargetDataset.objects.filter(owner=request.user)
    evaluations = Evaluation.objects.filter(owner=request.user)
    return render(request, "transferability/dashboard.html", {
        "datasets": datasets[:20],
        # Results prefetched: each row's checkpoint count and progress read them.
        "evaluations": evaluations.select_related("dataset").defer("complementarity")
                                  .prefetch_related("results")[:20],
        "dataset_count": datasets.count(),
        "evaluation_count": evaluations.count(),
        "zoo_size": Checkpoint.objects.count(),
        "zoo_enabled": Checkpoint.objects.filter(enabled=True).count(),
    })


@login_required
def dataset_upload(request):
    form = DatasetUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = create_target_dataset(request.user, form.cleaned_data["name"],
                                            form.cleaned_data["file"])
        except ArchiveError as exc:
            form.add_error("file", str(exc))
        else:
            messages.success(request, f"Dataset {dataset.name} uploaded: {dataset.num_images} "
                                      f"images in {dataset.num_classes} classes.")
            return redirect(dataset)
    return render(request, "transferability/dataset_upload.html", {"form": form})


@login_required
def dataset_detail(request, pk):
    dataset = get_object_or_404(TargetDataset, pk=pk, owner=request.user)
    form = EvaluationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
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
    classes = sorted(zip(dataset.class_names, dataset.class_counts), key=lambda c: -c[1])
    return render(request, "transferability/dataset_detail.html", {
        "dataset": dataset, "form": form, "classes": classes,
        "evaluations": dataset.evaluations.defer("complementarity")[:20],
    })


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
    mode = request.POST.get("mode", GroundTruth.Mode.FINETUNE)
    try:
        truth = submit_truth(evaluation, mode=mode)
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
    try:
        transfer = submit_transfer(request.user, evaluation, request.POST.get("teacher", ""),
                                   request.POST.get("student", ""),
                                   variant=request.POST.get("variant",
                                                            Transfer.Variant.SUPERVISED))
    except SubmissionError as exc:
        messages.error(request, f"Transfer not started: {exc}.")
    else:
        messages.success(request, f"Transferring {transfer.teacher.name} into "
                                  f"{transfer.student.name} ({transfer.get_variant_display()}).")
    return redirect(f"{evaluation.get_absolute_url()}#transfer")


@login_required
def evaluation_detail(request, pk):
    evaluation = get_object_or_404(Evaluation.objects.select_related("dataset"),
                                   pk=pk, owner=request.user)
    rows = ranked_rows(evaluation)
    columns = metric_columns(rows)
    if not evaluation.is_finished:
        # Every column the evaluation will fill, so that scores can appear as they come.
        columns = [spec for name, spec in REGISTRY.items()
                   if name in (evaluation.metrics or REGISTRY) or spec in columns]
    ranking = rows_ranking_metric(rows)
    chart_spec = REGISTRY[ranking] if ranking else None
    notes = approximation_notes(rows)
    truth = truth_payload(evaluation, rows)
    class_counts = evaluation.dataset.class_counts
    warnings = metric_warnings(rows, class_counts)
    consensus, consensus_metrics = consensus_ranks(rows, warnings)
    recommendation = recommend(rows, class_counts, truth, ranking)
    context = {
        "evaluation": evaluation, "rows": rows, "columns": columns,
        "set_columns": [s for s in columns if s.relative_to_set],
        "notes": notes, "noted": {spec.name for spec, _ in notes},
        "failed_count": sum(r.result.status == Status.FAILED for r in rows),
        "stalled_count": 0 if evaluation.is_finished else stalled_results(evaluation).count(),
        "rank_label": chart_spec.label if chart_spec else "",
        # Headers may wrap between words but not at a hyphen ("H-" / "score").
        "column_labels": {s.name: s.label.replace("-", "\u2011") for s in columns},
        "score_chart": charts.score_bars(rows, chart_spec) if chart_spec else "",
        "flips_chart": charts.flips_heatmap(evaluation.complementarity)
        if evaluation.complementarity else "",
        "pairs": _top_pairs(evaluation.complementarity),
        "stages": _stage_rows(rows, chart_spec) if evaluation.score_stages and chart_spec else [],
        "truth": truth,
        "recommendation": recommendation,
        "consensus": consensus,
        "consensus_metrics": consensus_metrics,
        "warnings": warnings,
        "warning_notes": _warning_notes(warnings),
        "chosen_metric": ranking or next((s.name for s in columns if s.kind == "metric"), ""),
        "transfers": evaluation.transfers.select_related("teacher", "student",
                                                         "result_checkpoint"),
        "transfer_choices": [r.checkpoint.name for r in rows if r.result.status == Status.DONE],
        "transfer_variants": Transfer.Variant.choices,
        "suggestion": suggest_pair(evaluation, rows, recommendation.checkpoint.name
                                   if recommendation else None),
        "truth_modes": GroundTruth.Mode.choices,
        "agreement_rows": _agreement_rows(truth),
        "truth_train_percent": round(100 * (1 - truth["test_fraction"])) if truth else None,
        # Kendall's tau over M checkpoints moves in steps of 4 / (M (M - 1)).
        "tau_step": 4 / (len(truth["accuracy"]) * (len(truth["accuracy"]) - 1))
        if truth and len(truth["accuracy"]) >= 2 else None,
        "truth_chart": charts.truth_scatter(rows, truth, _truth_chart_specs(columns, chart_spec))
        if truth and truth["agreement"] else "",
    }
    return render(request, "transferability/evaluation_detail.html", context)


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
    ordered = ([ranking_spec] if ranking_spec else []) + [s for s in columns if s != ranking_spec]
    return ordered + REFERENCES


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


def _top_pairs(report, limit: int = 10) -> list[dict]:
    """The ordered pairs with the most positive flips, with where those flips fall."""
    if not report:
        return []
    pairs = sorted(report["pairs"], key=lambda p: -p["positive_flips"])[:limit]
    rows = []
    for pair in pairs:
        breakdown = pair["breakdown"]
        by_count = sorted(zip(breakdown["classes"], breakdown["counts"]), key=lambda c: -c[1])
        rows.append({
            **pair,
            "top_classes": [(c, n) for c, n in by_count[:3] if n],
            "concentration": (breakdown["entropy"] / breakdown["max_entropy"]
                              if breakdown["max_entropy"] else None),
            "top_half": breakdown["top_p"].get("50"),
        })
    return rows


@login_required
def evaluation_export(request, pk, fmt):
    if fmt not in ("csv", "json"):
        raise Http404("exports are CSV or JSON")
    evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
    rows = ranked_rows(evaluation)
    filename = f"evaluation-{evaluation.pk}.{fmt}"
    if fmt == "json":
        body = json.dumps(evaluation_payload(evaluation, rows), cls=DjangoJSONEncoder, indent=2)
        response = HttpResponse(body, content_type="application/json")
    else:
        columns = metric_columns(rows)
        response = HttpResponse(content_type="text/csv")
        writer = csv.writer(response)
        writer.writerow(["rank", "checkpoint", "architecture", "feature_dim", "param_count",
                         "source_top1", "status"] + [s.name for s in columns] + ["notes"])
        for row in rows:
            writer.writerow([row.rank or "", row.checkpoint.name, row.checkpoint.architecture,
                             row.result.feature_dim or "", row.checkpoint.param_count or "",
                             row.checkpoint.source_top1 if row.checkpoint.source_top1 is not None
                             else "", row.result.status]
                            + [_cell(row.scores.get(s.name)) for s in columns]
                            + [_csv_notes(row, columns)])
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
