"""Choosing where a worker computes. Called in the worker process, never at import time."""

import os

import torch


def choose_device() -> torch.device:
    """``ZOORANK_DEVICE`` if set (``cpu``, ``cuda``, ``cuda:1``), else CUDA when present."""
    requested = os.environ.get("ZOORANK_DEVICE", "").strip()
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"ZOORANK_DEVICE={requested} but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def simulated_memory_limit() -> int | None:
    """Bytes of input a forward may take before it runs out of device memory, for drills.

    ``ZOORANK_SIMULATED_DEVICE_MEMORY_MB`` (unset in normal use) makes a forward whose input
    batch is larger raise ``torch.OutOfMemoryError``, as a full GPU would, on any device:
    the fault drill (drills/run.py, ``out-of-memory``) checks how extraction recovers.
    """
    value = os.environ.get("ZOORANK_SIMULATED_DEVICE_MEMORY_MB", "").strip()
    return int(float(value) * 2**20) if value else None


def check_simulated_memory(batch: torch.Tensor, limit: int | None) -> None:
    if limit is not None and batch.element_size() * batch.nelement() > limit:
        raise torch.OutOfMemoryError(
            f"out of device memory (simulated: a batch of {len(batch)} takes "
            f"{batch.element_size() * batch.nelement() / 2**20:.1f} MiB, the limit is "
            f"{limit / 2**20:.1f} MiB)")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)[:40]
    return "cpu"
