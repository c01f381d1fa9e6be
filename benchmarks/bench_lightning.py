"""Per-update time of a Lightning fit with vs. without the hpcallbacks callback set (not a test).

    python benchmarks/bench_lightning.py [--updates 300] [--repeats 5] [--width 256] [--device cpu|cuda]
                                         [--sync-debug]

Same model, data and optimizer in both runs; the "with" run adds ``CosineRestart()``,
``ReduceOnPlateau()`` and ``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))``
(every group trains, so both runs compute the same gradients; the callbacks still regroup the
optimizer into one group per layer, set the LR every update and check the plan every micro-batch).
Runs alternate; the per-update time is the median gap between consecutive
``on_train_batch_start`` calls after a warm-up, and the ratio is with / without (goal <= 1.01).
``--sync-debug`` (CUDA) runs the "with" fit under ``torch.cuda.set_sync_debug_mode("error")``:
any host-device synchronisation in a step raises.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore")

import lightning.pytorch as L  # noqa: E402
import torch  # noqa: E402
from _machine import header  # noqa: E402
from torch import nn  # noqa: E402

import hpcallbacks_lightning as HL  # noqa: E402
from hpcallbacks import Cyclic, FreezePlan, LRFactors, PolynomialDecay  # noqa: E402


class MLP(L.LightningModule):
    def __init__(self, width: int, depth: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        dims = [32] + [width] * (depth - 1) + [1]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)])

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
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)


class Clock(L.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.strategy.root_device.type == "cuda":
            pass  # no synchronize: we time what the host sees, as a training loop does
        self.stamps.append(time.perf_counter())


HOOK_TIME: dict[tuple[int, int], float] = {}  # (run, update) -> seconds inside the hpcallbacks per-step hooks
RUN = [0]


def _timed(callback: L.Callback) -> L.Callback:
    """Time the callback's per-step hooks (what it adds on the host each update)."""
    for name in ("on_train_batch_start", "on_before_optimizer_step"):
        hook = getattr(callback, name)

        def wrapper(trainer, *a, _hook=hook, **k):
            t = time.perf_counter()
            _hook(trainer, *a, **k)
            key = (RUN[0], trainer.global_step)
            HOOK_TIME[key] = HOOK_TIME.get(key, 0.0) + time.perf_counter() - t

        setattr(callback, name, wrapper)
    return callback


def run(with_callbacks: bool, args: argparse.Namespace) -> float:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(args.updates * args.batch, 32, generator=g),
                                          torch.randn(args.updates * args.batch, 1, generator=g))
    clock = Clock()
    callbacks: list = [clock]
    RUN[0] += 1
    if with_callbacks:
        chosen = [HL.CosineRestart(), HL.ReduceOnPlateau(monitor="train_loss"),
                  HL.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))]
        if args.extras:  # the per-update callbacks of hpcallbacks_lightning._extras
            chosen += [HL.ScaleLearningRate(base_batch_size=args.batch // 2, warmup_epochs=0.5),
                       HL.ParamScheduler({"momentum": Cyclic(0.85, 0.95, step_size_up=50),
                                          "weight_decay": PolynomialDecay(1e-4, args.updates, 0.0)}),
                       HL.InstanceNoise(PolynomialDecay(0.1, args.updates, 0.0))]
        callbacks = [_timed(c) for c in chosen] + callbacks
    trainer = L.Trainer(max_epochs=1, accelerator=args.device, devices=1, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    model = MLP(args.width)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch)
    if with_callbacks and args.sync_debug:
        torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.fit(model, loader)
    finally:
        if args.sync_debug and torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(0)
    gaps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)][args.updates // 5:]
    return statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sync-debug", action="store_true")
    parser.add_argument("--extras", action="store_true",
                        help="add ScaleLearningRate, ParamScheduler (momentum, weight decay) and InstanceNoise")
    args = parser.parse_args()
    header("Lightning: per-update time with / without the hpcallbacks callback set")
    run(False, args)  # warm-up
    base, hp = [], []
    for _ in range(args.repeats):
        base.append(run(False, args))
        hp.append(run(True, args))
    b, h = statistics.median(base), statistics.median(hp)
    print(f"device={args.device} width={args.width} batch={args.batch} updates={args.updates} repeats={args.repeats}"
          f"{' extras' if args.extras else ''}")
    print(f"per update without callbacks: {b * 1e3:.3f} ms")
    print(f"per update with callbacks:    {h * 1e3:.3f} ms")
    print(f"ratio with/without: {h / b:.3f}")
    per_update = statistics.median(HOOK_TIME.values())
    print(f"time inside the callbacks' per-step hooks (median): {per_update * 1e6:.1f} us per update "
          f"({per_update / b:.2%} of an update; the rest of the difference is the regrouped optimizer's "
          "per-group kernels and noise)")
    if args.sync_debug:
        print("sync debug mode 'error': no host-device synchronisation in the callbacks' steps")


if __name__ == "__main__":
    main()
