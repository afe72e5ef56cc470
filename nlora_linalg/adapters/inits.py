"""Adapter initialisations under one signature: a registry of frozen init configs.

Every init is a frozen dataclass with ``kind``, a default ``trainable`` set and
``build(W, rank, scaling, generator) -> AdapterInit`` where W is the (*, out, in) base weight (or a stack of
same-shape weights) in float32/float64 and ``generator`` one generator or one per stacked matrix.
Factorisations come from the numerical core (:func:`nlora_linalg.nystrom_init`, :func:`paper_slices`); the
adapter layer never runs an SVD or draws landmarks itself. Register your own with :func:`register_init`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor

from ..linalg import LowRankFactors, RandomizedSVD, kernels, nystrom_init, paper_slices
from ..linalg.api import BALANCES
from ..linalg.methods import METHODS
from ..linalg.policy import ParameterError, UnknownNameError, fail, register

__all__ = [
    "AdapterInit",
    "INITS",
    "register_init",
    "LoRAInit",
    "PiSSAInit",
    "PiSSAFastInit",
    "SLoRAInit",
    "NLoRAInit",
    "NLoRAPaperInit",
    "IntTuneInit",
    "residual_weight",
]

ALL = frozenset({"A", "N", "B"})


class AdapterInit(NamedTuple):
    """Initial factors of one adapter.

    A: (*, r, in); N: (*, r, r) or None; B: (*, out, r) (compute dtype; * = the batch of stacked weights).
    residual: True when the frozen base weight becomes W − s·B N A (output unchanged at init).
    factors: the core's :class:`LowRankFactors` (error, bound, landmarks, timing) or None for random inits.
    """

    A: Tensor
    N: Tensor | None
    B: Tensor
    residual: bool
    factors: LowRankFactors | None


class InitConfig(Protocol):
    kind: ClassVar[str]
    trainable: frozenset[str]

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit: ...


def residual_weight(W: Tensor, B: Tensor, N: Tensor | None, A: Tensor, scaling: float) -> Tensor:
    """W_res = W − s·B N A in float32 (float64 for float64 W); the single definition used at init and at load.

    W: (*, out, in); B: (*, out, r); N: (*, r, r) or None; A: (*, r, in). Factors are made contiguous first, so the result
    does not depend on their memory layout (a saved and reloaded adapter reproduces it bit for bit).
    """
    dt = torch.float64 if W.dtype == torch.float64 else torch.float32
    B, A = B.to(dt).contiguous(), A.to(dt).contiguous()
    BN = B if N is None else B @ N.to(dt).contiguous()
    if W.ndim in (2, 3):  # one fused pass: W − s·(BN)A without a temporary ΔW
        return (torch.addmm if W.ndim == 2 else torch.baddbmm)(W.to(dt), BN, A, alpha=-scaling)
    return W.to(dt) - scaling * (BN @ A)


def _kaiming_uniform(rows: int, fan_in: int, like: Tensor, generator) -> Tensor:
    """U(−1/√fan_in, 1/√fan_in): PyTorch's/PEFT's kaiming_uniform_(a=√5) for (*, rows, fan_in) matrices, * the
    batch shape of ``like`` (one generator, or one per matrix)."""
    u = kernels.uniform((*like.shape[:-2], rows, fan_in), like, generator)
    return (2 * u - 1) / math.sqrt(fan_in)


def _zeros(like: Tensor, rows: int, cols: int) -> Tensor:
    return torch.zeros(*like.shape[:-2], rows, cols, dtype=like.dtype, device=like.device)


def _unscale(f: LowRankFactors, scaling: float, balance: str) -> tuple[Tensor, Tensor, Tensor]:
    """Factors with s·B N A = B_f N_f A_f, dividing by s where the balance puts the magnitude."""
    if balance == "sqrt":
        c = scaling**-0.5
        return c * f.B, f.N, c * f.A
    if balance == "cube_root":
        c = scaling ** (-1 / 3)
        return c * f.B, c * f.N, c * f.A
    return f.B, f.N / scaling, f.A


def check_trainable(value: object) -> None:
    """Raise unless ``value`` is a non-empty frozenset of "A", "N", "B"."""
    if not isinstance(value, frozenset) or not value or not value <= ALL:
        raise fail(ParameterError, "trainable", f"must be a non-empty frozenset of {sorted(ALL)}", repr(value))


def _check_balance(value: object) -> None:
    if not isinstance(value, str) or value not in BALANCES:
        raise fail(UnknownNameError, "balance", f"must be one of {sorted(BALANCES)}", repr(value))


def _check_method(value: object) -> None:
    if isinstance(value, str) and value not in METHODS:
        raise fail(UnknownNameError, "method", f"must be one of {sorted(METHODS)} or a method config", repr(value))


@dataclass(frozen=True, slots=True)
class LoRAInit:
    """LoRA (Hu et al. 2021): A ~ kaiming_uniform(a=√5) = U(±1/√in), B = 0, no N; ΔW = 0 at init."""

    trainable: frozenset[str] = frozenset({"A", "B"})
    kind: ClassVar[str] = "lora"

    def __post_init__(self) -> None:
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        A = _kaiming_uniform(rank, W.shape[-1], W, generator)  # (*, r, in)
        return AdapterInit(A, None, _zeros(W, W.shape[-2], rank), False, None)


@dataclass(frozen=True, slots=True)
class SLoRAInit:
    """SLoRA (NLoRA paper, Sec. 3): A and N ~ kaiming_uniform, B = 0; ΔW = B N A = 0 at init."""

    trainable: frozenset[str] = ALL
    kind: ClassVar[str] = "slora"

    def __post_init__(self) -> None:
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        A = _kaiming_uniform(rank, W.shape[-1], W, generator)  # (*, r, in)
        N = _kaiming_uniform(rank, rank, W, generator)  # (*, r, r)
        return AdapterInit(A, N, _zeros(W, W.shape[-2], rank), False, None)


def _pissa(W: Tensor, rank: int, scaling: float, method: object, generator: torch.Generator) -> AdapterInit:
    """B = U√S/√s, A = √S Vᵀ/√s from the core's SVD-type ``method``; no N; residual frozen."""
    f = nystrom_init(W, rank, method=method, balance="sqrt", generator=generator)
    B, _, A = _unscale(f, scaling, "sqrt")
    return AdapterInit(A, None, B, True, f)


@dataclass(frozen=True, slots=True)
class PiSSAInit:
    """PiSSA (Meng et al. 2024): exact top-r SVD, B = U√S/√s, A = √S Vᵀ/√s, residual W − s·BA frozen."""

    trainable: frozenset[str] = frozenset({"A", "B"})
    kind: ClassVar[str] = "pissa"

    def __post_init__(self) -> None:
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        return _pissa(W, rank, scaling, "svd", generator)


@dataclass(frozen=True, slots=True)
class PiSSAFastInit:
    """PiSSA with a seeded randomized SVD (explicit oversampling p, power iterations q), residual frozen."""

    oversample: int = 10
    power_iters: int = 4
    trainable: frozenset[str] = frozenset({"A", "B"})
    kind: ClassVar[str] = "pissa_fast"

    def __post_init__(self) -> None:
        RandomizedSVD(self.oversample, self.power_iters)  # validates both
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        return _pissa(W, rank, scaling, RandomizedSVD(self.oversample, self.power_iters), generator)


@dataclass(frozen=True, slots=True)
class NLoRAInit:
    """NLoRA, corrected: B, N, A from :func:`nystrom_init` (any method / landmark rule), residual W − s·BNA frozen.

    The model's output is unchanged at init. ``balance="sqrt"`` (default) gives B = U√Σ, N = I, A = √ΣVᵀ
    (divided by √s): orthogonal outer directions, a perfectly conditioned N, and PiSSA's magnitudes, so no update
    is magnified by an ill-conditioned core (the failure of pinv(W_IJ) cores: cond up to 6,000).
    """

    method: object = "gram"
    balance: str = "sqrt"
    trainable: frozenset[str] = ALL
    kind: ClassVar[str] = "nlora"

    def __post_init__(self) -> None:
        _check_method(self.method)
        _check_balance(self.balance)
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        f = nystrom_init(W, rank, method=self.method, balance=self.balance, generator=generator)
        B, N, A = _unscale(f, scaling, self.balance)
        return AdapterInit(A, N, B, True, f)


@dataclass(frozen=True, slots=True)
class IntTuneInit:
    """IntTune (NLoRA paper): the NLoRA init with only N trainable (r² parameters per layer).

    Default ``balance="svd"``: B, A orthonormal, N = Σ/s, so an update of N moves ΔW = s·B ΔN A in orthonormal
    coordinates of the top-r singular subspaces.
    """

    method: object = "gram"
    balance: str = "svd"
    trainable: frozenset[str] = frozenset({"N"})
    kind: ClassVar[str] = "inttune"

    def __post_init__(self) -> None:
        _check_method(self.method)
        _check_balance(self.balance)
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        return NLoRAInit(self.method, self.balance, self.trainable).build(W, rank, scaling, generator)


@dataclass(frozen=True, slots=True)
class NLoRAPaperInit:
    """The released NLoRA code, kept for comparison: B = W[:, :r], N = W[:r, :r], A = W[:r, :], no residual.

    Not a Nyström approximation (no pseudo-inverse) and the base weight is not reduced, so the model's output
    CHANGES before training (ΔW = s·BNA ≠ 0).
    """

    trainable: frozenset[str] = ALL
    kind: ClassVar[str] = "nlora_paper"

    def __post_init__(self) -> None:
        check_trainable(self.trainable)

    def build(self, W: Tensor, rank: int, scaling: float, generator: torch.Generator) -> AdapterInit:
        f = paper_slices(W, rank)
        return AdapterInit(f.A, f.N, f.B, False, f)


INITS: dict[str, InitConfig] = {
    "lora": LoRAInit(),
    "pissa": PiSSAInit(),
    "pissa_fast": PiSSAFastInit(),
    "slora": SLoRAInit(),
    "nlora": NLoRAInit(),
    "nlora_paper": NLoRAPaperInit(),
    "inttune": IntTuneInit(),
}


def register_init(name: str, config: InitConfig) -> InitConfig:
    """Register an init config under ``name`` (overwrites); it needs ``kind``, ``trainable`` and ``build``."""
    return register(INITS, name, config, ("build", "trainable", "kind"))
