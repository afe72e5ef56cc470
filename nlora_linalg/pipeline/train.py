"""The fine-tuning run: configs, training loop, evaluation, atomic checkpoints, exact resume, DDP.

``finetune(RunConfig) -> RunResult`` composes the core (through :func:`inject_adapters`), the adapters and a HF
model. Everything a run writes goes to ``out_dir``: config.json, metrics.jsonl (one JSON object per logged
step / evaluation), summary.json, checkpoints/step-XXXXXX.pt and adapter/ (see :func:`save_adapter`).

Data order is a pure function of (seed, step): step k uses the k-th global batch of a seeded per-epoch
permutation, and under ``torchrun`` rank i takes the i-th contiguous slice of it. So a resumed run continues
exactly where it stopped, and N processes see the same global batches as one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..adapters import AdapterConfig, inject_adapters, save_adapter
from ..adapters.state import to_jsonable
from ..linalg.policy import ParameterError, fail
from .data import DataConfig, load_dataset
from .tasks import ModelConfig, build_task

__all__ = ["TrainConfig", "RunConfig", "RunResult", "finetune", "ConfigMismatchError", "CheckpointError"]

SCHEDULES = ("cosine", "linear", "constant")
_DISPLAY_ONLY = ("progress",)  # TrainConfig fields that change what is shown, never what is computed


class ConfigMismatchError(ParameterError):
    """--resume onto a folder whose saved config differs; the message lists the differing fields."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read; the message names the file and the previous good checkpoints (kept)."""


def _positive(value, name, kind=(int,)):
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise fail(ParameterError, name, "must be > 0", repr(value))


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Optimisation and evaluation.

    lr (> 0) for the adapters (head_lr for a task head, default lr); steps (> 0) optimizer steps; batch_size:
    global examples per step, split into grad_accum micro-batches and across processes; warmup: fraction of
    steps with linear warm-up; schedule: cosine | linear | constant decay after warm-up; weight_decay (AdamW);
    clip: max gradient norm (0 = off); eval_every: validation every k steps (0 = only at the end); eval_size:
    validation examples used (None = all); eval_batch_size; zero_shot: also evaluate the test split before
    training; checkpoint_every: k steps (0 = off), keep_checkpoints: how many to keep; seed; device: auto |
    cpu | cuda[:i]; autocast: bf16 autocast on CUDA; progress: show progress bars.
    """

    lr: float = 1e-3
    head_lr: float | None = None
    steps: int = 150
    batch_size: int = 32
    grad_accum: int = 1
    warmup: float = 0.06
    schedule: str = "cosine"
    weight_decay: float = 0.0
    clip: float = 1.0
    eval_every: int = 50
    eval_size: int | None = 500
    eval_batch_size: int = 64
    zero_shot: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"
    autocast: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        _positive(self.lr, "lr", (int, float))
        if self.head_lr is not None:
            _positive(self.head_lr, "head_lr", (int, float))
        for name in ("steps", "batch_size", "grad_accum", "eval_batch_size", "keep_checkpoints"):
            _positive(getattr(self, name), name)
        if self.batch_size % self.grad_accum:
            raise fail(ParameterError, "grad_accum", f"must divide batch_size={self.batch_size}", self.grad_accum)
        if not 0 <= self.warmup < 1:
            raise fail(ParameterError, "warmup", "must be a fraction in [0, 1)", repr(self.warmup))
        if self.schedule not in SCHEDULES:
            raise fail(ParameterError, "schedule", f"must be one of {list(SCHEDULES)}", repr(self.schedule))
        for name in ("weight_decay", "clip"):
            if not getattr(self, name) >= 0:
                raise fail(ParameterError, name, "must be >= 0", repr(getattr(self, name)))
        for name in ("eval_every", "checkpoint_every", "seed"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise fail(ParameterError, name, "must be an int >= 0", repr(getattr(self, name)))
        if self.eval_size is not None:
            _positive(self.eval_size, "eval_size")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One fine-tuning run: model, data, adapter and training configs, and the output folder.

    ``adapter=None`` trains the task head alone (the baseline for IntTune's parameter budget).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    adapter: AdapterConfig | None = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "results/finetune/run"

    def to_json(self) -> dict:
        return {"model": to_jsonable(self.model), "data": to_jsonable(self.data), "adapter": to_jsonable(self.adapter),
                "train": to_jsonable(self.train)}

    def identity(self) -> dict:
        """:meth:`to_json` without the display-only fields (``train.progress``): what must match for a stored run
        to be reused (:func:`config_key`) or resumed."""
        return _identity(self.to_json())


def _identity(config_json: dict) -> dict:
    """A config's JSON (as saved in config.json) without the display-only train fields."""
    return {**config_json, "train": {k: v for k, v in config_json["train"].items() if k not in _DISPLAY_ONLY}}


@dataclass(frozen=True, slots=True)
class RunResult:
    """Summary of a finished run (also written to summary.json)."""

    out_dir: str
    test_accuracy: float
    zero_shot_accuracy: float | None
    val_accuracy: float
    final_loss: float
    losses: tuple[float, ...]
    trainable_params: int
    split_hash: str
    wall_s: float
    resumed_from: int | None


# --------------------------------------------------------------------------------------------- distributed
def _dist_setup(device_opt: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_opt == "auto":
        device_opt = "cuda" if torch.cuda.is_available() else "cpu"
    if device_opt == "cuda" and world > 1:
        device_opt = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    device = torch.device(device_opt)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return rank, world, device


def _mean_across(x: float, world: int, device) -> float:
    if world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t) / world


# ----------------------------------------------------------------------------------------------- pieces
def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Indices of global batch ``step``: consecutive slices of per-epoch permutations seeded by (seed, epoch)."""
    out, start = [], step * batch
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + batch - len(out)].tolist())
    return out


def lr_factor(step: int, steps: int, warmup: float, schedule: str) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based): linear warm-up, then the decay."""
    w = int(round(warmup * steps))
    if step < w:
        return (step + 1) / (w + 1)
    frac = (step - w) / max(1, steps - w)
    return {"cosine": 0.5 * (1 + math.cos(math.pi * frac)), "linear": 1 - frac, "constant": 1.0}[schedule]


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj, path: pathlib.Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _checkpoints(out: pathlib.Path) -> list[pathlib.Path]:
    return sorted((out / "checkpoints").glob("step-*.pt"))


def _load_checkpoint(out: pathlib.Path) -> dict | None:
    ckpts = _checkpoints(out)
    if not ckpts:
        return None
    try:
        return torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"checkpoint {ckpts[-1]} cannot be read ({type(exc).__name__}: {exc}); previous "
                              f"checkpoints kept: {[p.name for p in ckpts[:-1]]}; delete the bad file to resume "
                              f"from the previous one") from None


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]}: saved {a!r} != now {b!r}"]


def _trainable_state(model: nn.Module) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------------------- the run
def finetune(config: RunConfig, *, resume: bool = False) -> RunResult:
    """Fine-tune ``config.model`` with adapters on ``config.data`` and evaluate; see the module docstring.

    Args:
        config: the validated :class:`RunConfig`.
        resume: continue from the newest checkpoint in ``config.out_dir`` (its config.json must match).

    Returns:
        :class:`RunResult` (rank 0's view under torchrun).

    Raises:
        ConfigMismatchError: resume with a different config (fields listed). CheckpointError: unreadable
        checkpoint. MissingAssetError: model/data package missing (with the install command).
    """
    t_start = time.perf_counter()
    tc = config.train
    rank, world, device = _dist_setup(tc.device)
    if tc.batch_size % (world * tc.grad_accum):
        raise fail(ParameterError, "batch_size", f"must be divisible by processes × grad_accum = {world * tc.grad_accum}",
                   tc.batch_size)
    out = pathlib.Path(config.out_dir)
    cfg_json = config.to_json()
    ckpt = None
    if resume:
        saved = json.loads((out / "config.json").read_text())
        diffs = _diff(_identity(saved), config.identity())
        if diffs:
            raise fail(ConfigMismatchError, "resume", "the saved config must equal the current one", "; ".join(diffs))
        ckpt = _load_checkpoint(out)
    if rank == 0:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg_json, indent=2))
    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    np.random.seed(tc.seed)
    data = load_dataset(config.data)
    task = build_task(config.model, data, device)
    model = task.model
    head = set(task.head)
    if config.adapter is None and not head:
        raise fail(ParameterError, "adapter", "may be None only for models with a task head (encoders)", None)
    if config.adapter is None:
        report = None
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        report = inject_adapters(model, config.adapter, progress=_init_progress(tc.progress and rank == 0))
    for n, p in model.named_parameters():
        if n in head:
            p.requires_grad_(True)
    params = [p for n, p in model.named_parameters() if p.requires_grad and n not in head]
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and n in head]
    groups = [{"params": params, "lr": tc.lr}] + ([{"params": head_params, "lr": tc.head_lr or tc.lr}] if head_params else [])
    opt = torch.optim.AdamW(groups, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc.steps, tc.warmup, tc.schedule))
    trainable = sum(p.numel() for g in groups for p in g["params"])
    val = list(data.val[: tc.eval_size] if tc.eval_size else data.val)
    metrics_path = out / "metrics.jsonl"
    start, zero_shot, losses = 0, None, []
    if ckpt is not None:
        missing = set(ckpt["trainable"]) ^ {n for n, p in model.named_parameters() if p.requires_grad}
        if missing:
            raise CheckpointError(f"checkpoint parameters do not match the model: {sorted(missing)[:5]}")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(ckpt["trainable"][n])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"])
        start, zero_shot, losses = ckpt["step"], ckpt["zero_shot"], list(ckpt["losses"])
        if rank == 0 and metrics_path.exists():  # drop lines logged after the checkpoint
            kept = [line for line in metrics_path.read_text().splitlines() if json.loads(line)["step"] <= start]
            metrics_path.write_text("".join(line + "\n" for line in kept))
    elif rank == 0:
        metrics_path.write_text("")
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    def log(record: dict) -> None:
        if rank == 0:
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(examples) -> float:
        model.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.autocast and device.type == "cuda"):
            acc = task.score(model, examples, tc.eval_batch_size, tc.progress and rank == 0)
        model.train()
        return acc

    if ckpt is None and tc.zero_shot:
        zero_shot = evaluate(list(data.test))
        log({"step": 0, "zero_shot_test_accuracy": zero_shot})
    micro = tc.batch_size // (world * tc.grad_accum)
    train = data.train
    bar = _progress(range(start, tc.steps), tc.progress and rank == 0, "train", initial=start, total=tc.steps)
    model.train()
    for step in bar:
        idx = batch_indices(len(train), tc.batch_size, step, tc.seed)
        mine = idx[rank * tc.batch_size // world : (rank + 1) * tc.batch_size // world]
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for j in range(tc.grad_accum):
            batch = task.collate([train[i] for i in mine[j * micro : (j + 1) * micro]])
            sync = j == tc.grad_accum - 1 or world == 1
            ctx = ddp.no_sync() if not sync else _null()
            with ctx, torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.autocast and device.type == "cuda"):
                loss = task.loss(ddp, batch)
                (loss / tc.grad_accum).backward()
            total += float(loss.detach()) / tc.grad_accum
        if tc.clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], tc.clip)
        opt.step()
        sched.step()
        loss_value = _mean_across(total, world, device)
        losses.append(loss_value)
        record = {"step": step + 1, "loss": loss_value, "lr": sched.get_last_lr()[0]}
        if tc.eval_every and (step + 1) % tc.eval_every == 0 and step + 1 < tc.steps:
            record["val_accuracy"] = evaluate(val)
        log(record)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if tc.checkpoint_every and (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps:
            _checkpoint(out, step + 1, model, opt, sched, zero_shot, losses, rank, world, tc.keep_checkpoints)
    val_acc = evaluate(val)
    test_acc = evaluate(list(data.test))
    log({"step": tc.steps, "val_accuracy": val_acc, "test_accuracy": test_acc})
    result = RunResult(str(out), test_acc, zero_shot, val_acc, losses[-1] if losses else float("nan"), tuple(losses),
                       trainable, data.split_hash, time.perf_counter() - t_start, ckpt["step"] if ckpt else None)
    if rank == 0:
        if report is not None:
            save_adapter(model, out / "adapter", report)
        (out / "summary.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    if world > 1:
        torch.distributed.barrier()
    return result


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(it, enabled, desc, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, **kw)


def _init_progress(enabled: bool):
    """A ``progress(done, total)`` callback for :func:`inject_adapters` driving an ``init`` bar, or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="init", unit="module")
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def _checkpoint(out, step, model, opt, sched, zero_shot, losses, rank, world, keep) -> None:
    rng = _rng_state()
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, rng)
        rng = gathered
    if rank == 0:
        state = {"step": step, "trainable": _trainable_state(model), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "rng": rng, "zero_shot": zero_shot, "losses": losses}
        _atomic_torch_save(state, out / "checkpoints" / f"step-{step:06d}.pt")
        for old in _checkpoints(out)[:-keep]:
            old.unlink()
