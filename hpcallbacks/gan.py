"""GAN training schedules (handbook H7): instance noise, label smoothing, label flipping.

Pure functions from the discriminator's update count ``step`` and labels as floats (1.0 real,
0.0 fake; soft labels in between) to numbers; the adapters only apply them to tensors:

* :class:`InstanceNoise` — the standard deviation of the Gaussian noise added to the
  discriminator's inputs (or layers), annealed by any schedule (Sønderby et al. 2016);
* :class:`LabelSmoothing` — one-sided (real 1 -> 0.9, fake stays 0; Salimans et al. 2016) or
  two-sided (fake 0 -> 0.1) smoothing, optionally scheduled;
* :class:`LabelFlip` — flip a label with a probability that changes over training; the decision
  for sample ``index`` at ``step`` depends only on ``(seed, step, index)``, so every framework
  (and a resumed run) flips the same labels.

Applied together, flip first, then smooth:
``smoothing.targets(step, flip.targets(step, labels))``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import _checks as check
from ._values import Value
from .schedules import _MASK64, Schedule, _splitmix64, as_schedule

__all__ = ["InstanceNoise", "LabelSmoothing", "LabelFlip", "flip_uniform"]


def _labels(labels: Sequence[float]) -> tuple[float, ...]:
    values = check.sequence("labels", labels)
    return tuple(check.unit(f"labels[{i}]", y) for i, y in enumerate(values))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@dataclass(frozen=True)
class InstanceNoise(Value):
    """Instance noise: ``std(t) = max(0, schedule(t))``, any schedule (or a constant number).

    Adapters add ``N(0, std(t)^2)`` noise to the discriminator's real and fake inputs (or its
    layers, handbook H7) at discriminator update ``t``; annealing it to 0 is the usual choice.

    >>> from hpcallbacks.schedules import PolynomialDecay
    >>> noise = InstanceNoise(PolynomialDecay(0.1, decay_steps=1000, end_learning_rate=0.0))
    >>> noise.std(0), noise.std(500), noise.std(5000)
    (0.1, 0.05, 0.0)
    """

    schedule: Schedule

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", as_schedule(self.schedule))

    def std(self, step: int | float) -> float:
        """The noise standard deviation at discriminator update ``step`` (never negative)."""
        return max(0.0, self.schedule(step))


@dataclass(frozen=True)
class LabelSmoothing(Value):
    """Label smoothing for the discriminator: ``target = y * real_t + (1 - y) * fake_t``.

    With strength ``s(t)`` (``clamp(schedule(t), 0, 1)``, or 1 without a schedule):
    ``real_t = 1 - (1 - real) * s(t)`` and ``fake_t = fake * s(t)``, so ``s = 1`` is the full
    smoothing and ``s = 0`` hard labels. ``fake=0.0`` is one-sided smoothing (Salimans et al.
    2016 recommend it: smoothing the fake side rewards the generator's mistakes); ``fake=0.1``
    two-sided. ``real`` must lie in (0.5, 1] and ``fake`` in [0, 0.5): smoothing never flips
    a label (that is :class:`LabelFlip`).

    >>> LabelSmoothing(real=0.9).targets(0, [1.0, 0.0])
    [0.9, 0.0]
    >>> LabelSmoothing(real=0.9, fake=0.1).targets(0, [1.0, 0.0])
    [0.9, 0.1]
    """

    real: float = 0.9
    fake: float = 0.0
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "real", check.number("real", self.real, low=0.5, high=1.0, low_open=True))
        object.__setattr__(self, "fake", check.number("fake", self.fake, low=0.0, high=0.5, high_open=True))
        if self.schedule is not None:
            object.__setattr__(self, "schedule", as_schedule(self.schedule))

    @property
    def two_sided(self) -> bool:
        """True when the fake labels are smoothed too."""
        return self.fake > 0

    def strength(self, step: int | float) -> float:
        """``s(t)`` in [0, 1]: how much of the smoothing applies at ``step``."""
        if self.schedule is None:
            check.non_negative("step", step)
            return 1.0
        return _clamp(self.schedule(step), 0.0, 1.0)

    def real_target(self, step: int | float) -> float:
        """The target for a real label (1.0) at ``step``."""
        return 1.0 - (1.0 - self.real) * self.strength(step)

    def fake_target(self, step: int | float) -> float:
        """The target for a fake label (0.0) at ``step``."""
        return self.fake * self.strength(step)

    def targets(self, step: int | float, labels: Sequence[float]) -> list[float]:
        """The smoothed target of every label (each in [0, 1])."""
        real, fake = self.real_target(step), self.fake_target(step)
        return [y * real + (1.0 - y) * fake for y in _labels(labels)]


def flip_uniform(seed: int, step: int, index: int) -> float:
    """A number in [0, 1) that depends only on ``(seed, step, index)`` (splitmix64).

    ``u = (splitmix64(splitmix64(((seed & 0xFFFFFFFF) << 32) ^ step) ^ index) >> 11) / 2**53``,
    the same hashing as :func:`hpcallbacks.schedules.standard_normal`; adapters that vectorise
    the flips must reproduce it exactly.

    >>> flip_uniform(0, 3, 7) == flip_uniform(0, 3, 7), 0 <= flip_uniform(1, 2, 3) < 1
    (True, True)
    """
    seed = check.number("seed", seed, low=0, high=2**32 - 1, integer=True)
    return _uniform(seed, check.non_negative_int("step", step), check.non_negative_int("index", index))


def _uniform(seed: int, step: int, index: int) -> float:
    h = _splitmix64(((seed & 0xFFFFFFFF) << 32) ^ (step & _MASK64))
    h = _splitmix64(h ^ (index & _MASK64))
    return (h >> 11) / 9007199254740992.0


@dataclass(frozen=True)
class LabelFlip(Value):
    """Flip discriminator labels (``y -> 1 - y``) with probability ``p(t)`` at update ``t``.

    ``p(t) = clamp(schedule(t), 0, 1)`` — any schedule, or a constant number. Sample ``index``
    of the batch at ``step`` is flipped when ``flip_uniform(seed, step, index) < p(step)``: a
    deterministic decision, the same in every framework and after a resume.

    >>> from hpcallbacks.schedules import PolynomialDecay
    >>> flip = LabelFlip(PolynomialDecay(0.05, decay_steps=1000, end_learning_rate=0.0), seed=1)
    >>> flip.probability(0), flip.probability(1000)
    (0.05, 0.0)
    >>> LabelFlip(1.0).targets(5, [1.0, 0.0, 0.75])
    [0.0, 1.0, 0.25]
    """

    schedule: Schedule
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        object.__setattr__(self, "seed", check.number("seed", self.seed, low=0, high=2**32 - 1, integer=True))

    def probability(self, step: int | float) -> float:
        """``p(t)``: the flip probability at ``step``."""
        return _clamp(self.schedule(step), 0.0, 1.0)

    def flips(self, step: int, n: int) -> list[bool]:
        """Which of the ``n`` samples of the batch at ``step`` are flipped."""
        step = check.non_negative_int("step", step)
        n = check.non_negative_int("n", n)
        p = self.probability(step)
        return [_uniform(self.seed, step, i) < p for i in range(n)]

    def targets(self, step: int, labels: Sequence[float]) -> list[float]:
        """The labels with the flipped ones replaced by ``1 - y``."""
        values = _labels(labels)
        return [1.0 - y if f else y for y, f in zip(values, self.flips(step, len(values)), strict=True)]
