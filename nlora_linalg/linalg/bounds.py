"""Error checks of a low-rank approximation: exact residuals, certified randomized bounds, reference errors.

An error estimator is a frozen config with ``check(W, factors, generator) -> ErrorCheck`` on batched (b, m, n)
tensors; :data:`ERROR_ESTIMATORS` maps names to defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from . import kernels
from .kernels import SVDFactors
from .policy import ParameterError, check_matrix, check_open_unit, fail, flatten_batch

__all__ = [
    "ErrorCheck",
    "ExactError",
    "RandomizedError",
    "ERROR_ESTIMATORS",
    "chernoff_tau",
    "ReferenceErrors",
    "reference_errors",
]


class ErrorCheck(NamedTuple):
    """Result of an error estimator, all float64 of shape (b,) except ``delta``.

    error: relative Frobenius error ‖W − Ŵ‖_F / ‖W‖_F (exact or estimated).
    bound: upper bound on the relative Frobenius error, holding with probability >= 1 − delta.
    spectral_bound: upper bound on the absolute spectral error ‖W − Ŵ‖₂, probability >= 1 − delta.
    delta: failure probability of each bound (0.0 for exact checks).
    """

    error: Tensor
    bound: Tensor
    spectral_bound: Tensor
    delta: float


class ErrorEstimator(Protocol):
    kind: ClassVar[str]

    def check(self, W: Tensor, F: SVDFactors, generator: torch.Generator) -> ErrorCheck: ...


def relative(e2: Tensor, w2: Tensor) -> Tensor:
    """√(e2 / w2) with 0/0 = 0 (a zero W approximated by zero factors has relative error 0) and x/0 = inf."""
    safe = torch.where(w2 > 0, w2, torch.ones_like(w2))
    return torch.where(w2 > 0, (e2 / safe).sqrt(), torch.where(e2 > 0, torch.inf, 0.0))


@dataclass(frozen=True, slots=True)
class ExactError:
    """Exact relative residual ‖W − Ŵ‖_F / ‖W‖_F from one extra pass over W (row-chunked, float64 accumulation).

    The bound equals the error (delta = 0) and ‖W − Ŵ‖₂ <= ‖W − Ŵ‖_F is the spectral bound.
    Cost 2mnr flops, memory O(chunk) beyond W.
    """

    kind: ClassVar[str] = "exact"

    def check(self, W: Tensor, F: SVDFactors, generator: torch.Generator) -> ErrorCheck:
        e2 = kernels.residual_fro2(W, F)  # (b,)
        rel = relative(e2, kernels.fro2(W))
        return ErrorCheck(rel, rel, e2.sqrt(), 0.0)


def chernoff_tau(probes: int, delta: float) -> float:
    """The τ in (0, 1) with (τ·e^{1−τ})^{s/2} = δ, s = probes (bisection to full float64 precision)."""
    target = delta ** (2.0 / probes)
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid * math.exp(1.0 - mid) < target:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True, slots=True)
class RandomizedError:
    """Randomized a-posteriori estimate of ‖W − Ŵ‖_F and ‖W − Ŵ‖₂ with certified upper bounds.

    With Ω = [ω_1 … ω_s] ∈ R^{n×s} standard Gaussian, drawn after Ŵ is fixed, E = W − Ŵ:

    .. math:: \\hat e_F^2 = \\tfrac1s ‖EΩ‖_F^2, \\qquad P\\big(\\hat e_F^2 <= τ‖E‖_F^2\\big) <= (τ e^{1-τ})^{s/2}, \\; 0 < τ < 1.

    Proof sketch: ‖EΩ‖_F² = Σ_i σ_i²(E) χ²_{s,i}; with λ_i = σ_i²/‖E‖_F², E exp(−t ê²/‖E‖²) = Π_i (1 + 2tλ_i/s)^{−s/2}
    <= (1 + 2t/s)^{−s/2} because λ ↦ log(1 + 2tλ/s) is concave with value 0 at 0, hence subadditive; Chernoff's
    inequality optimised over t gives the bound (so the rank-one residual is the worst case; see Gratton &
    Titley-Peloquin 2018, "Improved bounds for small-sample estimation", SIMAX 39(2), for sharper variants).
    Choosing τ with
    (τe^{1−τ})^{s/2} = δ (:func:`chernoff_tau`) gives the certified bound ‖E‖_F <= ê_F/√τ with probability >= 1 − δ.

    Spectral norm (Halko, Martinsson & Tropp 2011, Lemma 4.1, after Dixon 1983): for α > 1,
    P(‖E‖₂ <= α√(2/π) max_i ‖Eω_i‖) >= 1 − α^{−s}; we use α = (δ/2)^{−1/s} and report the smaller of that and the
    Frobenius bound evaluated at δ/2 — both at failure probability δ/2, so their minimum holds with probability
    >= 1 − δ (union bound). ``bound`` (Frobenius, at δ) and ``spectral_bound`` each fail with probability <= δ.

    Cost: 2mn·s flops (one pass over W with s columns); no m×n temporary. Choose s >= 16: the factor 1/√τ is
    2.05 at (s, δ) = (16, 1e-3), 1.54 at (32, 1e-2), 1.35 at (64, 1e-2).
    """

    probes: int = 32
    delta: float = 1e-3
    kind: ClassVar[str] = "estimate"

    def __post_init__(self) -> None:
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or self.probes < 1:
            raise fail(ParameterError, "probes", "must be an int >= 1", repr(self.probes))
        check_open_unit(self.delta, "delta")

    def check(self, W: Tensor, F: SVDFactors, generator: torch.Generator) -> ErrorCheck:
        s = self.probes
        Omega = kernels.gaussian((W.shape[0], W.shape[-1], s), W, generator)  # (b, n, s)
        EO = W @ Omega - (F.U * F.sigma.unsqueeze(-2)) @ (F.Vh @ Omega)  # (b, m, s)
        col2 = torch.linalg.vector_norm(EO, dim=-2, dtype=torch.float64) ** 2  # (b, s)
        est2 = col2.mean(-1)  # (b,) unbiased estimate of ‖E‖_F²
        w2 = kernels.fro2(W)
        fro_bound = (est2 / chernoff_tau(s, self.delta)).sqrt()
        alpha = (self.delta / 2) ** (-1.0 / s)
        fro_half = (est2 / chernoff_tau(s, self.delta / 2)).sqrt()
        spec = torch.minimum(alpha * math.sqrt(2 / math.pi) * col2.max(-1).values.sqrt(), fro_half)
        return ErrorCheck(relative(est2, w2), relative(fro_bound**2, w2), spec, self.delta)


ERROR_ESTIMATORS: dict[str, ErrorEstimator] = {"exact": ExactError(), "estimate": RandomizedError()}


class ReferenceErrors(NamedTuple):
    """Accuracy of a rank-r factorisation against the exact SVD of W; float64 tensors of shape (*,).

    optimal: Eckart–Young optimum ‖W − [W]_r‖_F / ‖W‖_F.
    error: ‖W − BNA‖_F / ‖W‖_F.
    ratio: error / optimal (1 is optimal; inf when the optimum is 0 and the error is not).
    sigma: max_i |σ_i(BNA) − σ_i(W)| / σ_i(W) over the top r (relative singular-value error).
    left, right: ‖U_rᵀ Û‖_F² / r and ‖V_rᵀ V̂‖_F² / r, the captured fraction of the top-r singular subspaces
        (1 = identical subspaces; mean squared cosine of the principal angles).
    """

    optimal: Tensor
    error: Tensor
    ratio: Tensor
    sigma: Tensor
    left: Tensor
    right: Tensor


def reference_errors(
    W: Tensor, B: Tensor, N: Tensor, A: Tensor, *, reference: tuple[Tensor, Tensor, Tensor] | None = None
) -> ReferenceErrors:
    """Compare Ŵ = B N A with the exact SVD of W (Eckart–Young–Mirsky; principal angles, Björck & Golub 1973).

    .. math:: τ_{r+1} = (Σ_{j>r} σ_j^2)^{1/2},\\; \\text{ratio} = ‖W − Ŵ‖_F / τ_{r+1}

    W: (*, m, n); B: (*, m, r); N: (*, r, r); A: (*, r, n). ``reference``: the float64 thin SVD (U, S, Vh) of W
    if already computed (``torch.linalg.svd(W.double(), full_matrices=False)``), to compare several
    factorisations of the same W without repeating it. Otherwise runs a full SVD of W (cost O(mn·min(m, n))); for
    diagnostics and benchmarks, not the init path.
    Supports float16, bfloat16, float32 and float64 on any device; computes in float64.

    Raises:
        ShapeError / DTypeError / NonFiniteError: invalid inputs.
    """
    for t, name in ((W, "W"), (B, "B"), (N, "N"), (A, "A")):
        check_matrix(t, name)
    r = N.shape[-1]
    if B.shape[-1] != r or A.shape[-2] != r or B.shape[-2] != W.shape[-2] or A.shape[-1] != W.shape[-1]:
        raise fail(ParameterError, "B, N, A", f"must have shapes (*, m, r), (*, r, r), (*, r, n) for W {tuple(W.shape)}",
                   f"{tuple(B.shape)}, {tuple(N.shape)}, {tuple(A.shape)}")
    W3, batch = flatten_batch(W.double())
    B3, N3, A3 = (flatten_batch(t.double())[0] for t in (B, N, A))
    if reference is None:
        U, S, Vh = torch.linalg.svd(W3, full_matrices=False)
    else:
        U, S, Vh = reference  # (*, m, k), (*, k), (*, k, n)
        U, Vh, S = flatten_batch(U.double())[0], flatten_batch(Vh.double())[0], S.double().reshape(-1, S.shape[-1])
    w2 = (S**2).sum(-1)
    opt = relative((S[:, r:] ** 2).sum(-1), w2)
    hat = kernels.svd_of_product(B3 @ N3, A3, r)
    err = relative(kernels.residual_fro2(W3, hat), w2)
    ratio = torch.where(opt > 0, err / opt.clamp_min(torch.finfo(torch.float64).tiny), torch.where(err > 0, torch.inf, 1.0))
    sig = ((hat.sigma - S[:, :r]).abs() / S[:, :r].clamp_min(torch.finfo(torch.float64).tiny)).amax(-1)
    left = torch.linalg.matrix_norm(U[..., :r].mT @ hat.U) ** 2 / r
    right = torch.linalg.matrix_norm(Vh[:, :r] @ hat.Vh.mT) ** 2 / r
    out = (opt, err, ratio, sig, left, right)
    return ReferenceErrors(*(t.reshape(batch) for t in out))
