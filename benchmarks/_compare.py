"""What the overhead benchmarks share: alternating runs, timing the callbacks' per-step hooks, the report.

Imported by ``bench_lightning.py``, ``bench_hf.py`` and ``bench_keras.py`` (``python
benchmarks/<script>.py`` puts this folder on ``sys.path``); no framework is imported here.

* :func:`alternate` runs every variant once as a warm-up (not counted), then ``repeats`` rounds
  of every variant, the order rotated by one each round, so no variant always follows the same
  one; it returns each variant's figures in round order.
* :class:`HookTimer` finds the hooks a callback's class overrides (its MRO below the
  framework's base class: ``type(cb).__dict__`` of each class, not a list of guesses), wraps the
  per-step ones on the instance and adds the time spent inside them to the current update.
  :meth:`HookTimer.wrap_twin` adds, right after each callback, its do-nothing twin (the same
  per-step hooks with empty bodies), timed the same way in ``timer.control``: what calling and
  timing those hooks costs any callback (the frameworks call every callback's hooks, overridden
  or not), so ``timed - control`` is the hpcallbacks work itself.
* :func:`report` prints the comparison table, the ratio lines and one ``summary:`` line of
  ``key=value`` pairs that ``run_all.py`` collects into its own table.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from _machine import table

#: The goals of the issue: at most 1% per update against the same training written by hand, and
#: at most 10 us per update inside the hpcallbacks hooks.
RATIO_GOAL = 1.01
HOOK_GOAL_US = 10.0


def overridden_hooks(callback: object, base: type) -> dict[str, str]:
    """``{hook: class defining it}`` for the ``on_*`` callables the callback's classes define below ``base``."""
    found: dict[str, str] = {}
    for klass in type(callback).__mro__:
        if klass is base or klass is object:
            break
        for name, value in vars(klass).items():
            if name.startswith("on_") and callable(value) and name not in found:
                found[name] = klass.__name__
    return found


@dataclass
class HookTimer:
    """Seconds inside the wrapped per-step hooks, per update (``position()`` says which update is running)."""

    position: Callable[[], int]
    per_step: tuple[str, ...]
    base: type
    seconds: dict[int, float] = field(default_factory=dict)
    calls: dict[str, list[float]] = field(default_factory=dict)  # "Callback.hook" -> seconds of each call
    wrapped: dict[str, list[str]] = field(default_factory=dict)  # callback -> hooks timed
    once: dict[str, list[str]] = field(default_factory=dict)  # callback -> framework hooks not per step
    foreign: dict[str, list[str]] = field(default_factory=dict)  # callback -> on_* names the framework never calls
    control: HookTimer | None = None  # the do-nothing twins of wrap_twin

    def wrap(self, callback: object) -> object:
        """Wrap (on the instance) every per-step hook ``callback``'s classes override; return ``callback``."""
        label = type(callback).__name__
        hooks = overridden_hooks(callback, self.base)
        self.wrapped[label] = [h for h in hooks if h in self.per_step]
        self.once[label] = [h for h in hooks if h not in self.per_step and hasattr(self.base, h)]
        self.foreign[label] = [h for h in hooks if h not in self.per_step and not hasattr(self.base, h)]
        for name in self.wrapped[label]:
            hook = getattr(callback, name)
            tally = self.calls.setdefault(f"{label}.{name}", [])

            def timed(*a, _hook=hook, _tally=tally, **k):
                t = time.perf_counter()
                out = _hook(*a, **k)
                spent = time.perf_counter() - t
                key = self.position()
                self.seconds[key] = self.seconds.get(key, 0.0) + spent
                _tally.append(spent)
                return out

            setattr(callback, name, timed)
        return callback

    def wrap_twin(self, callback: object) -> list[object]:
        """``[callback, twin]``, both wrapped: the twin is a ``base`` subclass overriding the same per-step
        hooks with empty bodies, timed in :attr:`control` (made on first use)."""
        if self.control is None:
            self.control = HookTimer(self.position, self.per_step, self.base)
        hooks = [h for h in overridden_hooks(callback, self.base) if h in self.per_step]

        def nothing(self: object, *args: object, **kwargs: object) -> None:
            return None

        twin = type(f"Nothing[{type(callback).__name__}]", (self.base,), {h: nothing for h in hooks})()
        return [self.wrap(callback), self.control.wrap(twin)]

    def per_update(self, first: int, last: int, updates_per_key: float = 1.0) -> tuple[float, float]:
        """(median, mean) seconds per update over the keys ``first..last`` (a key missing counts 0).

        The mean is the cost of an update on average (hooks of the occasional update, such as
        ``on_log``, included): the figure held to the goal; the median is the typical update.
        """
        values = [self.seconds.get(k, 0.0) / updates_per_key for k in range(first, last + 1)]
        if not values:
            return float("nan"), float("nan")
        return statistics.median(values), statistics.fmean(values)

    def describe(self) -> list[str]:
        lines = []
        for label, hooks in self.wrapped.items():
            extra = ""
            if self.once[label]:
                extra += f"; not timed, not per step: {', '.join(self.once[label])}"
            if self.foreign[label]:
                extra += f"; not hooks of this framework (never called): {', '.join(self.foreign[label])}"
            lines.append(f"  {label}: {', '.join(hooks) or '(none)'}{extra}")
        return lines

    def breakdown(self) -> list[str]:
        """Each timed hook's calls, the median and the mean time per call over the whole run (the mean
        holds the first calls, which set the run up), and the total."""
        rows = [[name, len(spent), f"{statistics.median(spent) * 1e6:.1f}" if spent else "-",
                 f"{statistics.fmean(spent) * 1e6:.1f}" if spent else "-", f"{sum(spent) * 1e3:.2f}"]
                for name, spent in self.calls.items()]
        return table(["hook", "calls", "us/call (median)", "us/call (mean)", "total ms"], rows).splitlines()


@dataclass
class LayerLRs:
    """Each layer's learning rate at every update, whatever the order of the param groups holding them.

    ``record(param_groups, layers)`` is called once per update (just before the optimizer steps);
    ``layers`` are the model's layers bottom to top (modules with ``.parameters()``). ``order``
    is the layer of each param group, as the optimizer holds them.
    """

    lrs: list[list[float]] = field(default_factory=list)
    order: list[int | None] = field(default_factory=list)
    _owner: dict[int, int] = field(default_factory=dict)

    def record(self, param_groups: Sequence[Mapping], layers: Sequence) -> None:
        if not self._owner:
            self._owner = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
            self.order = [self._owner.get(id(g["params"][0])) if g["params"] else None for g in param_groups]
        row = [float("nan")] * len(layers)
        for group, layer in zip(param_groups, self.order):
            if layer is not None:
                row[layer] = float(group["lr"])
        self.lrs.append(row)

    def compare(self, other: LayerLRs) -> str:
        """The largest relative difference of any layer's LR at any update, against ``other``."""
        if not self.lrs or len(self.lrs) != len(other.lrs):
            return f"not comparable ({len(self.lrs)} vs {len(other.lrs)} updates recorded)"
        worst = max(abs(x - y) / max(abs(y), 1e-30) if x == x and y == y else float("inf")
                    for a, b in zip(self.lrs, other.lrs) for x, y in zip(a, b))
        return f"max relative difference {worst:.1e} over {len(self.lrs)} updates x {len(self.lrs[0])} layers"


def alternate(variants: Mapping[str, Callable[[], float]], repeats: int,
              progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """One warm-up run of each variant, then ``repeats`` rounds, the order rotated by one each round."""
    names = list(variants)
    for name in names:
        if progress:
            progress(f"warm-up: {name}")
        variants[name]()
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if progress:
                progress(f"round {r + 1}/{repeats}: {name}")
            results[name].append(variants[name]())
    return results


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "-"


def report(results: Mapping[str, Sequence[float]], described: Mapping[str, str], groups: Mapping[str, int | str],
           *, compared: str, by_hand: str = "by hand", plain: str = "plain",
           also: Iterable[tuple[str, str]] = (), hooks_us: tuple[float, float] | None = None,
           floor_us: tuple[float, float] | None = None,
           plan_groups: tuple[int, int] | None = None, notes: Iterable[str] = (),
           plain_note: str = "plain has one param group and no schedule") -> None:
    """The table (median and runs per variant), the ratio lines and the ``summary:`` line.

    ``compared`` is the variant held to the goal against ``by_hand``; ``also`` adds more
    ``(numerator, denominator)`` ratio lines (Keras: "with, no factors" / "by hand").
    """
    med = {k: statistics.median(v) for k, v in results.items()}
    width = max(len(k) for k in results)
    for k in results:
        print(f"{k + ':':<{width + 1}} {described.get(k, '')}")
    rows = [[k, f"{med[k] * 1e3:.3f}", " ".join(f"{t * 1e3:.2f}" for t in v)]
            + ([groups.get(k, "-")] if groups else []) + [_ratio(med[k], med[by_hand]), _ratio(med[k], med[plain])]
            for k, v in results.items()]
    print(table(["run", "ms/update (median)", "runs (ms)"] + (["param groups"] if groups else [])
                + ["/ by hand", "/ plain"], rows))
    for note in notes:
        print(note)
    summary = {}
    key_hand, key_plain = f"{compared}/{by_hand}", f"{compared}/{plain}"
    r_hand, r_plain = med[compared] / med[by_hand], med[compared] / med[plain]
    print(f"ratio {key_hand}: {r_hand:.3f} (goal <= {RATIO_GOAL}: {'met' if r_hand <= RATIO_GOAL else 'NOT met'})")
    summary[key_hand] = f"{r_hand:.3f}"
    for num, den in also:
        r = med[num] / med[den]
        print(f"ratio {num}/{den}: {r:.3f} (goal <= {RATIO_GOAL}: {'met' if r <= RATIO_GOAL else 'NOT met'})")
        summary[f"{num}/{den}"] = f"{r:.3f}"
    print(f"ratio {key_plain}: {r_plain:.3f} (no goal: {plain_note})")
    summary[key_plain] = f"{r_plain:.3f}"
    if hooks_us is not None:
        median_us, mean_us = hooks_us
        print(f"hooks per update: {mean_us:.1f} us mean, {median_us:.1f} us median "
              f"({mean_us / (med[compared] * 1e6):.2%} of a '{compared}' update), as timed")
        summary["hooks_us"] = f"{mean_us:.1f}"
        if floor_us is not None:
            floor_median, floor_mean = floor_us
            net = mean_us - floor_mean
            ok = "met" if net <= HOOK_GOAL_US else "NOT met"
            print(f"  the same hooks doing nothing (a do-nothing twin after each callback, timed the same way): "
                  f"{floor_mean:.1f} us mean, {floor_median:.1f} us median")
            print(f"  hpcallbacks' own work per update: {net:.1f} us (goal <= {HOOK_GOAL_US:g} us: {ok})")
            summary["floor_us"] = f"{floor_mean:.1f}"
            summary["net_us"] = f"{net:.1f}"
        summary["hooks_median_us"] = f"{median_us:.1f}"
    if groups:
        summary["groups"] = ",".join(f"{k}:{groups.get(k, '-')}" for k in results)
    if plan_groups is not None:
        summary["plan_without_factors_groups"] = f"{plan_groups[0]}/{plan_groups[1]}"
    print("summary: " + " ".join(f"{_slug(k)}={_slug(v)}" for k, v in summary.items()))


def _slug(text: str) -> str:
    """``with, no factors`` -> ``with-no-factors``: one token for the ``summary:`` line."""
    return text.replace(", ", "-").replace(" ", "-")
