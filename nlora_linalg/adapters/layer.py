"""The three-factor adapter module: y = base(x) + s · B N A · dropout(x), without forming ΔW in forward.

Supported base layers: ``torch.nn.Linear`` (weight (out, in)) and the Hugging Face GPT-2 ``Conv1D`` (weight
(in, out)), reached through one transpose helper (:func:`weight_matrix` / :func:`set_weight_matrix`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..linalg.policy import NonFiniteError, ParameterError, all_finite, fail

__all__ = [
    "SUPPORTED_LAYERS",
    "ThreeFactorLinear",
    "is_supported",
    "weight_matrix",
    "set_weight_matrix",
    "UnsupportedLayerError",
]


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is a dependency, but keep the core importable without it
        return None
    return Conv1D


CONV1D = _conv1d_type()
SUPPORTED_LAYERS: tuple[type, ...] = (nn.Linear,) + ((CONV1D,) if CONV1D is not None else ())


class UnsupportedLayerError(ParameterError):
    """A target module is not one of :data:`SUPPORTED_LAYERS`."""


def is_supported(module: nn.Module) -> bool:
    """True for ``nn.Linear`` and HF ``Conv1D`` (exact types and subclasses)."""
    return isinstance(module, SUPPORTED_LAYERS)


def check_supported(module: nn.Module, name: str) -> None:
    """Raise :class:`UnsupportedLayerError` naming the module and listing the supported types."""
    if not is_supported(module):
        supported = ", ".join(f"{t.__module__}.{t.__name__}" for t in SUPPORTED_LAYERS)
        raise fail(UnsupportedLayerError, name, f"must be one of {supported}", type(module).__name__)


def weight_matrix(module: nn.Module) -> Tensor:
    """The layer's weight as an (out, in) matrix: ``Linear.weight`` or ``Conv1D.weight.T`` (a view)."""
    return module.weight.T if CONV1D is not None and isinstance(module, CONV1D) else module.weight


def set_weight_matrix(module: nn.Module, W: Tensor) -> None:
    """Copy an (out, in) matrix into the layer's weight in place (transposing for ``Conv1D``)."""
    with torch.no_grad():
        weight_matrix(module).copy_(W)


class ThreeFactorLinear(nn.Module):
    """Frozen base layer plus a trainable low-rank update s · B N A (N optional).

    .. math:: y = \\mathrm{base}(x) + s\\,\\big((\\mathrm{drop}(x) A^T) N^T\\big) B^T,\\quad
              A ∈ R^{r×in}, N ∈ R^{r×r}, B ∈ R^{out×r}

    Forward never forms ΔW (cost O((in + out + r)·r) per token on top of the base layer). ``merge`` adds
    s·BNA into the base weight (computed in float32 on a copy, checked finite, then committed) and ``unmerge``
    subtracts it again. ``init_B``, ``init_N``, ``init_A`` (non-persistent buffers) hold the factors the frozen
    residual was built from, for residual inits (W_res = W − s·B₀N₀A₀); they are empty (0-size) otherwise.

    Args:
        base: ``nn.Linear`` or HF ``Conv1D``; its parameters are frozen.
        A: (r, in); N: (r, r) or None; B: (out, r); stored as parameters in the base weight's dtype.
        scaling: s (α/r, or α/√r for rsLoRA). dropout: probability on the adapter's input.
        trainable: which of "A", "N", "B" get ``requires_grad``.
        init: (B₀, N₀, A₀) of a residual init, or None.
    """

    def __init__(
        self,
        base: nn.Module,
        A: Tensor,
        N: Tensor | None,
        B: Tensor,
        scaling: float,
        dropout: float = 0.0,
        trainable: frozenset[str] = frozenset({"A", "N", "B"}),
        init: tuple[Tensor, Tensor | None, Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_supported(base, "base")
        out_f, in_f = weight_matrix(base).shape
        r = A.shape[0]
        if A.shape != (r, in_f) or B.shape != (out_f, r) or (N is not None and N.shape != (r, r)):
            raise fail(ParameterError, "A, N, B", f"must have shapes ({r}, {in_f}), ({r}, {r}), ({out_f}, {r})",
                       f"{tuple(A.shape)}, {None if N is None else tuple(N.shape)}, {tuple(B.shape)}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        dtype = weight_matrix(base).dtype
        self.lora_A = nn.Parameter(A.detach().to(dtype).clone(memory_format=torch.contiguous_format), requires_grad="A" in trainable)
        self.lora_N = None if N is None else nn.Parameter(N.detach().to(dtype).clone(memory_format=torch.contiguous_format), requires_grad="N" in trainable)
        self.lora_B = nn.Parameter(B.detach().to(dtype).clone(memory_format=torch.contiguous_format), requires_grad="B" in trainable)
        self.scaling = float(scaling)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        empty = A.new_zeros(0)
        B0, N0, A0 = init if init is not None else (empty, None, empty)
        self.register_buffer("init_B", B0.detach().to(dtype).clone(memory_format=torch.contiguous_format), persistent=False)
        self.register_buffer("init_N", empty if N0 is None else N0.detach().to(dtype).clone(memory_format=torch.contiguous_format), persistent=False)
        self.register_buffer("init_A", A0.detach().to(dtype).clone(memory_format=torch.contiguous_format), persistent=False)

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    @property
    def residual(self) -> bool:
        """True when the base weight was reduced by s·B₀N₀A₀ at init."""
        return self.init_A.numel() > 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        h = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T  # (..., r)
        if self.lora_N is not None:
            h = h @ self.lora_N.T  # (..., r)
        return y + (self.scaling * (h @ self.lora_B.T)).to(y.dtype)  # (..., out)

    def delta_weight(self) -> Tensor:
        """ΔW = s·B N A as an (out, in) float32 matrix (float64 if the factors are float64)."""
        dt = torch.float64 if self.lora_A.dtype == torch.float64 else torch.float32
        BN = self.lora_B.to(dt) if self.lora_N is None else self.lora_B.to(dt) @ self.lora_N.to(dt)
        return self.scaling * (BN @ self.lora_A.to(dt))

    def _add_to_base(self, sign: float) -> None:
        W = weight_matrix(self.base)
        new = W.detach().to(self.delta_weight().dtype) + sign * self.delta_weight()
        if not all_finite(new):
            raise fail(NonFiniteError, "merge", "the merged weight must be finite (nothing was changed)",
                       f"{int((~torch.isfinite(new)).sum())} non-finite entries")
        set_weight_matrix(self.base, new.to(W.dtype))

    def merge(self) -> None:
        """Add s·BNA into the base weight (on a copy, checked finite, then committed). Idempotence: raises if merged."""
        if self.merged:
            raise fail(ParameterError, "merge", "adapter must not be merged already", "merged=True")
        self._add_to_base(+1.0)
        self.merged = True

    def unmerge(self) -> None:
        """Subtract s·BNA from the base weight again. Raises if not merged."""
        if not self.merged:
            raise fail(ParameterError, "unmerge", "adapter must be merged first", "merged=False")
        self._add_to_base(-1.0)
        self.merged = False

    def extra_repr(self) -> str:
        out_f, in_f = weight_matrix(self.base).shape
        return (f"in={in_f}, out={out_f}, rank={self.rank}, N={self.lora_N is not None}, scaling={self.scaling:g}, "
                f"residual={self.residual}, merged={self.merged}")
