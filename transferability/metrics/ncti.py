"""NCTI: how far a checkpoint's features are from neural collapse on the target classes,
relative to the other candidates of the same evaluation."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from ._validation import check_positive_int
from .statistics import statistics_of

__all__ = ["ncti_components", "ncti_from_components", "ncti_set", "COMPONENTS"]

COMPONENTS = ("seli", "ncc", "vc")


def ncti_components(features, labels=None, n_components: int = 64) -> dict[str, float]:
    """The three raw NCTI components of one checkpoint (Wang, Luo, Zheng, Huang &
    Baktashmotlagh, "How Far Pre-trained Models Are from Neural Collapse on the Target
    Dataset Informs their Transferability", ICCV 2023).

    Follows BUserName/NCTI ``metrics.py`` ``NCTI_Score``: the features are reduced by PCA
    to ``n_components`` (64; fewer when the features have fewer dimensions) and a linear
    discriminant (scikit-learn ``LinearDiscriminantAnalysis``) is fitted on them, with
    shrinkage max(exp(-sum of the first 32 PCA variances), 1e-10) and the eigen solver, or
    the SVD solver without shrinkage when that floor is hit (as released). Then

    - ``seli``: nuclear norm of the centred LDA-projected features (closeness to the
      simplex-ETF / SELI geometry; higher is better);
    - ``ncc``: mean LDA posterior of the true class (nearest-class-centre accuracy; higher
      is better);
    - ``vc``: log of the sum over classes of the nuclear norm of that class's posteriors
      (within-class variability; lower is better).

    The NCTI score normalises each component across the candidate set: see
    :func:`ncti_from_components`.
    """
    check_positive_int(n_components, "n_components")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    if stats.is_constant:
        raise ValueError("features have zero variance (all rows identical): PCA is undefined")
    Z = stats.pca_scores(n_components) * stats.scale
    k = Z.shape[1]
    shrinkage = max(float(np.exp(-np.sum(stats.explained_variance()[:32]))), 1e-10)
    if shrinkage == 1e-10:
        lda = LinearDiscriminantAnalysis(solver="svd")
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "variables are collinear"
        projected = lda.fit_transform(Z, stats.y)
        posterior = lda.predict_proba(Z)
    projected = projected - projected.mean(axis=0)
    seli = float(np.linalg.norm(projected, ord="nuc")) if k else 0.0
    ncc = float(np.mean(posterior[np.arange(stats.n), stats.y]))
    nuclear = sum(float(np.linalg.norm(posterior[stats.members(c)], ord="nuc"))
                  for c in range(stats.n_classes))
    return {"seli": seli, "ncc": ncc, "vc": float(np.log(nuclear))}


def ncti_from_components(components: list[dict[str, float]]) -> list[float]:
    """NCTI scores of a candidate set from each candidate's :func:`ncti_components`.

    As in the authors' evaluation: each component is min-max normalised across the set and
    NCTI = ncc + seli - vc (higher is better; between -1 and 2). A component that is equal
    for every candidate (one candidate alone, say) cannot rank them and contributes 0.
    """
    if not components:
        return []
    table = {name: np.array([float(c[name]) for c in components]) for name in COMPONENTS}

    def normalised(values: np.ndarray) -> np.ndarray:
        low, high = values.min(), values.max()
        return np.zeros_like(values) if high == low else (values - low) / (high - low)

    scores = normalised(table["ncc"]) + normalised(table["seli"]) - normalised(table["vc"])
    return [float(s) for s in scores]


def ncti_set(list_of_features, labels, n_components: int = 64) -> list[float]:
    """NCTI of each feature matrix in ``list_of_features`` (one per candidate checkpoint,
    all on the same target samples and ``labels``), relative to the others."""
    return ncti_from_components([ncti_components(X, labels, n_components=n_components)
                                 for X in list_of_features])
