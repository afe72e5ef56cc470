"""Inject three-factor adapters into a model (atomically), with a report; merge/unmerge all of them."""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from ..linalg.policy import NonFiniteError, ParameterError, RankError, UnknownNameError, all_finite, fail
from .inits import INITS, AdapterInit, InitConfig, check_trainable, residual_weight
from .layer import ThreeFactorLinear, check_supported, is_supported, set_weight_matrix, weight_matrix

__all__ = [
    "AdapterConfig",
    "ReportRow",
    "InjectionReport",
    "inject_adapters",
    "adapter_modules",
    "merge_adapters",
    "unmerge_adapters",
    "module_seed",
    "DEFAULT_TARGETS",
]

#: Default target rule (targets=None): every supported linear layer inside a numbered block (``...layers.3.q_proj``,
#: ``...layer.0.attention.self.query``, ``h.2.attn.c_attn``), i.e. not embeddings, heads or poolers.
DEFAULT_TARGETS = r".*\.\d+\..*"


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """What to inject and how.

    init: a name in :data:`INITS` or an init config (e.g. ``NLoRAInit(method=GramNystrom(sketch="leverage"))``).
    rank: r >= 1 (checked against every target: r <= min(in, out)).
    alpha: scaling numerator; s = alpha/r (``rslora``: alpha/√r). None means alpha = r (s = 1).
    targets: None (the Linear/Conv1D layers whose names match :data:`DEFAULT_TARGETS`), a regex matched against full module names (``re.fullmatch``), or a
        tuple of names, each matching a full name or its last components (``"q_proj"``, ``"attn.c_attn"``).
    dropout: in [0, 1). trainable: which of "A", "N", "B" train (None: the init's default).
    seed: base seed; each module's generator is seeded from (seed, module name), so inits do not depend on order.
    init_batch_bytes: same-shape weights are stacked and initialised in one batched call up to this many bytes of
        float32 stack (>= 1; memory cap of the whole-model init). 1 initialises layer by layer.
    """

    init: object = "nlora"
    rank: int = 8
    alpha: float | None = None
    rslora: bool = False
    targets: object = None
    dropout: float = 0.0
    trainable: frozenset[str] | None = None
    seed: int = 0
    init_batch_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if isinstance(self.init, str):
            if self.init not in INITS:
                raise fail(UnknownNameError, "init", f"must be one of {sorted(INITS)} or an init config", repr(self.init))
        elif not all(hasattr(self.init, a) for a in ("build", "trainable", "kind")):
            raise fail(ParameterError, "init", "must be a registered name or an init config", repr(self.init))
        if isinstance(self.init_batch_bytes, bool) or not isinstance(self.init_batch_bytes, int) \
                or self.init_batch_bytes < 1:
            raise fail(ParameterError, "init_batch_bytes", "must be an int >= 1", repr(self.init_batch_bytes))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise fail(RankError, "rank", "must be an int >= 1", repr(self.rank))
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not math.isfinite(self.alpha) or self.alpha <= 0):
            raise fail(ParameterError, "alpha", "must be None or a finite number > 0", repr(self.alpha))
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise fail(ParameterError, "dropout", "must be in [0, 1)", repr(self.dropout))
        if self.trainable is not None:
            check_trainable(self.trainable)
        if not (self.targets is None or isinstance(self.targets, str)
                or (isinstance(self.targets, tuple) and self.targets and all(isinstance(t, str) for t in self.targets))):
            raise fail(ParameterError, "targets", "must be None, a regex string or a non-empty tuple of names",
                       repr(self.targets))
        if isinstance(self.targets, str):
            try:
                re.compile(self.targets)
            except re.error as exc:
                raise fail(ParameterError, "targets", f"must be a valid regex ({exc})", repr(self.targets)) from None

    @property
    def init_config(self) -> InitConfig:
        return INITS[self.init] if isinstance(self.init, str) else self.init

    @property
    def init_name(self) -> str:
        return self.init if isinstance(self.init, str) else self.init_config.kind

    @property
    def scaling(self) -> float:
        alpha = self.rank if self.alpha is None else self.alpha
        return alpha / (math.sqrt(self.rank) if self.rslora else self.rank)

    @property
    def trainable_factors(self) -> frozenset[str]:
        return self.init_config.trainable if self.trainable is None else self.trainable

    def matches(self, name: str) -> bool:
        """Whether a module name is targeted."""
        if self.targets is None or isinstance(self.targets, str):
            return re.fullmatch(self.targets or DEFAULT_TARGETS, name) is not None
        return any(name == t or name.endswith("." + t) for t in self.targets)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One replaced module: name, layer type, (out, in), init, rank, relative init error and its certified bound
    (NaN for random inits), failure probability, spectral norms of B, N, A, cond(N), trainable parameters, time."""

    name: str
    layer: str
    shape: tuple[int, int]
    init: str
    rank: int
    error: float
    bound: float
    delta: float
    norm_B: float
    norm_N: float
    norm_A: float
    cond_N: float
    trainable_params: int
    time_s: float


@dataclass(frozen=True, slots=True)
class InjectionReport:
    """What :func:`inject_adapters` did: the config and one :class:`ReportRow` per replaced module."""

    config: AdapterConfig
    rows: tuple[ReportRow, ...]
    trainable_params: int = field(default=0)

    def __str__(self) -> str:
        head = (f"{'module':52s} {'shape':>11s} {'err':>6s} {'bound':>6s} {'‖B‖':>7s} {'‖N‖':>7s} {'‖A‖':>7s} "
                f"{'cond N':>8s} {'train':>7s} {'ms':>6s}")
        lines = [f"init={self.config.init_name} rank={self.config.rank} scaling={self.config.scaling:g} "
                 f"modules={len(self.rows)} trainable={self.trainable_params}", head]
        for r in self.rows:
            lines.append(f"{r.name[-52:]:52s} {r.shape[0]:>5d}x{r.shape[1]:<5d} {r.error:6.3f} {r.bound:6.3f} "
                         f"{r.norm_B:7.3f} {r.norm_N:7.3f} {r.norm_A:7.3f} {r.cond_N:8.2f} {r.trainable_params:7d} "
                         f"{1e3 * r.time_s:6.1f}")
        return "\n".join(lines)


def module_seed(seed: int, name: str) -> int:
    """A 63-bit seed from (seed, module name) via SHA-256, so each module's init is order-independent."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def adapter_modules(model: nn.Module) -> Iterator[tuple[str, ThreeFactorLinear]]:
    """(name, module) for every :class:`ThreeFactorLinear` in ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, ThreeFactorLinear):
            yield name, module


def _targets(model: nn.Module, config: AdapterConfig) -> list[tuple[str, nn.Module]]:
    if any(True for _ in adapter_modules(model)):
        raise fail(ParameterError, "model", "must not already contain adapters (inject once; load or merge instead)",
                   f"{sum(1 for _ in adapter_modules(model))} ThreeFactorLinear modules")
    chosen = [(n, m) for n, m in model.named_modules()
              if n and config.matches(n) and (config.targets is not None or is_supported(m))]
    if not chosen:
        available = [n for n, m in model.named_modules() if is_supported(m)]
        raise fail(ParameterError, "targets", f"must match at least one module; supported layers are {available}",
                   repr(config.targets))
    for name, module in chosen:
        check_supported(module, f"targets[{name!r}]")
        out_f, in_f = weight_matrix(module).shape
        if config.rank > min(out_f, in_f):
            raise fail(RankError, "rank", f"must be <= min(out, in) = {min(out_f, in_f)} for module {name!r}",
                       config.rank)
        if not all_finite(module.weight):
            raise fail(NonFiniteError, f"{name}.weight", "base weights must be finite", "NaN/Inf entries")
    return chosen


def _spectral(t: Tensor | None) -> tuple[float, float]:
    if t is None:
        return 1.0, 1.0
    s = torch.linalg.svdvals(t.detach().float())
    return float(s[0]), float(s[0] / s[-1]) if float(s[-1]) > 0 else math.inf


def _chunks(chosen: list[tuple[str, nn.Module]], max_bytes: int) -> list[list[tuple[str, nn.Module]]]:
    """Group targets by (shape, dtype, device) in model order, then split each group so that its float32 stack
    stays under ``max_bytes`` (at least one matrix per chunk)."""
    groups: dict[tuple, list[tuple[str, nn.Module]]] = {}
    for name, module in chosen:
        W = weight_matrix(module)
        groups.setdefault((tuple(W.shape), W.dtype, W.device), []).append((name, module))
    chunks = []
    for (shape, _, _), members in groups.items():
        size = max(1, max_bytes // (4 * shape[0] * shape[1]))
        chunks += [members[i : i + size] for i in range(0, len(members), size)]
    return chunks


def _build_chunk(chunk: list[tuple[str, nn.Module]], config: AdapterConfig) -> list[tuple]:
    """Initialise a chunk of same-shape modules in one batched core call, with one generator per module."""
    W = torch.stack([weight_matrix(m).detach() for _, m in chunk])  # (c, out, in) base dtype
    Wc = W.to(torch.float64 if W.dtype == torch.float64 else torch.float32)
    gens = tuple(torch.Generator(device=W.device).manual_seed(module_seed(config.seed, n)) for n, _ in chunk)
    t0 = time.perf_counter()
    ini = config.init_config.build(Wc, config.rank, config.scaling, gens)
    # Round the factors to the stored (base) dtype first, so W_res is built from exactly what is stored and saved.
    ini = ini._replace(A=ini.A.to(W.dtype), B=ini.B.to(W.dtype), N=None if ini.N is None else ini.N.to(W.dtype))
    W_res = residual_weight(Wc, ini.B, ini.N, ini.A, config.scaling).to(W.dtype) if ini.residual else None
    elapsed = (time.perf_counter() - t0) / len(chunk)
    out = []
    for i, (name, module) in enumerate(chunk):
        if W_res is not None and not all_finite(W_res[i]):
            raise fail(NonFiniteError, f"{name}.weight", "the residual W − s·BNA must be finite in the base dtype",
                       f"dtype {W.dtype}")
        one = AdapterInit(ini.A[i], None if ini.N is None else ini.N[i], ini.B[i], ini.residual, None)
        out.append((name, module, one, None if W_res is None else W_res[i],
                    *_row(name, module, one, ini.factors, i, config, elapsed)))
    return out


def _row(name, module, ini: AdapterInit, f, i: int, config: AdapterConfig, elapsed: float):
    trainable = config.trainable_factors if ini.N is not None else config.trainable_factors - {"N"}
    sizes = {"A": ini.A.numel(), "N": 0 if ini.N is None else ini.N.numel(), "B": ini.B.numel()}
    nB, _ = _spectral(ini.B)
    nN, cN = _spectral(ini.N)
    nA, _ = _spectral(ini.A)
    row = ReportRow(
        name=name, layer=type(module).__name__, shape=tuple(weight_matrix(module).shape), init=config.init_name,
        rank=config.rank, error=float("nan") if f is None else float(f.error[i]),
        bound=float("nan") if f is None else float(f.bound[i]), delta=0.0 if f is None else f.delta,
        norm_B=nB, norm_N=nN, norm_A=nA, cond_N=cN, trainable_params=sum(sizes[k] for k in trainable), time_s=elapsed,
    )
    return trainable, row


def inject_adapters(model: nn.Module, config: AdapterConfig | None = None, *,
                    progress: Callable[[int, int], None] | None = None, **kwargs) -> InjectionReport:
    """Replace every targeted ``nn.Linear``/``Conv1D`` of ``model`` by a :class:`ThreeFactorLinear`, in place.

    .. math:: W ↦ W_{res} = W − s·B_0N_0A_0 \\text{ (residual inits)},\\qquad y = W_{res}x + s·BNAx

    Same-shape targets are stacked and initialised in one batched core call per chunk of at most
    ``init_batch_bytes`` (float32), each with its own generator seeded from (seed, module name), so the factors
    equal per-layer calls up to batched-BLAS rounding. All inits are computed first; only then are the modules
    replaced and residual weights written, so an error leaves the model untouched. Afterwards only adapter factors listed in ``trainable`` require grad (every
    other parameter of the model is frozen; unfreeze a task head yourself).

    Args:
        model: any ``nn.Module`` (e.g. a transformers model).
        config: an :class:`AdapterConfig`; or pass its fields as keyword arguments
            (``inject_adapters(model, init="nlora", rank=8, targets=("q_proj", "v_proj"))``).
        progress: called as ``progress(done, total)`` after each batched chunk with the number of modules
            initialised so far and in all (e.g. to drive a progress bar; the pipeline's is ``init``).

    Returns:
        :class:`InjectionReport` with one row per replaced module.

    Raises:
        UnknownNameError: unknown init (known ones listed). RankError: rank <= 0 or > min(in, out) of a target.
        ParameterError: no target matched (the supported module names are listed), or adapters already present.
        UnsupportedLayerError: a matched module is not Linear/Conv1D. NonFiniteError: NaN/Inf in a base weight.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 6))
        >>> report = inject_adapters(net, init="lora", rank=2, targets=("0",))
        >>> report.trainable_params
        28
    """
    if config is None:
        config = AdapterConfig(**kwargs)
    elif kwargs:
        config = replace(config, **kwargs)
    chosen = _targets(model, config)
    built = []
    for chunk in _chunks(chosen, config.init_batch_bytes):
        built += _build_chunk(chunk, config)
        if progress is not None:
            progress(len(built), len(chosen))
    order = {name: i for i, (name, _) in enumerate(chosen)}
    built.sort(key=lambda item: order[item[0]])
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module, ini, W_res, trainable, _ in built:  # commit: nothing was changed before this point
        if W_res is not None:
            set_weight_matrix(module, W_res)
        init = (ini.B, ini.N, ini.A) if ini.residual else None
        adapter = ThreeFactorLinear(module, ini.A, ini.N, ini.B, config.scaling, config.dropout, trainable, init)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, adapter)
    rows = tuple(row for *_, row in built)
    return InjectionReport(config, rows, sum(r.trainable_params for r in rows))


def merge_adapters(model: nn.Module) -> int:
    """Merge every adapter into its base weight (see :meth:`ThreeFactorLinear.merge`); returns how many."""
    mods = [(n, m) for n, m in adapter_modules(model)]
    for name, m in mods:  # check every merged weight first, so a failure changes nothing
        merged = weight_matrix(m.base).detach().to(m.delta_weight().dtype) + m.delta_weight()
        if m.merged or not all_finite(merged):
            raise fail(NonFiniteError if not m.merged else ParameterError, name,
                       "must be unmerged and give a finite merged weight (nothing was changed)",
                       "merged" if m.merged else "non-finite merged weight")
    for _, m in mods:
        m.merge()
    return len(mods)


def unmerge_adapters(model: nn.Module) -> int:
    """Undo :func:`merge_adapters`; returns how many adapters were unmerged."""
    mods = [m for _, m in adapter_modules(model)]
    for m in mods:
        m.unmerge()
    return len(mods)
