"""hpcallbacks.gan: instance noise, label smoothing and label flipping as numbers."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcallbacks.gan import InstanceNoise, LabelFlip, LabelSmoothing, flip_uniform
from hpcallbacks.schedules import (
    SCHEDULES,
    Constant,
    CosineDecay,
    Cyclic,
    ExponentialDecay,
    NoisyLinearCosineDecay,
    PolynomialDecay,
)

steps = st.integers(0, 100_000)
labels = st.lists(st.floats(0.0, 1.0), max_size=32)
schedules = st.sampled_from([
    PolynomialDecay(0.1, decay_steps=5000, end_learning_rate=0.0),
    CosineDecay(1.0, decay_steps=3000),
    NoisyLinearCosineDecay(0.2, decay_steps=1000, seed=4),
    Cyclic(0.0, 2.0, step_size_up=700),
    ExponentialDecay(0.5, 100, 0.9),
    Constant(0.0),
])


@given(schedules, steps)
def test_noise_std_is_never_negative(schedule, step):
    assert InstanceNoise(schedule).std(step) >= 0


def test_noise_anneals_with_any_schedule():
    noise = InstanceNoise(PolynomialDecay(0.1, decay_steps=100, end_learning_rate=0.0))
    assert [noise.std(t) for t in (0, 50, 100, 1000)] == pytest.approx([0.1, 0.05, 0.0, 0.0])
    assert InstanceNoise(0.05).std(10) == 0.05


@given(schedules, steps, labels, st.floats(0.51, 1.0), st.floats(0.0, 0.49))
def test_smoothed_targets_lie_in_unit_interval(schedule, step, ys, real, fake):
    for smoothing in (LabelSmoothing(real, fake), LabelSmoothing(real, fake, schedule=schedule)):
        out = smoothing.targets(step, ys)
        assert len(out) == len(ys) and all(0.0 <= y <= 1.0 for y in out)
        assert smoothing.fake_target(step) < smoothing.real_target(step)


def test_one_and_two_sided_smoothing():
    one = LabelSmoothing()
    assert one.targets(0, [1.0, 0.0, 0.5]) == pytest.approx([0.9, 0.0, 0.45])
    assert not one.two_sided
    two = LabelSmoothing(real=0.9, fake=0.1)
    assert two.targets(0, [1.0, 0.0]) == pytest.approx([0.9, 0.1]) and two.two_sided


def test_scheduled_smoothing_fades_to_hard_labels():
    s = LabelSmoothing(0.8, 0.2, schedule=PolynomialDecay(1.0, decay_steps=100, end_learning_rate=0.0))
    assert s.targets(0, [1.0, 0.0]) == pytest.approx([0.8, 0.2])
    assert s.targets(50, [1.0, 0.0]) == pytest.approx([0.9, 0.1])
    assert s.targets(100, [1.0, 0.0]) == pytest.approx([1.0, 0.0])
    assert LabelSmoothing(schedule=Constant(3.0)).strength(0) == 1.0  # clamped


@given(schedules, steps, st.integers(0, 2**32 - 1))
def test_flip_probability_in_unit_interval(schedule, step, seed):
    assert 0.0 <= LabelFlip(schedule, seed).probability(step) <= 1.0


@given(steps, labels, st.integers(0, 2**32 - 1))
def test_flips_are_deterministic_and_only_invert(step, ys, seed):
    flip = LabelFlip(0.3, seed)
    out = flip.targets(step, ys)
    assert out == LabelFlip(0.3, seed).targets(step, ys)  # same (seed, step, index): same flips
    for y, z, f in zip(ys, out, flip.flips(step, len(ys)), strict=True):
        assert z == (1.0 - y if f else y) and 0.0 <= z <= 1.0


def test_flip_rate_follows_the_probability():
    flip = LabelFlip(PolynomialDecay(0.2, decay_steps=1000, end_learning_rate=0.0), seed=7)
    early = sum(sum(flip.flips(t, 100)) for t in range(50)) / 5000
    assert early == pytest.approx(0.2 * 0.975, abs=0.02)
    assert not any(flip.flips(1000, 1000))
    assert all(LabelFlip(1.0).flips(3, 50))
    assert LabelFlip(0.5, seed=7).flips(5, 64) != LabelFlip(0.5, seed=8).flips(5, 64)  # the seed matters
    assert flip_uniform(7, 5, 3) != flip_uniform(7, 5, 4)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: InstanceNoise("0.1"), "schedule"),
        (lambda: InstanceNoise(Constant(0.1)).std(-1), "step"),
        (lambda: LabelSmoothing(real=0.5), "real"),
        (lambda: LabelSmoothing(real=1.1), "real"),
        (lambda: LabelSmoothing(fake=0.5), "fake"),
        (lambda: LabelSmoothing(fake=-0.1), "fake"),
        (lambda: LabelSmoothing(schedule="linear"), "schedule"),
        (lambda: LabelSmoothing().targets(0, [1.5]), r"labels\[0\]"),
        (lambda: LabelSmoothing().targets(0, 1.0), "labels"),
        (lambda: LabelSmoothing().targets(-1, [1.0]), "step"),
        (lambda: LabelFlip(None), "schedule"),
        (lambda: LabelFlip(0.1, seed=-1), "seed"),
        (lambda: LabelFlip(0.1, seed=1.5), "seed"),
        (lambda: LabelFlip(0.1).flips(-1, 3), "step"),
        (lambda: LabelFlip(0.1).flips(0, -3), "n"),
        (lambda: LabelFlip(0.1).targets(0, [0.0, 2.0]), r"labels\[1\]"),
        (lambda: flip_uniform(-1, 0, 0), "seed"),
        (lambda: flip_uniform(0, -1, 0), "step"),
        (lambda: flip_uniform(0, 0, 0.5), "index"),
    ],
)
def test_bad_input_is_refused(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(
    "value",
    [
        InstanceNoise(PolynomialDecay(0.1, decay_steps=100, end_learning_rate=0.0)),
        InstanceNoise(0.05),
        LabelSmoothing(),
        LabelSmoothing(0.8, 0.1, schedule=CosineDecay(1.0, 100)),
        LabelFlip(ExponentialDecay(0.1, 10, 0.5), seed=3),
    ],
)
def test_config_round_trip(value):
    config = json.loads(json.dumps(value.get_config()))
    assert type(value).from_config(config) == value
    assert "InstanceNoise" not in SCHEDULES  # plans are not schedules
