"""Per-update time of a Lightning fit: hpcallbacks vs. the same training written by hand (not a test).

    python benchmarks/bench_lightning.py [--updates 300] [--repeats 5] [--width 256] [--batch 64]
                                         [--device cpu|cuda] [--sync-debug] [--extras]

One process, one model (a 6-layer MLP in an ``nn.ModuleList``, so 6 layer groups), the same data
and SGD (lr 0.01, momentum 0.9, weight decay 1e-4), one epoch of ``--updates`` updates. Three
runs are compared:

* ``with``: the user's single-group SGD and the callbacks ``CosineRestart()``,
  ``ReduceOnPlateau(monitor="train_loss")`` and
  ``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))``: every group
  trains, the callbacks regroup the optimizer into one param group per layer with
  ``lr = 0.01 x factor`` and set every group's LR at every update (``--extras`` adds
  ``ScaleLearningRate``, ``ParamScheduler`` on momentum and weight decay, and ``InstanceNoise``,
  which the by-hand run does not do: the ratio then also holds their cost and the LRs differ).
* ``by hand``: the same training without hpcallbacks: ``configure_optimizers`` builds the SGD
  with one param group per layer, bottom to top, ``lr = 0.01 x LRFactors.geometric().resolve(6)``,
  and a ``LambdaLR`` whose lambda is the core ``hpcallbacks.CosineRestart(1.0,
  first_decay_steps=updates per epoch)`` (the "with" run's default), returned as
  ``{"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}``: the same LR
  per group and update (checked below).
* ``plain``: the single-group SGD, no schedule, no callback: what today's figure compared with.

Each run's figure is the median gap between consecutive ``on_train_batch_start`` calls (host
time, no synchronize) after the first fifth of the run. One warm-up run of each, then
``--repeats`` rounds of the three, the order rotated each round; a row's figure is the median
over its rounds, and the ratios are of those medians. Read:

* ``ratio with/by hand`` -- the issue's goal: <= 1.01 (at most 1% per update over the same
  training written by hand);
* ``ratio with/plain`` -- no goal: "plain" has one param group (fewer per-group optimizer
  kernels) and no schedule;
* ``hooks per update`` -- seconds inside the hpcallbacks per-step hooks of one more "with" run,
  summed per update: the mean over the updates after the first fifth (goal <= 10 us), and the
  median beside it (the typical update).
  The hooks timed are those the callbacks' classes override (found from their MRO), listed;
* ``param groups`` -- each run's optimizer at the end (``with`` and ``by hand`` must match), and
  for ``StagedUnfreeze(FreezePlan.all_trainable())`` (uniform factors) vs. the user's optimizer.

``--sync-debug`` (CUDA) runs every "with" fit under ``torch.cuda.set_sync_debug_mode("error")``:
any host-device synchronisation in a step raises.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from _compare import HookTimer, LayerLRs, alternate, report  # noqa: E402
from _machine import header  # noqa: E402
from torch import nn  # noqa: E402

import hpcallbacks_lightning as HL  # noqa: E402
from hpcallbacks import CosineRestart, Cyclic, FreezePlan, LRFactors, PolynomialDecay  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
LR = 0.01
#: Lightning's hooks called at every update (or micro-batch): the ones timed when a callback overrides them.
PER_STEP = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
            "on_before_optimizer_step", "on_before_zero_grad")


class MLP(L.LightningModule):
    """``updates_per_epoch`` set: the by-hand optimizer (one group per layer) and ``LambdaLR``."""

    def __init__(self, width: int, depth: int = 6, updates_per_epoch: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        dims = [32] + [width] * (depth - 1) + [1]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)])
        self.updates_per_epoch = updates_per_epoch

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        if self.updates_per_epoch is None:
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
        factors = LRFactors.geometric().resolve(len(self.layers))
        optimizer = torch.optim.SGD([{"params": list(layer.parameters()), "lr": LR * f}
                                     for layer, f in zip(self.layers, factors, strict=True)],
                                    lr=LR, momentum=0.9, weight_decay=1e-4)
        curve = CosineRestart(1.0, first_decay_steps=self.updates_per_epoch)  # the "with" run's default
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, curve)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Clock(L.Callback):
    """Host timestamps at each update's start (no synchronize) and the optimizer's param groups at the end."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.groups = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        self.groups = len(trainer.optimizers[0].param_groups)


class LRRecorder(L.Callback):
    """Every layer's LR as the optimizer steps (listed last: after the hpcallbacks hooks)."""

    def __init__(self) -> None:
        self.trace = LayerLRs()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.trace.record(optimizer.param_groups, pl_module.layers)


GROUPS: dict[str, int] = {}  # run -> param groups of its optimizer at the end of the last fit


def fit(kind: str, args: argparse.Namespace, data, *, timer_for=None, recorder: LRRecorder | None = None,
        updates: int | None = None) -> float:
    """One fit; the median gap between updates. ``timer_for(clock)`` gives a HookTimer for the hpcallbacks hooks."""
    clock = Clock()
    chosen: list = []
    if kind == "with":
        chosen = [HL.CosineRestart(), HL.ReduceOnPlateau(monitor="train_loss"),
                  HL.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))]
        if args.extras:  # the per-update callbacks of hpcallbacks_lightning.extras
            chosen += [HL.ScaleLearningRate(base_batch_size=args.batch // 2, warmup_epochs=0.5),
                       HL.ParamScheduler({"momentum": Cyclic(0.85, 0.95, step_size_up=50),
                                          "weight_decay": PolynomialDecay(1e-4, args.updates, 0.0)}),
                       HL.InstanceNoise(PolynomialDecay(0.1, args.updates, 0.0))]
    elif kind == "plan without factors":
        chosen = [HL.StagedUnfreeze(FreezePlan.all_trainable())]
    if timer_for is not None:
        timer = timer_for(clock)
        chosen = [wrapped for c in chosen for wrapped in timer.wrap_twin(c)]
    callbacks = [clock, *chosen] + ([recorder] if recorder is not None else [])
    trainer = L.Trainer(max_epochs=1, accelerator=args.device, devices=1, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_train_batches=updates)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch)
    model = MLP(args.width, updates_per_epoch=len(loader) if kind == "by hand" else None)
    sync = kind == "with" and args.sync_debug
    if sync:
        torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.fit(model, loader)
    finally:
        if sync:
            torch.cuda.set_sync_debug_mode(0)
    GROUPS[kind] = clock.groups
    gaps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)][len(clock.stamps) // 5:]
    return statistics.median(gaps) if gaps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300, help="updates (one epoch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: the 'with' fits under sync debug 'error'")
    parser.add_argument("--extras", action="store_true",
                        help="add ScaleLearningRate, ParamScheduler (momentum, weight decay) and InstanceNoise")
    args = parser.parse_args()
    if args.sync_debug and args.device != "cuda":
        parser.error("--sync-debug needs --device cuda")
    header("Lightning: per-update time, hpcallbacks vs. the same training by hand (and a plain run)")
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(args.updates * args.batch, 32, generator=g),
                                          torch.randn(args.updates * args.batch, 1, generator=g))
    kinds = ("with", "by hand", "plain")
    results = alternate({k: (lambda k=k: fit(k, args, data)) for k in kinds}, args.repeats,
                        progress=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    groups = {k: GROUPS[k] for k in kinds}
    # Instrumented runs, after the timed ones: hooks timed and LRs recorded ("with"), LRs ("by hand").
    timers: list[HookTimer] = []

    def timer_for(clock: Clock) -> HookTimer:
        timers.append(HookTimer(lambda: len(clock.stamps) - 1, PER_STEP, L.Callback))
        return timers[-1]

    lr_with, lr_hand = LRRecorder(), LRRecorder()
    fit("with", args, data, timer_for=timer_for, recorder=lr_with)
    fit("by hand", args, data, recorder=lr_hand)
    fit("plan without factors", args, data, updates=min(args.updates, 5))
    timer = timers[-1]
    hooks = timer.per_update(args.updates // 5, args.updates - 2)
    floor = timer.control.per_update(args.updates // 5, args.updates - 2) if timer.control else None

    print(f"\ndevice={args.device} width={args.width} batch={args.batch} updates={args.updates} "
          f"repeats={args.repeats}{' extras' if args.extras else ''}{' sync-debug' if args.sync_debug else ''}")
    described = {
        "with": "CosineRestart + ReduceOnPlateau + StagedUnfreeze(all_trainable, geometric)"
                + (" + extras" if args.extras else ""),
        "by hand": "one SGD group per layer (geometric factors) + LambdaLR(CosineRestart), interval step",
        "plain": "one SGD group, no schedule, no callback",
    }
    report(results, described, groups, compared="with",
           hooks_us=(hooks[0] * 1e6, hooks[1] * 1e6),
           floor_us=(floor[0] * 1e6, floor[1] * 1e6) if floor else None,
           plan_groups=(GROUPS["plan without factors"], 1),
           notes=[f"LR per update and layer, with vs by hand: {lr_with.trace.compare(lr_hand.trace)}"
                  + (" (--extras changes the 'with' LRs: expected)" if args.extras else ""),
                  f"param groups' layers, in the optimizer's order: with {lr_with.trace.order}, "
                  f"by hand {lr_hand.trace.order}"])
    print("hooks timed (those the callbacks' classes override, per step):")
    print("\n".join(timer.describe()))
    print("\n".join(timer.breakdown()))
    if timer.control:
        print("\n".join(timer.control.breakdown()[2:]))
    print(f"param groups with a plan without factors: StagedUnfreeze(FreezePlan.all_trainable()) leaves "
          f"{GROUPS['plan without factors']} param group(s); the user's optimizer has 1 "
          f"({'equal' if GROUPS['plan without factors'] == 1 else 'NOT equal'})")
    if args.sync_debug:
        print("sync debug mode 'error' over every 'with' fit: no host-device synchronisation in the steps")


if __name__ == "__main__":
    main()
