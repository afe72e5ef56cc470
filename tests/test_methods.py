"""Nyström constructions through ``nystrom_init``: numpy references, exact recovery, properties, psd_nystrom,
paper_slices. Every method in METHODS and every landmark rule (through the configs) is exercised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import (
    DTYPES,
    eckart_young,
    gen,
    low_rank,
    np64,
    power_law,
    problems,
    projector,
    rel_fro,
    spectrum_matrix,
    t64,
)
from nlora_linalg import (
    BALANCES,
    LANDMARK_RULES,
    METHODS,
    CrossNystrom,
    GeneralizedNystrom,
    GramNystrom,
    Landmarks,
    LowRankFactors,
    OptimalCoreNystrom,
    ParameterError,
    RandomizedSVD,
    nystrom_init,
    paper_slices,
    psd_nystrom,
    reference_errors,
    register_landmark_rule,
)

pytestmark = pytest.mark.usefixtures("single_thread")

METHOD_NAMES = tuple(sorted(METHODS))
RULES = tuple(sorted(LANDMARK_RULES))  # built-in rules, captured before any test registers its own


def _all_configs() -> list:
    """Every registered method name, every landmark rule through Cross/OptimalCore/Gram, and the q = 0 variants."""
    out = [pytest.param(name, id=name) for name in METHOD_NAMES]
    for rule in RULES:
        out += [
            pytest.param(CrossNystrom(landmarks=rule), id=f"cross-{rule}"),
            pytest.param(CrossNystrom(landmarks=rule, row_ratio=2.0), id=f"cross_lstsq-{rule}"),
            pytest.param(OptimalCoreNystrom(landmarks=rule), id=f"optimal_core-{rule}"),
            pytest.param(GramNystrom(sketch=rule), id=f"gram-{rule}"),
        ]
    out += [
        pytest.param(GramNystrom(power_iters=0), id="gram-q0"),
        pytest.param(GeneralizedNystrom(power_iters=0), id="generalized-q0"),
        pytest.param(RandomizedSVD(power_iters=0, oversample=0), id="rsvd-q0-p0"),
    ]
    return out


ALL_CONFIGS = _all_configs()


def _dense(f: LowRankFactors) -> np.ndarray:
    """B N A evaluated in float64 numpy from the returned factors."""
    return np64(f.B) @ np64(f.N) @ np64(f.A)


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("m, n, r", [(30, 20, 1), (20, 30, 7), (25, 25, 25)])
def test_svd_matches_numpy(m, n, r):
    """``svd``: σ equal numpy's top r, the error is Eckart–Young's sqrt(Σ_{j>r} σ_j²)/‖W‖, subspaces agree."""
    W = spectrum_matrix(m, n, power_law(min(m, n), 0.8), m + n + r)
    f = nystrom_init(t64(W), rank=r, method="svd")
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(f.sigma.numpy(), s[:r], rtol=1e-12)
    opt = np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(W)
    assert f.error.item() == pytest.approx(opt, rel=1e-10, abs=1e-14)
    assert rel_fro(W, _dense(f)) == pytest.approx(opt, rel=1e-10, abs=1e-14)
    np.testing.assert_allclose(projector(np64(f.B)), U[:, :r] @ U[:, :r].T, atol=1e-10)
    np.testing.assert_allclose(projector(np64(f.A).T), Vt[:r].T @ Vt[:r], atol=1e-10)


def _numpy_reference_errors(W: np.ndarray, What: np.ndarray, r: int) -> dict:
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    Uh, sh, Vth = np.linalg.svd(What, full_matrices=False)
    opt = np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(W)
    err = rel_fro(W, What)
    return dict(
        optimal=opt,
        error=err,
        ratio=err / opt,
        sigma=np.max(np.abs(sh[:r] - s[:r]) / s[:r]),
        left=np.trace(projector(U[:, :r]) @ projector(Uh[:, :r])) / r,  # ‖U_rᵀÛ‖_F² / r via projectors
        right=np.trace(projector(Vt[:r].T) @ projector(Vth[:r].T)) / r,
    )


@pytest.mark.parametrize("r", [1, 4, 9])
def test_reference_errors_match_numpy_on_arbitrary_factors(r):
    """``reference_errors`` fields equal numpy computations for arbitrary (non-orthonormal) B, N, A."""
    rng = np.random.default_rng(r)
    W = spectrum_matrix(22, 17, power_law(17, 1.0), r)
    B, N, A = rng.standard_normal((22, r)), rng.standard_normal((r, r)), rng.standard_normal((r, 17))
    got = reference_errors(t64(W), t64(B), t64(N), t64(A))
    ref = _numpy_reference_errors(W, B @ N @ A, r)
    for field, value in ref.items():
        assert getattr(got, field).dtype == torch.float64
        assert getattr(got, field).item() == pytest.approx(value, rel=1e-9), field


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_reference_errors_match_numpy_on_method_output(method):
    """``reference_errors`` of each method's factors equals numpy, and its ``error`` equals the method's own."""
    W = spectrum_matrix(30, 24, power_law(24, 1.0), 5)
    f = nystrom_init(t64(W), rank=6, method=method, generator=gen(0))
    got = reference_errors(t64(W), f.B, f.N, f.A)
    ref = _numpy_reference_errors(W, _dense(f), 6)
    for field, value in ref.items():
        assert getattr(got, field).item() == pytest.approx(value, rel=1e-8), field
    assert got.error.item() == pytest.approx(f.error.item(), rel=1e-10)


def test_reference_errors_batched_equals_per_matrix():
    """A batched ``reference_errors`` call returns (*,) fields equal to per-matrix calls."""
    Ws = np.stack([spectrum_matrix(12, 9, power_law(9, 0.5), s) for s in range(4)]).reshape(2, 2, 12, 9)
    f = nystrom_init(t64(Ws), rank=3, method="gram", generator=gen(0))
    got = reference_errors(t64(Ws), f.B, f.N, f.A)
    assert got.error.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            single = reference_errors(t64(Ws[i, j]), f.B[i, j], f.N[i, j], f.A[i, j])
            for a, b in zip(got, single):
                assert a[i, j].item() == pytest.approx(b.item(), rel=1e-10, abs=1e-14)


# ---------------------------------------------------------------- exact recovery


@pytest.mark.parametrize("method", ALL_CONFIGS)
def test_exact_rank_k_is_recovered(method):
    """A generic rank-5 60×45 float64 W is recovered to ~1e-10 by every construction with rank = 5."""
    k = 5
    W = low_rank(60, 45, k, 11)
    f = nystrom_init(t64(W), rank=k, method=method, generator=gen(3))
    assert f.error.item() <= 1e-10
    assert rel_fro(W, _dense(f)) <= 1e-10
    s = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(f.sigma.numpy(), s[:k], rtol=1e-9)


@pytest.mark.parametrize("method", ALL_CONFIGS)
def test_full_rank_reproduces_w(method):
    """rank = min(m, n) reproduces a generic full-rank W."""
    W = spectrum_matrix(24, 17, power_law(17, 0.5), 2)
    f = nystrom_init(t64(W), rank=17, method=method, generator=gen(4))
    assert rel_fro(W, _dense(f)) <= 1e-9
    assert f.error.item() <= 1e-9


# ---------------------------------------------------------------- properties (hypothesis)


@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems())
def test_exact_check_error_equals_bound_and_numpy_residual(method, p):
    """With the exact check, bound == error (delta = 0) and error equals numpy's ‖W − BNA‖_F/‖W‖_F."""
    W = p.W()
    f = nystrom_init(t64(W), rank=p.rank, method=method, generator=gen(p.seed % 1000))
    assert torch.equal(f.bound, f.error) and f.delta == 0.0 and f.error_kind == "exact"
    What = _dense(f)
    scale = 1.0 + np.linalg.norm(What) / np.linalg.norm(W)
    assert f.error.item() == pytest.approx(rel_fro(W, What), abs=1e-10 * scale)
    assert f.spectral_bound.item() >= np.linalg.norm(W - What, 2) * (1 - 1e-10) - 1e-12 * scale


@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems())
def test_error_never_below_eckart_young(method, p):
    """No method beats the Eckart–Young optimum: error >= optimal − 1e-12."""
    W = p.W()
    f = nystrom_init(t64(W), rank=p.rank, method=method, generator=gen(p.seed % 1000))
    assert f.error.item() >= eckart_young(W, p.rank) - 1e-12
    assert rel_fro(W, _dense(f)) >= eckart_young(W, p.rank) - 1e-12


@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems())
def test_factor_shapes_and_provenance(method, p):
    """B (m, r), N (r, r), A (r, n), σ (r,); 1-D int64 landmarks; rank, method and seed recorded."""
    g = gen(p.seed % 1000)
    f = nystrom_init(t64(p.W()), rank=p.rank, method=method, generator=g)
    m, n, r = p.m, p.n, p.rank
    assert f.B.shape == (m, r) and f.N.shape == (r, r) and f.A.shape == (r, n) and f.sigma.shape == (r,)
    assert f.rows.ndim == 1 and f.cols.ndim == 1 and f.rows.dtype == f.cols.dtype == torch.int64
    assert f.effective_rank.shape == () and f.error.shape == () and f.bound.shape == ()
    assert f.rank == r and f.method == method and f.config is METHODS[method] and f.seed == g.initial_seed()
    if len(f.cols):
        assert int(f.cols.min()) >= 0 and int(f.cols.max()) < n and len(set(f.cols.tolist())) == len(f.cols)
    if len(f.rows):
        assert int(f.rows.min()) >= 0 and int(f.rows.max()) < m and len(set(f.rows.tolist())) == len(f.rows)


@pytest.mark.parametrize("balance", sorted(BALANCES))
@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems())
def test_sigma_are_singular_values_of_bna(method, balance, p):
    """f.sigma equals the top-r singular values of B N A (numpy), non-increasing and >= 0, for every balance."""
    f = nystrom_init(t64(p.W()), rank=p.rank, method=method, balance=balance, generator=gen(p.seed % 1000))
    s = np.linalg.svd(_dense(f), compute_uv=False)[: p.rank]
    sig = f.sigma.numpy()
    assert f.sigma.dtype == torch.float64
    np.testing.assert_allclose(sig, s, atol=1e-10 * max(1.0, sig[0]))
    assert np.all(np.diff(sig) <= 1e-12 * max(1.0, sig[0])) and np.all(sig >= 0)


@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems(), balance=st.sampled_from(sorted(BALANCES)))
def test_balances_give_the_same_product(method, p, balance):
    """Every balance gives the same B N A as the ``svd`` balance (same seed) and has its documented structure."""
    W = t64(p.W())
    ref = nystrom_init(W, rank=p.rank, method=method, balance="svd", generator=gen(1))
    f = nystrom_init(W, rank=p.rank, method=method, balance=balance, generator=gen(1))
    What = _dense(ref)
    np.testing.assert_allclose(_dense(f), What, atol=1e-10 * max(1.0, np.abs(What).max()))
    s, r = ref.sigma.numpy(), p.rank
    B, N, A = np64(f.B), np64(f.N), np64(f.A)
    if balance == "svd":
        np.testing.assert_allclose(B.T @ B, np.eye(r), atol=1e-10)
        np.testing.assert_allclose(A @ A.T, np.eye(r), atol=1e-10)
        np.testing.assert_allclose(N, np.diag(s), atol=1e-12 * max(1.0, s[0]))
    elif balance == "sqrt":
        np.testing.assert_array_equal(N, np.eye(r))
        np.testing.assert_allclose(B.T @ B, np.diag(s), atol=1e-10 * max(1.0, s[0]))
    elif balance == "cube_root":
        c = s[0] ** (1 / 3)
        for X in (B, N, A):
            assert np.linalg.norm(X, 2) == pytest.approx(c, rel=1e-9, abs=1e-12)


SINGULAR_CASES = ("zero_row_col", "duplicates", "single_entry", "rank_one")


def _singular(case: str) -> np.ndarray:
    W = np.random.default_rng(0).standard_normal((14, 11))
    if case == "zero_row_col":
        W[[1, 6]] = 0.0
        W[:, [0, 3, 9]] = 0.0
    elif case == "duplicates":
        W[:, [4, 5, 6]] = W[:, [1, 1, 2]]
        W[[7, 8]] = W[[0, 0]]
    elif case == "single_entry":
        W = np.zeros((14, 11))
        W[5, 7] = 2.5
    elif case == "rank_one":
        W = np.outer(W[:, 0], W[0])
    return W


@pytest.mark.parametrize("rank", [1, 3, 11])
@pytest.mark.parametrize("case", SINGULAR_CASES)
@pytest.mark.parametrize("method", ALL_CONFIGS)
def test_singular_inputs_stay_finite(method, case, rank):
    """Zero rows/columns, duplicated rows/columns, a single nonzero entry, rank one: every output is finite."""
    W = _singular(case)
    f = nystrom_init(t64(W), rank=rank, method=method, generator=gen(0))
    for t in (f.B, f.N, f.A, f.sigma, f.error, f.bound, f.spectral_bound):
        assert torch.isfinite(t).all()
    assert f.error.item() >= eckart_young(W, rank) - 1e-12
    assert f.error.item() == pytest.approx(rel_fro(W, _dense(f)), abs=1e-10 * (1 + np.abs(_dense(f)).max()))


# Non-regression (issue #2): an all-zero W gave NaN diagnostics.
@pytest.mark.parametrize("error", ["exact", "estimate"])
@pytest.mark.parametrize("method", ["gram", "svd"])
def test_zero_matrix_gives_finite_diagnostics_or_a_typed_error(method, error):
    """An all-zero W either raises a ParameterError or returns finite error, bound and factors (never NaN)."""
    W = torch.zeros(7, 5, dtype=torch.float64)
    try:
        f = nystrom_init(W, rank=2, method=method, error=error, generator=gen(0))
    except ParameterError:
        return
    for t in (f.B, f.N, f.A, f.sigma, f.error, f.bound, f.spectral_bound):
        assert torch.isfinite(t).all()


# Non-regression (issue #2): an all-zero W gave NaN diagnostics.
def test_reference_errors_of_zero_matrix_are_not_nan():
    """reference_errors on an all-zero W either raises a ParameterError or returns no NaN fields."""
    W = torch.zeros(7, 5, dtype=torch.float64)
    try:
        ref = reference_errors(W, torch.zeros(7, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                               torch.zeros(2, 5, dtype=torch.float64))
    except ParameterError:
        return
    for t in ref:
        assert not torch.isnan(t).any()


def _perm_problems():
    return problems(min_alpha=0.25)  # a spectral gap at every rank: the rank-r truncations are unique


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("svd", id="svd"),
        pytest.param(OptimalCoreNystrom(landmarks="pivoted_qr"), id="optimal_core-pivoted_qr"),
        pytest.param(GramNystrom(sketch="pivoted_qr"), id="gram-pivoted_qr"),
    ],
)
@given(p=_perm_problems())
def test_permutation_equivariance(method, p):
    """For deterministic constructions, the approximation of P W Q is P Ŵ Q (generic W, float64, 1e-8)."""
    W = p.W()
    rng = np.random.default_rng(p.seed)
    pr, pc = rng.permutation(p.m), rng.permutation(p.n)
    What = _dense(nystrom_init(t64(W), rank=p.rank, method=method, generator=gen(0)))
    What_perm = _dense(nystrom_init(t64(W[pr][:, pc]), rank=p.rank, method=method, generator=gen(0)))
    np.testing.assert_allclose(What_perm, What[pr][:, pc], atol=1e-8 * np.linalg.norm(W))


@pytest.mark.parametrize("c", [1e-3, 7.5])
@pytest.mark.parametrize("method", METHOD_NAMES)
@given(p=problems(min_alpha=0.25))
def test_scaling_equivariance(method, c, p):
    """With the same seed, nystrom_init(c·W) gives c·Ŵ and the same relative error."""
    # Landmarks beyond rank(W) are filled without looking at rounding noise; that case has its own test below.
    W = p.W()
    f = nystrom_init(t64(W), rank=p.rank, method=method, generator=gen(p.seed % 1000))
    fc = nystrom_init(t64(c * W), rank=p.rank, method=method, generator=gen(p.seed % 1000))
    What = _dense(f)
    scale = max(1.0, np.linalg.norm(What) / np.linalg.norm(W))
    np.testing.assert_allclose(_dense(fc) / c, What, atol=1e-8 * scale * np.linalg.norm(W))
    assert fc.error.item() == pytest.approx(f.error.item(), abs=1e-8 * scale)
    if len(f.cols):
        assert torch.equal(fc.cols, f.cols) and torch.equal(fc.rows, f.rows)


@pytest.mark.parametrize("c", [2.0**-40, 2.0**40], ids=["2^-40", "2^40"])
@pytest.mark.parametrize("method", ALL_CONFIGS)
def test_power_of_two_scaling_is_exact(method, c):
    """Scaling by a power of two is exact in floating point, so c·W gives bit-identical landmarks and c·(B N A)."""
    W = spectrum_matrix(20, 15, power_law(15, 0.7), 6)
    f = nystrom_init(t64(W), rank=4, method=method, generator=gen(2))
    fc = nystrom_init(t64(c * W), rank=4, method=method, generator=gen(2))
    assert torch.equal(fc.rows, f.rows) and torch.equal(fc.cols, f.cols)
    np.testing.assert_allclose(_dense(fc) / c, _dense(f), rtol=0, atol=1e-13 * np.linalg.norm(W))
    assert fc.error.item() == pytest.approx(f.error.item(), rel=1e-12)


# Non-regression (issue #2): landmarks beyond rank(W) were drawn from rounding noise.
@pytest.mark.parametrize("c", [1e-3, 7.5])
def test_scaling_equivariance_with_more_row_landmarks_than_rank(c):
    """cross_lstsq on a 7×4 W (rank 4) with rank 3 asks for 6 rows; c·W must still give c·Ŵ with the same seed."""
    W = spectrum_matrix(7, 4, power_law(4, 1.0), 0)
    f = nystrom_init(t64(W), rank=3, method="cross_lstsq", generator=gen(0))
    fc = nystrom_init(t64(c * W), rank=3, method="cross_lstsq", generator=gen(0))
    np.testing.assert_allclose(_dense(fc) / c, _dense(f), atol=1e-8 * np.linalg.norm(W))


@pytest.mark.parametrize("sketch", ["pivoted_qr", "adaptive"])
@given(p=problems(min_alpha=0.25))
def test_nested_pivoted_landmarks_never_increase_error(sketch, p):
    """GramNystrom(q = 0) with pivoted_qr (or adaptive, same seed, k <= 8): k+1 nested landmarks never do worse."""
    W = t64(p.W())
    top = min(p.m, p.n) - p.rank
    if sketch == "adaptive":
        top = min(top, 8 - p.rank)  # block size 1 (k <= 8): the same seed gives nested pivots
        assume(top >= 1)
    errors, prev_cols = [], None
    for over in range(0, min(top, 6) + 1):
        cfg = GramNystrom(sketch=sketch, power_iters=0, oversample=over)
        f = nystrom_init(W, rank=p.rank, method=cfg, generator=gen(p.seed % 1000))
        if prev_cols is not None:
            assert set(prev_cols.tolist()) <= set(f.cols.tolist())
        errors.append(f.error.item())
        prev_cols = f.cols
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:]))


# ---------------------------------------------------------------- dtype, device, batching, reproducibility

TOL = {torch.float16: 5e-3, torch.bfloat16: 4e-2, torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_dtype_and_device_policy(method, dtype, device):
    """Factors come back in the input dtype on the input device, diagnostics in float64, accuracy per dtype."""
    k = 4
    W = t64(low_rank(30, 20, k, 1), device).to(dtype)
    f = nystrom_init(W, rank=k, method=method, generator=gen(0, device))
    for t in (f.B, f.N, f.A):
        assert t.dtype == dtype and t.device.type == device
    for t in (f.sigma, f.error, f.bound, f.spectral_bound):
        assert t.dtype == torch.float64 and t.device.type == device
    for t in (f.rows, f.cols, f.effective_rank):
        assert t.dtype == torch.int64 and t.device.type == device
    Wn = np64(W)
    assert rel_fro(Wn, _dense(f)) <= TOL[dtype]
    assert f.error.item() <= TOL[dtype]


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(torch.float32, id="float32"),
        pytest.param(torch.float64, id="float64"),
        pytest.param(torch.float16, id="float16"),  # non-regression, issue #2: bound covers the cast factors
        pytest.param(torch.bfloat16, id="bfloat16"),
    ],
)
def test_bound_certifies_the_returned_factors(dtype):
    """The bound holds for the returned (input-dtype) factors: ‖W − BNA‖_F/‖W‖_F <= bound (+ float32 rounding)."""
    W = t64(spectrum_matrix(60, 45, np.ones(5), 1)).to(dtype)
    f = nystrom_init(W, rank=5, method="svd")
    actual = rel_fro(np64(W), _dense(f))
    assert actual <= f.bound.item() * (1 + 1e-2) + 1e-6


@pytest.mark.parametrize("method", ALL_CONFIGS)
def test_same_seed_gives_bitwise_identical_factors(method):
    """Two runs with generators seeded alike return bit-identical factors, landmarks and diagnostics."""
    W = t64(spectrum_matrix(25, 19, power_law(19, 0.6), 8))
    a = nystrom_init(W, rank=4, method=method, generator=gen(77))
    b = nystrom_init(W, rank=4, method=method, generator=gen(77))
    for name in ("B", "N", "A", "sigma", "rows", "cols", "error", "bound", "effective_rank"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.seed == b.seed == 77


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_recorded_seed_reproduces_an_unseeded_run(method):
    """With generator=None the recorded seed reproduces the run exactly."""
    W = t64(spectrum_matrix(21, 16, power_law(16, 0.6), 9))
    a = nystrom_init(W, rank=3, method=method)
    b = nystrom_init(W, rank=3, method=method, generator=gen(a.seed))
    for name in ("B", "N", "A", "rows", "cols"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize(
    "method",
    [pytest.param("svd", id="svd")]
    + [pytest.param(c(landmarks="pivoted_qr"), id=f"{c.kind}-pivoted_qr") for c in (CrossNystrom, OptimalCoreNystrom)],
)
def test_batched_equals_per_matrix(method):
    """For deterministic constructions a batched call equals separate calls on each matrix."""
    Ws = np.stack([spectrum_matrix(16, 12, power_law(12, 0.7), s) for s in range(6)]).reshape(3, 2, 16, 12)
    f = nystrom_init(t64(Ws), rank=4, method=method)
    assert f.B.shape == (3, 2, 16, 4) and f.error.shape == (3, 2) and f.sigma.shape == (3, 2, 4)
    for i in range(3):
        for j in range(2):
            single = nystrom_init(t64(Ws[i, j]), rank=4, method=method)
            np.testing.assert_allclose(_dense(single), np64(f.B[i, j] @ f.N[i, j] @ f.A[i, j]), atol=1e-10)
            assert f.error[i, j].item() == pytest.approx(single.error.item(), rel=1e-9)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_input_not_mutated(method):
    """nystrom_init leaves W bit-for-bit unchanged."""
    W = t64(spectrum_matrix(15, 12, power_law(12, 0.5), 1))
    before = W.clone()
    nystrom_init(W, rank=3, method=method, generator=gen(0))
    assert torch.equal(W, before)


# ---------------------------------------------------------------- landmark order invariance


@pytest.fixture
def fixed_set_rules():
    """Register two rules returning the same fixed landmark sets in different orders; unregister afterwards."""
    names = ("_test_set_forward", "_test_set_shuffled")

    def make(shuffle: bool):
        def rule(W, rank, n_rows, n_cols, generator):
            b, m, n = W.shape
            rng = np.random.default_rng(0)
            rows, cols = rng.permutation(m)[:n_rows], rng.permutation(n)[:n_cols]
            if shuffle:
                rows, cols = rows[::-1].copy(), np.roll(cols[::-1], 1).copy()
            r, c = torch.as_tensor(rows, device=W.device), torch.as_tensor(cols, device=W.device)
            return Landmarks(r.expand(b, n_rows), c.expand(b, n_cols), W.new_ones(b, m), W.new_ones(b, n))

        return rule

    register_landmark_rule(names[0], make(False))
    register_landmark_rule(names[1], make(True))
    yield names
    for name in names:
        LANDMARK_RULES.pop(name, None)


@pytest.mark.parametrize("config", [OptimalCoreNystrom, CrossNystrom, GramNystrom])
@pytest.mark.parametrize("n_landmarks", [4, 7])
def test_approximation_depends_only_on_landmark_sets(fixed_set_rules, config, n_landmarks):
    """Ŵ depends on the landmark sets only, not on their order (a registered rule returns them in two orders)."""
    W = spectrum_matrix(20, 15, power_law(15, 0.8), 4)
    results = []
    for name in fixed_set_rules:
        if config is GramNystrom:
            cfg = GramNystrom(sketch=name, oversample=n_landmarks - 4, power_iters=0)
        else:
            cfg = config(landmarks=name, n_landmarks=n_landmarks)
        results.append(nystrom_init(t64(W), rank=4, method=cfg, generator=gen(0)))
    a, b = results
    assert not torch.equal(a.cols, b.cols) and set(a.cols.tolist()) == set(b.cols.tolist())
    np.testing.assert_allclose(_dense(a), _dense(b), atol=1e-10 * np.linalg.norm(W))


# ---------------------------------------------------------------- psd_nystrom


@pytest.mark.parametrize("n, k", [(30, 4), (12, 1), (25, 25)])
def test_psd_nystrom_recovers_exact_rank(n, k):
    """On X Xᵀ of rank k, psd_nystrom(rank=k) recovers the matrix to ~1e-10."""
    X = np.random.default_rng(n + k).standard_normal((n, k))
    A = X @ X.T
    f = psd_nystrom(t64(A), k, generator=gen(0))
    assert f.error.item() <= 1e-10
    assert rel_fro(A, _dense(f)) <= 1e-10


@given(p=problems(max_dim=30))
def test_psd_nystrom_is_below_a_in_loewner_order(p):
    """Â = B N A is symmetric and PSD, and A − Â >= −(ν + 100·n·eps·‖A‖₂) in Loewner order (sketch k < n)."""
    # The shifted construction only guarantees A − Â >= −ν(I − UUᵀ), hence ν in the tolerance. With a square sketch
    # (k = n) rounding grows like eps·cond(Ω)²; that case is test_psd_nystrom_square_sketch_is_accurate.
    n = p.m
    rank = max(1, min(p.rank, (n - 1) // 2))  # k = 2·rank < n
    X = spectrum_matrix(n, n, power_law(n, p.alpha), p.seed)
    A = X @ X.T
    A = 0.5 * (A + A.T)
    f = psd_nystrom(t64(A), rank, generator=gen(p.seed % 1000))
    Ahat = _dense(f)
    norm = np.linalg.norm(A, 2)
    tol = f.shift + 100 * n * np.finfo(np.float64).eps * norm
    np.testing.assert_allclose(Ahat, Ahat.T, atol=1e-12 * norm)
    assert np.linalg.eigvalsh(Ahat).min() >= -tol
    assert np.linalg.eigvalsh(A - Ahat).min() >= -tol
    assert f.error.item() >= eckart_young(A, rank) - 1e-12


@pytest.mark.parametrize("seed", range(8))
def test_psd_nystrom_square_sketch_is_accurate(seed):
    """rank = n (square sketch) reproduces a well-conditioned A to 1e-9 and A − Â >= −1e-9·‖A‖₂."""
    # In exact arithmetic Â_ν = A + νI; rounding grows like eps·cond(Ω)² for the square Gaussian Ω (loose tolerance).
    n = 6 + 3 * seed
    X = spectrum_matrix(n, n, np.linspace(1.0, 0.5, n), seed)
    A = X @ X.T
    A = 0.5 * (A + A.T)
    f = psd_nystrom(t64(A), n, generator=gen(seed))
    Ahat = _dense(f)
    assert rel_fro(A, Ahat) <= 1e-9 and f.error.item() <= 1e-9
    assert np.linalg.eigvalsh(A - Ahat).min() >= -1e-9 * np.linalg.norm(A, 2)


@pytest.mark.parametrize("shift", [None, 1e-3])
def test_psd_nystrom_core_is_nonnegative_diagonal_beyond_the_rank_of_a(shift):
    """N = diag(max(Σ² − ν, 0)): diagonal, >= 0 and non-increasing even when rank exceeds rank(A)."""
    X = np.random.default_rng(3).standard_normal((20, 3))
    f = psd_nystrom(t64(X @ X.T), 8, shift=shift, generator=gen(0))
    N = f.N.numpy()
    lam = np.diag(N)
    np.testing.assert_array_equal(N, np.diag(lam))
    assert np.all(lam >= 0) and np.all(np.diff(lam) <= 0)
    np.testing.assert_allclose(lam[:3], np.linalg.eigvalsh(X @ X.T)[::-1][:3], rtol=1e-10 if shift is None else 1e-2)


def test_psd_nystrom_records_a_positive_default_shift_and_an_explicit_one():
    """The default shift ν is recorded and > 0; an explicit shift is recorded as given."""
    X = np.random.default_rng(0).standard_normal((20, 20)) * power_law(20, 1.0)
    A = t64(X @ X.T)
    f = psd_nystrom(A, 5, generator=gen(0))
    assert f.shift > 0 and f.method == "psd_nystrom"
    g = psd_nystrom(A, 5, shift=1e-6, generator=gen(0))
    assert g.shift == 1e-6
    assert torch.equal(g.A, g.B.mT)


@pytest.mark.filterwarnings("ignore::nlora_linalg.NumericalWarning")
# Non-regression (issue #2): the zero matrix (PSD) raised NotPSDError.
def test_psd_nystrom_accepts_the_zero_matrix():
    """The zero matrix is PSD: psd_nystrom returns zero (finite) factors instead of raising."""
    f = psd_nystrom(torch.zeros(6, 6, dtype=torch.float64), 2, generator=gen(0))
    assert torch.isfinite(f.B).all() and float(np.abs(_dense(f)).max()) == 0.0


# ---------------------------------------------------------------- paper_slices


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("r", [1, 3, 8])
def test_paper_slices_are_exact_slices(r, dtype):
    """B, N, A are exactly W[:, :r], W[:r, :r], W[:r, :] (not views of W); rows = cols = 0..r−1."""
    W = t64(np.random.default_rng(r).standard_normal((12, 9))).to(dtype)
    f = paper_slices(W, r)
    assert torch.equal(f.B, W[:, :r]) and torch.equal(f.N, W[:r, :r]) and torch.equal(f.A, W[:r, :])
    assert f.B.data_ptr() != W.data_ptr() and f.A.data_ptr() != W.data_ptr()
    assert f.rows.tolist() == list(range(r)) and f.cols.tolist() == list(range(r))
    assert f.method == "paper_slices" and f.error.dtype == torch.float64


@pytest.mark.parametrize("r", [1, 3, 8])
def test_paper_slices_error_matches_numpy(r):
    """The reported error is ‖W − W[:, :r] W[:r, :r] W[:r, :]‖_F / ‖W‖_F and σ the singular values of that product."""
    W = np.random.default_rng(10 + r).standard_normal((12, 9))
    P = W[:, :r] @ W[:r, :r] @ W[:r, :]
    f = paper_slices(t64(W), r)
    assert f.error.item() == pytest.approx(rel_fro(W, P), rel=1e-12)
    np.testing.assert_allclose(f.sigma.numpy(), np.linalg.svd(P, compute_uv=False)[:r], rtol=1e-10)
