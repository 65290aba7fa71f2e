"""The linear probe on the panel's device: torch's equals scikit-learn's, run on CPU tensors."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from transferability import probes
from transferability.device_probe import torch_out_of_fold_predictions
from transferability.metrics import REGISTRY, FeatureStatistics, score_panel
from transferability.metrics.backends import TorchBackend
from transferability.probes import out_of_fold_predictions, probe_implementation


@pytest.fixture(autouse=True)
def one_thread():
    """Both probes on one thread: idle OpenMP threads spin on a busy machine."""
    with threadpool_limits(limits=1):
        yield


def generated(n, d, c, separation, seed=0):
    """Gaussian classes whose means lie about ``separation`` noise deviations apart."""
    rng = np.random.default_rng([seed, n, d, c])
    y = rng.permutation(np.arange(n) % c)
    means = rng.standard_normal((c, d)) * separation / np.sqrt(2 * d)
    return (means[y] + rng.standard_normal((n, d))).astype(np.float32), y


DATASETS = {
    "two classes, N>D": lambda: generated(600, 20, 2, 1.5),
    "five classes, overlapping": lambda: generated(800, 40, 5, 2.5),
    "ten classes, D>N per fold": lambda: generated(400, 500, 10, 4.0),
    "twenty classes, hard": lambda: generated(1000, 64, 20, 3.0),
    "separable": lambda: generated(300, 16, 3, 20.0),
    "scikit-learn digits": lambda: load_digits(return_X_y=True),
}


def both_probes(X, y):
    """Out-of-fold class indices of scikit-learn's probe and of the torch probe on CPU."""
    y = np.unique(y, return_inverse=True)[1]
    on_cpu = probe_implementation(None)(X, y, 5, 0, 1.0, 1000)
    on_device = probe_implementation("cuda")(X, y, 5, 0, 1.0, 1000, "cpu")
    return y, on_cpu, on_device


@pytest.mark.parametrize("name", DATASETS)
def test_torch_probe_equals_scikit_learn(name):
    y, on_cpu, on_device = both_probes(*DATASETS[name]())
    assert np.mean(on_device == y) == pytest.approx(np.mean(on_cpu == y), abs=0.002)
    assert np.mean(on_device == on_cpu) >= 0.99


def test_torch_probe_handles_constant_and_huge_columns(monkeypatch):
    monkeypatch.setattr(probes, "TORCH_PROBE_DEVICE_TYPES", frozenset({"cpu"}))
    X, y = generated(300, 12, 3, 8.0)
    X = X.astype(np.float64)
    X[:, 0] = 7.0  # constant: scale 1, as StandardScaler
    X[:, 1] *= 1e200  # squares overflow without the shared power-of-two rescaling
    probes._REMEMBERED.clear()
    on_cpu = out_of_fold_predictions(X, y)
    probes._REMEMBERED.clear()
    on_device = out_of_fold_predictions(X, y, device="cpu")
    assert np.mean(on_device == on_cpu) >= 0.99 and np.mean(on_cpu == y) > 0.5


def test_the_chooser_puts_the_probe_on_cuda_and_leaves_the_cpu_to_scikit_learn():
    assert probe_implementation("cuda") is torch_out_of_fold_predictions
    assert probe_implementation("cuda:1") is torch_out_of_fold_predictions
    for device in (None, "numpy", "cpu"):
        assert probe_implementation(device) is not torch_out_of_fold_predictions


def test_a_cuda_panel_fits_the_probe_with_torch_on_its_device(monkeypatch):
    """The panel's device reaches the probe: here a CPU device treated as a GPU."""
    calls = []

    def spy(*args):
        calls.append(args[-1])
        return torch_out_of_fold_predictions(*args)

    monkeypatch.setattr(probes, "TORCH_PROBE_DEVICE_TYPES", frozenset({"cpu"}))
    monkeypatch.setattr("transferability.device_probe.torch_out_of_fold_predictions", spy)
    probes._REMEMBERED.clear()
    X, y = generated(200, 10, 4, 3.0, seed=5)
    [on_torch] = score_panel(X, y, [REGISTRY["probe_accuracy"]], device="cpu")
    assert [str(device) for device in calls] == ["cpu"]
    probes._REMEMBERED.clear()
    [on_numpy] = score_panel(X, y, [REGISTRY["probe_accuracy"]])
    assert len(calls) == 1  # no backend device: scikit-learn
    assert on_torch.value == pytest.approx(on_numpy.value, abs=0.002)


def test_knn_accuracy_runs_on_the_panels_device(monkeypatch):
    searched = []
    search = TorchBackend.nearest_others

    def spy(self, *args):
        searched.append(str(self.device))
        return search(self, *args)

    monkeypatch.setattr(TorchBackend, "nearest_others", spy)
    X, y = generated(200, 10, 4, 3.0, seed=6)
    score_panel(X, y, [REGISTRY["knn_accuracy"]], device="cpu")
    assert searched == ["cpu"]


def test_a_probe_fitted_on_the_device_is_remembered_for_the_cpu(monkeypatch):
    """Complementarity asks without a device after the panel's baseline asked with one."""
    monkeypatch.setattr(probes, "TORCH_PROBE_DEVICE_TYPES", frozenset({"cpu"}))
    probes._REMEMBERED.clear()
    X, y = generated(200, 10, 4, 3.0, seed=7)
    stats = FeatureStatistics(X, y, backend=TorchBackend("cpu"))
    REGISTRY["probe_accuracy"].func(stats, None)
    monkeypatch.setattr(probes, "_sklearn_out_of_fold_predictions",
                        lambda *args: pytest.fail("fitted again on the CPU"))
    out_of_fold_predictions(X, y)
    assert len(probes._REMEMBERED) == 1
