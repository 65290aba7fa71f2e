"""The linear probe in torch, so that it runs where the panel runs (a GPU worker's device).

The protocol of the scikit-learn probe of :mod:`transferability.probes`, step for step, so
that both give the same out-of-fold predictions:

- the folds come from the same seeded ``StratifiedKFold``;
- features are standardised on each training fold as ``StandardScaler`` does (population
  variance; a column whose variance is within the two-pass rounding bound of zero keeps
  scale 1);
- the model is scikit-learn's L2 logistic regression: multinomial over C weight vectors
  for C > 2 classes, one weight vector (class 1 against class 0) for 2 classes (a symmetric
  two-vector parametrisation would halve the penalty), the intercept not penalised; the
  objective ``C * sum of log-losses + 0.5 ||W||^2`` is minimised divided by C N, as
  scikit-learn does, so that its gradient tolerance means the same;
- the optimiser is scikit-learn's too: scipy's L-BFGS-B with its settings (gradient
  tolerance 1e-4, ``maxls`` 50, ``max_iter``). At that tolerance L-BFGS stops well before
  the optimum (8 iterations on 4,000 x 512 features of 50 hard classes), and a model
  optimised further predicts differently: 95 % of samples alike and 0.3 accuracy points
  apart there. Running the same iterations keeps the two paths equal; only the objective
  and its gradient, the N-sized arithmetic, run on the device;
- the prediction is the argmax of the logits, the first class on a tie (class 0 at a
  binary logit of exactly 0, as scikit-learn).

Everything on the device is float64, so the iterates follow scikit-learn's to rounding.
torch is imported when the probe runs, never at import time.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

__all__ = ["torch_out_of_fold_predictions"]

# scikit-learn's lbfgs settings (LogisticRegression, tol=1e-4).
_LBFGS_OPTIONS = {"maxls": 50, "gtol": 1e-4, "ftol": 64 * np.finfo(float).eps}


def torch_out_of_fold_predictions(features: np.ndarray, y: np.ndarray, n_splits: int,
                                  seed: int, C: float, max_iter: int, device) -> np.ndarray:
    """Out-of-fold class indices (into ``0..y.max()``) of the probe, computed on ``device``.

    ``features`` are validated and finite; ``y`` holds class indices 0..K-1, every class
    with at least ``n_splits`` samples.
    """
    import torch

    device = torch.device(device)
    n_classes = int(y.max()) + 1
    X = torch.as_tensor(np.ascontiguousarray(features), device=device).to(torch.float64)
    labels = torch.as_tensor(y, device=device, dtype=torch.int64)
    predictions = torch.empty_like(labels)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros((y.size, 1)), y):
        train = torch.as_tensor(train, device=device)
        test = torch.as_tensor(test, device=device)
        mean, scale = _standardiser(X[train])
        weights, intercept = _fit_logistic((X[train] - mean) / scale, labels[train],
                                           n_classes, C, max_iter)
        logits = _full_logits((X[test] - mean) / scale @ weights + intercept, n_classes)
        predictions[test] = torch.argmax(logits, dim=1)
    return predictions.cpu().numpy().astype(y.dtype, copy=False)


def _standardiser(X):
    """Mean and scale of ``StandardScaler`` fitted on ``X`` (float64)."""
    n = X.shape[0]
    mean = X.mean(dim=0)
    var = ((X - mean) ** 2).mean(dim=0)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = var.sqrt().masked_fill(constant, 1.0)
    return mean, scale


def _full_logits(logits, n_classes: int):
    """Binary problems fit one logit (class 1 against class 0); class 0's logit is 0."""
    import torch

    if n_classes == 2:
        return torch.cat([logits.new_zeros((logits.shape[0], 1)), logits], dim=1)
    return logits


def _fit_logistic(Z, labels, n_classes: int, C: float, max_iter: int):
    """Weights (D x K) and intercept (K) minimising the mean log-loss + ||W||^2 / (2 C N).

    K is 1 for two classes, else the number of classes. The objective and its gradient are
    computed on ``Z``'s device; scipy's L-BFGS-B, with scikit-learn's settings, chooses the
    steps on the host from the (D + 1) K numbers it returns.
    """
    import torch

    n, d = Z.shape
    k = 1 if n_classes == 2 else n_classes
    one_hot = torch.zeros((n, n_classes), dtype=Z.dtype, device=Z.device)
    one_hot[torch.arange(n, device=Z.device), labels] = 1.0
    one_hot = one_hot[:, -k:]
    penalty = 1.0 / (C * n)

    def objective(flat: np.ndarray):
        coef = torch.as_tensor(flat, device=Z.device).view(d + 1, k)
        weights, intercept = coef[:d], coef[d]
        logits = _full_logits(Z @ weights + intercept, n_classes)
        log_norm = torch.logsumexp(logits, dim=1, keepdim=True)
        # Mean log-loss: the log-normaliser minus the true class's logit.
        loss = (log_norm.sum() - (logits[:, -k:] * one_hot).sum()) / n
        loss = loss + 0.5 * penalty * (weights * weights).sum()
        residual = (torch.exp(logits[:, -k:] - log_norm) - one_hot) / n
        # One copy to the host per evaluation: the gradient, then the loss.
        out = torch.cat([(Z.T @ residual + penalty * weights).ravel(),
                         residual.sum(dim=0), loss[None]]).cpu().numpy()
        return out[-1], out[:-1]

    result = minimize(objective, np.zeros((d + 1) * k), method="L-BFGS-B", jac=True,
                      options=_LBFGS_OPTIONS | {"maxiter": max_iter})
    coef = torch.as_tensor(result.x, device=Z.device).view(d + 1, k)
    return coef[:d], coef[d]
