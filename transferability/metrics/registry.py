"""The metric panel: one :class:`MetricSpec` per metric, keyed by function name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .baselines import KNN_SAMPLE_LIMIT, knn_accuracy, probe_accuracy
from .gbc import gbc
from .hscore import hscore, shrinkage_hscore
from .leep import leep
from .logme import logme
from .ncti import ncti_components, ncti_from_components
from .nce import nce
from .nleep import NLEEP_SAMPLE_LIMIT, nleep
from .parc import parc
from .sfda import sfda
from .knn_mutual_information import KNN_MI_SAMPLE_LIMIT, knn_mutual_information
from .tmi import tmi, tmi_floor_diagnostics, tmi_per_dimension, tmi_relative_floor, tmi_standardized
from .transrate import transrate

__all__ = ["MetricSpec", "REGISTRY", "applicable_metrics", "get_metric"]

FEATURES = "features"
SOURCE_PROBS = "source_probs"


@dataclass(frozen=True)
class MetricSpec:
    name: str  # function name, used as a key in the database and the API
    label: str  # for page headers
    func: Callable  # func(inputs, labels) -> float (a dict of components if relative_to_set)
    needs: str  # 'features' or 'source_probs'
    higher_is_better: bool
    kind: str  # 'metric' or 'baseline'
    reference: str  # short citation
    # Scores relative to the evaluation's candidate set: func returns raw components per
    # checkpoint, combine turns every candidate's components into their scores.
    relative_to_set: bool = False
    combine: Callable[[list[dict]], list[float]] | None = None
    # Above this many samples the metric runs on a stratified subsample (stated with it).
    sample_limit: int | None = None
    # A scale-aware form of another metric (its name): studied beside it, left out of the
    # consensus of the established metrics; it leads only when the evidence picks it.
    variant_of: str | None = None
    # diagnose(statistics) -> dict stored with the score (TMI: how much its floor decides).
    diagnose: Callable | None = None


_SPECS = [
    MetricSpec("tmi", "TMI", tmi, FEATURES, True, "metric", "Xu & Kang, ICCV 2023",
               diagnose=tmi_floor_diagnostics),
    MetricSpec("tmi_standardized", "TMI, standardised", tmi_standardized, FEATURES, True,
               "metric", "TMI on features of unit RMS spread", variant_of="tmi"),
    MetricSpec("tmi_relative_floor", "TMI, relative floor", tmi_relative_floor, FEATURES, True,
               "metric", "TMI, floor 0.01 x the median k-th distance", variant_of="tmi"),
    MetricSpec("tmi_per_dimension", "TMI per dimension", tmi_per_dimension, FEATURES, True,
               "metric", "standardised TMI / d", variant_of="tmi"),
    MetricSpec("knn_mutual_information", "k-NN MI", knn_mutual_information, FEATURES, True, "metric",
               "Ross, PLoS ONE 2014", variant_of="tmi", sample_limit=KNN_MI_SAMPLE_LIMIT),
    MetricSpec("logme", "LogME", logme, FEATURES, True, "metric", "You et al., ICML 2021"),
    MetricSpec("leep", "LEEP", leep, SOURCE_PROBS, True, "metric", "Nguyen et al., ICML 2020"),
    MetricSpec("nleep", "N-LEEP", nleep, FEATURES, True, "metric", "Li et al., CVPR 2021",
               sample_limit=NLEEP_SAMPLE_LIMIT),
    MetricSpec("nce", "NCE", nce, SOURCE_PROBS, True, "metric", "Tran et al., ICCV 2019"),
    MetricSpec("hscore", "H-score", hscore, FEATURES, True, "metric", "Bao et al., ICIP 2019"),
    MetricSpec("shrinkage_hscore", "Shrinkage H-score", shrinkage_hscore, FEATURES, True,
               "metric", "Ibrahim et al., ECML-PKDD 2022"),
    MetricSpec("gbc", "GBC", gbc, FEATURES, True, "metric", "Pandy et al., CVPR 2022"),
    MetricSpec("sfda", "SFDA", sfda, FEATURES, True, "metric", "Shao et al., ECCV 2022"),
    MetricSpec("transrate", "TransRate", transrate, FEATURES, True, "metric",
               "Huang et al., ICML 2022"),
    MetricSpec("parc", "PARC", parc, FEATURES, True, "metric", "Bolya et al., NeurIPS 2021"),
    MetricSpec("ncti", "NCTI", ncti_components, FEATURES, True, "metric",
               "Wang et al., ICCV 2023", relative_to_set=True, combine=ncti_from_components),
    MetricSpec("knn_accuracy", "k-NN accuracy", knn_accuracy, FEATURES, True, "baseline",
               "leave-one-out 5-NN; Cover & Hart 1967", sample_limit=KNN_SAMPLE_LIMIT),
    MetricSpec("probe_accuracy", "Linear probe accuracy", probe_accuracy, FEATURES, True,
               "baseline", "5-fold logistic regression; Kornblith et al., CVPR 2019"),
]

REGISTRY: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}

def get_metric(name: str) -> MetricSpec:
    """The spec registered under ``name``; ValueError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown metric {name!r}; valid names: {', '.join(REGISTRY)}"
        ) from None


def applicable_metrics(
    has_source_head: bool, names: Iterable[str] | None = None
) -> list[MetricSpec]:
    """Specs to run, in registry order.

    ``names=None`` selects every metric; otherwise only those named (unknown names raise
    ValueError naming them all). Metrics that need the source head's softmax are dropped
    when the checkpoint has no head.
    """
    if names is None:
        wanted = set(REGISTRY)
    else:
        if isinstance(names, str):
            names = [names]
        wanted = set(names)
        unknown = sorted(str(n) for n in wanted if n not in REGISTRY)
        if unknown:
            raise ValueError(
                f"unknown metrics {unknown}; valid names: {', '.join(REGISTRY)}"
            )
    return [
        spec
        for name, spec in REGISTRY.items()
        if name in wanted and (has_source_head or spec.needs != SOURCE_PROBS)
    ]
