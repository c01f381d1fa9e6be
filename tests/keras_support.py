"""Helpers of the Keras adapter tests, shared by the TF-backend and torch-backend runs.

The conformance recorder is a plain ``keras.optimizers.SGD`` subclass whose ``update_step``
writes, in-graph, the learning rate it was called with for each variable's group at update
``optimizer.iterations``, and which groups were updated. Nothing of Keras is patched.
"""
from __future__ import annotations

import keras
import numpy as np
from conformance import Scenario
from keras import ops


class RecordingSGD(keras.optimizers.SGD):
    """SGD that records, per update and group, the LR it applied (in-graph, no host sync)."""

    def __init__(self, *args, var_group=None, num_groups=1, capacity=256, **kwargs):
        super().__init__(*args, **kwargs)
        self._var_group = var_group or {}
        self._num_groups = num_groups
        self._capacity = capacity

    def build(self, variables):
        super().build(variables)
        self.rec_lr = keras.Variable(np.zeros((self._capacity, self._num_groups), "float32"), trainable=False,
                                     name="rec_lr")
        self.rec_on = keras.Variable(np.zeros((self._capacity, self._num_groups), "float32"), trainable=False,
                                     name="rec_on")
        self.rec_base = keras.Variable(np.zeros((self._capacity,), "float32"), trainable=False, name="rec_base")

    def update_step(self, gradient, variable, learning_rate):
        g = self._var_group.get(id(variable))
        if g is not None:
            it = ops.cast(self.iterations, "int32")
            at = ops.reshape(ops.stack([it, ops.cast(g, "int32")]), (1, 2))
            lr = ops.reshape(ops.cast(learning_rate, "float32"), (1,))
            self.rec_lr.assign(ops.scatter_update(self.rec_lr, at, lr))
            self.rec_on.assign(ops.scatter_update(self.rec_on, at, ops.ones((1,), "float32")))
            base = ops.reshape(ops.cast(self.learning_rate, "float32"), (1,))
            self.rec_base.assign(ops.scatter_update(self.rec_base, ops.reshape(it, (1, 1)), base))
        super().update_step(gradient, variable, learning_rate)


class TraceCountingModel(keras.Sequential):
    """Counts Python executions of ``train_step``: traces on TF, steps on eager backends."""

    traces = 0

    def train_step(self, *args):  # (data) on TF and torch, (state, data) on JAX
        self.traces += 1
        return super().train_step(*args)


def scenario_data(s: Scenario):
    rng = np.random.default_rng(s.seed)
    x = rng.normal(size=(s.samples, s.in_features)).astype("float32")
    y = rng.normal(size=(s.samples, 1)).astype("float32")
    return x, y


def scenario_model(s: Scenario, seed: int | None = None):
    keras.utils.set_random_seed(s.seed if seed is None else seed)
    layers = [keras.Input((s.in_features,))]
    for g in range(s.num_groups):
        layers.append(keras.layers.Dense(1 if g == s.num_groups - 1 else s.hidden, name=f"g{g}"))
    return TraceCountingModel(layers, name=f"scenario_{s.name}".replace("-", "_"))


def var_groups(model, num_groups):
    out = {}
    for g in range(num_groups):
        for w in model.get_layer(f"g{g}").weights:
            out[id(w)] = g
            out[id(w.value)] = g
    return out


def run_scenario(s: Scenario, steps_per_execution: int = 1, jit_compile: bool = False, extra_callbacks=()):
    """Fit the scenario with the adapter; returns (records, model, callbacks)."""
    from hpcallbacks_keras import LearningRateSchedule, StagedUnfreeze

    model = scenario_model(s)
    opt = RecordingSGD(learning_rate=0.5, var_group=var_groups(model, s.num_groups), num_groups=s.num_groups,
                       capacity=s.total_updates + 8,
                       gradient_accumulation_steps=s.accumulation if s.accumulation > 1 else None)
    model.compile(optimizer=opt, loss="mse", steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    callbacks = [LearningRateSchedule(s.schedule)]
    if s.plan is not None:
        callbacks.append(StagedUnfreeze(s.plan))
    callbacks.extend(extra_callbacks)
    x, y = scenario_data(s)
    model.fit(x, y, batch_size=s.batch_size, epochs=s.epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return records_of(s, model), model, callbacks


def records_of(s: Scenario, model):
    opt = model.optimizer
    while hasattr(opt, "inner_optimizer"):
        opt = opt.inner_optimizer
    lr = ops.convert_to_numpy(opt.rec_lr)
    on = ops.convert_to_numpy(opt.rec_on) > 0
    base = ops.convert_to_numpy(opt.rec_base)
    factors = s.resolved().factors
    n = int(ops.convert_to_numpy(opt.iterations))
    records = []
    for t in range(n):
        lrs = tuple(float(lr[t, g]) if on[t, g] else float(base[t]) * factors[g] for g in range(s.num_groups))
        records.append((t, lrs, tuple(bool(b) for b in on[t])))
    return records
