"""Transferability metric panel: plain functions over numpy arrays (no Django).

Every metric is ``func(features, labels, ...) -> float`` (or ``func(source_probs, labels)``
for the two source-head metrics LEEP and NCE). Labels may be of any type; each metric maps
them to 0..C-1 with ``np.unique``. Malformed or degenerate input raises ValueError with a
message saying why; no metric returns NaN or inf. See docs/science.md, sections 2 and 3,
and :data:`REGISTRY` for names, directions and references.
"""

from .baselines import knn_accuracy, probe_accuracy
from .bhattacharyya import gbc
from .coding_rate import transrate
from .covariance import hscore, shrinkage_hscore
from .distance_correlation import parc
from .evidence import logme
from .fisher import sfda
from .knn_entropy import tmi
from .mixture import nleep
from .neural_collapse import ncti
from .registry import (PRIMARY_METRIC, REGISTRY, MetricSpec, applicable_metrics, get_metric,
                       ranking_metric)
from .source_head import leep, nce

__all__ = [
    "tmi",
    "logme",
    "leep",
    "nleep",
    "nce",
    "hscore",
    "shrinkage_hscore",
    "gbc",
    "sfda",
    "transrate",
    "parc",
    "ncti",
    "knn_accuracy",
    "probe_accuracy",
    "PRIMARY_METRIC",
    "REGISTRY",
    "MetricSpec",
    "ranking_metric",
    "applicable_metrics",
    "get_metric",
]
