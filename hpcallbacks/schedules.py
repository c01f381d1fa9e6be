"""Learning-rate schedules: each a pure function of the optimizer-update count.

``schedule(step)`` is the learning rate of the update that comes after ``step`` updates were
done, so ``schedule(0)`` is the learning rate of the very first update. Gradient accumulation
does not change the count: the schedule advances once per optimizer update, never per
micro-batch. Every adapter (Keras, Lightning, HF) evaluates these same objects, so one schedule
gives the same numbers in every framework.

Each family is a small immutable value:

* ``sched(step) -> float`` and ``sched.curve(n)`` (the first ``n`` values, for plots),
* ``get_config()`` / ``from_config()`` through plain JSON (:func:`serialize` /
  :func:`deserialize` for a schedule of unknown class),
* a ``repr`` that reads like the constructor call,
* a docstring with the formula and an example.

A finite schedule (one with a natural end, such as ``CosineDecay`` after ``decay_steps``) holds
its last value after that end; each docstring says so.

Arguments are refused (``ValueError`` naming the argument, the value and what is allowed) only
where no reference implementation accepts them or where they would give a NaN, infinite or
negative learning rate, or a period of zero length. Growth is accepted as the references accept
it (``ExponentialDecay(decay_rate > 1)``, ``CosineRestart(m_mul > 1)``, ``StepDecay`` /
``MultiStepDecay`` / ``Cyclic`` with ``gamma > 1``): a growing schedule is one way to run a range
test. A schedule never returns NaN or infinity: at the first update whose learning rate would
pass the largest float (about 1.8e308) it raises ``ValueError`` saying which argument grows, so
every adapter stops there with that message rather than training with a non-finite rate.

The families of handbook H3 keep the TensorFlow/Keras argument names; the ones users know from
torch (``StepDecay``, ``MultiStepDecay``, ``OneCycle``, ``Cyclic``) keep torch's names and
numbers; ``InverseSqrt`` and ``WarmupStableDecay`` keep HuggingFace's.
"""
from __future__ import annotations

import bisect
import dataclasses
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from . import _checks as check

__all__ = [
    "Schedule",
    "Constant",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineRestart",
    "LinearCosineDecay",
    "NoisyLinearCosineDecay",
    "Warmup",
    "StepDecay",
    "MultiStepDecay",
    "OneCycle",
    "Cyclic",
    "SlantedTriangular",
    "InverseSqrt",
    "WarmupStableDecay",
    "Join",
    "ReduceOnPlateau",
    "serialize",
    "deserialize",
    "as_schedule",
    "SCHEDULES",
]

#: Every schedule class by its name (what :func:`deserialize` and the CLI look up).
SCHEDULES: dict[str, type[Schedule]] = {}


def _step(step: Any) -> float:
    # Cheap: one comparison on the hot path. Adapters evaluate tables ahead of time anyway.
    if step < 0:
        raise ValueError(f"step must be a number of optimizer updates >= 0; got {step!r}")
    return step


class Schedule:
    """Base of every schedule: a pure function of the optimizer-update count.

    Subclasses are frozen dataclasses: their fields are the constructor arguments, which is
    also what :meth:`get_config` returns.
    """

    #: True for families that never increase with the step (used by property tests and plots).
    monotone: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SCHEDULES[cls.__name__] = cls

    def __call__(self, step: int | float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def curve(self, n: int, start: int = 0) -> list[float]:
        """The learning rates of updates ``start .. start + n - 1`` (for plots and tables)."""
        n = check.non_negative_int("n", n)
        start = check.non_negative_int("start", start)
        return [self(i) for i in range(start, start + n)]

    # -- configuration -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values."""
        config: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            config[f.name] = _to_json(getattr(self, f.name))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        """Rebuild from :meth:`get_config` output (nested schedules included).

        A key the constructor does not take is refused (``ValueError`` naming it, the closest
        accepted key and every accepted key), so a misspelt argument never falls back to its
        default silently.

        >>> CosineRestart.from_config({"initial_learning_rate": 0.1, "first_decay_step": 10})
        Traceback (most recent call last):
          ...
        ValueError: CosineRestart config has unknown key 'first_decay_step' (did you mean 'first_decay_steps'?); \
the allowed keys are: initial_learning_rate, first_decay_steps, t_mul, m_mul, alpha
        """
        fields = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        check.config_keys(cls.__name__, config, fields)
        kwargs = {k: _from_json(v) for k, v in config.items()}
        return cls(**kwargs)


def _to_json(value: Any) -> Any:
    if isinstance(value, Schedule):
        return serialize(value)
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return deserialize(value)
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def serialize(schedule: Schedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: the plain-JSON form of any schedule."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(data: dict[str, Any]) -> Schedule:
    """Inverse of :func:`serialize`; refuses unknown class names (no eval, no pickle), keys other
    than ``class_name`` and ``config``, and config keys the class does not take."""
    if not isinstance(data, dict) or "class_name" not in data:
        raise ValueError(f"data must be a dict with 'class_name' and 'config'; got {data!r}")
    check.config_keys("serialized schedule", data, ("class_name", "config"))
    name = data["class_name"]
    if name not in SCHEDULES:
        hint = check.did_you_mean(name, SCHEDULES)
        raise ValueError(f"class_name must be one of {sorted(SCHEDULES)}; got {name!r}"
                         + (f" ({hint})" if hint else ""))
    return SCHEDULES[name].from_config(data.get("config", {}))


def as_schedule(value: Schedule | float, name: str = "schedule") -> Schedule:
    """A schedule as is, or a number as a :class:`Constant`."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(value)
    raise ValueError(f"{name} must be a hpcallbacks schedule or a number; got {value!r}")


def _set(obj: Any, **values: Any) -> None:
    for key, value in values.items():
        object.__setattr__(obj, key, value)


def _lr(name: str, value: Any) -> float:
    return check.non_negative(name, value)


def _length(name: str, value: Any) -> float:
    """A length counted in optimizer updates: any positive number (Keras and TF1 refuse only
    ``decay_steps <= 0``; a fraction of an update scales the exponent, e.g. ``decay_steps=0.5``
    decays twice per update)."""
    return check.positive(name, value)


def _factor(name: str, value: Any) -> float:
    """A multiplicative factor applied per period (``decay_rate``, ``gamma``): > 0, growth (> 1)
    included, as Keras, TF1, optax and torch (which bound neither) accept. 0 stays refused: it
    sends the learning rate to 0 after the first period (write ``Join`` with a ``Constant`` for that)."""
    return check.positive(name, value)


_INF = math.inf


def _overflow(schedule: Schedule, step: Any, argument: str,
              grows: str = "> 1 makes it grow without bound") -> ValueError:
    value = getattr(schedule, argument)
    return ValueError(
        f"{type(schedule).__name__}: the learning rate of update {step!r} overflows (it would pass the largest "
        f"float, about 1.8e308): {argument}={value!r} {grows}; end the run before this update or hold the value "
        f"from an earlier update with Join"
    )


def _power(base: float, exponent: float) -> float:
    """``base ** exponent``, with ``inf`` where Python raises ``OverflowError``."""
    try:
        return base**exponent
    except OverflowError:
        return _INF


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constant(Schedule):
    """The same learning rate at every step: ``lr(t) = value``.

    >>> Constant(0.01)(12345)
    0.01
    """

    value: float
    monotone: ClassVar[str | None] = "decreasing"

    def __post_init__(self) -> None:
        _set(self, value=_lr("value", self.value))

    def __call__(self, step: int | float) -> float:
        _step(step)
        return self.value


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """Exponential decay, Keras ``ExponentialDecay`` / TF1 ``exponential_decay``.

    ``lr(t) = initial_learning_rate * decay_rate ** (t / decay_steps)``; with ``staircase``,
    the exponent is ``floor(t / decay_steps)``. It never ends (no value is held).
    Large decay early for convergence, small late for fine tuning (handbook H3).

    ``decay_rate`` is any number > 0: above 1 the learning rate grows (as Keras, TF1, optax and
    torch ``ExponentialLR`` allow; one way to run a range test). A growing schedule raises
    ``ValueError`` at the first update whose learning rate would overflow a float; it never
    returns ``inf`` or NaN. ``decay_steps`` is any number > 0 (Keras refuses only ``<= 0``).

    >>> s = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    >>> s(0), s(100), s(200)
    (0.1, 0.05, 0.025)
    >>> ExponentialDecay(1e-6, decay_steps=1, decay_rate=2.0).curve(4)
    [1e-06, 2e-06, 4e-06, 8e-06]
    """

    initial_learning_rate: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            decay_rate=_factor("decay_rate", self.decay_rate),
            staircase=check.boolean("staircase", self.staircase),
        )

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        return "decreasing" if self.decay_rate <= 1.0 else "increasing"

    def __call__(self, step: int | float) -> float:
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        if not self.initial_learning_rate:
            return 0.0
        value = self.initial_learning_rate * _power(self.decay_rate, p)
        if value == _INF:
            raise _overflow(self, step, "decay_rate")
        return value


@dataclass(frozen=True)
class PiecewiseConstantDecay(Schedule):
    """Constant pieces: ``values[i]`` between ``boundaries[i-1]`` and ``boundaries[i]``.

    ``convention="keras"`` (default, Keras ``PiecewiseConstantDecay`` / TF1
    ``piecewise_constant``): ``values[0]`` while ``t <= boundaries[0]``, so the value switches at
    update ``b + 1``. ``convention="torch"`` (torch ``MultiStepLR``): the value switches at update
    ``b``. After the last boundary, ``values[-1]`` is held. Good for fine tuning (handbook H3).

    >>> s = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    >>> s(10), s(11), s(21)
    (1.0, 0.5, 0.1)
    >>> PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1], convention="torch")(10)
    0.5
    """

    boundaries: Sequence[float]
    values: Sequence[float]
    convention: str = "keras"

    def __post_init__(self) -> None:
        boundaries = check.sequence("boundaries", self.boundaries, min_len=1)
        boundaries = tuple(check.non_negative(f"boundaries[{i}]", b) for i, b in enumerate(boundaries))
        check.increasing("boundaries", boundaries)
        values = check.sequence("values", self.values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"values must have len(boundaries) + 1 = {len(boundaries) + 1} elements; "
                f"got {len(values)}: {list(values)!r}"
            )
        values = tuple(_lr(f"values[{i}]", v) for i, v in enumerate(values))
        _set(self, boundaries=boundaries, values=values,
             convention=check.choice("convention", self.convention, ("keras", "torch")))

    def __call__(self, step: int | float) -> float:
        _step(step)
        find = bisect.bisect_left if self.convention == "keras" else bisect.bisect_right
        return self.values[find(self.boundaries, step)]  # type: ignore[index]


@dataclass(frozen=True)
class PolynomialDecay(Schedule):
    """Polynomial decay, Keras ``PolynomialDecay`` / TF1 ``polynomial_decay``.

    ``lr(t) = (initial - end) * (1 - min(t, decay_steps) / decay_steps) ** power + end``;
    holds ``end_learning_rate`` after ``decay_steps``. With ``cycle=True`` the decay length is
    ``decay_steps * ceil(t / decay_steps)`` (1 at t = 0), so it restarts at each multiple.

    >>> s = PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.0, power=1.0)
    >>> s(0), round(s(5), 12), s(10), s(50)
    (0.1, 0.05, 0.0, 0.0)
    """

    initial_learning_rate: float
    decay_steps: float
    end_learning_rate: float = 1e-4
    power: float = 1.0
    cycle: bool = False

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            end_learning_rate=_lr("end_learning_rate", self.end_learning_rate),
            power=check.positive("power", self.power),
            cycle=check.boolean("cycle", self.cycle),
        )

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        if self.cycle:
            return None
        return "decreasing" if self.end_learning_rate <= self.initial_learning_rate else "increasing"

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps = decay_steps * (1.0 if t == 0 else math.ceil(t / decay_steps))
        else:
            t = min(t, decay_steps)
        p = t / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * (1 - p) ** self.power + self.end_learning_rate


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    """Inverse time decay, Keras ``InverseTimeDecay`` / TF1 ``inverse_time_decay``.

    ``lr(t) = initial_learning_rate / (1 + decay_rate * t / decay_steps)``; with ``staircase``,
    ``t / decay_steps`` is floored. It never ends.

    >>> InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)(10)
    0.05
    """

    initial_learning_rate: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False
    monotone: ClassVar[str | None] = "decreasing"

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            decay_rate=check.positive("decay_rate", self.decay_rate),
            staircase=check.boolean("staircase", self.staircase),
        )

    def __call__(self, step: int | float) -> float:
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1 + self.decay_rate * p)


def _cosine(fraction: float) -> float:
    """``0.5 * (1 + cos(pi * fraction))``: 1 at 0, 0 at 1."""
    return 0.5 * (1.0 + math.cos(math.pi * fraction))


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """Cosine decay with optional linear warmup, Keras ``CosineDecay``.

    Without warmup: ``lr(t) = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * t' / decay_steps)) + alpha)``
    with ``t' = min(t, decay_steps)``. With ``warmup_target``: a linear ramp from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then the same cosine
    from ``warmup_target``. Holds ``alpha * peak`` after the end (torch's ``CosineAnnealingLR``
    rises again after ``T_max``; this does not). ``warmup_steps=0`` with ``warmup_target`` starts
    the cosine at ``warmup_target`` at once, as Keras does. ``alpha`` is in [0, 1]: Keras and torch
    (``eta_min``) document it as the minimum.

    >>> s = CosineDecay(1.0, decay_steps=100, alpha=0.1)
    >>> s(0), round(s(50), 12), round(s(100), 12), round(s(1000), 12)
    (1.0, 0.55, 0.1, 0.1)
    """

    initial_learning_rate: float
    decay_steps: float
    alpha: float = 0.0
    warmup_target: float | None = None
    warmup_steps: float = 0

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            alpha=check.unit("alpha", self.alpha),
            warmup_steps=check.non_negative("warmup_steps", self.warmup_steps),
        )
        if self.warmup_target is not None:
            _set(self, warmup_target=_lr("warmup_target", self.warmup_target))

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        return "decreasing" if self.warmup_target is None or self.warmup_steps == 0 else None

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        if self.warmup_target is None:
            peak = self.initial_learning_rate
        else:
            peak = self.warmup_target
            if t < self.warmup_steps:
                delta = self.warmup_target - self.initial_learning_rate
                return delta * (t / self.warmup_steps) + self.initial_learning_rate
            t = t - self.warmup_steps
        t = min(t, self.decay_steps)
        return peak * ((1 - self.alpha) * _cosine(t / self.decay_steps) + self.alpha)


@dataclass(frozen=True)
class CosineRestart(Schedule):
    """Cosine decay with warm restarts (SGDR), Keras ``CosineDecayRestarts`` numbers.

    Period ``i`` lasts ``first_decay_steps * t_mul ** i`` updates and starts at
    ``initial * m_mul ** i``; inside a period at fraction ``f``:
    ``lr = initial * ((1 - alpha) * m_mul ** i * 0.5 * (1 + cos(pi * f)) + alpha)``.
    With ``m_mul = 1`` it equals torch ``CosineAnnealingWarmRestarts(T_0=first_decay_steps,
    T_mult=t_mul, eta_min=alpha * initial)``. It never ends. The restart index is computed
    exactly (Keras' float32 logarithm can miss a restart by one update).

    ``m_mul`` is any number >= 0: above 1 each restart starts higher (Keras
    ``CosineDecayRestarts``, TF1 ``cosine_decay_restarts`` and optax's SGDR accept it); the
    schedule raises ``ValueError`` at the first update whose learning rate would overflow a
    float. ``t_mul`` stays >= 1 (below 1 the periods sum to a finite length, after which Keras
    gives NaN; torch needs ``T_mult >= 1``); ``alpha`` stays in [0, 1] (the minimum, as documented
    by Keras and torch's ``eta_min``), so no learning rate is ever negative.

    >>> s = CosineRestart(1.0, first_decay_steps=10, t_mul=2.0)
    >>> s(0), s(10), s(30)   # restarts after 10, then 20 more updates
    (1.0, 1.0, 1.0)
    """

    initial_learning_rate: float
    first_decay_steps: float
    t_mul: float = 2.0
    m_mul: float = 1.0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            first_decay_steps=_length("first_decay_steps", self.first_decay_steps),
            t_mul=check.number("t_mul", self.t_mul, low=1.0),
            m_mul=check.non_negative("m_mul", self.m_mul),
            alpha=check.unit("alpha", self.alpha),
        )

    def period(self, step: int | float) -> tuple[int, float]:
        """``(i, f)``: the restart index and the fraction of period ``i`` done at ``step``."""
        x = _step(step) / self.first_decay_steps  # periods of the first length done
        t_mul = self.t_mul
        if t_mul == 1.0:
            i = math.floor(x)
            return i, x - i
        # Geometric periods: period i starts at (t_mul**i - 1) / (t_mul - 1) first-periods.
        def start(k: int) -> float:
            try:
                return (t_mul**k - 1.0) / (t_mul - 1.0)
            except OverflowError:
                return math.inf

        i = max(0, math.floor(math.log1p(x * (t_mul - 1.0)) / math.log(t_mul)))
        while start(i + 1) <= x:
            i += 1
        while i > 0 and start(i) > x:
            i -= 1
        return i, (x - start(i)) / t_mul**i

    def __call__(self, step: int | float) -> float:
        i, f = self.period(step)
        m_fac = _power(self.m_mul, i) if self.m_mul != 1.0 else 1.0
        if not self.initial_learning_rate:
            return 0.0
        decayed = (1 - self.alpha) * m_fac * _cosine(f) + self.alpha if self.alpha != 1.0 else 1.0
        value = self.initial_learning_rate * decayed
        if value == _INF or value != value:  # inf * 0 (a cosine at 0 in an overflowed period) is NaN
            raise _overflow(self, step, "m_mul")
        return value


@dataclass(frozen=True)
class LinearCosineDecay(Schedule):
    """Linear cosine decay (TF1 ``linear_cosine_decay``; Bello et al. 2017, used in RL).

    With ``t' = min(t, decay_steps)``:
    ``linear = (decay_steps - t') / decay_steps``,
    ``cosine = 0.5 * (1 + cos(pi * 2 * num_periods * t' / decay_steps))``,
    ``lr(t) = initial * ((alpha + linear) * cosine + beta)``. Holds its value after the end.
    ``alpha`` and ``beta`` are any numbers >= 0 (TF1 bounds neither; below 0 the learning rate
    could be negative).

    >>> s = LinearCosineDecay(1.0, decay_steps=100)
    >>> s(0), round(s(100), 12)
    (1.001, 0.001)
    """

    initial_learning_rate: float
    decay_steps: float
    num_periods: float = 0.5
    alpha: float = 0.0
    beta: float = 0.001

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            num_periods=check.non_negative("num_periods", self.num_periods),
            alpha=check.non_negative("alpha", self.alpha),
            beta=check.non_negative("beta", self.beta),
        )

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        return "decreasing" if self.num_periods <= 0.5 else None

    def _parts(self, step: int | float) -> tuple[float, float, float]:
        t = min(_step(step), self.decay_steps)
        linear = (self.decay_steps - t) / self.decay_steps
        cosine = _cosine(2.0 * self.num_periods * t / self.decay_steps)
        return t, linear, cosine

    def __call__(self, step: int | float) -> float:
        _, linear, cosine = self._parts(step)
        return self.initial_learning_rate * ((self.alpha + linear) * cosine + self.beta)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def standard_normal(seed: int, step: int) -> float:
    """A standard normal number that depends only on ``(seed, step)`` (splitmix64 + Box-Muller).

    The same on every call, in every process and after a resume.
    """
    h1 = _splitmix64(((seed & 0xFFFFFFFF) << 32) ^ (step & _MASK64))
    h2 = _splitmix64(h1)
    u1 = ((h1 >> 11) + 1) / 9007199254740993.0  # (0, 1]
    u2 = (h2 >> 11) / 9007199254740992.0  # [0, 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@dataclass(frozen=True)
class NoisyLinearCosineDecay(Schedule):
    """Noisy linear cosine decay (TF1 ``noisy_linear_cosine_decay``), made reproducible.

    As :class:`LinearCosineDecay` with Gaussian noise added to the linear part:
    ``lr(t) = max(0, initial * ((alpha + linear + eps_t) * cosine + beta))`` with
    ``eps_t ~ N(0, initial_variance / (1 + t') ** variance_decay)``. Unlike TF1, ``eps_t`` is a
    deterministic function of ``(seed, t)`` — the same value on every evaluation and after a
    resume — and the learning rate never goes below 0. Holds after ``decay_steps`` (the noise at
    ``t > decay_steps`` still depends on ``t``, as in TF1, with the variance of ``t'``).
    ``variance_decay`` may be negative (the noise then grows until ``decay_steps``, as TF1
    allows); ``alpha`` and ``beta`` are any numbers >= 0, as for :class:`LinearCosineDecay`.

    >>> s = NoisyLinearCosineDecay(0.1, decay_steps=1000, seed=3)
    >>> s(10) == s(10) and s(10) >= 0
    True
    """

    initial_learning_rate: float
    decay_steps: float
    initial_variance: float = 1.0
    variance_decay: float = 0.55
    num_periods: float = 0.5
    alpha: float = 0.0
    beta: float = 0.001
    seed: int = 0

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            decay_steps=_length("decay_steps", self.decay_steps),
            initial_variance=check.non_negative("initial_variance", self.initial_variance),
            variance_decay=check.number("variance_decay", self.variance_decay),
            num_periods=check.non_negative("num_periods", self.num_periods),
            alpha=check.non_negative("alpha", self.alpha),
            beta=check.non_negative("beta", self.beta),
            seed=check.number("seed", self.seed, low=0, high=2**32 - 1, integer=True),
        )

    def noise_std(self, step: int | float) -> float:
        """Standard deviation of ``eps_t``: ``sqrt(initial_variance / (1 + t') ** variance_decay)``."""
        t = min(_step(step), self.decay_steps)
        if not self.initial_variance:
            return 0.0
        try:
            return math.sqrt(self.initial_variance / (1.0 + t) ** self.variance_decay)
        except (OverflowError, ZeroDivisionError):  # (1 + t) ** variance_decay out of the float range
            return 0.0 if self.variance_decay > 0 else _INF

    def noise(self, step: int | float) -> float:
        """The standard normal draw used at ``step`` (``eps_t = noise_std(t) * noise(t)``)."""
        return standard_normal(self.seed, int(step))

    def __call__(self, step: int | float) -> float:
        t = min(_step(step), self.decay_steps)
        linear = (self.decay_steps - t) / self.decay_steps
        cosine = _cosine(2.0 * self.num_periods * t / self.decay_steps)
        eps = self.noise_std(step) * self.noise(step)
        value = self.initial_learning_rate * ((self.alpha + linear + eps) * cosine + self.beta)
        if value == _INF or value != value:
            raise _overflow(self, step, "variance_decay", "< 0 makes the noise grow with the step")
        return max(0.0, value)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Warmup(Schedule):
    """A warmup prefix to any schedule.

    For ``t < warmup_steps``: ``mode="linear"`` ramps ``start_value + (target - start_value) * t /
    warmup_steps`` and ``mode="exponential"`` ramps ``start_value * (target / start_value) ** (t /
    warmup_steps)`` (needs ``start_value > 0``), where ``target = schedule(0)``. From
    ``warmup_steps`` on: ``schedule(t - warmup_steps)`` — the wrapped schedule counts its steps
    from the end of the warmup (as HF's warmup schedules and Keras' ``warmup_target`` do).

    HF ``get_linear_schedule_with_warmup(w, n)`` at base ``lr`` is
    ``Warmup(PolynomialDecay(lr, n - w, end_learning_rate=0), w)``; Keras
    ``CosineDecay(a, d, warmup_target=b, warmup_steps=w)`` is
    ``Warmup(CosineDecay(b, d), w, start_value=a)``. ``warmup_steps=0`` is no warmup (HF's
    ``num_warmup_steps=0``, Keras' ``warmup_steps=0``).

    >>> s = Warmup(Constant(1.0), warmup_steps=4)
    >>> s.curve(6)
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    schedule: Schedule
    warmup_steps: float
    start_value: float = 0.0
    mode: str = "linear"

    def __post_init__(self) -> None:
        _set(
            self,
            schedule=as_schedule(self.schedule),
            warmup_steps=check.non_negative("warmup_steps", self.warmup_steps),
            start_value=_lr("start_value", self.start_value),
            mode=check.choice("mode", self.mode, ("linear", "exponential")),
        )
        if self.mode == "exponential" and self.start_value == 0:
            raise ValueError("start_value must be > 0 for mode='exponential' (0 never grows); got 0.0")

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        if t >= self.warmup_steps:
            return self.schedule(t - self.warmup_steps)
        target = self.schedule(0)
        frac = t / self.warmup_steps
        if self.mode == "linear":
            return self.start_value + (target - self.start_value) * frac
        if target == 0:
            return 0.0 if frac > 0 else self.start_value
        log_start = math.log(self.start_value)
        return math.exp(log_start + (math.log(target) - log_start) * frac)


@dataclass(frozen=True)
class StepDecay(Schedule):
    """torch ``StepLR``: ``lr(t) = initial_learning_rate * gamma ** floor(t / step_size)``.

    ``gamma`` is any number > 0 (torch bounds it not): above 1 the learning rate grows, and the
    schedule raises ``ValueError`` at the first update whose learning rate would overflow a float.

    >>> StepDecay(1.0, step_size=10, gamma=0.5).curve(12)[9:]
    [1.0, 0.5, 0.5]
    """

    initial_learning_rate: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            step_size=check.positive_int("step_size", self.step_size),
            gamma=_factor("gamma", self.gamma),
        )

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        return "decreasing" if self.gamma <= 1.0 else "increasing"

    def __call__(self, step: int | float) -> float:
        k = math.floor(_step(step) / self.step_size)
        if not self.initial_learning_rate:
            return 0.0
        value = self.initial_learning_rate * _power(self.gamma, k)
        if value == _INF:
            raise _overflow(self, step, "gamma")
        return value


@dataclass(frozen=True)
class MultiStepDecay(Schedule):
    """torch ``MultiStepLR``: multiply by ``gamma`` at each milestone (switching at the milestone).

    ``lr(t) = initial_learning_rate * gamma ** (number of milestones <= t)``. As in torch, the
    milestones may come in any order (they are kept sorted) and a milestone given twice
    multiplies by ``gamma`` twice; ``gamma`` is any number > 0 (above 1 the learning rate grows,
    and an overflow of the float range raises ``ValueError``).

    >>> MultiStepDecay(1.0, milestones=[2, 4], gamma=0.5).curve(5)
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    initial_learning_rate: float
    milestones: Sequence[int]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        milestones = check.sequence("milestones", self.milestones, min_len=1)
        milestones = tuple(sorted(check.non_negative_int(f"milestones[{i}]", m) for i, m in enumerate(milestones)))
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            milestones=milestones,
            gamma=_factor("gamma", self.gamma),
        )

    @property
    def monotone(self) -> str | None:  # type: ignore[override]
        return "decreasing" if self.gamma <= 1.0 else "increasing"

    def __call__(self, step: int | float) -> float:
        k = bisect.bisect_right(self.milestones, _step(step))
        if not self.initial_learning_rate:
            return 0.0
        value = self.initial_learning_rate * _power(self.gamma, k)
        if value == _INF:
            raise _overflow(self, step, "gamma")
        return value


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy, torch ``OneCycleLR`` parameters and numbers (Smith & Topin 2018).

    Starts at ``max_lr / div_factor``, rises to ``max_lr`` by update ``pct_start * total_steps -
    1``, then anneals to ``max_lr / div_factor / final_div_factor`` at update ``total_steps - 1``
    (``anneal_strategy`` "cos" or "linear"). With ``three_phase`` it first comes back to the
    initial value symmetrically, then anneals to the minimum. Holds the minimum after the end
    (torch raises there).

    >>> s = OneCycle(max_lr=1.0, total_steps=100)
    >>> round(s(0), 12), round(s(29), 12), s(99), s(500)
    (0.04, 1.0, 4e-06, 4e-06)
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def __post_init__(self) -> None:
        _set(
            self,
            max_lr=_lr("max_lr", self.max_lr),
            total_steps=check.number("total_steps", self.total_steps, low=2, integer=True),
            pct_start=check.number("pct_start", self.pct_start, low=0.0, high=1.0, low_open=True, high_open=True),
            anneal_strategy=check.choice("anneal_strategy", self.anneal_strategy, ("cos", "linear")),
            div_factor=check.positive("div_factor", self.div_factor),
            final_div_factor=check.positive("final_div_factor", self.final_div_factor),
            three_phase=check.boolean("three_phase", self.three_phase),
        )
        ends = [p[0] for p in self._phases()]
        if not (ends[0] > 0 and all(b > a for a, b in zip(ends, ends[1:]))):
            raise ValueError(
                f"pct_start must leave every phase at least one update (pct_start * total_steps > 1); "
                f"got pct_start={self.pct_start} with total_steps={self.total_steps} (phase ends {ends})"
            )

    def _phases(self) -> list[tuple[float, float, float]]:
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return [
                (up, initial, self.max_lr),
                (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                (self.total_steps - 1, initial, minimum),
            ]
        return [(up, initial, self.max_lr), (self.total_steps - 1, self.max_lr, minimum)]

    def __call__(self, step: int | float) -> float:
        t = min(_step(step), self.total_steps - 1)
        start_step = 0.0
        phases = self._phases()
        for i, (end_step, start, end) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                return _anneal(start, end, pct, self.anneal_strategy)
            start_step = end_step
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cyclical learning rates, torch ``CyclicLR`` (Smith 2017) modes and numbers.

    A triangle between ``base_lr`` and ``max_lr``: ``step_size_up`` updates up, ``step_size_down``
    (default: the same) down. ``mode="triangular"`` keeps the height, ``"triangular2"`` halves it
    each cycle, ``"exp_range"`` scales it by ``gamma ** t``. It never ends. ``gamma`` is any number
    > 0 (torch bounds it not): above 1 the height grows, which needs ``max_lr >= base_lr`` (a
    growing negative height would push the learning rate below 0), and an overflow of the float
    range raises ``ValueError``.

    >>> Cyclic(0.1, 1.0, step_size_up=2).curve(5)
    [0.1, 0.55, 1.0, 0.55, 0.1]
    """

    base_lr: float
    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        _set(
            self,
            base_lr=_lr("base_lr", self.base_lr),
            max_lr=_lr("max_lr", self.max_lr),
            step_size_up=check.positive_int("step_size_up", self.step_size_up),
            mode=check.choice("mode", self.mode, ("triangular", "triangular2", "exp_range")),
            gamma=_factor("gamma", self.gamma),
        )
        if self.step_size_down is not None:
            _set(self, step_size_down=check.positive_int("step_size_down", self.step_size_down))
        if self.mode == "exp_range" and self.gamma > 1 and self.max_lr < self.base_lr:
            raise ValueError(
                f"gamma must be <= 1 in mode='exp_range' when max_lr < base_lr (a growing height below base_lr "
                f"makes the learning rate negative); got gamma={self.gamma!r}, base_lr={self.base_lr!r}, "
                f"max_lr={self.max_lr!r}"
            )

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total = up + down
        ratio = up / total
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (self.max_lr - self.base_lr) * scale
        if self.mode == "triangular":
            factor = 1.0
        elif self.mode == "triangular2":
            factor = math.ldexp(1.0, -(cycle - 1))  # 1 / 2 ** (cycle - 1), underflowing to 0
        else:
            if not height:
                return self.base_lr
            factor = _power(self.gamma, t)
        value = self.base_lr + height * factor
        if value == _INF:
            raise _overflow(self, step, "gamma")
        return value


@dataclass(frozen=True)
class SlantedTriangular(Schedule):
    """Slanted triangular learning rates, ULMFiT (Howard & Ruder 2018, eq. 3).

    ``cut = floor(total_steps * cut_frac)``;
    ``p = t / cut`` for ``t < cut``, else ``1 - (t - cut) / (cut * (1 / cut_frac - 1))``;
    ``lr(t) = max_lr * (1 + p * (ratio - 1)) / ratio``. Held at its final value
    (``t = total_steps``) after the end.

    >>> s = SlantedTriangular(0.01, total_steps=100, cut_frac=0.1, ratio=32)
    >>> s(0), s(10), round(s(100), 12) == round(0.01 / 32, 12)
    (0.0003125, 0.01, True)
    """

    max_lr: float
    total_steps: int
    cut_frac: float = 0.1
    ratio: float = 32.0

    def __post_init__(self) -> None:
        _set(
            self,
            max_lr=_lr("max_lr", self.max_lr),
            total_steps=check.positive_int("total_steps", self.total_steps),
            cut_frac=check.number("cut_frac", self.cut_frac, low=0.0, high=1.0, low_open=True, high_open=True),
            ratio=check.number("ratio", self.ratio, low=1.0),
        )
        if math.floor(self.total_steps * self.cut_frac) < 1:
            raise ValueError(
                f"cut_frac must give at least one warmup update (total_steps * cut_frac >= 1); "
                f"got cut_frac={self.cut_frac} with total_steps={self.total_steps}"
            )

    def __call__(self, step: int | float) -> float:
        t = min(_step(step), self.total_steps)
        cut = math.floor(self.total_steps * self.cut_frac)
        if t < cut:
            p = t / cut
        else:
            p = 1 - (t - cut) / (cut * (1 / self.cut_frac - 1))
        p = max(p, 0.0)
        return self.max_lr * (1 + p * (self.ratio - 1)) / self.ratio


@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Inverse square root decay with linear warmup, HF ``get_inverse_sqrt_schedule`` numbers.

    ``lr(t) = initial * t / max(1, warmup_steps)`` for ``t < warmup_steps``, then
    ``initial / sqrt((t + timescale - warmup_steps) / timescale)``; ``timescale`` defaults to
    ``warmup_steps`` (or 10,000 without warmup). It never ends.

    >>> s = InverseSqrt(1.0, warmup_steps=4)
    >>> s.curve(5), s(16)
    ([0.0, 0.25, 0.5, 0.75, 1.0], 0.5)
    """

    initial_learning_rate: float
    warmup_steps: int = 0
    timescale: int | None = None
    monotone: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            warmup_steps=check.non_negative_int("warmup_steps", self.warmup_steps),
        )
        if self.timescale is not None:
            _set(self, timescale=check.positive_int("timescale", self.timescale))

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        if t < self.warmup_steps:
            return self.initial_learning_rate * float(t) / float(max(1, self.warmup_steps))
        timescale = self.timescale if self.timescale is not None else (self.warmup_steps or 10_000)
        shift = timescale - self.warmup_steps
        return self.initial_learning_rate / math.sqrt((t + shift) / timescale)


_WSD_SHAPES = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    """Warmup-stable-decay, HF ``get_wsd_schedule`` numbers.

    Warmup from ``min_lr_ratio * initial`` to ``initial`` over ``warmup_steps`` (``warmup_type``
    linear, cosine or 1-sqrt), ``stable_steps`` at ``initial``, then ``decay_steps`` down to
    ``min_lr_ratio * initial`` (``decay_type``; ``num_cycles`` waves for cosine). Holds
    ``min_lr_ratio * initial`` after the end.

    >>> s = WarmupStableDecay(1.0, warmup_steps=2, stable_steps=2, decay_steps=2, decay_type="linear")
    >>> s.curve(7)
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """

    initial_learning_rate: float
    warmup_steps: int
    stable_steps: int
    decay_steps: int
    min_lr_ratio: float = 0.0
    warmup_type: str = "linear"
    decay_type: str = "cosine"
    num_cycles: float = 0.5

    def __post_init__(self) -> None:
        _set(
            self,
            initial_learning_rate=_lr("initial_learning_rate", self.initial_learning_rate),
            warmup_steps=check.non_negative_int("warmup_steps", self.warmup_steps),
            stable_steps=check.non_negative_int("stable_steps", self.stable_steps),
            decay_steps=check.non_negative_int("decay_steps", self.decay_steps),
            min_lr_ratio=check.unit("min_lr_ratio", self.min_lr_ratio),
            warmup_type=check.choice("warmup_type", self.warmup_type, _WSD_SHAPES),
            decay_type=check.choice("decay_type", self.decay_type, _WSD_SHAPES),
            num_cycles=check.positive("num_cycles", self.num_cycles),
        )

    def _factor(self, t: float) -> float:
        r = self.min_lr_ratio
        if t < self.warmup_steps:
            progress = float(t) / float(max(1, self.warmup_steps))
            if self.warmup_type == "linear":
                factor = progress
            elif self.warmup_type == "cosine":
                factor = 0.5 * (1.0 - math.cos(math.pi * progress))
            else:
                factor = 1.0 - math.sqrt(1.0 - progress)
            return max(0.0, factor * (1.0 - r) + r)
        if t < self.warmup_steps + self.stable_steps:
            return 1.0
        if t < self.warmup_steps + self.stable_steps + self.decay_steps:
            progress = float(t - self.warmup_steps - self.stable_steps) / float(max(1, self.decay_steps))
            if self.decay_type == "linear":
                factor = 1.0 - progress
            elif self.decay_type == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
            else:
                factor = 1.0 - math.sqrt(progress)
            return max(0.0, factor * (1.0 - r) + r)
        return r

    def __call__(self, step: int | float) -> float:
        return self.initial_learning_rate * self._factor(_step(step))


@dataclass(frozen=True)
class Join(Schedule):
    """Several schedules one after another (optax ``join_schedules``).

    ``schedules[i]`` runs from ``boundaries[i-1]`` (0 for the first) and sees its steps counted
    from that boundary: ``lr(t) = schedules[i](t - boundaries[i-1])``. ``len(schedules) ==
    len(boundaries) + 1``; at ``t == boundaries[i]`` the next schedule has started.

    >>> s = Join([Constant(1.0), ExponentialDecay(0.5, 1, 0.5)], boundaries=[2])
    >>> s.curve(4)
    [1.0, 1.0, 0.5, 0.25]
    """

    schedules: Sequence[Schedule]
    boundaries: Sequence[int]

    def __post_init__(self) -> None:
        schedules = check.sequence("schedules", self.schedules, min_len=1)
        schedules = tuple(as_schedule(s, f"schedules[{i}]") for i, s in enumerate(schedules))
        boundaries = check.sequence("boundaries", self.boundaries)
        boundaries = tuple(check.non_negative(f"boundaries[{i}]", b) for i, b in enumerate(boundaries))
        check.increasing("boundaries", boundaries)
        if len(schedules) != len(boundaries) + 1:
            raise ValueError(
                f"schedules must have len(boundaries) + 1 = {len(boundaries) + 1} elements; got {len(schedules)}"
            )
        _set(self, schedules=schedules, boundaries=boundaries)

    def __call__(self, step: int | float) -> float:
        t = _step(step)
        i = bisect.bisect_right(self.boundaries, t)
        offset = self.boundaries[i - 1] if i else 0
        return self.schedules[i](t - offset)


# A call with a misspelt or missing argument raises check.ArgumentError (a TypeError and a
# ValueError) that names the closest argument and every argument the class takes.
for _cls in list(SCHEDULES.values()):
    check.checked_init(_cls)
del _cls


# --------------------------------------------------------------------------------------------
@check.checked_init
class ReduceOnPlateau:
    """Reduce the learning rate when a metric stops improving: a small state machine.

    Not a function of the step: call :meth:`update` with each new metric value (once per epoch,
    usually); it returns the current multiplicative ``factor``, which adapters apply on top of
    any schedule: ``lr = max(schedule(t) * factor, min(schedule(t), min_lr))`` — a reduction never
    pushes the learning rate below ``min_lr`` and never raises a schedule that is already below.

    Two conventions, named, because the anchors differ:

    * ``convention="keras"`` (Keras ``ReduceLROnPlateau``): cooldown is counted first; improvement
      means ``metric < best - min_delta`` (absolute threshold by default); reduce when
      ``wait >= patience``.
    * ``convention="torch"`` (torch ``ReduceLROnPlateau``): improvement means ``metric < best * (1 -
      min_delta)`` (relative by default); reduce when ``bad_epochs > patience``.

    ``threshold_mode`` ("abs" or "rel") overrides the convention's threshold rule.
    ``mode="auto"`` picks "max" for monitors whose name contains "acc", else "min".
    ``factor`` is in [0, 1), as both references allow: 0 drops the learning rate to ``min_lr`` at
    the first plateau.

    >>> p = ReduceOnPlateau(factor=0.5, patience=2)
    >>> [p.update(v) for v in (1.0, 1.0, 1.0, 0.5)]
    [1.0, 1.0, 0.5, 0.5]
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        convention: str = "keras",
        threshold_mode: str | None = None,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a metric name such as 'val_loss'; got {monitor!r}")
        self.monitor = monitor
        self.factor = check.number("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = check.non_negative_int("patience", patience)
        self.mode = check.choice("mode", mode, ("auto", "min", "max"))
        self.min_delta = check.non_negative("min_delta", min_delta)
        self.cooldown = check.non_negative_int("cooldown", cooldown)
        self.min_lr = _lr("min_lr", min_lr)
        self.convention = check.choice("convention", convention, ("keras", "torch"))
        if threshold_mode is not None:
            check.choice("threshold_mode", threshold_mode, ("abs", "rel"))
        self.threshold_mode = threshold_mode
        self.reset()

    # -- configuration -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "factor": self.factor, "patience": self.patience, "mode": self.mode,
            "min_delta": self.min_delta, "cooldown": self.cooldown, "min_lr": self.min_lr,
            "convention": self.convention, "threshold_mode": self.threshold_mode,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ReduceOnPlateau:
        """Rebuild from :meth:`get_config` output; refuses keys the constructor does not take."""
        check.config_keys(cls.__name__, config, inspect.signature(cls).parameters)
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"ReduceOnPlateau({args})"

    # -- state ---------------------------------------------------------------------------
    @property
    def direction(self) -> str:
        """"min" or "max": the resolved mode."""
        if self.mode != "auto":
            return self.mode
        return "max" if "acc" in self.monitor else "min"

    def reset(self) -> None:
        self.best = math.inf if self.direction == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions = 0

    @property
    def current_factor(self) -> float:
        return self.factor**self.reductions

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter,
                "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.reductions = int(state["reductions"])

    def _improved(self, current: float) -> bool:
        rule = self.threshold_mode or ("abs" if self.convention == "keras" else "rel")
        d = self.min_delta
        if self.direction == "min":
            return current < (self.best - d if rule == "abs" else self.best * (1 - d))
        return current > (self.best + d if rule == "abs" else self.best * (1 + d))

    def update(self, metric: float) -> float:
        """Feed one metric value; returns the factor to apply from now on."""
        current = float(metric)
        if self.convention == "keras":
            if self.cooldown_counter > 0:
                self.cooldown_counter -= 1
                self.wait = 0
            if self._improved(current):
                self.best = current
                self.wait = 0
            elif not self.cooldown_counter > 0:
                self.wait += 1
                if self.wait >= self.patience:
                    self.reductions += 1
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
        else:
            if self._improved(current):
                self.best = current
                self.wait = 0
            else:
                self.wait += 1
            if self.cooldown_counter > 0:
                self.cooldown_counter -= 1
                self.wait = 0
            if self.wait > self.patience:
                self.reductions += 1
                self.cooldown_counter = self.cooldown
                self.wait = 0
        return self.current_factor

    def apply(self, lr: float) -> float:
        """The learning rate after the reductions so far: ``max(lr * factor, min(lr, min_lr))``."""
        return max(lr * self.current_factor, min(lr, self.min_lr))
