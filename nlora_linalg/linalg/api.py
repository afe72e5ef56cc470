"""Public entry points of the numerical core: :func:`nystrom_init`, :func:`rank_for_tolerance`,
:func:`paper_slices` and :func:`psd_nystrom`, all returning :class:`LowRankFactors`."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import kernels
from .bounds import ERROR_ESTIMATORS, ErrorCheck, ErrorEstimator
from .kernels import SVDFactors
from .methods import METHODS, Approximation, Method
from .policy import (
    NumericalWarning,
    ParameterError,
    RankError,
    ShapeError,
    check_generator,
    check_int,
    check_matrix,
    check_open_unit,
    compute_dtype,
    eps,
    fail,
    flatten_batch,
    lookup,
    make_generator,
    register,
)

__all__ = [
    "LowRankFactors",
    "BALANCES",
    "register_balance",
    "nystrom_init",
    "RankEstimate",
    "rank_for_tolerance",
    "paper_slices",
    "NotPSDError",
    "psd_nystrom",
]


@dataclass(frozen=True, slots=True)
class LowRankFactors:
    """A rank-r three-factor approximation W ≈ B N A with its provenance and error certificates.

    Factors (input dtype, input device):
        B: (*, m, r); N: (*, r, r); A: (*, r, n).
        sigma: (*, r) float64, singular values of B N A (non-increasing).
    Provenance:
        rows: (*, k_r) int64 and cols: (*, k_c) int64 landmark indices ((*, 0) for sketch-based methods).
        method: registry name or config kind; config: the frozen method config with every parameter.
        balance: how magnitude is split (see :data:`BALANCES`); seed: the generator's initial seed (a tuple
        with per-matrix generators).
        rank: r. effective_rank: (*,) int64 rank of the core after ε-truncation. cutoff: that relative ε.
        shift: stabilising shift ν (PSD Nyström; 0.0 otherwise).
    Errors (float64):
        error: (*,) relative Frobenius error ‖W − BNA‖_F / ‖W‖_F, exact or estimated (``error_kind``).
        bound: (*,) upper bound on it, valid with probability >= 1 − delta (delta = 0: deterministic).
        spectral_bound: (*,) bound on the absolute ‖W − BNA‖₂ with the same probability.
        apriori_factor: c of the method's a-priori theorem E‖W − Ŵ‖_F <= c·τ_{r+1}, or None (see the method).
    Cost: time_s (construction), check_time_s (error check), wall-clock seconds (device-synchronised).
    """

    B: Tensor
    N: Tensor
    A: Tensor
    sigma: Tensor
    rows: Tensor
    cols: Tensor
    method: str
    config: object
    balance: str
    seed: int | tuple[int, ...]
    rank: int
    effective_rank: Tensor
    cutoff: float
    shift: float
    error: Tensor
    error_kind: str
    bound: Tensor
    delta: float
    spectral_bound: Tensor
    apriori_factor: float | None
    time_s: float
    check_time_s: float

    def dense(self) -> Tensor:
        """Ŵ = B N A: (*, m, n) in the factors' dtype."""
        return self.B @ self.N @ self.A


Balance = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


def _svd_balance(U: Tensor, s: Tensor, Vh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return U, torch.diag_embed(s), Vh


def _sqrt_balance(U: Tensor, s: Tensor, Vh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h = s.sqrt()
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device).expand(*s.shape, s.shape[-1])
    return U * h.unsqueeze(-2), eye.contiguous(), h.unsqueeze(-1) * Vh


def _cube_root_balance(U: Tensor, s: Tensor, Vh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    c = s.pow(1.0 / 3.0)
    return U * c.unsqueeze(-2), torch.diag_embed(c), c.unsqueeze(-1) * Vh


BALANCES: dict[str, Balance] = {
    # B = U (orthonormal), N = Σ (diagonal, cond = σ₁/σ_r), A = Vᵀ (orthonormal): all magnitude in N.
    "svd": _svd_balance,
    # B = U Σ^{1/2}, N = I, A = Σ^{1/2} Vᵀ: PiSSA's split; N starts as the identity.
    "sqrt": _sqrt_balance,
    # B = U Σ^{1/3}, N = Σ^{1/3}, A = Σ^{1/3} Vᵀ: equal share, ‖B‖₂ = ‖N‖₂ = ‖A‖₂ = σ₁^{1/3}.
    "cube_root": _cube_root_balance,
}


def register_balance(name: str, fn: Balance) -> Balance:
    """Register a balancing ``fn(U, sigma, Vh) -> (B, N, A)`` with B N A = U diag(sigma) Vh."""
    return register(BALANCES, name, fn)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _resolve(value: object, registry: dict, arg: str) -> tuple[str, object]:
    if isinstance(value, str):
        return value, lookup(registry, value, arg)
    if hasattr(value, "kind") and hasattr(value, "build" if arg == "method" else "check"):
        return value.kind, value
    raise fail(ParameterError, arg, f"must be a registered name {sorted(registry)} or a config instance", repr(value))


class _Factorised(NamedTuple):
    approx: object  # methods.Approximation
    factors: tuple[Tensor, Tensor, Tensor]  # B, N, A in the output dtype, batched (b, ...)
    check: ErrorCheck
    t_build: float
    t_check: float


def _factorise(W3: Tensor, build: Callable[[], object], balance_fn: Balance, estimator: ErrorEstimator,
               generator: torch.Generator, out_dtype: torch.dtype) -> _Factorised:
    """Build, balance, cast to ``out_dtype``, then certify the factors actually returned (after rounding)."""
    _sync(W3.device)
    t0 = time.perf_counter()
    approx = build()
    approx = approx._replace(svd=kernels.sign_fixed(approx.svd))  # canonical signs: reproducible factors
    B, N, A = (t.to(out_dtype) for t in balance_fn(*approx.svd))
    _sync(W3.device)
    t1 = time.perf_counter()
    r = N.shape[-1]
    returned = SVDFactors(B.to(W3.dtype) @ N.to(W3.dtype), W3.new_ones(W3.shape[0], r), A.to(W3.dtype))
    check = estimator.check(W3, returned, generator)
    _sync(W3.device)
    return _Factorised(approx, (B, N, A), check, t1 - t0, time.perf_counter() - t1)


def nystrom_init(
    W: Tensor,
    rank: int | None = None,
    *,
    tol: float | None = None,
    method: str | Method = "gram",
    balance: str = "svd",
    error: str | ErrorEstimator = "exact",
    generator: torch.Generator | None = None,
) -> LowRankFactors:
    """Rank-r three-factor Nyström-type approximation W ≈ B N A with error certificates (the NLoRA init).

    .. math:: Ŵ_r = U\\,\\mathrm{diag}(σ)\\,V^T = B N A,\\quad B ∈ R^{m×r}, N ∈ R^{r×r}, A ∈ R^{r×n}

    The method (default ``gram``: the Nyström approximation of the Gram matrix WᵀW with an oversampled Gaussian
    test matrix and one power iteration, i.e. Ŵ = P_{WX}W — accurate on flat LLM spectra, see
    :class:`GramNystrom`) builds Ŵ, the small SVD of its core truncates it to exactly rank r, ``balance`` splits the
    magnitude (``svd``: orthonormal B, A and N = Σ; ``sqrt``: PiSSA's √Σ split with N = I; ``cube_root``: equal
    norms), and ``error`` certifies ‖W − Ŵ‖_F / ‖W‖_F (``exact``: one more pass; ``estimate``: Gaussian probes
    with a bound that holds with probability >= 1 − δ, see :class:`RandomizedError`).

    Args:
        W: (*, m, n) real tensor; batched over leading dimensions (one generator for the whole batch).
        rank: target rank r, 1 <= r <= min(m, n). Exactly one of ``rank`` and ``tol`` must be given.
        tol: relative Frobenius tolerance in (0, 1): the smallest rank found by :func:`rank_for_tolerance`, raised
            until the returned ``bound`` is <= tol for every batch element.
        method: a name in :data:`METHODS` (``gram``, ``generalized``, ``cross``, ``cross_lstsq``,
            ``optimal_core``, ``rsvd``, ``svd``) or a method config such as ``CrossNystrom(landmarks="leverage")``.
        balance: a name in :data:`BALANCES`.
        error: a name in :data:`ERROR_ESTIMATORS` (``exact``, ``estimate``) or a config such as
            ``RandomizedError(probes=64, delta=1e-3)``.
        generator: source of every random draw, on W's device: one generator for the whole batch, or a sequence
            of one generator per matrix (then a batched call returns exactly what separate calls with those
            generators return, up to the rounding of batched BLAS); a fresh one seeded from torch's default RNG
            if None. Its seed(s) are recorded in the result.

    Returns:
        :class:`LowRankFactors` (factors in W's dtype and device; diagnostics in float64).

    Supports float16, bfloat16, float32 and float64 on any device; computes in float32 (float64 for float64).

    Raises:
        TypeError / DTypeError: W not a tensor or of integer/complex/bool dtype.
        ShapeError: W with fewer than 2 dimensions or an empty dimension. NonFiniteError: NaN/Inf in W.
        RankError: rank outside [1, min(m, n)] or landmarks fewer than rank. ParameterError: both or neither of
        rank/tol, tol outside (0, 1). UnknownNameError: unknown method, balance or estimator (known ones listed).

    Notes:
        Cost of the default: 4 passes over W with 2r columns, i.e. O(mnr), versus O(mn·min(m, n)) for the full
        SVD. The generalized Nyström method (Nakatsukasa 2020) saves passes but its oblique core costs a factor
        ≈ √(1 + k/(ℓ − k − 1)) on the residual, which dominates on flat spectra (measured: 1.3× the optimum). Singular or repeated rows/columns give finite factors (cores are ε-truncated). The paper's own
        initialisation is :func:`paper_slices`; the literal C·W_IJ⁺·R with r landmarks is
        ``method=CrossNystrom(landmarks="first")``.

    References:
        Nakatsukasa 2020 (generalized Nyström); Tropp, Yurtsever, Udell & Cevher 2017 (SIMAX 38(4), Thm. 4.3);
        Halko, Martinsson & Tropp 2011 (SIAM Review 53(2)); Goreinov, Tyrtyshnikov & Zamarashkin 1997 (cross).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> W = torch.randn(64, 8, dtype=torch.float64, generator=g) @ torch.randn(8, 48, dtype=torch.float64, generator=g)
        >>> f = nystrom_init(W, rank=8, generator=g)
        >>> bool(f.bound < 1e-10), tuple(f.B.shape), tuple(f.N.shape), tuple(f.A.shape)
        (True, (64, 8), (8, 8), (8, 48))
    """
    check_matrix(W)
    m, n = W.shape[-2:]
    method_name, method_cfg = _resolve(method, METHODS, "method")
    balance_fn = lookup(BALANCES, balance, "balance")
    _, estimator = _resolve(error, ERROR_ESTIMATORS, "error")
    if (rank is None) == (tol is None):
        raise fail(ParameterError, "rank, tol", "exactly one must be given", f"rank={rank!r}, tol={tol!r}")
    if rank is not None:
        check_int(rank, "rank", 1, min(m, n), RankError)
        method_cfg.check(rank, m, n)
    else:
        check_open_unit(tol, "tol")
    check_generator(generator, W.device, math.prod(W.shape[:-2]))
    generator, seed = make_generator(generator, W.device)
    W3, batch = flatten_batch(W.to(compute_dtype(W.dtype)))
    if rank is None:
        rank, res = _rank_meeting(W3, tol, method_cfg, balance_fn, estimator, generator, W.dtype)
    else:
        res = _factorise(W3, lambda: method_cfg.build(W3, rank, generator), balance_fn, estimator, generator, W.dtype)
    return _assemble(W, batch, rank, method_name, method_cfg, balance, seed, res, estimator.kind, 0.0)


def _rank_meeting(W3, tol, method, balance_fn, estimator, g, out_dtype) -> tuple[int, _Factorised]:
    """Smallest certified rank, raised by 25 % until the returned factorisation's own bound meets ``tol``."""
    full = min(W3.shape[-2:])
    rank = _rank_for_tolerance(W3, tol, None, g).rank
    while True:
        method.check(rank, *W3.shape[-2:])
        res = _factorise(W3, lambda: method.build(W3, rank, g), balance_fn, estimator, g, out_dtype)
        if bool((res.check.bound <= tol).all()) or rank == full:
            return rank, res
        rank = min(full, math.ceil(1.25 * rank) + 1)


def _assemble(W, batch, rank, name, cfg, balance, seed, res: _Factorised, error_kind, shift):
    approx, (B, N, A), check = res.approx, res.factors, res.check
    s = approx.svd.sigma

    def out(t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return t.reshape((*batch, *t.shape[1:])).to(dtype or t.dtype)

    return LowRankFactors(
        B=out(B), N=out(N), A=out(A), sigma=out(s, torch.float64),
        rows=out(approx.rows), cols=out(approx.cols), method=name, config=cfg, balance=balance, seed=seed,
        rank=rank, effective_rank=out(approx.effective_rank), cutoff=float(approx.cutoff), shift=float(shift),
        error=out(check.error), error_kind=error_kind, bound=out(check.bound),
        delta=check.delta, spectral_bound=out(check.spectral_bound),
        apriori_factor=cfg.apriori_factor(rank, *W.shape[-2:]), time_s=res.t_build, check_time_s=res.t_check,
    )


class RankEstimate(NamedTuple):
    """Smallest ranks meeting a relative tolerance.

    rank: max over the batch (the rank to use for all of it). ranks: (*,) int64 per matrix.
    bound: (*,) float64, ‖W − Q_j Q_jᵀ W‖_F / ‖W‖_F at the chosen per-matrix rank j (exact up to rounding).
    sketch_size: columns of the final range basis.
    """

    rank: int
    ranks: Tensor
    bound: Tensor
    sketch_size: int


def _rank_for_tolerance(W3: Tensor, tol: float, block: int | None, g: torch.Generator) -> RankEstimate:
    b, m, n = W3.shape
    full = min(m, n)
    block = block or max(8, math.ceil(full / 32))
    w2 = kernels.fro2(W3)  # (b,)
    margin = max(m, n) * eps(W3.dtype) * w2  # (b,) rounding level of ‖W‖² − Σσ̃² (float64 accumulation of fp sums)
    Q = W3.new_zeros(b, m, 0)
    Bm = W3.new_zeros(b, 0, n)
    while Q.shape[-1] < full:
        t = min(block, full - Q.shape[-1])
        Y = W3 @ kernels.gaussian((b, n, t), W3, g)  # (b, m, t)
        Y = W3 @ (W3.mT @ Y)  # one power iteration sharpens the basis on flat spectra
        Qi = kernels.orth(Y - Q @ (Q.mT @ Y))  # (b, m, t)
        Qi = kernels.orth(Qi - Q @ (Q.mT @ Qi))  # re-orthogonalise after normalising (a rounding-noise block
        Q, Bm = torch.cat([Q, Qi], -1), torch.cat([Bm, Qi.mT @ W3], -2)  # is otherwise not orthogonal to Q)
        if bool(((w2 - kernels.fro2(Bm)) <= tol**2 * w2).all()):  # ‖W − QQᵀW‖² = ‖W‖² − ‖QᵀW‖² (Yu, Gu & Li 2018)
            break
    s2 = torch.linalg.svdvals(Bm).double() ** 2  # (b, K)
    err2 = (w2.unsqueeze(-1) - torch.cumsum(s2, -1)).clamp_min(0) + margin.unsqueeze(-1)  # (b, K), rank j + 1
    rel2 = err2 / torch.where(w2 > 0, w2, torch.ones_like(w2)).unsqueeze(-1)
    rel2 = torch.where(w2.unsqueeze(-1) > 0, rel2, torch.zeros_like(rel2))
    meets = rel2 <= tol**2
    last = rel2.shape[-1] - 1
    ranks = torch.where(meets.any(-1), meets.int().argmax(-1) + 1, torch.full_like(w2, full, dtype=torch.int64))
    at = torch.where(meets.any(-1), ranks - 1, torch.full_like(ranks, last)).clamp_max(last)
    bound = rel2.gather(-1, at.unsqueeze(-1)).squeeze(-1).sqrt()  # at full rank: the rounding level
    return RankEstimate(int(ranks.max()), ranks, bound, Q.shape[-1])


def rank_for_tolerance(
    W: Tensor, tol: float, *, block: int | None = None, generator: torch.Generator | None = None
) -> RankEstimate:
    """Smallest rank j whose certified relative error ‖W − Q_jQ_jᵀW‖_F / ‖W‖_F is <= tol.

    .. math:: ‖W − QQ^TW‖_F^2 = ‖W‖_F^2 − ‖Q^TW‖_F^2, \\qquad ‖W − U_jU_j^TW‖_F^2 = ‖W‖_F^2 − Σ_{i<=j} \\tilde σ_i^2

    A blocked randomized QB factorisation with one power iteration grows an orthonormal basis Q until the error
    indicator (exact, by orthogonality) meets tol (Yu, Gu & Li 2018, "Efficient randomized algorithms for the
    fixed-precision low-rank matrix approximation", SIMAX 39(3), Alg. 2 randQB_EI); the SVD σ̃ of QᵀW then
    gives the exact error of every rank-j truncation U_j = QŨ_j, and the smallest j meeting tol is returned.
    The certificate is deterministic; a rounding margin max(m, n)·eps(dtype)·‖W‖_F² is added to every squared
    error, so tolerances below about √(max(m, n)·eps) (≈ 7e-3 for float32 at n = 4096) cannot be certified and
    give rank min(m, n), whose bound is that rounding level. The rank is an upper bound on the Eckart–Young rank
    for tol, usually equal to it.

    Args:
        W: (*, m, n) real tensor. tol: in (0, 1). block: columns added per step (default max(8, ⌈min(m,n)/32⌉)).
        generator: source of the Gaussian test matrices, on W's device.

    Returns:
        :class:`RankEstimate`.

    Supports float16, bfloat16, float32 and float64 on any device; computes in float32 (float64 for float64).

    Raises:
        ShapeError / DTypeError / NonFiniteError: invalid W. ParameterError: tol outside (0, 1), block < 1.

    Example:
        >>> W = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64))
        >>> rank_for_tolerance(W, 0.3, generator=torch.Generator().manual_seed(0)).rank
        2
    """
    check_matrix(W)
    check_open_unit(tol, "tol")
    if block is not None:
        check_int(block, "block", 1)
    check_generator(generator, W.device, math.prod(W.shape[:-2]))
    generator, _ = make_generator(generator, W.device)
    W3, batch = flatten_batch(W.to(compute_dtype(W.dtype)))
    est = _rank_for_tolerance(W3, tol, block, generator)
    return RankEstimate(est.rank, est.ranks.reshape(batch), est.bound.reshape(batch), est.sketch_size)


@dataclass(frozen=True, slots=True)
class PaperSlices:
    """The released NLoRA code's init, kept for comparison: B = W[:, :r], N = W[:r, :r], A = W[:r, :].

    No pseudo-inverse and nothing is subtracted, so B N A is not an approximation of W in general.
    """

    kind = "paper_slices"

    def apriori_factor(self, rank: int, m: int, n: int) -> None:
        return None


def paper_slices(W: Tensor, rank: int) -> LowRankFactors:
    """The NLoRA paper's released initialisation: B = W[:, :r], N = W[:r, :r], A = W[:r, :] (no pseudo-inverse).

    .. math:: B N A = W[:, :r]\\, W[:r, :r]\\, W[:r, :]

    This is not C·W_IJ⁺·R: N is W_IJ itself, so ‖BNA‖ scales like ‖W‖³ and the product is generally far from W
    (the reported ``error`` is typically > 1). It is the paper-faithful mode, clearly labelled; use
    :func:`nystrom_init` for an approximation.

    Args:
        W: (*, m, n) real tensor. rank: 1 <= r <= min(m, n).

    Returns:
        :class:`LowRankFactors` with method ``paper_slices``, rows = cols = 0..r−1, exact error check, sigma the
        singular values of BNA.

    Supports float16, bfloat16, float32 and float64 on any device; computes in float32 (float64 for float64).

    Raises:
        As :func:`nystrom_init` for W and rank.

    Example:
        >>> W = torch.arange(12.0).reshape(3, 4)
        >>> paper_slices(W, 1).N.tolist()
        [[0.0]]
    """
    check_matrix(W)
    m, n = W.shape[-2:]
    check_int(rank, "rank", 1, min(m, n), RankError)
    W3, batch = flatten_batch(W.to(compute_dtype(W.dtype)))
    t0 = time.perf_counter()
    B, N, A = W3[..., :, :rank], W3[..., :rank, :rank], W3[..., :rank, :]
    t1 = time.perf_counter()
    svd = kernels.svd_of_product(B @ N, A, rank)
    check = ERROR_ESTIMATORS["exact"].check(W3, svd, None)
    idx = torch.arange(rank, device=W.device).expand(W3.shape[0], rank)

    def out(t: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return t.reshape((*batch, *t.shape[1:])).to(dtype or t.dtype)

    return LowRankFactors(
        B=out(B, W.dtype).clone(), N=out(N, W.dtype).clone(), A=out(A, W.dtype).clone(), sigma=out(svd.sigma, torch.float64),
        rows=out(idx), cols=out(idx), method="paper_slices", config=PaperSlices(), balance="none", seed=0, rank=rank,
        effective_rank=out(torch.linalg.matrix_rank(N)), cutoff=0.0, shift=0.0, error=out(check.error),
        error_kind="exact", bound=out(check.bound), delta=0.0, spectral_bound=out(check.spectral_bound),
        apriori_factor=None, time_s=t1 - t0, check_time_s=time.perf_counter() - t1,
    )


class NotPSDError(ParameterError):
    """The input of a PSD routine is not symmetric positive semidefinite within tolerance."""


@dataclass(frozen=True, slots=True)
class PSDNystrom:
    """Config record of :func:`psd_nystrom` (sketch size k and the requested shift; None = dtype-aware)."""

    sketch: int
    shift: float | None
    kind = "psd_nystrom"

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        return None


def _psd_sketch(A: Tensor, k: int, rank: int, shift: float | None, g: torch.Generator) -> tuple[SVDFactors, float]:
    n = A.shape[-1]
    Omega = kernels.gaussian((A.shape[0], n, k), A, g)  # (b, n, k)
    Y = A @ Omega  # (b, n, k)
    nu = math.sqrt(n) * eps(A.dtype) * float(torch.linalg.vector_norm(Y, dim=(-2, -1)).max()) if shift is None else shift
    nu = nu if nu > 0 or shift is not None else eps(A.dtype)  # A = 0 (Y = 0): any ν > 0 makes the core PD
    for attempt in range(8):
        Ynu = Y + nu * Omega  # shifted sketch (Tropp et al. 2017, Alg. 3, step 3)
        core = Omega.mT @ Ynu  # (b, k, k)
        L, info = torch.linalg.cholesky_ex(0.5 * (core + core.mT))
        if not bool(info.any()):
            break
        nu = max(nu * 10, eps(A.dtype) * float(torch.linalg.matrix_norm(core, ord=2).max()), eps(A.dtype))
        warnings.warn(f"psd_nystrom: Cholesky of the shifted core failed; shift raised to {nu:.3e}", NumericalWarning,
                      stacklevel=3)
    else:
        raise fail(NotPSDError, "A", "must be symmetric positive semidefinite (Cholesky failed after 8 shift increases)",
                   f"final shift {nu:.3e}")
    Bm = torch.linalg.solve_triangular(L, Ynu.mT, upper=False).mT  # (b, n, k) = Y_ν L^{-T}
    U, S, _ = torch.linalg.svd(Bm, full_matrices=False)
    lam = S[..., :rank] ** 2 - nu  # remove the shift (Alg. 3, step 7); what is left of ν is rounding: drop it
    lam = torch.where(lam > 10 * k * eps(A.dtype) * nu, lam, torch.zeros_like(lam))
    return SVDFactors(U[..., :rank], lam, U[..., :rank].mT), nu


def psd_nystrom(
    A: Tensor,
    rank: int,
    *,
    oversample: int | None = None,
    shift: float | None = None,
    error: str | ErrorEstimator = "exact",
    generator: torch.Generator | None = None,
) -> LowRankFactors:
    """Stabilised Nyström approximation of a symmetric PSD matrix (Gram matrix, activation covariance).

    .. math:: Y = AΩ,\\; Y_ν = Y + νΩ,\\; Ω^TY_ν = LL^T,\\; Y_ν L^{-T} = UΣV^T,\\; Â = U\\,\\max(Σ^2 − νI, 0)\\,U^T

    Tropp, Yurtsever, Udell & Cevher 2017, "Fixed-rank approximation of a positive-semidefinite matrix from
    streaming data" (NeurIPS), Alg. 3, with ν = √n·eps(dtype)·‖Y‖_F by default. If the Cholesky factorisation
    still fails the shift is raised tenfold (a :class:`NumericalWarning`), up to 8 times. The factors are B = U,
    N = diag(λ), A = Uᵀ; ``shift`` records the ν used.

    Args:
        A: (*, n, n) symmetric PSD. rank: 1 <= r <= n. oversample: sketch size k = min(n, r + oversample)
            (default r). shift: ν >= 0 or None (dtype-aware). error: as in :func:`nystrom_init`.
        generator: source of Ω.

    Returns:
        :class:`LowRankFactors` (method ``psd_nystrom``).

    Supports float16, bfloat16, float32 and float64 on any device; computes in float32 (float64 for float64).

    Raises:
        ShapeError: A not square. NotPSDError: A not symmetric (relative asymmetry > 100·n·eps) or Cholesky fails.
        RankError, ParameterError: invalid rank, oversample or shift.

    Example:
        >>> X = torch.randn(50, 4, dtype=torch.float64)
        >>> f = psd_nystrom(X @ X.T, 4, generator=torch.Generator().manual_seed(0))
        >>> bool(f.bound < 1e-8)
        True
    """
    check_matrix(A, "A")
    n = A.shape[-1]
    if A.shape[-2] != n:
        raise fail(ShapeError, "A", "must be square (*, n, n)", tuple(A.shape))
    check_int(rank, "rank", 1, n, RankError)
    over = rank if oversample is None else check_int(oversample, "oversample", 0)
    if shift is not None and (isinstance(shift, bool) or not isinstance(shift, (int, float)) or not shift >= 0):
        raise fail(ParameterError, "shift", "must be None or a float >= 0", repr(shift))
    _, estimator = _resolve(error, ERROR_ESTIMATORS, "error")
    check_generator(generator, A.device, math.prod(A.shape[:-2]))
    generator, seed = make_generator(generator, A.device)
    A3, batch = flatten_batch(A.to(compute_dtype(A.dtype)))
    asym = torch.linalg.matrix_norm(A3 - A3.mT) / torch.linalg.matrix_norm(A3).clamp_min(torch.finfo(A3.dtype).tiny)
    if bool((asym > 100 * n * eps(A3.dtype)).any()):
        raise fail(NotPSDError, "A", "must be symmetric", f"relative asymmetry {float(asym.max()):.3e}")
    k = min(n, rank + over)
    eff = torch.full((A3.shape[0],), k, dtype=torch.int64, device=A.device)
    none = torch.zeros(A3.shape[0], 0, dtype=torch.int64, device=A.device)
    shifts = []

    def build():
        svd, nu = _psd_sketch(A3, k, rank, None if shift is None else float(shift), generator)
        shifts.append(nu)
        return Approximation(svd, none, none, eff, 0.0)

    res = _factorise(A3, build, BALANCES["svd"], estimator, generator, A.dtype)
    return _assemble(A, batch, rank, "psd_nystrom", PSDNystrom(k, shift), "svd", seed, res, estimator.kind, shifts[0])
