"""What several metrics need from one feature matrix, computed once.

LogME, H-score, shrinkage H-score, GBC, SFDA, TransRate, PARC, NCTI and N-LEEP all start
from the same few statistics of the features: the column mean, the per-class counts and
means, the centred Gram (scatter) matrix and its eigendecomposition (PCA). Computed for each
metric separately these dominate the panel's cost; here they are computed on first use and
kept, and every metric function accepts either raw features or a
:class:`FeatureStatistics`. The panel (:mod:`.panel`) makes one per checkpoint and layer.

Units: features are centred and divided by ``scale``, an exact power of two near their
largest centred magnitude, so that nothing overflows at extreme feature scales; metrics
that depend on the scale multiply it back in (exactly).
"""

from __future__ import annotations

import numpy as np

from ._validation import check_features_labels, class_counts
from .backends import NumpyBackend

__all__ = ["FeatureStatistics", "statistics_of"]


class FeatureStatistics:
    """Statistics of an ``N x D`` feature matrix and its labels, computed lazily, once.

    Attributes always present: ``features`` (the validated input, float32 or float64
    NumPy), ``y`` (class indices 0..C-1, ``np.unique`` order), ``n_classes``, ``counts``,
    ``n``, ``d``, ``backend`` (where N-sized products run).
    """

    def __init__(self, features, labels, backend=None):
        X, y, n_classes = check_features_labels(features, labels, min_classes=1,
                                                keep_float32=True)
        self.features = X
        self.y = y
        self.n_classes = n_classes
        self.counts = class_counts(y, n_classes)
        self.n, self.d = X.shape
        self.backend = backend or NumpyBackend()
        self._cache: dict = {}

    def _once(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def require_classes(self, minimum: int) -> None:
        if self.n_classes < minimum:
            raise ValueError(
                f"need at least {minimum} classes, got {self.n_classes} "
                f"({'a single class' if self.n_classes == 1 else 'too few classes'})"
            )

    # ------------------------------------------------------------------ centring

    @property
    def mean(self) -> np.ndarray:
        """Column means, float64 (D,)."""
        return self._once("mean", lambda: np.mean(self.features, axis=0, dtype=np.float64))

    @property
    def constant_columns(self) -> np.ndarray:
        return self._once("constant", lambda: np.max(self.features, axis=0)
                          == np.min(self.features, axis=0))

    @property
    def scale(self) -> float:
        """Power of two at or below the largest centred magnitude (1.0 if all constant)."""
        def compute():
            top = float(np.max(np.maximum(np.max(self.features, axis=0) - self.mean,
                                          self.mean - np.min(self.features, axis=0))))
            return 1.0 if top == 0.0 else float(2.0 ** np.floor(np.log2(top)))
        return self._once("scale", compute)

    @property
    def centred(self):
        """``(X - mean) / scale`` in float64, held by the backend; exactly-constant columns
        are exactly 0 (rounding noise must not pass for variance)."""
        def compute():
            Xc = (np.asarray(self.features, dtype=np.float64) - self.mean) / self.scale
            Xc[:, self.constant_columns] = 0.0
            return self.backend.put(Xc)
        return self._once("centred", compute)

    @property
    def is_constant(self) -> bool:
        """All rows identical: no direction of variance at all."""
        return bool(self.constant_columns.all())

    # ------------------------------------------------------------------ classes

    @property
    def class_sums(self) -> np.ndarray:
        """``C x D`` sums of the centred, scaled rows per class."""
        def compute():
            onehot = np.zeros((self.n_classes, self.n))
            onehot[self.y, np.arange(self.n)] = 1.0
            return self.backend.matmul(onehot, self.centred)
        return self._once("class_sums", compute)

    @property
    def class_means(self) -> np.ndarray:
        """``C x D`` class means of the centred, scaled features."""
        return self._once("class_means",
                          lambda: self.class_sums / self.counts[:, None].astype(np.float64))

    @property
    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices sorted by class and the class boundaries in that order."""
        def compute():
            order = np.argsort(self.y, kind="stable")
            return order, np.searchsorted(self.y[order], np.arange(self.n_classes + 1))
        return self._once("order", compute)

    def members(self, c: int) -> np.ndarray:
        order, bounds = self.order
        return order[bounds[c]:bounds[c + 1]]

    # ------------------------------------------------------------------ scatter and PCA

    @property
    def gram(self) -> np.ndarray:
        """``D x D`` centred Gram (scatter) matrix ``Xc^T Xc`` in scaled units."""
        def compute():
            G = self.backend.gram(self.centred)
            return 0.5 * (G + G.T)
        return self._once("gram", compute)

    @property
    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """Principal axes of the centred features: ``(values, axes)``, descending.

        ``values`` are the non-zero eigenvalues of ``Xc^T Xc`` (scaled units), ``axes`` the
        ``D x r`` orthonormal eigenvectors, each signed so that its largest-magnitude entry
        is positive (scikit-learn's convention for PCA components). From the ``D x D`` Gram
        when D <= N, else from the ``N x N`` one (cheaper, same non-zero spectrum).
        """
        def compute():
            if self.d <= self.n:
                values, axes = np.linalg.eigh(self.gram)
            else:
                K = self.backend.gram(self.centred.T)
                values, left = np.linalg.eigh(0.5 * (K + K.T))
            values = values[::-1]
            top = max(float(values[0]), 0.0)
            keep = values > top * max(self.n, self.d) * np.finfo(np.float64).eps
            values = values[keep]
            if self.d <= self.n:
                axes = axes[:, ::-1][:, keep]
            else:
                axes = self.backend.matmul(self.backend.take(self.centred).T,
                                           left[:, ::-1][:, keep]) / np.sqrt(values)
            pivot = np.argmax(np.abs(axes), axis=0)
            signs = np.sign(axes[pivot, np.arange(axes.shape[1])])
            signs[signs == 0] = 1.0
            return values, axes * signs
        return self._once("spectrum", compute)

    def explained_variance(self) -> np.ndarray:
        """Variance along each principal axis in raw units, over N - 1 (as scikit-learn)."""
        values, _ = self.spectrum
        return values * self.scale ** 2 / max(self.n - 1, 1)

    def pca_scores(self, n_components: int) -> np.ndarray:
        """``N x k`` principal-component scores (scaled units), k capped at the rank."""
        values, axes = self.spectrum
        k = max(1, min(int(n_components), values.size))
        return self._once(("pca", k),
                          lambda: self.backend.matmul(self.centred, axes[:, :k]))

    def components_for_variance(self, fraction: float) -> int:
        """Fewest components whose explained-variance ratio exceeds ``fraction``
        (scikit-learn's rule for ``PCA(n_components=fraction)``)."""
        values, _ = self.spectrum
        ratio = np.cumsum(values) / values.sum()
        return int(min(np.searchsorted(ratio, fraction, side="right") + 1, values.size))

    @property
    def uncentred_spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """For LogME: ``(sigma, z)`` with ``sigma`` the non-zero eigenvalues of ``F^T F`` and
        ``z = U^T Y`` (r x C), ``F = X / scale`` uncentred, ``Y`` one-hot, ``F = U S V^T``.

        Columns of ``U`` with a numerically zero singular value are dropped; the part of
        ``Y`` they would explain stays in LogME's residual.
        """
        def compute():
            shift = self.mean / self.scale
            shift[self.constant_columns] = self.features[0, self.constant_columns] / self.scale
            sums = self.class_sums + self.counts[:, None] * shift  # F^T Y, transposed
            if self.d <= self.n:
                G = self.gram + self.n * np.outer(shift, shift)
                sigma, V = np.linalg.eigh(0.5 * (G + G.T))
                keep = sigma > max(sigma.max(initial=0.0), 0.0) * self.n * np.finfo(float).eps
                sigma, V = sigma[keep], V[:, keep]
                z = (V.T @ sums.T) / np.sqrt(sigma)[:, None]
            else:
                F = self.backend.take(self.centred) + shift
                K = self.backend.gram(F.T)
                sigma, U = np.linalg.eigh(0.5 * (K + K.T))
                keep = sigma > max(sigma.max(initial=0.0), 0.0) * self.d * np.finfo(float).eps
                sigma, U = sigma[keep], U[:, keep]
                onehot = np.zeros((self.n, self.n_classes))
                onehot[np.arange(self.n), self.y] = 1.0
                z = U.T @ onehot
            return sigma, z
        return self._once("uncentred", compute)


def statistics_of(features, labels=None, backend=None) -> FeatureStatistics:
    """``features`` itself when it is already a :class:`FeatureStatistics` (labels are then
    ignored), else the statistics of ``features`` and ``labels``."""
    if isinstance(features, FeatureStatistics):
        return features
    return FeatureStatistics(features, labels, backend=backend)
