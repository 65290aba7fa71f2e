import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, render

from config.local_cache import store_is_remote

from .models import Checkpoint

SORTABLE = {"name", "-name", "param_count", "-param_count", "feature_dim", "-feature_dim",
            "source_top1", "-source_top1", "family", "-family"}


@login_required
def checkpoint_list(request):
    visible = Checkpoint.objects.visible_to(request.user)
    queryset = visible
    query = request.GET.get("q", "").strip()
    if query:
        queryset = queryset.filter(Q(name__icontains=query) | Q(architecture__icontains=query)
                                   | Q(family__icontains=query))
    family = request.GET.get("family", "")
    if family:
        queryset = queryset.filter(family=family)
    if request.GET.get("enabled") == "1":
        queryset = queryset.filter(enabled=True)
    order = request.GET.get("order", "name")
    if order not in SORTABLE:
        order = "name"
    queryset = queryset.order_by(order, "name")
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    families = (visible.exclude(family="").values_list("family", flat=True)
                .distinct().order_by("family"))
    return render(request, "zoo/checkpoint_list.html", {
        "page": page, "query": query, "family": family, "families": families, "order": order,
        "total": visible.count(),
    })


@login_required
def checkpoint_detail(request, pk):
    """A model card: what the checkpoint is, where its weights are, how it was made, and
    every score it has received on the user's datasets."""
    from transferability.models import MetricScore, TruthResult
    from transferability.metrics import REGISTRY

    checkpoint = get_object_or_404(Checkpoint.objects.visible_to(request.user), pk=pk)
    path, in_store, weights_problem = None, None, ""
    if (checkpoint.weights_source == Checkpoint.WeightsSource.UPLOAD and checkpoint.weights_file
            and store_is_remote()):
        # Asked of the object store: the page does not download the weights to show them.
        in_store = checkpoint.weights_file.storage.exists(checkpoint.weights_file.name)
    else:
        try:
            path = checkpoint.weights_location()  # no torch in a web process
        except Exception as exc:  # a misconfigured entry still gets its card
            weights_problem = str(exc)
    scores = (MetricScore.objects.filter(result__checkpoint=checkpoint,
                                         result__evaluation__owner=request.user,
                                         layer=MetricScore.PRE_LOGITS, value__isnull=False)
              .select_related("result__evaluation__dataset").order_by("-result__evaluation_id"))
    by_evaluation = {}
    for score in scores:
        evaluation = score.result.evaluation
        entry = by_evaluation.setdefault(evaluation.pk, {"evaluation": evaluation, "scores": {}})
        entry["scores"][score.metric] = score.value
    truths = dict(TruthResult.objects.filter(
        checkpoint=checkpoint, truth__evaluation__owner=request.user, accuracy__isnull=False
    ).values_list("truth__evaluation_id", "accuracy"))
    for pk_, entry in by_evaluation.items():
        entry["truth"] = truths.get(pk_)
    present = {name for entry in by_evaluation.values() for name in entry["scores"]}
    return render(request, "zoo/checkpoint_detail.html", {
        "checkpoint": checkpoint,
        "weights_path": path,
        "weights_present": path.exists() if path else None,
        "weights_in_store": in_store,
        "weights_problem": weights_problem,
        "evaluations": list(by_evaluation.values()),
        "metric_columns": [spec for name, spec in REGISTRY.items() if name in present],
        "recipe": json.dumps(checkpoint.recipe, indent=2) if getattr(checkpoint, "recipe", None)
        else "",
    })
