"""Validating a catalog entry: load it as a worker would and record the outcome on its row.

Run by a worker (``workers.tasks.validate_checkpoints``, queued from the admin), so that a
web request never loads a network.
"""

import gc

from django.utils import timezone

from .models import Checkpoint
from .weights import WeightsError

__all__ = ["validate_checkpoint", "QUEUED_MESSAGE"]

QUEUED_MESSAGE = "queued for validation on a worker"


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
