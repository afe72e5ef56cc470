"""Landmark (row/column index) selection rules for Nyström and CUR approximations of a rectangular W.

Every rule has one signature, ``rule(W, rank, n_rows, n_cols, generator) -> Landmarks`` on a batched
(b, m, n) tensor in the compute dtype, and is registered by name in :data:`LANDMARK_RULES`. The public entry point
:func:`select_landmarks` validates its input and dispatches; register your own rule with
:func:`register_landmark_rule`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import kernels
from .policy import (
    check_generator,
    check_int,
    check_matrix,
    compute_dtype,
    eps,
    flatten_batch,
    lookup,
    make_generator,
    RankError,
    register,
)

__all__ = ["Landmarks", "LANDMARK_RULES", "register_landmark_rule", "select_landmarks"]


class Landmarks(NamedTuple):
    """Row and column landmarks of W with the scores the rule used.

    rows: (*, n_rows) int64, distinct row indices in selection order.
    cols: (*, n_cols) int64, distinct column indices in selection order.
    row_scores: (*, m) and col_scores: (*, n), float: the rule's importance of every row/column at the start
    (squared norms for ``adaptive``/``pivoted_qr``, leverage scores for ``leverage*``, constants otherwise).
    """

    rows: Tensor
    cols: Tensor
    row_scores: Tensor
    col_scores: Tensor


LandmarkRule = Callable[[Tensor, int, int, int, torch.Generator], Landmarks]
LANDMARK_RULES: dict[str, LandmarkRule] = {}


def register_landmark_rule(name: str, rule: LandmarkRule) -> LandmarkRule:
    """Register ``rule`` under ``name`` (overwrites). Returns the rule so it can be used as a decorator body."""
    return register(LANDMARK_RULES, name, rule)


def _rule(name: str) -> Callable[[LandmarkRule], LandmarkRule]:
    return lambda fn: register_landmark_rule(name, fn)


def _const_scores(W: Tensor, dim: int) -> Tensor:
    size = W.shape[dim]
    return torch.full((W.shape[0], size), 1.0 / size, dtype=W.dtype, device=W.device)


@_rule("first")
def first(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """The released NLoRA code's choice: rows 0..n_rows−1 and columns 0..n_cols−1 (no randomness)."""
    b = W.shape[0]
    rows = torch.arange(n_rows, device=W.device).expand(b, n_rows)
    cols = torch.arange(n_cols, device=W.device).expand(b, n_cols)
    return Landmarks(rows.contiguous(), cols.contiguous(), _const_scores(W, -2), _const_scores(W, -1))


@_rule("uniform")
def uniform(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """Rows and columns drawn uniformly without replacement."""
    rs, cs = _const_scores(W, -2), _const_scores(W, -1)
    rows = kernels.sample_without_replacement(rs, n_rows, generator)
    cols = kernels.sample_without_replacement(cs, n_cols, generator)
    return Landmarks(rows, cols, rs, cs)


def _leverage(U: Tensor, Vh: Tensor, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    rs = (U * U).sum(-1)  # (b, m): ℓ_i = ‖U_k[i, :]‖²
    cs = (Vh * Vh).sum(-2)  # (b, n): ℓ_j = ‖V_k[j, :]‖²
    rows = kernels.sample_without_replacement(rs, n_rows, generator)
    cols = kernels.sample_without_replacement(cs, n_cols, generator)
    return Landmarks(rows, cols, rs, cs)


@_rule("leverage")
def leverage(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """Rank-``rank`` leverage-score sampling without replacement from the exact SVD.

    ℓ_i = ‖U_k(i, :)‖², ℓ_j = ‖V_k(j, :)‖² with W = UΣVᵀ, k = rank; rows/columns are drawn with probability
    ∝ ℓ (Drineas, Mahoney & Muthukrishnan 2008, "Relative-error CUR matrix decompositions", Alg. 1–2).
    Cost: one full SVD, O(mn·min(m, n)).
    """
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    return _leverage(U[..., :rank], Vh[..., :rank, :], n_rows, n_cols, generator)


@_rule("leverage_sketch")
def leverage_sketch(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """Approximate rank-``rank`` leverage scores from a randomized sketch (no full SVD), then sample as ``leverage``.

    Q = orth((WWᵀ) W Ω), Ω ∈ R^{n×ℓ}, ℓ = min(2·rank + 8, m, n); QᵀW = ŨΣ̂V̂ᵀ; scores from QŨ_k and V̂_k
    (Drineas, Magdon-Ismail, Mahoney & Woodruff 2012, "Fast approximation of matrix coherence", Sec. 3;
    Halko, Martinsson & Tropp 2011, Alg. 4.4 with q = 1). Cost O(mnℓ).
    """
    ell = min(2 * rank + 8, *W.shape[-2:])
    Q = kernels.range_finder(W, ell, 1, generator)  # (b, m, ℓ)
    Ut, _, Vh = kernels.wide_svd(Q.mT @ W)  # (b, ℓ, ℓ), (b, ℓ), (b, ℓ, n)
    return _leverage(Q @ Ut[..., :rank], Vh[..., :rank, :], n_rows, n_cols, generator)


def pivoted_columns(W: Tensor, k: int, block: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Column pivots of W by (randomly) pivoted, blocked Gram–Schmidt on the residual; (b, m, n) -> (b, k), (b, n).

    Each round draws up to ``block`` candidate columns: at random with probability ∝ d_i = ‖(I − QQᵀ)W(:, i)‖²
    when ``generator`` is given (randomly pivoted QR, i.e. RPCholesky on WᵀW: Chen, Epperly, Tropp & Webber 2023,
    Alg. 1, and its block variant), greedily by the largest d_i otherwise (QR with column pivoting, Businger &
    Golub 1965). Candidates are orthogonalised one at a time, twice, against the accepted basis (CGS2); one whose
    residual is negligible (<= eps·max(m, n)·max_i‖W(:, i)‖, e.g. a duplicate of a column in the same block) is
    rejected and never drawn again. d is downdated with one pass QᵀW per round. Once every remaining residual is
    at rounding level (rank(W) < k), the missing pivots are filled by the initial scores (greedy) or uniformly
    (random), so they do not depend on rounding noise.
    Returns the pivots and the initial squared column norms.
    """
    b, m, n = W.shape
    d = (W * W).sum(-2)  # (b, n) squared residual column norms
    scores = d.clone()
    top = scores.max(-1, keepdim=True).values  # (b, 1)
    tol = eps(W.dtype) * max(m, n) * top.sqrt()  # (b, 1) negligible residual norm
    exhausted_level = eps(W.dtype) * max(m, n) * top  # (b, 1) rounding level of the downdated d
    available = torch.ones_like(d, dtype=torch.bool)
    picks = torch.zeros(b, k, dtype=torch.int64, device=W.device)
    count = torch.zeros(b, dtype=torch.int64, device=W.device)
    rows = torch.arange(b, device=W.device)
    Q = W.new_zeros(b, m, 0)
    while bool((count < k).any()):
        t = min(block, k - int(count.min()))
        exhausted = (d.masked_fill(~available, 0) <= exhausted_level).all(-1)  # (b,)
        if generator is None:
            keys = torch.where(exhausted.unsqueeze(-1), scores, d)
            idx = kernels.greedy_top(keys, t, available)  # (b, t)
        else:
            keys = torch.where(exhausted.unsqueeze(-1), available.to(d.dtype), d)
            idx = kernels.sample_without_replacement(keys, t, generator, available)  # (b, t)
        available = available.scatter(1, idx, False)
        start = Q.shape[-1]
        for j in range(t):
            c = torch.gather(W, 2, idx[:, j].view(b, 1, 1).expand(b, m, 1))  # (b, m, 1)
            for _ in range(2):
                c = c - Q @ (Q.mT @ c)  # CGS2 against the accepted basis
            norm = torch.linalg.vector_norm(c, dim=-2)  # (b, 1)
            strong = norm > tol  # (b, 1)
            accept = (strong.squeeze(-1) | exhausted) & (count < k)  # (b,)
            keep = (strong & accept.unsqueeze(-1)).unsqueeze(-1)  # (b, 1, 1)
            Q = torch.cat([Q, torch.where(keep, c / norm.clamp_min(1e-300).unsqueeze(-1), 0.0)], -1)
            picks[rows[accept], count[accept]] = idx[accept, j]
            count = count + accept.long()
        Qnew = Q[..., start:]  # (b, m, t)
        d = (d - ((Qnew.mT @ W) ** 2).sum(-2)).clamp_min(0).masked_fill(~available, 0)  # (b, n) downdate
    return picks, scores


def adaptive_block(k: int) -> int:
    """Block size of the ``adaptive`` rule: ⌈k / 8⌉, i.e. at most 8 passes over W per side."""
    return max(1, math.ceil(k / 8))


@_rule("adaptive")
def adaptive(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """Residual-based random pivots: blocked randomly pivoted QR on the columns of W and of Wᵀ.

    See :func:`pivoted_columns`. Expected column-projection error (single-pivot version) satisfies
    E‖W − P_C W‖_F² <= (1 + ε)‖W − [W]_r‖_F² once n_cols >= r/ε + r·log(1/(εη)),
    η = ‖W − [W]_r‖_F² / ‖W‖_F² (Chen, Epperly, Tropp & Webber 2023, Thm. 3.1 applied to WᵀW).
    Cost O(mn(n_rows + n_cols)) in at most 16 passes.
    """
    cols, cs = pivoted_columns(W, n_cols, adaptive_block(n_cols), generator)
    rows, rs = pivoted_columns(W.mT, n_rows, adaptive_block(n_rows), generator)
    return Landmarks(rows, cols, rs, cs)


@_rule("pivoted_qr")
def pivoted_qr(W: Tensor, rank: int, n_rows: int, n_cols: int, generator: torch.Generator) -> Landmarks:
    """Deterministic QR with column pivoting (greedy largest residual norm) on W and Wᵀ; ignores the generator.

    Businger & Golub 1965; Golub & Van Loan, 4th ed., Alg. 5.4.1. Cost O(mn(n_rows + n_cols)), one pass per pivot.
    """
    cols, cs = pivoted_columns(W, n_cols, 1, None)
    rows, rs = pivoted_columns(W.mT, n_rows, 1, None)
    return Landmarks(rows, cols, rs, cs)


def select_landmarks(
    W: Tensor,
    n_rows: int,
    n_cols: int | None = None,
    *,
    rule: str = "adaptive",
    rank: int | None = None,
    generator: torch.Generator | None = None,
) -> Landmarks:
    """Select row and column landmarks of W with a registered rule.

    .. math:: I ⊂ \\{0..m-1\\}, |I| = n_rows; \\; J ⊂ \\{0..n-1\\}, |J| = n_cols; \\; C = W[:, J], R = W[I, :], U = W[I, J].

    Args:
        W: (*, m, n) real tensor.
        n_rows: number of row landmarks, 1 <= n_rows <= m.
        n_cols: number of column landmarks, 1 <= n_cols <= n (default: n_rows).
        rule: one of :data:`LANDMARK_RULES` (``first``, ``uniform``, ``leverage``, ``leverage_sketch``,
            ``adaptive``, ``pivoted_qr``).
        rank: target rank for leverage scores (default: min(n_rows, n_cols)).
        generator: source of every random draw; a fresh one seeded from torch's default RNG if None.

    Returns:
        :class:`Landmarks` with batch shape ``*``; scores in the compute dtype.

    Supports float16, bfloat16, float32 and float64 on any device; computes in float32 (float64 for float64).

    Raises:
        TypeError / DTypeError / ShapeError / NonFiniteError: invalid W.
        RankError: a count outside its range. UnknownNameError: unknown rule (the message lists known ones).

    Example:
        >>> W = torch.randn(6, 5, dtype=torch.float64)
        >>> select_landmarks(W, 2, rule="first").cols.tolist()
        [0, 1]
    """
    check_matrix(W)
    fn = lookup(LANDMARK_RULES, rule, "rule")
    m, n = W.shape[-2:]
    n_cols = n_rows if n_cols is None else n_cols
    check_int(n_rows, "n_rows", 1, m, RankError)
    check_int(n_cols, "n_cols", 1, n, RankError)
    rank = min(n_rows, n_cols) if rank is None else check_int(rank, "rank", 1, min(m, n), RankError)
    check_generator(generator, W.device, math.prod(W.shape[:-2]))
    generator, _ = make_generator(generator, W.device)
    W3, batch = flatten_batch(W.to(compute_dtype(W.dtype)))
    lm = fn(W3, rank, n_rows, n_cols, generator)
    return Landmarks(*(t.reshape(*batch, t.shape[-1]) for t in lm))
