"""Achieved memory bandwidth of the batched sketch Y = W·Ω (one pass over stacked weights) against the device's
copy bandwidth (a large clone), and the distance of whole inits from the one-pass floor.

The floor of any sketch-based init is one read of W: time ≥ bytes(W) / bandwidth, and 2·m·n·k flops. For the
default Gram–Nyström (k = 2r, q = 1) four passes are needed (WΩ, WᵀQ, WQ, QᵀW), so its floor is 4 reads.

    python benchmarks/sketch_bandwidth.py [--device cuda] [--rank 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nlora_linalg import GramNystrom, nystrom_init

SHAPES = {"4096x4096 ×4 (q/k/v/o)": (4, 4096, 4096), "11008x4096 ×2 (gate/up)": (2, 11008, 4096)}


def timed(fn, device, reps=5) -> float:
    fn()
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    big = torch.empty(256 * 2**20 // 4, device=device)  # 256 MiB
    copy_bw = 2 * big.numel() * 4 / timed(lambda: big.clone(), device)  # read + write
    print(f"device {device}: copy bandwidth {copy_bw / 1e9:.1f} GB/s (256 MiB clone, read + write)")
    print(f"{'stack':26s} {'GB':>6s} {'sketch s':>9s} {'GB/s':>7s} {'% copy':>7s} {'init s':>8s} {'× 4-pass floor':>15s}")
    g = torch.Generator(device=device).manual_seed(0)
    for label, (b, m, n) in SHAPES.items():
        W = torch.randn(b, m, n, device=device, generator=g)
        k = 2 * args.rank
        Omega = torch.randn(b, n, k, device=device, generator=g)
        t_sketch = timed(lambda: W @ Omega, device)
        gb = W.numel() * 4 / 1e9
        gens = [torch.Generator(device=device).manual_seed(i) for i in range(b)]
        t_init = timed(lambda: nystrom_init(W, args.rank, method=GramNystrom(), generator=gens, error="estimate"),
                       device, reps=3)
        floor = 4 * W.numel() * 4 / copy_bw * 2  # four reads at the copy bandwidth (copy counted read + write)
        print(f"{label:26s} {gb:6.2f} {t_sketch:9.4f} {gb / t_sketch:7.1f} {100 * gb * 1e9 / t_sketch / (copy_bw / 2):6.0f}% "
              f"{t_init:8.3f} {t_init / floor:15.1f}")


if __name__ == "__main__":
    main()
