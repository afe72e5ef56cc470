"""Adapter state: adapter-only safetensors + JSON config, exact reload onto the original base, PEFT export.

File layout of :func:`save_adapter` (a folder):
    adapter.safetensors   {module}.lora_A (r, in), {module}.lora_N (r, r, if any), {module}.lora_B (out, r);
                          for residual inits also {module}.init_A/.init_N/.init_B (the factors W_res was built
                          from) and, where the core chose landmarks, {module}.landmark_rows/.landmark_cols.
    adapter_config.json   format version, library version, the AdapterConfig (init and its parameters, rank,
                          alpha, scaling, targets, dropout, trainable, seed) and per-module records
                          (name, layer type, shape, rank, residual, has_N, trainable, init error and bound).

Loading rebuilds W_res = W − s·B₀N₀A₀ from the stored B₀, N₀, A₀ with the same function used at injection, so the
adapted model is reproduced exactly without re-running any randomized decomposition (PiSSA's reload problem).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..linalg.policy import ParameterError, fail
from .inits import residual_weight
from .inject import InjectionReport, adapter_modules
from .layer import CONV1D, ThreeFactorLinear, check_supported, set_weight_matrix, weight_matrix

__all__ = ["to_jsonable", "save_adapter", "load_adapter", "export_peft", "AdapterMismatchError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"


class AdapterMismatchError(ParameterError):
    """A saved adapter does not fit the model it is loaded onto; the message names the first mismatch."""


def to_jsonable(value: object) -> object:
    """Config dataclasses (nested) as JSON-ready dicts with their ``kind``; sets become sorted lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = getattr(value, "kind", None)
        return {"kind": kind if isinstance(kind, str) else type(value).__name__,
                **{f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (frozenset, set, tuple, list)):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    return value


def _atomic_write_dir(path: pathlib.Path, files: dict[str, callable]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    for fname, write in files.items():
        write(tmp / fname)
    if path.exists():
        for fname in files:
            os.replace(tmp / fname, path / fname)
        tmp.rmdir()
    else:
        os.replace(tmp, path)


def save_adapter(model: nn.Module, path: str | os.PathLike, report: InjectionReport) -> pathlib.Path:
    """Write the adapter-only state of ``model`` (see module docstring) into folder ``path``, atomically.

    Args:
        model: a model with adapters (unmerged). path: output folder.
        report: the :class:`InjectionReport` returned by :func:`inject_adapters` (config and init errors).

    Returns:
        The folder path.

    Raises:
        ParameterError: no adapters in the model, or an adapter is merged.
    """
    from .. import __version__

    mods = list(adapter_modules(model))
    if not mods:
        raise fail(ParameterError, "model", "must contain adapters", "0 ThreeFactorLinear modules")
    tensors: dict[str, Tensor] = {}
    records = []
    rows = {r.name: r for r in report.rows}
    for name, m in mods:
        if m.merged:
            raise fail(ParameterError, "model", "adapters must be unmerged before saving", f"{name} is merged")
        tensors[f"{name}.lora_A"] = m.lora_A.detach()
        tensors[f"{name}.lora_B"] = m.lora_B.detach()
        if m.lora_N is not None:
            tensors[f"{name}.lora_N"] = m.lora_N.detach()
        if m.residual:
            tensors[f"{name}.init_A"], tensors[f"{name}.init_B"] = m.init_A, m.init_B
            if m.init_N.numel():
                tensors[f"{name}.init_N"] = m.init_N
        row = rows.get(name)
        records.append({
            "name": name, "layer": type(m.base).__name__, "shape": list(weight_matrix(m.base).shape), "rank": m.rank,
            "scaling": m.scaling, "residual": m.residual, "has_N": m.lora_N is not None,
            "trainable": sorted(k for k, p in (("A", m.lora_A), ("N", m.lora_N), ("B", m.lora_B))
                                if p is not None and p.requires_grad),
            "dropout": m.dropout.p if isinstance(m.dropout, nn.Dropout) else 0.0,
            "init_error": None if row is None else row.error, "init_bound": None if row is None else row.bound,
        })
    meta = {"format_version": FORMAT_VERSION, "nlora_linalg": __version__, "config": to_jsonable(report.config),
            "modules": records}
    contiguous = {k: v.contiguous().cpu() for k, v in tensors.items()}
    path = pathlib.Path(path)
    _atomic_write_dir(path, {
        WEIGHTS: lambda p: save_file(contiguous, str(p), metadata={"format": "nlora_linalg"}),
        CONFIG: lambda p: p.write_text(json.dumps(meta, indent=2)),
    })
    return path


def load_adapter(model: nn.Module, path: str | os.PathLike) -> dict:
    """Inject a saved adapter into a fresh copy of the ORIGINAL base model, reproducing the adapted model exactly.

    Every shape is checked before anything is changed; an error leaves the model untouched.

    Args:
        model: the original (un-adapted) base model. path: a folder written by :func:`save_adapter`.

    Returns:
        The parsed adapter_config.json.

    Raises:
        FileNotFoundError: missing files. AdapterMismatchError: a module missing, not Linear/Conv1D, or a tensor
        whose shape does not fit (the first mismatching tensor is named). ParameterError: model already adapted.
    """
    path = pathlib.Path(path)
    meta = json.loads((path / CONFIG).read_text())
    tensors = load_file(str(path / WEIGHTS))
    if any(True for _ in adapter_modules(model)):
        raise fail(ParameterError, "model", "must be the original base model without adapters", "adapters present")
    plan = []
    for rec in meta["modules"]:
        name = rec["name"]
        try:
            base = model.get_submodule(name)
        except AttributeError:
            raise fail(AdapterMismatchError, "model", "must contain every adapted module", f"missing {name!r}") from None
        check_supported(base, name)
        out_f, in_f = weight_matrix(base).shape
        r = rec["rank"]
        expect = {"lora_A": (r, in_f), "lora_B": (out_f, r), "lora_N": (r, r),
                  "init_A": (r, in_f), "init_B": (out_f, r), "init_N": (r, r)}
        for key, shape in expect.items():
            t = tensors.get(f"{name}.{key}")
            if t is not None and tuple(t.shape) != shape:
                raise fail(AdapterMismatchError, f"{name}.{key}", f"must have shape {shape} for base weight "
                           f"({out_f}, {in_f})", tuple(t.shape))
        plan.append((name, base, rec))
    for p in model.parameters():
        p.requires_grad_(False)
    for name, base, rec in plan:
        W = weight_matrix(base).detach()
        dev = W.device

        def get(key: str) -> Tensor | None:
            t = tensors.get(f"{name}.{key}")
            return None if t is None else t.to(dev)

        init = None
        if rec["residual"]:
            init = (get("init_B"), get("init_N"), get("init_A"))
            Wc = W.to(torch.float64 if W.dtype == torch.float64 else torch.float32)
            set_weight_matrix(base, residual_weight(Wc, *init, rec["scaling"]).to(W.dtype))
        adapter = ThreeFactorLinear(base, get("lora_A"), get("lora_N"), get("lora_B"), rec["scaling"], rec["dropout"],
                                    frozenset(rec["trainable"]), init)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, adapter)
    return meta


def export_peft(model: nn.Module, path: str | os.PathLike, base_model_name_or_path: str | None = None) -> pathlib.Path:
    """Write a standard PEFT LoRA folder whose update, applied to the ORIGINAL base weights, equals the adapter's.

    .. math:: ΔW = s·BNA − s·B_0N_0A_0 = \\underbrace{[sB \\;\\; −sB_0]}_{\\text{lora\\_B}\\,(out×2r)}
              \\underbrace{\\begin{bmatrix} NA \\\\ N_0A_0 \\end{bmatrix}}_{\\text{lora\\_A}\\,(2r×in)}

    N is folded into A exactly (in float32, stored in the factors' dtype); residual inits become a rank-2r LoRA
    (the PiSSA→LoRA conversion of Meng et al. 2024, Sec. 4), others a rank-r LoRA. ``lora_alpha`` equals the
    exported rank so PEFT's scaling is 1. Conv1D models are exported with ``fan_in_fan_out=True``. Task heads
    (``modules_to_save``) are not exported.

    Returns:
        The folder (adapter_config.json + adapter_model.safetensors), loadable with
        ``peft.PeftModel.from_pretrained(base_model, path)``.

    Raises:
        ParameterError: no adapters, adapters merged, or different exported ranks across modules.
    """
    mods = list(adapter_modules(model))
    if not mods:
        raise fail(ParameterError, "model", "must contain adapters", "0 ThreeFactorLinear modules")
    tensors, ranks, conv = {}, set(), False
    for name, m in mods:
        if m.merged:
            raise fail(ParameterError, "model", "adapters must be unmerged before export", f"{name} is merged")
        dt = torch.float64 if m.lora_A.dtype == torch.float64 else torch.float32
        A, B = m.lora_A.detach().to(dt), m.lora_B.detach().to(dt)
        NA = A if m.lora_N is None else m.lora_N.detach().to(dt) @ A
        lora_B, lora_A = m.scaling * B, NA
        if m.residual:
            A0, B0 = m.init_A.to(dt), m.init_B.to(dt)
            N0A0 = A0 if m.init_N.numel() == 0 else m.init_N.to(dt) @ A0
            lora_B, lora_A = torch.cat([lora_B, -m.scaling * B0], 1), torch.cat([lora_A, N0A0], 0)
        key = f"base_model.model.{name}"
        tensors[f"{key}.lora_A.weight"] = lora_A.to(m.lora_A.dtype).contiguous().cpu()
        tensors[f"{key}.lora_B.weight"] = lora_B.to(m.lora_A.dtype).contiguous().cpu()
        ranks.add(lora_A.shape[0])
        conv = conv or (CONV1D is not None and isinstance(m.base, CONV1D))
    if len(ranks) != 1:
        raise fail(ParameterError, "model", "all adapters must export to the same rank", sorted(ranks))
    (r,) = ranks
    cfg = {
        "peft_type": "LORA", "r": r, "lora_alpha": r, "lora_dropout": 0.0, "bias": "none",
        "target_modules": [n for n, _ in mods], "fan_in_fan_out": conv, "init_lora_weights": True,
        "use_rslora": False, "use_dora": False, "task_type": None, "inference_mode": True,
        "base_model_name_or_path": base_model_name_or_path, "modules_to_save": None,
    }
    path = pathlib.Path(path)
    _atomic_write_dir(path, {
        "adapter_model.safetensors": lambda p: save_file(tensors, str(p), metadata={"format": "pt"}),
        "adapter_config.json": lambda p: p.write_text(json.dumps(cfg, indent=2)),
    })
    return path
