"""Where the panel's heavy arithmetic runs: NumPy on the CPU, or torch on a device.

Only the operations whose cost grows with the number of samples N go through a backend:
Gram matrices, products with the N x D feature matrix, per-class Chebyshev k-NN distances
(TMI) and nearest-neighbour search (k-NN accuracy). Everything of size D x D or smaller is
plain NumPy afterwards. Both backends compute in float64 and return NumPy arrays, so a
metric gives the same value (to rounding) whichever backend ran it; the tests check that on
CPU tensors.

torch is imported only when a :class:`TorchBackend` is made, so that processes that never
score (the web server) never load it.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

__all__ = ["NumpyBackend", "TorchBackend", "backend_for"]

# Upper bound on the entries of one block of a distance matrix (float64): 2**23 = 64 MiB.
BLOCK_ENTRIES = 1 << 23
# At or below this dimension a KD-tree (exact, Chebyshev metric) beats brute force.
KDTREE_MAX_DIM = 16


class NumpyBackend:
    name = "numpy"

    def put(self, X: np.ndarray) -> np.ndarray:
        """The features as this backend holds them: float64."""
        return np.asarray(X, dtype=np.float64)

    def take(self, A) -> np.ndarray:
        return np.asarray(A)

    def gram(self, A: np.ndarray) -> np.ndarray:
        """``A^T A`` in float64."""
        return A.T @ A

    def matmul(self, A, B) -> np.ndarray:
        return A @ B

    def rows(self, A, index: np.ndarray):
        return A[index]

    def single(self, A) -> np.ndarray:
        """A float32 copy (for searches where float64 buys nothing but time)."""
        return np.asarray(A, dtype=np.float32)

    def kth_chebyshev(self, rows: np.ndarray, k: int) -> np.ndarray:
        """Chebyshev distance from each row to its k-th nearest *other* row (k < len(rows)).

        The row itself is at distance 0, so the k-th other neighbour is order statistic
        ``k`` (0-based) of its distances to all rows; duplicates count as other samples.
        """
        n, d = rows.shape
        if d <= KDTREE_MAX_DIM:
            distances, _ = cKDTree(rows).query(rows, k=k + 1, p=np.inf)
            return np.asarray(distances[:, k], dtype=np.float64)
        out = np.empty(n, dtype=np.float64)
        step = max(1, BLOCK_ENTRIES // n)
        for start in range(0, n, step):
            block = cdist(rows[start:start + step], rows, metric="chebyshev")
            out[start:start + step] = np.partition(block, k, axis=1)[:, k]
        return out

    def nearest_others(self, queries: np.ndarray, query_index: np.ndarray,
                       reference: np.ndarray, k: int) -> np.ndarray:
        """Indices into ``reference`` of the k nearest (Euclidean) rows to each query,
        nearest first, the query's own row (``query_index``) excluded. Computed in the
        inputs' precision."""
        out = np.empty((queries.shape[0], k), dtype=np.intp)
        ref_sq = np.einsum("ij,ij->i", reference, reference)
        step = max(1, BLOCK_ENTRIES // reference.shape[0])
        for start in range(0, queries.shape[0], step):
            q = queries[start:start + step]
            dist = ref_sq[None, :] - 2.0 * (q @ reference.T)
            dist[np.arange(q.shape[0]), query_index[start:start + step]] = np.inf
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
            out[start:start + step] = np.take_along_axis(part, order, axis=1)
        return out


class TorchBackend:
    """The same operations with torch on ``device`` (CUDA on a GPU worker), in float64."""

    name = "torch"

    def __init__(self, device="cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def put(self, X: np.ndarray):
        return self.torch.as_tensor(np.asarray(X), device=self.device).to(self.torch.float64)

    def take(self, A) -> np.ndarray:
        return A.detach().cpu().numpy() if isinstance(A, self.torch.Tensor) else np.asarray(A)

    def _tensor(self, A):
        if isinstance(A, self.torch.Tensor):
            return A
        return self.torch.as_tensor(np.asarray(A, dtype=np.float64), device=self.device)

    def gram(self, A) -> np.ndarray:
        A = self._tensor(A)
        return self.take(A.T @ A)

    def matmul(self, A, B) -> np.ndarray:
        return self.take(self._tensor(A) @ self._tensor(B))

    def rows(self, A, index: np.ndarray):
        return self._tensor(A)[self.torch.as_tensor(index, device=self.device)]

    def single(self, A):
        return self._tensor(A).to(self.torch.float32)

    def kth_chebyshev(self, rows, k: int) -> np.ndarray:
        rows = self._tensor(rows)
        n = rows.shape[0]
        out = self.torch.empty(n, dtype=self.torch.float64, device=self.device)
        # |a - b| on a block of (rows x n x d) would need n*n*d memory; cdist with
        # p = inf works pairwise and exactly (a max of absolute differences).
        step = max(1, BLOCK_ENTRIES // n)
        for start in range(0, n, step):
            block = self.torch.cdist(rows[start:start + step], rows, p=float("inf"))
            out[start:start + step] = self.torch.kthvalue(block, k + 1, dim=1).values
        return self.take(out)

    def nearest_others(self, queries, query_index: np.ndarray, reference, k: int) -> np.ndarray:
        torch = self.torch
        queries, reference = self._tensor(queries), self._tensor(reference)
        ref_sq = (reference * reference).sum(dim=1)
        out = []
        step = max(1, BLOCK_ENTRIES // reference.shape[0])
        own = torch.as_tensor(query_index, device=self.device)
        for start in range(0, queries.shape[0], step):
            q = queries[start:start + step]
            dist = ref_sq[None, :] - 2.0 * (q @ reference.T)
            dist[torch.arange(q.shape[0], device=self.device), own[start:start + step]] = \
                float("inf")
            out.append(torch.topk(dist, k, dim=1, largest=False, sorted=True).indices)
        return self.take(torch.cat(out)).astype(np.intp)


def backend_for(device=None):
    """NumPy for ``None`` or ``"numpy"``; torch on that device otherwise (``"cpu"``,
    ``"cuda"``, a ``torch.device``)."""
    if device is None or str(device) == "numpy":
        return NumpyBackend()
    return TorchBackend(device)
