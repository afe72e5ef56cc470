"""Per-matrix accuracy/time frontier of low-rank inits: full SVD, torch.svd_lowrank, the paper's slices, nystrom_init.

For every matrix it prints one table: wall time, speed-up over the full SVD, Frobenius error / Eckart–Young
optimum, the max relative error of the top-r singular values, and the captured fraction of the top-r left
singular subspace (1 = exact). Matrices: synthetic W = U diag(σ) Vᵀ with σ_j = j^(−α), Haar U, V
(4096×4096 and 11008×4096, α ∈ {0.3, 0.6, 1.0}), and real SmolLM2-135M weights (one of each projection kind).
The goal lines check: for each svd_lowrank niter, some nystrom_init setting at least as accurate (Frobenius and
σ) and at least as fast; and >= 40× faster than the full SVD at <= 1.05× the optimum with σ within 1 %.

    python benchmarks/init_frontier.py                 # everything (≈ 10 min on 2 CPU cores)
    python benchmarks/init_frontier.py --quick         # 1024×1024 synthetic + SmolLM2 only
    python benchmarks/init_frontier.py --device cuda   # on a GPU

Results are appended to results/init_frontier/<timestamp>.csv (git-ignored). Uses only the public API.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _results import write_csv
from nlora_linalg import (
    CrossNystrom,
    GeneralizedNystrom,
    GramNystrom,
    OptimalCoreNystrom,
    load_linear_weights,
    nystrom_init,
    paper_slices,
    smollm2_path,
)

SETTINGS = {
    "nystrom gram q0 p=r": GramNystrom(power_iters=0),
    "nystrom gram q1 p=4": GramNystrom(oversample=4, power_iters=1),
    "nystrom gram q1 p=r": GramNystrom(power_iters=1),
    "nystrom gram q2 p=4": GramNystrom(oversample=4, power_iters=2),
    "nystrom gram q2 p=r": GramNystrom(power_iters=2),
    "nystrom gram q4 p=r": GramNystrom(power_iters=4),
    "nystrom gram krylov q1 k=2r": "krylov:1:1",
    "nystrom gram krylov q2 k=3r": "krylov:2:2",
    "nystrom gram krylov q3 k=4r": "krylov:3:3",
    "nystrom gram adaptive q1": GramNystrom(sketch="adaptive", power_iters=1),
    "nystrom generalized q0": GeneralizedNystrom(power_iters=0),
    "nystrom generalized q1": GeneralizedNystrom(power_iters=1),
    "nystrom optimal_core adaptive": OptimalCoreNystrom(),
    "nystrom cross_lstsq adaptive": CrossNystrom(n_landmarks=None, row_ratio=2.0),
    "paper cross C·W_IJ⁺·R (first r)": CrossNystrom(landmarks="first"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic(m: int, n: int, alpha: float, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W = U diag(σ) Vᵀ, σ_j = j^(−α), Haar-random U (m×k), V (n×k), k = min(m, n); returns W, σ, U."""
    g = torch.Generator(device=device).manual_seed(seed)
    k = min(m, n)
    U = torch.linalg.qr(torch.randn(m, k, generator=g, device=device)).Q
    V = torch.linalg.qr(torch.randn(n, k, generator=g, device=device)).Q
    s = torch.arange(1, k + 1, dtype=torch.float32, device=device) ** (-alpha)
    return (U * s) @ V.T, s, U


def residual_ratio(W: torch.Tensor, US: torch.Tensor, Vh: torch.Tensor) -> float:
    """‖W − US·Vh‖_F / ‖W‖_F in row chunks (float64 accumulation)."""
    e2 = 0.0
    for i in range(0, W.shape[0], 1024):
        e2 += float(torch.linalg.vector_norm(W[i : i + 1024] - US[i : i + 1024] @ Vh, dtype=torch.float64) ** 2)
    return (e2 / float(torch.linalg.vector_norm(W, dtype=torch.float64) ** 2)) ** 0.5


def metrics(W, s, Ur, r, U_hat, sig_hat, US, Vh) -> dict:
    """Error/optimal, top-r σ error, captured left subspace."""
    opt = float((s[r:].double() ** 2).sum().sqrt() / (s.double() ** 2).sum().sqrt())
    err = residual_ratio(W, US, Vh)
    sig = float(((sig_hat[:r].double() - s[:r].double()).abs() / s[:r].double()).max())
    Q = torch.linalg.qr(U_hat).Q
    left = float(torch.linalg.matrix_norm(Ur.mT @ Q) ** 2 / r)
    return {"error": err, "optimal": opt, "ratio": err / opt, "sigma_err": sig, "left": left}


def timed(fn, device, reps):
    times, out = [], None
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def run_matrix(label, W, s, Ur, r, device, reps, svd_time):
    rows = []

    def add(name, t, U_hat, sig_hat, US, Vh):
        rows.append({"matrix": label, "shape": "x".join(map(str, W.shape)), "rank": r, "method": name, "time_s": t,
                     "speedup_vs_svd": svd_time / t, **metrics(W, s, Ur, r, U_hat, sig_hat, US, Vh)})

    for niter in (1, 2, 4):
        (U, S, V), t = timed(lambda: torch.svd_lowrank(W, q=r, niter=niter), device, reps)
        add(f"torch.svd_lowrank niter={niter}", t, U, S, U * S, V.T)
    f, t = timed(lambda: paper_slices(W, r), device, reps)
    add("paper slices B=W[:,:r] N=W[:r,:r] A=W[:r,:]", t, f.B, f.sigma, f.B @ f.N, f.A)
    for name, cfg in SETTINGS.items():
        if isinstance(cfg, str):  # "krylov:q:c": block Krylov, depth q, k = (c + 1)·r, i.e. blocks of r columns
            _, q, c = cfg.split(":")
            cfg = GramNystrom(sketch="krylov", power_iters=int(q), oversample=int(c) * r)
        g = torch.Generator(device=device).manual_seed(0)
        f, _ = timed(lambda: nystrom_init(W, r, method=cfg, generator=g, error="estimate"), device, 1)
        times = [nystrom_init(W, r, method=cfg, generator=g, error="estimate").time_s for _ in range(reps)]
        add(name, statistics.median(times), f.B, f.sigma, f.B * f.sigma.to(f.B.dtype), f.A)
    rows.append({"matrix": label, "shape": "x".join(map(str, W.shape)), "rank": r, "method": "full SVD (torch.linalg.svd)",
                 "time_s": svd_time, "speedup_vs_svd": 1.0, "error": float("nan"),
                 "optimal": float((s[r:].double() ** 2).sum().sqrt() / (s.double() ** 2).sum().sqrt()), "ratio": 1.0,
                 "sigma_err": 0.0, "left": 1.0})
    return rows


def print_table(rows):
    print(f"\n== {rows[0]['matrix']}  ({rows[0]['shape']}, r={rows[0]['rank']}, optimal rel. error {rows[0]['optimal']:.4f})")
    print(f"{'method':44s} {'time s':>8s} {'×SVD':>7s} {'err/opt':>8s} {'σ err':>8s} {'left':>6s}")
    for row in rows:
        print(f"{row['method']:44s} {row['time_s']:8.4f} {row['speedup_vs_svd']:7.1f} {row['ratio']:8.4f} "
              f"{row['sigma_err']:8.4f} {row['left']:6.3f}")
    ny = [x for x in rows if x["method"].startswith("nystrom")]
    for niter in (1, 2, 4):
        ref = next(x for x in rows if x["method"] == f"torch.svd_lowrank niter={niter}")
        wins = [x["method"] for x in ny if x["ratio"] <= ref["ratio"] and x["sigma_err"] <= ref["sigma_err"]
                and x["time_s"] <= ref["time_s"]]
        print(f"  goal vs niter={niter}: {'MET by ' + ', '.join(wins) if wins else 'not met'}")
    fast = [x["method"] for x in ny if x["speedup_vs_svd"] >= 40 and x["ratio"] <= 1.05]
    both = [x["method"] for x in ny if x["speedup_vs_svd"] >= 40 and x["ratio"] <= 1.05 and x["sigma_err"] <= 0.01]
    print(f"  goal >=40x faster than SVD at <=1.05x optimum: {'MET by ' + ', '.join(fast) if fast else 'not met'}")
    print(f"  ... and top-r σ within 1 %: {'MET by ' + ', '.join(both) if both else 'not met'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1024x1024 synthetic and SmolLM2 only")
    ap.add_argument("--no-smollm2", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    shapes = [(1024, 1024)] if args.quick else [(4096, 4096), (11008, 4096)]
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, rank {args.rank}")
    all_rows = []
    for m, n in shapes:
        svd_time = None
        for alpha in (0.3, 0.6, 1.0):
            W, s, U = synthetic(m, n, alpha, seed=1, device=device)
            if svd_time is None:  # the full SVD's time depends on the shape, not on the spectrum: time it once
                _, svd_time = timed(lambda: torch.linalg.svd(W, full_matrices=False), device, 1)
            rows = run_matrix(f"synthetic alpha={alpha}", W, s, U[:, : args.rank], args.rank, device, args.reps, svd_time)
            print_table(rows)
            all_rows += rows
            del W, U
    if not args.no_smollm2:
        weights = load_linear_weights(smollm2_path())
        for kind in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            name = next(k for k in weights if "layers.15." in k and kind in k)
            W = weights[name].to(device)
            (U, s, _), svd_time = timed(lambda: torch.linalg.svd(W, full_matrices=False), device, args.reps)
            rows = run_matrix(f"SmolLM2 {name}", W, s, U[:, : args.rank], args.rank, device, args.reps, svd_time)
            print_table(rows)
            all_rows += rows
    path = write_csv(all_rows, "init_frontier")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
