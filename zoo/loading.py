"""The one place that turns a catalog entry into a torch module."""

from pathlib import Path

import timm
import torch

from .hub import ProgressCallback, fetch_weights
from .models import Checkpoint, model_kwargs_problem
from .weights import WeightsError, read_state_dict


def weights_location(checkpoint: Checkpoint) -> Path | None:
    """Local file of an uploaded or local-path checkpoint; None for the hub."""
    return checkpoint.weights_location()


def build_model(checkpoint: Checkpoint,
                download_progress: ProgressCallback | None = None) -> torch.nn.Module:
    """Create the checkpoint's network with its weights, in eval mode, on the CPU.

    Hub weights are downloaded on first use when the machine is online; with
    ``HF_HUB_OFFLINE`` set they must already be in the local cache (zoo/hub.py;
    ``download_progress`` hears of the bytes as they come). The row's model_kwargs
    are checked again here: a row written around the admin's validation (a script, an old
    row) must not point timm at a file either.
    """
    problem = model_kwargs_problem(checkpoint.model_kwargs or {})
    if problem:
        raise WeightsError(f"{checkpoint.name}: not loaded: {problem}")
    kwargs = dict(checkpoint.model_kwargs or {})
    path = weights_location(checkpoint)
    try:
        if path is None:
            model = _create_from_hub(checkpoint, kwargs, download_progress)
        else:
            model = timm.create_model(
                checkpoint.architecture,
                pretrained=False,
                num_classes=checkpoint.num_classes,
                **kwargs,
            )
    except WeightsError:
        raise
    except RuntimeError as exc:
        raise WeightsError(f"{checkpoint.name}: {exc}") from exc
    if path is not None:
        state = read_state_dict(path)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                f"{checkpoint.name}: weights do not fit {checkpoint.architecture} "
                f"with {checkpoint.num_classes} classes (missing {_few(result.missing_keys)}, "
                f"unexpected {_few(result.unexpected_keys)})"
            )
    return model.eval()


def _create_from_hub(checkpoint: Checkpoint, kwargs: dict,
                     progress: ProgressCallback | None = None) -> torch.nn.Module:
    """The network with the hub weights that fetch_weights brought and checked.

    timm is handed the tensors, not the repository: the model is built from the very file
    whose sha256 was checked (never from a second request to the hub), read by our own
    safe reader, and timm still adapts them as for any pretrained load (its filter, the
    classifier).
    """
    fetched = fetch_weights(checkpoint, progress)
    state = read_state_dict(fetched.weights_path)
    model_name = checkpoint.architecture
    if checkpoint.pretrained_tag:
        model_name = f"{model_name}.{checkpoint.pretrained_tag}"
    # The head the row records (an hf-hub: repository's config.json may give another number
    # of classes than the architecture's default config): built so, and kept when loaded.
    overlay = {"state_dict": state, "hf_hub_id": fetched.repo_id,
               "num_classes": checkpoint.num_classes}
    try:
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=overlay,
            **{"num_classes": checkpoint.num_classes, **kwargs}
        )
    except Exception as exc:  # timm raises several types for weights that do not fit
        raise WeightsError(f"{checkpoint.name}: the weights from {fetched.repo_id} do not load "
                           f"into {model_name}: {str(exc).splitlines()[0][:300]}") from exc


def _few(keys: list[str], n: int = 3) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
