"""Whole-model adapter initialisation cost: NLoRA (every landmark rule) vs PiSSA (full SVD), PiSSA-fast with
niter 1/2/4 (no oversampling, as PEFT's ``pissa_niter_K`` = torch.svd_lowrank(q=r, niter=K)) and the paper's
slices. Each method runs in its own subprocess, so its peak resident memory (VmHWM) is its own.

* SmolLM2-135M: ``inject_adapters`` on all 210 block projections (same-shape weights batched).
* LLaMA-2-7B shapes: one synthetic layer of each shape (q/k/v/o 4096×4096, gate/up 11008×4096, down
  4096×11008; σ_j = j^(−0.3), Haar-like random orthonormal factors) initialised with the same configs; the time of
  one layer's seven projections × 32 layers is printed as "extrapolated to 32 layers".

Reports time, speed-up over full-SVD PiSSA, peak RSS, and mean error/optimum (Frobenius, rank r).

    python benchmarks/whole_model_init.py [--rank 16] [--no-llama] [--device cpu]

Writes results/whole_model_init/<timestamp>.csv. Public API only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import torch

from _results import write_csv
from nlora_linalg import (
    LANDMARK_RULES,
    GramNystrom,
    NLoRAInit,
    PiSSAFastInit,
    inject_adapters,
    load_linear_weights,
    smollm2_path,
)

CACHE = pathlib.Path("results/whole_model_init/cache")
LLAMA = {"q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
         "gate_proj": (11008, 4096), "up_proj": (11008, 4096), "down_proj": (4096, 11008)}


def configs() -> dict[str, object]:
    out = {"nlora (gram, gaussian)": NLoRAInit()}
    out.update({f"nlora (gram, {rule})": NLoRAInit(method=GramNystrom(sketch=rule)) for rule in sorted(LANDMARK_RULES)
                if rule != "leverage"})  # exact leverage scores need the full SVD: as slow as PiSSA by design
    out["pissa (full SVD)"] = "pissa"
    out.update({f"pissa_fast niter={k} (PEFT-like)": PiSSAFastInit(oversample=0, power_iters=k) for k in (1, 2, 4)})
    out["paper slices (nlora_paper)"] = "nlora_paper"
    return out


def _vmhwm_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _llama_weights(device) -> dict[str, torch.Tensor]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    g = torch.Generator().manual_seed(0)
    for name, (m, n) in LLAMA.items():
        path = CACHE / f"{name}_{m}x{n}.pt"
        if not path.exists():
            k = min(m, n)
            U = torch.linalg.qr(torch.randn(m, k, generator=g)).Q
            V = torch.linalg.qr(torch.randn(n, k, generator=g)).Q
            s = torch.arange(1, k + 1, dtype=torch.float32) ** -0.3
            torch.save((U * s) @ V.T, path)
        out[name] = torch.load(path).to(device)
    return out


def one(label: str, model: str, rank: int, device: str) -> dict:
    """Run one config in this process and return its measurements."""
    init = configs()[label]
    dev = torch.device(device)
    if model == "smollm2":
        from transformers import AutoModelForCausalLM

        net = AutoModelForCausalLM.from_pretrained(str(smollm2_path()), dtype=torch.float32).to(dev)
    else:
        weights = _llama_weights(dev)
        net = torch.nn.ModuleDict({k: torch.nn.Linear(w.shape[1], w.shape[0], bias=False) for k, w in weights.items()})
        with torch.no_grad():
            for k, w in weights.items():
                net[k].weight.copy_(w)
        net = torch.nn.ModuleDict({"layers": torch.nn.ModuleDict({"0": net})}).to(dev)
    base_mb = _vmhwm_mb()
    t0 = time.perf_counter()
    report = inject_adapters(net, init=init, rank=rank)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    errors = [r.error for r in report.rows]
    return {"label": label, "model": model, "modules": len(report.rows), "time_s": wall,
            "peak_rss_mb": _vmhwm_mb(), "rss_before_mb": base_mb, "errors": errors,
            "names": [r.name for r in report.rows]}


def optimal_errors(model: str, rank: int, names: list[str]) -> list[float]:
    """Eckart–Young relative errors of each adapted weight (svdvals)."""
    if model == "smollm2":
        weights = load_linear_weights(smollm2_path())
        mats = [weights[f"{n}.weight"] for n in names]
    else:
        s = torch.arange(1, 4097, dtype=torch.float64) ** -0.3
        return [float((s[rank:] ** 2).sum().sqrt() / (s**2).sum().sqrt())] * len(names)
    out = []
    for W in mats:
        s = torch.linalg.svdvals(W.double())
        out.append(float((s[rank:] ** 2).sum().sqrt() / (s**2).sum().sqrt()))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("LABEL", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.rank, args.device)))
        return
    models = ["smollm2"] + ([] if args.no_llama else ["llama7b-shapes"])
    rows = []
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, rank {args.rank}")
    for model in models:
        results = []
        for label in configs():
            proc = subprocess.run([sys.executable, __file__, "--rank", str(args.rank), "--device", args.device,
                                   "--one", label, model], capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"{label} on {model} failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  ran {label} on {model}: {results[-1]['time_s']:.2f} s", flush=True)
        opt = optimal_errors(model, args.rank, results[0]["names"])
        t_pissa = next(r["time_s"] for r in results if r["label"].startswith("pissa (full"))
        scale = 32 if model != "smollm2" else 1
        print(f"\n== {model}: {results[0]['modules']} modules, rank {args.rank}"
              + (" — times extrapolated to 32 layers" if scale > 1 else ""))
        print(f"{'init':36s} {'time s':>9s} {'×PiSSA':>8s} {'peak RSS MB':>12s} {'err/opt':>8s}")
        for r in results:
            ratio = sum(e / o for e, o in zip(r["errors"], opt)) / len(opt) if r["errors"][0] == r["errors"][0] else float("nan")
            row = {"model": model, "init": r["label"], "modules": r["modules"], "time_s": r["time_s"] * scale,
                   "speedup_vs_pissa": t_pissa / r["time_s"], "peak_rss_mb": r["peak_rss_mb"], "err_over_opt": ratio}
            rows.append(row)
            print(f"{r['label']:36s} {row['time_s']:9.2f} {row['speedup_vs_pissa']:8.1f} {row['peak_rss_mb']:12.0f} "
                  f"{ratio:8.4f}")
    path = write_csv(rows, "whole_model_init")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
