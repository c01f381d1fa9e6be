"""hpcallbacks.batch: LR scaling, accumulation, batch ramp, back-off, LARS."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcallbacks.batch import (
    Accumulation,
    BatchRamp,
    RampStage,
    accumulation_steps,
    lars_trust_ratio,
    scale_learning_rate,
    scaling_warmup,
)
from hpcallbacks.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstantDecay,
    StepDecay,
    Warmup,
)


# -- scale_learning_rate / scaling_warmup ------------------------------------------------------
def test_linear_and_sqrt_rules():
    assert scale_learning_rate(0.1, 256, 8192) == pytest.approx(3.2)
    assert scale_learning_rate(0.1, 256, 64) == pytest.approx(0.025)
    assert scale_learning_rate(1e-3, 64, 256, rule="sqrt") == pytest.approx(2e-3)
    assert scale_learning_rate(0.1, 256, 256) == 0.1


@given(st.floats(1e-6, 10), st.integers(1, 10_000), st.integers(1, 10_000))
def test_scaling_is_a_ratio(lr, base, new):
    assert scale_learning_rate(lr, base, new) == pytest.approx(lr * new / base)
    assert scale_learning_rate(lr, base, new, "sqrt") == pytest.approx(lr * math.sqrt(new / base))


def test_goyal_warmup_ramps_from_unscaled_to_scaled_lr():
    lr = scale_learning_rate(0.1, 256, 8192)
    s = scaling_warmup(StepDecay(lr, step_size=300, gamma=0.1), 256, 8192, steps_per_epoch=20)
    assert isinstance(s, Warmup) and s.warmup_steps == 100  # 5 epochs x 20 updates
    assert s(0) == pytest.approx(0.1)
    assert s(50) == pytest.approx((0.1 + lr) / 2)
    assert s(100) == pytest.approx(lr)
    assert s(400) == pytest.approx(lr * 0.1)  # the decay counts from the end of the warmup


def test_no_warmup_when_not_scaling_up():
    base = Constant(0.1)
    assert scaling_warmup(base, 256, 256, steps_per_epoch=10) is base
    assert scaling_warmup(base, 256, 128, steps_per_epoch=10) is base
    assert scaling_warmup(base, 256, 1024, steps_per_epoch=10, warmup_epochs=0) is base
    s = scaling_warmup(0.4, 256, 1024, steps_per_epoch=10, rule="sqrt")
    assert s(0) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=-0.1, base_batch_size=256, batch_size=512), "lr"),
        (dict(lr=float("nan"), base_batch_size=256, batch_size=512), "lr"),
        (dict(lr=0.1, base_batch_size=0, batch_size=512), "base_batch_size"),
        (dict(lr=0.1, base_batch_size=256, batch_size=2.5), "batch_size"),
        (dict(lr=0.1, base_batch_size=256, batch_size=512, rule="cubic"), "rule"),
    ],
)
def test_scale_learning_rate_refuses(kwargs, name):
    with pytest.raises(ValueError, match=name):
        scale_learning_rate(**kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(schedule="x"), "schedule"),
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(rule="log"), "rule"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_scaling_warmup_refuses(kwargs, name):
    args = dict(schedule=Constant(0.4), base_batch_size=256, batch_size=1024, steps_per_epoch=10) | kwargs
    with pytest.raises(ValueError, match=name):
        scaling_warmup(**args)


# -- accumulation ------------------------------------------------------------------------------
@given(st.integers(1, 512), st.integers(1, 16), st.integers(1, 64), st.integers(0, 500))
def test_accumulation_product_is_the_effective_batch(per_device, world, steps, extra):
    unit = per_device * world
    exact = accumulation_steps(steps * unit, per_device, world)
    assert exact.steps == steps and exact.exact
    assert exact.steps * per_device * world == exact.effective_batch_size == steps * unit
    target = unit + extra
    near = accumulation_steps(target, per_device, world, exact=False)
    assert near.steps * per_device * world == near.effective_batch_size
    assert near.exact == (near.effective_batch_size == target)
    assert abs(near.effective_batch_size - target) <= unit / 2  # the nearest reachable


def test_accumulation_refuses_inexact_target_naming_the_nearest():
    with pytest.raises(ValueError, match=r"target_batch_size.*96 or 128"):
        accumulation_steps(100, 32)
    a = accumulation_steps(112, 32, exact=False)  # tie between 96 and 128: the smaller
    assert (a.steps, a.effective_batch_size, a.exact, a.target_batch_size) == (3, 96, False, 112)
    assert accumulation_steps(120, 32, exact=False).effective_batch_size == 128


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        ((16, 32), {}, "target_batch_size"),  # below one micro-batch
        ((64, 32), dict(world_size=4), "target_batch_size"),  # below one micro-batch per device
        ((0, 32), {}, "target_batch_size"),
        ((64, 0), {}, "per_device_batch_size"),
        ((64, 32), dict(world_size=0), "world_size"),
        ((64, 32), dict(exact="yes"), "exact"),
    ],
)
def test_accumulation_steps_refuses(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        accumulation_steps(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=0, per_device_batch_size=8), "steps"),
        (dict(steps=1, per_device_batch_size=-8), "per_device_batch_size"),
        (dict(steps=1, per_device_batch_size=8, world_size=0), "world_size"),
        (dict(steps=1, per_device_batch_size=8, target_batch_size=0), "target_batch_size"),
    ],
)
def test_accumulation_refuses(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Accumulation(**kwargs)


@given(st.integers(2, 512), st.integers(1, 32), st.integers(1, 8))
def test_back_off_keeps_the_effective_batch(per_device, steps, world):
    a = Accumulation(steps, per_device, world, target_batch_size=steps * per_device * world)
    b = a.back_off()
    assert b.effective_batch_size == a.effective_batch_size and b.exact
    assert b.per_device_batch_size <= per_device // 2 and b.steps > steps
    if per_device % 2 == 0:
        assert (b.per_device_batch_size, b.steps) == (per_device // 2, 2 * steps)


def test_back_off_to_a_given_size_and_at_the_bottom():
    a = Accumulation(1, 7)
    assert a.back_off() == Accumulation(7, 1)  # 7 is odd: 1 is the largest exact micro-batch
    assert Accumulation(2, 48).back_off(per_device_batch_size=32) == Accumulation(3, 32)
    with pytest.raises(ValueError, match="per_device_batch_size"):
        Accumulation(3, 1).back_off()
    with pytest.raises(ValueError, match="per_device_batch_size"):
        Accumulation(1, 48).back_off(per_device_batch_size=36)  # does not divide 48
    with pytest.raises(ValueError, match="per_device_batch_size"):
        Accumulation(1, 48).back_off(per_device_batch_size=48)  # does not shrink


# -- batch ramp ---------------------------------------------------------------------------------
def test_smith_ramp_replaces_decay_by_batch_growth():
    # Smith et al. 2017: decay by 5 at each stage -> batch x 5, capped; beyond the cap the LR decays
    decay = PiecewiseConstantDecay([100, 200, 300], [0.1, 0.02, 0.004, 0.0008])
    ramp = BatchRamp(decay, base_batch_size=128, max_batch_size=5000)
    assert [ramp.batch_size(t) for t in (0, 150, 250, 350)] == [128, 640, 3200, 4992]
    assert [ramp.learning_rate(t) for t in (0, 150, 250)] == pytest.approx([0.1, 0.1, 0.1])
    assert ramp.learning_rate(350) == pytest.approx(0.0008 * 4992 / 128)
    assert ramp.accumulation(250) == Accumulation(25, 128)
    assert ramp.stages(400) == (RampStage(0, 128, 1), RampStage(101, 640, 5), RampStage(201, 3200, 25),
                                RampStage(301, 4992, 39))


@given(st.integers(0, 3000), st.sampled_from([1, 2, 4]), st.integers(1, 64))
def test_ramp_keeps_the_noise_scale(step, world, max_factor):
    decay = Warmup(CosineDecay(0.4, decay_steps=2000, alpha=0.01), warmup_steps=100)
    base = 64 * world
    ramp = BatchRamp(decay, base_batch_size=base, max_batch_size=base * max_factor, per_device_batch_size=16,
                     world_size=world, base_learning_rate=0.4)
    b = ramp.batch_size(step)
    assert base <= b <= base * max_factor and b % (16 * world) == 0
    assert ramp.noise_scale(step) == pytest.approx(decay(step) / base)
    acc = ramp.accumulation(step)
    assert acc.effective_batch_size == b


def test_ramp_zero_lr_uses_the_cap():
    ramp = BatchRamp(ExponentialDecay(0.1, 10, 0.5), base_batch_size=32, max_batch_size=100)
    assert ramp.batch_size(10_000) == 96


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(schedule="cosine"), "schedule"),
        (dict(base_batch_size=0), "base_batch_size"),
        (dict(max_batch_size=64), "max_batch_size"),  # below the base
        (dict(world_size=0), "world_size"),
        (dict(world_size=3), "base_batch_size"),  # 128 not a multiple of 3
        (dict(per_device_batch_size=0), "per_device_batch_size"),
        (dict(per_device_batch_size=48), "base_batch_size"),  # 128 not a multiple of 48
        (dict(base_learning_rate=0.0), "base_learning_rate"),
        (dict(schedule=Warmup(Constant(0.1), 10)), "base_learning_rate"),  # schedule(0) == 0
    ],
)
def test_ramp_refuses(kwargs, name):
    args = dict(schedule=Constant(0.1), base_batch_size=128, max_batch_size=1024) | kwargs
    with pytest.raises(ValueError, match=name):
        BatchRamp(**args)


def test_ramp_stages_refuses_bad_total():
    with pytest.raises(ValueError, match="total_steps"):
        BatchRamp(Constant(0.1), 128, 1024).stages(0)


# -- LARS ---------------------------------------------------------------------------------------
@given(st.floats(1e-6, 1e3), st.floats(1e-6, 1e3), st.floats(1e-4, 1.0), st.floats(0, 1e-2), st.floats(1e-4, 10))
def test_lars_formula_and_clip(w, g, trust, decay, lr):
    ratio = lars_trust_ratio(w, g, trust_coefficient=trust, weight_decay=decay)
    assert ratio == pytest.approx(trust * w / (g + decay * w + 1e-8))
    clipped = lars_trust_ratio(w, g, trust_coefficient=trust, weight_decay=decay, clip=True, lr=lr)
    assert clipped == pytest.approx(min(ratio / lr, 1.0))
    assert lr * clipped <= lr * (1 + 1e-12)  # LARC never raises a layer above the global rate


def test_lars_zero_norms_keep_the_global_rate():
    assert lars_trust_ratio(0.0, 1.0) == 1.0
    assert lars_trust_ratio(1.0, 0.0) == 1.0
    assert lars_trust_ratio(0.0, 0.0, clip=True, lr=0.1) == 1.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(w_norm=-1.0), "w_norm"),
        (dict(g_norm=float("inf")), "g_norm"),
        (dict(trust_coefficient=0.0), "trust_coefficient"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(eps=-1.0), "eps"),
        (dict(clip=1), "clip"),
        (dict(clip=True), "lr"),
        (dict(clip=True, lr=0.0), "lr"),
        (dict(lr=-0.1), "lr"),
    ],
)
def test_lars_refuses(kwargs, name):
    with pytest.raises(ValueError, match=name):
        lars_trust_ratio(**(dict(w_norm=1.0, g_norm=1.0) | kwargs))


# -- config round-trip -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        Accumulation(4, 32, 2, target_batch_size=256),
        accumulation_steps(100, 32, exact=False),
        BatchRamp(PiecewiseConstantDecay([10], [0.1, 0.01]), 128, 1024),
        BatchRamp(Warmup(Constant(0.1), 5), 64, 512, per_device_batch_size=16, world_size=2, base_learning_rate=0.1),
    ],
)
def test_config_round_trip(value):
    config = json.loads(json.dumps(value.get_config()))
    assert type(value).from_config(config) == value


def test_from_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match="config"):
        Accumulation.from_config({"steps": 1, "per_device_batch_size": 8, "bogus": 1})


# --------------------------------------------------------------------------------------------
# what the adapters' GradientAccumulation / ScaleLearningRate / BatchRamp callbacks share
def test_scaling_options_and_factor():
    from hpcallbacks.batch import scaling_factor, scaling_options

    assert scaling_options(256, "linear", 2) == (256, "linear", 2.0)
    for args, name in [((0, "linear", 1), "base_batch_size"), ((256, "log", 1), "rule"),
                       ((256, "linear", -1), "warmup_epochs")]:
        with pytest.raises(ValueError, match=f"{name} must be"):
            scaling_options(*args)
    factor = scaling_factor(256, 1024, "linear", 1, 10)
    assert factor == scaling_warmup(Constant(4.0), 256, 1024, 10, 1, "linear")
    assert factor(0) == pytest.approx(1.0) and factor(10) == pytest.approx(4.0)
    assert scaling_factor(256, 128, "linear", 5, None) == Constant(0.5)  # no warmup needed: no epoch length needed
    with pytest.raises(ValueError, match=r"updates per epoch are unknown \(an IterableDataset\): pass warmup_epochs=0"):
        scaling_factor(256, 1024, "linear", 5, None, "an IterableDataset")


def test_accumulation_messages():
    from hpcallbacks.batch import accumulation_for, inexact_warning, resume_warning

    acc = accumulation_for(256, 32, 2, True, "batch 32 and world size 2")
    assert acc == accumulation_steps(256, 32, 2) and inexact_warning(acc) is None
    with pytest.raises(ValueError, match=r"^GradientAccumulation: with batch 32 and world size 2: target_batch_size "
                                         r"must be a multiple"):
        accumulation_for(100, 32, 2, True, "batch 32 and world size 2")
    near = accumulation_for(100, 32, 1, False, "-")
    assert inexact_warning(near) == ("GradientAccumulation: target_batch_size=100 is not reachable; using 3 "
                                     "micro-batches per update, an effective batch of 96")
    assert "not reachable with per-device batch 32 x world size 1;" in inexact_warning(
        near, "per-device batch 32 x world size 1")
    assert resume_warning(None, acc) is None and resume_warning(acc.get_config(), acc) is None
    assert resume_warning(near.get_config(), acc) == (
        f"GradientAccumulation: the checkpoint's accumulation {near.get_config()} differs from this run's "
        f"{acc.get_config()}: the effective batch changed on resume")


def test_ramp_checks_the_run_and_chooses_the_epochs_batch(caplog):
    ramp = BatchRamp(PiecewiseConstantDecay([100], [0.1, 0.02]), base_batch_size=128, max_batch_size=1024,
                     per_device_batch_size=64, world_size=2)
    ramp.check_run(64, 2)
    with pytest.raises(ValueError, match=r"world_size is 2 but the Trainer runs 1 processes"):
        ramp.check_run(128, 1)
    with pytest.raises(ValueError, match=r"is 128 but the train dataloader gives 32 x 2: build BatchRamp\(\.\.\., "
                                         r"per_device_batch_size=32, world_size=2\) or change the batch_size$"):
        ramp.check_run(32, 2)
    with pytest.raises(ValueError, match=r"but the Trainer's batch is 32 x 2: .* or change per_device_train_batch"):
        ramp.check_run(32, 2, "the Trainer's batch is", "per_device_train_batch_size")
    with caplog.at_level("INFO", logger="hpcallbacks"):
        assert ramp.epoch_batch(0, 128, 0) == 128 and not caplog.records
        assert ramp.epoch_batch(150, 128, 3) == 640
    assert "BatchRamp: epoch 3, progress 150.0: batch 128 -> 640" in caplog.text
