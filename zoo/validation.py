"""Validating a catalog entry: load it as a worker would and record the outcome on its row.

Run by a worker (``workers.tasks.validate_checkpoints``, queued from the admin), so that a
web request never loads a network.
"""

import gc
import socket
import time

from django.utils import timezone

from .models import Checkpoint
from .weights import WeightsError

__all__ = ["validate_checkpoint", "prefetch_checkpoint", "fetched_message", "QUEUED_MESSAGE"]

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
        if checkpoint.weights_source == Checkpoint.WeightsSource.HUB:
            if not prefetch_checkpoint(checkpoint):
                raise WeightsError(checkpoint.fetch_message.removeprefix("failed: "))
        model = build_model(checkpoint)
    except Exception as exc:  # WeightsError mostly; anything else is a failure too, not a crash
        message = str(exc) if isinstance(exc, WeightsError) else f"{type(exc).__name__}: {exc}"
        fields.update(loads=False, load_message=message)
    else:
        feature_dim = feature_dim_of(model)
        param_count = sum(p.numel() for p in model.parameters())
        if checkpoint.weights_source != Checkpoint.WeightsSource.HUB:
            location = checkpoint.weights_location()
            if location is not None and location.exists():
                fields["weights_bytes"] = location.stat().st_size
        fields.update(loads=True, feature_dim=feature_dim, param_count=param_count,
                      load_message=f"loaded: {feature_dim} features, "
                                   f"{_millions(param_count)} parameters")
        del model
        gc.collect()
    Checkpoint.objects.filter(pk=checkpoint.pk).update(**fields)
    for name, value in fields.items():
        setattr(checkpoint, name, value)
    return fields["loads"]


def prefetch_checkpoint(checkpoint: Checkpoint) -> bool:
    """Bring a hub checkpoint's weights into this host's cache, with progress and the outcome
    in its ``fetch_message``; False (and why, in the message) when they could not be."""
    from .hub import downloading_message, fetch_weights

    if checkpoint.weights_source != Checkpoint.WeightsSource.HUB:
        _set(checkpoint, fetch_message="not a hub checkpoint: its weights are the stored file")
        return True
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 0.5:
            last[0] = now
            Checkpoint.objects.filter(pk=checkpoint.pk).update(
                fetch_message=downloading_message(done, total))

    try:
        fetched = fetch_weights(checkpoint, progress)
    except Exception as exc:  # WeightsError mostly; anything else is a failure too, not a crash
        message = str(exc) if isinstance(exc, WeightsError) else f"{type(exc).__name__}: {exc}"
        _set(checkpoint, fetch_message=f"failed: {message}")
        return False
    _set(checkpoint, fetch_message=fetched_message(fetched))
    return True


def fetched_message(fetched) -> str:
    """Where a fetch found the weights, for people: "fetched from the hub: 102 MB in 3.1 s"."""
    size = fetched.weights_path.stat().st_size / 1e6
    host = socket.gethostname()
    if fetched.source == "store":
        return f"copied from the object store to {host}: {size:.1f} MB in {fetched.seconds:.1f} s"
    if fetched.source == "cache":
        return f"in the hub cache of {host}: {size:.1f} MB"
    rate = size / fetched.seconds if fetched.seconds > 0 else 0.0
    return (f"fetched from the hub to {host}: {size:.1f} MB in {fetched.seconds:.1f} s "
            f"({rate:.1f} MB/s)")


def _set(checkpoint: Checkpoint, **fields) -> None:
    Checkpoint.objects.filter(pk=checkpoint.pk).update(**fields)
    for name, value in fields.items():
        setattr(checkpoint, name, value)


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count / 1e6:.3f}M"
