"""Shared by the studies (public API only): the compared methods, spectral statistics of weights, per-layer
initialisation measurements, paired statistics, and CSV / result-folder helpers.

Spectral statistics of W with singular values σ₁ ≥ σ₂ ≥ … (float64):

    stable rank      ‖W‖_F² / ‖W‖₂² = Σσᵢ² / σ₁²                         (Rudelson–Vershynin 2007)
    effective rank   exp(−Σ pᵢ log pᵢ),  pᵢ = σᵢ / Σσⱼ                    (Roy–Vetterli 2007, Def. 1)
    tail energy at r Σ_{i>r} σᵢ² / Σσᵢ² = (optimal relative Frobenius error of rank r)²  (Eckart–Young)
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import pathlib
import platform
import re
import time
from dataclasses import dataclass

import numpy as np
import torch

from nlora_linalg import (
    INITS,
    LANDMARK_RULES,
    GramNystrom,
    NLoRAInit,
    __version__,
    reference_errors,
)


# ------------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Method:
    """A compared adapter init: ``init`` (registered name or init config; None = train the task head only) and
    its default learning rate, the centre of the LR grid searched by ``--full`` (:meth:`grid`)."""

    label: str
    init: object
    lr: float

    def grid(self, factors=(1 / 3, 1, 3)) -> tuple[float, ...]:
        """The default LR times ``factors``, each rounded to one significant digit (1e-3 → 3e-4, 1e-3, 3e-3)."""
        return tuple(sorted({float(f"{self.lr * f:.1g}") for f in factors}))


def _methods() -> dict[str, Method]:
    out = {name: Method(name, INITS[name], 1e-3) for name in ("lora", "pissa", "pissa_fast", "slora", "nlora")}
    for rule in LANDMARK_RULES:
        out[f"nlora[{rule}]"] = Method(f"nlora[{rule}]", NLoRAInit(method=GramNystrom(sketch=rule)), 1e-3)
    out["nlora_paper"] = Method("nlora_paper", INITS["nlora_paper"], 1e-3)
    # IntTune trains r² numbers per layer in orthonormal coordinates: a 10x larger step (docs/adapters.md).
    out["inttune"] = Method("inttune", INITS["inttune"], 1e-2)
    out["head_only"] = Method("head_only", None, 3e-3)
    return out


#: Every compared method, by label: LoRA, PiSSA (full SVD), PiSSA-fast (randomized SVD), SLoRA, NLoRA (default
#: Gaussian sketch, and one per landmark rule), the released NLoRA code (nlora_paper), IntTune, and the task head
#: alone (encoders only: the floor IntTune's r² parameters per layer must beat).
METHODS: dict[str, Method] = _methods()


# ------------------------------------------------------------------------------------- spectral statistics
def spectral_stats(sigma: torch.Tensor, rank: int) -> dict[str, torch.Tensor]:
    """Stable rank, effective rank and tail energy at ``rank`` of singular values ``sigma`` (*, k), descending;
    float64 tensors of shape (*,). Formulas in the module docstring."""
    s = sigma.double()
    e = s.square()
    p = s / s.sum(-1, keepdim=True)
    entropy = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)
    return {"stable_rank": e.sum(-1) / e[..., 0], "effective_rank": entropy.exp(),
            "tail_energy": e[..., rank:].sum(-1) / e.sum(-1)}


def layer_type(name: str) -> str:
    """The layer's role inside its block: ``model.layers.3.self_attn.q_proj.weight`` → ``q_proj``,
    ``encoder.layer.0.attention.output.dense.weight`` → ``attention.output.dense``."""
    m = re.search(r"\.\d+\.(.+)\.weight$", name)
    role = m.group(1) if m else name
    return re.sub(r"^(self_attn|mlp|attention\.self)\.", "", role)


def block_index(name: str) -> int:
    m = re.search(r"\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def stacks(weights: dict[str, torch.Tensor]) -> list[tuple[str, list[str], torch.Tensor]]:
    """Same-type weights stacked in block order: [(layer type, names, (L, out, in) tensor)]."""
    groups: dict[str, list[str]] = {}
    for name in weights:
        groups.setdefault(layer_type(name), []).append(name)
    return [(kind, sorted(names, key=block_index), torch.stack([weights[n] for n in sorted(names, key=block_index)]))
            for kind, names in groups.items()]


def measure_init(method: Method, W: torch.Tensor, rank: int, seed: int, reference) -> dict[str, list[float]]:
    """Build ``method``'s adapter init on the stack W (L, m, n) (scaling 1) and measure it per layer.

    Returns lists of length L: relative error ‖W − BNA‖_F/‖W‖_F of the factors the init builds from W and its
    certified bound (NaN when the init does not approximate W: lora, slora), error/optimal, top-r singular-value
    error (max relative), ``init_change`` = ‖W_init − W‖_F/‖W‖_F, how much the model's weight moves at init (0 for
    residual inits and for ΔW = 0; ‖BNA‖_F/‖W‖_F for the paper's code, which adds BNA to an unchanged W), ‖B‖₂,
    ‖N‖₂, ‖A‖₂, cond₂(N), and the batched build time per layer in ms (wall clock around the build).

    One generator per stack, so the draws are distributed like, but not identical to, those of
    ``inject_adapters`` (which seeds one generator per module name).
    """
    g = torch.Generator(device=W.device).manual_seed(seed)
    init = INITS[method.init] if isinstance(method.init, str) else method.init
    t0 = time.perf_counter()
    built = init.build(W, rank, 1.0, g)
    ms = 1e3 * (time.perf_counter() - t0) / W.shape[0]
    nan = torch.full((W.shape[0],), math.nan, dtype=torch.float64)
    sv_N = torch.linalg.svdvals(built.N.double()) if built.N is not None else None
    out = {"norm_B": torch.linalg.matrix_norm(built.B.double(), 2).expand(W.shape[0]),
           "norm_N": nan if sv_N is None else sv_N[..., 0].expand(W.shape[0]),
           "norm_A": torch.linalg.matrix_norm(built.A.double(), 2).expand(W.shape[0]),
           "cond_N": nan if sv_N is None else (sv_N[..., 0] / sv_N[..., -1]).expand(W.shape[0])}
    if built.residual:  # W_init = (W − BNA) + BNA = W
        out["init_change"] = torch.zeros_like(nan)
    else:  # W_init = W + BNA (BA without N)
        NA = built.A if built.N is None else built.N @ built.A  # (L, r, n)
        out["init_change"] = torch.linalg.matrix_norm((built.B @ NA).double()) / torch.linalg.matrix_norm(W.double())
    if built.factors is not None:
        ref = reference_errors(W, built.factors.B, built.factors.N, built.factors.A, reference=reference)
        out |= {"error": ref.error, "bound": built.factors.bound.double().reshape(-1).expand(W.shape[0]), "ratio": ref.ratio,
                "sigma_error": ref.sigma}
    else:
        out |= {"error": nan, "bound": nan, "ratio": nan, "sigma_error": nan}
    return {k: [float(x) for x in v.cpu()] for k, v in out.items()} | {"ms_per_layer": [ms] * W.shape[0]}


# -------------------------------------------------------------------------------------------- statistics
def t_interval(x, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t confidence interval of the mean of the samples ``x`` (NaN width for n < 2)."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean()) if x.size else math.nan
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def grouped(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, groups and rows in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _numbers(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if isinstance(r[key], (int, float)) and not math.isnan(r[key])]


def mean(rows: list[dict], key: str) -> float:
    """Mean of ``key`` over ``rows``, NaN entries (no value defined) left out; NaN if none is left."""
    vals = _numbers(rows, key)
    return sum(vals) / len(vals) if vals else math.nan


def max_(rows: list[dict], key: str) -> float:
    """Maximum of ``key`` over ``rows``, NaN entries left out; NaN if none is left."""
    vals = _numbers(rows, key)
    return max(vals) if vals else math.nan


# ------------------------------------------------------------------------------------------- files
def new_folder(root: str, study: str, suffix: str = "") -> pathlib.Path:
    """A new folder results/<study>/<YYYYmmdd-HHMMSS><suffix>[-k]/ (-k added when processes start together)."""
    base = pathlib.Path(root) / study / f"{datetime.datetime.now():%Y%m%d-%H%M%S}{suffix}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        path = base if k == 1 else base.with_name(f"{base.name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free folder name next to {base}")


def write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the same keys; an empty list writes nothing) atomically."""
    if not rows:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


#: Columns that are identifiers, never numbers (a hex key like "1234e567…" would otherwise parse as a float).
STRING_COLUMNS = frozenset({"key", "split_hash", "task", "model", "dataset", "method", "phase", "layer", "type",
                            "set", "shape"})


def read_csv(path: pathlib.Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers parsed back to int/float except in
    :data:`STRING_COLUMNS`; [] if the file is absent."""
    if not path.exists():
        return []

    def parse(v: str):
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with path.open(newline="") as fh:
        return [{k: v if k in STRING_COLUMNS else parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def environment() -> dict:
    """Machine, versions and date recorded with every study output."""
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "nlora_linalg": __version__,
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_json(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o)
                               else str(o)))
