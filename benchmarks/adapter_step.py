"""Adapter train-step cost against plain LoRA at equal rank: time and memory, as ratios measured in one run.

Model: all-MiniLM-L6-v2 (or SmolLM2-135M with --model smollm2-135m), adapters on every block Linear, batch of
random token ids, forward + backward + AdamW step. Time: median over --reps steps after --warmup steps, the
inits interleaved round-robin so drift hits all of them alike. Memory: bytes saved for backward by autograd
(counted exactly with saved-tensor hooks) plus trainable parameters, gradients and AdamW state; on CUDA also
torch.cuda.max_memory_allocated. Goal: <= 1.05× LoRA.

    python benchmarks/adapter_step.py [--model minilm] [--rank 8] [--batch 32] [--seq 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from nlora_linalg import inject_adapters, minilm_path, smollm2_path

INITS = ("lora", "slora", "nlora", "inttune", "pissa_fast")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(model_name: str, device):
    from transformers import AutoModel, AutoModelForCausalLM

    if model_name == "minilm":
        return AutoModel.from_pretrained(str(minilm_path())).to(device)
    return AutoModelForCausalLM.from_pretrained(str(smollm2_path()), dtype=torch.float32).to(device)


def saved_bytes(step) -> int:
    """Bytes autograd saves for backward during ``step()`` (each storage counted once)."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(backward=False)
    return total


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm", choices=["minilm", "smollm2-135m"])
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    base = build(args.model, device)
    x = torch.randint(100, 5000, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)
    setups = {}
    for init in INITS:
        model = copy.deepcopy(base).train()
        inject_adapters(model, init=init, rank=args.rank)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step(backward=True, model=model, opt=opt):
            out = model(input_ids=x)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits
            loss = hidden.float().pow(2).mean()
            if backward:
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        state = sum(p.numel() * p.element_size() * 4 for p in params)  # param + grad + Adam m, v
        setups[init] = (step, saved_bytes(step) + state, sum(p.numel() for p in params))
    times = {k: [] for k in setups}
    for i in range(args.warmup + args.reps):
        for init, (step, _, _) in setups.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            if i >= args.warmup:
                times[init].append(time.perf_counter() - t0)
    t_lora, m_lora = statistics.median(times["lora"]), setups["lora"][1]
    print(f"model {args.model}, rank {args.rank}, batch {args.batch}×{args.seq}, device {device}, "
          f"torch threads {torch.get_num_threads()}, {args.reps} timed steps each (interleaved)")
    print(f"{'init':12s} {'trainable':>10s} {'ms/step':>9s} {'time/LoRA':>10s} {'train MB':>9s} {'mem/LoRA':>9s}")
    for init, (_, mem, n) in setups.items():
        t = statistics.median(times[init])
        print(f"{init:12s} {n:10d} {1e3 * t:9.1f} {t / t_lora:10.3f} {mem / 2**20:9.1f} {mem / m_lora:9.3f}")


if __name__ == "__main__":
    main()
