"""``nlora-finetune``: the command line of :func:`finetune`; parses argv into the config dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..adapters import INITS, AdapterConfig, IntTuneInit, NLoRAInit
from ..linalg import LANDMARK_RULES, GramNystrom
from .data import DATASETS, DataConfig
from .tasks import MODELS, ModelConfig
from .train import SCHEDULES, RunConfig, TrainConfig, finetune

__all__ = ["parse_args", "main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nlora-finetune", description="Fine-tune a real pretrained model with "
                                 "three-factor adapters on real data, offline.")
    ap.add_argument("--model", default="minilm", help=f"one of {sorted(MODELS)} or a local HF model folder")
    ap.add_argument("--task", default="rotten_tomatoes", help=f"one of {sorted(DATASETS)}")
    ap.add_argument("--init", default="nlora", help=f"one of {sorted(INITS)}, or 'none' (train the task head only)")
    ap.add_argument("--landmarks", default=None, help=f"nlora/inttune only: 'gaussian' or one of {sorted(LANDMARK_RULES)}")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=None, help="scaling s = alpha/rank (default alpha = rank)")
    ap.add_argument("--rslora", action="store_true", help="s = alpha/sqrt(rank)")
    ap.add_argument("--targets", default=None, help="comma-separated module names, or a regex if it has regex chars")
    ap.add_argument("--adapter-dropout", type=float, default=0.0)
    ap.add_argument("--trainable", default=None, help="override trainable factors, e.g. 'N' or 'A,N,B'")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--head-lr", type=float, default=None)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=0.06)
    ap.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--no-zero-shot", action="store_true")
    ap.add_argument("--val-size", type=int, default=1000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--model-dropout", type=float, default=None)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", default="results/finetune/run")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    return ap


def _targets(text: str | None):
    if text is None:
        return None
    return text if any(c in text for c in "\\^$*+?[](){}|") else tuple(t for t in text.split(",") if t)


def parse_args(argv: list[str] | None = None) -> tuple[RunConfig, bool]:
    """argv -> (validated RunConfig, resume flag). Raises ValueError/TypeError from the config validators."""
    a = _parser().parse_args(argv)
    init: object = a.init
    if a.landmarks is not None:
        if a.init not in ("nlora", "inttune"):
            raise ValueError(f"--landmarks: only applies to --init nlora or inttune; got --init {a.init!r}")
        cls = NLoRAInit if a.init == "nlora" else IntTuneInit
        init = cls(method=GramNystrom(sketch=a.landmarks))
    trainable = None if a.trainable is None else frozenset(t.strip() for t in a.trainable.split(","))
    config = RunConfig(
        model=ModelConfig(a.model, a.dtype, a.max_length, a.model_dropout),
        data=DataConfig(a.task, a.data_seed, a.val_size, a.test_size, a.train_size),
        adapter=None if a.init == "none" else
        AdapterConfig(init, a.rank, a.alpha, a.rslora, _targets(a.targets), a.adapter_dropout, trainable, a.seed),
        train=TrainConfig(lr=a.lr, head_lr=a.head_lr, steps=a.steps, batch_size=a.batch_size, grad_accum=a.grad_accum,
                          warmup=a.warmup, schedule=a.schedule, weight_decay=a.weight_decay, clip=a.clip,
                          eval_every=a.eval_every, eval_size=a.eval_size, eval_batch_size=a.eval_batch_size,
                          zero_shot=not a.no_zero_shot, checkpoint_every=a.checkpoint_every, seed=a.seed,
                          device=a.device, progress=not a.no_progress),
        out_dir=a.out,
    )
    return config, a.resume


def main(argv: list[str] | None = None) -> int:
    try:
        config, resume = parse_args(argv)
    except (ValueError, TypeError) as exc:
        print(f"nlora-finetune: error: {exc}", file=sys.stderr)
        return 2
    result = finetune(config, resume=resume)
    print(json.dumps(dataclasses.asdict(result) | {"losses": f"{len(result.losses)} values"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
