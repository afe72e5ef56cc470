"""Initialisation error and cost against rank, for every init, over all adapted layers of both models and on
synthetic LLaMA-2-7B-shaped weights.

    python studies/init_error_and_cost.py                       # ranks 4 8 16 32 64, both models + 4096², 11008×4096
    python studies/init_error_and_cost.py --ranks 8 16 --synthetic 1024x1024 --models minilm
    python studies/init_error_and_cost.py --plot-only results/init_error_and_cost/<timestamp>

For every (matrix set, method, rank) it builds the adapter init with the init's own ``build`` on same-shape
stacks (scaling 1; one generator per stack, where ``inject_adapters`` seeds one per module) and records, per layer: relative Frobenius error ‖W − BNA‖_F/‖W‖_F,
its certified bound, error / Eckart–Young optimum, top-r singular-value error, cond₂(N), and the build time per
layer (wall clock of the batched build, certificate included). The synthetic matrices are
power-law weights W = U diag(i^−α) Vᵀ (α = 0.5, Haar U, V; one of each shape, labelled ``synthetic``), whose
flat spectra resemble the real ones (docs/numerics.md).

Writes results/init_error_and_cost/<timestamp>/: layers.csv (one row per layer), table.csv (means per matrix set,
method, rank), error_vs_rank.png, time_vs_rank.png, error_vs_time.png. Public API only.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study as S  # noqa: E402
from nlora_linalg import load_linear_weights, minilm_path, smollm2_path  # noqa: E402

STUDY = "init_error_and_cost"
MODEL_PATHS = {"minilm": minilm_path, "smollm2-135m": smollm2_path}
DEFAULT_METHODS = [m for m, spec in S.METHODS.items() if spec.init is not None]


def synthetic(shape: tuple[int, int], alpha: float, seed: int) -> torch.Tensor:
    """W = U diag(i^−α) Vᵀ with Haar-random orthonormal U (m×k), V (n×k), k = min(m, n); float32 (m, n)."""
    m, n = shape
    k = min(m, n)
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]
    s = torch.arange(1, k + 1, dtype=torch.float64) ** -alpha
    return ((U * s) @ V.T).float()


def matrix_sets(models: list[str], shapes: list[tuple[int, int]], alpha: float):
    """(set name, layer type, names, stack) for every same-type stack of each model and each synthetic shape."""
    for model in models:
        for kind, names, W in S.stacks(load_linear_weights(MODEL_PATHS[model]())):
            yield model, kind, names, W
    for i, shape in enumerate(shapes):
        label = f"{shape[0]}x{shape[1]}"
        yield "synthetic", label, [f"synthetic.{label}"], synthetic(shape, alpha, seed=i)[None]


def measure(models, shapes, alpha, ranks, methods, out: pathlib.Path, log) -> None:
    rows = []
    for set_name, kind, names, W in matrix_sets(models, shapes, alpha):
        t0 = time.perf_counter()
        svd = torch.linalg.svd(W.double(), full_matrices=False)  # reference, once per stack
        for rank in ranks:
            for label in methods:
                meas = S.measure_init(S.METHODS[label], W, rank, 0, svd)
                rows += [{"set": set_name, "type": kind, "layer": name, "shape": f"{W.shape[1]}x{W.shape[2]}",
                          "method": label, "rank": rank, **{k: v[i] for k, v in meas.items()}}
                         for i, name in enumerate(names)]
        S.write_csv(out / "layers.csv", rows)
        log(f"{set_name} {kind} ({len(names)} × {W.shape[1]}×{W.shape[2]}): {len(ranks)} ranks × {len(methods)} "
            f"methods in {time.perf_counter() - t0:.0f} s")


def tabulate(out: pathlib.Path) -> list[dict]:
    """table.csv: per (set, method, rank) the mean over layers of error, ratio, σ error, max cond N, and the total
    build time of all layers of the set (ms; for models, the cost of initialising the whole model)."""
    table = [{"set": set_name, "method": method, "rank": rank, "layers": len(rs), "error": S.mean(rs, "error"),
              "ratio": S.mean(rs, "ratio"), "sigma_error": S.mean(rs, "sigma_error"),
              "max_cond_N": S.max_(rs, "cond_N"), "total_ms": sum(r["ms_per_layer"] for r in rs)}
             for (set_name, method, rank), rs in S.grouped(S.read_csv(out / "layers.csv"),
                                                           ("set", "method", "rank")).items()]
    S.write_csv(out / "table.csv", table)
    return table


def plot(out: pathlib.Path) -> list[pathlib.Path]:
    """error_vs_rank.png, time_vs_rank.png, error_vs_time.png from table.csv alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = S.read_csv(out / "table.csv")
    sets = list(dict.fromkeys(r["set"] for r in table))
    methods = list(dict.fromkeys(r["method"] for r in table))
    made = []
    for name, key, ylabel, log_y in (("error_vs_rank", "ratio", "error / optimal rank-r error (mean)", True),
                                     ("time_vs_rank", "total_ms", "build time of all layers (ms)", True)):
        fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
        for ax, set_name in zip(axes[0], sets):
            for m in methods:
                rs = sorted((r for r in table if r["set"] == set_name and r["method"] == m), key=lambda r: r["rank"])
                if rs and any(r[key] == r[key] for r in rs):
                    ax.plot([r["rank"] for r in rs], [r[key] for r in rs], marker="o", ms=3, lw=1, label=m)
            ax.set_xscale("log", base=2)
            if log_y:
                ax.set_yscale("log")
            ax.set_title(set_name, fontsize=10)
            ax.set_xlabel("rank r")
        axes[0][0].set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        made.append(out / f"{name}.png")
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for m in methods:
            rs = [r for r in table if r["set"] == set_name and r["method"] == m and r["ratio"] == r["ratio"]]
            if rs:
                ax.scatter([r["total_ms"] for r in rs], [r["ratio"] for r in rs], s=10, label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("build time of all layers (ms)")
        ax.set_title(set_name, fontsize=10)
    axes[0][0].set_ylabel("error / optimal (every rank)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "error_vs_time.png", dpi=110)
    plt.close(fig)
    return made + [out / "error_vs_time.png"]


def main(argv=None) -> pathlib.Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--models", nargs="*", default=list(MODEL_PATHS), choices=list(MODEL_PATHS))
    ap.add_argument("--synthetic", nargs="*", default=["4096x4096", "11008x4096"], help="shapes MxN")
    ap.add_argument("--alpha", type=float, default=0.5, help="power-law decay of the synthetic spectra")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=DEFAULT_METHODS)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default="results")
    ap.add_argument("--plot-only", metavar="PATH")
    args = ap.parse_args(argv)
    if args.plot_only:
        out = pathlib.Path(args.plot_only)
        if not (out / "layers.csv").exists():
            raise SystemExit(f"--plot-only: {out} holds no layers.csv")
        tabulate(out)
        print("\n".join(map(str, plot(out))))
        return out
    try:
        shapes = [tuple(int(x) for x in s.lower().split("x")) for s in args.synthetic]
    except ValueError:
        raise SystemExit(f"--synthetic: shapes must look like 4096x4096, got {args.synthetic}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    out = S.new_folder(args.out, STUDY)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}", flush=True)

    S.write_json(out / "plan.json", {"ranks": args.ranks, "models": args.models, "synthetic": args.synthetic,
                                     "alpha": args.alpha, "methods": args.methods, "environment": S.environment()})
    log(f"writing {out}")
    measure(args.models, shapes, args.alpha, args.ranks, args.methods, out, log)
    table = tabulate(out)
    made = plot(out)
    print(f"\n{'set':14s} {'method':22s} {'r':>3s} {'err/opt':>8s} {'σ err':>7s} {'cond N':>8s} {'ms (all)':>10s}")
    for r in table:
        print(f"{r['set']:14s} {r['method']:22s} {r['rank']:3d} {r['ratio']:8.3f} {r['sigma_error']:7.3f} "
              f"{r['max_cond_N']:8.1f} {r['total_ms']:10.1f}")
    log(f"done: {out} ({len(made)} plots)")
    return out


if __name__ == "__main__":
    main()
