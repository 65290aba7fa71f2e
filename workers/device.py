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


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)[:40]
    return "cpu"
