import hashlib
import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from .models import Checkpoint
from .weights import ALLOWED_SUFFIXES, WeightsError, read_state_dict

SHORT_LIST = forms.TextInput(attrs={"size": 28})


class CheckpointForm(forms.ModelForm):
    class Meta:
        model = Checkpoint
        fields = "__all__"
        # Three numbers need a line, not a text area.
        widgets = {"input_size": SHORT_LIST, "mean": SHORT_LIST, "std": SHORT_LIST,
                   "model_kwargs": forms.TextInput(attrs={"size": 60})}

    def clean_weights_file(self):
        upload = self.cleaned_data.get("weights_file")
        if not isinstance(upload, UploadedFile):  # none, or the file already stored
            return upload
        suffix = Path(upload.name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            raise forms.ValidationError(
                f"Unsupported weights format {suffix or '(none)'}; use one of "
                f"{', '.join(ALLOWED_SUFFIXES)}."
            )
        # Read it the way a worker will, before it is stored: a pickle that needs code
        # is refused here and none of it runs.
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            for chunk in upload.chunks():
                tmp.write(chunk)
                digest.update(chunk)
            tmp.flush()
            try:
                read_state_dict(tmp.name)
            except WeightsError as exc:
                raise forms.ValidationError(str(exc).replace(Path(tmp.name).name, upload.name))
        upload.seek(0)
        self.instance.weights_sha256 = digest.hexdigest()
        return upload

    def clean(self):
        data = super().clean()
        source = data.get("weights_source")
        if source == Checkpoint.WeightsSource.UPLOAD and not data.get("weights_file"):
            self.add_error("weights_file", "Upload a weights file for this weights source.")
        if source == Checkpoint.WeightsSource.LOCAL and not data.get("weights_path"):
            self.add_error("weights_path", "Give the path of the weights file on the workers.")
        return data


class HubReferenceForm(forms.Form):
    hub = forms.CharField(
        label="timm name or hf-hub: id", max_length=300,
        widget=forms.TextInput(attrs={"size": 50, "autofocus": True,
                                      "placeholder": "resnet50.a1_in1k or hf-hub:timm/resnet50.a1_in1k"}),
        help_text="Its architecture, data config, classes and licence are read from the "
                  "repository's config.json; a worker then fetches the weights, records their "
                  "sha256 and loads them.")
    name = forms.CharField(max_length=200, required=False,
                           help_text="Its name in the zoo; the timm name or repository id when "
                                     "left empty.")
    enabled = forms.BooleanField(required=False, initial=True)


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    form = CheckpointForm
    change_list_template = "admin/zoo/checkpoint/change_list.html"
    list_display = (
        "name", "architecture", "family", "weights_source", "feature_dim", "parameters",
        "source_dataset", "top1", "enabled", "curated", "loads", "load_message", "weights",
        "owner",
    )
    list_filter = ("enabled", "weights_source", "family", "source_dataset", "curated", "loads",
                   ("owner", admin.RelatedOnlyFieldListFilter))  # "(None)": the shared zoo
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    search_fields = ("name", "architecture", "pretrained_tag", "hub_id", "family")
    search_help_text = "Name, architecture, pretrained tag, hub id or family."
    readonly_fields = ("weights_sha256", "weights_bytes", "fetch_message", "loads",
                       "load_message", "validated_at", "created_at", "updated_at")
    list_per_page = 100
    actions = ["enable", "disable", "validate", "prefetch", "refresh_from_timm"]

    @admin.display(description="Weights", ordering="weights_bytes")
    def weights(self, obj):
        return " · ".join(part for part in (obj.weights_size, obj.fetch_message) if part) or "–"

    def get_urls(self):
        return [path("from-hub/", self.admin_site.admin_view(self.add_from_hub_view),
                     name="zoo_checkpoint_from_hub")] + super().get_urls()

    def add_from_hub_view(self, request):
        """Add a checkpoint by timm name or hf-hub: id; a worker fetches its weights."""
        from .hub_curation import CurationError, QueueUnavailable, add_from_hub

        if not self.has_add_permission(request):
            raise PermissionDenied
        form = HubReferenceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                checkpoint, note = add_from_hub(data["hub"], data["name"], data["enabled"])
            except CurationError as exc:
                form.add_error("hub", str(exc))
            except QueueUnavailable as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request, f"{checkpoint.name} added from {checkpoint.hub_id}; a worker is "
                             f"fetching its weights (Weights and Loads show how it goes)."
                             + (f" {note}" if note else ""),
                    messages.WARNING if note else messages.SUCCESS)
                return redirect(reverse("admin:zoo_checkpoint_change", args=[checkpoint.pk]))
        context = {**self.admin_site.each_context(request), "form": form,
                   "title": "Add a checkpoint from the hub", "opts": self.model._meta}
        return TemplateResponse(request, "admin/zoo/checkpoint/from_hub.html", context)

    @admin.action(description="Prefetch: bring selected hub weights into a worker's cache")
    def prefetch(self, request, queryset):
        from .hub_curation import queue_fetch

        ids = list(queryset.filter(weights_source=Checkpoint.WeightsSource.HUB)
                   .order_by("name").values_list("pk", flat=True))
        others = queryset.count() - len(ids)
        if not ids:
            self.message_user(request, "None of the selected checkpoints takes its weights "
                                       "from the hub: nothing to fetch.", messages.WARNING)
            return
        try:
            queue_fetch(ids, prefetch=True)
        except Exception as exc:
            self.message_user(request, f"Nothing queued: the task queue could not be reached "
                                       f"({exc}).", messages.ERROR)
            return
        left = f" {others} without hub weights left alone." if others else ""
        self.message_user(request, f"{len(ids)} checkpoint{'s' if len(ids) != 1 else ''} "
                                   f"queued for fetching; the Weights column shows the "
                                   f"progress.{left}", messages.SUCCESS)

    @admin.display(description="Parameters", ordering="param_count")
    def parameters(self, obj):
        return f"{obj.param_count:,}" if obj.param_count is not None else "–"

    @admin.display(description="Source top-1 %", ordering="source_top1")
    def top1(self, obj):
        return f"{obj.source_top1:.1f}" if obj.source_top1 is not None else "–"

    def save_model(self, request, obj, form, change):
        # Anything edited by hand is the admin's: catalog imports leave it alone from now on.
        obj.curated = True
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable selected checkpoints")
    def enable(self, request, queryset):
        self.message_user(request, f"{queryset.update(enabled=True)} checkpoints enabled.")

    @admin.action(description="Disable selected checkpoints")
    def disable(self, request, queryset):
        self.message_user(request, f"{queryset.update(enabled=False)} checkpoints disabled.")

    @admin.action(description="Validate on a worker: load selected checkpoints")
    def validate(self, request, queryset):
        # Loading networks is a worker's job: the request only queues them.
        from .hub_curation import queue_fetch

        ids = list(queryset.order_by("name").values_list("pk", flat=True))
        try:
            queue_fetch(ids)  # rows marked queued first, put back if the queue is down
        except Exception as exc:  # the broker is unreachable: say so, change nothing
            self.message_user(request, f"Nothing queued: the task queue could not be reached "
                                       f"({exc}).", messages.ERROR)
            return
        self.message_user(request, f"{len(ids)} checkpoint{'s' if len(ids) != 1 else ''} queued "
                                   f"for validation; the Loads column shows the outcome once a "
                                   f"worker has loaded them.", messages.SUCCESS)

    @admin.action(description="Refresh selected from timm's registry")
    def refresh_from_timm(self, request, queryset):
        import timm  # here, not at import: web processes need no torch until an admin asks

        from .timm_catalog import import_catalog

        # Curated rows are the admin's; import_catalog would skip them too, but counting
        # them here says so without asking timm about them.
        curated = queryset.filter(curated=True).count()
        names = list(queryset.filter(curated=False).values_list("name", flat=True))
        problems = []
        summary = import_catalog(
            names=names, jobs=1,  # no process pool inside a web worker
            on_problem=lambda name, message, skipped: problems.append(f"{name}: {message}"),
        )
        summary.curated_skipped += curated
        message = f"Refreshed from timm {timm.__version__}: {summary}."
        if problems:
            message += " " + "; ".join(problems[:5])
            message += f" and {len(problems) - 5} more." if len(problems) > 5 else ""
        self.message_user(request, message, messages.WARNING if problems else messages.SUCCESS)
