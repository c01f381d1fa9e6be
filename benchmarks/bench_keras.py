"""Per-update time of a Keras fit with vs. without the hpcallbacks callback set (not a test).

    python benchmarks/bench_keras.py [--updates 200] [--epochs 6] [--repeats 5] [--width 256]
                                     [--steps-per-execution 1] [--jit]
    KERAS_BACKEND=torch python benchmarks/bench_keras.py ...

Same model (a 6-layer MLP), data and optimizer (SGD with momentum) in both runs; the "with" run
adds ``CosineRestart()``, ``ReduceOnPlateau("loss")`` and
``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))``: every group trains,
so both runs compute the same gradients, while the callbacks read the LR from the in-graph table
at every update, call the update step once per layer group with its own LR, and prepare every
execution block on the host. Runs alternate; the first epoch (tracing, XLA compilation) is not
timed; the per-update time is the fastest later epoch's time / updates, minimum over the repeats
(on a shared machine the minimum is the estimate least disturbed by other processes), and the
ratio is with / without (goal <= 1.01).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import hpcallbacks_keras as HK  # noqa: E402
from hpcallbacks import FreezePlan, LRFactors  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    """Epoch wall times (no batch hook: Keras keeps its asynchronous batch-end dispatch)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def build(width: int, depth: int = 6):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((32,))]
    layers += [keras.layers.Dense(width, activation="relu", name=f"d{i}") for i in range(depth - 1)]
    layers.append(keras.layers.Dense(1, name=f"d{depth - 1}"))
    return keras.Sequential(layers)


def run(with_callbacks: bool, args, x, y) -> float:
    model = build(args.width)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse",
                  steps_per_execution=args.steps_per_execution, jit_compile=args.jit)
    clock = EpochClock()
    callbacks = [clock]
    if with_callbacks:
        callbacks = [HK.CosineRestart(), HK.ReduceOnPlateau("loss"),
                     HK.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))] + callbacks
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return min(clock.times[1:]) / args.updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="updates per epoch")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA on TF)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.updates * args.batch_size, 32)).astype("float32")
    y = rng.normal(size=(len(x), 1)).astype("float32")
    without, with_ = [], []
    for _ in range(args.repeats):
        without.append(run(False, args, x, y))
        with_.append(run(True, args, x, y))
    a, b = min(without), min(with_)
    print(f"backend={keras.backend.backend()} width={args.width} batch={args.batch_size} "
          f"steps_per_execution={args.steps_per_execution} jit={args.jit} updates/epoch={args.updates}")
    print(f"without: {a * 1e3:.3f} ms/update   with: {b * 1e3:.3f} ms/update   ratio: {b / a:.3f}")


if __name__ == "__main__":
    main()
