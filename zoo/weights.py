"""Reading weight files safely: safetensors, or torch.load(weights_only=True). Nothing else.

A pickle that needs code to load (a class, a function, a reduce call) is refused by
``weights_only=True`` before any of it runs.
"""

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import torch


class WeightsError(Exception):
    """The weights of a checkpoint cannot be had or cannot be read safely."""


SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
ALLOWED_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema")


def sha256_of(fileobj: BinaryIO, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fileobj.read(chunk_size), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of_path(path: str | Path) -> str:
    with open(path, "rb") as f:
        return sha256_of(f)


def read_state_dict(path: str | Path) -> "dict[str, torch.Tensor]":
    """Return the tensors of a weights file, refusing anything that would run code."""
    import torch  # only where weights are read: web processes stay light
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises several types for bad files
            raise WeightsError(f"{path.name} is not a valid safetensors file: {exc}") from exc
    if suffix not in PICKLE_SUFFIXES:
        raise WeightsError(
            f"{path.name}: unsupported weights format {suffix or '(none)'}; "
            f"use one of {', '.join(ALLOWED_SUFFIXES)}"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code-bearing pickles, others for junk
        raise WeightsError(
            f"{path.name} was refused: it is not a plain tensor file that loads with "
            f"weights_only=True ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc
    return _unwrap(obj, path.name)


def _unwrap(obj, filename: str) -> "dict[str, torch.Tensor]":
    import torch

    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{filename} does not hold a state dict of tensors")
    # Checkpoints saved from DataParallel / DDP carry a 'module.' prefix.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
