"""The catalog of pretrained checkpoints.

A checkpoint is one set of weights for one timm architecture, with the preprocessing it
expects (timm's pretrained config) and what is known of its source training.
"""

import os

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

# The timm.create_model keyword arguments a catalog entry may set: the network's shape and
# its regularisation. Anything else is refused, above all what names a file, a URL or code
# on the worker that loads it (checkpoint_path, pretrained_cfg, pretrained_cfg_overlay,
# cache_dir, act_layer, ...). num_classes has its own field.
ALLOWED_MODEL_KWARGS = frozenset({
    # Shape
    "in_chans", "img_size", "patch_size", "embed_dim", "depth", "depths", "dims", "num_heads",
    "mlp_ratio", "layers", "channel_multiplier", "depth_multiplier", "output_stride",
    "global_pool", "class_token", "no_embed_class", "reg_tokens", "pos_embed", "qkv_bias",
    "qk_norm", "init_values", "fc_norm", "dynamic_img_size", "dynamic_img_pad", "stem_type",
    "stem_width", "cardinality", "base_width", "avg_down", "ls_init_value", "conv_mlp",
    "head_hidden_size",
    # Regularisation (inactive in eval mode, but part of a training recipe)
    "drop_rate", "drop_path_rate", "drop_block_rate", "attn_drop_rate", "proj_drop_rate",
    "pos_drop_rate", "patch_drop_rate",
})


def model_kwargs_problem(kwargs) -> str | None:
    """Why ``kwargs`` may not be passed to timm.create_model, or None when it may.

    A key outside ALLOWED_MODEL_KWARGS is named; values are numbers, strings, true/false,
    null or lists of numbers, so that no key smuggles a structure timm would act on.
    """
    if not isinstance(kwargs, dict):
        return "model_kwargs must be a JSON object of timm.create_model keyword arguments."
    for key, value in kwargs.items():
        if key not in ALLOWED_MODEL_KWARGS:
            return (f'model_kwargs may not set "{key}": only these timm.create_model '
                    f"arguments are allowed: {', '.join(sorted(ALLOWED_MODEL_KWARGS))}.")
        if not _plain_value(value):
            return (f'model_kwargs "{key}" must be a number, a string, true/false, null or a '
                    f"list of numbers.")
    return None


def _plain_value(value) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


class CheckpointQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The shared zoo and the user's own checkpoints (those made from their data)."""
        mine = Q(owner=user) if getattr(user, "is_authenticated", False) else Q(pk__in=[])
        return self.filter(Q(owner__isnull=True) | mine)


class Checkpoint(models.Model):
    class WeightsSource(models.TextChoices):
        HUB = "hub", "Model hub"
        UPLOAD = "upload", "Uploaded file"
        LOCAL = "local", "Local path"

    name = models.CharField(
        max_length=200, unique=True, help_text="Unique name, e.g. resnet50.a1_in1k."
    )
    architecture = models.CharField(max_length=120, help_text="timm model name.")
    pretrained_tag = models.CharField(max_length=120, blank=True)
    family = models.CharField(max_length=60, blank=True, db_index=True)

    weights_source = models.CharField(
        max_length=10, choices=WeightsSource.choices, default=WeightsSource.HUB
    )
    hub_id = models.CharField(max_length=255, blank=True, help_text="e.g. timm/resnet50.a1_in1k")
    weights_file = models.FileField(upload_to="weights/", blank=True)
    weights_path = models.CharField(
        max_length=500, blank=True, help_text="Absolute path on the workers' file system."
    )
    weights_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    hub_files = models.JSONField(
        default=dict, blank=True,
        help_text="sha256 of each file fetched from the hub, {file name: sha256}, recorded at "
                  "the first download; a later download with another hash is refused. Clear "
                  "it to accept new weights under the same name.",
    )
    weights_bytes = models.BigIntegerField(
        null=True, blank=True, editable=False,
        help_text="Size of the weights file, recorded when it is first fetched or validated.")
    fetch_message = models.TextField(
        blank=True, editable=False,
        help_text="Last fetch of the hub weights: progress, where they came from, or why not.")
    model_kwargs = models.JSONField(
        default=dict, blank=True, help_text="Extra timm.create_model keyword arguments."
    )

    # Preprocessing, from timm's pretrained config.
    input_size = models.JSONField(default=list, help_text="[channels, height, width]")
    interpolation = models.CharField(max_length=20, default="bicubic")
    crop_pct = models.FloatField(default=0.875)
    crop_mode = models.CharField(max_length=20, default="center")
    mean = models.JSONField(default=list)
    std = models.JSONField(default=list)

    # What the network is and what it was trained on.
    num_classes = models.PositiveIntegerField(
        default=0, help_text="Classes of the source head; 0 when it has none."
    )
    source_classes = models.JSONField(
        default=list, blank=True, help_text="Names of the source head's classes, in order."
    )
    feature_dim = models.PositiveIntegerField(null=True, blank=True)
    param_count = models.BigIntegerField(null=True, blank=True)
    source_dataset = models.CharField(max_length=120, blank=True, db_index=True)
    source_top1 = models.FloatField(null=True, blank=True, help_text="Source top-1 accuracy, %.")
    license = models.CharField(max_length=120, blank=True)
    recipe = models.JSONField(
        default=dict, blank=True,
        help_text="How these weights were made: source task, architecture, kwargs, epochs, "
                  "learning rate, augmentation, seed; for a distilled checkpoint its lineage.",
    )

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="own_checkpoints",
        help_text="Empty: part of the shared zoo, seen by everyone. Set: made from this "
                  "user's data (a distilled student), seen and evaluated by them alone.",
    )

    enabled = models.BooleanField(default=True, db_index=True)
    curated = models.BooleanField(
        default=False, help_text="Edited by hand: catalog imports leave it alone."
    )
    loads = models.BooleanField(null=True, blank=True, help_text="Outcome of the last validation.")
    load_message = models.TextField(blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CheckpointQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        super().clean()
        if problem := model_kwargs_problem(self.model_kwargs):
            raise ValidationError({"model_kwargs": problem})

    @property
    def has_source_head(self) -> bool:
        return self.num_classes > 0

    @property
    def lineage(self) -> dict:
        """How a distilled checkpoint was made (``workers.transfers.save_distilled``); {}
        for the others."""
        lineage = self.recipe.get("lineage") if isinstance(self.recipe, dict) else None
        return lineage if isinstance(lineage, dict) else {}

    @property
    def target_top1(self) -> float | None:
        """A distilled checkpoint's held-out accuracy on the dataset it was distilled on, %:
        a target accuracy, never a source one."""
        return self.lineage.get("target_top1")

    @property
    def trained_on_datasets(self) -> list[dict]:
        """The target datasets these weights were trained on, each {"id", "name",
        "content_hash"} (and "via": the parent checkpoint it came through); [] for the
        shared zoo. A lineage from before ``trained_on`` names one dataset by name and hash;
        its id is read through the lineage's evaluation."""
        lineage = self.lineage
        if isinstance(lineage.get("trained_on"), list):
            return [entry for entry in lineage["trained_on"] if isinstance(entry, dict)]
        entry = {"id": lineage.get("dataset_id"), "name": lineage.get("dataset", ""),
                 "content_hash": lineage.get("dataset_hash", "")}
        if entry["id"] is None and lineage.get("evaluation"):
            from django.apps import apps

            found = (apps.get_model("transferability", "Evaluation").objects
                     .filter(pk=lineage["evaluation"])
                     .values_list("dataset_id", "dataset__name", "dataset__content_hash")
                     .first())
            if found:
                entry["id"] = found[0]
                entry["name"] = entry["name"] or found[1]
                entry["content_hash"] = entry["content_hash"] or found[2]
        return [entry] if entry["id"] is not None or entry["content_hash"] else []

    @property
    def trained_on_hashes(self) -> set[str]:
        return {e["content_hash"] for e in self.trained_on_datasets if e.get("content_hash")}

    def trained_on(self, dataset) -> dict | None:
        """The lineage's entry for ``dataset`` (the same images: the same content hash, or
        the same row where the lineage has no hash); None when these weights never saw it."""
        for entry in self.trained_on_datasets:
            if (entry["content_hash"] == dataset.content_hash if entry.get("content_hash")
                    else entry.get("id") == dataset.pk):
                return entry
        return None

    def data_config(self) -> dict:
        """Keyword arguments for ``timm.data.create_transform`` (evaluation transforms)."""
        return {
            "input_size": tuple(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "mean": tuple(self.mean),
            "std": tuple(self.std),
        }

    @property
    def weights_size(self) -> str:
        """The weights file's size in megabytes as download messages give it ("178.4 MB")."""
        if not self.weights_bytes:
            return ""
        mb = self.weights_bytes / 1e6
        return f"{mb:.1f} MB" if mb < 1000 else f"{mb / 1000:.2f} GB"

    def weights_location(self):
        """Local file of an uploaded or local-path checkpoint (a Path); None for the hub.

        Raises WeightsError when the entry names no file. Needs no torch: pages call it.
        With an object store, an uploaded file is fetched into this host's cache (kept there
        under its sha256, so a replaced file is fetched again) and that copy's path returned.
        """
        from pathlib import Path

        from .weights import WeightsError

        if self.weights_source == self.WeightsSource.UPLOAD:
            if not self.weights_file:
                raise WeightsError(f"{self.name}: no weights file was uploaded")
            from config.local_cache import fetch_file, store_is_remote

            if not store_is_remote():
                return Path(self.weights_file.path)
            name = self.weights_file.name
            try:
                return fetch_file(name, f"weights/{self.weights_sha256 or 'unhashed'}/"
                                        f"{Path(name).name}")
            except FileNotFoundError:
                raise WeightsError(f"{self.name}: weights file {name} is not in the store") \
                    from None
        if self.weights_source == self.WeightsSource.LOCAL:
            if not self.weights_path:
                raise WeightsError(f"{self.name}: no local weights path is configured")
            return Path(self.weights_path)
        return None

    def weights_identity(self) -> str:
        """What names these exact weights, for cache keys: it changes when they change."""
        if self.weights_source == self.WeightsSource.UPLOAD:
            return f"sha256:{self.weights_sha256 or self.weights_file.name}"
        if self.weights_source == self.WeightsSource.LOCAL:
            # A file at a fixed path can be replaced: its size and mtime say when.
            try:
                stat = os.stat(self.weights_path)
            except OSError:
                return f"path:{self.weights_path}"  # loading will say what is wrong
            return f"path:{self.weights_path}:{stat.st_size}:{stat.st_mtime_ns}"
        return f"hub:{self.hub_id or self.name}"
