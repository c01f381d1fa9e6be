"""Batch-size rules (handbook H4): LR scaling, gradient accumulation, batch ramps, LARS.

Every rule is a plain function of numbers, so each framework adapter applies the same numbers:

* :func:`scale_learning_rate` — the learning rate for a new batch size (linear or square-root
  rule) and :func:`scaling_warmup` — the gradual warmup the linear rule needs (Goyal et al. 2017).
* :func:`accumulation_steps` — micro-batches per optimizer update for a target batch size, as an
  :class:`Accumulation`; :meth:`Accumulation.back_off` keeps the effective batch when the
  micro-batch must shrink (out of memory), where shrinking the batch silently would change the
  training (as HF's ``auto_find_batch_size`` does).
* :class:`BatchRamp` — "don't decay the learning rate, increase the batch size" (Smith et al.
  2017): the batch size per stage that gives the same noise scale ``lr / B`` as a decay schedule.
* :func:`fit_micro_batch` — the largest micro-batch that fits in memory among the divisors of the
  target batch per process, with the accumulation that keeps the target exact, as a
  :class:`MicroBatch` (what the adapters' ``MicroBatchFinder`` sets; :func:`memory_probe` turns a
  training step into its ``fits(n)`` probe).
* :func:`lars_trust_ratio` — LARS / LARC layer-wise trust ratio: the formula the tensor
  mechanics apply per layer.

What the adapters' callbacks share besides the numbers (argument checks, messages):
:func:`scaling_options`, :func:`scaling_factor` (``ScaleLearningRate``); :func:`accumulation_for`,
:func:`inexact_warning`, :func:`resume_warning` (``GradientAccumulation``);
:meth:`BatchRamp.check_run`, :meth:`BatchRamp.epoch_batch` (``BatchRamp``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _checks as check
from ._values import Value
from .schedules import Constant, Schedule, Warmup, as_schedule

__all__ = [
    "scale_learning_rate",
    "scaling_warmup",
    "Accumulation",
    "accumulation_steps",
    "BatchRamp",
    "RampStage",
    "lars_trust_ratio",
    "scaling_options",
    "scaling_factor",
    "accumulation_for",
    "inexact_warning",
    "resume_warning",
    "MicroBatch",
    "fit_micro_batch",
    "memory_probe",
]

_RULES = ("linear", "sqrt")
_log = logging.getLogger("hpcallbacks")


def _scale(base_batch_size: int, batch_size: int, rule: str) -> float:
    base = check.positive_int("base_batch_size", base_batch_size)
    new = check.positive_int("batch_size", batch_size)
    rule = check.choice("rule", rule, _RULES)
    return new / base if rule == "linear" else math.sqrt(new / base)


def scale_learning_rate(lr: float, base_batch_size: int, batch_size: int, rule: str = "linear") -> float:
    """The learning rate for ``batch_size`` given one that works at ``base_batch_size``.

    ``rule="linear"`` (Goyal et al. 2017): ``lr * batch_size / base_batch_size`` — use it with
    :func:`scaling_warmup` when scaling up. ``rule="sqrt"`` (Krizhevsky 2014; Hoffer et al. 2017):
    ``lr * sqrt(batch_size / base_batch_size)``, the usual rule for Adam-type optimizers.

    >>> scale_learning_rate(0.1, 256, 1024)
    0.4
    >>> scale_learning_rate(1e-3, 256, 1024, rule="sqrt")
    0.002
    """
    lr = check.non_negative("lr", lr)
    return lr * _scale(base_batch_size, batch_size, rule)


def scaling_warmup(
    schedule: Schedule | float,
    base_batch_size: int,
    batch_size: int,
    steps_per_epoch: int,
    warmup_epochs: float = 5.0,
    rule: str = "linear",
) -> Schedule:
    """``schedule`` (already scaled for ``batch_size``) behind the gradual warmup of Goyal et al.

    Goyal et al. 2017 ramp linearly from the unscaled learning rate to the scaled one over the
    first 5 epochs: with ``k = batch_size / base_batch_size`` (``sqrt`` of it for
    ``rule="sqrt"``) and ``w = round(warmup_epochs * steps_per_epoch)`` updates, this returns
    ``Warmup(schedule, w, start_value=schedule(0) / k)``. Like every :class:`Warmup`, the wrapped
    schedule counts its steps from the end of the warmup (a step decay at update ``m`` moves to
    ``m + w``; subtract ``w`` from its milestones to keep them where they were). When the batch
    does not grow (``k <= 1``) or ``w == 0``, ``schedule`` is returned as is.

    >>> from hpcallbacks.schedules import Constant
    >>> lr = scale_learning_rate(0.1, 256, 1024)
    >>> s = scaling_warmup(Constant(lr), 256, 1024, steps_per_epoch=10)
    >>> s.warmup_steps, round(s(0), 12), s(50)
    (50.0, 0.1, 0.4)
    """
    schedule = as_schedule(schedule)
    k = _scale(base_batch_size, batch_size, rule)
    steps = round(check.positive_int("steps_per_epoch", steps_per_epoch)
                  * check.non_negative("warmup_epochs", warmup_epochs))
    if k <= 1.0 or steps == 0:
        return schedule
    return Warmup(schedule, warmup_steps=steps, start_value=schedule(0) / k)


def scaling_options(base_batch_size: Any, rule: Any, warmup_epochs: Any) -> tuple[int, str, float]:
    """The arguments of an adapter's ``ScaleLearningRate``, checked: ``(base_batch_size, rule, warmup_epochs)``.

    >>> scaling_options(256, "sqrt", 5)
    (256, 'sqrt', 5.0)
    """
    scale_learning_rate(1.0, base_batch_size, base_batch_size, rule)  # checks base_batch_size and rule
    return int(base_batch_size), rule, check.non_negative("warmup_epochs", warmup_epochs)


def scaling_factor(base_batch_size: int, batch_size: int, rule: str, warmup_epochs: float,
                   steps_per_epoch: int | None, unknown: str = "a data set without a length") -> Schedule:
    """``m(t)``, the factor an adapter's ``ScaleLearningRate`` multiplies the learning rate by (logged).

    :func:`scaling_warmup` of ``Constant(k)``, ``k`` the :func:`scale_learning_rate` factor of
    ``batch_size`` against ``base_batch_size``: from 1 to ``k`` over ``warmup_epochs`` epochs of
    ``steps_per_epoch`` updates. ``steps_per_epoch=None`` (unknown: ``unknown`` says why) is
    refused when a warmup is needed.

    >>> scaling_factor(256, 512, "linear", 0, None)
    Constant(value=2.0)
    """
    k = scale_learning_rate(1.0, base_batch_size, batch_size, rule)
    if steps_per_epoch is None and warmup_epochs > 0 and k > 1:
        raise ValueError(f"ScaleLearningRate: warmup_epochs counts epochs, but the updates per epoch are unknown "
                         f"({unknown}): pass warmup_epochs=0")
    factor = scaling_warmup(Constant(k), base_batch_size, batch_size, steps_per_epoch or 1, warmup_epochs, rule)
    _log.info("ScaleLearningRate: effective batch %d vs base %d (%s): LR x %g after %s", batch_size,
              base_batch_size, rule, k, factor)
    return factor


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Accumulation(Value):
    """Gradient accumulation: ``steps`` micro-batches per optimizer update.

    ``effective_batch_size = steps * per_device_batch_size * world_size``; ``exact`` says
    whether that equals ``target_batch_size`` (always true without a target). The optimizer
    update count, and so every schedule, advances once per ``steps`` micro-batches.

    >>> a = Accumulation(steps=4, per_device_batch_size=32, world_size=2)
    >>> a.effective_batch_size, a.exact
    (256, True)
    """

    steps: int
    per_device_batch_size: int
    world_size: int = 1
    target_batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", check.positive_int("steps", self.steps))
        object.__setattr__(self, "per_device_batch_size",
                           check.positive_int("per_device_batch_size", self.per_device_batch_size))
        object.__setattr__(self, "world_size", check.positive_int("world_size", self.world_size))
        if self.target_batch_size is not None:
            object.__setattr__(self, "target_batch_size",
                               check.positive_int("target_batch_size", self.target_batch_size))

    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer update: ``steps * per_device_batch_size * world_size``."""
        return self.steps * self.per_device_batch_size * self.world_size

    @property
    def exact(self) -> bool:
        """True when the effective batch is the target (or there is no target)."""
        return self.target_batch_size is None or self.effective_batch_size == self.target_batch_size

    def back_off(self, per_device_batch_size: int | None = None) -> Accumulation:
        """The same effective batch with a smaller micro-batch (after an out-of-memory error).

        The new micro-batch is ``per_device_batch_size`` when given, else the largest size of at
        most half the current one that keeps the effective batch exact: it must divide
        ``steps * per_device_batch_size``, and ``steps`` grows to match (halving an even
        micro-batch doubles ``steps``). Refuses a micro-batch that cannot shrink further.

        >>> Accumulation(steps=2, per_device_batch_size=64).back_off()
        Accumulation(steps=4, per_device_batch_size=32, world_size=1, target_batch_size=None)
        >>> Accumulation(steps=1, per_device_batch_size=48).back_off(per_device_batch_size=16).steps
        3
        """
        samples = self.steps * self.per_device_batch_size  # per device and update: kept
        if per_device_batch_size is None:
            if self.per_device_batch_size == 1:
                raise ValueError("per_device_batch_size is already 1; the micro-batch cannot shrink further")
            new = max(d for d in range(1, self.per_device_batch_size // 2 + 1) if samples % d == 0)
        else:
            new = check.number("per_device_batch_size", per_device_batch_size,
                               low=1, high=self.per_device_batch_size - 1, integer=True)
            if samples % new:
                raise ValueError(
                    f"per_device_batch_size must divide steps * per_device_batch_size = {samples} to keep "
                    f"the effective batch {self.effective_batch_size}; got {new}"
                )
        return Accumulation(samples // new, new, self.world_size, self.target_batch_size)


def accumulation_steps(
    target_batch_size: int, per_device_batch_size: int, world_size: int = 1, exact: bool = True
) -> Accumulation:
    """Micro-batches per update so that ``steps * per_device_batch_size * world_size`` is the target.

    A target that is not a multiple of ``per_device_batch_size * world_size`` is refused when
    ``exact`` (the message names the nearest reachable sizes); with ``exact=False`` the nearest
    reachable one is used (the smaller on a tie) and the result's ``exact`` is False. A target
    below one micro-batch per device is always refused.

    >>> accumulation_steps(256, 32, world_size=2)
    Accumulation(steps=4, per_device_batch_size=32, world_size=2, target_batch_size=256)
    >>> a = accumulation_steps(100, 32, exact=False)
    >>> a.steps, a.effective_batch_size, a.exact
    (3, 96, False)
    """
    target = check.positive_int("target_batch_size", target_batch_size)
    per_device = check.positive_int("per_device_batch_size", per_device_batch_size)
    world = check.positive_int("world_size", world_size)
    exact = check.boolean("exact", exact)
    unit = per_device * world
    if target < unit:
        raise ValueError(
            f"target_batch_size must be >= per_device_batch_size * world_size = {per_device} * {world} "
            f"= {unit}; got {target}"
        )
    steps, rest = divmod(target, unit)
    if rest:
        lower, upper = steps * unit, (steps + 1) * unit
        if exact:
            raise ValueError(
                f"target_batch_size must be a multiple of per_device_batch_size * world_size = {unit} "
                f"when exact=True; got {target} (nearest reachable: {lower} or {upper}; or pass exact=False)"
            )
        if upper - target < target - lower:
            steps += 1
    return Accumulation(steps, per_device, world, target)


def accumulation_for(target_batch_size: int, per_device_batch_size: int, world_size: int, exact: bool,
                     where: str) -> Accumulation:
    """:func:`accumulation_steps` for an adapter's ``GradientAccumulation``; a refusal names ``where``
    (the batch and world size as the framework calls them)."""
    try:
        return accumulation_steps(target_batch_size, per_device_batch_size, world_size, exact=exact)
    except ValueError as e:
        raise ValueError(f"GradientAccumulation: with {where}: {e}") from None


def inexact_warning(accumulation: Accumulation, batch: str | None = None) -> str | None:
    """What ``GradientAccumulation`` warns when the target is not reachable (``exact=False``), else None.

    ``batch`` names the micro-batch and world size in the framework's words.

    >>> for part in inexact_warning(accumulation_steps(100, 32, exact=False), "batch 32 x world size 1").split("; "):
    ...     print(part)
    GradientAccumulation: target_batch_size=100 is not reachable with batch 32 x world size 1
    using 3 micro-batches per update, an effective batch of 96
    """
    if accumulation.exact:
        return None
    where = "" if batch is None else f" with {batch}"
    return (f"GradientAccumulation: target_batch_size={accumulation.target_batch_size} is not reachable{where}; "
            f"using {accumulation.steps} micro-batches per update, an effective batch of "
            f"{accumulation.effective_batch_size}")


def resume_warning(saved: dict[str, Any] | None, accumulation: Accumulation) -> str | None:
    """What ``GradientAccumulation`` warns when a checkpoint's accumulation (``saved``, a ``get_config()``)
    differs from the run's, else None."""
    if not saved or Accumulation.from_config(saved) == accumulation:
        return None
    return (f"GradientAccumulation: the checkpoint's accumulation {saved} differs from this run's "
            f"{accumulation.get_config()}: the effective batch changed on resume")


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MicroBatch(Value):
    """The micro-batch that fits and the accumulation that keeps the target batch (:func:`fit_micro_batch`).

    ``micro_batch_size * accumulation * world_size == target_batch_size`` always (checked);
    ``probes`` lists the sizes tried, in order, as ``(size, fits)`` pairs.

    >>> m = MicroBatch(8, 4, world_size=2, target_batch_size=64, probes=((8, True), (16, False)))
    >>> m.effective_batch_size, m.as_accumulation().steps
    (64, 4)
    >>> MicroBatch.from_config(m.get_config()) == m
    True
    """

    micro_batch_size: int
    accumulation: int
    world_size: int
    target_batch_size: int
    probes: tuple[tuple[int, bool], ...] = ()

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "accumulation", "world_size", "target_batch_size"):
            object.__setattr__(self, name, check.positive_int(name, getattr(self, name)))
        object.__setattr__(self, "probes", tuple((int(n), bool(ok)) for n, ok in self.probes))
        if self.effective_batch_size != self.target_batch_size:
            raise ValueError(f"micro_batch_size * accumulation * world_size = {self.micro_batch_size} * "
                             f"{self.accumulation} * {self.world_size} = {self.effective_batch_size} must be "
                             f"target_batch_size = {self.target_batch_size}")

    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer update: ``micro_batch_size * accumulation * world_size``."""
        return self.micro_batch_size * self.accumulation * self.world_size

    def as_accumulation(self) -> Accumulation:
        """The same numbers as an :class:`Accumulation` (what ``GradientAccumulation`` would set)."""
        return Accumulation(self.accumulation, self.micro_batch_size, self.world_size, self.target_batch_size)

    def describe(self) -> str:
        """``"8 x 4 micro-batches x 2 processes = 64 samples per update"``."""
        return (f"{self.micro_batch_size} x {self.accumulation} micro-batches x {self.world_size} process(es) = "
                f"{self.effective_batch_size} samples per update")


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def fit_micro_batch(target_batch_size: int, world_size: int, fits: Callable[[int], bool],
                    max_micro_batch: int | None = None) -> MicroBatch:
    """The largest micro-batch that fits, with the accumulation that keeps ``target_batch_size`` exact.

    With ``per = target_batch_size / world_size`` samples per process and update, the candidates
    are the divisors ``d`` of ``per`` (at most ``max_micro_batch``), and

    * ``micro_batch_size = max{d : per % d == 0, d <= max_micro_batch, fits(d)}``,
    * ``accumulation = per / micro_batch_size``,

    so ``micro_batch_size * accumulation * world_size == target_batch_size``: the recipe's batch,
    hence its learning rate and schedule (which count optimizer updates), are kept; only how
    many samples go through the model at once changes. ``fits(n)`` is the probe (True: a
    training step on ``n`` samples per process fits in memory); assuming that a size fits when a
    larger one does, the divisors are searched by bisection (about ``log2`` of their number of
    probes, none repeated), and the result is always a size that was probed True. Refused with a
    ``ValueError`` saying what to change: a target below the world size or not a multiple of it,
    ``max_micro_batch < 1``, and no candidate that fits (not even 1 sample).

    >>> fits = lambda n: n <= 8                  # a model that runs out of memory above 8 samples
    >>> m = fit_micro_batch(64, 1, fits)
    >>> m.micro_batch_size, m.accumulation, m.probes
    (8, 8, ((8, True), (32, False), (16, False)))
    >>> fit_micro_batch(48, 1, fits).accumulation   # divisors of 48: ... 6, 8, 12 ...
    6
    >>> m = fit_micro_batch(64, 2, fits)           # 32 samples per process
    >>> m.micro_batch_size, m.accumulation, m.world_size
    (8, 4, 2)
    >>> fit_micro_batch(64, 1, fits, max_micro_batch=7).micro_batch_size
    4
    """
    target = check.positive_int("target_batch_size", target_batch_size)
    world = check.positive_int("world_size", world_size)
    if max_micro_batch is not None:
        max_micro_batch = check.positive_int("max_micro_batch", max_micro_batch)
    if target < world:
        raise ValueError(f"target_batch_size={target} is smaller than the world size {world}: every process needs at "
                         f"least one sample per update; raise target_batch_size to a multiple of {world} or run on "
                         "fewer processes")
    per, rest = divmod(target, world)
    if rest:
        raise ValueError(f"target_batch_size={target} is not a multiple of the world size {world}: every process "
                         f"takes the same micro-batch; use {per * world} or {(per + 1) * world}")
    candidates = [d for d in _divisors(per) if max_micro_batch is None or d <= max_micro_batch]
    probes: list[tuple[int, bool]] = []
    low, high = -1, len(candidates)  # candidates[low] fits (-1: none yet), candidates[high] does not
    while high - low > 1:
        mid = (low + high) // 2
        ok = fits(candidates[mid])
        if not isinstance(ok, bool):
            raise ValueError(f"fits({candidates[mid]}) must return True or False; got {ok!r}")
        probes.append((candidates[mid], ok))
        low, high = (mid, high) if ok else (low, mid)
    if low < 0:
        cap = "" if max_micro_batch is None else f" up to max_micro_batch={max_micro_batch}"
        raise ValueError(f"no micro-batch fits for target_batch_size={target} on {world} process(es): not even "
                         f"{candidates[0]} sample per process (divisors of {per}{cap}: {candidates}); reduce the "
                         "model's memory (mixed precision, activation checkpointing, fewer trainable layers) or "
                         "spread the target over more processes")
    micro = candidates[low]
    return MicroBatch(micro, per // micro, world, target, tuple(probes))


def memory_probe(step: Callable[[int], Any], out_of_memory: Callable[[BaseException], bool],
                 free: Callable[[], Any] | None = None) -> Callable[[int], bool]:
    """``fits(n)`` for :func:`fit_micro_batch` from ``step(n)``, a training step on ``n`` samples.

    ``fits(n)`` is True when ``step(n)`` returns, False when it raises an error that
    ``out_of_memory`` recognises (``free()`` is called then, to release what the step held); any
    other error is raised as is, never read as "does not fit".

    >>> def step(n):
    ...     if n > 8:
    ...         raise MemoryError(n)
    >>> fits = memory_probe(step, lambda e: isinstance(e, MemoryError))
    >>> fits(8), fits(9)
    (True, False)
    """
    def fits(n: int) -> bool:
        try:
            step(n)
            return True
        except BaseException as e:  # re-raised unless it is an out-of-memory error
            if not out_of_memory(e):
                raise
        if free is not None:  # after the except block: the error's traceback no longer holds the step's tensors
            free()
        return False

    return fits


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RampStage:
    """One stage of a :class:`BatchRamp`: from ``start`` (in base-batch steps) on, this batch."""

    start: float
    batch_size: int
    accumulation_steps: int


@dataclass(frozen=True)
class BatchRamp(Value):
    """Increase the batch size instead of decaying the learning rate (Smith et al. 2017).

    SGD's noise scale is proportional to ``lr / B``. Given the decay ``schedule`` you would run
    at ``base_batch_size`` and its reference rate ``lr0`` (``base_learning_rate``, default
    ``schedule(0)``), at progress ``t`` the ramp uses

    * ``B(t) = clamp(floor_u(base_batch_size * lr0 / schedule(t)), base_batch_size, floor_u(max_batch_size))``
      where ``floor_u`` rounds down to a multiple of ``u = per_device_batch_size * world_size``,
    * ``lr(t) = schedule(t) * B(t) / base_batch_size``,

    so ``lr(t) / B(t) == schedule(t) / base_batch_size`` always: the batch grows while the
    schedule decays, and once the batch reaches its cap (or the schedule rises above ``lr0``,
    as in a warmup) the learning rate moves instead. ``accumulation(t)`` gives the micro-batches
    per update (``B(t) / u``; ``per_device_batch_size`` defaults to
    ``base_batch_size / world_size``, so the base batch needs no accumulation).

    ``t`` counts progress in base-batch steps, ``samples_seen / base_batch_size`` — the step the
    decay schedule would be at — not optimizer updates: with a larger batch an epoch has fewer
    updates. Adapters keep the number of samples seen.

    >>> from hpcallbacks.schedules import PiecewiseConstantDecay
    >>> decay = PiecewiseConstantDecay([100, 200], [0.1, 0.02, 0.004])
    >>> ramp = BatchRamp(decay, base_batch_size=128, max_batch_size=1024)
    >>> [ramp.batch_size(t) for t in (0, 150, 250)]
    [128, 640, 1024]
    >>> [round(ramp.learning_rate(t), 12) for t in (0, 150, 250)]
    [0.1, 0.1, 0.032]
    """

    schedule: Schedule
    base_batch_size: int
    max_batch_size: int
    per_device_batch_size: int | None = None
    world_size: int = 1
    base_learning_rate: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        base = check.positive_int("base_batch_size", self.base_batch_size)
        world = check.positive_int("world_size", self.world_size)
        object.__setattr__(self, "base_batch_size", base)
        object.__setattr__(self, "world_size", world)
        object.__setattr__(self, "max_batch_size",
                           check.number("max_batch_size", self.max_batch_size, low=base, integer=True))
        if self.per_device_batch_size is None:
            if base % world:
                raise ValueError(f"base_batch_size must be a multiple of world_size = {world}; got {base}")
        else:
            per_device = check.positive_int("per_device_batch_size", self.per_device_batch_size)
            object.__setattr__(self, "per_device_batch_size", per_device)
            if base % (per_device * world):
                raise ValueError(
                    f"base_batch_size must be a multiple of per_device_batch_size * world_size = "
                    f"{per_device * world}; got {base}"
                )
        if self.base_learning_rate is not None:
            object.__setattr__(self, "base_learning_rate",
                               check.positive("base_learning_rate", self.base_learning_rate))
        elif not self.schedule(0) > 0:
            raise ValueError(
                f"base_learning_rate must be given when schedule(0) is not > 0 (a warmup from 0); "
                f"schedule(0) = {self.schedule(0)!r}"
            )

    @property
    def unit(self) -> int:
        """The batch-size granularity: ``per_device_batch_size * world_size``."""
        if self.per_device_batch_size is None:
            return self.base_batch_size
        return self.per_device_batch_size * self.world_size

    def _reference(self) -> float:
        return self.base_learning_rate if self.base_learning_rate is not None else self.schedule(0)

    def batch_size(self, step: float) -> int:
        """``B(t)``: the batch size at progress ``step`` (base-batch steps)."""
        lr = self.schedule(step)
        cap = self.max_batch_size // self.unit * self.unit
        if lr <= 0:
            return cap
        ideal = self.base_batch_size * self._reference() / lr
        rounded = math.floor(ideal / self.unit * (1 + 1e-9)) * self.unit  # 1e-9: float noise in lr0 / lr
        return min(max(rounded, self.base_batch_size), cap)

    def learning_rate(self, step: float) -> float:
        """``lr(t) = schedule(t) * B(t) / base_batch_size``."""
        return self.schedule(step) * self.batch_size(step) / self.base_batch_size

    def noise_scale(self, step: float) -> float:
        """``lr(t) / B(t)``, equal to ``schedule(t) / base_batch_size``."""
        return self.learning_rate(step) / self.batch_size(step)

    def accumulation(self, step: float) -> Accumulation:
        """The micro-batches per update at ``step``: ``B(t) / unit`` of ``per_device_batch_size``."""
        per_device = self.unit // self.world_size
        return Accumulation(self.batch_size(step) // self.unit, per_device, self.world_size)

    def check_run(self, per_device_batch_size: int, world_size: int, given: str = "the train dataloader gives",
                  change: str = "the batch_size") -> None:
        """Refuse a run whose world size or batch unit (per-device batch x world size) is not this ramp's.

        ``given`` says where the run's batch comes from, ``change`` what the user may change instead.
        """
        if world_size != self.world_size:
            raise ValueError(f"BatchRamp: the ramp's world_size is {self.world_size} but the Trainer runs "
                             f"{world_size} processes: build BatchRamp(..., world_size={world_size})")
        if per_device_batch_size * world_size != self.unit:
            raise ValueError(f"BatchRamp: the ramp's unit (per_device_batch_size x world_size) is {self.unit} "
                             f"but {given} {per_device_batch_size} x {world_size}: build BatchRamp(..., "
                             f"per_device_batch_size={per_device_batch_size}, world_size={world_size}) or change "
                             f"{change}")

    def epoch_batch(self, progress: float, before: int, epoch: int) -> int:
        """The batch of an epoch starting at ``progress`` (``before``: the last epoch's; a change is logged)."""
        size = self.batch_size(progress)
        if size != before:
            _log.info("BatchRamp: epoch %d, progress %.1f: batch %d -> %d", epoch, progress, before, size)
        return size

    def stages(self, total_steps: int) -> tuple[RampStage, ...]:
        """The batch-size changes over ``total_steps`` base-batch steps (evaluated at whole steps)."""
        total = check.positive_int("total_steps", total_steps)
        stages: list[RampStage] = []
        for t in range(total):
            size = self.batch_size(t)
            if not stages or stages[-1].batch_size != size:
                stages.append(RampStage(t, size, size // self.unit))
        return tuple(stages)


# --------------------------------------------------------------------------------------------
def lars_trust_ratio(
    w_norm: float,
    g_norm: float,
    trust_coefficient: float = 0.001,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    clip: bool = False,
    lr: float | None = None,
) -> float:
    """The LARS trust ratio of one layer (You et al. 2017), with the LARC clip variant.

    ``ratio = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)``, and ``1.0``
    when ``||w||`` or ``||g||`` is 0 (a fresh zero-initialised layer or a layer without
    gradient keeps the global rate). The layer's gradient (plus ``weight_decay * w``) is
    multiplied by the ratio, so its learning rate is ``lr * ratio``. With ``clip=True`` (LARC,
    NVIDIA apex) the ratio is ``min(ratio / lr, 1)``, so the layer's learning rate is
    ``min(ratio, lr)``: never above the global rate; ``lr`` is required then and ignored
    otherwise. This is the formula the tensor mechanics (torch, Keras) apply per layer.

    >>> round(lars_trust_ratio(w_norm=2.0, g_norm=0.5, trust_coefficient=0.02), 6)
    0.08
    >>> lars_trust_ratio(2.0, 0.5, trust_coefficient=0.02, clip=True, lr=0.05)  # 0.08 / 0.05 > 1
    1.0
    >>> round(lars_trust_ratio(2.0, 0.5, trust_coefficient=0.02, clip=True, lr=0.16), 6)
    0.5
    >>> lars_trust_ratio(0.0, 0.5)
    1.0
    """
    w = check.non_negative("w_norm", w_norm)
    g = check.non_negative("g_norm", g_norm)
    trust = check.positive("trust_coefficient", trust_coefficient)
    decay = check.non_negative("weight_decay", weight_decay)
    eps = check.non_negative("eps", eps)
    clip = check.boolean("clip", clip)
    if clip:
        if lr is None:
            raise ValueError("lr must be the global learning rate (> 0) when clip=True; got None")
        lr = check.positive("lr", lr)
    elif lr is not None:
        check.non_negative("lr", lr)
    if w == 0 or g == 0:
        return 1.0
    ratio = trust * w / (g + decay * w + eps)
    return min(ratio / lr, 1.0) if clip else ratio
