"""Tests of the transferability metric panel (transferability/metrics/).

Pure numpy: no Django. Run with
    .venv/bin/python -m pytest tests/transferability/test_metrics.py -q -p no:django -p no:cacheprovider
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import digamma

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transferability import metrics  # noqa: E402
from transferability.metrics import REGISTRY, applicable_metrics, get_metric  # noqa: E402
from transferability.metrics import backends  # noqa: E402
from transferability.metrics.ncti import ncti_components  # noqa: E402

ALL_SPECS = list(REGISTRY.values())
# NCTI is relative to a candidate set: its per-checkpoint function returns components.
PER_CHECKPOINT = [s for s in ALL_SPECS if not s.relative_to_set]
SOURCE_SPECS = [s for s in ALL_SPECS if s.needs == "source_probs"]
N, D, C, C_SOURCE = 300, 16, 4, 10


# --------------------------------------------------------------------------- data


def gaussian_classes(seed=0, n=N, d=D, c=C, spread=4.0):
    """Well-separated Gaussian classes: class means ~ N(0, spread^2), unit noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    means = rng.standard_normal((c, d)) * spread
    return means[y] + rng.standard_normal((n, d)), y


def source_probs(y, informative, seed=0, n_source=C_SOURCE):
    """N x n_source softmax. Informative: each target class favours its own source class."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((y.size, n_source))
    if informative:
        favoured = rng.choice(n_source, size=int(y.max()) + 1, replace=False)
        logits[np.arange(y.size), favoured[y]] += 4.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def inputs_for(spec, X, y, seed=0, informative=True):
    return source_probs(y, informative, seed) if spec.needs == "source_probs" else X


def value_of(spec, inputs, labels):
    """A metric's value; for a set-level metric, its components summed (a deterministic
    function of them, enough to check finiteness and invariances)."""
    value = spec.func(inputs, labels)
    if spec.relative_to_set:
        assert set(value) == {"seli", "ncc", "vc"}
        return float(sum(value.values()))
    return value


@pytest.fixture(scope="module")
def separated():
    return gaussian_classes()


# ---------------------------------------------------------------------- TMI


def _reference_inputs():
    i, j = np.arange(30)[:, None], np.arange(6)[None, :]
    x2 = ((i * (j + 3)) % 11) * 0.5
    i, j = np.arange(21)[:, None], np.arange(5)[None, :]
    x3 = ((7 * i + 13 * j) % 17) * 0.75 + j
    y3 = np.array([0] * 10 + [1] + [2] * 2 + [3] * 8)
    return [
        (np.zeros((10, 4)), np.zeros(10, dtype=int), 4.101556976208036),
        (x2, np.arange(30) % 3, 3.8050010219914316),
        (x3, y3, 4.15903473102297),
        (x3 * 0.1, y3, 1.3399331100465834),
    ]


@pytest.mark.parametrize("case", range(4), ids=["identical", "modular", "uneven", "floor"])
def test_tmi_reference_values(case):
    x, y, expected = _reference_inputs()[case]
    assert metrics.tmi(x, y, k=3, min_dist=1.0) == pytest.approx(expected, rel=1e-9, abs=0)
    assert metrics.tmi(x, y) == pytest.approx(expected, rel=1e-9, abs=0)  # defaults


def _naive_tmi(x, y, k=3, min_dist=1.0):
    """Direct transcription of docs/science.md section 2, O(n^2) Python loops."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    _, y = np.unique(y, return_inverse=True)
    terms = []
    for c in np.unique(y):
        xc = x[y == c]
        nc = len(xc)
        if nc <= 1:
            terms.append(0.0)
            continue
        if nc <= k:
            continue
        eps = []
        for a in range(nc):
            dist = sorted(np.max(np.abs(xc[a] - xc[b])) for b in range(nc) if b != a)
            eps.append(max(dist[k - 1], min_dist))
        h = digamma(nc) - digamma(k) + d / nc * np.sum(np.log(2 * np.array(eps)))
        terms.append(nc / n * h)
    return float(np.mean(terms))


@pytest.mark.parametrize("d", [3, 40])  # KD-tree path and brute-force path
def test_tmi_matches_naive_estimator_with_chunking(monkeypatch, d):
    rng = np.random.default_rng(d)
    sizes = [25, 1, 2, 3, 4, 17]  # singleton counts, sizes 2..k dropped
    y = np.repeat(np.arange(len(sizes)) * 10 + 5, sizes)  # gapped ids
    x = rng.standard_normal((y.size, d)) * 3.0
    x[1] = x[0]  # a duplicate pair within class 5
    expected = _naive_tmi(x, y, k=3, min_dist=0.5)
    assert metrics.tmi(x, y, k=3, min_dist=0.5) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(backends, "BLOCK_ENTRIES", 7)  # blocks of one row
    monkeypatch.setattr(backends, "KDTREE_MAX_DIM", 0)  # force brute force
    assert metrics.tmi(x, y, k=3, min_dist=0.5) == pytest.approx(expected, rel=1e-12)


def test_tmi_measures_intra_class_variance(separated):
    """TMI is higher with more within-class spread (the paper's premise): it is *not* a
    class-separability score, so shuffling the labels, which mixes the clusters inside
    every class, raises it. This is why TMI is not in the separated-vs-shuffled test."""
    X, y = separated
    rng = np.random.default_rng(1)
    assert metrics.tmi(X * 3.0, y) > metrics.tmi(X, y)
    assert metrics.tmi(X, rng.permutation(y)) > metrics.tmi(X, y)
    # Below the floor min_dist every distance is clamped: no dependence on the scale.
    tiny = X * 1e-6
    assert metrics.tmi(tiny, y) == pytest.approx(metrics.tmi(tiny * 0.5, y), rel=1e-12)


def test_tmi_undefined_cases():
    x = np.arange(12, dtype=float).reshape(6, 2)
    with pytest.raises(ValueError, match="k-th neighbour"):
        metrics.tmi(x, [0, 0, 1, 1, 2, 2], k=3)  # every class has 2..k samples
    dup = np.zeros((5, 2))
    with pytest.raises(ValueError, match="min_dist"):
        metrics.tmi(dup, np.zeros(5), min_dist=0.0)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            metrics.tmi(x, np.zeros(6), k=bad_k)
    with pytest.raises(ValueError, match="min_dist"):
        metrics.tmi(x, np.zeros(6), min_dist=-1.0)


# ------------------------------------------------ direction on synthetic data


# TMI and its rescaled forms reward intra-class spread, which shuffled labels also raise.
@pytest.mark.parametrize("spec", [s for s in PER_CHECKPOINT if not s.name.startswith("tmi")],
                         ids=lambda s: s.name)
def test_separated_classes_score_better_than_shuffled_labels(spec, separated):
    X, y = separated
    shuffled = np.random.default_rng(123).permutation(y)
    if spec.needs == "source_probs":
        good = spec.func(source_probs(y, informative=True), y)
        bad = spec.func(source_probs(y, informative=False), y)
    else:
        good = spec.func(X, y)
        bad = spec.func(X, shuffled)
    assert isinstance(good, float) and isinstance(bad, float)
    assert np.isfinite(good) and np.isfinite(bad)
    if spec.higher_is_better:
        assert good > bad, (spec.name, good, bad)
    else:
        assert good < bad, (spec.name, good, bad)


# --------------------------------------------------------- label invariance


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_label_values_do_not_matter(spec, separated):
    X, y = separated
    inputs = inputs_for(spec, X, y)
    reference = value_of(spec, inputs, y)
    gapped = np.array([3, 7, 100, 2500])[y]
    strings = np.array(["ant", "bee", "cat", "dog"])[y]
    as_list = [str(v) for v in strings]
    for relabelled in (gapped, strings, as_list, gapped.astype(float)):
        assert value_of(spec, inputs, relabelled) == pytest.approx(reference, rel=1e-9,
                                                                   abs=1e-12)


# ------------------------------------------------------------ float32/64


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_float32_and_float64_inputs_agree(spec, separated):
    X, y = separated
    inputs = inputs_for(spec, X, y)
    single = inputs.astype(np.float32)
    # Same values in both precisions: identical computation.
    assert value_of(spec, single, y) == pytest.approx(
        value_of(spec, single.astype(np.float64), y), rel=1e-9, abs=1e-12)
    # float32 rounding of float64 data changes the score only slightly.
    assert value_of(spec, single, y) == pytest.approx(value_of(spec, inputs, y), rel=1e-3,
                                                      abs=1e-6)


# ---------------------------------------------------------- degenerate input


def _degenerate_case(spec, case):
    """(inputs, labels, error pattern or None). None: the metric must return a finite float;
    a pattern: it may return a finite float or raise ValueError matching the pattern."""
    rng = np.random.default_rng(7)
    y = np.arange(40) % 4
    probs = spec.needs == "source_probs"
    base = source_probs(y, True, seed=3) if probs else gaussian_classes(3, n=40, d=6)[0]
    if case == "single_class":
        return base, np.zeros(40, dtype=int), "at least 2 classes"
    if case == "singleton_class":
        y1 = y.copy()
        y1[0] = 9
        return base, y1, "fewer than 2 samples"
    if case == "duplicate_rows":
        dup = base.copy()
        dup[1::2] = dup[0::2]
        return dup, y, None
    if case == "constant_features":
        const = np.tile(base[:1], (40, 1))
        return const, y, "zero variance"
    if case == "zero_variance_columns":
        cols = base.copy()
        if probs:
            cols[:, :3] = 0.0
            cols /= cols.sum(axis=1, keepdims=True)
        else:
            cols[:, :3] = 5.0
        return cols, y, None
    if case in ("huge_scale", "tiny_scale"):
        factor = 1e150 if case == "huge_scale" else 1e-150
        return (base if probs else base * factor), y, None
    if case == "more_dims_than_samples":
        yy = np.arange(12) % 3
        if probs:
            return source_probs(yy, True, seed=4, n_source=50), yy, None
        return rng.standard_normal((12, 50)) + 3.0 * yy[:, None], yy, None
    raise AssertionError(case)


SOFT_CASES = ["single_class", "singleton_class", "duplicate_rows", "constant_features",
              "zero_variance_columns", "more_dims_than_samples", "huge_scale", "tiny_scale"]


@pytest.mark.parametrize("case", SOFT_CASES)
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_degenerate_input_is_finite_or_explained(spec, case):
    inputs, labels, allowed = _degenerate_case(spec, case)
    # No overflow, invalid operation or division by zero on the way (underflow to 0 is fine).
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        _run_degenerate(spec, case, inputs, labels, allowed)


def _run_degenerate(spec, case, inputs, labels, allowed):
    try:
        value = value_of(spec, inputs, labels)
    except ValueError as exc:
        assert allowed is not None, f"{spec.name} raised on {case}: {exc}"
        assert re.search(allowed, str(exc)), f"{spec.name} on {case}: unexpected message {exc}"
        return
    assert isinstance(value, float), type(value)
    assert np.isfinite(value), f"{spec.name} returned {value} on {case}"


def test_single_class_is_only_accepted_by_tmi_and_its_rescaled_forms():
    X, _ = gaussian_classes(n=40)
    y = np.zeros(40)
    for spec in ALL_SPECS:
        if spec.name.startswith("tmi"):
            assert np.isfinite(spec.func(X, y)), spec.name
        else:
            with pytest.raises(ValueError, match="at least 2 classes"):
                spec.func(inputs_for(spec, X, np.arange(40) % 4), y)


HARD_CASES = {
    "mismatched_lengths": "length mismatch",
    "empty": "empty input",
    "empty_rows": "empty input",
    "not_2d": "2-D",
    "three_d": "2-D",
    "nan": "NaN or inf",
    "inf": "NaN or inf",
    "labels_2d": "labels must be a 1-D",
    "nan_labels": "labels contain NaN",
}


@pytest.mark.parametrize("case", sorted(HARD_CASES))
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_malformed_input_raises(spec, case):
    y = np.arange(40) % 4
    base = inputs_for(spec, gaussian_classes(5, n=40, d=6)[0], y)
    labels = y
    if case == "mismatched_lengths":
        labels = y[:-1]
    elif case == "empty":
        base, labels = np.empty((0, 6)), np.empty(0)
    elif case == "empty_rows":
        base, labels = [], []
    elif case == "not_2d":
        base = base[:, 0]
    elif case == "three_d":
        base = base[:, :, None]
    elif case == "nan":
        base = base.copy()
        base[3, 2] = np.nan
    elif case == "inf":
        base = base.copy()
        base[3, 2] = np.inf
    elif case == "labels_2d":
        labels = np.stack([y, y], axis=1)
    elif case == "nan_labels":
        labels = y.astype(float)
        labels[0] = np.nan
    with pytest.raises(ValueError, match=HARD_CASES[case]):
        spec.func(base, labels)


@pytest.mark.parametrize("spec", SOURCE_SPECS, ids=lambda s: s.name)
def test_source_probs_must_be_probabilities(spec):
    y = np.arange(40) % 4
    probs = source_probs(y, True)
    with pytest.raises(ValueError, match="sum to 1"):
        spec.func(probs * 2.0, y)
    logits = np.log(probs)
    with pytest.raises(ValueError, match="negative"):
        spec.func(logits, y)
    # float32 softmax rounding is tolerated
    assert np.isfinite(spec.func(probs.astype(np.float32), y))


# ------------------------------------------------------ metric-specific checks


def _max_log_evidence(F, y01):
    """Brute-force maximum over (alpha, beta) of the LogME evidence, explicit matrices."""
    n, d = F.shape
    FtF, Fty = F.T @ F, F.T @ y01

    def negative(params):
        alpha, beta = np.exp(params)
        A = alpha * np.eye(d) + beta * FtF
        m = beta * np.linalg.solve(A, Fty)
        evidence = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * np.sum((F @ m - y01) ** 2) - alpha / 2 * m @ m
                    - 0.5 * np.linalg.slogdet(A)[1])
        return -evidence

    best = min((minimize(negative, x0, method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
                for x0 in ([0.0, 0.0], [-3.0, 2.0], [3.0, -1.0])), key=lambda r: r.fun)
    return -best.fun / n


@pytest.mark.parametrize("n,d", [(40, 5), (12, 20)])  # F^T F path and F F^T path
def test_logme_equals_maximised_evidence(n, d):
    rng = np.random.default_rng(n + d)
    y = np.arange(n) % 3
    F = rng.standard_normal((n, d)) + y[:, None] * 0.7
    expected = np.mean([_max_log_evidence(F, (y == c).astype(float)) for c in range(3)])
    assert metrics.logme(F, y) == pytest.approx(expected, rel=1e-6)


def test_leep_and_nce_known_values():
    y = np.array([0, 0, 1, 1, 2, 2])
    one_hot = np.eye(3)[y]
    assert metrics.leep(one_hot, y) == pytest.approx(0.0, abs=1e-12)
    assert metrics.nce(one_hot, y) == pytest.approx(0.0, abs=1e-12)
    # Source argmax z = [0, 0, 0, 1, 1, 1]: P(y | z=0) = (2/3, 1/3), P(y | z=1) = (1/3, 2/3).
    z = np.array([0, 0, 0, 1, 1, 1])
    probs = np.eye(2)[z] * 0.9 + 0.05
    expected = 2 * (2 / 6 * np.log(2 / 3) + 1 / 6 * np.log(1 / 3))
    assert metrics.nce(probs, y) == pytest.approx(expected, rel=1e-12)
    # LEEP by hand for a hard (one-hot) head equals the same conditional entropy.
    assert metrics.leep(np.eye(2)[z], y) == pytest.approx(expected, rel=1e-12)
    uniform = np.full((6, 4), 0.25)
    assert metrics.leep(uniform, y) == pytest.approx(np.log(1 / 3), rel=1e-12)


def test_hscore_bounds(separated):
    X, y = separated
    for func in (metrics.hscore, metrics.shrinkage_hscore):
        value = func(X, y)
        assert 0.0 <= value <= C - 1 + 1e-9
        assert value > 0.9 * (C - 1)  # well separated: close to the bound C - 1
    assert metrics.shrinkage_hscore(X, y) < metrics.hscore(X, y)
    assert metrics.hscore(np.ones((20, 3)), np.arange(20) % 2) == 0.0


def test_transrate_matches_logdet_definition(separated):
    X, y = separated
    eps = 1e-2

    def rate(Z):
        n, d = Z.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + Z.T @ Z / (n * eps))[1]

    Z = X - X.mean(axis=0)
    expected = rate(Z) - np.mean([rate(Z[y == c]) for c in range(C)])
    assert metrics.transrate(X, y, eps=eps) == pytest.approx(expected, rel=1e-10)


def test_gbc_limits():
    rng = np.random.default_rng(0)
    same = rng.standard_normal((4000, 3))
    y = np.arange(4000) % 2
    assert metrics.gbc(same, y) == pytest.approx(-2.0, abs=0.02)  # BC ~ 1 for each ordered pair
    far = same + 100.0 * y[:, None]
    assert metrics.gbc(far, y) == pytest.approx(0.0, abs=1e-12)
    assert metrics.gbc(np.ones((10, 3)), np.arange(10) % 3) == -6.0


def test_knn_accuracy_excludes_self():
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    assert metrics.knn_accuracy(x, ["a", "a", "b", "b"], k=1) == 1.0
    assert metrics.knn_accuracy(x, ["a", "b", "a", "b"], k=1) == 0.0
    # exact duplicates: the other copy is a neighbour, the sample itself is not
    dup = np.array([[0.0], [0.0], [5.0], [5.0]])
    assert metrics.knn_accuracy(dup, [0, 1, 0, 1], k=1) == 0.0
    assert metrics.knn_accuracy(dup, [0, 0, 1, 1], k=1) == 1.0
    with pytest.raises(ValueError, match="at least 6 samples"):
        metrics.knn_accuracy(x, [0, 0, 1, 1], k=5)


def test_probe_accuracy_folds_and_errors(separated):
    X, y = separated
    assert 0.9 <= metrics.probe_accuracy(X, y) <= 1.0
    small = np.concatenate([X[:8], X[8:10]])
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 2, 2])  # smallest class 2 -> 2 folds
    assert 0.0 <= metrics.probe_accuracy(small, labels) <= 1.0
    with pytest.raises(ValueError, match="fewer than 2 samples"):
        metrics.probe_accuracy(X[:9], np.array([0, 1] * 4 + [2]))


def test_score_ranges(separated):
    X, y = separated
    shuffled = np.random.default_rng(5).permutation(y)
    for labels in (y, shuffled):
        assert -100.0 <= metrics.parc(X, labels) <= 100.0
        assert 0.0 <= metrics.sfda(X, labels) <= 1.0
        parts = ncti_components(X, labels)
        assert np.isfinite(parts["vc"]) and parts["seli"] > 0.0
        assert 0.0 <= parts["ncc"] <= 1.0
        assert metrics.nleep(X, labels) <= 1e-12
        assert -C * (C - 1) <= metrics.gbc(X, labels) <= 0.0


def _sfda_as_released(X, y):
    """A direct transcription of the released algorithm's steps (generalised eigenvectors
    of (S_B, S_W'), coef = M E E^T), to check the shortcut E E^T = S_W'^-1 and ConfMix."""
    import scipy.linalg
    from scipy.special import softmax

    def fit(X, shrinkage=None):
        classes = np.unique(y)
        priors = np.bincount(y) / y.size
        means = np.stack([X[y == c].mean(axis=0) for c in classes])
        Sw = sum(p * np.cov(X[y == c].T, bias=True) for p, c in zip(priors, classes))
        if shrinkage is None:
            x = Sw.sum(axis=1)
            for _ in range(3):
                v = Sw @ x / np.linalg.norm(Sw @ x)
                x = Sw @ v / np.linalg.norm(Sw @ v)
            shrinkage = max(np.exp(-5 * (x @ Sw @ v)), 1e-10)
        d = X.shape[1]

        def shrunk(S):
            return (1 - shrinkage) * S + shrinkage * np.trace(S) / d * np.eye(d)

        Sw_s = shrunk(Sw)
        St = shrunk(np.cov(X.T, bias=True))
        evals, evecs = scipy.linalg.eigh(St - Sw_s, Sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        return softmax(X @ coef.T + intercept, axis=1), means, shrinkage

    prob, means, shrinkage = fit(X.copy())
    prob = softmax(prob, axis=1)
    others = (means.sum(axis=0) - means) / (means.shape[0] - 1)
    p = prob[np.arange(y.size), y][:, None]
    mixed = p * X + (1 - p) * others[y]
    prob, _, _ = fit(mixed, shrinkage)
    return prob[np.arange(y.size), y].mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_sfda_equals_the_released_algorithm_step_by_step(seed):
    rng = np.random.default_rng(seed)
    y = np.arange(90) % 3
    X = rng.standard_normal((90, 6)) * 0.3 + 0.8 * y[:, None] + 5.0  # overlapping classes
    assert metrics.sfda(X, y) == pytest.approx(_sfda_as_released(X, y), rel=1e-9)


def test_ncti_ranks_separated_features_above_noisy_ones(separated):
    X, y = separated
    noisy = X + np.random.default_rng(1).standard_normal(X.shape) * 6.0
    good, bad = metrics.ncti_set([X, noisy], y)
    assert good == 2.0 and bad == -1.0  # best on every component, worst on every one
    assert metrics.ncti_set([X], y) == [0.0]  # a set of one: nothing to compare with


def test_parc_subsamples_large_inputs():
    X, y = gaussian_classes(n=2600, d=8)
    value = metrics.parc(X, y, max_samples=500)
    assert np.isfinite(value)
    assert value == metrics.parc(X, y, max_samples=500)  # fixed seed
    # A subsample really is used: another seed, or all rows, give another value.
    assert value != metrics.parc(X, y, max_samples=500, random_state=1)
    assert value != pytest.approx(metrics.parc(X, y, max_samples=2600), abs=1e-3)


@pytest.mark.parametrize("scale", [1e-100, 1e3, 1e100])
def test_scale_invariance_where_expected(separated, scale):
    """Metrics built on evidence maximisation, PCA, ranks or standardised probes do not
    depend on the feature scale, even at extreme scales (no overflow). (GBC, SFDA and NCTI
    do, as released: an absolute variance floor, a shrinkage from exp(-variance).)"""
    X, y = separated
    for func in (metrics.logme, metrics.hscore, metrics.shrinkage_hscore, metrics.parc,
                 metrics.nleep, metrics.knn_accuracy, metrics.probe_accuracy):
        assert func(X * scale, y) == pytest.approx(func(X, y), rel=1e-6, abs=1e-9), func
    # TransRate: R(s Z, s^2 eps) = R(Z, eps) exactly.
    assert metrics.transrate(X * scale, y, eps=1e-4 * scale**2) == pytest.approx(
        metrics.transrate(X, y, eps=1e-4), rel=1e-9)


# ------------------------------------------------------------------ registry


def test_registry_order_and_fields():
    names = list(REGISTRY)
    assert names[0] == "tmi"
    assert names[-2:] == ["knn_accuracy", "probe_accuracy"]
    kinds = [REGISTRY[n].kind for n in names]
    assert kinds == sorted(kinds, key=lambda k: k == "baseline")  # baselines last
    assert {s.name for s in SOURCE_SPECS} == {"leep", "nce"}
    expected = {"tmi", "logme", "leep", "nleep", "nce", "hscore", "shrinkage_hscore", "gbc",
                "sfda", "transrate", "parc", "ncti", "knn_accuracy", "probe_accuracy",
                "tmi_standardized", "tmi_relative_floor", "tmi_per_dimension",
                "knn_mutual_information"}
    assert set(names) == expected
    assert {n for n in names if REGISTRY[n].variant_of} == {
        "tmi_standardized", "tmi_relative_floor", "tmi_per_dimension", "knn_mutual_information"}
    for name, spec in REGISTRY.items():
        if spec.relative_to_set:
            assert spec.func.__name__ == f"{name}_components" and callable(spec.combine)
        else:
            assert spec.name == name == spec.func.__name__ and spec.combine is None
        assert getattr(metrics, spec.func.__name__) is spec.func
        assert spec.needs in ("features", "source_probs")
        assert spec.kind in ("metric", "baseline")
        assert isinstance(spec.higher_is_better, bool)
        assert spec.label and spec.reference
        assert re.search(r"(19|20)\d\d", spec.func.__doc__), name  # cites a year
        assert "better" in spec.func.__doc__, name  # states the direction


def test_applicable_metrics():
    with_head = applicable_metrics(has_source_head=True)
    without = applicable_metrics(has_source_head=False)
    assert [s.name for s in with_head] == list(REGISTRY)
    assert [s.name for s in without] == [n for n in REGISTRY if n not in ("leep", "nce")]
    chosen = applicable_metrics(False, names=["nce", "logme", "tmi"])
    assert [s.name for s in chosen] == ["tmi", "logme"]  # registry order, no source metric
    assert [s.name for s in applicable_metrics(True, ["nce"])] == ["nce"]
    with pytest.raises(ValueError, match=r"bogus.*nope|nope.*bogus"):
        applicable_metrics(True, names=["tmi", "bogus", "nope"])


def test_get_metric():
    assert get_metric("logme") is REGISTRY["logme"]
    with pytest.raises(ValueError, match="unknown metric 'bogus'.*tmi"):
        get_metric("bogus")
