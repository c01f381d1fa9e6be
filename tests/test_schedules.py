"""Properties, configuration round-trips and bad input of every core schedule."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hpcallbacks.schedules as S

EXAMPLES = 1000
lr = st.floats(0.0, 10.0)
pos_lr = st.floats(1e-8, 10.0)
length = st.floats(1e-3, 1e6)  # any positive length, a fraction of an update included (Keras: > 0)
ints = st.integers(1, 10**6)
unit = st.floats(0.0, 1.0)
decay = st.floats(1e-6, 1.0)
factor = st.one_of(decay, st.floats(1.0, 4.0))  # decay_rate / gamma / m_mul: growth (> 1) included
steps = st.lists(st.integers(0, 10**7), min_size=1, max_size=12)


@st.composite
def increasing_ints(draw, min_size=1, max_size=5, hi=10**6):
    xs = draw(st.lists(st.integers(0, hi), min_size=min_size, max_size=max_size, unique=True))
    return sorted(xs)


@st.composite
def piecewise(draw):
    b = draw(increasing_ints())
    v = draw(st.lists(lr, min_size=len(b) + 1, max_size=len(b) + 1))
    return S.PiecewiseConstantDecay(b, v, convention=draw(st.sampled_from(["keras", "torch"])))


@st.composite
def one_cycle(draw):
    total = draw(st.integers(100, 10**6))
    pct = draw(st.floats(0.05, 0.45))
    return S.OneCycle(draw(pos_lr), total, pct_start=pct, anneal_strategy=draw(st.sampled_from(["cos", "linear"])),
                      div_factor=draw(st.floats(1.0, 1e4)), final_div_factor=draw(st.floats(1.0, 1e5)),
                      three_phase=draw(st.booleans()))


@st.composite
def wsd(draw):
    return S.WarmupStableDecay(draw(lr), draw(st.integers(0, 10**5)), draw(st.integers(0, 10**5)),
                               draw(st.integers(0, 10**5)), min_lr_ratio=draw(unit),
                               warmup_type=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
                               decay_type=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
                               num_cycles=draw(st.floats(0.1, 5.0)))


@st.composite
def cyclic(draw):
    base, top = draw(lr), draw(lr)
    mode, gamma = draw(st.sampled_from(["triangular", "triangular2", "exp_range"])), draw(factor)
    if mode == "exp_range" and gamma > 1:
        base, top = sorted((base, top))  # a growing height below base_lr is refused
    return S.Cyclic(base, top, step_size_up=draw(ints), step_size_down=draw(st.one_of(st.none(), ints)), mode=mode,
                    gamma=gamma)


inner = st.one_of(
    st.builds(S.Constant, lr),
    st.builds(S.CosineDecay, lr, length, alpha=unit),
    st.builds(S.ExponentialDecay, lr, length, factor),
)

STRATEGIES = {
    "Constant": st.builds(S.Constant, lr),
    "ExponentialDecay": st.builds(S.ExponentialDecay, lr, length, factor, staircase=st.booleans()),
    "PiecewiseConstantDecay": piecewise(),
    "PolynomialDecay": st.builds(S.PolynomialDecay, lr, length, end_learning_rate=lr,
                                 power=st.floats(0.01, 10.0), cycle=st.booleans()),
    "InverseTimeDecay": st.builds(S.InverseTimeDecay, lr, length, st.floats(1e-6, 1e3), staircase=st.booleans()),
    "CosineDecay": st.one_of(
        st.builds(S.CosineDecay, lr, length, alpha=unit),
        st.builds(S.CosineDecay, lr, length, alpha=unit, warmup_target=lr,
                  warmup_steps=st.one_of(st.just(0.0), length))),
    "CosineRestart": st.builds(S.CosineRestart, lr, length, t_mul=st.floats(1.0, 10.0), m_mul=st.floats(0.0, 4.0),
                               alpha=unit),
    "LinearCosineDecay": st.builds(S.LinearCosineDecay, lr, length, num_periods=st.floats(0.0, 10.0),
                                   alpha=st.floats(0.0, 10.0), beta=st.floats(0.0, 10.0)),
    "NoisyLinearCosineDecay": st.builds(S.NoisyLinearCosineDecay, lr, length, initial_variance=st.floats(0.0, 10.0),
                                        variance_decay=st.floats(-2.0, 2.0), num_periods=st.floats(0.0, 10.0),
                                        alpha=st.floats(0.0, 10.0), beta=st.floats(0.0, 10.0),
                                        seed=st.integers(0, 2**32 - 1)),
    "Warmup": st.one_of(
        st.builds(S.Warmup, inner, st.one_of(st.just(0.0), length), start_value=lr),
        st.builds(S.Warmup, inner, length, start_value=pos_lr, mode=st.just("exponential"))),
    "StepDecay": st.builds(S.StepDecay, lr, ints, factor),
    # torch's MultiStepLR: milestones in any order, a repeated one counts twice
    "MultiStepDecay": st.builds(S.MultiStepDecay, lr, st.lists(st.integers(0, 10**6), min_size=1, max_size=6), factor),
    "OneCycle": one_cycle(),
    "Cyclic": cyclic(),
    "SlantedTriangular": st.builds(S.SlantedTriangular, lr, st.integers(10, 10**6), cut_frac=st.floats(0.1, 0.9),
                                   ratio=st.floats(1.0, 100.0)),
    "InverseSqrt": st.builds(S.InverseSqrt, lr, st.integers(0, 10**5), st.one_of(st.none(), ints)),
    "WarmupStableDecay": wsd(),
    "Join": st.builds(lambda a, b, c, x: S.Join([a, b, c], sorted({x, x + 17})), inner, inner, inner,
                      st.integers(0, 10**6)),
}

# Families that never increase with the step, for every configuration the strategy draws.
MONOTONE_DECREASING = {"Constant", "InverseTimeDecay"}


def grows(schedule) -> bool:
    """Whether ``schedule`` grows without bound (so a float overflow at a late step is expected)."""
    if isinstance(schedule, S.ExponentialDecay):
        return schedule.decay_rate > 1
    if isinstance(schedule, S.CosineRestart):
        return schedule.m_mul > 1
    if isinstance(schedule, (S.StepDecay, S.MultiStepDecay)):
        return schedule.gamma > 1
    if isinstance(schedule, S.Cyclic):
        return schedule.mode == "exp_range" and schedule.gamma > 1
    if isinstance(schedule, S.NoisyLinearCosineDecay):
        return schedule.variance_decay < 0
    if isinstance(schedule, S.Warmup):
        return grows(schedule.schedule)
    if isinstance(schedule, S.Join):
        return any(grows(s) for s in schedule.schedules)
    return False


def value_or_overflow(schedule, t):
    """``schedule(t)``, or None where a growing schedule refuses an update that overflows a float."""
    try:
        return schedule(t)
    except ValueError as e:
        assert grows(schedule) and "overflows" in str(e), (schedule, t, e)
        return None


def test_every_schedule_has_a_strategy():
    assert set(STRATEGIES) == set(S.SCHEDULES), set(S.SCHEDULES) ^ set(STRATEGIES)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_finite_non_negative_and_round_trip(name):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
    @given(STRATEGIES[name], steps)
    def check(schedule, ts):
        values = [value_or_overflow(schedule, t) for t in ts]
        # never NaN, never inf, never negative: a growing schedule raises rather than overflow
        assert all(v is None or (math.isfinite(v) and v >= 0.0) for v in values), (schedule, ts, values)
        config = json.loads(json.dumps(S.serialize(schedule)))
        again = S.deserialize(config)
        assert [value_or_overflow(again, t) for t in ts] == values
        assert again == schedule
        assert S.SCHEDULES[name].from_config(schedule.get_config()) == schedule
        monotone = "decreasing" if name in MONOTONE_DECREASING else getattr(schedule, "monotone", None)
        ordered = [value_or_overflow(schedule, t) for t in sorted(ts)]
        if monotone == "decreasing":
            assert None not in ordered, (schedule, sorted(ts), ordered)
            assert all(b <= a * (1 + 1e-12) for a, b in zip(ordered, ordered[1:])), (schedule, sorted(ts), ordered)
        elif monotone == "increasing":
            finite = [v for v in ordered if v is not None]
            assert ordered == finite + [None] * (len(ordered) - len(finite)), "an overflow before a finite value"
            assert all(b >= a * (1 - 1e-12) for a, b in zip(finite, finite[1:])), (schedule, sorted(ts), finite)

    check()


GROWTH_FINITE_TO_1E7 = {
    # growth slow enough that every update up to 10**7 stays finite
    "ExponentialDecay": st.builds(S.ExponentialDecay, lr, st.floats(1e4, 1e6), st.floats(1.0, 2.0),
                                  staircase=st.booleans()),
    "CosineRestart": st.builds(S.CosineRestart, lr, st.floats(1e5, 1e6), t_mul=st.floats(1.0, 10.0),
                               m_mul=st.floats(1.0, 2.0), alpha=unit),
    "StepDecay": st.builds(S.StepDecay, lr, st.integers(10**4, 10**6), st.floats(1.0, 2.0)),
    "MultiStepDecay": st.builds(S.MultiStepDecay, lr, st.lists(st.integers(0, 10**7), min_size=1, max_size=6),
                                st.floats(1.0, 10.0)),
    "Cyclic": st.builds(S.Cyclic, lr, st.floats(10.0, 20.0), step_size_up=ints, mode=st.just("exp_range"),
                        gamma=st.floats(1.0, 1.00001)),
}


@pytest.mark.parametrize("name", sorted(GROWTH_FINITE_TO_1E7))
def test_growth_is_finite_and_non_decreasing_over_the_tested_range(name):
    @settings(max_examples=EXAMPLES // 2, deadline=None, derandomize=True)
    @given(GROWTH_FINITE_TO_1E7[name], steps)
    def check(schedule, ts):
        values = [schedule(t) for t in sorted(ts)]
        assert all(math.isfinite(v) and v >= 0.0 for v in values), (schedule, ts, values)
        if getattr(schedule, "monotone", None) == "increasing":
            assert all(b >= a * (1 - 1e-12) for a, b in zip(values, values[1:])), (schedule, sorted(ts), values)

    check()


@pytest.mark.parametrize("schedule,argument", [
    (S.ExponentialDecay(0.1, decay_steps=1, decay_rate=2.0), "decay_rate=2.0"),
    (S.ExponentialDecay(0.1, decay_steps=1, decay_rate=2.0, staircase=True), "decay_rate=2.0"),
    (S.CosineRestart(0.1, first_decay_steps=1, t_mul=1.0, m_mul=4.0), "m_mul=4.0"),
    (S.CosineRestart(0.1, first_decay_steps=1, t_mul=1.0, m_mul=4.0, alpha=0.5), "m_mul=4.0"),
    (S.StepDecay(0.1, step_size=1, gamma=2.0), "gamma=2.0"),
    (S.Cyclic(0.1, 1.0, step_size_up=3, mode="exp_range", gamma=2.0), "gamma=2.0"),
    (S.Join([S.Constant(1.0), S.ExponentialDecay(0.1, 1, 2.0)], boundaries=[5]), "decay_rate=2.0"),
])
def test_overflow_raises_a_clear_error_never_inf_or_nan(schedule, argument):
    # the step 1e7 of the task: 2 ** 1e7 is far past the largest float
    assert math.isfinite(schedule(100)) and schedule(100) >= 0
    with pytest.raises(ValueError, match="overflows") as info:
        schedule(10**7 + 1)
    grower = schedule.schedules[-1] if isinstance(schedule, S.Join) else schedule
    assert argument in str(info.value) and type(grower).__name__ in str(info.value), str(info.value)


def test_overflow_of_a_zero_learning_rate_is_zero():
    assert S.ExponentialDecay(0.0, 1, 2.0)(10**7) == 0.0
    assert S.CosineRestart(0.0, 1, t_mul=1.0, m_mul=4.0)(10**7) == 0.0
    assert S.StepDecay(0.0, 1, 2.0)(10**7) == 0.0
    assert S.Cyclic(0.0, 0.0, 2, mode="exp_range", gamma=2.0)(10**7 + 1) == 0.0


#: Values the references accept that the core refused before; each must build and give finite
#: values >= 0 (the numbers are compared with the references in test_schedules_reference.py).
WIDENED = [
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=2.0)),  # Keras, TF1, optax
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=0.5, decay_rate=0.9)),  # Keras: > 0
    (S.PolynomialDecay, dict(initial_learning_rate=0.1, decay_steps=0.5)),
    (S.InverseTimeDecay, dict(initial_learning_rate=0.1, decay_steps=0.5, decay_rate=1.0)),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=0.5)),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, warmup_target=1.0)),  # Keras: warmup_steps=0
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=10, m_mul=4.0)),  # Keras, TF1, optax
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=0.5)),
    (S.LinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, alpha=2.0, beta=1.5)),  # TF1
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, variance_decay=-0.5, beta=2.0)),
    (S.Warmup, dict(schedule=S.Constant(1.0), warmup_steps=0)),  # HF num_warmup_steps=0
    (S.StepDecay, dict(initial_learning_rate=0.1, step_size=2, gamma=2.0)),  # torch StepLR
    (S.MultiStepDecay, dict(initial_learning_rate=0.1, milestones=[5, 3, 5], gamma=2.0)),  # torch MultiStepLR
    (S.Cyclic, dict(base_lr=0.1, max_lr=1.0, mode="exp_range", gamma=1.001)),  # torch CyclicLR
    (S.ReduceOnPlateau, dict(factor=0.0, min_lr=1e-4)),  # torch, Keras: factor < 1
]


@pytest.mark.parametrize("cls,kwargs", WIDENED, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(WIDENED)])
def test_what_a_reference_accepts_is_accepted(cls, kwargs):
    made = cls(**kwargs)
    if isinstance(made, S.Schedule):
        values = made.curve(50)
        assert all(math.isfinite(v) and v >= 0 for v in values), values
        assert S.deserialize(json.loads(json.dumps(S.serialize(made)))) == made


def test_multistep_milestones_are_torchs_counter():
    s = S.MultiStepDecay(1.0, milestones=[5, 2, 5], gamma=0.5)
    assert s.milestones == (2, 5, 5)
    assert s.curve(7) == [1.0, 1.0, 0.5, 0.5, 0.5, 0.125, 0.125]
    assert s == S.MultiStepDecay(1.0, milestones=[2, 5, 5], gamma=0.5)


def test_keras_warmup_target_without_warmup_steps_starts_at_the_target():
    s = S.CosineDecay(0.0, decay_steps=100, warmup_target=1.0)
    assert s(0) == 1.0 and s(100) == 0.0


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.builds(S.CosineDecay, lr, length, alpha=unit), st.integers(0, 10**7), st.integers(0, 10**7))
def test_cosine_decay_is_monotone_and_holds(schedule, a, b):
    a, b = sorted((a, b))
    assert schedule(b) <= schedule(a) * (1 + 1e-12)
    assert schedule(10**7 + 1) == schedule(schedule.decay_steps)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(st.builds(S.PolynomialDecay, lr, length, end_learning_rate=lr, power=st.floats(0.01, 10.0)),
       st.integers(0, 10**7), st.integers(0, 10**7))
def test_polynomial_is_monotone_towards_its_end(schedule, a, b):
    a, b = sorted((a, b))
    if schedule.end_learning_rate <= schedule.initial_learning_rate:
        assert schedule(b) <= schedule(a) * (1 + 1e-12) + 1e-300
    else:
        assert schedule(b) >= schedule(a) * (1 - 1e-12)


def test_finite_schedules_hold_their_last_value():
    finite = [
        S.CosineDecay(1.0, 100, alpha=0.1),
        S.PolynomialDecay(1.0, 100, end_learning_rate=0.01),
        S.LinearCosineDecay(1.0, 100),
        S.OneCycle(1.0, 100),
        S.SlantedTriangular(1.0, 100),
        S.WarmupStableDecay(1.0, 10, 10, 10, min_lr_ratio=0.1),
        S.PiecewiseConstantDecay([10], [1.0, 0.1]),
    ]
    for s in finite:
        assert s(10**6) == s(10**7) == s(10**4), s


def test_repr_reads_like_the_constructor():
    s = S.CosineRestart(0.001, first_decay_steps=500)
    assert repr(s) == ("CosineRestart(initial_learning_rate=0.001, first_decay_steps=500.0, t_mul=2.0, m_mul=1.0, "
                       "alpha=0.0)")
    assert eval(repr(s), vars(S)) == s


def test_schedules_are_immutable():
    s = S.ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(AttributeError):
        s.decay_rate = 0.9  # type: ignore[misc]


def test_join_counts_steps_from_each_boundary_like_optax():
    j = S.Join([S.Constant(1.0), S.PolynomialDecay(1.0, 4, end_learning_rate=0.0)], boundaries=[3])
    assert j.curve(8) == [1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_warmup_expresses_keras_warmup_target():
    keras_style = S.CosineDecay(0.01, 100, alpha=0.1, warmup_target=0.5, warmup_steps=20)
    composed = S.Warmup(S.CosineDecay(0.5, 100, alpha=0.1), 20, start_value=0.01)
    assert keras_style.curve(200) == pytest.approx(composed.curve(200), rel=1e-12)


def test_exponential_warmup_reaches_its_target():
    w = S.Warmup(S.Constant(1.0), 10, start_value=1e-3, mode="exponential")
    assert w(0) == pytest.approx(1e-3) and w(5) == pytest.approx(1e-3**0.5) and w(10) == 1.0


# -------------------------------------------------------------------------- ReduceOnPlateau
def keras_plateau_trace(metrics, **kwargs):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", verbose=0, **kwargs)
    cb.set_model(model)
    cb.on_train_begin()
    out = []
    for epoch, m in enumerate(metrics):
        cb.on_epoch_end(epoch, {"val_loss": m})
        out.append(float(model.optimizer.learning_rate))
    return out


def torch_plateau_trace(metrics, **kwargs):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


PLATEAU_METRICS = [
    [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7005, 0.7, 0.7, 0.7, 0.7, 0.7],
    [5.0, 4.0, 3.0, 3.0, 3.0, 2.9999, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0],
]


@pytest.mark.parametrize("metrics", PLATEAU_METRICS)
@pytest.mark.parametrize("patience,cooldown,min_lr", [(2, 0, 0.0), (1, 2, 0.0), (0, 1, 0.05), (3, 0, 0.2)])
def test_plateau_matches_keras_and_torch(metrics, patience, cooldown, min_lr):
    ours_k = S.ReduceOnPlateau(factor=0.5, patience=patience, cooldown=cooldown, min_lr=min_lr, min_delta=1e-3)
    got = []
    for m in metrics:
        ours_k.update(m)
        got.append(ours_k.apply(1.0))
    ref = keras_plateau_trace(metrics, factor=0.5, patience=patience, cooldown=cooldown, min_lr=min_lr,
                              min_delta=1e-3)
    assert got == pytest.approx(ref, rel=1e-6)

    ours_t = S.ReduceOnPlateau(factor=0.5, patience=patience, cooldown=cooldown, min_lr=min_lr, min_delta=1e-3,
                               convention="torch")
    got = []
    for m in metrics:
        ours_t.update(m)
        got.append(ours_t.apply(1.0))
    ref = torch_plateau_trace(metrics, factor=0.5, patience=patience, cooldown=cooldown, min_lr=min_lr,
                              threshold=1e-3)
    assert got == pytest.approx(ref, rel=1e-12)


def test_plateau_state_round_trip():
    p = S.ReduceOnPlateau(factor=0.5, patience=1, cooldown=1)
    for m in (1.0, 1.0, 1.0, 0.5):
        p.update(m)
    q = S.ReduceOnPlateau.from_config(json.loads(json.dumps(p.get_config())))
    q.load_state_dict(json.loads(json.dumps(p.state_dict())))
    assert [p.update(m) for m in (0.6, 0.6, 0.6)] == [q.update(m) for m in (0.6, 0.6, 0.6)]


# ------------------------------------------------------------------------------- bad input
BAD = [
    (S.Constant, dict(value=-1.0), "value"),
    (S.Constant, dict(value=float("nan")), "value"),
    (S.Constant, dict(value="0.1"), "value"),
    (S.ExponentialDecay, dict(initial_learning_rate=-0.1, decay_steps=10, decay_rate=0.5), "initial_learning_rate"),
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=0, decay_rate=0.5), "decay_steps"),
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.0), "decay_rate"),
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=-0.5), "decay_rate"),
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=float("inf")), "decay_rate"),
    (S.ExponentialDecay, dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase="yes"),
     "staircase"),
    (S.ExponentialDecay, dict(initial_learning_rate=True, decay_steps=10, decay_rate=0.5), "initial_learning_rate"),
    (S.PiecewiseConstantDecay, dict(boundaries=[10, 5], values=[1, 2, 3]), "boundaries"),
    (S.PiecewiseConstantDecay, dict(boundaries=[10, 10], values=[1, 2, 3]), "boundaries"),
    (S.PiecewiseConstantDecay, dict(boundaries=[10], values=[1, 2, 3]), "values"),
    (S.PiecewiseConstantDecay, dict(boundaries=[], values=[1]), "boundaries"),
    (S.PiecewiseConstantDecay, dict(boundaries=[10], values=[1, float("inf")]), "values"),
    (S.PiecewiseConstantDecay, dict(boundaries=[10], values=[1, 2], convention="tf"), "convention"),
    (S.PolynomialDecay, dict(initial_learning_rate=0.1, decay_steps=-5), "decay_steps"),
    (S.PolynomialDecay, dict(initial_learning_rate=0.1, decay_steps=5, end_learning_rate=-1), "end_learning_rate"),
    (S.PolynomialDecay, dict(initial_learning_rate=0.1, decay_steps=5, power=0), "power"),
    (S.PolynomialDecay, dict(initial_learning_rate=0.1, decay_steps=5, cycle=1), "cycle"),
    (S.InverseTimeDecay, dict(initial_learning_rate=0.1, decay_steps=5, decay_rate=0), "decay_rate"),
    (S.InverseTimeDecay, dict(initial_learning_rate=0.1, decay_steps=float("nan"), decay_rate=1), "decay_steps"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, alpha=1.5), "alpha"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, alpha=-0.1), "alpha"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, warmup_target=-1, warmup_steps=5),
     "warmup_target"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, warmup_target=1.0, warmup_steps=float("nan")),
     "warmup_steps"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=100, warmup_steps=-1), "warmup_steps"),
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=0), "first_decay_steps"),
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=10, t_mul=0.5), "t_mul"),
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=10, m_mul=-0.5), "m_mul"),
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=10, m_mul=float("inf")), "m_mul"),
    (S.CosineRestart, dict(initial_learning_rate=0.1, first_decay_steps=10, alpha=2.0), "alpha"),
    (S.LinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, num_periods=-1), "num_periods"),
    (S.LinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, beta=-0.1), "beta"),
    (S.LinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, alpha=-0.1), "alpha"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, initial_variance=-1),
     "initial_variance"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, variance_decay=float("inf")),
     "variance_decay"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, seed=-1), "seed"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, seed=1.5), "seed"),
    (S.Warmup, dict(schedule="cosine", warmup_steps=10), "schedule"),
    (S.Warmup, dict(schedule=S.Constant(1.0), warmup_steps=-1), "warmup_steps"),
    (S.Warmup, dict(schedule=S.Constant(1.0), warmup_steps=5, start_value=-1), "start_value"),
    (S.Warmup, dict(schedule=S.Constant(1.0), warmup_steps=5, mode="cubic"), "mode"),
    (S.Warmup, dict(schedule=S.Constant(1.0), warmup_steps=5, mode="exponential"), "start_value"),
    (S.StepDecay, dict(initial_learning_rate=0.1, step_size=0), "step_size"),
    (S.StepDecay, dict(initial_learning_rate=0.1, step_size=2.5), "step_size"),
    (S.StepDecay, dict(initial_learning_rate=0.1, step_size=2, gamma=0), "gamma"),
    (S.MultiStepDecay, dict(initial_learning_rate=0.1, milestones=[5, -3]), "milestones"),
    (S.MultiStepDecay, dict(initial_learning_rate=0.1, milestones=[]), "milestones"),
    (S.MultiStepDecay, dict(initial_learning_rate=0.1, milestones=[3], gamma=-2.0), "gamma"),
    (S.StepDecay, dict(initial_learning_rate=0.1, step_size=2, gamma=float("nan")), "gamma"),
    (S.OneCycle, dict(max_lr=-1, total_steps=100), "max_lr"),
    (S.OneCycle, dict(max_lr=1, total_steps=1), "total_steps"),
    (S.OneCycle, dict(max_lr=1, total_steps=100, pct_start=1.0), "pct_start"),
    (S.OneCycle, dict(max_lr=1, total_steps=10, pct_start=0.05), "pct_start"),
    (S.OneCycle, dict(max_lr=1, total_steps=100, anneal_strategy="exp"), "anneal_strategy"),
    (S.OneCycle, dict(max_lr=1, total_steps=100, div_factor=0), "div_factor"),
    (S.OneCycle, dict(max_lr=1, total_steps=100, final_div_factor=-1), "final_div_factor"),
    (S.OneCycle, dict(max_lr=1, total_steps=100, three_phase=None), "three_phase"),
    (S.Cyclic, dict(base_lr=-0.1, max_lr=1), "base_lr"),
    (S.Cyclic, dict(base_lr=0.1, max_lr=1, step_size_up=0), "step_size_up"),
    (S.Cyclic, dict(base_lr=0.1, max_lr=1, step_size_down=-3), "step_size_down"),
    (S.Cyclic, dict(base_lr=0.1, max_lr=1, mode="sine"), "mode"),
    (S.Cyclic, dict(base_lr=0.1, max_lr=1, gamma=0), "gamma"),
    (S.Cyclic, dict(base_lr=1.0, max_lr=0.1, mode="exp_range", gamma=1.5), "gamma"),
    (S.SlantedTriangular, dict(max_lr=0.1, total_steps=0), "total_steps"),
    (S.SlantedTriangular, dict(max_lr=0.1, total_steps=100, cut_frac=1.0), "cut_frac"),
    (S.SlantedTriangular, dict(max_lr=0.1, total_steps=5, cut_frac=0.1), "cut_frac"),
    (S.SlantedTriangular, dict(max_lr=0.1, total_steps=100, ratio=0.5), "ratio"),
    (S.InverseSqrt, dict(initial_learning_rate=0.1, warmup_steps=-1), "warmup_steps"),
    (S.InverseSqrt, dict(initial_learning_rate=0.1, timescale=0), "timescale"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=-1, stable_steps=1, decay_steps=1),
     "warmup_steps"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1.5, decay_steps=1),
     "stable_steps"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1, decay_steps=1,
                               min_lr_ratio=2), "min_lr_ratio"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1, decay_steps=1,
                               decay_type="exp"), "decay_type"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1, decay_steps=1,
                               warmup_type="exp"), "warmup_type"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1, decay_steps=-1),
     "decay_steps"),
    (S.WarmupStableDecay, dict(initial_learning_rate=0.1, warmup_steps=1, stable_steps=1, decay_steps=1,
                               num_cycles=0), "num_cycles"),
    (S.Join, dict(schedules=[S.Constant(1.0)], boundaries=[5]), "schedules"),
    (S.Join, dict(schedules=[S.Constant(1.0), S.Constant(2.0)], boundaries=[-5]), "boundaries"),
    (S.Join, dict(schedules=[S.Constant(1.0)] * 3, boundaries=[5, 5]), "boundaries"),
    (S.Join, dict(schedules=[], boundaries=[]), "schedules"),
    (S.PolynomialDecay, dict(initial_learning_rate=float("inf"), decay_steps=5), "initial_learning_rate"),
    (S.InverseTimeDecay, dict(initial_learning_rate=-1.0, decay_steps=5, decay_rate=1), "initial_learning_rate"),
    (S.InverseTimeDecay, dict(initial_learning_rate=0.1, decay_steps=5, decay_rate=1, staircase="no"), "staircase"),
    (S.CosineDecay, dict(initial_learning_rate=None, decay_steps=100), "initial_learning_rate"),
    (S.CosineDecay, dict(initial_learning_rate=0.1, decay_steps=0), "decay_steps"),
    (S.CosineRestart, dict(initial_learning_rate=[0.1], first_decay_steps=10), "initial_learning_rate"),
    (S.LinearCosineDecay, dict(initial_learning_rate=-0.1, decay_steps=10), "initial_learning_rate"),
    (S.LinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=0), "decay_steps"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=-0.1, decay_steps=10), "initial_learning_rate"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps="10"), "decay_steps"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, num_periods=float("nan")),
     "num_periods"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, alpha=-1), "alpha"),
    (S.NoisyLinearCosineDecay, dict(initial_learning_rate=0.1, decay_steps=10, beta=-2), "beta"),
    (S.StepDecay, dict(initial_learning_rate=-0.1, step_size=2), "initial_learning_rate"),
    (S.MultiStepDecay, dict(initial_learning_rate="x", milestones=[2]), "initial_learning_rate"),
    (S.Cyclic, dict(base_lr=0.1, max_lr=float("nan")), "max_lr"),
    (S.SlantedTriangular, dict(max_lr=-1, total_steps=100), "max_lr"),
    (S.InverseSqrt, dict(initial_learning_rate=-0.1), "initial_learning_rate"),
    (S.WarmupStableDecay, dict(initial_learning_rate=-0.1, warmup_steps=1, stable_steps=1, decay_steps=1),
     "initial_learning_rate"),
    (S.ReduceOnPlateau, dict(factor=1.0), "factor"),
    (S.ReduceOnPlateau, dict(factor=-0.1), "factor"),
    (S.ReduceOnPlateau, dict(patience=-1), "patience"),
    (S.ReduceOnPlateau, dict(mode="up"), "mode"),
    (S.ReduceOnPlateau, dict(min_delta=-1), "min_delta"),
    (S.ReduceOnPlateau, dict(cooldown=1.5), "cooldown"),
    (S.ReduceOnPlateau, dict(min_lr=-1), "min_lr"),
    (S.ReduceOnPlateau, dict(convention="jax"), "convention"),
    (S.ReduceOnPlateau, dict(threshold_mode="pct"), "threshold_mode"),
    (S.ReduceOnPlateau, dict(monitor=""), "monitor"),
]


@pytest.mark.parametrize("cls,kwargs,argument", BAD, ids=[f"{c.__name__}-{a}-{i}" for i, (c, _, a) in enumerate(BAD)])
def test_bad_input_names_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    message = str(info.value)
    assert argument in message, message
    assert "must" in message and "got" in message, message


def test_every_constructor_argument_has_a_refused_value():
    import dataclasses

    covered = {(cls.__name__, arg) for cls, _, arg in BAD}
    for name, cls in S.SCHEDULES.items():
        for f in dataclasses.fields(cls):
            # seed, staircase, ... all count; the list arguments are named by their own checks
            assert (name, f.name) in covered, f"no refused value under test for {name}({f.name}=...)"


def test_negative_step_is_refused():
    with pytest.raises(ValueError, match="step"):
        S.Constant(1.0)(-1)


def test_deserialize_refuses_unknown_classes():
    with pytest.raises(ValueError, match="class_name"):
        S.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="did you mean 'CosineRestart'"):
        S.deserialize({"class_name": "CosineRestarts", "config": {}})


@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
def test_from_config_refuses_unknown_keys_and_names_the_closest(name):
    cls = S.SCHEDULES[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    misspelt = fields[0][:-1] + fields[0][-1] * 2  # one letter doubled
    with pytest.raises(ValueError) as info:
        cls.from_config({misspelt: 1.0})
    message = str(info.value)
    assert repr(misspelt) in message and f"did you mean {fields[0]!r}?" in message, message
    assert all(f in message for f in fields), message
    with pytest.raises(ValueError, match="config must be a dict"):
        cls.from_config([1.0])


def test_schedule_configs_refuse_misspelt_keys():
    with pytest.raises(ValueError, match=r"'first_decay_step' \(did you mean 'first_decay_steps'\?\)"):
        S.CosineRestart.from_config({"initial_learning_rate": 0.1, "first_decay_step": 10})
    with pytest.raises(ValueError, match=r"'confg' \(did you mean 'config'\?\)"):
        S.deserialize({"class_name": "Constant", "confg": {"value": 0.1}})
    nested = {"class_name": "Warmup", "config": {"schedule": {"class_name": "Constant", "config": {"valu": 1.0}},
                                                 "warmup_steps": 5}}
    with pytest.raises(ValueError, match="did you mean 'value'"):
        S.deserialize(nested)
    with pytest.raises(ValueError, match="did you mean 'patience'"):
        S.ReduceOnPlateau.from_config({"patiense": 3})
    with pytest.raises(ValueError, match="config must be a dict"):
        S.ReduceOnPlateau.from_config("val_loss")
    p = S.ReduceOnPlateau(factor=0.5, patience=3)
    assert S.ReduceOnPlateau.from_config(p.get_config()).get_config() == p.get_config()


def test_constructors_name_a_misspelt_argument():
    from hpcallbacks import ArgumentError

    with pytest.raises(ArgumentError) as info:
        S.CosineRestart(0.1, first_decay_step=10)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert str(info.value) == ("CosineRestart() got an unexpected keyword argument 'first_decay_step'; did you mean "
                               "'first_decay_steps'? CosineRestart takes: initial_learning_rate, first_decay_steps, "
                               "t_mul, m_mul, alpha")
    with pytest.raises(TypeError, match="missing 1 required argument: 'first_decay_steps'"):
        S.CosineRestart(0.1)
    with pytest.raises(ValueError, match="did you mean 'patience'"):
        S.ReduceOnPlateau(patiense=3)


def test_core_imports_no_framework():
    code = ("import sys, hpcallbacks, hpcallbacks.schedules, hpcallbacks.plans; "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'transformers', 'lightning', "
            "'pytorch_lightning', 'jax', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
