"""Per-update time of a HuggingFace Trainer run with vs. without the hpcallbacks callback set (not a test).

    python benchmarks/bench_hf.py [--updates 300] [--repeats 5] [--width 256] [--batch 64]
                                  [--device cpu|cuda] [--sync-debug] [--extras]

Same model (a 6-layer MLP with two outputs), data, optimizer (SGD, momentum 0.9, weight decay
1e-4) and Trainer subclass in both runs. The model's loss is the sum of two MSE terms; the
Trainer subclass keeps their running sums on the device and adds their means (``loss_a``,
``loss_b``) to the Trainer's own logs every ``--logging-steps`` updates, in both runs, so
``LossBalance`` is fed what a user would log. The "with" run adds ``CosineRestart()``,
``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))`` (every group trains,
so both runs compute the same gradients; the callbacks still regroup the optimizer into one group
per layer, with its own LR, set every update), ``HyperparameterAdvisor()`` and
``LossBalance(("loss_a", "loss_b"))``; ``--extras`` adds ``ScaleLearningRate`` and a
``ParamScheduler`` on momentum and weight decay. Runs alternate in one process after a warm-up
run; the per-update time is the median gap between consecutive ``on_step_begin`` calls after the
first fifth of the run, the figure is the median over the repeats, and the ratio is with /
without (goal <= 1.01).

``--sync-debug`` (CUDA only) runs every "with" update, from the first ``on_step_begin`` hook to
the last ``on_step_end`` hook, under ``torch.cuda.set_sync_debug_mode("error")``: a host-device
synchronisation in a step (the model's, HF's or a callback's) raises. Outside that window are the
Trainer's own synchronising work: fetching the next batch (a blocking host-to-device copy) and its
logging steps (``loss.item()``). ``logging_nan_inf_filter`` is off in both runs (it reads the loss
on the host every micro-batch).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _machine import header, table  # noqa: E402
from torch import nn  # noqa: E402
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hpcallbacks_hf as H  # noqa: E402
from hpcallbacks import Cyclic, FreezePlan, LRFactors, PolynomialDecay  # noqa: E402

hf_logging.set_verbosity_error()


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
    """Host timestamps at each update's start (no synchronize: what the training loop sees)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())


class SyncGuard(TrainerCallback):
    """``set_sync_debug_mode("error")`` from the first ``on_step_begin`` hook to the last ``on_step_end`` hook."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def on_step_begin(self, args, state, control, **kwargs):
        if self.on:
            torch.cuda.set_sync_debug_mode("error")

    def on_step_end(self, args, state, control, **kwargs):
        if not self.on:
            torch.cuda.set_sync_debug_mode(0)

    def on_train_end(self, args, state, control, **kwargs):
        torch.cuda.set_sync_debug_mode(0)


HOOK_TIME: dict[tuple[int, int], float] = {}  # (run, update) -> seconds inside the hpcallbacks per-step hooks
RUN = [0]
LAST: dict[str, TrainerCallback] = {}  # the last "with" run's advisor and LossBalance, for the report
STEP_HOOKS = ("on_step_begin", "on_substep_end", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end")


def _timed(callback: TrainerCallback, clock: Clock) -> TrainerCallback:
    """Time the callback's per-step hooks (what it adds on the host each update)."""
    for name in STEP_HOOKS:
        hook = getattr(callback, name)

        def wrapper(*a, _hook=hook, **k):
            t = time.perf_counter()
            out = _hook(*a, **k)
            key = (RUN[0], len(clock.stamps))
            HOOK_TIME[key] = HOOK_TIME.get(key, 0.0) + time.perf_counter() - t
            return out

        setattr(callback, name, wrapper)
    return callback


def run(with_callbacks: bool, args: argparse.Namespace, data: list[dict], out_dir: str) -> float:
    RUN[0] += 1
    clock = Clock()
    callbacks: list = [clock]
    if with_callbacks:
        chosen: list = [H.CosineRestart(), H.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric())),
                        H.HyperparameterAdvisor(), H.LossBalance(("loss_a", "loss_b"))]
        if args.extras:
            chosen += [H.ScaleLearningRate(base_batch_size=args.batch // 2, warmup_epochs=0.5),
                       H.ParamScheduler({"momentum": Cyclic(0.85, 0.95, step_size_up=50),
                                         "weight_decay": PolynomialDecay(1e-4, args.updates, 0.0)})]
        LAST.update(advisor=chosen[2], balance=chosen[3])
        chosen = [_timed(c, clock) for c in chosen]
        if args.sync_debug:  # first and last: the window holds every hpcallbacks hook of the step
            chosen = [SyncGuard(True), *chosen, SyncGuard(False)]
        callbacks += chosen
    model = MLP(args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    targs = TrainingArguments(
        output_dir=out_dir, use_cpu=args.device == "cpu", report_to=[], save_strategy="no", disable_tqdm=True,
        logging_strategy="steps", logging_steps=args.logging_steps, logging_nan_inf_filter=False,
        per_device_train_batch_size=args.batch, num_train_epochs=1, learning_rate=0.01,
        lr_scheduler_type="constant", seed=0, dataloader_num_workers=0, train_sampling_strategy="sequential")
    trainer = TermsTrainer(model=model, args=targs, train_dataset=data, callbacks=callbacks,
                           optimizers=(optimizer, None))
    trainer.remove_callback(PrinterCallback)  # disable_tqdm's printer: the logs would fill the report
    try:
        trainer.train()
    finally:
        if args.sync_debug:
            torch.cuda.set_sync_debug_mode(0)
    gaps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])][args.updates // 5:]
    return statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--logging-steps", type=int, default=100)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sync-debug", action="store_true")
    parser.add_argument("--extras", action="store_true",
                        help="add ScaleLearningRate and ParamScheduler (momentum, weight decay)")
    args = parser.parse_args()
    if args.sync_debug and args.device != "cuda":
        parser.error("--sync-debug needs --device cuda")
    header("HF Trainer: per-update time with / without the hpcallbacks callback set")
    g = torch.Generator().manual_seed(0)
    n = args.updates * args.batch
    x, y = torch.randn(n, 32, generator=g), torch.randn(n, 2, generator=g)
    data = [{"x": x[i], "y": y[i]} for i in range(n)]
    with tempfile.TemporaryDirectory() as out_dir:
        run(False, args, data, out_dir)  # warm-up
        base, hp = [], []
        for _ in range(args.repeats):
            base.append(run(False, args, data, out_dir))
            hp.append(run(True, args, data, out_dir))
    b, h = statistics.median(base), statistics.median(hp)
    print(f"device={args.device} width={args.width} batch={args.batch} updates={args.updates} "
          f"repeats={args.repeats} logging_steps={args.logging_steps}{' extras' if args.extras else ''}")
    per_update = statistics.median(HOOK_TIME.values())
    print(table(["run", "ms/update (median)", "runs (ms)", "ratio"], [
        ["without callbacks", f"{b * 1e3:.3f}", " ".join(f"{t * 1e3:.2f}" for t in base), "1.000"],
        ["with callbacks", f"{h * 1e3:.3f}", " ".join(f"{t * 1e3:.2f}" for t in hp), f"{h / b:.3f}"],
    ]))
    print(f"ratio with/without: {h / b:.3f} (goal <= 1.01)")
    print(f"time inside the callbacks' per-step hooks (median): {per_update * 1e6:.1f} us per update "
          f"({per_update / b:.2%} of an update; the rest of the difference is the regrouped optimizer's "
          "per-group kernels and noise)")
    balance, advisor = LAST["balance"], LAST["advisor"]
    print(f"LossBalance last check: {balance.values or 'none (fewer updates than --logging-steps)'}; "
          f"HyperparameterAdvisor: {len(advisor.findings)} finding(s) on {sorted(advisor.values)}")
    if args.sync_debug:
        print("sync debug mode 'error' over every 'with' update: no host-device synchronisation in the steps")


if __name__ == "__main__":
    main()
