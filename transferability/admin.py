"""Datasets, evaluations, ground truths and transfers in the admin.

What workers computed is read-only here: an admin can look, re-run what failed and delete,
but not edit a score. Datasets are made by uploading (the page or the API), which
validates the archive, so the admin does not add them.
"""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from .models import (CheckpointResult, Evaluation, GroundTruth, TargetDataset, Transfer,
                     TruthResult)
from .submission import SubmissionError, retry


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TargetDataset)
class TargetDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "state", "images", "num_classes", "archive_size",
                    "created_at")
    list_filter = ("state", "owner")
    search_fields = ("name", "content_hash", "owner__username")
    readonly_fields = ("owner", "state", "message", "skipped", "ingest_done", "ingest_total",
                       "attempts", "store_dir", "class_names", "class_counts", "num_images",
                       "content_hash", "archive_bytes", "created_at", "ingested_at")
    fields = ("name",) + readonly_fields

    def has_add_permission(self, request):
        return False  # datasets come from an upload, which validates them

    @admin.display(description="Images", ordering="num_images")
    def images(self, obj):
        return f"{obj.num_images:,}"

    @admin.display(description="Archive", ordering="archive_bytes")
    def archive_size(self, obj):
        return f"{obj.archive_bytes / 1e6:,.1f} MB"


class ResultInline(ReadOnlyInline):
    model = CheckpointResult
    fields = ("checkpoint", "status", "attempts", "images_done", "images_total", "device",
              "features_cached", "extraction_seconds", "scoring_seconds", "message")
    readonly_fields = fields


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "dataset", "owner", "status", "checkpoints", "progress_percent",
                    "created_at", "page")
    list_filter = ("status", "owner")
    search_fields = ("dataset__name", "owner__username")
    readonly_fields = ("owner", "dataset", "metrics", "correctness_source", "score_stages",
                       "status", "message", "created_at", "started_at", "finished_at")
    exclude = ("complementarity",)
    inlines = [ResultInline]
    actions = ["rerun"]

    def has_add_permission(self, request):
        return False  # evaluations are submitted from a dataset's page or the API

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("dataset", "owner") \
            .prefetch_related("results").defer("complementarity")

    @admin.display(description="Checkpoints")
    def checkpoints(self, obj):
        return len(obj.results.all())

    @admin.display(description="Progress")
    def progress_percent(self, obj):
        return f"{100 * obj.progress:.0f} %"

    @admin.display(description="Page")
    def page(self, obj):
        return format_html('<a href="{}">open</a>', obj.get_absolute_url())

    @admin.action(description="Re-run: queue failed (finished) or stalled (running) checkpoints")
    def rerun(self, request, queryset):
        queued, refused = 0, []
        for evaluation in queryset:
            try:
                queued += retry(evaluation)
            except SubmissionError as exc:
                refused.append(f"{evaluation.pk}: {exc}")
        message = f"{queued} checkpoint{'s' if queued != 1 else ''} queued again."
        if refused:
            message += " Nothing to re-run in " + "; ".join(refused[:5])
        self.message_user(request, message, messages.WARNING if refused else messages.SUCCESS)


class TruthResultInline(ReadOnlyInline):
    model = TruthResult
    fields = ("checkpoint", "status", "accuracy", "seconds", "message")
    readonly_fields = fields


@admin.register(GroundTruth)
class GroundTruthAdmin(admin.ModelAdmin):
    list_display = ("id", "evaluation", "mode", "status", "created_at", "finished_at")
    list_filter = ("mode", "status")
    readonly_fields = ("evaluation", "mode", "status", "message", "test_fraction", "seed",
                       "created_at", "finished_at")
    inlines = [TruthResultInline]

    def has_add_permission(self, request):
        return False


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    list_display = ("id", "teacher", "student", "variant", "status", "delta_points",
                    "new_checkpoint", "created_at")
    list_filter = ("variant", "status")
    search_fields = ("teacher__name", "student__name")
    readonly_fields = ("owner", "evaluation", "teacher", "student", "variant", "status",
                       "message", "steps_done", "steps_total", "delta", "flips_before",
                       "flips_after", "details", "result_checkpoint", "created_at",
                       "finished_at")

    def has_add_permission(self, request):
        return False  # transfers start from an evaluation's page or the API

    @admin.display(description="Δ accuracy (points)")
    def delta_points(self, obj):
        if not obj.delta:
            return "–"
        return f"{obj.delta['delta_accuracy']:+.2f}"

    @admin.display(description="New checkpoint")
    def new_checkpoint(self, obj):
        if obj.result_checkpoint_id is None:
            return "–"
        url = reverse("admin:zoo_checkpoint_change", args=[obj.result_checkpoint_id])
        return format_html('<a href="{}">{}</a>', url, obj.result_checkpoint)

