"""Mixed precision for ground truth and transfers: autocast on CUDA, float32 elsewhere. No GPU
here: the autocast path is run on CPU tensors (``MixedPrecision(..., enabled=True)``), the
same code a CUDA worker runs."""

import pytest
import timm
import torch

from tests.transferability.test_distillation import colour_transfer
from tests.transferability.test_ground_truth import colour_pixels
from transferability.ground_truth import FinetuneRecipe, finetune_accuracy, truth_split
from transferability.precision import MixedPrecision


def test_a_cpu_trains_in_float32_and_a_cuda_device_under_autocast():
    cpu = MixedPrecision("cpu")
    assert not cpu.enabled and cpu.name == "fp32" and not cpu.scaler.is_enabled()
    cuda = MixedPrecision("cuda")  # chosen without touching a device that is not here
    assert cuda.enabled and cuda.name in ("bf16-autocast", "fp16-autocast")


@pytest.mark.parametrize("dtype, scaled", [(torch.bfloat16, False), (torch.float16, True)])
def test_the_autocast_path_trains_and_scales_float16_gradients(dtype, scaled):
    precision = MixedPrecision("cpu", enabled=True, dtype=dtype)
    assert precision.scaler.is_enabled() is scaled
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    x[torch.arange(64), y] += 3.0
    model = torch.nn.Linear(8, 3)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        with precision.autocast():
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
        assert logits.dtype == dtype  # really under autocast
        optimiser.zero_grad()
        precision.step(loss, optimiser)
        losses.append(float(loss))
    assert model.weight.dtype == torch.float32  # the weights stay float32
    assert losses[-1] < 0.5 * losses[0]


def test_fine_tuning_under_autocast_reaches_the_float32_accuracy():
    pixels, labels = colour_pixels()
    train, test = truth_split(labels, 0.3)
    recipe = FinetuneRecipe(learning_rates=(3e-3,), epochs=3, batch_size=16, max_extensions=0)
    results = {}
    for name, precision in {"fp32": MixedPrecision("cpu"),
                            "bf16": MixedPrecision("cpu", enabled=True)}.items():
        torch.manual_seed(0)
        # A ViT: CPU bfloat16 convolutions with batch norm gave NaN losses now and then (one
        # run in three to six, one thread or two); the CUDA path autocasts on GPUs only.
        model = timm.create_model("test_vit", pretrained=False, num_classes=10, img_size=16)
        results[name] = finetune_accuracy(model, pixels, labels, train, test, mean=[0.5] * 3,
                                          std=[0.25] * 3, recipe=recipe, precision=precision)
    assert results["fp32"]["precision"] == "fp32"
    assert results["bf16"]["precision"] == "bf16-autocast"
    assert results["bf16"]["accuracy"] >= 90.0 and results["fp32"]["accuracy"] >= 90.0, \
        {k: r["accuracy"] for k, r in results.items()}


def test_a_transfer_under_autocast_reports_its_precision_and_consistent_figures():
    *_, trained, report = colour_transfer(precision=MixedPrecision("cpu", enabled=True))
    assert report["precision"] == "bf16-autocast"
    delta = report["delta"]
    assert delta["delta_accuracy"] == pytest.approx(
        delta["positive_flips"] - delta["negative_flips"])
    assert next(trained.parameters()).dtype == torch.float32


def test_a_step_the_scaler_skips_is_reported_and_changes_no_weight():
    precision = MixedPrecision("cpu", enabled=True, dtype=torch.float16)
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    with precision.autocast():
        loss = model(torch.full((3, 4), float("inf"))).float().sum()  # gradients overflow
    assert precision.step(loss, optimiser) is False
    assert torch.equal(model.weight.detach(), before)
    optimiser.zero_grad()
    with precision.autocast():
        loss = model(torch.full((1, 4), 1e-3)).float().sum()  # scaled grads fit in float16
    assert precision.step(loss, optimiser) is True
    assert not torch.equal(model.weight.detach(), before)
