"""Per-update time of a Keras fit: hpcallbacks vs. a Keras schedule object, and re-traces (not a test).

    python benchmarks/bench_keras.py [--updates 200] [--epochs 6] [--repeats 5] [--width 256]
                                     [--batch-size 64] [--steps-per-execution 1] [--jit]
    KERAS_BACKEND=torch python benchmarks/bench_keras.py ...

One process, one model (a 6-layer MLP), the same data and SGD (lr 0.01, momentum 0.9),
``--epochs`` epochs of ``--updates`` updates. Four runs are compared:

* ``with``: ``CosineRestart()``, ``ReduceOnPlateau(monitor="loss")`` and
  ``StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric()))``: every group
  trains, each with its own LR (the callbacks read the LR from an in-graph table at every update,
  call the update step once per layer group and prepare every execution block on the host).
* ``with, no factors``: ``CosineRestart()`` and ``ReduceOnPlateau(monitor="loss")`` only: one LR
  for the whole model, set by the callbacks.
* ``by hand``: the optimizer compiled with ``keras.optimizers.schedules.CosineDecayRestarts(0.01,
  first_decay_steps=updates per epoch)`` (the "with" runs' default) and no callback. Keras has no
  per-group learning rate to write by hand, so the like-for-like pair is ``with, no factors`` /
  ``by hand``; ``with`` / ``by hand`` adds the cost of one LR per layer group. The schedule
  object's numbers are checked against the core ``hpcallbacks.CosineRestart`` over the run.
* ``plain``: a constant LR, no schedule, no callback: today's reference.

Each run's figure is the median over the epochs after the first (tracing, XLA compilation) of
the epoch's wall time / updates (no batch hook in the clock: Keras keeps its asynchronous
batch-end dispatch). One warm-up run of each, then ``--repeats`` rounds of the four, the order
rotated each round; a row's figure is the median over its rounds, and the ratios are of those
medians. Read:

* ``ratio with, no factors/by hand`` -- the like-for-like goal: <= 1.01;
* ``ratio with/by hand`` -- the issue's goal too (<= 1.01), though "by hand" has one LR for all;
* ``ratio with/plain`` -- no goal;
* ``hooks per update`` -- seconds inside the hpcallbacks per-batch hooks (those among
  ``on_train_batch_begin`` / ``_end``, ``on_batch_begin`` / ``_end`` that the callbacks' classes
  override, found from their MRO and listed) of one more "with" run, per epoch after the first /
  updates: the mean over those epochs (goal <= 10 us) and the median. Per-epoch hooks are not
  counted.

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
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _compare import HookTimer, alternate, report  # noqa: E402
from _machine import header, table  # noqa: E402

import hpcallbacks_keras as HK  # noqa: E402
from hpcallbacks import CosineRestart, FreezePlan, LRFactors  # noqa: E402

LR = 0.01
#: Keras' hooks called at every update (or execution block): the ones timed when a callback overrides them.
PER_STEP = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


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


def run(kind: str, args, x, y, timer_for=None) -> float:
    """One fit; the median over the epochs after the first of the epoch's time / updates."""
    model = build(args.width)
    if kind == "by hand":
        learning_rate = keras.optimizers.schedules.CosineDecayRestarts(LR, first_decay_steps=args.updates)
    else:
        learning_rate = LR
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9), "mse",
                  steps_per_execution=args.steps_per_execution, jit_compile=args.jit)
    clock = EpochClock()
    chosen: list = []
    if kind in ("with", "with, no factors"):
        chosen = [HK.CosineRestart(), HK.ReduceOnPlateau(monitor="loss")]
    if kind == "with":
        chosen.append(HK.StagedUnfreeze(FreezePlan.all_trainable(factors=LRFactors.geometric())))
    if timer_for is not None:
        timer = timer_for(clock)
        chosen = [wrapped for c in chosen for wrapped in timer.wrap_twin(c)]
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, verbose=0,
              callbacks=[*chosen, clock])
    return statistics.median(clock.times[1:]) / args.updates


def schedule_check(args) -> str:
    """``CosineDecayRestarts`` (the by-hand run) against the core ``CosineRestart`` (the "with" runs) over the run."""
    steps = args.updates * args.epochs
    keras_lr = keras.optimizers.schedules.CosineDecayRestarts(LR, first_decay_steps=args.updates)
    core = CosineRestart(LR, first_decay_steps=args.updates)
    ours = np.array([core(t) for t in range(steps)])
    theirs = np.array([float(keras.ops.convert_to_numpy(keras_lr(t))) for t in range(steps)])
    diff = np.abs(ours - theirs) / np.maximum(np.abs(ours), 1e-12)
    far = int((diff > 1e-3).sum())
    return (f"max relative difference {diff.max():.1e} over {steps} updates; {far} update(s) differ by more "
            "than 1e-3 (Keras' float32 log can miss a restart by one update)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200, help="updates per epoch")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per fit (the first is not timed; >= 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA on TF)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is not timed)")
    header(f"Keras ({keras.backend.backend()} backend): per-update time, hpcallbacks vs. a Keras schedule object "
           "(and a plain run), and re-traces across a 3-stage unfreeze")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.updates * args.batch_size, 32)).astype("float32")
    y = rng.normal(size=(len(x), 1)).astype("float32")
    kinds = ("with", "with, no factors", "by hand", "plain")
    results = alternate({k: (lambda k=k: run(k, args, x, y)) for k in kinds}, args.repeats,
                        progress=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    timers: list[HookTimer] = []

    def timer_for(clock: EpochClock) -> HookTimer:
        timers.append(HookTimer(lambda: len(clock.times), PER_STEP, keras.callbacks.Callback))
        return timers[-1]

    run("with", args, x, y, timer_for=timer_for)  # after the timed runs: the hooks timed
    timer = timers[-1]
    hooks = timer.per_update(1, args.epochs - 1, updates_per_key=args.updates)
    floor = timer.control.per_update(1, args.epochs - 1, updates_per_key=args.updates) if timer.control else None
    print(f"\nbackend={keras.backend.backend()} width={args.width} batch={args.batch_size} "
          f"steps_per_execution={args.steps_per_execution} jit={args.jit} updates/epoch={args.updates} "
          f"epochs={args.epochs} repeats={args.repeats}")
    described = {
        "with": "CosineRestart + ReduceOnPlateau + StagedUnfreeze(all_trainable, geometric): one LR per layer group",
        "with, no factors": "CosineRestart + ReduceOnPlateau: one LR, set by the callbacks",
        "by hand": "SGD(CosineDecayRestarts(0.01, first_decay_steps=updates/epoch)), no callback: one LR "
                   "(Keras has no per-group LR by hand)",
        "plain": "SGD(0.01), no schedule, no callback",
    }
    report(results, described, {}, compared="with", also=[("with, no factors", "by hand")],
           hooks_us=(hooks[0] * 1e6, hooks[1] * 1e6),
           floor_us=(floor[0] * 1e6, floor[1] * 1e6) if floor else None, plain_note="plain has a constant LR",
           notes=[f"LR schedule, by hand (CosineDecayRestarts) vs with (core CosineRestart): {schedule_check(args)}",
                  "like for like: 'with, no factors' / 'by hand' (one LR each); 'with' / 'by hand' adds one LR per "
                  "layer group, which Keras cannot do by hand"])
    print("hooks timed (those the callbacks' classes override, per batch):")
    print("\n".join(timer.describe()))
    print("\n".join(timer.breakdown()))
    if timer.control:
        print("\n".join(timer.control.breakdown()[2:]))
    print("param groups: Keras optimizers have none (StagedUnfreeze calls the update step once per layer group)")
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
