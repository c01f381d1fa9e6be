"""Run every benchmark of this folder in sequence, each in its own process (``make bench``; not a test).

    python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--gpu] [--quick] [--list]

Prints each command and its output as it runs, then a summary:

* each benchmark's exit status and wall time;
* the overhead table, from the ``summary:`` line each overhead benchmark prints
  (``benchmarks/_compare.py``): ``with/by hand``, the hpcallbacks run over the same training
  written by hand (goal <= 1.01); ``no factors/by hand``, Keras' like-for-like pair (its by-hand
  run has one LR; goal <= 1.01); ``with/plain``, over the plain single-group run (no goal);
  ``hooks us``, the time inside the hpcallbacks per-step hooks per update (goal <= 10 us on
  average; the median beside it); the param groups of the with / by-hand / plain optimizers,
  and the groups a plan without factors leaves against the user's one group;
* each benchmark's headline lines (ratios, hooks, param groups, LR checks, traces per stage,
  the effectiveness table).

The CPU set (default) is every script at its defaults, the Keras one on both the TF and the torch
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
HEADLINE = re.compile(r"^ratio |^hooks per update|^param groups|^LR |traces per stage|^setup |^[A-Z].*StagedUnfreeze|"
                      r"BackboneFinetuning  |^forward only|^StagedUnfreeze, |\+- ")
SUMMARY = "summary: "  # the overhead benchmarks' key=value line (benchmarks/_compare.py)
RATIO_GOAL, HOOK_GOAL_US = 1.01, 10.0


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


def _figures(lines: list[str]) -> dict[str, str]:
    """The ``key=value`` pairs of a benchmark's last ``summary:`` line ({} when it printed none)."""
    found = [s for s in lines if s.startswith(SUMMARY)]
    if not found:
        return {}
    return dict(pair.split("=", 1) for pair in found[-1][len(SUMMARY):].split() if "=" in pair)


def _goal(value: str | None, goal: float) -> str:
    if value is None:
        return "-"
    try:
        return f"{value} ({'ok' if float(value) <= goal else 'over'})"
    except ValueError:
        return value


def overhead_table(summary: list[tuple[Bench, int | str, float, list[str]]]) -> str | None:
    """One row per overhead benchmark: its ratios, hook time and param groups."""
    rows = []
    for b, _, _, lines in summary:
        f = _figures(lines)
        if not f:
            continue
        groups = f.get("groups", "-").replace("by-hand", "hand")
        rows.append([b.name, _goal(f.get("with/by-hand"), RATIO_GOAL),
                     _goal(f.get("with-no-factors/by-hand"), RATIO_GOAL), f.get("with/plain", "-"),
                     f.get("hooks_us", "-"), f.get("floor_us", "-"), _goal(f.get("net_us"), HOOK_GOAL_US), groups,
                     f.get("plan_without_factors_groups", "-")])
    if not rows:
        return None
    return table(["benchmark", "with/by hand", "no factors/by hand", "with/plain", "hooks us",
                  "twins us", "own work us", "param groups", "plan w/o factors / user's"], rows)


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
        summary.append((b, proc.returncode, time.perf_counter() - start,
                        [s for s in lines if HEADLINE.search(s) or s.startswith(SUMMARY)]))
    print(f"\n{'=' * 100}\nsummary{' (--quick: smoke sizes, not figures to report)' if args.quick else ''}")
    print(table(["benchmark", "exit", "seconds", "command"],
                [[b.name, rc, f"{s:.0f}", b.shown(args.quick)] for b, rc, s, _ in summary]))
    overhead = overhead_table(summary)
    if overhead:
        print(f"\noverhead against the same training by hand (goals: ratio <= {RATIO_GOAL}, hooks <= "
              f"{HOOK_GOAL_US:g} us per update; 'no factors/by hand' is Keras' like-for-like pair; param groups "
              "with/by hand/plain; a plan without factors should leave the user's count)")
        print(overhead)
    for b, _, _, heads in summary:
        heads = [s for s in heads if not s.startswith(SUMMARY)]
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
