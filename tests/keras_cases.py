"""Keras adapter tests that run on any Keras backend.

``tests/test_keras.py`` runs them in the main (TensorFlow) process and runs this file again with
``KERAS_BACKEND=torch`` in one subprocess. Real ``model.fit`` loops, tiny models, no mocks.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
from conformance import SCENARIOS, Scenario, assert_records_match
from keras import ops
from keras_support import RecordingSGD, records_of, run_scenario, scenario_data, var_groups

import hpcallbacks as hp
from hpcallbacks import FreezePlan, LRFactors
from hpcallbacks_keras import (
    CosineDecay,
    CosineRestart,
    DiscriminativeLR,
    ExponentialDecay,
    FreezeBatchNorm,
    LearningRateSchedule,
    ReduceOnPlateau,
    StagedUnfreeze,
)

BACKEND = keras.backend.backend()
X = np.random.default_rng(1).normal(size=(24, 4)).astype("float32")
Y = np.random.default_rng(2).normal(size=(24, 1)).astype("float32")


def mlp(bn=False, seed=0, cls=keras.Sequential):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,)), keras.layers.Dense(8, name="g0")]
    if bn:
        layers.append(keras.layers.BatchNormalization(name="bn0"))
    layers += [keras.layers.Dense(8, activation="relu", name="g1"), keras.layers.Dense(1, name="g2")]
    return cls(layers)


def weights(model, name):
    return [np.array(w) for w in model.get_layer(name).get_weights()]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def iterations(model):
    return int(ops.convert_to_numpy(model.optimizer.iterations))


class PerUpdate(keras.callbacks.Callback):
    """Test probe: after every batch (steps_per_execution=1), copies of weights and iterations."""

    def __init__(self, names):
        super().__init__()
        self.names = names
        self.snapshots = []
        self.iterations = []

    def on_train_begin(self, logs=None):
        self.initial = {n: weights(self.model, n) for n in self.names}

    def on_train_batch_end(self, batch, logs=None):
        self.snapshots.append({n: weights(self.model, n) for n in self.names})
        self.iterations.append(iterations(self.model))


# -- conformance ----------------------------------------------------------------------------------
@pytest.mark.parametrize("accumulation", [1, 3])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance(scenario, accumulation):
    s = scenario if accumulation == 1 else scenario.with_accumulation(accumulation)
    records, model, _ = run_scenario(s)
    assert_records_match(s, records)


# -- staged unfreezing ----------------------------------------------------------------------------
def test_frozen_weights_bit_identical_until_their_stage_and_iterations_continue():
    model = mlp()
    model.compile(keras.optimizers.AdamW(0.01, weight_decay=0.1), "mse")
    plan = FreezePlan(stages=[(0, 1), (3, 2), (7, "all")], unit="update")
    probe = PerUpdate(["g0", "g1", "g2"])
    model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[StagedUnfreeze(plan), probe])
    assert probe.iterations == list(range(1, 13))  # one count per update, never reset by a stage
    starts = {"g0": 7, "g1": 3, "g2": 0}
    for name, start in starts.items():
        for t, snap in enumerate(probe.snapshots):  # snapshot t: after update t
            if t < start:
                assert same(snap[name], probe.initial[name]), f"{name} changed at update {t} before its stage {start}"
            else:
                assert not same(snap[name], probe.initial[name]), f"{name} did not train at update {t}"
                prev = probe.snapshots[t - 1][name] if t else probe.initial[name]
                assert not same(snap[name], prev), f"{name} skipped update {t}"
    assert all(layer.trainable for layer in model.layers)


def test_layers_frozen_before_fit_are_unfrozen_by_the_plan():
    """The plain-Keras way (freeze, compile) with StagedUnfreeze: the optimizer is (re)built on them."""
    model = mlp()
    model.get_layer("g0").trainable = False
    model.get_layer("g1").trainable = False
    model.compile(keras.optimizers.Adam(0.01), "mse")
    w0 = weights(model, "g0")
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0,
              callbacks=[StagedUnfreeze(FreezePlan(stages=[(0, 1), (1, "all")]))])
    assert not same(weights(model, "g0"), w0)
    assert iterations(model) == 12


class CountingModel(keras.Sequential):
    forced = 0

    def make_train_function(self, force=False):
        self.forced += bool(force)
        return super().make_train_function(force=force)


def test_one_train_function_per_stage():
    model = mlp(cls=CountingModel)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    plan = FreezePlan.gradual(every_epochs=1)  # 3 groups: 3 stages
    model.fit(X, Y, batch_size=4, epochs=4, verbose=0, callbacks=[StagedUnfreeze(plan)])
    # one at the start of fit, one per later stage, one after fit (restores the optimizer's methods)
    assert model.forced == 3 + 1


def test_batch_norm_policies():
    for policy in ("freeze_stats", "train"):
        model = mlp(bn=True)
        model.compile(keras.optimizers.Adam(0.01), "mse")
        bn = model.get_layer("bn0")
        stats0 = [np.array(bn.moving_mean), np.array(bn.moving_variance)]
        affine0 = [np.array(bn.gamma), np.array(bn.beta)]
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0,
                  callbacks=[StagedUnfreeze(FreezePlan.head_only(2), groups=[["g0", "bn0"], "g1", "g2"], bn=policy)])
        stats = [np.array(bn.moving_mean), np.array(bn.moving_variance)]
        assert same([np.array(bn.gamma), np.array(bn.beta)], affine0), policy
        if policy == "freeze_stats":
            assert same(stats, stats0), "moving statistics of a frozen group changed under freeze_stats"
        else:
            assert not same(stats, stats0), "bn='train' should update moving statistics"


def _bn_fit(callback, model=None):
    model = model or mlp(bn=True)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    bn = model.get_layer("bn0")
    before = {"affine": [np.array(bn.gamma), np.array(bn.beta)],
              "stats": [np.array(bn.moving_mean), np.array(bn.moving_variance)], "g0": weights(model, "g0")}
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    after = {"affine": [np.array(bn.gamma), np.array(bn.beta)],
             "stats": [np.array(bn.moving_mean), np.array(bn.moving_variance)], "g0": weights(model, "g0")}
    return {k: same(before[k], after[k]) for k in before}, bn


def test_freeze_batch_norm_callback():
    # the torch adapters' meaning: statistics frozen, gamma/beta trained unless freeze_affine=True
    kept, bn = _bn_fit(FreezeBatchNorm())
    assert kept == {"affine": False, "stats": True, "g0": False}
    assert bn.trainable and "call" not in bn.__dict__  # the inference hold ends with fit
    kept, bn = _bn_fit(FreezeBatchNorm(freeze_affine=True))
    assert kept == {"affine": True, "stats": True, "g0": False}
    assert not bn.trainable
    kept, _ = _bn_fit(FreezeBatchNorm(layers=["bn0"], freeze_affine=True))
    assert kept["stats"] and kept["affine"]
    with pytest.raises(ValueError, match="no BatchNormalization layer to freeze"):
        _bn_fit(FreezeBatchNorm(layers=["g0"]))
    with pytest.raises(ValueError, match="no BatchNormalization layer to freeze"):
        _bn_fit(FreezeBatchNorm(skip="bn.*"))
    for bad, match in ((dict(freeze_affine=1), "freeze_affine"), (dict(layers="bn0"), "layers must be"),
                       (dict(skip=[3]), "skip entries"), (dict(layers=[]), "layers must be")):
        with pytest.raises(ValueError, match=match):
            FreezeBatchNorm(**bad)


def test_freeze_batch_norm_overrides_a_staged_plan():
    # bn0 sits in the trainable group of every stage: FreezeBatchNorm still holds its statistics
    model = mlp(bn=True)
    plan = FreezePlan(stages=[(0, 2), (1, "all")])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    bn = model.get_layer("bn0")
    stats = [np.array(bn.moving_mean), np.array(bn.moving_variance)]
    affine = [np.array(bn.gamma), np.array(bn.beta)]
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[
        StagedUnfreeze(plan, groups=["g0", ["bn0", "g1"], "g2"]), FreezeBatchNorm()])
    assert same([np.array(bn.moving_mean), np.array(bn.moving_variance)], stats)
    assert not same([np.array(bn.gamma), np.array(bn.beta)], affine)


# -- per-group learning rates ----------------------------------------------------------------------
def test_discriminative_lr_scales_each_groups_adam_step():
    """One Adam update: group g moves factor[g] times as far as with plain Adam (not gradient scaling)."""
    def one_step(callbacks):
        model = mlp()
        model.compile(keras.optimizers.Adam(0.01), "mse")
        w0 = {n: weights(model, n)[0] for n in ("g0", "g1", "g2")}
        model.fit(X[:4], Y[:4], batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
        return {n: weights(model, n)[0] - w0[n] for n in w0}

    plain = one_step([])
    scaled = one_step([DiscriminativeLR([0.25, 0.5, 1.0])])
    for name, factor in (("g0", 0.25), ("g1", 0.5), ("g2", 1.0)):
        np.testing.assert_allclose(scaled[name], factor * plain[name], rtol=1e-4, atol=1e-7)


def test_logs_carry_learning_rates_and_trainable_groups():
    model = mlp()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    sched = hp.ExponentialDecay(0.1, decay_steps=6, decay_rate=0.5)
    plan = FreezePlan.gradual(every_epochs=1, factors=LRFactors.geometric(2.0))
    history = model.fit(X, Y, batch_size=4, epochs=3, verbose=0,
                        callbacks=[LearningRateSchedule(sched), StagedUnfreeze(plan)])
    h = history.history
    last = [5, 11, 17]
    np.testing.assert_allclose(h["learning_rate"], [sched(t) for t in last], rtol=1e-12)
    np.testing.assert_allclose(h["learning_rate/g0"], [sched(t) * 0.25 for t in last], rtol=1e-12)
    assert h["trainable_groups"] == [1.0, 2.0, 3.0]


# -- defaults ------------------------------------------------------------------------------------------
def test_cosine_restart_defaults_restart_after_the_first_epoch():
    s = Scenario("defaults", hp.Constant(0.0), num_groups=3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
    opt = RecordingSGD(0.2, var_group=var_groups(model, 1), num_groups=1, capacity=32)
    model.compile(opt, "mse")
    x, y = scenario_data(s)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[CosineRestart()])
    lrs = ops.convert_to_numpy(opt.rec_lr)[:18, 0]
    expected = hp.CosineRestart(0.2, first_decay_steps=6)
    np.testing.assert_allclose(lrs, [expected(t) for t in range(18)], rtol=1e-6)
    assert lrs[6] == np.float32(0.2) and lrs[5] < 0.2


# -- the Keras problems of the issue: plain Keras fails, the adapter works ---------------------------
class PlainUnfreeze(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.model.get_layer("g0").trainable = True
            self.model.make_train_function(force=True)


def test_bug_setting_trainable_mid_fit():
    model = mlp()
    model.get_layer("g0").trainable = False
    model.compile(keras.optimizers.Adam(0.01), "mse")
    w0 = weights(model, "g0")
    if BACKEND == "tensorflow":
        # plain Keras: without a forced re-trace the change is a silent no-op ...
        class NoRetrace(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:
                    self.model.get_layer("g0").trainable = True

        model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[NoRetrace()])
        assert same(weights(model, "g0"), w0)
        # ... and with one, the optimizer does not know the variable
        model = mlp()
        model.get_layer("g0").trainable = False
        model.compile(keras.optimizers.Adam(0.01), "mse")
    # (on JAX plain Keras fails on the train state's shapes instead, 3.8 in the optimizer; Keras 3.8 on TensorFlow
    # reads the unknown variable's value in the graph: "numpy() is only available when eager execution is enabled")
    with pytest.raises((ValueError, NotImplementedError),
                       match="must match|corresponding 1:1" if BACKEND == "jax"
                       else "Unknown variable|numpy.. is only available"):
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[PlainUnfreeze()])
    # the adapter: the same plan really unfreezes g0 at epoch 1, in one fit
    model = mlp()
    model.get_layer("g0").trainable = False
    model.compile(keras.optimizers.Adam(0.01), "mse")
    probe = PerUpdate(["g0"])
    model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[StagedUnfreeze(FreezePlan(stages=[(0, 2), (1, "all")])), probe])
    assert same(probe.snapshots[5]["g0"], w0) and not same(probe.snapshots[6]["g0"], w0)


def test_bug_multi_optimizer_cannot_follow_an_unfreeze():
    from hpcallbacks_keras import _seam

    if _seam.KERAS_GE_3_11:  # keras.optimizers.MultiOptimizer: not in Keras 3.8 or 3.10
        model = mlp()
        opt = keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(
            keras.optimizers.Adam(0.01), {".*g0.*": keras.optimizers.Adam(0.001)}))
        model.compile(opt, "mse")
        opt.build(model.trainable_variables)
        model.get_layer("g0").trainable = False
        with pytest.raises(ValueError, match="corresponding 1:1" if BACKEND == "jax" else "Gradients must match"):
            model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    # the adapter: per-group LRs and staged unfreezing with one optimizer
    model = mlp()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    w0 = weights(model, "g0")
    history = model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[
        StagedUnfreeze(FreezePlan(stages=[(0, 2), (1, "all")])), DiscriminativeLR([0.1, 1.0, 1.0]),
        CosineDecay()])
    assert not same(weights(model, "g0"), w0)
    assert history.history["trainable_groups"] == [2.0, 3.0]
    np.testing.assert_allclose(np.array(history.history["learning_rate/g0"]),
                               0.1 * np.array(history.history["learning_rate"]))


def test_bug_schedule_object_refuses_reduce_lr_on_plateau():
    model = mlp()
    model.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)), "mse")
    with pytest.raises(TypeError, match="not settable"):
        model.fit(X, Y, batch_size=4, epochs=3, verbose=0,
                  callbacks=[keras.callbacks.ReduceLROnPlateau("loss", patience=0, min_delta=1e9)])
    # the adapter: the same schedule from the core, times the plateau factor
    s = Scenario("plateau", hp.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5), num_groups=1, epochs=4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
    opt = RecordingSGD(0.1, var_group=var_groups(model, 1), num_groups=1, capacity=32)
    model.compile(opt, "mse")
    x, y = scenario_data(s)
    model.fit(x, y, batch_size=4, epochs=4, verbose=0, shuffle=False, callbacks=[
        LearningRateSchedule(s.schedule), ReduceOnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)])
    lrs = ops.convert_to_numpy(opt.rec_lr)[:24, 0]
    # epoch 0 sets the best value; each later epoch end reduces once (keras convention, patience 0)
    factor = [1.0] * 6 + [1.0] * 6 + [0.5] * 6 + [0.25] * 6
    np.testing.assert_allclose(lrs, [s.schedule(t) * factor[t] for t in range(24)], rtol=1e-6)


def test_bug_accumulation_schedule_counts_micro_batches():
    def run(callbacks, lr):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
        opt = RecordingSGD(lr, var_group=var_groups(model, 1), num_groups=1, capacity=8,
                           gradient_accumulation_steps=2)
        model.compile(opt, "mse")
        model.fit(X[:16], Y[:16], batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
        return ops.convert_to_numpy(opt.rec_lr)[:2, 0].tolist()

    plain = run([], keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5))
    assert plain == [0.5, 0.125]  # Keras evaluates the schedule at the micro-batch count
    adapted = run([ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5)], 1.0)
    assert adapted == [1.0, 0.5]


def test_bug_learning_rate_scheduler_changes_once_per_epoch():
    sched = hp.CosineDecay(0.1, decay_steps=12)

    def run(callbacks):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
        opt = RecordingSGD(0.1, var_group=var_groups(model, 1), num_groups=1, capacity=16)
        model.compile(opt, "mse")
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
        return ops.convert_to_numpy(opt.rec_lr)[:12, 0]

    plain = run([keras.callbacks.LearningRateScheduler(lambda epoch: sched(epoch * 6))])
    assert len(set(plain[:6].tolist())) == 1  # one value for the whole epoch
    adapted = run([LearningRateSchedule(sched)])
    np.testing.assert_allclose(adapted, [sched(t) for t in range(12)], rtol=1e-6)


# -- resume ------------------------------------------------------------------------------------------
class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_update):
        super().__init__()
        self.at = at_update

    def on_train_batch_begin(self, batch, logs=None):
        if iterations(self.model) == self.at:
            raise RuntimeError("interrupted")


RESUME = Scenario("resume", hp.CosineRestart(0.1, first_decay_steps=5, t_mul=2.0),
                  plan=FreezePlan(stages=[(0, 1), (1, 2), (2, "all")], factors=LRFactors.geometric(2.0)), epochs=4)


def _resume_run(tmp_path, interrupt_at=None):
    from keras_support import scenario_model
    s = RESUME
    model = scenario_model(s)
    opt = RecordingSGD(0.5, var_group=var_groups(model, s.num_groups), num_groups=s.num_groups, capacity=64)
    model.compile(opt, "mse")
    x, y = scenario_data(s)
    callbacks = [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), save_freq=4),
                 LearningRateSchedule(s.schedule), StagedUnfreeze(s.plan)]
    if interrupt_at is not None:
        callbacks.append(Interrupt(interrupt_at))
    model.fit(x, y, batch_size=s.batch_size, epochs=s.epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def test_backup_and_restore_resume_gives_the_same_lrs_and_trainable_sets(tmp_path):
    s = RESUME
    full = _resume_run(tmp_path / "full")
    with pytest.raises(RuntimeError, match="interrupted"):
        _resume_run(tmp_path / "cut", interrupt_at=10)  # mid-epoch 1, last backup after update 8
    resumed = _resume_run(tmp_path / "cut")  # a fresh model and optimizer, as in a new process
    full_records = records_of(s, full)
    resumed_records = records_of(s, resumed)
    assert len(resumed_records) > len(full_records)  # the resumed run replays part of an epoch
    r = s.resolved()
    for records in (full_records, resumed_records):
        for t, lrs, trainable in records:
            assert trainable == r.trainable_at(t), t
            np.testing.assert_allclose(lrs, [s.schedule(t) * f for f in r.factors], rtol=1e-6)
    assert [layer.trainable for layer in resumed.layers] == [layer.trainable for layer in full.layers]


# -- bad input ----------------------------------------------------------------------------------------
def _fit_raises(callbacks, match, optimizer=None):
    model = mlp()
    model.compile(optimizer or keras.optimizers.SGD(0.1), "mse")
    with pytest.raises(ValueError, match=match) as info:
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    assert not model.optimizer.built or iterations(model) == 0  # refused before any update
    return str(info.value)


def test_bad_input_unknown_group_name():
    msg = _fit_raises([StagedUnfreeze(groups=["g0", "encoder_9", "g2"])], "encoder_9")
    assert "groups[1]" in msg and "'g1'" in msg  # names what to change and what exists


def test_bad_input_plan_with_more_groups_than_the_model():
    msg = _fit_raises([StagedUnfreeze(FreezePlan(stages=[(0, 5)]))], "only 3")
    assert "StagedUnfreeze" in msg and "groups=" in msg


def test_bad_input_schedule_callback_on_a_schedule_object_optimizer():
    opt = keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    msg = _fit_raises([CosineRestart()], "compile with a float", optimizer=opt)
    assert "CosineRestart" in msg


def test_bad_input_two_schedules_and_wrong_factor_count():
    _fit_raises([CosineRestart(), CosineDecay()], r"callbacks holds 2 learning-rate schedules \(CosineRestart, "
                                                  r"CosineDecay\); keep one")  # the run contract's message
    _fit_raises([DiscriminativeLR([1.0, 2.0])], "factors has 2 entries but the model has 3 groups")
    _fit_raises([CosineRestart(), ReduceOnPlateau(0.1, monitor="loss")], "drop schedule=")
    _fit_raises([ReduceOnPlateau(0.1, monitor="loss"), CosineRestart()], "drop schedule=")


def test_reduce_on_plateau_owns_the_lr_with_schedule():
    """ReduceOnPlateau(schedule, monitor, ...): the argument order of every adapter; the schedule is reduced."""
    s = Scenario("plateau", hp.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5), num_groups=1, epochs=3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
    opt = RecordingSGD(0.3, var_group=var_groups(model, 1), num_groups=1, capacity=32)
    model.compile(opt, "mse")
    x, y = scenario_data(s)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False,
              callbacks=[ReduceOnPlateau(hp.schedules.serialize(s.schedule), "loss", 0.5, 0, min_delta=1e9)])
    lrs = ops.convert_to_numpy(opt.rec_lr)[:18, 0]
    factor = [1.0] * 12 + [0.5] * 6
    np.testing.assert_allclose(lrs, [s.schedule(t) * factor[t] for t in range(18)], rtol=1e-6)
    with pytest.raises(ValueError, match=r"ReduceOnPlateau\(monitor='loss'\)"):
        ReduceOnPlateau("loss")  # the pre-parity call: refused with the fix
    with pytest.raises(ValueError, match="verbose"):
        ReduceOnPlateau(verbose=-1)


def test_discriminative_lr_reads_factors_as_every_adapter():
    F = LRFactors
    assert DiscriminativeLR().factors == F.geometric(2.6)
    assert DiscriminativeLR(0.5).factors == F.layer_decay(0.5)
    assert DiscriminativeLR([1, 2]).factors == F.explicit([1, 2])
    assert DiscriminativeLR(F.spread(1e-5, 1e-3).get_config()).factors == F.spread(1e-5, 1e-3)
    for bad in ("fast", 0, None, FreezePlan.gradual()):
        with pytest.raises(ValueError, match="factors must be"):
            DiscriminativeLR(bad)


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match="t_mul"):
        CosineRestart(t_mul=0.5)
    with pytest.raises(ValueError, match="bn must be one of"):
        StagedUnfreeze(bn="sometimes")
    with pytest.raises(ValueError, match="plan must be"):
        StagedUnfreeze(plan="gradual")
    with pytest.raises(ValueError, match="groups must be"):
        DiscriminativeLR(groups="g0")


# -- norms -------------------------------------------------------------------------------------------------
def _conv_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(24, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    base = keras.Model(inp, x, name="base")
    outer = keras.Input((6, 6, 3))
    y = base(outer, training=False)
    y = keras.layers.Conv2D(8, 1, name="c2")(y)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(outer, keras.layers.Dense(2, name="head")(y))
    images = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32")
    for _ in range(3):  # non-trivial moving statistics
        model(images, training=True)
    return model, images


def test_swap_norms_group_and_frozen():
    from hpcallbacks_keras import FrozenBatchNormalization, SwapNorm, swap_norms

    model, images = _conv_model()
    grouped = swap_norms(model, to="group")
    kinds = {layer.name: type(layer).__name__ for layer in grouped._flatten_layers(include_self=False)}
    assert kinds["bn1"] == kinds["bn2"] == "GroupNormalization"
    assert grouped.get_layer("base").get_layer("bn1").groups == 8  # 24 channels: the largest of 32, 16, 8 dividing
    assert same(weights(grouped, "head"), weights(model, "head"))
    assert same(grouped.get_layer("base").get_layer("c1").get_weights(), model.get_layer("base").get_layer("c1")
                .get_weights())
    frozen = swap_norms(model, to="frozen", skip=["bn2"])
    assert isinstance(frozen.get_layer("base").get_layer("bn1"), FrozenBatchNormalization)
    assert type(frozen.get_layer("bn2")) is keras.layers.BatchNormalization
    fbn = frozen.get_layer("base").get_layer("bn1")
    stats = [np.array(w) for w in fbn.weights]
    frozen.compile(keras.optimizers.SGD(0.1), "mse")
    frozen.fit(images, np.zeros((8, 2), "float32"), batch_size=4, epochs=1, verbose=0)
    assert same([np.array(w) for w in fbn.weights], stats)  # statistics and affine fixed while training
    assert not same(weights(frozen, "head"), weights(model, "head"))
    # SwapNorm (the other adapters' callback) refuses to pretend: the swap must happen before compile
    model.compile(keras.optimizers.SGD(0.1), "mse")
    with pytest.raises(ValueError, match="swap_norms"):
        model.fit(images, np.zeros((8, 2), "float32"), epochs=1, verbose=0, callbacks=[SwapNorm()])
    grouped.compile(keras.optimizers.SGD(0.1), "mse")
    grouped.fit(images, np.zeros((8, 2), "float32"), epochs=1, verbose=0, callbacks=[SwapNorm(reuse_params=False)])
    with pytest.raises(ValueError, match="reuse_params"):
        SwapNorm(reuse_params="yes")


def test_freeze_batch_norm_skips_by_dotted_prefix_and_reaches_nested_layers():
    model, images = _conv_model()
    bn1, bn2 = model.get_layer("base").get_layer("bn1"), model.get_layer("bn2")
    stats = np.array(bn2.moving_mean)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    skipping = FreezeBatchNorm(skip=["base"])  # everything inside the nested model "base" (base.bn1)
    model.fit(images, np.zeros((8, 2), "float32"), batch_size=4, epochs=1, verbose=0, callbacks=[skipping])
    assert skipping.frozen == [bn2] and same([bn2.moving_mean], [stats])
    inside = FreezeBatchNorm(layers=["base"], freeze_affine=True)
    model.fit(images, np.zeros((8, 2), "float32"), batch_size=4, epochs=1, verbose=0, callbacks=[inside])
    assert inside.frozen == [bn1] and not bn1.trainable and bn2.trainable
    from hpcallbacks_keras import swap_norms  # the same skip rule: dotted paths inside the model

    swapped = swap_norms(model, to="frozen", skip=["base"])
    assert type(swapped.get_layer("base").get_layer("bn1")) is keras.layers.BatchNormalization
    assert type(swapped.get_layer("bn2")).__name__ == "FrozenBatchNormalization"


def test_swap_norms_refuses_subclassed_models_and_bad_groups():
    from hpcallbacks_keras import swap_norms

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(x)

    net = Net()
    net(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="Sequential or Functional"):
        swap_norms(net)
    model, _ = _conv_model()
    with pytest.raises(ValueError, match="groups must divide"):
        swap_norms(model, groups=5)


def test_family_defaults_follow_the_core_rule():
    from hpcallbacks.defaults import RunFacts, build
    from hpcallbacks_keras import OneCycle, WarmupStableDecay

    for cb, family in ((OneCycle(), "OneCycle"), (WarmupStableDecay(), "WarmupStableDecay")):
        model = mlp()
        model.compile(keras.optimizers.SGD(0.05), "mse")
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[cb])
        assert cb.schedule == build(family, {}, RunFacts(learning_rate=0.05, steps_per_epoch=6, total_steps=12))


# -- batch-size rules, LARS, advice -------------------------------------------------------------------------
@pytest.mark.parametrize("options", [dict(), dict(weight_decay=0.01, nesterov=True), dict(clip=True, momentum=0.0)])
def test_lars_matches_the_torch_lars(options):
    torch = pytest.importorskip("torch")
    from hpcallbacks.torch import LARS as TorchLARS
    from hpcallbacks_keras import LARS

    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")
    grads = [(rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")) for _ in range(3)]
    kw = dict(momentum=0.9, trust_coefficient=0.02) | options
    w, b = keras.Variable(w0), keras.Variable(b0)
    opt = LARS(learning_rate=0.5, **kw)
    tw, tb = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(b0))
    topt = TorchLARS([tw, tb], lr=0.5, **kw)
    for gw, gb in grads:
        opt.apply([ops.convert_to_tensor(gw), ops.convert_to_tensor(gb)], [w, b])
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        topt.step()
    np.testing.assert_allclose(np.array(w), tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(b), tb.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert LARS.from_config(opt.get_config()).get_config()["weight_decay"] == opt.get_config()["weight_decay"]


def _recording_model(lr, **opt_kwargs):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
    opt = RecordingSGD(lr, var_group=var_groups(model, 1), num_groups=1, capacity=32, **opt_kwargs)
    model.compile(opt, "mse")
    return model, opt


def test_gradient_accumulation_sets_keras_steps_and_corrects_its_schedule_count():
    from hpcallbacks_keras import GradientAccumulation, UpdateCountSchedule

    model, opt = _recording_model(keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=1, decay_rate=0.5))
    model.fit(X[:16], Y[:16], batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[GradientAccumulation(8, batch_size=4)])
    assert opt.gradient_accumulation_steps == 2 and isinstance(opt._learning_rate, UpdateCountSchedule)
    assert iterations(model) == 2
    assert ops.convert_to_numpy(opt.rec_lr)[:2, 0].tolist() == [1.0, 0.5]  # per update, not micro-batch
    # with an hpcallbacks schedule: the defaults count updates (3 per epoch of 6 batches)
    model, opt = _recording_model(0.2)
    cb = CosineRestart()
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[cb, GradientAccumulation(8, batch_size=4)])
    assert cb.schedule.first_decay_steps == 3 and iterations(model) == 6
    np.testing.assert_allclose(ops.convert_to_numpy(opt.rec_lr)[:6, 0], [cb.schedule(t) for t in range(6)], rtol=1e-6)


def test_gradient_accumulation_bad_input():
    from hpcallbacks_keras import GradientAccumulation

    model = mlp()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    data = tf_free_batches(X, Y, 4)
    with pytest.raises(ValueError, match=r"GradientAccumulation: batch_size must be given \(fit's batch_size"):
        model.fit(data, verbose=0, callbacks=[GradientAccumulation(64)])  # at fit start: Keras hides the batches
    with pytest.raises(ValueError, match="batch_size=8, but fit was called with batch_size=4"):
        model.fit(X, Y, batch_size=4, verbose=0, callbacks=[GradientAccumulation(64, batch_size=8)])
    with pytest.raises(ValueError, match="batch_size=8 and per_device_batch_size=4 are both given"):
        GradientAccumulation(64, per_device_batch_size=4, batch_size=8)
    with pytest.raises(ValueError, match="nearest reachable: 8 or 12"):
        model.fit(X, Y, batch_size=4, verbose=0, callbacks=[GradientAccumulation(10, batch_size=4)])
    assert iterations(model) == 0
    model.fit(X, Y, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="already trained"):
        model.fit(X, Y, batch_size=4, verbose=0, callbacks=[GradientAccumulation(8, batch_size=4)])


def tf_free_batches(x, y, batch):
    """A ``keras.utils.PyDataset`` of ``(x, y)`` batches (any backend): data whose batch size fit does not know."""

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return len(x) // batch

        def __getitem__(self, i):
            return x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]

    return Batches()


def test_gradient_accumulation_reads_fits_batch_size_from_its_arrays():
    from hpcallbacks_keras import GradientAccumulation

    model, opt = _recording_model(0.1)
    model.fit(X[:16], Y[:16], batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[GradientAccumulation(8)])
    assert opt.gradient_accumulation_steps == 2 and iterations(model) == 2
    model, opt = _recording_model(0.1)
    model.fit(tf_free_batches(X[:16], Y[:16], 4), epochs=1, verbose=0,
              callbacks=[GradientAccumulation(8, batch_size=4)])
    assert opt.gradient_accumulation_steps == 2 and iterations(model) == 2


def test_per_device_batch_size_still_works_deprecated():
    from hpcallbacks_keras import GradientAccumulation, HyperparameterAdvisor, ScaleLearningRate

    for cls, args in ((GradientAccumulation, (8,)), (ScaleLearningRate, (4,)), (HyperparameterAdvisor, ())):
        with pytest.warns(DeprecationWarning, match=f"{cls.__name__}: per_device_batch_size= is deprecated in "
                                                    "Keras; pass batch_size="):
            cls(*args, per_device_batch_size=4)
    model, opt = _recording_model(0.1)
    with pytest.warns(DeprecationWarning):
        accumulation = GradientAccumulation(8, per_device_batch_size=4)
    model.fit(X[:16], Y[:16], batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[accumulation])
    assert opt.gradient_accumulation_steps == 2 and iterations(model) == 2  # one replica: the same number


def test_gradient_accumulation_after_a_traced_train_function():
    """Issue 20, defect 1: a train function traced before (here by LRFinder.run's trial updates, which restore the
    model) has the old accumulation baked in on a graph backend and fit reuses it; the accumulation set at
    fit's start applies there."""
    from hpcallbacks_keras import GradientAccumulation, LRFinder

    def run(by_hand):
        keras.utils.set_random_seed(0)
        model = mlp()
        model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=3 if by_hand else None), "mse")
        LRFinder(max_lr=1.0, num_steps=4, skip_start=0, skip_end=0).run(model, X, Y, batch_size=4)  # traces the step
        callbacks = [] if by_hand else [GradientAccumulation(12, batch_size=4)]
        model.fit(X, Y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
        return model

    hand, callback = run(True), run(False)
    assert iterations(callback) == iterations(hand) == 4
    for a, b in zip(hand.get_weights(), callback.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_resume_without_the_optimizer_built_is_refused(tmp_path):
    """Issue 20, defect 12: Keras skips the optimizer's state when it is not built before load_weights; the run
    state saved with the weights says update 6, the optimizer 0: resuming is refused, a new run from the
    weights warns."""
    import warnings

    plan = FreezePlan.gradual(every_epochs=1)
    model = mlp()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    with pytest.warns(hp.RunWarning, match="this run ends after update 6"):
        model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[StagedUnfreeze(plan)])
    path = str(tmp_path / "run.weights.h5")
    model.save_weights(path)

    def loaded(build):
        again = mlp()
        again.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
        if build:
            again.optimizer.build(again.trainable_variables)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras: "Skipping variable loading for optimizer ..."
            again.load_weights(path)
        return again

    with pytest.raises(ValueError, match=r"saved at update 6, but the optimizer is at update 0.*"
                                         r"model.optimizer.build\(model.trainable_variables\)"):
        loaded(False).fit(X, Y, batch_size=8, epochs=4, initial_epoch=2, verbose=0, callbacks=[StagedUnfreeze(plan)])
    fresh = loaded(False)
    with pytest.warns(hp.RunWarning, match="starts afresh at update 0"):
        fresh.fit(X, Y, batch_size=8, epochs=3, verbose=0, callbacks=[StagedUnfreeze(plan)])
    resumed = loaded(True)  # as documented: trains on from update 6, every group trainable
    resumed.fit(X, Y, batch_size=8, epochs=3, initial_epoch=2, verbose=0, callbacks=[StagedUnfreeze(plan)])
    assert iterations(resumed) == 9 and all(resumed.get_layer(n).trainable for n in ("g0", "g1", "g2"))


def test_scale_learning_rate_with_warmup_and_a_schedule():
    from hpcallbacks.batch import scaling_warmup
    from hpcallbacks_keras import ScaleLearningRate

    model, opt = _recording_model(0.1)
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0,
              callbacks=[ScaleLearningRate(4, warmup_epochs=1, batch_size=8)])
    factor = scaling_warmup(hp.Constant(2.0), 4, 8, steps_per_epoch=3, warmup_epochs=1)
    np.testing.assert_allclose(ops.convert_to_numpy(opt.rec_lr)[:6, 0], [0.1 * factor(t) for t in range(6)],
                               rtol=1e-6)
    assert ops.convert_to_numpy(opt.rec_lr)[5, 0] == pytest.approx(0.2)
    model, opt = _recording_model(0.1)
    sched = hp.CosineDecay(0.1, decay_steps=6)
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[
        LearningRateSchedule(sched), ScaleLearningRate(4, rule="sqrt", warmup_epochs=0, batch_size=8)])
    np.testing.assert_allclose(ops.convert_to_numpy(opt.rec_lr)[:6, 0], [sched(t) * 2 ** 0.5 for t in range(6)],
                               rtol=1e-6)


def test_hyperparameter_advisor():
    from hpcallbacks_keras import HyperparameterAdvisor, HyperparameterWarning

    def model_with_dropout():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.7),
                                 keras.layers.Dense(1)])

    model = model_with_dropout()
    model.compile(keras.optimizers.Adam(0.1), "mse")
    advisor = HyperparameterAdvisor(batch_size=4)
    with pytest.warns(HyperparameterWarning):
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[advisor, CosineDecay(1.0)])
    rows = {f.row for f in advisor.findings}
    assert {"learning_rate_adam", "dropout_rate"} <= rows
    assert advisor.values["learning_rate"] == pytest.approx(1.0)  # the peak of the scheduled LR
    model = model_with_dropout()
    model.compile(keras.optimizers.Adam(0.1), "mse")
    with pytest.raises(ValueError, match="strict=True"):
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[HyperparameterAdvisor(strict=True)])
    assert not model.optimizer.built or iterations(model) == 0


def test_loss_balance():
    from hpcallbacks_keras import HyperparameterWarning, LossBalance

    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, {"a": keras.layers.Dense(1, name="a")(inp), "b": keras.layers.Dense(1, name="b")(inp)})
    model.compile(keras.optimizers.SGD(1e-6), loss={"a": "mse", "b": "mse"})
    balance = LossBalance(["a_loss", "b_loss"])
    targets = {"a": np.full((24, 1), 300.0, "float32"), "b": np.zeros((24, 1), "float32")}
    with pytest.warns(HyperparameterWarning, match="a_loss"):
        model.fit(X, targets, batch_size=4, epochs=1, verbose=0, callbacks=[balance])
    assert balance.weights["a_loss"] == 1.0 and balance.weights["b_loss"] > 100
    with pytest.raises(ValueError, match="two or more"):
        LossBalance(["a_loss"])


def _recorded_fit(callbacks, epochs, interrupt_at=None):
    """The LR of each update (6 per epoch) of a fit of a fresh recording model with ``callbacks``,
    interrupted at update ``interrupt_at`` when given."""
    model, opt = _recording_model(0.1)
    if interrupt_at is not None:
        callbacks = [*callbacks, Interrupt(interrupt_at)]
    model.fit(X, Y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return ops.convert_to_numpy(opt.rec_lr)[:6 * epochs, 0]


def _plateau_run(tmp_path, interrupt_at=None):
    return _recorded_fit([LearningRateSchedule(hp.Constant(0.1)),
                          ReduceOnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9),
                          keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))], 4, interrupt_at)


def test_reduce_on_plateau_state_survives_backup_and_restore(tmp_path):
    full = _plateau_run(tmp_path / "full")
    np.testing.assert_allclose(full, [0.1] * 12 + [0.05] * 6 + [0.025] * 6, rtol=1e-6)
    with pytest.raises(RuntimeError, match="interrupted"):
        _plateau_run(tmp_path / "cut", interrupt_at=15)  # in epoch 2; the backup is from the end of epoch 1
    resumed = _plateau_run(tmp_path / "cut")  # a fresh model and optimizer
    np.testing.assert_allclose(resumed, full, rtol=1e-6)


def _decay_run(tmp_path, interrupt_at=None):
    # BackupAndRestore listed first
    return _recorded_fit([keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), CosineDecay()], 3, interrupt_at)


def test_backup_and_restore_resume_defaults_to_the_first_runs_learning_rate(tmp_path):
    # the restored optimizer holds the last scheduled LR; the run's defaults come from the first run's (RunState)
    full = _decay_run(tmp_path / "full")
    np.testing.assert_allclose(full, hp.CosineDecay(0.1, decay_steps=18).curve(18), rtol=1e-6)
    with pytest.raises(RuntimeError, match="interrupted"):
        _decay_run(tmp_path / "cut", interrupt_at=9)  # in epoch 1; the backup is from the end of epoch 0
    resumed = _decay_run(tmp_path / "cut")  # a fresh model and optimizer
    np.testing.assert_allclose(resumed, full, rtol=1e-6)


def test_every_public_callback_refuses_a_wrong_keyword_and_another_frameworks_loop():
    import inspect

    import hpcallbacks_keras as hk
    from hpcallbacks._checks import ArgumentError

    classes = [getattr(hk, n) for n in hk.__all__
               if inspect.isclass(getattr(hk, n)) and issubclass(getattr(hk, n), keras.callbacks.Callback)]
    assert len(classes) >= 34
    for cls in classes:
        with pytest.raises(ArgumentError, match="unexpected keyword argument 'no_such_argument'"):
            cls(no_such_argument=1)
        callback = cls.__new__(cls)
        for hook, framework in (("setup", "lightning"), ("on_init_end", "hf")):  # their loops' first hooks
            with pytest.raises(TypeError, match=f"import it from hpcallbacks_{framework} instead"):
                getattr(callback, hook)(None, None, None)
    with pytest.raises(ArgumentError, match="did you mean 'first_decay_steps'"):
        CosineRestart(first_decay_step=3)


# -- ParamScheduler --------------------------------------------------------------------------------------------
class MomentumRecordingSGD(keras.optimizers.SGD):
    """Records, in-graph, the momentum each update used."""

    def build(self, variables):
        super().build(variables)
        self.rec_momentum = keras.Variable(np.zeros((64,), "float32"), trainable=False, name="rec_momentum")

    def update_step(self, gradient, variable, learning_rate):
        it = ops.reshape(ops.cast(self.iterations, "int32"), (1, 1))
        value = ops.reshape(ops.cast(self.momentum, "float32"), (1,))
        self.rec_momentum.assign(ops.scatter_update(self.rec_momentum, it, value))
        super().update_step(gradient, variable, learning_rate)


class LevelModel(keras.Sequential):
    """A model whose forward pass reads a variable; train_step records what it saw per update."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.level = keras.Variable(0.0, trainable=False, name="level")
        self.rec_level = keras.Variable(np.zeros((64,), "float32"), trainable=False, name="rec_level")
        self.python_level = 0.5

    def call(self, x, training=None):
        return super().call(x, training=training) + self.level

    def train_step(self, *args):
        if BACKEND == "jax":  # a stateless train step (state, data): the level is checked after fit
            return super().train_step(*args)
        (data,) = args
        it = ops.reshape(ops.cast(self.optimizer.iterations, "int32"), (1, 1))
        self.rec_level.assign(ops.scatter_update(self.rec_level, it, ops.reshape(ops.cast(self.level, "float32"),
                                                                                     (1,))))
        return super().train_step(data)


def run_param_scheduler(steps_per_execution=1, jit_compile=False, accumulation=None):
    from hpcallbacks_keras import ParamScheduler

    keras.utils.set_random_seed(0)
    model = LevelModel([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
    opt = MomentumRecordingSGD(0.01, momentum=0.9, gradient_accumulation_steps=accumulation)
    model.compile(opt, "mse", steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    momentum = hp.Cyclic(0.8, 0.95, step_size_up=3)
    level = hp.PolynomialDecay(1.0, decay_steps=12, end_learning_rate=0.0)
    acc = accumulation or 1
    x, y = np.concatenate([X] * acc), np.concatenate([Y] * acc)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                        callbacks=[ParamScheduler({"momentum": momentum, "model.level": level})])
    n = iterations(model)
    assert n == 12
    np.testing.assert_allclose(ops.convert_to_numpy(opt.rec_momentum)[:n], [momentum(t) for t in range(n)], rtol=1e-6)
    if BACKEND == "jax":  # the train state's value: the last update's
        assert float(ops.convert_to_numpy(model.level)) == pytest.approx(level(n - 1), abs=1e-6)
    else:
        np.testing.assert_allclose(ops.convert_to_numpy(model.rec_level)[:n], [level(t) for t in range(n)],
                                   rtol=1e-6, atol=1e-7)
    assert isinstance(opt.momentum, float) and opt.momentum == pytest.approx(momentum(n - 1))
    assert history.history["param/momentum"] == pytest.approx([momentum(5), momentum(11)])
    return model


def test_param_scheduler_sets_optimizer_and_model_values_per_update():
    run_param_scheduler()
    run_param_scheduler(accumulation=2)


def test_param_scheduler_bad_input():
    from hpcallbacks_keras import ParamScheduler

    def fit(cb, momentum=0.9):
        model = LevelModel([keras.Input((4,)), keras.layers.Dense(1, name="g0")])
        model.compile(keras.optimizers.SGD(0.01, momentum=momentum), "mse")
        model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[cb])

    with pytest.raises(ValueError, match="learning rate"):
        fit(ParamScheduler({"optimizer.learning_rate": 0.1}))
    with pytest.raises(ValueError, match="compiled with momentum=0"):
        fit(ParamScheduler({"momentum": 0.5}), momentum=0.0)
    with pytest.raises(ValueError, match=r"must stay in \[0, 1\)"):
        fit(ParamScheduler({"momentum": hp.Constant(1.5)}))
    with pytest.raises(ValueError, match="no attribute or layer"):
        fit(ParamScheduler({"model.encoder.rate": 0.1}))
    if BACKEND != "torch":
        with pytest.raises(ValueError, match="keras.Variable"):
            fit(ParamScheduler({"model.python_level": 0.1}))
    else:
        fit(ParamScheduler({"model.python_level": 0.1}))  # eager: set before every update


# -- GAN helpers --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(BACKEND == "jax", reason="the toy GAN's train_step assigns variables: a TF/torch train step "
                    "(a JAX train step is stateless, with its own state argument)")
def test_gan_helpers_follow_the_core_per_discriminator_update():
    from hpcallbacks import gan as G
    from hpcallbacks_keras import InstanceNoise, LabelFlip, LabelSmoothing

    noise = InstanceNoise(hp.PolynomialDecay(0.5, decay_steps=10, end_learning_rate=0.0), optimizer="d_optimizer")
    smooth = LabelSmoothing(real=0.9, fake=0.1, schedule=hp.PolynomialDecay(1.0, decay_steps=12,
                                                                            end_learning_rate=0.0),
                            optimizer="d_optimizer")
    flip = LabelFlip(0.3, seed=7, optimizer="d_optimizer", max_batch_size=8)
    labels = np.array([[1.0], [0.0], [1.0], [0.0]], "float32")

    class ToyGAN(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(1)
            self.rec = keras.Variable(np.zeros((16, 10), "float32"), trainable=False)
            self.noise_seed = keras.random.SeedGenerator(3)  # tracked by the model, as the torch adapters' generator

        def call(self, x):
            return self.d(x)

        def compile(self, **kwargs):
            super().compile(**kwargs)
            self.d_optimizer = keras.optimizers.SGD(0.01)

        def train_step(self, data):
            x, _ = data
            targets = smooth.targets(flip.targets(ops.convert_to_tensor(labels)))
            noisy = noise.apply(x, generator=self.noise_seed)
            step = ops.cast(self.d_optimizer.iterations, "int32")
            row = ops.concatenate([ops.reshape(noise.std(), (1,)), ops.reshape(targets, (4,)),
                                   ops.reshape(ops.cast(flip.flips(4), "float32"), (4,)),
                                   ops.reshape(ops.std(noisy - x), (1,))])
            self.rec.assign(ops.scatter_update(self.rec, ops.reshape(step, (1, 1)), ops.reshape(row, (1, 10))))
            with_grads = self.d.trainable_weights
            self.d_optimizer.apply([ops.zeros_like(w) for w in with_grads], with_grads)
            return {"targets": ops.sum(targets)}

    gan = ToyGAN()
    gan.compile(loss="mse")
    gan(X[:4])
    gan.fit(np.repeat(X, 2, axis=0)[:48], np.zeros((48, 1), "float32"), batch_size=4, epochs=1, verbose=0,
            callbacks=[noise, smooth, flip])
    rec = ops.convert_to_numpy(gan.rec)
    core_noise, core_smooth, core_flip = (G.InstanceNoise(hp.PolynomialDecay(0.5, 10, end_learning_rate=0.0)),
                                          smooth.smoothing, G.LabelFlip(0.3, seed=7))
    for t in range(12):
        assert rec[t, 0] == pytest.approx(core_noise.std(t), abs=1e-7)
        expected = core_smooth.targets(t, core_flip.targets(t, labels[:, 0].tolist()))
        np.testing.assert_allclose(rec[t, 1:5], expected, rtol=1e-6, atol=1e-7)
        assert rec[t, 5:9].astype(bool).tolist() == core_flip.flips(t, 4)
    assert 0.2 < rec[0, 9] < 0.8 and rec[11, 9] == 0.0  # the noise really is added, and annealed to 0


# -- groups ----------------------------------------------------------------------------------------------------
def test_groups_open_a_nested_base_model_and_accept_regexes():
    from hpcallbacks_keras import discover_groups, resolve_groups

    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="b0"), keras.layers.Dense(8, name="b1")],
                            name="base")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, name="head")(keras.layers.Dropout(0.1)(base(inp))))
    assert [g.name for g in discover_groups(model)] == ["b0", "b1", "head"]
    assert [[layer.name for layer in g.layers] for g in resolve_groups(model, [r"b\d", "head"])] == [["b0", "b1"],
                                                                                                      ["head"]]
    model.compile(keras.optimizers.Adam(0.01), "mse")
    b0, b1 = weights(base, "b0"), weights(base, "b1")
    probe = PerUpdate(["head"])
    from hpcallbacks.run import RunWarning

    with pytest.warns(RunWarning, match="before the plan's stage 2 at update 12"):  # trains, and says so
        model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  callbacks=[StagedUnfreeze(FreezePlan.gradual(every_epochs=1)), probe])
    assert same(weights(base, "b0"), b0) and not same(weights(base, "b1"), b1)  # head, then b1; b0 in epoch 2
    with pytest.raises(ValueError, match="already in groups"):
        resolve_groups(model, [r"b\d", "b1"])


def test_model_saves_and_loads_after_fit_with_the_callbacks(tmp_path):
    from hpcallbacks_keras import ParamScheduler

    momentum = hp.Cyclic(0.85, 0.95, step_size_up=3)
    model = mlp()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    model.fit(X, Y, batch_size=4, epochs=3, verbose=0, callbacks=[  # the plan ends with every group trainable
        CosineRestart(), StagedUnfreeze(), DiscriminativeLR(), ParamScheduler({"momentum": momentum}),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "during.keras"))])  # a full save while fit runs
    during = keras.models.load_model(str(tmp_path / "during.keras"))  # warnings are errors here
    assert during.optimizer.momentum == pytest.approx(momentum(17))
    model.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[ReduceOnPlateau(monitor="loss")])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # no skipped optimizer variables after ReduceOnPlateau either
    assert iterations(loaded) == 24
    assert [np.array(v).tolist() for v in loaded.optimizer.variables] == \
        [np.array(v).tolist() for v in model.optimizer.variables]
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


# -- the range test ----------------------------------------------------------------------------------------------
def regression(samples=64, seed=0):
    """The Lightning/HF range-test data: y = x @ [1, -2, 0.5, 3] + 0.1 noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32") + 0.1 * rng.normal(size=(samples, 1))
    return x, y.astype("float32")


def finder_net(optimizer=None, dropout=0.0, seed=0):
    """Dense(8, relu) -> Dropout -> Dense(1), MSE, SGD lr 0.01 (the Lightning/HF tests' Net)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="g0"),
                              keras.layers.Dropout(dropout), keras.layers.Dense(1, name="g1")], name="net")
    model.compile(optimizer or keras.optimizers.SGD(0.01), "mse", metrics=["mae"])
    return model


def state_of(model):
    """Every variable the range test may touch: model (seed generators included), metrics, optimizer."""
    out = {v.path: np.array(ops.convert_to_numpy(v)) for v in model.variables + model.metrics_variables}
    out.update({f"optimizer/{v.name}": np.array(ops.convert_to_numpy(v)) for v in model.optimizer.variables})
    return out


def assert_same_state(a, b):
    assert len(a) == len(b)
    for (k, u), v in zip(a.items(), b.values()):  # in order (two models' seed generators differ in name)
        assert u.dtype == v.dtype and np.array_equal(u, v), k  # bit-identical


def test_lr_finder_restores_everything_and_suggests_what_the_core_suggests(tmp_path):
    from hpcallbacks import finder as F
    from hpcallbacks_keras import LRFinder

    x, y = regression()
    model = finder_net()
    before = state_of(model) if model.optimizer.built else None
    finder = LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=60, plot=tmp_path / "range.png")
    result = finder.run(model, x, y, batch_size=64)  # full batch: a smooth curve
    assert before is None  # a fresh model: run() builds the optimizer as fit would, then restores it
    after = state_of(model)
    assert iterations(model) == 0 and after["optimizer/iteration"] == 0
    assert after["optimizer/learning_rate"] == np.float32(0.01)
    assert result is finder.result and result.stopped_early and len(result.losses) < 60  # SGD diverges at large LRs
    assert 1e-2 < finder.suggestion < result.learning_rates[-1] / 2  # on the steep part of the curve
    assert min(result.losses) < result.losses[0] / 10
    assert (tmp_path / "range.png").stat().st_size > 1000
    assert result.learning_rates == tuple(F.lr_range(1e-5, 10.0, 60)(t) for t in range(len(result.losses)))
    core = F.suggest(result.learning_rates, result.losses, "steepest", 0.98, 10, 5)
    assert finder.suggestion == core.learning_rate and result.suggestion == core  # the core's rule, exactly

    reference = finder_net()  # the core's RangeTest in a plain Keras loop: train_on_batch at the test's LRs
    test = F.RangeTest(F.lr_range(1e-5, 10.0, 60))
    for t in range(60):
        reference.optimizer.learning_rate = test.lr(t)
        reference.reset_metrics()  # Keras 3.8's train_on_batch returns the running mean over calls otherwise
        if test.record(reference.train_on_batch(x, y, return_dict=True)["loss"]):
            break
    assert result.losses == pytest.approx(test.result().losses, rel=1e-6)
    assert finder.suggestion == pytest.approx(test.result().suggestion.learning_rate, rel=1e-12)

    again = state_of(model)
    finder.run(model, x, y, batch_size=64)  # a second test on the built model: the same numbers, state untouched
    assert finder.result.losses == result.losses
    assert_same_state(state_of(model), again)


def test_lr_finder_restores_adam_slots_accumulators_and_rngs_and_the_run_goes_on_as_if_untested():
    from hpcallbacks_keras import LRFinder

    x, y = regression(40)

    def trained(test):
        model = finder_net(keras.optimizers.Adam(0.01, gradient_accumulation_steps=2), dropout=0.3)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 5 micro-batches: inside an update
        if test:
            before = state_of(model)
            finder = LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=12, skip_start=2, skip_end=1)
            finder.run(model, x, y, batch_size=8)
            assert len(finder.result.losses) == 12 and finder.suggestion is not None
            assert_same_state(state_of(model), before)
            assert before["optimizer/iteration"] == 5 and np.any(before["optimizer/net_g1_kernel_gradient_accumulator"])
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return state_of(model)

    assert_same_state(trained(True), trained(False))  # dropout masks, updates, metrics: as if no test ran


def test_lr_finder_apply_sets_the_runs_lr_through_the_engine():
    from hpcallbacks import schedules as S
    from hpcallbacks_keras import LRFinder

    class Rates(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.records = []

        def on_train_batch_end(self, batch, logs=None):  # the LR of the next update (as Keras' schedules show)
            self.records.append(float(ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    x, y = regression()
    model = finder_net()
    finder = LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=40, apply=True)
    finder.run(model, x, y, batch_size=16)
    s = finder.suggestion
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == np.float32(s)
    rates = Rates()
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[CosineDecay(), finder, rates])
    np.testing.assert_allclose(rates.records, S.CosineDecay(s, decay_steps=8).curve(8, start=1), rtol=1e-6)  # from s

    model.compile(keras.optimizers.SGD(0.01), "mse")  # a new optimizer: the finder in fit applies s again
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[finder, rates])
    assert rates.records == [np.float32(s)] * 4


@pytest.mark.skipif(BACKEND == "jax", reason="the loss reads optimizer.learning_rate: JAX traces the loss with the "
                    "model's state only, so the optimizer's rate is a constant there and the loss never turns nan")
def test_lr_finder_warns_once_when_a_nan_loss_cuts_the_test_short_and_still_applies_it():
    from test_finder import assert_warned_once_cut_short

    from hpcallbacks.advice import HyperparameterWarning
    from hpcallbacks_keras import LRFinder

    x, y = regression()
    model = finder_net()

    def nan_above_1e_2(y_true, y_pred):  # the MSE, nan once the learning rate passes 1e-2
        rate = ops.cast(model.optimizer.learning_rate, "float32")
        return ops.mean(ops.square(y_true - y_pred)) + 0.0 * ops.sqrt(1e-2 - rate)

    model.compile(keras.optimizers.SGD(0.001), nan_above_1e_2)
    finder = LRFinder(min_lr=1e-4, max_lr=10.0, num_steps=30, apply=True)  # lr > 1e-2 from point 13 on
    with pytest.warns(HyperparameterWarning) as caught:
        result = finder.run(model, x, y, batch_size=64)
    assert_warned_once_cut_short(caught, result)  # after 13 of 30 points
    assert finder.suggestion <= 1e-2
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == np.float32(finder.suggestion)  # applied


@pytest.mark.parametrize("make, message", [
    (lambda F: F(min_lr=1.0, max_lr=0.1), "max_lr must be"),
    (lambda F: F(num_steps=1), "num_steps must be"),
    (lambda F: F(mode="cosine"), "mode must be one of"),
    (lambda F: F(method="valley"), "method must be one of"),
    (lambda F: F(divergence=1.0), "divergence must be"),
    (lambda F: F(beta=1.0), "beta must be"),
    (lambda F: F(skip_start=-1), "skip_start must be"),
    (lambda F: F(plot=3), "plot must be None or a file path"),
    (lambda F: F(apply="yes"), "apply must be True or False"),
])
def test_lr_finder_bad_arguments_raise_when_built(make, message):
    from hpcallbacks_keras import LRFinder

    with pytest.raises(ValueError, match=message):
        make(LRFinder)


def test_lr_finder_takes_the_torch_adapters_arguments_and_refuses_bad_runs():
    import inspect

    from hpcallbacks_keras import LRFinder

    # the Lightning/HF signature (tests/test_adapter_parity.py checks those two against each other)
    assert [(p.name, p.default) for p in inspect.signature(LRFinder).parameters.values()] == [
        ("min_lr", 1e-7), ("max_lr", 10.0), ("num_steps", 100), ("mode", "exponential"), ("method", "steepest"),
        ("beta", 0.98), ("divergence", 4.0), ("skip_start", 10), ("skip_end", 5), ("plot", None), ("apply", False)]
    x, y = regression(16)
    finder = LRFinder(num_steps=5)
    with pytest.raises(ValueError, match="model: compile the model"):
        finder.run(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), x, y)
    with pytest.raises(ValueError, match="model must be a compiled keras.Model"):
        finder.run("net", x, y)
    with pytest.raises(ValueError, match="batch_size must be"):
        finder.run(finder_net(), x, y, batch_size=0)
    scheduled = finder_net(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)))
    with pytest.raises(ValueError, match="model.optimizer: .*schedule object"):
        finder.run(scheduled, x, y)
    with pytest.raises(ValueError, match="the range test has not run.*finder.run"):
        finder_net().fit(x, y, epochs=1, verbose=0, callbacks=[LRFinder()])
    assert finder.result is None


def test_readme_keras_example_runs_on_this_backend(tmp_path, monkeypatch):
    """The README's Keras example, as written, on the backend of this run (TF here; torch and JAX in the
    subprocess legs)."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "hpcallbacks_keras" in b]
    assert blocks
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md[keras]", "exec"), {"__name__": "__readme__"})


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's persistent compilation cache: the JAX backend only")
def test_jax_persistent_cache_warns_where_the_seam_does_not_call_it_safe(tmp_path):
    """On jax 0.4.38 (the floor leg) a train step loaded from JAX's persistent compilation cache read stale
    learning rates after a resume: the fit warns once, naming the fix; on a checked jax (0.10.2) it does not."""
    import warnings

    import jax

    from hpcallbacks_keras import _engine, _seam

    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "cache"))
    _engine.Engine._cache_warned = False
    try:
        model = mlp()
        model.compile(keras.optimizers.SGD(0.1), "mse")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[CosineDecay()])
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        _engine.Engine._cache_warned = False
    notices = [w for w in caught if issubclass(w.category, hp.RunWarning) and "compilation cache" in str(w.message)]
    assert len(notices) == (0 if _seam.JAX_CACHE_SAFE else 1), [str(w.message) for w in notices]
    if notices:
        assert "JAX_COMPILATION_CACHE_DIR" in str(notices[0].message)
