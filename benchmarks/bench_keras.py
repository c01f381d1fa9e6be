"""Per-update time of a Keras fit with vs. without the hpcallbacks callback set (not a test).

    python benchmarks/bench_keras.py [--updates 200] [--epochs 6] [--repeats 5] [--width 256]
                                     [--steps-per-execution 1] [--jit]
    KERAS_BACKEND=torch python benchmarks/bench_keras.py ...

Same model (a 6-layer MLP), data and optimizer (SGD with momentum) in both runs; the "with" run
adds ``CosineRestart()``, ``ReduceOnPlateau(monitor="loss")`` and
``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))``: every group trains,
so both runs compute the same gradients, while the callbacks read the LR from the in-graph table
at every update, call the update step once per layer group with its own LR, and prepare every
execution block on the host. Runs alternate; the first epoch (tracing, XLA compilation) is not
timed; the per-update time is the fastest later epoch's time / updates, minimum over the repeats
(on a shared machine the minimum is the estimate least disturbed by other processes), and the
ratio is with / without (goal <= 1.01).

Re-traces: the same MLP (a ``keras.Sequential`` subclass counting Python executions of
``train_step``, as ``tests/keras_support.py`` does) fitted for 4 epochs under a 3-stage plan
(the top group, the top 3 groups from epoch 1, all from epoch 2) with the same
``steps_per_execution`` / ``jit_compile``, and without callbacks for reference; goal: one trace per
stage (the first is the fit's own). On the TF backend a count is a trace of the train function; on
the torch backend ``train_step`` runs eagerly at every update, so the count is not a trace count.
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
from _machine import header, table  # noqa: E402

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


class TraceCountingSequential(keras.Sequential):
    """Counts Python executions of ``train_step``: traces on TF, steps on eager backends."""

    traces = 0

    def train_step(self, data):
        self.traces += 1
        return super().train_step(data)


def build(width: int, depth: int = 6, cls=keras.Sequential):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((32,))]
    layers += [keras.layers.Dense(width, activation="relu", name=f"d{i}") for i in range(depth - 1)]
    layers.append(keras.layers.Dense(1, name=f"d{depth - 1}"))
    return cls(layers)


RETRACE_PLAN = FreezePlan(stages=((0, 1), (1, 3), (2, "all")), factors=LRFactors.geometric())


def count_traces(staged: bool, args, x, y, updates: int = 20, epochs: int = 4) -> int:
    """train_step executions over ``epochs`` x ``updates`` updates, with the 3-stage plan or no callbacks."""
    model = build(args.width, cls=TraceCountingSequential)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse",
                  steps_per_execution=args.steps_per_execution, jit_compile=args.jit)
    callbacks = [HK.CosineRestart(), HK.StagedUnfreeze(RETRACE_PLAN)] if staged else []
    n = updates * args.batch_size
    model.fit(x[:n], y[:n], batch_size=args.batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model.traces


def run(with_callbacks: bool, args, x, y) -> float:
    model = build(args.width)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse",
                  steps_per_execution=args.steps_per_execution, jit_compile=args.jit)
    clock = EpochClock()
    callbacks = [clock]
    if with_callbacks:
        callbacks = [HK.CosineRestart(), HK.ReduceOnPlateau(monitor="loss"),
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
    header(f"Keras ({keras.backend.backend()} backend): per-update time with / without the hpcallbacks callback set, "
           "and re-traces across a 3-stage unfreeze")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.updates * args.batch_size, 32)).astype("float32")
    y = rng.normal(size=(len(x), 1)).astype("float32")
    without, with_ = [], []
    for _ in range(args.repeats):
        without.append(run(False, args, x, y))
        with_.append(run(True, args, x, y))
    a, b = min(without), min(with_)
    print(f"backend={keras.backend.backend()} width={args.width} batch={args.batch_size} "
          f"steps_per_execution={args.steps_per_execution} jit={args.jit} updates/epoch={args.updates} "
          f"epochs={args.epochs} repeats={args.repeats}")
    print(table(["run", "ms/update (min)", "runs (ms)", "ratio"], [
        ["without callbacks", f"{a * 1e3:.3f}", " ".join(f"{t * 1e3:.2f}" for t in without), "1.000"],
        ["with callbacks", f"{b * 1e3:.3f}", " ".join(f"{t * 1e3:.2f}" for t in with_), f"{b / a:.3f}"],
    ]))
    print(f"ratio with/without: {b / a:.3f} (goal <= 1.01)")
    stages = len(RETRACE_PLAN.resolve(6, steps_per_epoch=20).starts)
    staged, plain = count_traces(True, args, x, y), count_traces(False, args, x, y)
    print(f"\nre-traces: 4 epochs x 20 updates, plan {[(s.start, s.trainable) for s in RETRACE_PLAN.stages]} "
          f"(epochs, groups from the top) = {stages} stages")
    if keras.backend.backend() == "tensorflow":
        print(table(["run", "train_step traces", "stages", "traces per stage"], [
            ["without callbacks", plain, 1, f"{plain:.2f}"],
            ["StagedUnfreeze, 3 stages", staged, stages, f"{staged / stages:.2f}"],
        ]))
        print(f"traces per stage: {staged / stages:.2f} (goal: 1)")
        if plain == 2:
            print("(the plain fit's 2: its first call creates SGD's momentum slots inside tf.function, which then "
                  "traces again; StagedUnfreeze builds the optimizer before the first trace)")
    else:
        print(f"{keras.backend.backend()} backend: train_step runs eagerly at every update ({staged} calls with the "
              f"plan, {plain} without); there is no train function to re-trace")


if __name__ == "__main__":
    main()
