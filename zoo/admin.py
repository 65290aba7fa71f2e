import hashlib
import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile

from .models import Checkpoint
from .validation import QUEUED_MESSAGE
from .weights import ALLOWED_SUFFIXES, WeightsError, read_state_dict

VALIDATE_TASK = "workers.tasks.validate_checkpoints"


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


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    form = CheckpointForm
    list_display = (
        "name", "architecture", "family", "weights_source", "feature_dim", "parameters",
        "source_dataset", "top1", "enabled", "curated", "loads", "load_message", "owner",
    )
    list_filter = ("enabled", "weights_source", "family", "source_dataset", "curated", "loads",
                   ("owner", admin.RelatedOnlyFieldListFilter))  # "(None)": the shared zoo
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    search_fields = ("name", "architecture", "pretrained_tag", "hub_id", "family")
    search_help_text = "Name, architecture, pretrained tag, hub id or family."
    readonly_fields = ("weights_sha256", "loads", "load_message", "validated_at", "created_at",
                       "updated_at")
    list_per_page = 100
    actions = ["enable", "disable", "validate", "refresh_from_timm"]

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
        from config.celery import app

        ids = list(queryset.order_by("name").values_list("pk", flat=True))
        try:
            app.send_task(VALIDATE_TASK, args=(ids,), queue="gpu")
        except Exception as exc:  # the broker is unreachable: say so, change nothing
            self.message_user(request, f"Nothing queued: the task queue could not be reached "
                                       f"({exc}).", messages.ERROR)
            return
        Checkpoint.objects.filter(pk__in=ids).update(loads=None, load_message=QUEUED_MESSAGE)
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
