"""Effectiveness: the demo's three runs over several seeds, mean +- sd accuracy (not a test).

    python benchmarks/effectiveness.py [--seeds 0 1 2] [--epochs 6]

(a) naive full fine-tune, (b) Lightning BackboneFinetuning, (c) the hpcallbacks recipe, on
EfficientNet-Lite0 (ImageNet) + sklearn digits, exactly as ``hpcallbacks demo`` runs them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import hpcallbacks_demo as demo  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    results: dict[str, list[demo.RunResult]] = {name: [] for name in demo.LABELS}
    start = time.perf_counter()
    for seed in args.seeds:
        data = demo.load_digits_images(seed, quick=False)
        for name in demo.LABELS:
            r = demo.run_one(name, data, args.epochs, seed, progress=False)
            results[name].append(r)
            print(f"seed {seed} {demo.LABELS[name]:<36} acc {r.accuracy:.3f} best {r.best_accuracy:.3f} "
                  f"{r.seconds:.0f} s", flush=True)
    print(f"\n{len(args.seeds)} seeds, {args.epochs} epochs each ({time.perf_counter() - start:.0f} s in all)")
    print(f"{'run':<36} {'final acc mean +- sd':>22} {'best acc mean +- sd':>22} {'wall s mean':>12}")
    for name, rs in results.items():
        acc = [r.accuracy for r in rs]
        best = [r.best_accuracy for r in rs]
        sd = statistics.stdev if len(rs) > 1 else (lambda v: 0.0)
        print(f"{demo.LABELS[name]:<36} {statistics.mean(acc):>14.3f} +- {sd(acc):.3f} "
              f"{statistics.mean(best):>14.3f} +- {sd(best):.3f} {statistics.mean(r.seconds for r in rs):>12.1f}")


if __name__ == "__main__":
    main()
