"""The studies end to end with tiny budgets (real models, real data, real subprocesses), their resume through
the run store, --plot-only, and their statistics against numpy/scipy references (issue #5)."""

from __future__ import annotations

import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "studies"))
import _study as S  # noqa: E402

from nlora_linalg import IntTuneInit, load_linear_weights, minilm_path  # noqa: E402

FLAGSHIP = ROOT / "studies" / "spectrum_vs_accuracy.py"
COST = ROOT / "studies" / "init_error_and_cost.py"
TINY = ["--steps", "3", "--batch-size", "4", "--test-size", "24", "--val-size", "12", "--threads", "1"]


def _run(script, *args, check=True, **kw):
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, **kw)
    if check and proc.returncode:
        raise AssertionError(f"{script.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _out_folder(root: pathlib.Path, study: str) -> pathlib.Path:
    (folder,) = sorted((root / study).iterdir())
    return folder


# ------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("seed", range(4))
def test_spectral_stats_match_numpy(seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((30, 20)) * rng.uniform(0.01, 3, size=20)
    r = int(rng.integers(1, 19))
    s = np.linalg.svd(W, compute_uv=False)
    got = S.spectral_stats(torch.from_numpy(s)[None], r)
    p = s / s.sum()
    assert math.isclose(float(got["stable_rank"][0]), np.linalg.norm(W, "fro") ** 2 / np.linalg.norm(W, 2) ** 2,
                        rel_tol=1e-12)
    assert math.isclose(float(got["effective_rank"][0]), float(np.exp(-(p * np.log(p)).sum())), rel_tol=1e-12)
    Wr = (np.linalg.svd(W)[0][:, :r] * s[:r]) @ np.linalg.svd(W)[2][:r]
    assert math.isclose(float(got["tail_energy"][0]), np.linalg.norm(W - Wr, "fro") ** 2 / np.linalg.norm(W, "fro") ** 2,
                        rel_tol=1e-9)


def test_effective_rank_of_identity_is_its_size():
    """exp(entropy) of a flat spectrum is its length; of a rank-one spectrum, 1 (zeros contribute nothing)."""
    assert math.isclose(float(S.spectral_stats(torch.ones(1, 7), 2)["effective_rank"][0]), 7.0, rel_tol=1e-12)
    assert math.isclose(float(S.spectral_stats(torch.tensor([[3.0, 0, 0]]), 1)["effective_rank"][0]), 1.0)


@pytest.mark.parametrize("n", [2, 5, 11])
def test_t_interval_matches_scipy(n):
    x = np.random.default_rng(n).normal(0.8, 0.02, size=n)
    mean, lo, hi = S.t_interval(x)
    ref = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert math.isclose(mean, x.mean()) and math.isclose(lo, ref[0]) and math.isclose(hi, ref[1])
    assert all(math.isnan(v) for v in S.t_interval([0.5])[1:])


def test_measure_init_against_numpy_on_real_weights():
    """Errors of the real MiniLM query weights measured by the study equal numpy's ‖W − BNA‖_F/‖W‖_F; PiSSA is
    optimal (ratio 1); cond N of IntTune built on the exact SVD is σ₁/σ_r of W (N = Σ_r)."""
    weights = load_linear_weights(minilm_path())
    (kind, names, W), = [s for s in S.stacks(weights) if s[0] == "query"]
    r = 8
    svd = torch.linalg.svd(W.double(), full_matrices=False)
    pissa = S.measure_init(S.METHODS["pissa"], W, r, 0, svd)
    inttune = S.measure_init(S.Method("inttune_svd", IntTuneInit(method="svd"), 1e-2), W, r, 0, svd)
    for i, name in enumerate(names):
        w = weights[name].double().numpy()
        s = np.linalg.svd(w, compute_uv=False)
        opt = math.sqrt((s[r:] ** 2).sum() / (s ** 2).sum())
        assert math.isclose(pissa["error"][i], opt, rel_tol=1e-4)
        assert math.isclose(pissa["ratio"][i], 1.0, rel_tol=1e-4)
        assert math.isclose(inttune["cond_N"][i], s[0] / s[r - 1], rel_tol=1e-4)
        assert inttune["error"][i] >= opt * (1 - 1e-6) and inttune["error"][i] <= inttune["bound"][i] * (1 + 1e-6)
    gram = S.measure_init(S.METHODS["inttune"], W, r, 0, svd)
    paper = S.measure_init(S.METHODS["nlora_paper"], W, r, 0, svd)
    lora = S.measure_init(S.METHODS["lora"], W, r, 0, svd)
    for i, name in enumerate(names):
        w = weights[name].double().numpy()
        s = np.linalg.svd(w, compute_uv=False)
        opt = math.sqrt((s[r:] ** 2).sum() / (s ** 2).sum())
        assert opt * (1 - 1e-6) <= gram["error"][i] <= gram["bound"][i] * (1 + 1e-6) and gram["init_change"][i] == 0
        # the released code adds B N A = W[:, :r] W[:r, :r] W[:r, :] to an unchanged W
        bna = w[:, :r] @ w[:r, :r] @ w[:r, :]
        assert math.isclose(paper["init_change"][i], np.linalg.norm(bna) / np.linalg.norm(w), rel_tol=1e-5)
        assert math.isclose(paper["error"][i], np.linalg.norm(w - bna) / np.linalg.norm(w), rel_tol=1e-5)
        assert math.isclose(paper["cond_N"][i], np.linalg.cond(w[:r, :r]), rel_tol=1e-3)
    assert all(math.isnan(v) for v in lora["error"]) and all(v == 0 for v in lora["init_change"])


def test_synthetic_weights_have_the_power_law_spectrum():
    sys.path.insert(0, str(ROOT / "studies"))
    import init_error_and_cost as C

    W = C.synthetic((60, 40), 0.5, seed=3).double().numpy()
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), np.arange(1, 41) ** -0.5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- end to end
def test_flagship_default_path_writes_every_file(tmp_path):
    """The default protocol (tiny budget, four methods, MiniLM spectra) runs end to end and writes every file;
    the stored spectra equal numpy's singular values of the real weights."""
    _run(FLAGSHIP, *TINY, "--methods", "lora", "nlora", "inttune", "head_only", "--spectra-models", "minilm",
         "--store", tmp_path / "store", "--out", tmp_path / "res")
    out = _out_folder(tmp_path / "res", "spectrum_vs_accuracy")
    expected = ["plan.json", "spectra.csv", "layer_stats.csv", "init_error.csv", "runs.csv", "losses.csv",
                "summary.csv", "summary.md", "spectra_minilm.png", "init_error.png", "gain_vs_spectrum.png",
                "accuracy_minilm_rotten_tomatoes.png", "loss_minilm_rotten_tomatoes.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    runs = S.read_csv(out / "runs.csv")
    assert [r["method"] for r in runs] == ["lora", "nlora", "inttune", "head_only"]
    assert len({r["split_hash"] for r in runs}) == 1  # every method sees the same splits
    assert len(S.read_csv(out / "losses.csv")) == 4 * 3
    weights = load_linear_weights(minilm_path())
    spectra = S.read_csv(out / "spectra.csv")
    name = "encoder.layer.2.intermediate.dense.weight" if "encoder.layer.2.intermediate.dense.weight" in weights \
        else next(k for k in weights if "intermediate" in k)
    got = [r["sigma"] for r in spectra if r["layer"] == name]
    np.testing.assert_allclose(got, np.linalg.svd(weights[name].double().numpy(), compute_uv=False), rtol=1e-9)
    inits = S.read_csv(out / "init_error.csv")
    assert {r["method"] for r in inits} == {"lora", "nlora", "inttune"}
    assert len(inits) == 3 * 36
    # adapter trainable counts: LoRA Σ r(in + out); NLoRA adds r² per layer; IntTune trains r² per layer only
    head = next(r for r in runs if r["method"] == "head_only")["trainable_params"]
    shapes = [w.shape for w in weights.values()]
    by = {r["method"]: r["trainable_params"] - head for r in runs}
    assert by["lora"] == sum(8 * (a + b) for a, b in shapes)
    assert by["nlora"] == by["lora"] + 64 * len(shapes) and by["inttune"] == 64 * len(shapes)


def test_flagship_full_protocol_picks_lr_on_validation_and_pairs_seeds(tmp_path):
    """--full with a tiny budget: each method's LR is the grid point with the best validation accuracy (seed 0),
    the seeds reuse it, and the paired differences and CIs equal scipy's on the stored accuracies."""
    _run(FLAGSHIP, "--full", "--tasks", "minilm/rotten_tomatoes", "--methods", "lora", "pissa", "inttune",
         "--seeds", "3", *TINY, "--no-spectra", "--store", tmp_path / "store", "--out", tmp_path / "res")
    out = _out_folder(tmp_path / "res", "spectrum_vs_accuracy")
    runs, table, losses = (S.read_csv(out / f) for f in ("runs.csv", "summary.csv", "losses.csv"))
    assert len(runs) == 3 * (3 + 3)  # the seed-0 run at the chosen LR is listed in both phases ...
    keys = {r["key"] for r in runs}
    assert len(keys) == 3 * (3 + 3 - 1) == len(list((tmp_path / "store").glob("*/summary.json")))  # ... run once
    assert len(losses) == len(keys) * 3 and {r["key"] for r in losses} == keys
    acc = {}
    for method in ("lora", "pissa", "inttune"):
        grid = [r for r in runs if r["method"] == method and r["phase"] == "grid"]
        seeds = [r for r in runs if r["method"] == method and r["phase"] == "seed"]
        assert [r["seed"] for r in seeds] == [0, 1, 2] and len({r["lr"] for r in seeds}) == 1
        # best validation accuracy; ties to the LR nearest the default (log distance), then the smaller one
        best = max(r["val_accuracy"] for r in grid)
        tied = [r["lr"] for r in grid if r["val_accuracy"] == best]
        default = S.METHODS[method].lr
        expected = min(tied, key=lambda g: (abs(math.log(g / default)), g))
        assert seeds[0]["lr"] == expected
        acc[method] = np.array([r["test_accuracy"] for r in seeds])
    row = next(r for r in table if r["method"] == "inttune")
    d = acc["inttune"] - acc["lora"]
    assert math.isclose(row["diff_lora"], d.mean(), abs_tol=1e-12)
    assert row["diff_lora_n"] == 3
    if d.std() > 0:
        lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
        assert math.isclose(row["diff_lora_low"], lo, abs_tol=1e-9) and math.isclose(row["diff_lora_high"], hi, abs_tol=1e-9)
    else:  # identical differences: a zero-width interval at the mean
        assert row["diff_lora_low"] == row["diff_lora_high"] == row["diff_lora"]
    lora = next(r for r in table if r["method"] == "lora")
    assert math.isclose(lora["test_mean"], acc["lora"].mean())
    assert math.isclose(lora["test_sd"], acc["lora"].std(ddof=1), abs_tol=1e-12)
    first = np.mean([[x["loss"] for x in losses if x["key"] == r["key"]][:1]
                     for r in runs if r["method"] == "lora" and r["phase"] == "seed"])
    assert math.isclose(lora["loss_first_10pct"], first, rel_tol=1e-9)


def test_flagship_interrupted_study_resumes_without_rerunning(tmp_path):
    """Kill the study (SIGKILL) once its first run is stored; the re-run skips the finished runs (their files are
    untouched), resumes the rest, and ends with the same table as an uninterrupted study in a fresh store."""
    args = [*TINY, "--methods", "lora", "nlora", "slora", "head_only", "--no-spectra", "--checkpoint-every", "1"]
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, str(FLAGSHIP), *map(str, args), "--store", str(store), "--out",
                             str(tmp_path / "a")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not list(store.glob("*/summary.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in store.glob("*/summary.json")}
    assert 1 <= len(finished) < 4, "the kill must land between the first and the last run"
    log = _run(FLAGSHIP, *args, "--store", store, "--out", tmp_path / "b").stdout
    assert log.count("stored)") == len(finished)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    _run(FLAGSHIP, *args, "--store", tmp_path / "fresh", "--out", tmp_path / "c")
    resumed = S.read_csv(_out_folder(tmp_path / "b", "spectrum_vs_accuracy") / "runs.csv")
    fresh = S.read_csv(_out_folder(tmp_path / "c", "spectrum_vs_accuracy") / "runs.csv")
    for a, b in zip(resumed, fresh, strict=True):
        assert (a["method"], a["key"], a["test_accuracy"], a["final_loss"]) == \
               (b["method"], b["key"], b["test_accuracy"], b["final_loss"])


def test_read_csv_keeps_identifiers_as_strings(tmp_path):
    """Hex keys that look like numbers ("1234e567…", "0012…") come back as the same strings."""
    rows = [{"key": "1234e56789012345", "split_hash": "0012", "test_accuracy": 0.5, "seed": 3}]
    S.write_csv(tmp_path / "x.csv", rows)
    assert S.read_csv(tmp_path / "x.csv") == rows


def test_flagship_plot_only_regenerates_from_csv(tmp_path):
    _run(FLAGSHIP, *TINY, "--methods", "lora", "pissa", "--spectra-models", "minilm", "--store", tmp_path / "store",
         "--out", tmp_path / "res")
    out = _out_folder(tmp_path / "res", "spectrum_vs_accuracy")
    pngs = sorted(p.name for p in out.glob("*.png"))
    for p in out.glob("*.png"):
        p.unlink()
    (out / "summary.md").unlink()
    (out / "spectra.csv").rename(tmp_path / "moved.csv")  # a missing CSV drops its plot, nothing else
    log = _run(FLAGSHIP, "--plot-only", out).stdout
    assert sorted(p.name for p in out.glob("*.png")) == [n for n in pngs if n != "spectra_minilm.png"]
    assert "| lora |" in log and (out / "summary.md").exists()
    bad = _run(FLAGSHIP, "--plot-only", tmp_path / "nowhere", check=False)
    assert bad.returncode != 0 and "--plot-only" in bad.stderr


def test_flagship_shards_partition_the_groups(tmp_path):
    """--plan with --shard i/3 lists disjoint groups whose union is the unsharded plan."""
    def plan(*extra):
        lines = _run(FLAGSHIP, "--full", "--plan", "--store", tmp_path / "s", *extra).stdout.splitlines()
        return [" ".join(x.split()[:2]) for x in lines if x.startswith("  ")]

    whole = plan()
    parts = [plan("--shard", f"{i}/3") for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(whole) and len(whole) == len(set(whole)) >= 60
    bad = _run(FLAGSHIP, "--plan", "--shard", "3/3", check=False)
    assert bad.returncode != 0 and "shard" in bad.stderr


def test_init_error_and_cost_writes_every_file(tmp_path):
    _run(COST, "--ranks", "4", "8", "--models", "minilm", "--synthetic", "96x64", "--methods", "lora", "pissa",
         "nlora", "nlora_paper", "--out", tmp_path)
    out = _out_folder(tmp_path, "init_error_and_cost")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["plan.json", "layers.csv", "table.csv", "error_vs_rank.png", "time_vs_rank.png", "error_vs_time.png"])
    layers, table = S.read_csv(out / "layers.csv"), S.read_csv(out / "table.csv")
    assert len(layers) == (36 + 1) * 2 * 4 and len(table) == 2 * 2 * 4
    for r in layers:
        if r["method"] == "pissa":
            assert math.isclose(r["ratio"], 1.0, rel_tol=1e-4)
        if r["method"] == "nlora":
            assert r["ratio"] >= 1 - 1e-6 and r["error"] <= r["bound"] * (1 + 1e-6)
    for p in out.glob("*.png"):
        p.unlink()
    _run(COST, "--plot-only", out)
    assert len(list(out.glob("*.png"))) == 3


def test_row_aggregates_leave_out_undefined_values():
    """mean / max_ skip NaN (a quantity undefined for that init) and give NaN when nothing is left; grouped keeps
    first-seen order."""
    rows = [{"m": "a", "x": 2.0}, {"m": "b", "x": math.nan}, {"m": "a", "x": 4.0}, {"m": "b", "x": math.nan}]
    groups = S.grouped(rows, ("m",))
    assert list(groups) == [("a",), ("b",)]
    assert S.mean(groups["a",], "x") == np.mean([2.0, 4.0]) and S.max_(groups["a",], "x") == max(2.0, 4.0)
    assert math.isnan(S.mean(groups["b",], "x")) and math.isnan(S.max_(groups["b",], "x"))
