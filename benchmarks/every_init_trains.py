"""Every adapter init trains: all-MiniLM-L6-v2 on Rotten Tomatoes, r = 8 on all 36 encoder Linears, 150 steps of
batch 32, each init at its documented default learning rate (DEFAULT_LR), plus the task head alone.

    python benchmarks/every_init_trains.py [--steps 150] [--seeds 0] [--test-size 1000]

Prints one row per init: test accuracy, zero-shot accuracy, final training loss, trainable parameters and wall
time, and writes results/every_init_trains/<timestamp>.csv. The claim checked: every init except nlora_paper and
inttune ends within 3 points of LoRA; inttune (Σ r² trainable adapter parameters) beats the head alone.
Public API only.
"""

from __future__ import annotations

import argparse

from _results import write_csv
from nlora_linalg import AdapterConfig, DataConfig, ModelConfig, RunConfig, TrainConfig, finetune

#: Documented default learning rates (AdamW, warm-up 6 % + cosine). IntTune trains r² numbers per layer, which
#: move ΔW = s·B ΔN A in orthonormal coordinates, so it takes a 10× larger step.
DEFAULT_LR = {"lora": 1e-3, "pissa": 1e-3, "pissa_fast": 1e-3, "slora": 1e-3, "nlora": 1e-3,
              "nlora_paper": 1e-3, "inttune": 1e-2, "head only": 1e-3}


def run(init: str, seed: int, args) -> dict:
    adapter = None if init == "head only" else AdapterConfig(init=init, rank=8, seed=seed)
    config = RunConfig(
        model=ModelConfig("minilm", max_length=64),
        data=DataConfig("rotten_tomatoes", seed=0, val_size=500, test_size=args.test_size),
        adapter=adapter,
        train=TrainConfig(lr=DEFAULT_LR[init], steps=args.steps, batch_size=32, eval_every=0, eval_size=500,
                          seed=seed, device="cpu", progress=False),
        out_dir=f"{args.out}/{init.replace(' ', '_')}-seed{seed}",
    )
    r = finetune(config)
    return {"init": init, "seed": seed, "lr": DEFAULT_LR[init], "test_accuracy": r.test_accuracy,
            "zero_shot": r.zero_shot_accuracy, "val_accuracy": r.val_accuracy, "final_loss": r.final_loss,
            "trainable_params": r.trainable_params, "wall_s": r.wall_s}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--test-size", type=int, default=1000)
    ap.add_argument("--inits", nargs="+", default=list(DEFAULT_LR))
    ap.add_argument("--out", default="results/every_init_trains/runs")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'init':12s} {'seed':>4s} {'lr':>7s} {'test acc':>8s} {'0-shot':>7s} {'loss':>7s} {'trainable':>10s} {'s':>6s}")
    for init in args.inits:
        for seed in args.seeds:
            row = run(init, seed, args)
            rows.append(row)
            print(f"{init:12s} {seed:4d} {row['lr']:7.0e} {row['test_accuracy']:8.3f} {row['zero_shot']:7.3f} "
                  f"{row['final_loss']:7.4f} {row['trainable_params']:10d} {row['wall_s']:6.0f}", flush=True)
    path = write_csv(rows, "every_init_trains")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
