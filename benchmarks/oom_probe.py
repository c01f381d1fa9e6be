"""A real out-of-memory search on a GPU: the largest micro-batch that fits, keeping the target batch (not a test).

    python benchmarks/oom_probe.py [--target 1024] [--fraction 0.05] [--dry-run]

CUDA only (without a CUDA device it says so and exits 0). The model is a stack of 4 MLP blocks
(Linear(1024, 4096) -> GELU -> Linear(4096, 1024), residual) on sequences whose length is set from
the GPU's memory so that one sample's activations take about ``--fraction`` of it: the model
runs out of memory at a few tens of samples on any GPU, after seconds. AdamW, TF32 matmuls.
:func:`hpcallbacks.torch.microbatch.find_micro_batch` (the search of the adapters'
``MicroBatchFinder``) probes divisors of ``--target`` with real CUDA allocations: a forward +
backward, an optimizer step and a second forward + backward per probe, ``torch.OutOfMemoryError``
read as "does not fit", the memory freed after it. Printed: each probe (size, fits, peak memory,
seconds), the result (micro-batch x accumulation = target), whether the weights and optimizer
state came back bit-identical, and two micro-batches and a step at the result (they must fit).

``--dry-run`` runs the same code on the CPU with a small model whose forward raises
``torch.OutOfMemoryError`` above an estimated memory budget (to check the script without a GPU).
Bounded: each probe is one update of at most ``--target`` samples; the whole run takes well
under a minute on a recent GPU.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from _machine import header
from torch import nn

from hpcallbacks.torch import microbatch as HTM

WIDTH, DEPTH = 1024, 4


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(x)))


class Net(nn.Module):
    def __init__(self, width: int, depth: int, budget: float | None = None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.budget = budget  # --dry-run: the bytes the simulated device holds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.budget is not None and x.numel() * 4 * 9 * len(self.blocks) > self.budget:
            raise torch.OutOfMemoryError(f"simulated: {x.shape[0]} samples need more than {self.budget:.0f} bytes")
        return self.blocks(x).square().mean()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=int, default=1024, help="samples per optimizer update")
    parser.add_argument("--fraction", type=float, default=0.05, help="one sample's activations / GPU memory")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, with a simulated memory limit")
    args = parser.parse_args()
    header("H4: the largest micro-batch that fits, found by real out-of-memory errors")
    if args.dry_run:
        device, total, width, depth = torch.device("cpu"), 256.0 * 2**20, 64, 2
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing to probe (run this on a GPU, or pass --dry-run)")
        return 0
    else:
        device, total, width, depth = torch.device("cuda"), float(torch.cuda.get_device_properties(0).total_memory), \
            WIDTH, DEPTH
        torch.backends.cuda.matmul.allow_tf32 = True
    # activations kept for backward per block and token: x, up, gelu (1 + 4 + 4 floats of width) -> 36 bytes x width
    length = max(16, int(args.fraction * total / (36 * width * depth)))
    torch.manual_seed(0)
    model = Net(width, depth, budget=total if args.dry_run else None).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    print(f"device: {device} ({total / 2**30:.1f} GiB) | model {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"params, {depth} blocks of width {width} | sequence {length} tokens | one sample ~"
          f"{36 * width * depth * length / 2**30:.2f} GiB of activations | target {args.target}")

    cuda = device.type == "cuda"
    probes: list[dict[str, float]] = []

    def close() -> None:  # the probe in progress ends: its peak memory and time
        if probes and "seconds" not in probes[-1]:
            if cuda:
                torch.cuda.synchronize()
            probes[-1]["peak"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            probes[-1]["seconds"] = time.perf_counter() - probes[-1]["start"]

    def batch_of(n: int) -> torch.Tensor:
        close()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        probes.append({"n": n, "start": time.perf_counter()})
        return torch.randn(n, length, width, device=device)

    weights = [p.detach().clone() for p in model.parameters()]
    started = time.perf_counter()
    result = HTM.find_micro_batch(args.target, 1, model, [opt], batch_of, model)
    close()
    searched = time.perf_counter() - started
    print(f"{'probe':>6} {'fits':>6} {'peak GiB':>9} {'seconds':>8}")
    for probe, (_, fits) in zip(probes, result.probes, strict=True):
        print(f"{probe['n']:>6.0f} {str(fits):>6} {probe['peak']:>9.1f} {probe['seconds']:>8.2f}")
    restored = all(torch.equal(a, b) for a, b in zip(weights, model.parameters())) and not opt.state
    print(f"result: {result.describe()} | search {searched:.1f} s | weights and optimizer state restored: {restored}")

    # the run's steady state at the result: two micro-batches accumulated, an optimizer step (must fit)
    opt.zero_grad(set_to_none=True)
    micro = min(2, result.accumulation)
    for _ in range(micro):
        (model(batch_of(result.micro_batch_size)) / result.accumulation).backward()
    opt.step()
    close()
    peak = max(p["peak"] for p in probes[len(result.probes):])
    seconds = sum(p["seconds"] for p in probes[len(result.probes):])
    print(f"{micro} micro-batches of {result.micro_batch_size} and a step: fit, peak {peak:.1f} GiB, {seconds:.1f} s")
    return 0 if restored else 1


if __name__ == "__main__":
    sys.exit(main())
