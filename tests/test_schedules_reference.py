"""Every core schedule that has a reference implementation matches it, step by step.

References: Keras 3 ``keras.optimizers.schedules`` (float32: absolute error <= 2e-7 x initial
LR), TF1 ``tf.compat.v1.train.*_decay`` (float64 tensors: relative 1e-12), torch
``torch.optim.lr_scheduler`` and ``transformers.get_scheduler`` (Python floats: relative 1e-12).
Each over >= 2,000 steps and several parameter sets.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import hpcallbacks.schedules as S

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

N = 2000
REL = 1e-12


def assert_rel(ours: list[float], ref: list[float], rel: float = REL, floor: float = 0.0) -> None:
    """Relative error <= rel; values whose reference is below ``floor`` are compared absolutely."""
    ours_a, ref_a = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours_a.shape == ref_a.shape
    scale = np.maximum(np.abs(ref_a), floor)
    err = np.abs(ours_a - ref_a)
    bad = np.nonzero(err > rel * scale)[0]
    assert bad.size == 0, (
        f"{bad.size} steps differ, first at step {bad[0]}: ours {ours_a[bad[0]]!r} vs reference {ref_a[bad[0]]!r}")


# --------------------------------------------------------------------------------- Keras 3
@pytest.fixture(scope="module")
def kschedules():
    keras = pytest.importorskip("keras")
    return keras.optimizers.schedules


def keras_values(schedule, n: int = N, dtype: str = "float32", vectorised: bool = True) -> np.ndarray:
    """The schedule at steps ``0..n-1``: one call on the vector of steps, or (``vectorised=False``: a schedule
    that branches with ``ops.cond``, which takes a scalar) one call per step, on TensorFlow through one traced
    ``tf.function`` (the same ops, run as a graph instead of op by op)."""
    if vectorised:
        return np.asarray(schedule(np.arange(n, dtype=dtype)), dtype=np.float64)
    call = schedule
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        call = tf.function(schedule, reduce_retracing=True)
    return np.array([float(call(np.dtype(dtype).type(i))) for i in range(n)])


KERAS_CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=100, decay_rate=0.96)),
    ("ExponentialDecay", dict(initial_learning_rate=1.0, decay_steps=37, decay_rate=0.5, staircase=True)),
    ("ExponentialDecay", dict(initial_learning_rate=3e-4, decay_steps=1000, decay_rate=0.1)),
    ("PiecewiseConstantDecay", dict(boundaries=[100, 500, 1500], values=[1.0, 0.5, 0.1, 0.01])),
    ("PiecewiseConstantDecay", dict(boundaries=[0, 1], values=[0.3, 0.2, 0.1])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=1000, end_learning_rate=1e-4)),
    ("PolynomialDecay", dict(initial_learning_rate=1.0, decay_steps=300, end_learning_rate=0.01, power=0.5,
                             cycle=True)),
    ("PolynomialDecay", dict(initial_learning_rate=0.01, decay_steps=1500, end_learning_rate=0.0, power=2.0)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5)),
    ("InverseTimeDecay", dict(initial_learning_rate=1.0, decay_steps=100, decay_rate=2.0, staircase=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=1000)),
    ("CosineDecay", dict(initial_learning_rate=1.0, decay_steps=1500, alpha=0.2)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=1000, alpha=0.1, warmup_target=0.5,
                         warmup_steps=200)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=700, warmup_target=1.0, warmup_steps=50)),
    ("CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=100)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=50, t_mul=1.0, m_mul=0.9,
                                 alpha=0.05)),
    ("CosineDecayRestarts", dict(initial_learning_rate=1.0, first_decay_steps=30, t_mul=1.5, m_mul=0.8,
                                 alpha=0.1)),
    ("CosineDecayRestarts", dict(initial_learning_rate=2.0, first_decay_steps=7, t_mul=3.0)),
]
KERAS_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(KERAS_CASES)]
OURS_FOR_KERAS = {"CosineDecayRestarts": "CosineRestart"}
STEP_COUNTS = ("decay_steps", "first_decay_steps", "warmup_steps", "boundaries")


def _f64(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return value
    return [np.float64(v) for v in value] if isinstance(value, list) else np.float64(value)


def _keras_and_ours(kschedules, name, kwargs, dtype, n=N):
    ref_kwargs = {k: (v if k in STEP_COUNTS or dtype == "float32" else _f64(v)) for k, v in kwargs.items()}
    ref = getattr(kschedules, name)(**ref_kwargs)
    ours = getattr(S, OURS_FOR_KERAS.get(name, name))(**kwargs)
    return (keras_values(ref, n=n, dtype=dtype, vectorised="warmup_target" not in kwargs), np.asarray(ours.curve(n)),
            ours)


def _keras_missed_restarts(ours, ref, got) -> np.ndarray:
    """Steps where Keras' logarithm put a restart one update late; they must all be restart starts."""
    bad = np.nonzero(np.abs(got - ref) > 1e-6 * np.abs(got).max())[0]
    if isinstance(ours, S.CosineRestart):
        assert all(ours.period(int(t))[1] == 0.0 for t in bad), f"mismatch off a restart boundary: {bad}"
        return bad
    assert bad.size == 0, f"steps {bad[:5]} differ"
    return bad


#: Arguments Keras accepts that the core once refused: growth (``decay_rate > 1``, ``m_mul > 1``),
#: a fractional ``decay_steps`` and ``warmup_target`` without ``warmup_steps``. A few hundred steps
#: each (``n``), so that float32 keeps the growing values well inside its range.
KERAS_WIDENED_CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=1e-6, decay_steps=20, decay_rate=2.0), 400),
    ("ExponentialDecay", dict(initial_learning_rate=1e-5, decay_steps=37, decay_rate=2.0, staircase=True), 400),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=0.25, decay_rate=1 - 2**-10), 400),  # exact in f32
    ("CosineDecayRestarts", dict(initial_learning_rate=0.01, first_decay_steps=30, t_mul=1.0, m_mul=1.5), 400),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=25, t_mul=1.0, m_mul=4.0), 300),
    ("CosineDecayRestarts", dict(initial_learning_rate=1e-4, first_decay_steps=20, t_mul=1.5, m_mul=4.0,
                                 alpha=0.1), 400),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=300, alpha=0.1, warmup_target=0.5), 400),
]
KERAS_WIDENED_IDS = [f"{n}-widened-{i}" for i, (n, _, _) in enumerate(KERAS_WIDENED_CASES)]


@pytest.mark.parametrize("name,kwargs,n", KERAS_WIDENED_CASES, ids=KERAS_WIDENED_IDS)
def test_widened_arguments_match_keras(kschedules, name, kwargs, n):
    """The float64 and float32 checks below, on the arguments the core now accepts as Keras does."""
    ref, got, ours = _keras_and_ours(kschedules, name, kwargs, "float64", n=n)
    keep = np.setdiff1d(np.arange(n), _keras_missed_restarts(ours, ref, got))
    peak = max(np.abs(got).max(), 1e-300)
    assert_rel(got[keep], ref[keep], floor=1e-3 * peak)
    ref, got, ours = _keras_and_ours(kschedules, name, kwargs, "float32", n=n)
    keep = np.setdiff1d(np.arange(n), _keras_missed_restarts(ours, ref, got))
    err = np.abs(got[keep] - ref[keep])
    assert err.max() <= 1e-6 * peak, f"max abs error {err.max()} at step {keep[err.argmax()]}"
    if kwargs.get("decay_rate", 1.0) > 1 or kwargs.get("m_mul", 1.0) > 1:
        assert got[-1] > got[0] * 10  # the growth is real


@pytest.mark.parametrize("name,kwargs", KERAS_CASES, ids=KERAS_IDS)
def test_matches_keras_float64(kschedules, name, kwargs):
    """Keras' own code fed float64 parameters: relative error <= 1e-12 at every step.

    The one exception is Keras' ``CosineDecayRestarts`` with a geometric ``t_mul``: its
    floor(log(...)) can land one restart late at an exact boundary (measured: first_decay_steps=7,
    t_mul=3 gives 0 instead of the initial LR at step 7). Those steps must be restart starts, where
    the core agrees with torch's ``CosineAnnealingWarmRestarts`` (tested below).
    """
    ref, got, ours = _keras_and_ours(kschedules, name, kwargs, "float64")
    missed = _keras_missed_restarts(ours, ref, got)
    keep = np.setdiff1d(np.arange(N), missed)
    peak = max(np.abs(got).max(), 1e-300)
    assert_rel(got[keep], ref[keep], floor=1e-3 * peak)


@pytest.mark.parametrize("name,kwargs", KERAS_CASES, ids=KERAS_IDS)
def test_matches_keras_float32(kschedules, name, kwargs):
    """Plain Keras (float32): absolute error <= 1e-6 x the peak LR.

    Keras' float32 arithmetic is itself off from the exact value by up to ~2.5e-7 x the initial
    LR (measured: ExponentialDecay(0.1, 100, 0.96) at step 1695), so the bound is a few float32
    ulps rather than 2e-7.
    """
    ref, got, ours = _keras_and_ours(kschedules, name, kwargs, "float32")
    missed = _keras_missed_restarts(ours, ref, got)
    keep = np.setdiff1d(np.arange(N), missed)
    peak = max(np.abs(got).max(), 1e-300)
    err = np.abs(got[keep] - ref[keep])
    assert err.max() <= 1e-6 * peak, f"max abs error {err.max()} at step {keep[err.argmax()]}"


def test_keras_piecewise_boundary_convention(kschedules):
    # Keras switches at b + 1; the core's default follows it, and the torch convention switches at b.
    ref = kschedules.PiecewiseConstantDecay([10], [1.0, 0.5])
    assert [float(ref(10)), float(ref(11))] == [1.0, 0.5]
    assert S.PiecewiseConstantDecay([10], [1.0, 0.5]).curve(2, start=10) == [1.0, 0.5]
    assert S.PiecewiseConstantDecay([10], [1.0, 0.5], convention="torch").curve(2, start=9) == [1.0, 0.5]


# ----------------------------------------------------------------------------------- TF1
@pytest.fixture
def tf1(monkeypatch):
    """TF1's ``*_decay`` functions, computing in float64.

    TF1 writes pi as ``constant_op.constant(math.pi)`` (float32), which cannot multiply a float64
    tensor; the fixture makes that constant float64 so the whole TF1 formula runs in float64 and
    can be compared at 1e-12. Nothing else of TF1 is touched.
    """
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.keras.optimizer_v2 import learning_rate_schedule as tf_lrs

    class Float64Constants:
        @staticmethod
        def constant(value, *args, **kwargs):
            return tf.constant(value, dtype=tf.float64)

    monkeypatch.setattr(tf_lrs, "constant_op", Float64Constants)
    return tf


def tf1_float64_args(kwargs, **more_defaults):
    """Every real-valued argument (defaults included) as a float64 scalar: TF1 casts Python floats
    through float32 (0.001 becomes 0.0010000000474975)."""
    full = dict(num_periods=0.5, alpha=0.0, beta=0.001, **more_defaults)
    full.update(kwargs)
    return {k: (v if k == "decay_steps" else np.float64(v)) for k, v in full.items()}


LINEAR_COSINE_CASES = [
    dict(learning_rate=0.1, decay_steps=1000),
    dict(learning_rate=1.0, decay_steps=1500, num_periods=2.0, alpha=0.1, beta=0.01),
    dict(learning_rate=0.5, decay_steps=300, num_periods=0.25, alpha=0.0, beta=0.0),
    dict(learning_rate=0.1, decay_steps=500, num_periods=1.0, alpha=2.0, beta=1.5),  # TF1 bounds neither
]


@pytest.mark.parametrize("kwargs", LINEAR_COSINE_CASES)
def test_linear_cosine_matches_tf1(tf1, kwargs):
    lr = tf1.constant(kwargs["learning_rate"], dtype=tf1.float64)
    rest = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    rest64 = tf1_float64_args(rest)
    steps = tf1.constant(np.arange(N), tf1.int64)  # TF1's formula is elementwise: every step in one call
    ref = tf1.compat.v1.train.linear_cosine_decay(lr, steps, **rest64)().numpy()
    ours = S.LinearCosineDecay(kwargs["learning_rate"], **rest)
    assert_rel(ours.curve(N), ref, floor=1e-3 * kwargs["learning_rate"])


@pytest.mark.parametrize("kwargs", LINEAR_COSINE_CASES)
def test_noisy_linear_cosine_is_tf1_formula_with_the_same_noise(tf1, monkeypatch, kwargs):
    """TF1's formula with our deterministic noise injected in place of ``random_normal``."""
    from tensorflow.python.keras.optimizer_v2 import learning_rate_schedule as tf_lrs

    ours = S.NoisyLinearCosineDecay(kwargs["learning_rate"], seed=7,
                                    **{k: v for k, v in kwargs.items() if k != "learning_rate"})
    noise = tf1.constant([ours.noise(i) for i in range(N)], tf1.float64)  # step i's draw, for every step

    class InjectedNoise:
        @staticmethod
        def random_normal(shape, stddev, **_):
            assert tuple(shape) == (N,)
            return tf1.cast(stddev, tf1.float64) * noise

    monkeypatch.setattr(tf_lrs, "random_ops", InjectedNoise)
    lr = tf1.constant(kwargs["learning_rate"], dtype=tf1.float64)
    rest = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    rest64 = tf1_float64_args(rest, initial_variance=1.0, variance_decay=0.55)
    steps = tf1.constant(np.arange(N), tf1.int64)  # TF1's formula is elementwise: every step in one call
    ref = np.maximum(0.0, tf1.compat.v1.train.noisy_linear_cosine_decay(lr, steps, **rest64)().numpy())
    assert_rel(ours.curve(N), ref, floor=1e-3 * kwargs["learning_rate"])


def test_noisy_linear_cosine_is_reproducible_and_non_negative():
    s = S.NoisyLinearCosineDecay(1.0, decay_steps=100, initial_variance=4.0, seed=1)
    first = s.curve(N)
    assert first == s.curve(N) == S.NoisyLinearCosineDecay.from_config(s.get_config()).curve(N)
    assert min(first) >= 0.0
    # the noise is real: a different seed gives a different curve, and it has unit variance
    assert first != S.NoisyLinearCosineDecay(1.0, decay_steps=100, initial_variance=4.0, seed=2).curve(N)
    z = np.array([s.noise(i) for i in range(20000)])
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03


# --------------------------------------------------------------------------------- torch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_trace(torch, make_scheduler, n: int = N, lr: float = 1.0, momentum: float = 0.0) -> list[float]:
    """The LR each of ``n`` optimizer updates used under a real torch scheduler."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make_scheduler(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_and_multistep_match_torch(torch):
    L = torch.optim.lr_scheduler
    for step_size, gamma in [(30, 0.1), (1, 0.99), (700, 0.5)]:
        ref = torch_trace(torch, lambda o: L.StepLR(o, step_size, gamma), lr=0.1)
        assert_rel(S.StepDecay(0.1, step_size, gamma).curve(N), ref)
    for milestones, gamma in [([10, 500, 1500], 0.1), ([1, 2, 3], 0.5), ([999], 0.3)]:
        ref = torch_trace(torch, lambda o: L.MultiStepLR(o, milestones, gamma), lr=0.1)
        assert_rel(S.MultiStepDecay(0.1, milestones, gamma).curve(N), ref)
        ref_pw = S.PiecewiseConstantDecay(milestones, [0.1 * gamma**i for i in range(len(milestones) + 1)],
                                          convention="torch")
        assert_rel(ref_pw.curve(N), ref)


@pytest.mark.parametrize("kwargs", [
    dict(max_lr=0.1, total_steps=N),
    dict(max_lr=1.0, total_steps=N, pct_start=0.1, anneal_strategy="linear", div_factor=10.0),
    dict(max_lr=0.01, total_steps=N, three_phase=True, final_div_factor=100.0),
    dict(max_lr=0.5, total_steps=N, pct_start=0.45, three_phase=True, anneal_strategy="linear"),
])
def test_one_cycle_matches_torch(torch, kwargs):
    ref = torch_trace(torch, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, cycle_momentum=False, **kwargs),
                      n=N - 1)
    assert_rel(S.OneCycle(**kwargs).curve(N - 1), ref)


@pytest.mark.parametrize("kwargs", [
    dict(base_lr=0.001, max_lr=0.1, step_size_up=100),
    dict(base_lr=0.01, max_lr=1.0, step_size_up=50, step_size_down=150, mode="triangular2"),
    dict(base_lr=0.0, max_lr=0.1, step_size_up=300, mode="exp_range", gamma=0.999),
])
def test_cyclic_matches_torch(torch, kwargs):
    ref = torch_trace(torch, lambda o: torch.optim.lr_scheduler.CyclicLR(o, cycle_momentum=False, **kwargs))
    assert_rel(S.Cyclic(**kwargs).curve(N), ref, floor=1e-3 * kwargs["max_lr"])


@pytest.mark.parametrize("t0,t_mult,eta", [(100, 1, 0.0), (10, 2, 0.01), (7, 3, 0.05), (500, 1, 0.1)])
def test_cosine_restart_matches_torch_warm_restarts(torch, t0, t_mult, eta):
    ref = torch_trace(torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=t0, T_mult=t_mult, eta_min=eta * 0.1), lr=0.1)
    ours = S.CosineRestart(0.1, first_decay_steps=t0, t_mul=float(t_mult), alpha=eta)
    assert_rel(ours.curve(N), ref, floor=1e-3 * 0.1)


def test_cosine_decay_matches_torch_cosine_annealing_until_its_end(torch):
    for t_max, alpha in [(N, 0.0), (1500, 0.1)]:
        ref = torch_trace(torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=t_max, eta_min=alpha * 0.1), n=t_max + 1, lr=0.1)
        ours = S.CosineDecay(0.1, decay_steps=t_max, alpha=alpha)
        # torch's recursive form accumulates rounding near eta_min: compare relative to the peak there
        assert_rel(ours.curve(t_max + 1), ref, floor=1e-3 * 0.1)
        # after T_max torch rises again; the core holds alpha * initial
        assert ours(t_max + 100) == pytest.approx(alpha * 0.1, abs=1e-15)


def test_growth_and_unsorted_milestones_match_torch(torch):
    """torch bounds no ``gamma``: growth (> 1) matches, and MultiStepLR's milestones are a Counter
    (any order, a repeated milestone multiplies twice)."""
    L = torch.optim.lr_scheduler
    assert_rel(S.ExponentialDecay(1e-4, 1, 1.005).curve(N),
               torch_trace(torch, lambda o: L.ExponentialLR(o, 1.005), lr=1e-4))
    assert_rel(S.StepDecay(1e-4, 100, 2.0).curve(N), torch_trace(torch, lambda o: L.StepLR(o, 100, 2.0), lr=1e-4))
    for milestones, gamma in [([500, 10, 1500], 3.0), ([700, 700, 20], 0.5), ([999, 1, 999, 1], 1.5)]:
        ref = torch_trace(torch, lambda o: L.MultiStepLR(o, milestones, gamma), lr=0.1)
        assert_rel(S.MultiStepDecay(0.1, milestones, gamma).curve(N), ref)
    kwargs = dict(base_lr=0.001, max_lr=0.01, step_size_up=100, mode="exp_range", gamma=1.001)
    ref = torch_trace(torch, lambda o: L.CyclicLR(o, cycle_momentum=False, **kwargs))
    assert_rel(S.Cyclic(**kwargs).curve(N), ref, floor=1e-3 * kwargs["max_lr"])
    assert max(ref) > 5 * kwargs["max_lr"]  # the height grew


def test_exponential_and_polynomial_match_torch(torch):
    L = torch.optim.lr_scheduler
    assert_rel(S.ExponentialDecay(0.1, 1, 0.998).curve(N), torch_trace(torch, lambda o: L.ExponentialLR(o, 0.998),
                                                                       lr=0.1))
    for total, power in [(1000, 1.0), (1500, 2.0)]:
        ref = torch_trace(torch, lambda o: L.PolynomialLR(o, total_iters=total, power=power), lr=0.1)
        ours = S.PolynomialDecay(0.1, total, end_learning_rate=0.0, power=power)
        assert_rel(ours.curve(N), ref, floor=1e-3 * 0.1)


# -------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def hf_get_scheduler(torch):
    transformers = pytest.importorskip("transformers")
    return transformers.get_scheduler


def hf_trace(torch, get_scheduler, name, lr=0.1, n=N, **kwargs):
    return torch_trace(torch, lambda o: get_scheduler(name, o, **kwargs), n=n, lr=lr)


@pytest.mark.parametrize("warmup,total", [(0, N), (100, N), (333, 1500)])
def test_hf_linear_cosine_constant_polynomial(torch, hf_get_scheduler, warmup, total):
    kw = dict(num_warmup_steps=warmup, num_training_steps=total)
    decay = total - warmup

    def warm(s):
        return S.Warmup(s, warmup) if warmup else s

    cases = {
        "linear": warm(S.PolynomialDecay(0.1, decay, end_learning_rate=0.0)),
        "cosine": warm(S.CosineDecay(0.1, decay)),
        "polynomial": warm(S.PolynomialDecay(0.1, decay, end_learning_rate=1e-7)),
    }
    for name, ours in cases.items():
        ref = hf_trace(torch, hf_get_scheduler, name, **kw)
        # up to the end of training; after it HF's cosine rises again, the core holds its end value
        assert_rel(ours.curve(total), ref[:total], floor=1e-3 * 0.1)
    if warmup:
        ref = hf_trace(torch, hf_get_scheduler, "constant_with_warmup", num_warmup_steps=warmup)
        assert_rel(S.Warmup(S.Constant(0.1), warmup).curve(N), ref)


@pytest.mark.parametrize("warmup,timescale", [(0, None), (100, None), (50, 400)])
def test_hf_inverse_sqrt(torch, hf_get_scheduler, warmup, timescale):
    ref = hf_trace(torch, hf_get_scheduler, "inverse_sqrt", num_warmup_steps=warmup,
                   scheduler_specific_kwargs={"timescale": timescale} if timescale else None)
    assert_rel(S.InverseSqrt(0.1, warmup_steps=warmup, timescale=timescale).curve(N), ref)


@pytest.mark.parametrize("kwargs", [
    dict(warmup_steps=100, stable_steps=1000, decay_steps=500),
    dict(warmup_steps=200, stable_steps=300, decay_steps=900, min_lr_ratio=0.1, warmup_type="cosine",
         decay_type="linear"),
    dict(warmup_steps=0, stable_steps=500, decay_steps=1000, warmup_type="1-sqrt", decay_type="1-sqrt",
         min_lr_ratio=0.05),
    dict(warmup_steps=50, stable_steps=50, decay_steps=1800, num_cycles=1.5, min_lr_ratio=0.2),
])
def test_hf_warmup_stable_decay(torch, hf_get_scheduler, kwargs):
    spec = dict(num_stable_steps=kwargs["stable_steps"], num_decay_steps=kwargs["decay_steps"])
    for key in ("min_lr_ratio", "warmup_type", "decay_type", "num_cycles"):
        if key in kwargs:
            spec[key] = kwargs[key]
    ref = hf_trace(torch, hf_get_scheduler, "warmup_stable_decay", num_warmup_steps=kwargs["warmup_steps"],
                   scheduler_specific_kwargs=spec)
    assert_rel(S.WarmupStableDecay(0.1, **kwargs).curve(N), ref, floor=1e-3 * 0.1)


def test_hf_cosine_with_hard_restarts(torch, hf_get_scheduler):
    for warmup, cycles in [(0, 4), (100, 3)]:
        ref = hf_trace(torch, hf_get_scheduler, "cosine_with_restarts", num_warmup_steps=warmup,
                       num_training_steps=N + 1, scheduler_specific_kwargs={"num_cycles": cycles})
        inner = S.CosineRestart(0.1, first_decay_steps=(N + 1 - warmup) / cycles, t_mul=1.0)
        ours = S.Warmup(inner, warmup) if warmup else inner
        assert_rel(ours.curve(N), ref, rel=1e-9, floor=1e-3 * 0.1)


def test_slanted_triangular_is_ulmfit_equation_3():
    # ULMFiT eq. 3 written out for T=1000, cut_frac=0.1, ratio=32, eta_max=0.01
    T, cut_frac, ratio, eta = 1000, 0.1, 32, 0.01
    cut = math.floor(T * cut_frac)
    ref = []
    for t in range(T + 1):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        ref.append(eta * (1 + p * (ratio - 1)) / ratio)
    ours = S.SlantedTriangular(eta, T, cut_frac, ratio)
    assert_rel(ours.curve(T + 1), ref)
    assert ours(T + 500) == ours(T)  # held after the end
