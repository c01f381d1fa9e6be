"""Per-update time of a HuggingFace Trainer run: hpcallbacks vs. the same training written by hand (not a test).

    python benchmarks/bench_hf.py [--updates 300] [--repeats 5] [--width 256] [--batch 64]
                                  [--logging-steps 100] [--device cpu|cuda] [--sync-debug] [--extras]

One process, one model (a 6-layer MLP with two outputs in an ``nn.ModuleList``, so 6 layer
groups), the same data, SGD (lr 0.01, momentum 0.9, weight decay 1e-4) and Trainer subclass, one
epoch of ``--updates`` updates. The loss is the sum of two MSE terms; the Trainer subclass keeps
their running sums on the device and adds their means (``loss_a``, ``loss_b``) to the Trainer's
logs every ``--logging-steps`` updates, in every run. Three runs are compared:

* ``with``: the user's single-group SGD (``optimizers=(opt, None)``, ``lr_scheduler_type=
  "constant"``) and the callbacks ``CosineRestart()``,
  ``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))`` and
  ``ReduceOnPlateau(monitor="val_loss")`` (fed at evaluations: every run evaluates two batches
  once, at the end of the epoch, after the last timed update): every group trains, the
  callbacks regroup the optimizer into one param group per layer with ``lr = 0.01 x factor``
  and set every group's LR at every update.
  ``--extras`` adds ``HyperparameterAdvisor()``, ``LossBalance(("loss_a", "loss_b"))``,
  ``ScaleLearningRate`` and a ``ParamScheduler`` on momentum and weight decay, which the by-hand
  run does not do: the ratio then also holds their cost and the LRs differ.
* ``by hand``: the same training without hpcallbacks: the SGD built with one param group per
  layer, bottom to top, ``lr = 0.01 x LRFactors.geometric().resolve(6)``, and a ``LambdaLR``
  whose lambda is the core ``hpcallbacks.CosineRestart(1.0, first_decay_steps=updates per
  epoch)`` (the "with" run's default), given as ``Trainer(optimizers=(opt, sched))``; HF steps
  it once per update: the same LR per layer and update (checked below, layer by layer: the HF
  adapter lists the top layer's group first, so HF's ``learning_rate`` log shows the schedule,
  while the by-hand optimizer lists them bottom to top; the order of each is printed).
* ``plain``: the single-group SGD and HF's constant schedule, no callback: today's reference.

Each run's figure is the median gap between consecutive ``on_step_begin`` calls (host time, no
synchronize) after the first fifth of the run. One warm-up run of each, then ``--repeats``
rounds of the three, the order rotated each round; a row's figure is the median over its rounds,
and the ratios are of those medians. Read:

* ``ratio with/by hand`` -- the issue's goal: <= 1.01;
* ``ratio with/plain`` -- no goal: "plain" has one param group and HF's constant schedule;
* ``hooks per update`` -- seconds inside the hpcallbacks per-step hooks (those among
  ``on_step_begin``, ``on_substep_end``, ``on_pre_optimizer_step``, ``on_optimizer_step``,
  ``on_step_end``, ``on_log`` that the callbacks' classes override, found from their MRO and
  listed) of one more "with" run, summed per update: the mean over the updates after the first
  fifth (it holds the ``on_log`` of the logging steps; goal <= 10 us), and the median beside it;
* ``param groups`` -- each run's optimizer at the end (``with`` and ``by hand`` must match), and
  for ``StagedUnfreeze(FreezePlan.all_trainable())`` (uniform factors) vs. the user's optimizer.

``--sync-debug`` (CUDA only) runs every "with" update, from the first ``on_step_begin`` hook to
the last ``on_step_end`` hook, under ``torch.cuda.set_sync_debug_mode("error")``: a host-device
synchronisation in a step (the model's, HF's or a callback's) raises. Outside that window are the
Trainer's own synchronising work: fetching the next batch (a blocking host-to-device copy) and its
logging steps (``loss.item()``, and the callbacks' ``on_log`` there). The hpcallbacks callbacks put
themselves first in HF's list at ``on_train_begin``; the guard that opens the window then moves
itself before them. ``logging_nan_inf_filter`` is off in every run (it reads the loss on the
host every micro-batch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _compare import HookTimer, LayerLRs, alternate, report  # noqa: E402
from _machine import header  # noqa: E402
from torch import nn  # noqa: E402
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hpcallbacks_hf as H  # noqa: E402
from hpcallbacks import CosineRestart, Cyclic, FreezePlan, LRFactors, PolynomialDecay  # noqa: E402

hf_logging.set_verbosity_error()
LR = 0.01
#: HF's hooks called at every update (or micro-batch, or logging step): the ones timed when a callback overrides them.
PER_STEP = ("on_step_begin", "on_substep_end", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end", "on_log")


class MLP(nn.Module):
    """bench_lightning's MLP with two outputs; the loss is the sum of one MSE term per output."""

    def __init__(self, width: int, depth: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        dims = [32] + [width] * (depth - 1) + [2]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:])])

    def forward(self, x, y):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        loss_a = nn.functional.mse_loss(x[:, 0], y[:, 0])
        loss_b = nn.functional.mse_loss(x[:, 1], y[:, 1])
        return {"loss": loss_a + loss_b, "terms": torch.stack([loss_a.detach(), loss_b.detach()])}


class TermsTrainer(Trainer):
    """Sums the two loss terms on the device; adds their means to the Trainer's logs (no extra sync)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs)
        if model.training:
            sums = getattr(self, "_term_sums", None)
            self._term_sums = out["terms"] if sums is None else sums + out["terms"]
            self._term_count = getattr(self, "_term_count", 0) + 1
        return (out["loss"], out) if return_outputs else out["loss"]

    def log(self, logs, *args, **kwargs):
        sums = getattr(self, "_term_sums", None)
        if "loss" in logs and sums is not None:  # a training log: the Trainer has just synchronised for "loss"
            a, b = (sums / self._term_count).tolist()
            logs = {**logs, "loss_a": a, "loss_b": b}
            self._term_sums, self._term_count = None, 0
        super().log(logs, *args, **kwargs)


class Clock(TrainerCallback):
    """Host timestamps at each update's start (no synchronize) and the optimizer's param groups at the end."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.groups = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        self.groups = len(optimizer.param_groups)


class LRRecorder(TrainerCallback):
    """Every layer's LR just before the optimizer steps (after the hpcallbacks hooks, which HF calls first)."""

    def __init__(self) -> None:
        self.trace = LayerLRs()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, model=None, **kwargs):
        self.trace.record(optimizer.param_groups, model.layers)


class SyncGuard(TrainerCallback):
    """``set_sync_debug_mode("error")`` from the first ``on_step_begin`` hook to the last ``on_step_end`` hook.

    The hpcallbacks callbacks move themselves right after HF's ``DefaultFlowCallback`` at
    ``on_train_begin``; the "on" guard then moves itself to the front of the handler's list (it
    runs after them there), so its ``on_step_begin`` comes before theirs. The "off" guard stays
    after them.
    """

    def __init__(self, on: bool) -> None:
        self.on = on
        self.handler = None  # the Trainer's callback handler, set once the Trainer is built

    def on_train_begin(self, args, state, control, **kwargs):
        if self.on and self.handler is not None:  # moving an item forward keeps HF's loop over the list intact
            self.handler.callbacks.remove(self)
            self.handler.callbacks.insert(0, self)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.on:
            torch.cuda.set_sync_debug_mode("error")

    def on_step_end(self, args, state, control, **kwargs):
        if not self.on:
            torch.cuda.set_sync_debug_mode(0)

    def on_train_end(self, args, state, control, **kwargs):
        torch.cuda.set_sync_debug_mode(0)


GROUPS: dict[str, int] = {}  # run -> param groups of its optimizer at the end of the last run
LAST: dict[str, TrainerCallback] = {}  # the last "with --extras" run's advisor and LossBalance, for the report


def by_hand(model: MLP, updates_per_epoch: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """One SGD group per layer (bottom to top, geometric factors) and the cosine-with-restarts LambdaLR."""
    factors = LRFactors.geometric().resolve(len(model.layers))
    optimizer = torch.optim.SGD([{"params": list(layer.parameters()), "lr": LR * f}
                                 for layer, f in zip(model.layers, factors, strict=True)],
                                lr=LR, momentum=0.9, weight_decay=1e-4)
    curve = CosineRestart(1.0, first_decay_steps=updates_per_epoch)  # the "with" run's default
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, curve)


def train(kind: str, args: argparse.Namespace, data: list[dict], evals: list[dict], out_dir: str, *, timer_for=None,
          recorder: LRRecorder | None = None, updates: int | None = None) -> float:
    """One run; the median gap between updates. ``timer_for(clock)`` gives a HookTimer for the hpcallbacks hooks."""
    clock = Clock()
    chosen: list = []
    if kind == "with":
        chosen = [H.CosineRestart(), H.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric())),
                  H.ReduceOnPlateau(monitor="val_loss")]
        if args.extras:
            extras = [H.HyperparameterAdvisor(), H.LossBalance(("loss_a", "loss_b")),
                      H.ScaleLearningRate(base_batch_size=args.batch // 2, warmup_epochs=0.5),
                      H.ParamScheduler({"momentum": Cyclic(0.85, 0.95, step_size_up=50),
                                        "weight_decay": PolynomialDecay(1e-4, args.updates, 0.0)})]
            LAST.update(advisor=extras[0], balance=extras[1])
            chosen += extras
    elif kind == "plan without factors":
        chosen = [H.StagedUnfreeze(FreezePlan.all_trainable())]
    if timer_for is not None:
        timer = timer_for(clock)
        chosen = [wrapped for c in chosen for wrapped in timer.wrap_twin(c)]
    if kind == "with" and args.sync_debug:  # first and last: the window holds every hpcallbacks hook of the step
        chosen = [SyncGuard(True), *chosen, SyncGuard(False)]
    callbacks = [clock, *chosen] + ([recorder] if recorder is not None else [])
    model = MLP(args.width)
    targs = TrainingArguments(
        output_dir=out_dir, use_cpu=args.device == "cpu", report_to=[], save_strategy="no", disable_tqdm=True,
        logging_strategy="steps", logging_steps=args.logging_steps, logging_nan_inf_filter=False,
        per_device_train_batch_size=args.batch, num_train_epochs=1, max_steps=updates or -1, learning_rate=LR,
        lr_scheduler_type="constant", seed=0, dataloader_num_workers=0, train_sampling_strategy="sequential",
        eval_strategy="epoch", prediction_loss_only=True, label_names=["y"])
    if kind == "by hand":
        optimizers = by_hand(model, updates_per_epoch=-(-len(data) // args.batch))  # len(train dataloader)
    else:
        optimizers = (torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4), None)
    trainer = TermsTrainer(model=model, args=targs, train_dataset=data, eval_dataset=evals, callbacks=callbacks,
                           optimizers=optimizers)
    trainer.remove_callback(PrinterCallback)  # disable_tqdm's printer: the logs would fill the report
    for c in callbacks:
        if isinstance(c, SyncGuard):
            c.handler = trainer.callback_handler
    try:
        trainer.train()
    finally:
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode(0)
    GROUPS[kind] = clock.groups
    gaps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])][len(clock.stamps) // 5:]
    return statistics.median(gaps) if gaps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300, help="updates (one epoch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--logging-steps", type=int, default=100)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: the 'with' steps under sync debug 'error'")
    parser.add_argument("--extras", action="store_true",
                        help="add HyperparameterAdvisor, LossBalance, ScaleLearningRate and ParamScheduler "
                             "(momentum, weight decay)")
    args = parser.parse_args()
    if args.sync_debug and args.device != "cuda":
        parser.error("--sync-debug needs --device cuda")
    header("HF Trainer: per-update time, hpcallbacks vs. the same training by hand (and a plain run)")
    g = torch.Generator().manual_seed(0)
    n = args.updates * args.batch
    x, y = torch.randn(n, 32, generator=g), torch.randn(n, 2, generator=g)
    data = [{"x": x[i], "y": y[i]} for i in range(n)]
    evals = data[:2 * args.batch]  # two batches: ReduceOnPlateau's evaluation at the end of the epoch
    kinds = ("with", "by hand", "plain")
    timers: list[HookTimer] = []

    def timer_for(clock: Clock) -> HookTimer:
        timers.append(HookTimer(lambda: len(clock.stamps) - 1, PER_STEP, TrainerCallback))
        return timers[-1]

    lr_with, lr_hand = LRRecorder(), LRRecorder()
    with tempfile.TemporaryDirectory() as out_dir:
        results = alternate({k: (lambda k=k: train(k, args, data, evals, out_dir)) for k in kinds}, args.repeats,
                            progress=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
        groups = {k: GROUPS[k] for k in kinds}
        # Instrumented runs, after the timed ones: hooks timed and LRs recorded ("with"), LRs ("by hand").
        train("with", args, data, evals, out_dir, timer_for=timer_for, recorder=lr_with)
        train("by hand", args, data, evals, out_dir, recorder=lr_hand)
        train("plan without factors", args, data, evals, out_dir, updates=min(args.updates, 5))
    timer = timers[-1]
    hooks = timer.per_update(args.updates // 5, args.updates - 2)
    floor = timer.control.per_update(args.updates // 5, args.updates - 2) if timer.control else None

    print(f"\ndevice={args.device} width={args.width} batch={args.batch} updates={args.updates} "
          f"repeats={args.repeats} logging_steps={args.logging_steps}{' extras' if args.extras else ''}"
          f"{' sync-debug' if args.sync_debug else ''}")
    described = {
        "with": "CosineRestart + StagedUnfreeze(all_trainable, geometric) + ReduceOnPlateau"
                + (" + extras (HyperparameterAdvisor, LossBalance, ScaleLearningRate, ParamScheduler)"
                   if args.extras else ""),
        "by hand": "one SGD group per layer (geometric factors) + LambdaLR(CosineRestart) via optimizers=",
        "plain": "one SGD group, HF's constant schedule, no callback",
    }
    report(results, described, groups, compared="with",
           hooks_us=(hooks[0] * 1e6, hooks[1] * 1e6),
           floor_us=(floor[0] * 1e6, floor[1] * 1e6) if floor else None,
           plan_groups=(GROUPS["plan without factors"], 1),
           plain_note="plain has one param group and HF's constant schedule",
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
    if args.extras:
        balance, advisor = LAST["balance"], LAST["advisor"]
        print(f"LossBalance last check: {balance.values or 'none (fewer updates than --logging-steps)'}; "
              f"HyperparameterAdvisor: {len(advisor.findings)} finding(s) on {sorted(advisor.values)}")
    if args.sync_debug:
        print("sync debug mode 'error' over every 'with' update: no host-device synchronisation in the steps")


if __name__ == "__main__":
    main()
