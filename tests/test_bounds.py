"""Error certificates: exact residuals, the randomized estimator and its failure rate, Chernoff τ, a-priori factors,
rank_for_tolerance and the tol path of nystrom_init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import (
    eckart_young,
    eckart_young_rank,
    gen,
    np64,
    power_law,
    problems,
    rel_fro,
    spectrum_matrix,
    t64,
    tail_errors,
)
from nlora_linalg import (
    ERROR_ESTIMATORS,
    METHODS,
    ExactError,
    ExactSVD,
    GeneralizedNystrom,
    GramNystrom,
    RandomizedError,
    RandomizedSVD,
    chernoff_tau,
    nystrom_init,
    rank_for_tolerance,
    reference_errors,
)
from nlora_linalg.linalg.kernels import SVDFactors

pytestmark = pytest.mark.usefixtures("single_thread")

P_REJECT = 1e-4


def _residual(W: np.ndarray, f) -> np.ndarray:
    return W - np64(f.B) @ np64(f.N) @ np64(f.A)


# ---------------------------------------------------------------- exact check


@pytest.mark.parametrize("method", ["svd", "gram", "cross"])
@pytest.mark.parametrize("r", [1, 5])
def test_exact_error_equals_numpy_residual(method, r):
    """ExactError: error = ‖W − BNA‖_F/‖W‖_F (1e-12), spectral_bound = ‖W − BNA‖_F >= ‖W − BNA‖₂, delta = 0."""
    W = spectrum_matrix(30, 22, power_law(22, 0.7), r)
    f = nystrom_init(t64(W), rank=r, method=method, error="exact", generator=gen(0))
    E = _residual(W, f)
    assert f.error.item() == pytest.approx(np.linalg.norm(E) / np.linalg.norm(W), rel=1e-12)
    assert f.spectral_bound.item() == pytest.approx(np.linalg.norm(E), rel=1e-12)
    assert f.spectral_bound.item() >= np.linalg.norm(E, 2)
    assert f.delta == 0.0 and torch.equal(f.bound, f.error)


def test_exact_error_check_on_given_factors():
    """ExactError().check on arbitrary factors (batched) equals numpy's relative residual per matrix."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 12, 9))
    U, s, Vh = rng.standard_normal((3, 12, 2)), rng.random((3, 2)), rng.standard_normal((3, 2, 9))
    check = ExactError().check(t64(W), SVDFactors(t64(U), t64(s), t64(Vh)), None)
    for i in range(3):
        E = W[i] - (U[i] * s[i]) @ Vh[i]
        assert check.error[i].item() == pytest.approx(np.linalg.norm(E) / np.linalg.norm(W[i]), rel=1e-12)
    assert check.error.dtype == torch.float64 and ERROR_ESTIMATORS["exact"].kind == "exact"


# ---------------------------------------------------------------- Chernoff τ


@pytest.mark.parametrize("s", [1, 2, 3, 8, 16, 32, 64, 256])
@pytest.mark.parametrize("delta", [1e-9, 1e-3, 0.05, 0.5, 0.99])
def test_chernoff_tau_solves_its_equation(s, delta):
    """τ = chernoff_tau(s, δ) lies in (0, 1) and satisfies (τ e^{1−τ})^{s/2} = δ to 1e-12 (relative)."""
    tau = chernoff_tau(s, delta)
    assert 0 < tau < 1
    lhs = math.exp((s / 2) * (math.log(tau) + 1 - tau))
    assert lhs == pytest.approx(delta, rel=1e-12)


@pytest.mark.parametrize("delta", [1e-6, 1e-3, 0.05])
def test_chernoff_tau_increases_with_probes(delta):
    """More probes give a tighter certificate: τ(s, δ) is strictly increasing in s."""
    taus = [chernoff_tau(s, delta) for s in range(1, 200)]
    assert all(b > a for a, b in zip(taus, taus[1:]))


def test_chernoff_tau_increases_with_delta():
    """A larger failure probability gives a tighter certificate: τ(s, δ) is increasing in δ."""
    taus = [chernoff_tau(16, d) for d in np.logspace(-12, -0.01, 60)]
    assert all(b > a for a, b in zip(taus, taus[1:]))


# ---------------------------------------------------------------- randomized estimator

TRIALS = 200


def _binom_allowance(trials: int, delta: float) -> int:
    """Largest failure count a Binomial(trials, delta) exceeds with probability < 1e-4."""
    return int(scipy.stats.binom.ppf(1 - P_REJECT, trials, delta))


def _fixed_problem(kind: str) -> tuple[np.ndarray, int]:
    """W and rank r so that the (deterministic) svd residual is rank one or flat."""
    if kind == "rank_one_residual":
        return spectrum_matrix(30, 20, np.array([4.0, 3.0, 2.0, 1.0]), 0), 3
    return spectrum_matrix(30, 20, np.r_[[4.0, 3.0], np.full(12, 0.5)], 1), 2


@pytest.mark.parametrize("kind", ["rank_one_residual", "flat_residual"])
@pytest.mark.parametrize("probes", [1, 2, 8])
def test_randomized_bounds_fail_at_most_delta_fraction(kind, probes):
    """Over 200 seeds, Frobenius- and spectral-bound violations stay within a Binomial(200, δ = 0.05) allowance."""
    delta = 0.05
    W, r = _fixed_problem(kind)
    estimator = RandomizedError(probes=probes, delta=delta)
    fro_fail = spec_fail = 0
    exact = exact2 = None
    for seed in range(TRIALS):
        f = nystrom_init(t64(W), rank=r, method="svd", error=estimator, generator=gen(seed))
        if exact is None:
            E = _residual(W, f)
            exact, exact2 = np.linalg.norm(E) / np.linalg.norm(W), np.linalg.norm(E, 2)
        assert f.delta == delta and f.error_kind == "estimate"
        assert f.bound.item() >= f.error.item()
        fro_fail += f.bound.item() < exact
        spec_fail += f.spectral_bound.item() < exact2
    allowed = _binom_allowance(TRIALS, delta)
    assert fro_fail <= allowed, (fro_fail, allowed)
    assert spec_fail <= allowed, (spec_fail, allowed)


def test_default_estimator_bound_holds_over_seeds():
    """The default estimator (s = 32, δ = 1e-3) bound is violated no more often than Binomial(δ) allows."""
    W = spectrum_matrix(40, 30, power_law(30, 0.5), 3)
    fails = 0
    for seed in range(100):
        f = nystrom_init(t64(W), rank=6, method="gram", error="estimate", generator=gen(seed))
        fails += f.bound.item() < rel_fro(W, np64(f.B) @ np64(f.N) @ np64(f.A))
    assert fails <= _binom_allowance(100, 1e-3)


@pytest.mark.parametrize("probes", [1, 4])
def test_randomized_estimate_is_unbiased(probes):
    """The mean of ê_F² = ‖EΩ‖_F²/s over 400 seeds equals ‖E‖_F² within 5 standard errors."""
    W, r = _fixed_problem("flat_residual")
    w2 = np.linalg.norm(W) ** 2
    est2 = []
    for seed in range(400):
        estimator = RandomizedError(probes=probes, delta=0.1)
        f = nystrom_init(t64(W), rank=r, method="svd", error=estimator, generator=gen(seed))
        est2.append(f.error.item() ** 2 * w2)
    E2 = np.linalg.norm(_residual(W, f)) ** 2
    est2 = np.array(est2)
    se = est2.std(ddof=1) / np.sqrt(len(est2))
    assert abs(est2.mean() - E2) <= 5 * se


# ---------------------------------------------------------------- a-priori factors


def test_apriori_factor_of_svd_is_one():
    """The exact SVD's a-priori factor is 1 (Eckart–Young), also as recorded in the result."""
    assert ExactSVD().apriori_factor(3, 20, 10) == 1.0
    W = t64(spectrum_matrix(12, 10, power_law(10, 1.0), 0))
    assert nystrom_init(W, rank=3, method="svd").apriori_factor == 1.0


@pytest.mark.parametrize(
    "config, has_factor",
    [
        (GramNystrom(power_iters=0), True),
        (GeneralizedNystrom(power_iters=0), True),
        (RandomizedSVD(power_iters=0), True),
        (GramNystrom(), False),
        (GeneralizedNystrom(), False),
        (RandomizedSVD(), False),
        (GramNystrom(sketch="adaptive", power_iters=0), False),
        (GramNystrom(power_iters=0, oversample=1), False),
    ],
    ids=str,
)
def test_apriori_factor_is_reported_exactly_where_a_theorem_applies(config, has_factor):
    """Gaussian sketches with q = 0 (and oversampling >= 2) report a factor >= 1; q >= 1 or landmark sketches do not."""
    c = config.apriori_factor(4, 40, 30)
    assert (c is not None) == has_factor
    if has_factor:
        assert math.isfinite(c) and c >= 1.0
    W = t64(spectrum_matrix(40, 30, power_law(30, 0.5), 0))
    assert nystrom_init(W, rank=4, method=config, generator=gen(0)).apriori_factor == c


@pytest.mark.parametrize(
    "config",
    [
        GramNystrom(power_iters=0),
        GeneralizedNystrom(power_iters=0),
        RandomizedSVD(power_iters=0, oversample=3),
        ExactSVD(),
    ],
    ids=lambda c: type(c).__name__,
)
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_apriori_expectation_bound_holds_on_average(config, alpha):
    """Mean over 30 seeds of the relative error <= apriori_factor · optimal (flat and slowly decaying spectra)."""
    r = 5
    W = spectrum_matrix(40, 30, power_law(30, alpha), 2)
    errors = [nystrom_init(t64(W), rank=r, method=config, generator=gen(s)).error.item() for s in range(30)]
    c = config.apriori_factor(r, 40, 30)
    assert np.mean(errors) <= c * eckart_young(W, r) * (1 + 1e-12)


# Non-regression (issue #2): apriori_factor returned inf when k > r + 1 failed.
@pytest.mark.parametrize("rank", [1, 30])
def test_generalized_apriori_factor_is_none_or_finite(rank):
    """apriori_factor is either None (no theorem) or a finite multiplier."""
    c = GeneralizedNystrom(power_iters=0).apriori_factor(rank, 40, 30)
    assert c is None or math.isfinite(c)


# ---------------------------------------------------------------- rank_for_tolerance


def _gap_matrix(k: int, seed: int) -> np.ndarray:
    """40×30 W with k singular values in [1, 2] and the rest 1e-4·power law: a clear gap after k."""
    top = np.linspace(2.0, 1.0, k)
    return spectrum_matrix(40, 30, np.r_[top, 1e-4 * power_law(30 - k, 0.5)], seed)


@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_rank_for_tolerance_equals_eckart_young_rank_with_a_gap(k):
    """With a clear gap the returned rank is exactly the Eckart–Young rank for tol (numpy SVD); bound <= tol."""
    W = _gap_matrix(k, k)
    e = tail_errors(W)
    tol = float(np.sqrt(e[k] * e[k - 1]))  # geometric mean of the rank-k and rank-(k−1) errors
    est = rank_for_tolerance(t64(W), tol, generator=gen(0))
    assert est.rank == eckart_young_rank(W, tol) == k
    assert est.bound.item() <= tol and est.sketch_size >= est.rank


@given(p=problems(), tol=st.floats(0.01, 0.95))
def test_rank_for_tolerance_is_a_certified_upper_estimate(p, tol):
    """rank >= Eckart–Young rank, EY(rank) <= bound <= tol (bound is an attained error), shapes (*,)."""
    W = p.W()
    est = rank_for_tolerance(t64(W), tol, generator=gen(p.seed % 1000))
    assert isinstance(est.rank, int) and est.ranks.shape == () and est.bound.dtype == torch.float64
    assert est.rank == int(est.ranks)
    assert eckart_young_rank(W, tol) <= est.rank <= min(p.m, p.n)
    assert est.bound.item() <= tol
    assert est.bound.item() ** 2 >= eckart_young(W, est.rank) ** 2 - 1e-12


# Non-regression (issue #2): rounding-noise QB blocks were not orthogonal to Q; too small a rank with bound 0.
@pytest.mark.parametrize("tol", [3e-6, 1e-7])
def test_rank_for_tolerance_on_geometric_decay(tol):
    """σ_j = 10^(−j/3): the rank is >= the Eckart–Young rank and the bound is >= the Eckart–Young error there."""
    W = spectrum_matrix(40, 30, 10.0 ** (-np.arange(30) / 3), 0)
    est = rank_for_tolerance(t64(W), tol, generator=gen(0))
    assert est.rank >= eckart_young_rank(W, tol)
    assert est.bound.item() >= eckart_young(W, est.rank) * (1 - 1e-6)


def test_rank_for_tolerance_batched_takes_the_max():
    """Batched: ranks per matrix equal separate calls' Eckart–Young ranks under a gap; rank is their max."""
    Ws = np.stack([_gap_matrix(k, k) for k in (2, 5, 3)])
    est = rank_for_tolerance(t64(Ws), 1e-3, generator=gen(0))
    assert est.ranks.tolist() == [eckart_young_rank(W, 1e-3) for W in Ws] == [2, 5, 3]
    assert est.rank == 5 and est.bound.shape == (3,)


# Non-regression (issue #2): nystrom_init(tol=...) returned a rebuilt, uncertified result.
TOL_METHODS = sorted(METHODS)


@pytest.mark.parametrize("method", TOL_METHODS)
@given(p=problems(max_dim=30), tol=st.floats(0.02, 0.9))
def test_nystrom_init_tol_meets_tolerance(method, p, tol):
    """nystrom_init(W, tol=t) returns bound <= t and a rank >= the Eckart–Young rank for t."""
    W = p.W()
    f = nystrom_init(t64(W), tol=tol, method=method, generator=gen(p.seed % 1000))
    assert f.rank >= eckart_young_rank(W, tol)
    assert f.bound.item() <= tol or f.rank == min(p.m, p.n)
    assert f.B.shape[-1] == f.rank


# Non-regression (issue #2): the certified build is the one returned.
def test_nystrom_init_tol_returns_the_certified_build():
    """With a randomized landmark method the returned result still has bound <= tol."""
    W = spectrum_matrix(40, 30, power_law(30, 0.5), 17)
    f = nystrom_init(t64(W), tol=0.3, method="cross", generator=gen(17))
    assert f.bound.item() <= 0.3


def test_reference_errors_accepts_a_precomputed_svd():
    """reference_errors(..., reference=svd(W)) equals the recomputed comparison on a batch (no SVD repeated)."""
    W = torch.stack([t64(spectrum_matrix(30, 20, power_law(20, a), 3)) for a in (0.3, 1.0)])
    f = nystrom_init(W, 4, generator=gen(0))
    a = reference_errors(W, f.B, f.N, f.A)
    b = reference_errors(W, f.B, f.N, f.A, reference=torch.linalg.svd(W, full_matrices=False))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
