from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render

from .models import Checkpoint

SORTABLE = {"name", "-name", "param_count", "-param_count", "feature_dim", "-feature_dim",
            "source_top1", "-source_top1", "family", "-family"}


@login_required
def checkpoint_list(request):
    queryset = Checkpoint.objects.all()
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
    families = (Checkpoint.objects.exclude(family="").values_list("family", flat=True)
                .distinct().order_by("family"))
    return render(request, "zoo/checkpoint_list.html", {
        "page": page, "query": query, "family": family, "families": families, "order": order,
        "total": Checkpoint.objects.count(),
    })
