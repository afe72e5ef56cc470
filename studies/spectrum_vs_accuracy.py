"""Flagship study: weight spectra, initialisation error and downstream accuracy of NLoRA against LoRA and PiSSA.

    python studies/spectrum_vs_accuracy.py                 # default: ~15 min on a 2-core CPU
    python studies/spectrum_vs_accuracy.py --full          # the complete protocol (prints runs and time first)
    python studies/spectrum_vs_accuracy.py --full --shard 0/4   # a quarter of it (run 4 such processes)
    python studies/spectrum_vs_accuracy.py --plot-only results/spectrum_vs_accuracy/<timestamp>

Three parts, written to results/spectrum_vs_accuracy/<timestamp>/ (CSV + JSON first, then PNGs from them):

1. Spectra (spectra.csv, layer_stats.csv, spectra_<model>.png): the singular values of every adapted layer of
   all-MiniLM-L6-v2 and SmolLM2-135M, grouped by layer type; stable rank, effective rank and tail energy at r.
2. Initialisation (init_error.csv, init_error.png, conditioning.png): per method and layer, the relative
   Frobenius error of BNA against W, its certified bound, error/optimum, the top-r singular-value error and the
   factors' conditioning (‖B‖₂, ‖N‖₂, ‖A‖₂, cond₂ N).
3. Downstream (runs.csv, losses.csv, summary.csv, summary.md, accuracy_<task>.png, loss_<task>.png,
   gain_vs_spectrum.png): fine-tuning runs through the public pipeline, one per (task, method, lr, seed).
   Default: one seed at each method's default LR on MiniLM + Rotten Tomatoes (a demonstration, not a
   comparison: one seed is inside the noise). ``--full``: per method an LR grid (default × 1/3, 1, 3) chosen on
   the validation split with seed 0, then paired seeds at the chosen LR (the seed fixes adapter init, head init and
   data order, identically for every method); test accuracy mean ± 95 % t-interval and the paired difference
   to LoRA and to PiSSA with its interval. MiniLM on rotten_tomatoes, tweets, sarcasm (5 seeds) and
   SmolLM2-135M on rotten_tomatoes (label words) and arithmetic (exact match) with 3 seeds; test sets of 3,000.

Every run lives in a run store (``--store``, default results/store) keyed by a hash of its full config: a re-run
skips finished runs and resumes interrupted ones from their last checkpoint, so a killed study loses at most
``--checkpoint-every`` steps of one run. ``--shard i/n`` takes every n-th (task, method) group; after all shards
finish, one run without ``--shard`` finds everything stored and writes the complete tables and plots.
Public API only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _study as S  # noqa: E402
from nlora_linalg import (  # noqa: E402
    MODELS,
    AdapterConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    RunStore,
    TrainConfig,
    load_linear_weights,
    minilm_path,
    shard,
    smollm2_path,
)

STUDY = "spectrum_vs_accuracy"
MODEL_PATHS = {"minilm": minilm_path, "smollm2-135m": smollm2_path}

#: Seconds per (training example × step) and per evaluated example on the 2-core CPU this was developed on
#: (measured: MiniLM batch 16 ≈ 0.46 s/step, eval ≈ 7 ms/example; SmolLM2 ≈ 0.25 s/example, eval ≈ 0.08 s),
#: used for the time estimate until the store holds finished runs of the model.
CPU_COST = {"minilm": (0.029, 0.0075), "smollm2-135m": (0.25, 0.08)}


@dataclass(frozen=True)
class Task:
    """A (model, dataset) pair, its number of paired seeds and its max input tokens (prompt templates included)."""

    model: str
    dataset: str
    seeds: int
    max_length: int = 64

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}"


@dataclass(frozen=True)
class Protocol:
    """What a study runs. ``tune``: choose each method's LR on validation (seed 0) from its grid first, the
    method's default LR times ``lr_factors`` (rounded to one significant digit)."""

    name: str
    tasks: tuple[Task, ...]
    methods: tuple[str, ...]
    tune: bool
    steps: int
    batch_size: int
    val_size: int
    test_size: int
    rank: int = 8
    checkpoint_every: int = 50
    device: str = "auto"
    lr_factors: tuple[float, ...] = (1 / 3, 1, 3)


QUICK = Protocol("default", (Task("minilm", "rotten_tomatoes", 1),), tuple(S.METHODS), tune=False, steps=100,
                 batch_size=16, val_size=500, test_size=1000)
FULL = Protocol("full", (Task("minilm", "rotten_tomatoes", 5), Task("minilm", "tweets", 5), Task("minilm", "sarcasm", 5),
                         Task("smollm2-135m", "rotten_tomatoes", 3, 128), Task("smollm2-135m", "arithmetic", 3, 128)),
                tuple(S.METHODS), tune=True, steps=300, batch_size=16, val_size=1000, test_size=3000)


def run_config(p: Protocol, task: Task, method: S.Method, lr: float, seed: int, store: RunStore) -> RunConfig:
    """The pipeline config of one run (its hash is its key in the store)."""
    return RunConfig(
        model=ModelConfig(task.model, max_length=task.max_length),
        data=DataConfig(task.dataset, seed=0, val_size=p.val_size, test_size=p.test_size),
        adapter=None if method.init is None else AdapterConfig(init=method.init, rank=p.rank, seed=seed),
        train=TrainConfig(lr=lr, steps=p.steps, batch_size=p.batch_size, eval_every=0, eval_size=None, zero_shot=False,
                          checkpoint_every=p.checkpoint_every, seed=seed, device=p.device, progress=False),
        out_dir=str(store.root))


def groups(p: Protocol) -> list[tuple[Task, S.Method]]:
    """(task, method) pairs in a fixed order; the head-only baseline applies to encoders only."""
    out = []
    for task in p.tasks:
        for label in p.methods:
            m = S.METHODS[label]
            kind = MODELS[task.model][1] if task.model in MODELS else ModelConfig(task.model).kind()
            if m.init is None and kind != "encoder":
                continue
            out.append((task, m))
    return out


def planned_runs(p: Protocol, task: Task, method: S.Method) -> int:
    """Distinct runs of a group: the grid (seed 0) and the other seeds at the chosen LR, or the seeds alone."""
    return (len(method.grid(p.lr_factors)) + task.seeds - 1) if p.tune else task.seeds


def choose_lr(method: S.Method, val: dict[float, float]) -> float:
    """The grid LR (keys of ``val``) with the best validation accuracy; ties go to the LR nearest the default in
    log distance, then to the smaller LR."""
    return max(val, key=lambda g: (val[g], -abs(math.log(g / method.lr)), -g))


def remaining_runs(p: Protocol, task: Task, method: S.Method, store: RunStore) -> int:
    """Runs of the group not yet in the store (the chosen LR is known once the whole grid is stored)."""
    if not p.tune:
        return sum(not store.finished(run_config(p, task, method, method.lr, s, store)) for s in range(task.seeds))
    grid = {g: run_config(p, task, method, g, 0, store) for g in method.grid(p.lr_factors)}
    left = sum(not store.finished(c) for c in grid.values())
    if left:
        return left + task.seeds - 1
    lr = choose_lr(method, {g: store.summary(c)["val_accuracy"] for g, c in grid.items()})
    return sum(not store.finished(run_config(p, task, method, lr, s, store)) for s in range(1, task.seeds))


def estimate_s(p: Protocol, task: Task, store: RunStore, runs: int) -> float:
    """Estimated wall time of ``runs`` runs of ``task``: the median wall time of stored, uninterrupted runs of the
    same model, dataset and budget (steps, batch, eval sizes) when there are some, else :data:`CPU_COST`."""
    like = []
    for f in pathlib.Path(store.root).glob("*/summary.json"):
        c = json.loads((f.parent / "config.json").read_text())
        same = (c["model"]["name"], c["data"]["name"], c["train"]["steps"], c["train"]["batch_size"],
                c["data"]["test_size"], c["data"]["val_size"]) == (task.model, task.dataset, p.steps, p.batch_size,
                                                                    p.test_size, p.val_size)
        summary = json.loads(f.read_text())
        if same and summary.get("resumed_from") is None:
            like.append(summary["wall_s"])
    if like:
        return runs * sorted(like)[len(like) // 2]
    per_example_step, per_eval = CPU_COST.get(task.model, CPU_COST["smollm2-135m"])
    return runs * (p.steps * p.batch_size * per_example_step + (p.val_size + p.test_size) * per_eval)


# ------------------------------------------------------------------------------------ part 1 and 2
def spectra_and_inits(models: list[str], p: Protocol, methods: list[str], out: pathlib.Path, log) -> None:
    """Write spectra.csv, layer_stats.csv and init_error.csv for ``models`` at rank ``p.rank``."""
    spectra, stats, inits = [], [], []
    for model in models:
        t0 = time.perf_counter()
        weights = load_linear_weights(MODEL_PATHS[model]())
        for kind, names, W in S.stacks(weights):
            svd = torch.linalg.svd(W.double(), full_matrices=False)  # reference, once per stack
            st = S.spectral_stats(svd[1], p.rank)
            for i, name in enumerate(names):
                stats.append({"model": model, "layer": name, "type": kind, "block": S.block_index(name),
                              "out": W.shape[1], "in": W.shape[2], "rank": p.rank,
                              **{k: float(v[i]) for k, v in st.items()},
                              "optimal_error": math.sqrt(float(st["tail_energy"][i]))})
                spectra += [{"model": model, "layer": name, "type": kind, "i": j + 1, "sigma": float(s)}
                            for j, s in enumerate(svd[1][i])]
            for label in methods:
                m = S.METHODS[label]
                if m.init is None:
                    continue
                meas = S.measure_init(m, W, p.rank, 0, svd)
                for i, name in enumerate(names):
                    inits.append({"model": model, "layer": name, "type": kind, "method": label, "rank": p.rank,
                                  **{k: v[i] for k, v in meas.items()}})
        log(f"spectra and inits of {model}: {len(weights)} layers, {len(methods)} methods, "
            f"{time.perf_counter() - t0:.0f} s")
    S.write_csv(out / "spectra.csv", spectra)
    S.write_csv(out / "layer_stats.csv", stats)
    S.write_csv(out / "init_error.csv", inits)


# ------------------------------------------------------------------------------------------- part 3
def run_all(p: Protocol, store: RunStore, todo: list[tuple[Task, S.Method]], out: pathlib.Path, log) -> None:
    """Run (or find in the store) every run of the (task, method) groups ``todo``; write runs.csv and
    losses.csv after each run, so a partial study can be inspected (and plotted) at any time."""
    total = sum(planned_runs(p, t, m) for t, m in todo)
    left = sum(remaining_runs(p, t, m, store) for t, m in todo)
    rows, losses, seen, ran_s = [], [], set(), []

    def one(task, method, lr, seed, phase):
        cfg = run_config(p, task, method, lr, seed, store)
        key = store.folder(cfg).name
        key_done = store.finished(cfg)
        t0 = time.perf_counter()
        summary, ran = store.run(cfg)
        if ran:
            ran_s.append(time.perf_counter() - t0)
        rows.append({"task": task.label, "model": task.model, "dataset": task.dataset, "method": method.label,
                     "phase": phase, "lr": lr, "seed": seed, "test_accuracy": summary["test_accuracy"],
                     "val_accuracy": summary["val_accuracy"], "final_loss": summary["final_loss"],
                     "trainable_params": summary["trainable_params"], "steps": p.steps, "batch_size": p.batch_size,
                     "test_size": p.test_size, "wall_s": summary["wall_s"], "split_hash": summary["split_hash"],
                     "key": key})
        if key not in seen:  # the grid's seed-0 run at the chosen LR is listed again as a seed run
            seen.add(key)
            losses.extend({"key": key, "step": i + 1, "loss": v} for i, v in enumerate(summary["losses"]))
        S.write_csv(out / "runs.csv", rows)
        S.write_csv(out / "losses.csv", losses)
        eta = f", about {sum(ran_s) / len(ran_s) * (left - len(ran_s)) / 60:.0f} min left" if ran else ""
        log(f"[{len(seen)}/{total}] {task.label} {method.label} lr={lr:g} seed={seed} ({phase}): test "
            f"{summary['test_accuracy']:.4f} val {summary['val_accuracy']:.4f} "
            f"({'stored' if key_done else f'{time.perf_counter() - t0:.0f} s'}{eta})")
        return summary

    for task, method in todo:
        lr = method.lr
        if p.tune:
            lr = choose_lr(method, {g: one(task, method, g, 0, "grid")["val_accuracy"]
                                    for g in method.grid(p.lr_factors)})
        for seed in range(task.seeds):
            one(task, method, lr, seed, "seed")


# -------------------------------------------------------------------------------------------- analysis
def summarise(out: pathlib.Path) -> list[dict]:
    """summary.csv from runs.csv: per (task, method) the chosen LR, test accuracy mean ± 95 % CI over seeds, and
    the paired difference (same seed) to LoRA and to PiSSA with its CI; loss early / late."""
    runs = S.read_csv(out / "runs.csv")
    losses = S.read_csv(out / "losses.csv")
    by_key: dict[str, list[float]] = {}
    for r in losses:
        by_key.setdefault(r["key"], []).append(r["loss"])
    seeds = [r for r in runs if r["phase"] == "seed"]
    table = []
    for task in dict.fromkeys(r["task"] for r in seeds):
        per = {}
        for r in seeds:
            if r["task"] == task:
                per.setdefault(r["method"], {})[r["seed"]] = r
        for method, rs in per.items():
            acc = [r["test_accuracy"] for r in rs.values()]
            mean, lo, hi = S.t_interval(acc)
            grid = sorted({r["lr"] for r in runs if r["task"] == task and r["method"] == method})
            lr = next(iter(rs.values()))["lr"]
            row = {"task": task, "method": method, "lr": lr, "lr_at_grid_edge": len(grid) > 1 and lr in (grid[0], grid[-1]),
                   "seeds": len(acc), "test_mean": mean, "test_ci_low": lo, "test_ci_high": hi,
                   "test_sd": float(np.std(acc, ddof=1)) if len(acc) > 1 else math.nan,
                   "trainable_params": next(iter(rs.values()))["trainable_params"]}
            for base in ("lora", "pissa"):
                common = sorted(set(rs) & set(per.get(base, {})))
                d = [rs[s]["test_accuracy"] - per[base][s]["test_accuracy"] for s in common]
                row[f"diff_{base}"], row[f"diff_{base}_low"], row[f"diff_{base}_high"] = S.t_interval(d) if d else (
                    math.nan,) * 3
                row[f"diff_{base}_n"] = len(d)  # seeds both methods share (the pairs behind the interval)
            # convergence speed: mean training loss over the first half of the steps, paired against LoRA's
            half = {sd: by_key[r["key"]][: len(by_key[r["key"]]) // 2] for sd, r in rs.items() if r["key"] in by_key}
            lora_half = {sd: by_key[r["key"]][: len(by_key[r["key"]]) // 2] for sd, r in per.get("lora", {}).items()
                         if r["key"] in by_key}
            dh = [float(np.mean(half[sd]) - np.mean(lora_half[sd])) for sd in sorted(set(half) & set(lora_half))
                  if half[sd] and lora_half[sd]]
            row["loss_first_half_diff_lora"], row["loss_first_half_diff_lora_low"], \
                row["loss_first_half_diff_lora_high"] = S.t_interval(dh) if dh else (math.nan,) * 3
            curves = [by_key[r["key"]] for r in rs.values() if r["key"] in by_key]
            n = min(map(len, curves)) if curves else 0
            w = max(1, n // 10)
            row["loss_first_10pct"] = float(np.mean([c[:w] for c in curves])) if n else math.nan
            row["loss_last_10pct"] = float(np.mean([c[n - w:n] for c in curves])) if n else math.nan
            table.append(row)
    S.write_csv(out / "summary.csv", table)
    return table


def _fmt(x, nd=3):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def summary_markdown(out: pathlib.Path, table: list[dict]) -> str:
    """summary.md: the accuracy table (and the init table) as markdown, generated from the CSVs."""
    lines = []
    if table and not any(r["phase"] == "grid" for r in S.read_csv(out / "runs.csv")):
        lines.append("One seed per method at its default LR (the default protocol): a demonstration that every init "
                     "trains, not a comparison; differences of a few points are inside seed noise. Use --full.")
    for task in dict.fromkeys(r["task"] for r in table):
        lines += [f"\n### {task}\n", "| method | lr | seeds | test acc (mean [95 % CI]) | Δ vs LoRA [CI] | Δ vs PiSSA [CI] "
                  "| trainable | loss first/last 10 % | Δ loss vs LoRA, first half [CI] |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in table if r["task"] == task):
            edge = " (grid edge)" if r["lr_at_grid_edge"] in (True, "True") else ""
            lines.append(
                f"| {r['method']} | {r['lr']:g}{edge} | {r['seeds']} | {_fmt(r['test_mean'])} [{_fmt(r['test_ci_low'])}, "
                f"{_fmt(r['test_ci_high'])}] | {_fmt(r['diff_lora'])} [{_fmt(r['diff_lora_low'])}, "
                f"{_fmt(r['diff_lora_high'])}] n={r['diff_lora_n']} | {_fmt(r['diff_pissa'])} [{_fmt(r['diff_pissa_low'])}, "
                f"{_fmt(r['diff_pissa_high'])}] n={r['diff_pissa_n']} | {r['trainable_params']} | {_fmt(r['loss_first_10pct'])} / "
                f"{_fmt(r['loss_last_10pct'])} | {_fmt(r['loss_first_half_diff_lora'])} "
                f"[{_fmt(r['loss_first_half_diff_lora_low'])}, {_fmt(r['loss_first_half_diff_lora_high'])}] |")
    inits = S.read_csv(out / "init_error.csv")
    stats = S.read_csv(out / "layer_stats.csv")
    if stats:
        lines += ["\n### Spectra (mean over the adapted layers of each type)\n",
                  "| model | type | layers | shape | stable rank | effective rank | tail energy at r | optimal error |",
                  "|---|---|---|---|---|---|---|---|"]
        for (model, kind), rs in S.grouped(stats, ("model", "type")).items():
            lines.append(f"| {model} | {kind} | {len(rs)} | {rs[0]['out']}×{rs[0]['in']} | {S.mean(rs, 'stable_rank'):.1f} | "
                         f"{S.mean(rs, 'effective_rank'):.0f} | {S.mean(rs, 'tail_energy'):.3f} | "
                         f"{S.mean(rs, 'optimal_error'):.3f} |")
    if inits:
        lines += ["\n### Initialisation (mean over all adapted layers; max for cond N)\n",
                  "| model | method | error | bound | error/optimal | σ error (top r) | output change at init | ‖B‖₂ | ‖N‖₂ "
                  "| ‖A‖₂ | max cond N | ms/layer |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (model, method), rs in S.grouped(inits, ("model", "method")).items():
            lines.append(f"| {model} | {method} | {_fmt(S.mean(rs, 'error'))} | {_fmt(S.mean(rs, 'bound'))} | "
                         f"{_fmt(S.mean(rs, 'ratio'))} | {_fmt(S.mean(rs, 'sigma_error'))} | {_fmt(S.mean(rs, 'init_change'))} | "
                         f"{_fmt(S.mean(rs, 'norm_B'), 2)} | "
                         f"{_fmt(S.mean(rs, 'norm_N'), 2)} | {_fmt(S.mean(rs, 'norm_A'), 2)} | "
                         f"{_fmt(S.max_(rs, 'cond_N'), 1)} | {_fmt(S.mean(rs, 'ms_per_layer'), 2)} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def _log_scale(ax, axis: str, values) -> None:
    """Log scale on ``axis`` when ``values`` (what is plotted there) hold a positive number (else matplotlib
    refuses)."""
    if any(isinstance(v, float) and math.isfinite(v) and v > 0 for v in values):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


# -------------------------------------------------------------------------------------------------- plots
def plot(out: pathlib.Path) -> list[pathlib.Path]:
    """All PNGs, from the CSVs in ``out`` alone (what exists is plotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(out / name)

    spectra, stats = S.read_csv(out / "spectra.csv"), S.read_csv(out / "layer_stats.csv")
    rank = stats[0]["rank"] if stats else None  # (no dashed line without layer_stats.csv)
    for model, rs in S.grouped(spectra, ("model",)).items():
        types = S.grouped(rs, ("type",))
        cols = min(4, len(types))
        rows_ = -(-len(types) // cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(3.4 * cols, 3.0 * rows_), sharey=True, squeeze=False)
        for ax in axes.flat[len(types):]:
            ax.set_visible(False)
        for ax, ((kind,), trs) in zip(axes.flat, types.items()):
            for lrs in S.grouped(trs, ("layer",)).values():
                s1 = lrs[0]["sigma"]
                ax.semilogy([r["i"] for r in lrs], [r["sigma"] / s1 for r in lrs], lw=0.7, alpha=0.6)
            if rank is not None:
                ax.axvline(rank, color="k", ls="--", lw=0.8)
            ax.set_title(kind, fontsize=9)
            ax.set_xlabel("i")
        for row in axes:
            row[0].set_ylabel("σᵢ / σ₁")
        fig.suptitle(f"{model[0]}: singular values of every adapted layer (dashed: r = {rank})", fontsize=10)
        save(fig, f"spectra_{model[0]}.png")

    inits = S.read_csv(out / "init_error.csv")
    if inits:
        methods = list(dict.fromkeys(r["method"] for r in inits))
        models = list(dict.fromkeys(r["model"] for r in inits))
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        plotted = ([], [])
        for j, model in enumerate(models):
            ratio = [S.mean([r for r in inits if r["model"] == model and r["method"] == m], "ratio") for m in methods]
            axes[0].bar([i + 0.4 * j for i in range(len(methods))], ratio, width=0.4, label=model)
            cond = [S.max_([r for r in inits if r["model"] == model and r["method"] == m], "cond_N") for m in methods]
            axes[1].bar([i + 0.4 * j for i in range(len(methods))], cond, width=0.4, label=model)
            plotted[0].extend(ratio)
            plotted[1].extend(cond)
        for ax, title, values in zip(axes, ("init error / optimal rank-r error (mean over layers)",
                                            "max cond₂(N) over layers"), plotted):
            ax.set_xticks([i + 0.2 for i in range(len(methods))], methods, rotation=60, ha="right", fontsize=8)
            _log_scale(ax, "y", values)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
        save(fig, "init_error.png")

    runs = S.read_csv(out / "runs.csv")
    table = S.read_csv(out / "summary.csv")
    losses = S.read_csv(out / "losses.csv")
    curves: dict[str, list[float]] = {}
    for r in losses:
        curves.setdefault(r["key"], []).append(r["loss"])
    for (task,), rs in S.grouped(table, ("task",)).items():
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(rs) + 1.2))
        y = list(range(len(rs)))
        ax.errorbar([r["test_mean"] for r in rs], y, xerr=[[r["test_mean"] - r["test_ci_low"] if r["seeds"] > 1 else 0
                                                            for r in rs], [r["test_ci_high"] - r["test_mean"]
                                                                           if r["seeds"] > 1 else 0 for r in rs]],
                    fmt="o", capsize=3)
        ax.set_yticks(y, [f"{r['method']} ({r['trainable_params']:,})" for r in rs], fontsize=8)
        ax.set_xlabel("test accuracy (mean, 95 % CI over seeds; trainable parameters in brackets)")
        ax.set_title(task, fontsize=10)
        save(fig, f"accuracy_{task.replace('/', '_')}.png")
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in rs:
            keys = [x["key"] for x in runs if x["task"] == task and x["method"] == r["method"] and x["phase"] == "seed"]
            cs = [curves[k] for k in keys if k in curves]
            if not cs:
                continue
            n = min(map(len, cs))
            mean = [sum(c[i] for c in cs) / len(cs) for i in range(n)]
            w = max(1, n // 20)
            smooth = [sum(mean[max(0, i - w + 1): i + 1]) / len(mean[max(0, i - w + 1): i + 1]) for i in range(n)]
            ax.plot(range(1, n + 1), smooth, lw=1, label=r["method"])
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (mean over seeds, moving average)")
        ax.set_title(task, fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        save(fig, f"loss_{task.replace('/', '_')}.png")

    if table and stats:
        tail = {m: S.mean(rs, "tail_energy") for (m,), rs in S.grouped(stats, ("model",)).items()}
        err = {k: S.mean(rs, "error") for k, rs in S.grouped(inits, ("model", "method")).items()}
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for r in table:
            if r["method"] == "lora" or not isinstance(r["diff_lora"], float) or math.isnan(r["diff_lora"]):
                continue
            model = r["task"].split("/")[0]
            yerr = [[r["diff_lora"] - r["diff_lora_low"]], [r["diff_lora_high"] - r["diff_lora"]]] \
                if not math.isnan(r["diff_lora_low"]) else None
            axes[0].errorbar([tail.get(model, math.nan)], [r["diff_lora"]], yerr=yerr, fmt="o", ms=4, capsize=2)
            axes[0].annotate(r["method"], (tail.get(model, math.nan), r["diff_lora"]), fontsize=6)
            e = err.get((model, r["method"]), math.nan)
            if not math.isnan(e):
                axes[1].errorbar([e], [r["diff_lora"]], yerr=yerr, fmt="o", ms=4, capsize=2)
                axes[1].annotate(f"{r['method']} ({r['task'].split('/')[1]})", (e, r["diff_lora"]), fontsize=6)
        axes[0].set_xlabel("model's mean tail energy at r (Σ_{i>r}σ² / Σσ²; lower = faster decay)\n"
                           "one value per model: this axis confounds the spectrum with the model and task")
        axes[1].set_xlabel("mean relative init error ‖W − BNA‖_F / ‖W‖_F")
        axes[0].set_ylabel("test accuracy − LoRA (paired, 95 % CI)")
        for ax in axes:
            ax.axhline(0, color="k", lw=0.8)
        save(fig, "gain_vs_spectrum.png")
    return made


# ------------------------------------------------------------------------------------------------ main
def protocol_from_args(args) -> Protocol:
    p = FULL if args.full else QUICK
    over = {k: getattr(args, k) for k in ("steps", "batch_size", "test_size", "val_size", "rank", "device",
                                          "checkpoint_every")
            if getattr(args, k) is not None}
    p = dataclasses.replace(p, **over)
    if args.methods:
        unknown = [m for m in args.methods if m not in S.METHODS]
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; choose from {list(S.METHODS)}")
        p = dataclasses.replace(p, methods=tuple(args.methods))
    tasks = p.tasks
    if args.tasks:
        known = {t.label: t for t in FULL.tasks}
        tasks = tuple(known.get(t, Task(*t.split("/"), seeds=p.tasks[0].seeds)) if t.count("/") == 1 else None
                      for t in args.tasks)
        if None in tasks:
            raise SystemExit(f"--tasks: each must look like model/dataset, got {args.tasks}")
    if args.lr_factors:
        p = dataclasses.replace(p, lr_factors=tuple(args.lr_factors))
    if args.seeds is not None:
        tasks = tuple(dataclasses.replace(t, seeds=args.seeds) for t in tasks)
    return dataclasses.replace(p, tasks=tasks)


def main(argv=None) -> pathlib.Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="the complete protocol (LR grid, paired seeds, 5 tasks)")
    ap.add_argument("--tasks", nargs="+", help="model/dataset pairs, e.g. minilm/tweets smollm2-135m/arithmetic")
    ap.add_argument("--methods", nargs="+", help=f"subset of {list(S.METHODS)}")
    ap.add_argument("--seeds", type=int, help="paired seeds per task")
    ap.add_argument("--lr-factors", type=float, nargs="+", help="LR grid of --full: each method's default LR times "
                    "these (default 1/3 1 3); stored runs at shared LRs are reused")
    for name in ("steps", "batch-size", "test-size", "val-size", "rank"):
        ap.add_argument(f"--{name}", type=int)
    ap.add_argument("--device", help="auto | cpu | cuda[:i]")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--shard", help="i/n: run only every n-th (task, method) group, starting at i")
    ap.add_argument("--store", default="results/store", help="run store folder (shared by studies)")
    ap.add_argument("--out", default="results", help="results root; writes <out>/spectrum_vs_accuracy/<timestamp>/")
    ap.add_argument("--checkpoint-every", type=int, help="checkpoint period of each run in steps (0 = off)")
    ap.add_argument("--spectra-models", nargs="*", default=list(MODEL_PATHS), choices=list(MODEL_PATHS),
                    help="models of parts 1 and 2 (spectra, init error); none skips them")
    ap.add_argument("--no-spectra", action="store_true", help="skip parts 1 and 2 (same as --spectra-models)")
    ap.add_argument("--plan", action="store_true", help="print the planned runs and estimated time, then stop")
    ap.add_argument("--plot-only", metavar="PATH", help="regenerate summary and plots from the CSVs in PATH")
    args = ap.parse_args(argv)
    if args.plot_only:
        out = pathlib.Path(args.plot_only)
        if not (out / "runs.csv").exists() and not (out / "layer_stats.csv").exists():
            raise SystemExit(f"--plot-only: {out} holds neither runs.csv nor layer_stats.csv")
        table = summarise(out) if (out / "runs.csv").exists() else []
        print(summary_markdown(out, table))
        print("\n".join(str(x) for x in plot(out)))
        return out
    if args.threads:
        torch.set_num_threads(args.threads)
    p = protocol_from_args(args)
    store = RunStore(pathlib.Path(args.store))
    todo = shard(groups(p), args.shard)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{(time.perf_counter() - t_start) / 60:5.1f} min] {msg}", flush=True)

    n_runs = sum(planned_runs(p, t, m) for t, m in todo)
    left = {(t.label, m.label): remaining_runs(p, t, m, store) for t, m in todo}
    est = sum(estimate_s(p, t, store, left[t.label, m.label]) for t, m in todo)
    print(f"{STUDY}, protocol '{p.name}'{f', shard {args.shard}' if args.shard else ''}: {len(todo)} (task, method) "
          f"groups, {n_runs} runs ({p.steps} steps × {p.batch_size}, r = {p.rank}, test {p.test_size}, "
          f"{'LR grid on validation, then ' if p.tune else 'default LR, '}seeds per task "
          f"{', '.join(f'{t.label}: {t.seeds}' for t in p.tasks)}), {sum(left.values())} not yet in the store "
          f"{store.root}: estimated {est / 60:.0f} min (median of comparable stored runs, else this project's "
          f"2-core CPU costs)", flush=True)
    if args.plan:
        for t, m in todo:
            print(f"  {t.label:32s} {m.label:22s} {planned_runs(p, t, m):3d} runs ({left[t.label, m.label]} to run), "
                  f"lr grid {m.grid(p.lr_factors) if p.tune else (m.lr,)}")
        return pathlib.Path(args.out)
    out = S.new_folder(args.out, STUDY, f"-shard{args.shard.replace('/', 'of')}" if args.shard else "")
    S.write_json(out / "plan.json", {"protocol": dataclasses.asdict(p), "shard": args.shard, "store": str(store.root),
                                     "argv": sys.argv[1:] if argv is None else list(argv), "environment": S.environment()})
    log(f"writing {out}")
    if args.spectra_models and not args.no_spectra:
        spectra_and_inits(args.spectra_models, p, list(p.methods), out, log)
    run_all(p, store, todo, out, log)
    table = summarise(out)
    text = summary_markdown(out, table)
    made = plot(out)
    S.write_json(out / "plan.json", {**json.loads((out / "plan.json").read_text()),
                                     "wall_s": time.perf_counter() - t_start})
    print(text)
    log(f"done: {out} ({len(made)} plots)")
    return out


if __name__ == "__main__":
    main()
