"""Mixed precision for the training the workers do: ground truth (fine-tuning) and transfers.

On CUDA the forward and backward passes run under autocast, in bfloat16 where the device
has it (no loss scaling needed), else float16 with a gradient scaler; weights, optimiser
state and the losses stay float32 (autocast computes softmax, log-softmax and the losses in
float32). Elsewhere training runs in float32, as before.

``MixedPrecision(device, enabled=True)`` turns autocast on for a CPU device too (bfloat16):
the same code path, so that it is exercised where no GPU is (tests).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["MixedPrecision"]


class MixedPrecision:
    def __init__(self, device, enabled: bool | None = None, dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.enabled = cuda if enabled is None else enabled
        if not self.enabled:
            self.dtype = torch.float32
        elif dtype is not None:  # tests: the float16 path, with its scaler, on a CPU
            self.dtype = dtype
        elif cuda and not torch.cuda.is_bf16_supported(including_emulation=False):
            self.dtype = torch.float16  # before Ampere: bfloat16 would only be emulated
        else:
            self.dtype = torch.bfloat16
        # float16 gradients underflow without scaling; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.enabled and self.dtype == torch.float16)

    @property
    def name(self) -> str:
        """What a result records: "bf16-autocast", "fp16-autocast" or "fp32"."""
        return {torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast"}.get(
            self.dtype, "fp32")

    def autocast(self):
        """The context the forward pass and the loss run in."""
        if not self.enabled:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> bool:
        """Backward and optimiser step, through the gradient scaler when there is one.

        False when the scaler skipped the step (float16 gradients overflowed; it lowers its
        scale and the next step goes through): the caller's schedule should not move."""
        self.scaler.scale(loss).backward()
        if not self.scaler.is_enabled():
            optimiser.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimiser)
        self.scaler.update()
        return self.scaler.get_scale() >= scale
