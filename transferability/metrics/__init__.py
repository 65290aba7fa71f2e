"""Transferability metric panel: plain functions over arrays (no Django).

One file per metric, named after it (``sfda.py`` holds SFDA). Every feature metric is
``func(features, labels, ...) -> float`` where ``features`` may also be a
:class:`FeatureStatistics`, the statistics shared by the whole panel (computed once per
checkpoint; see :mod:`.statistics` and :mod:`.panel`). LEEP and NCE take
``func(source_probs, labels)``. NCTI is relative to a candidate set: ``ncti_components``
per checkpoint, ``ncti_from_components`` / ``ncti_set`` across the set. Labels may be of
any type; each metric maps them to 0..C-1 with ``np.unique``. Malformed or degenerate
input raises ValueError saying why; no metric returns NaN or inf. See docs/science.md,
sections 2, 3 and 7, and :data:`REGISTRY` for names, directions and references.
"""

from .baselines import knn_accuracy, probe_accuracy
from .gbc import gbc
from .hscore import hscore, shrinkage_hscore
from .leep import leep
from .logme import logme
from .ncti import ncti_components, ncti_from_components, ncti_set
from .nce import nce
from .nleep import nleep
from .panel import PanelScore, score_panel
from .parc import parc
from .registry import REGISTRY, MetricSpec, applicable_metrics, get_metric
from .sfda import sfda
from .statistics import FeatureStatistics
from .knn_mutual_information import knn_mutual_information
from .tmi import (tmi, tmi_floor_diagnostics, tmi_per_dimension, tmi_relative_floor,
                  tmi_standardized)
from .transrate import transrate

__all__ = [
    "tmi",
    "tmi_floor_diagnostics",
    "tmi_standardized",
    "tmi_relative_floor",
    "tmi_per_dimension",
    "knn_mutual_information",
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
    "ncti_components",
    "ncti_from_components",
    "ncti_set",
    "knn_accuracy",
    "probe_accuracy",
    "FeatureStatistics",
    "PanelScore",
    "score_panel",
    "REGISTRY",
    "MetricSpec",
    "applicable_metrics",
    "get_metric",
]
