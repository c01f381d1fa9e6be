"""Run every benchmark of this folder in sequence, each in its own process (``make bench``; not a test).

    python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--gpu] [--quick] [--list]

Prints each command and its output as it runs, then a summary: each benchmark's exit status and
wall time, and its headline lines (ratios, traces per stage, the effectiveness table). The CPU
set (default) is every script at its defaults, the Keras one on both the TF and the torch
backends; ``--gpu`` runs the CUDA set instead: the Lightning and HF overhead benchmarks on the
GPU, then again under ``torch.cuda.set_sync_debug_mode("error")`` (the sync check). ``--quick``
passes smaller sizes to each script (a smoke run; the figures are not the ones to report).
The environment gets ``OMP_NUM_THREADS=1``, ``TF_CPP_MIN_LOG_LEVEL=2``, ``HF_HUB_OFFLINE=1``,
``TRANSFORMERS_OFFLINE=1`` and ``MPLBACKEND=Agg`` unless already set.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _machine import header, table

HERE = Path(__file__).resolve().parent
ENV_DEFAULTS = {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
HEADLINE = re.compile(r"ratio with/without|traces per stage|^setup |^[A-Z].*StagedUnfreeze|BackboneFinetuning  |"
                      r"^forward only|^StagedUnfreeze, |\+- ")


@dataclass
class Bench:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    quick: list[str] = field(default_factory=list)  # extra arguments under --quick

    def command(self, quick: bool) -> list[str]:
        return [sys.executable, str(HERE / self.script), *self.args, *(self.quick if quick else [])]

    def shown(self, quick: bool) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        cmd = shlex.join(["python", f"benchmarks/{self.script}", *self.args, *(self.quick if quick else [])])
        return f"{env} {cmd}" if env else cmd


SMALL_OVERHEAD = ["--updates", "100", "--repeats", "2"]
CPU = [
    Bench("lightning", "bench_lightning.py", quick=SMALL_OVERHEAD),
    Bench("lightning-extras", "bench_lightning.py", ["--extras"], quick=SMALL_OVERHEAD),
    Bench("hf", "bench_hf.py", quick=SMALL_OVERHEAD + ["--logging-steps", "50"]),
    Bench("hf-extras", "bench_hf.py", ["--extras"], quick=SMALL_OVERHEAD + ["--logging-steps", "50"]),
    Bench("keras-tf", "bench_keras.py", env={"KERAS_BACKEND": "tensorflow"},
          quick=["--updates", "50", "--epochs", "3", "--repeats", "2"]),
    Bench("keras-torch", "bench_keras.py", env={"KERAS_BACKEND": "torch"},
          quick=["--updates", "50", "--epochs", "3", "--repeats", "2"]),
    Bench("frozen", "bench_frozen.py", quick=["--updates", "5", "--warmup", "2"]),
    Bench("effectiveness", "effectiveness.py", quick=["--seeds", "0", "--epochs", "2"]),
]
GPU = [
    Bench("lightning-cuda", "bench_lightning.py", ["--device", "cuda"], quick=SMALL_OVERHEAD),
    Bench("hf-cuda", "bench_hf.py", ["--device", "cuda"], quick=SMALL_OVERHEAD),
    Bench("lightning-cuda-sync", "bench_lightning.py", ["--device", "cuda", "--sync-debug"], quick=SMALL_OVERHEAD),
    Bench("hf-cuda-sync", "bench_hf.py", ["--device", "cuda", "--sync-debug"], quick=SMALL_OVERHEAD),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these out")
    parser.add_argument("--gpu", action="store_true", help="the CUDA set (overhead on the GPU and the sync check)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their commands, run nothing")
    args = parser.parse_args()
    benches = GPU if args.gpu else CPU
    names = {b.name for b in benches}
    unknown = (set(args.only or []) | set(args.skip)) - names
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; this set has {', '.join(b.name for b in benches)}")
    chosen = [b for b in benches if (args.only is None or b.name in args.only) and b.name not in args.skip]
    if args.list:
        for b in chosen:
            print(f"{b.name:<22} {b.shown(args.quick)}")
        return 0
    header("hpcallbacks benchmarks" + (" (GPU set)" if args.gpu else ""))
    summary: list[tuple[Bench, int | str, float, list[str]]] = []
    for b in chosen:
        print(f"\n{'=' * 100}\n$ {b.shown(args.quick)}", flush=True)
        if not (HERE / b.script).exists():
            print(f"(skipped: benchmarks/{b.script} is not here)")
            summary.append((b, "missing", 0.0, []))
            continue
        env = {**ENV_DEFAULTS, **os.environ, **b.env}
        start = time.perf_counter()
        lines: list[str] = []
        with subprocess.Popen(b.command(args.quick), env=env, cwd=HERE.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line.rstrip("\n"))
        summary.append((b, proc.returncode, time.perf_counter() - start, [s for s in lines if HEADLINE.search(s)]))
    print(f"\n{'=' * 100}\nsummary{' (--quick: smoke sizes, not figures to report)' if args.quick else ''}")
    print(table(["benchmark", "exit", "seconds", "command"],
                [[b.name, rc, f"{s:.0f}", b.shown(args.quick)] for b, rc, s, _ in summary]))
    for b, _, _, heads in summary:
        if heads:
            print(f"\n[{b.name}]")
            print("\n".join(heads))
    known = {b.script for b in CPU + GPU} | {Path(__file__).name}
    others = sorted(p.name for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name not in known)
    if others:
        print(f"\nnot in run_all.py's lists, not run: {', '.join(others)}")
    return 0 if all(rc == 0 for _, rc, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
