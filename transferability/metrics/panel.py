"""The metric panel of one checkpoint and layer, computed over shared statistics.

:func:`score_panel` makes one :class:`~.statistics.FeatureStatistics` for the features
(Gram, class means, PCA are then computed once, on the chosen device) and runs every
requested metric on it. A metric that cannot apply gives its reason instead of a value;
one relative to the candidate set gives its raw components (``details["components"]``),
to be combined across the evaluation's checkpoints by ``spec.combine``; one computed on a
subsample says so (``details["note"]``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .backends import backend_for
from .registry import SOURCE_PROBS, MetricSpec
from .sampling import subsample_note
from .statistics import FeatureStatistics

__all__ = ["PanelScore", "score_panel"]

APPROXIMATION_LABELS = {"knn_accuracy": "k-NN", "nleep": "N-LEEP's mixture fitted",
                        "knn_mutual_information": "k-NN MI"}


@dataclass
class PanelScore:
    name: str
    value: float | None
    error: str = ""
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


def score_panel(
    features,
    labels,
    specs: Iterable[MetricSpec],
    *,
    source_probs=None,
    device=None,
    after_each: Callable[[PanelScore], None] | None = None,
) -> list[PanelScore]:
    """Every metric of ``specs`` on ``features`` (N x D) and ``labels``.

    ``device``: None for NumPy, else a torch device (``"cuda"``, ``"cpu"``) for the N-sized
    arithmetic. ``source_probs`` (N x C_source softmax) feeds the source-head metrics.
    ``after_each`` is called with each score as it is made (progress, heartbeats). The
    time of a shared statistic counts towards the first metric that needs it.
    """
    stats = FeatureStatistics(features, labels, backend=backend_for(device))
    out = []
    for spec in specs:
        started = time.perf_counter()
        details = {}
        try:
            if spec.needs == SOURCE_PROBS:
                if source_probs is None:
                    raise ValueError("this checkpoint has no source head")
                result = spec.func(source_probs, stats.y)
            else:
                result = spec.func(stats, None)
            if spec.relative_to_set:
                details["components"] = {k: float(v) for k, v in result.items()}
                value, error = None, ""
            else:
                value, error = float(result), ""
                if not np.isfinite(value):
                    value, error = None, f"{spec.name} is not finite on these features"
                elif spec.diagnose is not None:
                    details["diagnostics"] = spec.diagnose(stats)
        except ValueError as exc:
            value, error = None, str(exc)
        if spec.sample_limit and stats.n > spec.sample_limit:
            details["note"] = subsample_note(APPROXIMATION_LABELS.get(spec.name, spec.label),
                                             spec.sample_limit, stats.n)
        score = PanelScore(spec.name, value, error, time.perf_counter() - started, details)
        out.append(score)
        if after_each is not None:
            after_each(score)
    return out
