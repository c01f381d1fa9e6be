"""The learning-rate range test (Smith 2017, "Cyclical learning rates"): the rule every adapter runs.

Train for a few updates while the learning rate grows from ``min_lr`` to ``max_lr``, watch the
loss, and pick a learning rate from the curve (handbook H1/H3: the learning rate is the most
important hyperparameter). Pure Python, no framework: an adapter only feeds losses in.

* :class:`LRRange` (:func:`lr_range`) — the learning rate of each test update: exponential
  (``min_lr * (max_lr / min_lr) ** (t / (n - 1))``, as fastai and Lightning use it) or linear
  (Smith's original).
* :class:`RangeTest` — the loop's state: ``lr(t)`` for test update ``t``, ``record(loss)``
  (smooths the loss and says when to stop: the smoothed loss diverged, or was not finite),
  ``result()``.
* :func:`smooth` — the debiased exponential moving average of the losses;
  :func:`suggest` — the suggestion rule: ``"steepest"`` (the learning rate where the smoothed
  loss falls fastest against ``log(lr)``) or ``"min_loss"`` (a tenth of the learning rate at the
  smoothed loss's minimum); :func:`min_points` — how many points it wants.
* :class:`RangeResult` — what a test saw; :attr:`RangeResult.cut_short` and
  :func:`partial_curve_warning` — the rule for a suggestion from a partial curve (below).
* :class:`FinderBase` — the framework-free part of every adapter's ``LRFinder`` (its arguments,
  its result, the warnings and the log).

A cut-short test. The classic stop — the smoothed loss above ``divergence`` x its best once the
curve has as many points as the suggestion rule wants — is the normal end of a range test
(fastai and Lightning stop there too): nothing is said. A test that stopped because the loss
became nan or inf (at any point), or that diverged before the rule had its :func:`min_points`
(``skip_start + 3 + skip_end`` for ``"steepest"``, 3 for ``"min_loss"``), is *cut short*: its
suggestion comes from a partial curve. The suggestion is kept (and an adapter's ``apply=True``
still applies it: valid but suspicious input trains and warns), and every adapter's ``LRFinder``
warns once with a :class:`hpcallbacks.advice.HyperparameterWarning` whose text is
:func:`partial_curve_warning`'s: where it stopped, after how many of the planned points, and
what to change. A test that ran all its planned points is never cut short, however few.

An adapter's loop::

    test = RangeTest(lr_range(1e-7, 10, 100))
    for t in range(test.num_steps):
        set_learning_rate(test.lr(t))
        if test.record(train_one_update()):
            break
    result = test.result()          # result.suggestion, result.learning_rates, result.losses

>>> r = lr_range(1e-4, 1.0, num_steps=5)
>>> [round(r(t), 10) for t in range(5)]
[0.0001, 0.001, 0.01, 0.1, 1.0]
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _checks as check
from ._values import Value
from .advice import HyperparameterWarning

__all__ = ["LRRange", "lr_range", "RangeTest", "RangeResult", "Suggestion", "smooth", "suggest", "diverged",
           "min_points", "partial_curve_warning", "FinderBase", "plot_range_test", "METHODS", "MODES",
           "STOP_REASONS"]

_log = logging.getLogger("hpcallbacks")

#: Suggestion rules of :func:`suggest`.
METHODS = ("steepest", "min_loss")
#: Learning-rate ramps of :class:`LRRange`.
MODES = ("exponential", "linear")
#: Why a range test stopped (:attr:`RangeResult.stop_reason`): the smoothed loss exceeded
#: ``divergence`` x its best, or the loss (or its running average) was not finite.
STOP_REASONS = ("diverged", "not_finite")


@dataclass(frozen=True)
class LRRange(Value):
    """The learning rates of a range test: ``num_steps`` updates from ``min_lr`` to ``max_lr``.

    ``mode="exponential"``: ``lr(t) = min_lr * (max_lr / min_lr) ** (t / (num_steps - 1))``
    (equal steps on a log axis); ``"linear"``: ``min_lr + (max_lr - min_lr) * t / (num_steps - 1)``.
    ``lr(0) = min_lr``, ``lr(num_steps - 1) = max_lr``, held after. Not a
    :class:`hpcallbacks.Schedule` (a test, not a training schedule: it grows without bound by
    design), but it reads like one: ``r(t)``, ``r.curve(n)``.

    >>> LRRange(1e-3, 1e-1, num_steps=3).learning_rates
    [0.001, 0.01, 0.1]
    """

    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_lr", check.positive("min_lr", self.min_lr))
        object.__setattr__(self, "max_lr", check.number("max_lr", self.max_lr, low=self.min_lr, low_open=True))
        object.__setattr__(self, "num_steps", check.number("num_steps", self.num_steps, low=2, integer=True))
        object.__setattr__(self, "mode", check.choice("mode", self.mode, MODES))

    def __call__(self, step: int | float) -> float:
        t = check.non_negative("step", step)
        frac = min(t / (self.num_steps - 1), 1.0)
        if frac >= 1.0:
            return self.max_lr
        if self.mode == "linear":
            return self.min_lr + (self.max_lr - self.min_lr) * frac
        return self.min_lr * (self.max_lr / self.min_lr) ** frac

    def curve(self, n: int, start: int = 0) -> list[float]:
        """The learning rates of test updates ``start .. start + n - 1``."""
        return [self(start + i) for i in range(check.non_negative_int("n", n))]

    @property
    def learning_rates(self) -> list[float]:
        """Every test update's learning rate (rounded to the exact ends)."""
        lrs = self.curve(self.num_steps)
        lrs[0], lrs[-1] = self.min_lr, self.max_lr
        return lrs


def lr_range(min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100, mode: str = "exponential") -> LRRange:
    """The :class:`LRRange` from ``min_lr`` to ``max_lr`` over ``num_steps`` test updates."""
    return LRRange(min_lr, max_lr, num_steps, mode)


def smooth(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """The debiased exponential moving average of ``losses`` (fastai's range-test smoothing).

    ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`` from ``avg_{-1} = 0``, reported as
    ``avg_i / (1 - beta ** (i + 1))``. ``beta=0`` returns the losses as they are.

    >>> smooth([1.0, 1.0, 1.0], beta=0.9)
    [1.0, 1.0, 1.0]
    """
    beta = check.number("beta", beta, low=0.0, high=1.0, high_open=True)
    out: list[float] = []
    avg = 0.0
    for i, loss in enumerate(check.sequence("losses", losses)):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out.append(avg / (1.0 - beta ** (i + 1)))
    return out


def diverged(smoothed_loss: float, best_loss: float, divergence: float = 4.0) -> bool:
    """True when the test should stop: ``smoothed_loss > divergence * best_loss``, or it is not finite.

    For a negative best loss (a log-likelihood can be) the bound is ``best + (divergence - 1) * |best|``.

    >>> diverged(5.0, 1.0), diverged(3.0, 1.0), diverged(float("nan"), 1.0)
    (True, False, True)
    """
    divergence = check.number("divergence", divergence, low=1.0, low_open=True)
    if not math.isfinite(smoothed_loss):
        return True
    return smoothed_loss > best_loss + (divergence - 1.0) * abs(best_loss)


@dataclass(frozen=True)
class Suggestion(Value):
    """A suggested learning rate: ``learning_rate``, the test update ``index`` it comes from, the ``method``."""

    learning_rate: float
    index: int
    method: str


def _slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """dy/dx at every point: one-sided at the ends, central (non-uniform spacing) inside."""
    n = len(y)
    out = []
    for i in range(n):
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        out.append((y[hi] - y[lo]) / (x[hi] - x[lo]))
    return out


def suggest(
    learning_rates: Sequence[float],
    losses: Sequence[float],
    method: str = "steepest",
    beta: float = 0.98,
    skip_start: int = 10,
    skip_end: int = 5,
) -> Suggestion:
    """The learning rate a range test suggests.

    The losses are smoothed (:func:`smooth` with ``beta``) and, for ``"steepest"``, the first
    ``skip_start`` and last ``skip_end`` points are left out (the start is noisy, the end is
    where the loss explodes; both shrink when the test was short). Then:

    * ``"steepest"``: the learning rate where the smoothed loss falls fastest, the most negative
      ``d loss / d log(lr)`` (Smith 2017; Lightning's and fastai's default);
    * ``"min_loss"``: a tenth of the learning rate with the lowest smoothed loss (the rule of
      thumb "one order of magnitude below where the loss is lowest").

    Refuses (``ValueError``) fewer than 3 points, lengths that differ and learning rates that
    do not increase.

    >>> lrs = [10 ** (-4 + k / 4) for k in range(17)]       # 1e-4 .. 1
    >>> losses = [1.0] * 6 + [0.95, 0.8, 0.4, 0.2, 0.12, 0.1, 0.09, 0.3, 2.0, 9.0, 40.0]
    >>> s = suggest(lrs, losses, beta=0.0, skip_start=0, skip_end=0)
    >>> s.index, round(s.learning_rate, 6)
    (8, 0.01)
    >>> m = suggest(lrs, losses, method="min_loss", beta=0.0)   # lowest loss at 0.1
    >>> m.index, round(m.learning_rate, 6)
    (12, 0.01)
    """
    method = check.choice("method", method, METHODS)
    lrs = [check.positive(f"learning_rates[{i}]", v) for i, v in enumerate(check.sequence("learning_rates",
                                                                                         learning_rates))]
    values = [float(v) for v in check.sequence("losses", losses)]
    if len(lrs) != len(values):
        raise ValueError(f"learning_rates and losses must have the same length; got {len(lrs)} and {len(values)}")
    if len(lrs) < 3:
        raise ValueError(f"losses must hold at least 3 points to suggest a learning rate; got {len(lrs)} (the test "
                         f"stopped early: lower min_lr or raise num_steps)")
    if any(b <= a for a, b in zip(lrs, lrs[1:])):
        raise ValueError("learning_rates must increase")
    skip_start = check.non_negative_int("skip_start", skip_start)
    skip_end = check.non_negative_int("skip_end", skip_end)
    smoothed = smooth(values, beta)
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if len(finite) < 3:
        raise ValueError("losses must have at least 3 finite values to suggest a learning rate")
    last = finite[-1] + 1  # a loss that became inf/nan ends the usable curve
    if method == "min_loss":
        best = min(range(last), key=lambda i: (smoothed[i], i))
        return Suggestion(lrs[best] / 10.0, best, method)
    while skip_start + skip_end > 0 and last - skip_start - skip_end < 3:  # a short test: skip less
        if skip_start >= skip_end:
            skip_start -= 1
        else:
            skip_end -= 1
    lo, hi = skip_start, last - skip_end
    logs = [math.log(v) for v in lrs[lo:hi]]
    slopes = _slopes(logs, smoothed[lo:hi])
    best = min(range(len(slopes)), key=lambda i: (slopes[i], i))
    return Suggestion(lrs[lo + best], lo + best, method)


def min_points(method: str = "steepest", skip_start: int = 10, skip_end: int = 5) -> int:
    """The fewest points :func:`suggest` wants to apply ``method`` as configured.

    ``"steepest"``: ``skip_start + 3 + skip_end`` (with fewer it skips less, see :func:`suggest`);
    ``"min_loss"``: 3. A test that diverged with fewer is cut short (:attr:`RangeResult.cut_short`).

    >>> min_points(), min_points("steepest", 2, 1), min_points("min_loss")
    (18, 6, 3)
    """
    method = check.choice("method", method, METHODS)
    if method == "min_loss":
        return 3
    return check.non_negative_int("skip_start", skip_start) + 3 + check.non_negative_int("skip_end", skip_end)


@dataclass(frozen=True)
class RangeResult(Value):
    """What a range test saw: the ``learning_rates`` and raw ``losses`` of the updates it ran, and
    ``suggestion`` (``None`` when no rule could be applied, see ``error``).

    ``stopped_early``: the test stopped before its last update, or at it, on the loss;
    ``planned_steps``: the updates it was to run (``num_steps``; ``None`` when unknown, as in a
    result saved by an older version); ``stop_reason``: one of :data:`STOP_REASONS`, or ``None``;
    ``needed_points``: :func:`min_points` of its rule. :attr:`cut_short` says whether the
    suggestion comes from a partial curve (see the module docstring).

    >>> r = RangeResult((1e-3, 1e-2, 1e-1, 1.0), (1.0, 0.5, 0.4, float("nan")), Suggestion(1e-2, 1, "steepest"),
    ...                 True, planned_steps=30, stop_reason="not_finite", needed_points=18)
    >>> r.num_points, r.cut_short
    (4, True)
    """

    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    suggestion: Suggestion | None = None
    stopped_early: bool = False
    error: str | None = None
    planned_steps: int | None = None
    stop_reason: str | None = None
    needed_points: int = 3

    @property
    def num_points(self) -> int:
        """How many test updates ran (points of the curve)."""
        return len(self.losses)

    @property
    def cut_short(self) -> bool:
        """True when the test stopped on a loss that was not finite, or diverged before it had
        ``needed_points`` points: its suggestion is from a partial curve. The classic divergence
        stop after enough points is the normal end of a range test (False)."""
        if not self.stopped_early:
            return False
        return self.stop_reason == "not_finite" or self.num_points < self.needed_points

    def get_config(self) -> dict:
        return {"learning_rates": list(self.learning_rates), "losses": list(self.losses),
                "suggestion": None if self.suggestion is None else self.suggestion.get_config(),
                "stopped_early": self.stopped_early, "error": self.error, "planned_steps": self.planned_steps,
                "stop_reason": self.stop_reason, "needed_points": self.needed_points}

    @classmethod
    def from_config(cls, config: dict) -> RangeResult:
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict from get_config(); got {config!r}")
        s = config.get("suggestion")
        losses = tuple(config.get("losses", ()))
        stopped = bool(config.get("stopped_early", False))
        reason = config.get("stop_reason")
        if "stop_reason" not in config and stopped:  # saved before stop_reason existed: read it off the losses
            reason = "not_finite" if losses and not math.isfinite(float(losses[-1])) else "diverged"
        return cls(tuple(config.get("learning_rates", ())), losses, None if s is None else Suggestion(**s), stopped,
                   config.get("error"), config.get("planned_steps"), reason, int(config.get("needed_points", 3)))


def partial_curve_warning(result: RangeResult, applied: bool = False, who: str = "LRFinder") -> str | None:
    """The warning text for a suggestion from a cut-short range test (:attr:`RangeResult.cut_short`), else None.

    The one text every adapter's ``LRFinder`` issues (as a :class:`hpcallbacks.advice.HyperparameterWarning`):
    after how many of the planned points the test stopped and why, the suggestion, and what to
    change. ``applied``: the suggestion became the run's learning rate all the same. None when
    the test was not cut short or gave no suggestion (that is warned about on its own).

    >>> r = RangeResult((1e-3, 1e-2, 1e-1, 1.0), (1.0, 0.5, 0.4, float("nan")), Suggestion(1e-2, 1, "steepest"),
    ...                 True, planned_steps=30, stop_reason="not_finite", needed_points=18)
    >>> for part in partial_curve_warning(r).split("; "):  # doctest: +ELLIPSIS
    ...     print(part)
    LRFinder: the range test stopped after 4 of 30 points (the loss became nan at lr=1)
    the suggestion 0.01 is from a partial curve: lower max_lr to 0.1 or below (or find what overflows: ...
    """
    if result.suggestion is None or not result.cut_short:
        return None
    n = result.num_points
    planned = "" if result.planned_steps is None else f" of {result.planned_steps}"
    lr = result.learning_rates[-1]
    if result.stop_reason == "not_finite":
        last = float(result.losses[-1])
        what = f"the loss became {last}" if not math.isfinite(last) else "the smoothed loss overflowed"
        why = f"{what} at lr={lr:.3g}"
        fix = (f"lower max_lr to {lr / 10:.3g} or below (or find what overflows: the loss, its scale, mixed "
               "precision), and raise num_steps for more points before it")
    else:
        why = (f"the smoothed loss diverged at lr={lr:.3g}, before the {result.suggestion.method!r} rule's "
               f"{result.needed_points} points")
        fix = "raise num_steps or lower max_lr (more points before the loss diverges), or lower skip_start / skip_end"
    also = " and is applied all the same" if applied else ""
    return (f"{who}: the range test stopped after {n}{planned} points ({why}); the suggestion "
            f"{result.suggestion.learning_rate:.3g} is from a partial curve{also}: {fix}")


@dataclass
class RangeTest:
    """The state of one range test: feed it one loss per test update, it says when to stop.

    ``lr(t)`` is the learning rate of test update ``t``; ``record(loss)`` stores the loss of
    the update just made and returns True when the test should stop (the smoothed loss
    :func:`diverged` from the best one, after at least ``min_steps`` updates; or the loss is not
    finite). ``result()`` applies :func:`suggest` to what was recorded, and says why and after
    how many of the planned updates the test stopped.

    >>> test = RangeTest(lr_range(1e-3, 1.0, num_steps=4), beta=0.0)
    >>> [test.record(loss) for loss in (1.0, 0.5, 0.4, 9.0)]
    [False, False, False, True]
    """

    range: LRRange = field(default_factory=LRRange)
    beta: float = 0.98
    divergence: float = 4.0
    method: str = "steepest"
    skip_start: int = 10
    skip_end: int = 5
    min_steps: int = 3
    losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.range, LRRange):
            raise ValueError(f"range must be an LRRange (hpcallbacks.finder.lr_range(...)); got {self.range!r}")
        self.beta = check.number("beta", self.beta, low=0.0, high=1.0, high_open=True)
        self.divergence = check.number("divergence", self.divergence, low=1.0, low_open=True)
        self.method = check.choice("method", self.method, METHODS)
        self.skip_start = check.non_negative_int("skip_start", self.skip_start)
        self.skip_end = check.non_negative_int("skip_end", self.skip_end)
        self.min_steps = check.non_negative_int("min_steps", self.min_steps)
        self._avg = 0.0
        self._best = math.inf
        self._stopped = False
        self._reason: str | None = None

    @property
    def num_steps(self) -> int:
        return self.range.num_steps

    def lr(self, step: int) -> float:
        """The learning rate of test update ``step``."""
        return self.range(step)

    def record(self, loss: float) -> bool:
        """Store the loss of the next test update; True when the test should stop now."""
        loss = float(loss)
        i = len(self.losses)
        self.losses.append(loss)
        if not math.isfinite(loss):
            self._stopped, self._reason = True, "not_finite"
            return True
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        smoothed = self._avg / (1.0 - self.beta ** (i + 1))
        if i + 1 > self.min_steps and diverged(smoothed, self._best, self.divergence):
            self._stopped, self._reason = True, "diverged" if math.isfinite(smoothed) else "not_finite"
            return True
        self._best = min(self._best, smoothed)
        return False

    def result(self) -> RangeResult:
        """The learning rates and losses recorded, and the suggestion (None, with ``error``, if none)."""
        n = len(self.losses)
        lrs = tuple(self.lr(t) for t in range(n))
        try:
            s: Suggestion | None = suggest(lrs, self.losses, self.method, self.beta, self.skip_start, self.skip_end)
            error = None
        except ValueError as e:
            s, error = None, str(e)
        return RangeResult(lrs, tuple(self.losses), s, self._stopped, error, self.num_steps, self._reason,
                           min_points(self.method, self.skip_start, self.skip_end))


class FinderBase:
    """The framework-free part of every adapter's ``LRFinder``, mixed into its callback class.

    The adapter's ``__init__`` (which keeps the public signature) calls :meth:`_init_finder` for
    the arguments every adapter takes alike (checked now) and sets ``apply`` itself; its trial
    updates run :meth:`_new_test`'s :class:`RangeTest`; :meth:`_finish` keeps and reports the
    result: a ``UserWarning`` when there is no suggestion, else an info log, plus a
    :class:`hpcallbacks.advice.HyperparameterWarning` (:func:`partial_curve_warning`) when the
    test was cut short; the plot; and returns the learning rate to apply (``apply=True`` and a
    suggestion), else None. ``get_config()`` gives the arguments, ``suggestion`` the suggested LR.
    """

    range: LRRange
    plot: str | Path | None
    apply: bool
    result: RangeResult | None

    def _init_finder(self, min_lr: float, max_lr: float, num_steps: int, mode: str, method: str, beta: float,
                     divergence: float, skip_start: int, skip_end: int, plot: str | Path | None) -> None:
        self.range = lr_range(min_lr, max_lr, num_steps, mode)
        self._test_args = dict(beta=beta, divergence=divergence, method=method, skip_start=skip_start,
                               skip_end=skip_end)
        RangeTest(self.range, **self._test_args)  # checks the arguments now
        if plot is not None and not isinstance(plot, (str, Path)):
            raise ValueError(f"plot must be None or a file path for the picture; got {plot!r}")
        self.plot = plot
        self.result = None

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (plain JSON)."""
        return {"min_lr": self.range.min_lr, "max_lr": self.range.max_lr, "num_steps": self.range.num_steps,
                "mode": self.range.mode, **self._test_args, "plot": None if self.plot is None else str(self.plot),
                "apply": self.apply}

    @property
    def suggestion(self) -> float | None:
        """The suggested learning rate, or None (no test yet, or no suggestion possible)."""
        if self.result is None or self.result.suggestion is None:
            return None
        return self.result.suggestion.learning_rate

    def _new_test(self) -> RangeTest:
        """A fresh :class:`RangeTest` with this finder's arguments."""
        return RangeTest(self.range, **self._test_args)

    def _finish(self, result: RangeResult, plot: bool = True) -> float | None:
        """Keep ``result``, report it (``plot``: draw the picture here, e.g. on the main process only);
        the learning rate to apply, or None."""
        self.result = result
        if result.suggestion is None:
            warnings.warn(f"LRFinder: no suggestion: {result.error}", stacklevel=3)
        else:
            _log.info("LRFinder: suggested learning rate %g (%s, %d test updates)", result.suggestion.learning_rate,
                      result.suggestion.method, len(result.losses))
            message = partial_curve_warning(result, applied=self.apply)
            if message is not None:
                warnings.warn(message, HyperparameterWarning, stacklevel=3)
        if self.plot is not None and plot:
            plot_range_test(result, self.plot, beta=self._test_args["beta"])
        return self.suggestion if self.apply else None


def plot_range_test(result: RangeResult, path: str | Path, beta: float = 0.98, title: str | None = None) -> Path:
    """Draw loss (raw and smoothed) against the learning rate (log axis), the suggestion marked, into ``path``."""
    from .plot import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    lrs, losses = list(result.learning_rates), list(result.losses)
    ax.plot(lrs, losses, lw=0.8, alpha=0.4, label="loss")
    if losses:
        ax.plot(lrs, smooth(losses, beta), lw=1.6, label=f"smoothed (beta={beta:g})")
    if result.suggestion is not None:
        s = result.suggestion
        ax.axvline(s.learning_rate, color="C3", ls="--", lw=1.2, label=f"suggestion {s.learning_rate:.3g} ({s.method})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title or "learning-rate range test", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
