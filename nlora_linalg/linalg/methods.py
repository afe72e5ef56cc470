"""Low-rank constructions of a rectangular W, each truncated to exactly rank r.

A method is a frozen config dataclass (its parameters, validated in ``__post_init__``) with one method
``build(W, rank, generator) -> Approximation`` working on a batched (b, m, n) tensor in the compute dtype, and
``apriori_factor(rank, m, n)``: the multiplier c of the method's a-priori theorem
E‖W − Ŵ_r‖_F <= c · ‖W − [W]_r‖_F, or None where no such theorem applies. The registry :data:`METHODS` maps a
name to a default config; pass a config instance to change parameters.

Every construction ends with the small SVD of its core (:func:`kernels.svd_of_product`), so all of them return
Ŵ_r = U diag(σ) Vh with orthonormal U, Vh; :mod:`.balance` then splits the magnitude between B, N and A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from . import kernels
from .kernels import SVDFactors
from .landmarks import LANDMARK_RULES
from .policy import ParameterError, RankError, UnknownNameError, fail, register

__all__ = [
    "Approximation",
    "Method",
    "METHODS",
    "register_method",
    "GeneralizedNystrom",
    "GramNystrom",
    "project_truncate",
    "CrossNystrom",
    "OptimalCoreNystrom",
    "RandomizedSVD",
    "ExactSVD",
]


class Approximation(NamedTuple):
    """What a method returns before balancing.

    svd: rank-r factors U (b, m, r), sigma (b, r), Vh (b, r, n).
    rows: (b, k_r) int64 and cols: (b, k_c) int64 landmark indices ((b, 0) for sketch-based methods).
    effective_rank: (b,) int64, rank of the core after ε-truncation (min(m, n) bound for SVD methods).
    cutoff: the relative ε used to truncate the core's pseudo-inverse (0.0 where none is inverted).
    """

    svd: SVDFactors
    rows: Tensor
    cols: Tensor
    effective_rank: Tensor
    cutoff: float


class Method(Protocol):
    kind: ClassVar[str]

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation: ...

    def check(self, rank: int, m: int, n: int) -> None: ...

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None: ...


def _no_landmarks(W: Tensor) -> Tensor:
    return torch.zeros(W.shape[0], 0, dtype=torch.int64, device=W.device)


def _full_rank(W: Tensor) -> Tensor:
    return torch.full((W.shape[0],), min(W.shape[-2:]), dtype=torch.int64, device=W.device)


def _check_nonneg_int(value: object, arg: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(ParameterError, arg, "must be an int >= 0", repr(value))


def _check_rcond(value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1):
        raise fail(ParameterError, "rcond", "must be None (dtype-aware default) or a float in [0, 1)", repr(value))


def _check_rule(value: object) -> None:
    if not isinstance(value, str) or value not in LANDMARK_RULES:
        raise fail(UnknownNameError, "landmarks", f"must be one of {sorted(LANDMARK_RULES)}", repr(value))


def _check_ratio(value: object, arg: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise fail(ParameterError, arg, "must be a number >= 1", repr(value))


def tyuc_f(s: int, t: int) -> float:
    """f(s, t) = s / (t − s − 1) of Tropp, Yurtsever, Udell & Cevher (2017); +inf when t <= s + 1."""
    return s / (t - s - 1) if t > s + 1 else math.inf


@dataclass(frozen=True, slots=True)
class GeneralizedNystrom:
    """Generalized Nyström Ŵ = W X (Yᵀ W X)⁺_ε Yᵀ W with Gaussian X, Y, truncated to rank r.

    .. math:: Q = \\mathrm{orth}((WW^T)^q W X),\\; Ŵ = Q\\,(Y^TQ)^+_ε\\,(Y^T W),\\; X ∈ R^{n×k},\\; Y ∈ R^{m×ℓ}

    k = min(rank + oversample, m, n) (default oversample = rank), ℓ = min(⌈co_ratio · k⌉, m), q = power_iters.
    Evaluated in the stable QR-ordered form of Nakatsukasa (2020, "Fast and stable randomized low-rank matrix
    approximation", Sec. 4): the range basis Q is orthonormalised before the ℓ×k core is pseudo-inverted with
    an ε-truncated SVD (ε = rcond, default max(ℓ, k)·eps(dtype)).
    Cost: (2q + 2) passes over W with k or ℓ columns, plus O((m + n)k² + ℓk²).

    A-priori (q = 0; Tropp, Yurtsever, Udell & Cevher 2017, "Practical sketching algorithms for low-rank
    matrix approximation", Thm. 4.3 and Prop. 6.1): E‖W − Ŵ_r‖_F <= (1 + 2√((1 + f(k, ℓ))(1 + f(r, k))))·τ_{r+1},
    f(s, t) = s/(t − s − 1), τ_{r+1} = ‖W − [W]_r‖_F. Flat spectra (LLM weights) need ℓ >= 2k and q >= 1 for
    accurate leading singular values.
    """

    oversample: int | None = None
    co_ratio: float = 2.0
    power_iters: int = 1
    rcond: float | None = None
    kind: ClassVar[str] = "generalized"

    def __post_init__(self) -> None:
        if self.oversample is not None:
            _check_nonneg_int(self.oversample, "oversample")
        _check_ratio(self.co_ratio, "co_ratio")
        _check_nonneg_int(self.power_iters, "power_iters")
        _check_rcond(self.rcond)

    def sizes(self, rank: int, m: int, n: int) -> tuple[int, int]:
        k = min(rank + (rank if self.oversample is None else self.oversample), m, n)
        return k, min(math.ceil(self.co_ratio * k), m)

    def check(self, rank: int, m: int, n: int) -> None:
        return None

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        b, m, n = W.shape
        k, ell = self.sizes(rank, m, n)
        Q = kernels.range_finder(W, k, self.power_iters, generator)  # (b, m, k)
        Y = kernels.gaussian((b, m, ell), W, generator)  # (b, m, ℓ)
        YtW = Y.mT @ W  # (b, ℓ, n)
        rcond = kernels.default_rcond(W.dtype, ell, k) if self.rcond is None else self.rcond
        P, inv_s, Hh, eff = kernels.truncated_pinv_parts(Y.mT @ Q, rcond)  # (YᵀQ)⁺ = Hhᵀ diag(inv_s) Pᵀ
        M = Hh.mT @ (inv_s.unsqueeze(-1) * (P.mT @ YtW))  # (b, k, n) = (YᵀQ)⁺ YᵀW
        return Approximation(kernels.svd_of_product(Q, M, rank), _no_landmarks(W), _no_landmarks(W), eff, rcond)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        if self.power_iters:
            return None
        k, ell = self.sizes(rank, m, n)
        factor = 1 + 2 * math.sqrt((1 + tyuc_f(k, ell)) * (1 + tyuc_f(rank, k)))
        return factor if math.isfinite(factor) else None  # the theorem needs r < k − 1 and k < ℓ − 1


def _landmark_count(n_landmarks: int | None, default: int) -> int:
    return default if n_landmarks is None else n_landmarks


def _check_landmarks(n_cols: int, n_rows: int, rank: int, m: int, n: int) -> None:
    if n_cols < rank or n_rows < rank:
        raise fail(RankError, "n_landmarks", f"must be >= rank = {rank} (rows and columns)", f"{n_rows} rows, {n_cols} columns")
    if n_cols > n or n_rows > m:
        raise fail(RankError, "n_landmarks", f"must fit W of shape ({m}, {n})", f"{n_rows} rows, {n_cols} columns")


@dataclass(frozen=True, slots=True)
class CrossNystrom:
    """Cross / skeleton (CUR) approximation Ŵ = C U⁺_ε R from landmark rows I and columns J, truncated to rank r.

    .. math:: C = W[:, J] ∈ R^{m×k_c},\\; R = W[I, :] ∈ R^{k_r×n},\\; U = W[I, J],\\; Ŵ = C\\,U^+_ε R

    k_c = n_landmarks (default rank), k_r = ⌈row_ratio · k_c⌉. With row_ratio = 1 this is the classical
    skeleton/cross approximation (Goreinov, Tyrtyshnikov & Zamarashkin 1997), which with r landmarks is what
    the NLoRA paper describes; with row_ratio > 1 the core is the least-squares solution
    X = argmin ‖W[I, J] X − W[I, :]‖_F, Ŵ = C X (sketch-and-solve regression on the sampled rows; Woodruff 2014,
    Thm. 2.3 for leverage sampling). U⁺_ε drops singular values <= rcond·s_1 (default max(k_r, k_c)·eps).
    Cost: landmark rule + O((m + n)k² + k³); reads only k_c columns and k_r rows of W beyond the rule.

    No a-priori relative-error theorem is evaluated: with r landmarks U can be arbitrarily ill-conditioned and
    the error is typically 4–60× the optimum on LLM weights.
    """

    landmarks: str = "adaptive"
    n_landmarks: int | None = None
    row_ratio: float = 1.0
    rcond: float | None = None
    kind: ClassVar[str] = "cross"

    def __post_init__(self) -> None:
        _check_rule(self.landmarks)
        if self.n_landmarks is not None:
            _check_nonneg_int(self.n_landmarks, "n_landmarks")
        _check_ratio(self.row_ratio, "row_ratio")
        _check_rcond(self.rcond)

    def sizes(self, rank: int, m: int, n: int) -> tuple[int, int]:
        kc = _landmark_count(self.n_landmarks, rank)
        return kc, min(math.ceil(self.row_ratio * kc), m) if self.row_ratio > 1 else kc

    def check(self, rank: int, m: int, n: int) -> None:
        kc, kr = self.sizes(rank, m, n)
        _check_landmarks(kc, kr, rank, m, n)

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        b, m, n = W.shape
        kc, kr = self.sizes(rank, m, n)
        lm = LANDMARK_RULES[self.landmarks](W, rank, kr, kc, generator)
        C = torch.gather(W, 2, lm.cols.unsqueeze(1).expand(b, m, kc))  # (b, m, k_c)
        R = torch.gather(W, 1, lm.rows.unsqueeze(2).expand(b, kr, n))  # (b, k_r, n)
        U = torch.gather(R, 2, lm.cols.unsqueeze(1).expand(b, kr, kc))  # (b, k_r, k_c)
        rcond = kernels.default_rcond(W.dtype, kr, kc) if self.rcond is None else self.rcond
        P, inv_s, Hh, eff = kernels.truncated_pinv_parts(U, rcond)  # U⁺ = Hhᵀ diag(inv_s) Pᵀ
        F = (C @ Hh.mT) * inv_s.unsqueeze(-2)  # (b, m, t) = C H Σ⁻¹
        G = P.mT @ R  # (b, t, n)
        return Approximation(kernels.svd_of_product(F, G, rank), lm.rows, lm.cols, eff, rcond)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        return None


@dataclass(frozen=True, slots=True)
class OptimalCoreNystrom:
    """CUR with the Frobenius-optimal core Ŵ = C C⁺ W R⁺ R from landmark rows and columns, truncated to rank r.

    .. math:: Q_C = \\mathrm{orth}(W[:, J]),\\; Q_R = \\mathrm{orth}(W[I, :]^T),\\; Ŵ_r = Q_C [Q_C^T W Q_R]_r Q_R^T

    U* = C⁺WR⁺ minimises ‖W − CUR‖_F (Stewart 1999; Mahoney & Drineas 2009, Eq. 3). Its rank-r truncation is the
    best rank-r approximation within range(C) × range(Rᵀ). k_c = n_landmarks (default 2·rank),
    k_r = ⌈row_ratio · k_c⌉. Cost: landmark rule + one pass W Q_R (2mnk_r flops) + QRs.

    No a-priori theorem is evaluated for the blocked landmark rules; for single-pivot RPCholesky columns see
    :func:`..landmarks.adaptive`.
    """

    landmarks: str = "adaptive"
    n_landmarks: int | None = None
    row_ratio: float = 1.0
    kind: ClassVar[str] = "optimal_core"

    def __post_init__(self) -> None:
        _check_rule(self.landmarks)
        if self.n_landmarks is not None:
            _check_nonneg_int(self.n_landmarks, "n_landmarks")
        _check_ratio(self.row_ratio, "row_ratio")

    def sizes(self, rank: int, m: int, n: int) -> tuple[int, int]:
        kc = _landmark_count(self.n_landmarks, min(2 * rank, m, n))
        return kc, min(math.ceil(self.row_ratio * kc), m)

    def check(self, rank: int, m: int, n: int) -> None:
        kc, kr = self.sizes(rank, m, n)
        _check_landmarks(kc, kr, rank, m, n)

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        b, m, n = W.shape
        kc, kr = self.sizes(rank, m, n)
        lm = LANDMARK_RULES[self.landmarks](W, rank, kr, kc, generator)
        Qc = kernels.orth(torch.gather(W, 2, lm.cols.unsqueeze(1).expand(b, m, kc)))  # (b, m, k_c)
        Qr = kernels.orth(torch.gather(W, 1, lm.rows.unsqueeze(2).expand(b, kr, n)).mT)  # (b, n, k_r)
        core = Qc.mT @ (W @ Qr)  # (b, k_c, k_r)
        X, S, Yh = torch.linalg.svd(core, full_matrices=False)
        svd = SVDFactors(Qc @ X[..., :rank], S[..., :rank], Yh[..., :rank, :] @ Qr.mT)
        eff = torch.linalg.matrix_rank(core)  # (b,)
        return Approximation(svd, lm.rows, lm.cols, eff, 0.0)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        return None


def project_truncate(W: Tensor, Q: Tensor, rank: int) -> SVDFactors:
    """Best rank-r approximation of W within range(Q): Ŵ_r = Q [QᵀW]_r (HMT 2011, Alg. 5.1); Q: (b, m, k)."""
    Ut, S, Vh = kernels.wide_svd(Q.mT @ W)  # (b, k, k), (b, k), (b, k, n)
    return SVDFactors(Q @ Ut[..., :rank], S[..., :rank], Vh[..., :rank, :])


def _check_sketch(value: object) -> None:
    if not isinstance(value, str) or (value not in ("gaussian", "krylov") and value not in LANDMARK_RULES):
        raise fail(UnknownNameError, "sketch", f"must be 'gaussian', 'krylov' or a landmark rule {sorted(LANDMARK_RULES)}",
                   repr(value))


@dataclass(frozen=True, slots=True)
class GramNystrom:
    r"""Nyström approximation of the Gram matrix WᵀW, applied to W: Ŵ = P_{WX} W, truncated to rank r.

    .. math:: \widehat{W^TW} = (W^TW)X\,(X^TW^TWX)^+X^T(W^TW) = W^T P_{WX} W,\qquad Ŵ_r = Q\,[Q^TW]_r,\; Q = \mathrm{orth}((WW^T)^q W X)

    The Nyström approximation of the PSD matrix WᵀW with test matrix X equals Wᵀ P_{WX} W (Gittens & Mahoney
    2016, "Revisiting the Nyström method", JMLR 17, Sec. 2; Halko, Martinsson & Tropp 2011, Sec. 5.4), so the
    matching approximation of W is the orthogonal projection of W onto range(WX): never worse than ‖W‖_F and,
    on flat spectra, far more accurate than the oblique generalized Nyström. X is Gaussian (``sketch="gaussian"``,
    then this is randomized subspace iteration), a block-Krylov test matrix (``sketch="krylov"``:
    X = [Ω, (WᵀW)Ω, …, (WᵀW)^q Ω] with blocks of ⌈k/(q+1)⌉ columns, so range(WX) is the block Krylov space of
    Musco & Musco 2015, "Randomized block Krylov methods for stronger and faster approximate SVD", Alg. 2 — the
    whole Krylov space is kept rather than its last block, which resolves flat spectra with fewer products),
    or the landmark columns J of a rule (``sketch="adaptive"`` etc., then X = I[:, J], Ŵ = C C⁺ W: the
    column-Nyström / CX decomposition, RPCholesky on WᵀW for ``adaptive``).
    k = min(rank + oversample, m, n) (default oversample = rank), q = power_iters.
    Cost: (2q + 2) passes over W with k columns (Krylov: 2q + 1 passes with k/(q+1) columns and one with k),
    plus the landmark rule.

    A-priori (Gaussian X, q = 0, oversample p >= 2): E‖W − Ŵ_r‖_F <= √(2 + r/(p − 1))·τ_{r+1} (see
    :class:`RandomizedSVD`). For q >= 1 or landmark sketches no factor is reported.
    """

    sketch: str = "gaussian"
    oversample: int | None = None
    power_iters: int = 1
    kind: ClassVar[str] = "gram"

    def __post_init__(self) -> None:
        _check_sketch(self.sketch)
        if self.oversample is not None:
            _check_nonneg_int(self.oversample, "oversample")
        _check_nonneg_int(self.power_iters, "power_iters")

    def size(self, rank: int, m: int, n: int) -> int:
        return min(rank + (rank if self.oversample is None else self.oversample), m, n)

    def check(self, rank: int, m: int, n: int) -> None:
        return None

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        b, m, n = W.shape
        k = self.size(rank, m, n)
        if self.sketch == "krylov":
            Q = kernels.block_krylov(W, k, self.power_iters, generator)  # (b, m, k)
            return Approximation(project_truncate(W, Q, rank), _no_landmarks(W), _no_landmarks(W), _full_rank(W), 0.0)
        if self.sketch == "gaussian":
            cols = _no_landmarks(W)
            Y = W @ kernels.gaussian((b, n, k), W, generator)  # (b, m, k)
        else:
            cols = LANDMARK_RULES[self.sketch](W, rank, 1, k, generator).cols  # (b, k)
            Y = torch.gather(W, 2, cols.unsqueeze(1).expand(b, m, k))  # (b, m, k) = C
        Q = kernels.subspace_iteration(W, kernels.orth(Y), self.power_iters)  # (b, m, k)
        return Approximation(project_truncate(W, Q, rank), _no_landmarks(W), cols, _full_rank(W), 0.0)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        p = self.size(rank, m, n) - rank
        if self.sketch != "gaussian" or self.power_iters or p < 2:
            return None
        return math.sqrt(2 + rank / (p - 1))


@dataclass(frozen=True, slots=True)
class RandomizedSVD:
    """Randomized SVD baseline with explicit oversampling p and power iterations q (Halko, Martinsson & Tropp).

    .. math:: Q = \\mathrm{orth}((WW^T)^q W Ω),\\; Ω ∈ R^{n×(r+p)},\\; Ŵ_r = Q\\,[Q^T W]_r

    HMT 2011, Alg. 4.4 (subspace iteration) + Alg. 5.1 (direct SVD). Unlike ``torch.svd_lowrank`` the
    oversampling is explicit and every draw comes from the generator. Cost (2q + 2) passes with r + p columns.

    A-priori (q = 0): E‖W − Ŵ_r‖_F <= √(2 + r/(p − 1)) · τ_{r+1} for p >= 2, from HMT Thm. 10.5 (squared form)
    and ‖W − Q[QᵀW]_r‖_F² = ‖(I − QQᵀ)W‖_F² + ‖QᵀW − [QᵀW]_r‖_F² <= ‖(I − QQᵀ)W‖_F² + τ²_{r+1}.
    """

    oversample: int = 10
    power_iters: int = 2
    kind: ClassVar[str] = "rsvd"

    def __post_init__(self) -> None:
        _check_nonneg_int(self.oversample, "oversample")
        _check_nonneg_int(self.power_iters, "power_iters")

    def check(self, rank: int, m: int, n: int) -> None:
        return None

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        k = min(rank + self.oversample, *W.shape[-2:])
        Q = kernels.range_finder(W, k, self.power_iters, generator)  # (b, m, k)
        return Approximation(project_truncate(W, Q, rank), _no_landmarks(W), _no_landmarks(W), _full_rank(W), 0.0)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        p = min(rank + self.oversample, m, n) - rank
        if self.power_iters or p < 2:
            return None
        return math.sqrt(2 + rank / (p - 1))


@dataclass(frozen=True, slots=True)
class ExactSVD:
    """Exact truncated SVD (Eckart–Young–Mirsky optimum), the accuracy reference. Cost O(mn·min(m, n))."""

    kind: ClassVar[str] = "svd"

    def check(self, rank: int, m: int, n: int) -> None:
        return None

    def build(self, W: Tensor, rank: int, generator: torch.Generator) -> Approximation:
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        svd = SVDFactors(U[..., :rank], S[..., :rank], Vh[..., :rank, :])
        return Approximation(svd, _no_landmarks(W), _no_landmarks(W), _full_rank(W), 0.0)

    def apriori_factor(self, rank: int, m: int, n: int) -> float | None:
        return 1.0


METHODS: dict[str, Method] = {
    "gram": GramNystrom(),
    "generalized": GeneralizedNystrom(),
    "cross": CrossNystrom(),
    "cross_lstsq": CrossNystrom(n_landmarks=None, row_ratio=2.0),
    "optimal_core": OptimalCoreNystrom(),
    "rsvd": RandomizedSVD(),
    "svd": ExactSVD(),
}


def register_method(name: str, config: Method) -> Method:
    """Register a method config under ``name`` (overwrites); it must provide ``build``, ``check``, ``apriori_factor``."""
    return register(METHODS, name, config, ("build", "check", "apriori_factor", "kind"))
