"""Keras adapter tests: the backend-agnostic cases on this process' backend (TensorFlow), the
TensorFlow-only ones (``steps_per_execution``, ``jit_compile``, trace counts, mixed precision). The
same cases run once more on the torch and on the JAX backend in ``tests/test_keras_backends.py``."""
from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conformance import SCENARIOS, assert_records_match  # noqa: E402
from keras import ops  # noqa: E402
from keras_cases import *  # noqa: E402,F401,F403 - the backend-agnostic tests run here too
from keras_cases import X, Y, mlp  # noqa: E402
from keras_support import RecordingSGD, records_of, run_scenario, scenario_data, scenario_model, var_groups  # noqa: E402

import hpcallbacks as hp  # noqa: E402
from hpcallbacks import FreezePlan, LRFactors  # noqa: E402
from hpcallbacks_keras import DiscriminativeLR, LearningRateSchedule, StagedUnfreeze  # noqa: E402

TF = keras.backend.backend() == "tensorflow"
tf_only = pytest.mark.skipif(not TF, reason="steps_per_execution > 1 and XLA are TensorFlow-backend features here")
HERE = Path(__file__).parent


# -- conformance on TF: steps_per_execution 1 and 4, with and without XLA -------------------------------
CONFIGS = [(4, False), (4, True)]  # (1, False) runs in keras_cases.test_conformance; XLA at 4 covers it at 1
CASES = [(s, 1, spe, jit) for s in SCENARIOS for spe, jit in CONFIGS] + \
        [(s, 3, 4, True) for s in SCENARIOS]  # accumulation with both: the hardest combination


@tf_only
@pytest.mark.parametrize("scenario,accumulation,spe,jit", CASES,
                         ids=[f"{s.name}-acc{a}-spe{spe}-{'xla' if jit else 'graph'}" for s, a, spe, jit in CASES])
def test_conformance_tf(scenario, accumulation, spe, jit):
    s = scenario if accumulation == 1 else scenario.with_accumulation(accumulation)
    records, model, _ = run_scenario(s, steps_per_execution=spe, jit_compile=jit)
    assert_records_match(s, records)


# -- re-traces ---------------------------------------------------------------------------------------
class TraceProbe(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.points = []  # (updates done, traces so far) after each execution block

    def on_train_batch_end(self, batch, logs=None):
        self.points.append((int(ops.convert_to_numpy(self.model.optimizer.iterations)), self.model.traces))


@tf_only
@pytest.mark.parametrize("spe,jit", [(1, False), (4, True)])
def test_at_most_one_retrace_per_stage(spe, jit):
    s = next(s for s in SCENARIOS if s.name == "mid-epoch-stages")
    probe = TraceProbe()
    _, model, _ = run_scenario(s, steps_per_execution=spe, jit_compile=jit, extra_callbacks=[probe])
    resolved = s.resolved()
    for done, traces in probe.points:  # never more traces than stages begun by the end of the block
        assert traces <= resolved.stage_at(done - 1) + 1, (done, traces)
    assert model.traces == len(s.resolved().starts)


# -- in-graph gates: a stage inside an execution block is exact, slots included --------------------
def _gated_run(spe, jit):
    model = mlp()
    model.compile(keras.optimizers.AdamW(0.01, weight_decay=0.05), "mse", steps_per_execution=spe, jit_compile=jit)
    plan = FreezePlan(stages=[(0, 1), (3, 2), (7, "all")], unit="update", factors=LRFactors.geometric(2.0))
    model.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[LearningRateSchedule(hp.CosineDecay(0.01, decay_steps=18)), StagedUnfreeze(plan)])
    return [np.array(w) for w in model.weights] + [np.array(v) for v in model.optimizer.variables]


@tf_only
def test_stage_inside_an_execution_block_equals_per_step_callbacks():
    reference = _gated_run(1, False)
    for spe, jit, tol in ((4, False, 1e-6), (3, True, 2e-5)):
        got = _gated_run(spe, jit)
        assert len(got) == len(reference)
        for a, b in zip(got, reference):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# -- mixed precision ---------------------------------------------------------------------------------
@tf_only
def test_loss_scale_optimizer():
    s = next(s for s in SCENARIOS if s.name == "gradual-unfreeze")
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = scenario_model(s)
        inner = RecordingSGD(0.5, var_group=var_groups(model, s.num_groups), num_groups=s.num_groups, capacity=32)
        model.compile(keras.optimizers.LossScaleOptimizer(inner, initial_scale=16.0), "mse", steps_per_execution=4)
    finally:
        keras.config.set_dtype_policy("float32")
    x, y = scenario_data(s)
    model.fit(x, y, batch_size=s.batch_size, epochs=s.epochs, shuffle=False, verbose=0,
              callbacks=[LearningRateSchedule(s.schedule), StagedUnfreeze(s.plan)])
    assert_records_match(s, records_of(s, model))


# -- per-group LR with a group unfrozen mid-block and discriminative factors ---------------------------
@tf_only
def test_discriminative_lr_with_staged_unfreeze_under_xla():
    s = next(s for s in SCENARIOS if s.name == "mid-epoch-stages")
    plain = s.plan.with_factors(LRFactors.uniform())
    _, model, _ = run_scenario(
        type(s)(s.name, s.schedule, plan=plain), steps_per_execution=4, jit_compile=True,
        extra_callbacks=[DiscriminativeLR(LRFactors.layer_decay(0.5))])
    assert_records_match(s, records_of(s, model))  # the same numbers as the plan carrying the factors itself


# -- docs ---------------------------------------------------------------------------------------------
def test_docstring_examples():
    import hpcallbacks_keras
    from hpcallbacks_keras import callbacks
    for module in (hpcallbacks_keras, callbacks):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


@tf_only
def test_param_scheduler_in_graph_with_steps_per_execution_and_xla():
    from keras_cases import run_param_scheduler

    run_param_scheduler(steps_per_execution=4, jit_compile=True)
    run_param_scheduler(steps_per_execution=3, jit_compile=True, accumulation=2)
