import gc
import hashlib
import tempfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from .models import Checkpoint
from .weights import ALLOWED_SUFFIXES, WeightsError, read_state_dict


class CheckpointForm(forms.ModelForm):
    class Meta:
        model = Checkpoint
        fields = "__all__"

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
        "name", "architecture", "family", "weights_source", "feature_dim", "param_count",
        "source_dataset", "source_top1", "enabled", "curated", "loads",
    )
    list_filter = ("enabled", "weights_source", "family", "source_dataset", "curated", "loads")
    search_fields = ("name", "architecture", "pretrained_tag", "hub_id", "family")
    search_help_text = "Name, architecture, pretrained tag, hub id or family."
    readonly_fields = ("weights_sha256", "loads", "load_message", "validated_at", "created_at",
                       "updated_at")
    list_per_page = 100
    actions = ["enable", "disable", "validate", "refresh_from_timm"]

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

    @admin.action(description="Validate: load selected checkpoints")
    def validate(self, request, queryset):
        # Loads each network with its weights, here in the request: meant for a handful.
        failures = []
        checkpoints = list(queryset.order_by("name"))
        for checkpoint in checkpoints:
            if not validate_checkpoint(checkpoint):
                failures.append(checkpoint)
        loaded = len(checkpoints) - len(failures)
        message = f"{loaded} of {len(checkpoints)} checkpoints loaded."
        if failures:
            message += " Failed: " + "; ".join(c.load_message for c in failures[:5])
            message += f" and {len(failures) - 5} more." if len(failures) > 5 else ""
        self.message_user(request, message, messages.WARNING if failures else messages.SUCCESS)

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


def validate_checkpoint(checkpoint: Checkpoint) -> bool:
    """Load the checkpoint as a worker would and record the outcome on its row.

    Writes with a queryset update: neither ``curated`` nor ``updated_at`` moves, so
    validating is not an edit and catalog imports still refresh the row.
    """
    from .loading import build_model  # torch and timm load only when an admin validates
    from .timm_catalog import feature_dim_of

    fields = {"validated_at": timezone.now()}
    try:
        model = build_model(checkpoint)
    except Exception as exc:  # WeightsError mostly; anything else is a failure too, not a crash
        message = str(exc) if isinstance(exc, WeightsError) else f"{type(exc).__name__}: {exc}"
        fields.update(loads=False, load_message=message)
    else:
        feature_dim = feature_dim_of(model)
        param_count = sum(p.numel() for p in model.parameters())
        fields.update(loads=True, feature_dim=feature_dim, param_count=param_count,
                      load_message=f"loaded: {feature_dim} features, "
                                   f"{_millions(param_count)} parameters")
        del model
        gc.collect()
    Checkpoint.objects.filter(pk=checkpoint.pk).update(**fields)
    for name, value in fields.items():
        setattr(checkpoint, name, value)
    return fields["loads"]


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count / 1e6:.3f}M"
