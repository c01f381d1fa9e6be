"""Fine-tuning plans (handbook H5): which layer groups train when, and at what LR factor.

A model is seen as an ordered list of layer groups, bottom (input side) to top (the new head).
The adapters discover the groups or take them from the user; the plan only needs their count.

* :class:`FreezePlan` — stages of trainable groups, by epoch or by optimizer update, the
  BatchNorm policy of frozen groups, and the per-group learning-rate factors.
* :class:`LRFactors` — discriminative learning rates (H5 way 1): ULMFiT's geometric 2.6,
  fastai's ``slice(lo, hi)``, timm's ``layer_decay``, or explicit factors. The top group's
  factor is always 1, so ``group LR = schedule(t) * factor[g]``.
* :meth:`FreezePlan.recommend` — the H5 table (data size x similarity).
* :func:`fine_tune_learning_rate` — the H2 rule: 1 to 2 orders of magnitude below from scratch.

A plan is resolved against the model with :meth:`FreezePlan.resolve`, which gives a
:class:`ResolvedPlan`: the update at which each stage starts and the trainable set of every
stage. Every adapter asks the resolved plan and nothing else, so the stages are the same in
Keras, Lightning and HF.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _checks as check

__all__ = [
    "BN_POLICIES",
    "Stage",
    "LRFactors",
    "FreezePlan",
    "ResolvedPlan",
    "Recommendation",
    "fine_tune_learning_rate",
    "DEFAULT_LARGE_DATASET",
]

#: BatchNorm policy of frozen groups: ``train`` (batch statistics, moving averages updated, as a
#: plain ``requires_grad=False`` does), ``freeze_stats`` (inference mode: running statistics used
#: and kept; affine weights follow the group's trainability), ``freeze_all`` (inference mode and
#: affine weights frozen even when the group is trainable).
BN_POLICIES = ("train", "freeze_stats", "freeze_all")

#: Number of labelled training examples from which a data set counts as "large" in the H5 table.
DEFAULT_LARGE_DATASET = 10_000


def _set(obj: Any, **values: Any) -> None:
    for key, value in values.items():
        object.__setattr__(obj, key, value)


def _trainable_spec(name: str, value: Any) -> int | float | str | tuple[int, ...]:
    """``"all"``, an int k >= 1 (top k groups), a float in (0, 1) (top fraction), or indices."""
    if value == "all" and isinstance(value, str):
        return "all"
    if isinstance(value, (list, tuple)):
        indices = tuple(check.non_negative_int(f"{name}[{i}]", v) for i, v in enumerate(value))
        if not indices:
            raise ValueError(f"{name} must name at least one group index; got []")
        return tuple(sorted(set(indices)))
    if isinstance(value, float) and not isinstance(value, bool) and 0 < value < 1:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return check.positive_int(name, value)
    raise ValueError(
        f"{name} must be 'all', a number of top groups >= 1, a fraction in (0, 1), "
        f"or a list of group indices; got {value!r}"
    )


@dataclass(frozen=True)
class Stage:
    """From ``start`` (epochs or updates, per the plan's ``unit``) the ``trainable`` groups train.

    ``trainable`` is ``"all"``, ``k`` (the top k groups), a fraction ``f`` in (0, 1) (the top
    ``ceil(f * n)`` groups), or explicit group indices (0 = bottom).
    """

    start: float
    trainable: int | float | str | tuple[int, ...]

    def __post_init__(self) -> None:
        _set(self, start=check.non_negative("start", self.start),
             trainable=_trainable_spec("trainable", self.trainable))

    def count_from_top(self, num_groups: int) -> int | None:
        """How many top groups train, or None for explicit indices."""
        t = self.trainable
        if t == "all":
            return num_groups
        if isinstance(t, tuple):
            return None
        if isinstance(t, float):
            return max(1, math.ceil(t * num_groups - 1e-9))
        return t  # type: ignore[return-value]

    def mask(self, num_groups: int) -> tuple[bool, ...]:
        k = self.count_from_top(num_groups)
        if k is None:
            bad = [i for i in self.trainable if i >= num_groups]  # type: ignore[union-attr]
            if bad:
                raise ValueError(
                    f"trainable names group index {bad[0]} but the model has {num_groups} groups (0..{num_groups - 1})"
                )
            return tuple(i in self.trainable for i in range(num_groups))  # type: ignore[operator]
        if k > num_groups:
            raise ValueError(
                f"trainable asks for the top {k} groups but the model has only {num_groups}: "
                f"pass groups= with at least {k} groups or lower the plan's stage"
            )
        return tuple(i >= num_groups - k for i in range(num_groups))

    def to_json(self) -> list[Any]:
        t = self.trainable
        return [self.start, list(t) if isinstance(t, tuple) else t]


@dataclass(frozen=True)
class LRFactors:
    """Per-group learning-rate factors, bottom to top; the top group's factor is 1.

    * ``LRFactors.geometric(2.6)`` (ULMFiT): ``factor[g] = decay ** -(n - 1 - g)``.
    * ``LRFactors.layer_decay(0.75)`` (timm): ``factor[g] = layer_decay ** (n - 1 - g)``.
    * ``LRFactors.spread(lo, hi)`` (fastai ``slice(lo, hi)``): group LRs evenly spaced in log
      space from ``lo`` to ``hi``, so ``factor[g] = (lo / hi) ** ((n - 1 - g) / (n - 1))``.
    * ``LRFactors.explicit([...])``: given factors, divided by the last one.
    * ``LRFactors.uniform()``: all 1.

    >>> LRFactors.geometric(2.0).resolve(3)
    (0.25, 0.5, 1.0)
    >>> LRFactors.spread(1e-5, 1e-3).resolve(3)
    (0.01, 0.1, 1.0)
    """

    kind: str = "uniform"
    value: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        kind = check.choice("kind", self.kind, ("uniform", "geometric", "layer_decay", "spread", "explicit"))
        value = self.value
        if kind == "explicit":
            value = check.sequence("factors", value, min_len=1)
            value = tuple(check.positive(f"factors[{i}]", v) for i, v in enumerate(value))
        elif kind == "geometric":
            value = check.number("decay", value, low=1.0)
        elif kind == "layer_decay":
            value = check.number("layer_decay", value, low=0.0, high=1.0, low_open=True)
        elif kind == "spread":
            value = check.number("lo / hi", value, low=0.0, high=1.0, low_open=True)
        _set(self, kind=kind, value=value)

    @classmethod
    def uniform(cls) -> LRFactors:
        return cls("uniform", 1.0)

    @classmethod
    def geometric(cls, decay: float = 2.6) -> LRFactors:
        """ULMFiT's discriminative fine-tuning: each group below gets the LR above / ``decay``."""
        return cls("geometric", check.number("decay", decay, low=1.0))

    @classmethod
    def layer_decay(cls, layer_decay: float = 0.75) -> LRFactors:
        """timm's ``layer_decay``: ``factor = layer_decay ** depth_from_top``."""
        return cls("layer_decay", check.number("layer_decay", layer_decay, low=0.0, high=1.0, low_open=True))

    @classmethod
    def spread(cls, lo: float, hi: float) -> LRFactors:
        """fastai's ``slice(lo, hi)``: bottom group at ``lo``, top group at ``hi``."""
        lo = check.positive("lo", lo)
        hi = check.positive("hi", hi)
        if lo > hi:
            raise ValueError(f"lo must be <= hi; got lo={lo!r}, hi={hi!r}")
        return cls("spread", lo / hi)

    @classmethod
    def explicit(cls, factors: Sequence[float]) -> LRFactors:
        return cls("explicit", tuple(factors))

    @classmethod
    def parse(cls, value: Any) -> LRFactors:
        """The one reading of a ``factors=`` argument, shared by every adapter's ``DiscriminativeLR``.

        An ``LRFactors`` is kept; a number ``d >= 1`` is ``geometric(d)`` (ULMFiT: each group below
        gets the LR above / d); a number in (0, 1) is ``layer_decay(d)`` (timm / BEiT); a list or
        tuple is ``explicit(list)`` (bottom to top); a dict is a ``get_config()``. Anything else is
        a ``ValueError`` naming ``factors``.

        >>> LRFactors.parse(2.0).resolve(3), LRFactors.parse(0.5).resolve(3)
        ((0.25, 0.5, 1.0), (0.25, 0.5, 1.0))
        >>> LRFactors.parse([1, 2, 4]).resolve(3)
        (0.25, 0.5, 1.0)
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_config(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not value > 0 or value != value or value == math.inf:
                raise ValueError(f"factors must be a geometric decay >= 1 or a layer decay in (0, 1); got {value!r}")
            return cls.geometric(value) if value >= 1 else cls.layer_decay(value)
        if isinstance(value, (list, tuple)):
            return cls.explicit(value)
        raise ValueError(f"factors must be an LRFactors, a geometric decay >= 1, a layer decay in (0, 1) or a list of "
                         f"per-group factors (bottom to top); got {value!r}")

    def resolve(self, num_groups: int) -> tuple[float, ...]:
        n = check.positive_int("num_groups", num_groups)
        depth = [n - 1 - g for g in range(n)]
        if self.kind == "uniform":
            return (1.0,) * n
        if self.kind == "geometric":
            return tuple(float(self.value) ** -d for d in depth)  # type: ignore[operator]
        if self.kind == "layer_decay":
            return tuple(float(self.value) ** d for d in depth)  # type: ignore[operator]
        if self.kind == "spread":
            if n == 1:
                return (1.0,)
            return tuple(float(self.value) ** (d / (n - 1)) for d in depth)  # type: ignore[operator]
        factors = self.value
        if len(factors) != n:  # type: ignore[arg-type]
            raise ValueError(f"factors has {len(factors)} entries but the model has {n} groups")  # type: ignore
        top = factors[-1]  # type: ignore[index]
        return tuple(f / top for f in factors)  # type: ignore[union-attr]

    def get_config(self) -> dict[str, Any]:
        v = self.value
        return {"kind": self.kind, "value": list(v) if isinstance(v, tuple) else v}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LRFactors:
        """Rebuild from :meth:`get_config` output; refuses keys other than ``kind`` and ``value``."""
        check.config_keys("LRFactors", config, ("kind", "value"))
        v = config.get("value", 1.0)
        return cls(config.get("kind", "uniform"), tuple(v) if isinstance(v, list) else v)


def fine_tune_learning_rate(from_scratch_learning_rate: float, orders: float = 1.0) -> float:
    """Handbook H2: a fine-tuning LR sits 1 to 2 orders of magnitude below the from-scratch LR.

    ``lr = from_scratch_learning_rate / 10 ** orders`` with ``orders`` in [1, 2].

    >>> fine_tune_learning_rate(1e-2)
    0.001
    """
    lr = check.positive("from_scratch_learning_rate", from_scratch_learning_rate)
    orders = check.number("orders", orders, low=1.0, high=2.0)
    return lr / 10**orders


@dataclass(frozen=True)
class ResolvedPlan:
    """A plan bound to a model's group count and a run's steps per epoch.

    ``starts[i]`` is the update at which stage ``i`` begins (``starts[0] == 0``, strictly
    increasing); ``masks[i]`` the trainable flag of each group (bottom to top) during stage i.
    """

    num_groups: int
    starts: tuple[int, ...]
    masks: tuple[tuple[bool, ...], ...]
    factors: tuple[float, ...]
    bn: str

    def stage_at(self, update: int) -> int:
        """Index of the stage in force for the update that follows ``update`` updates."""
        return bisect.bisect_right(self.starts, update) - 1

    def trainable_at(self, update: int) -> tuple[bool, ...]:
        return self.masks[self.stage_at(update)]

    def lr(self, group: int, base_lr: float) -> float:
        """``base_lr * factor[group]``: the rule every adapter applies to each group."""
        return base_lr * self.factors[group]

    @property
    def ever_trainable(self) -> tuple[bool, ...]:
        """Groups that train in some stage: what the optimizer must hold from the start."""
        return tuple(any(m[g] for m in self.masks) for g in range(self.num_groups))


@dataclass(frozen=True)
class FreezePlan:
    """Which layer groups are trainable at each point of training, and their LR factors.

    ``stages`` are :class:`Stage` values (or ``(start, trainable)`` pairs) with strictly
    increasing starts, the first at 0. ``unit`` says whether starts count epochs or optimizer
    updates. After the last explicit stage, if ``then_every`` is set, ``then_add`` more groups
    (from the top down) become trainable every ``then_every`` units until all train (ULMFiT's
    gradual unfreezing). ``bn`` is the BatchNorm policy of frozen groups (:data:`BN_POLICIES`);
    ``factors`` the per-group LR factors.

    Group LR at update t: ``schedule(t) * factors[g]`` while g is trainable; a frozen group's
    parameters get no gradient and no update.

    >>> plan = FreezePlan.gradual(every_epochs=1)
    >>> r = plan.resolve(num_groups=3, steps_per_epoch=10)
    >>> r.starts, r.masks[0], r.trainable_at(25)
    ((0, 10, 20), (False, False, True), (True, True, True))
    """

    stages: Sequence[Stage] = ((0, "all"),)  # type: ignore[assignment]
    unit: str = "epoch"
    bn: str = "freeze_stats"
    factors: LRFactors = field(default_factory=LRFactors)
    then_every: float | None = None
    then_add: int = 1

    def __post_init__(self) -> None:
        stages = check.sequence("stages", self.stages, min_len=1)
        parsed = []
        for i, s in enumerate(stages):
            if isinstance(s, Stage):
                parsed.append(s)
            elif isinstance(s, (list, tuple)) and len(s) == 2:
                try:
                    parsed.append(Stage(s[0], s[1]))
                except ValueError as e:
                    raise ValueError(f"stages[{i}]: {e}") from None
            else:
                raise ValueError(f"stages[{i}] must be a Stage or a (start, trainable) pair; got {s!r}")
        if parsed[0].start != 0:
            raise ValueError(
                f"stages[0].start must be 0 (the plan must say what trains first); got {parsed[0].start!r}")
        check.increasing("stage starts", [s.start for s in parsed])
        if not isinstance(self.factors, LRFactors):
            raise ValueError(f"factors must be an LRFactors value; got {self.factors!r}")
        _set(
            self,
            stages=tuple(parsed),
            unit=check.choice("unit", self.unit, ("epoch", "update")),
            bn=check.choice("bn", self.bn, BN_POLICIES),
            then_add=check.positive_int("then_add", self.then_add),
        )
        if self.then_every is not None:
            _set(self, then_every=check.positive("then_every", self.then_every))
            if isinstance(parsed[-1].trainable, tuple):
                raise ValueError("then_every needs the last stage to count groups from the top, not list indices")

    # -- the handbook's ways (H5) -----------------------------------------------------------
    @classmethod
    def all_trainable(cls, **kwargs: Any) -> FreezePlan:
        """H5 way 1: nothing frozen (pair it with ``factors`` for discriminative LRs)."""
        return cls(stages=((0, "all"),), **kwargs)

    @classmethod
    def head_only(cls, head_groups: int = 1, **kwargs: Any) -> FreezePlan:
        """Train only the top ``head_groups`` groups for the whole run (H5: small, similar data)."""
        return cls(stages=((0, check.positive_int("head_groups", head_groups)),), **kwargs)

    @classmethod
    def head_then_all(cls, head_epochs: float = 1, head_groups: int = 1, **kwargs: Any) -> FreezePlan:
        """H5 way 2: the head alone for ``head_epochs``, then everything."""
        head_epochs = check.positive("head_epochs", head_epochs)
        return cls(stages=((0, check.positive_int("head_groups", head_groups)), (head_epochs, "all")), **kwargs)

    @classmethod
    def gradual(cls, every_epochs: float = 1, groups_per_stage: int = 1, head_groups: int = 1,
                **kwargs: Any) -> FreezePlan:
        """ULMFiT gradual unfreezing: the head first, then ``groups_per_stage`` more from the top
        every ``every_epochs`` epochs (updates with ``unit="update"``) until all train."""
        every = check.positive("every_epochs", every_epochs)
        return cls(stages=((0, check.positive_int("head_groups", head_groups)),), then_every=every,
                   then_add=check.positive_int("groups_per_stage", groups_per_stage), **kwargs)

    @classmethod
    def head_then_top_fraction(cls, head_epochs: float = 1, fraction: float = 0.5, head_groups: int = 1,
                               **kwargs: Any) -> FreezePlan:
        """H5 "small and different": the head, then the top ``fraction`` of the groups."""
        head_epochs = check.positive("head_epochs", head_epochs)
        fraction = check.number("fraction", fraction, low=0.0, high=1.0, low_open=True)
        second: float | str = "all" if fraction == 1.0 else fraction
        return cls(stages=((0, check.positive_int("head_groups", head_groups)), (head_epochs, second)), **kwargs)

    @classmethod
    def recommend(cls, num_samples: int, similar: bool, large_threshold: int = DEFAULT_LARGE_DATASET,
                  head_epochs: float = 1, **kwargs: Any) -> Recommendation:
        """The H5 table: size of the data set x similarity to the pretraining data.

        ======  =================================  =========================================
                similar                            different
        ======  =================================  =========================================
        small   train only the new output layer    the head, then the top half of the groups
        large   unfreeze all, a small LR           skip the pretrained weights: from scratch
        ======  =================================  =========================================

        A data set is *large* from ``large_threshold`` labelled examples on (default 10,000):
        below about ten thousand examples (~1,000 per class for ten classes) fine-tuning every
        weight of a network with millions of parameters overfits the pretrained features away;
        above it, the data can pay for moving all of them. It is a rule of thumb: pass your own.

        >>> rec = FreezePlan.recommend(1797, similar=False)
        >>> rec.cell
        'small/different'
        """
        n = check.non_negative_int("num_samples", num_samples)
        similar = check.boolean("similar", similar)
        threshold = check.positive_int("large_threshold", large_threshold)
        large = n >= threshold
        size = "large" if large else "small"
        cell = f"{size}/{'similar' if similar else 'different'}"
        why = f"{n} examples is {size} (threshold {threshold})"
        if not large and similar:
            plan = cls.head_only(**kwargs)
            text = f"{why} and similar to the pretraining data: train only the new output layer; more would overfit."
            return Recommendation(plan, cell, text, pretrained=True, lr_scale=1.0)
        if not large:
            plan = cls.head_then_top_fraction(head_epochs=head_epochs, fraction=0.5, **kwargs)
            text = (f"{why} and different from the pretraining data: train the head for {head_epochs:g} epoch(s), "
                    "then unfreeze the top half of the layer groups; the lower, more general groups stay frozen.")
            return Recommendation(plan, cell, text, pretrained=True, lr_scale=1.0)
        if similar:
            kwargs.setdefault("factors", LRFactors.geometric())
            plan = cls.all_trainable(**kwargs)
            text = (f"{why} and similar: unfreeze everything with a small learning rate (1-2 orders of magnitude "
                    "below from scratch, lower still for lower groups).")
            return Recommendation(plan, cell, text, pretrained=True, lr_scale=0.1)
        plan = cls.all_trainable(**kwargs)
        text = (f"{why} and different: the pretrained features help little; train from scratch "
                "(random initialisation, the from-scratch learning rate).")
        return Recommendation(plan, cell, text, pretrained=False, lr_scale=1.0)

    # -- resolution -------------------------------------------------------------------------
    def with_factors(self, factors: LRFactors) -> FreezePlan:
        return FreezePlan(self.stages, self.unit, self.bn, factors, self.then_every, self.then_add)

    def expanded_stages(self, num_groups: int) -> list[Stage]:
        """The explicit stages plus the generated gradual ones, for ``num_groups`` groups."""
        stages = list(self.stages)
        if self.then_every is not None:
            count = stages[-1].count_from_top(num_groups) or num_groups
            start = stages[-1].start
            while count < num_groups:
                start += self.then_every
                count = min(num_groups, count + self.then_add)
                stages.append(Stage(start, "all" if count == num_groups else count))
        return stages

    def resolve(self, num_groups: int, steps_per_epoch: int | None = None) -> ResolvedPlan:
        """Bind the plan to ``num_groups`` groups and (for epoch plans) ``steps_per_epoch`` updates.

        An epoch start ``e`` begins at update ``ceil(e * steps_per_epoch)``; stages that land on
        the same update keep only the last one, and a stage that changes no group is dropped, so
        each boundary is crossed exactly once and changes something.
        """
        n = num_groups
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_groups must be an integer >= 1 (the model's layer groups); got {num_groups!r}")
        if self.unit == "epoch":
            if steps_per_epoch is None:
                raise ValueError("steps_per_epoch must be given to resolve an epoch plan; got None")
            spe = check.positive_int("steps_per_epoch", steps_per_epoch)
        else:
            spe = 1
        starts: list[int] = []
        masks: list[tuple[bool, ...]] = []
        previous: Stage | None = None
        for stage in self.expanded_stages(n):
            update = math.ceil(stage.start * spe - 1e-9)
            mask = stage.mask(n)
            if previous is not None and not isinstance(stage.trainable, tuple) and masks and any(
                    was and not now for was, now in zip(masks[-1], mask)):
                raise ValueError(
                    f"stages must not freeze groups again: the stage at {stage.start:g} trains {stage.trainable!r} "
                    f"after the one at {previous.start:g} trained {previous.trainable!r} ({n} groups)"
                )
            previous = stage
            if masks and masks[-1] == mask:
                continue  # a stage that changes nothing is no boundary
            if starts and starts[-1] == update:
                masks[-1] = mask
            else:
                starts.append(update)
                masks.append(mask)
        return ResolvedPlan(n, tuple(starts), tuple(masks), self.factors.resolve(n), self.bn)

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "stages": [s.to_json() for s in self.stages],
            "unit": self.unit,
            "bn": self.bn,
            "factors": self.factors.get_config(),
            "then_every": self.then_every,
            "then_add": self.then_add,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FreezePlan:
        """Rebuild from :meth:`get_config` output.

        A key :meth:`get_config` does not write is refused, so a misspelt one cannot change the
        plan silently (``then_evry`` would otherwise turn a gradual plan into head-only):

        >>> FreezePlan.from_config({"stages": [[0, 1]], "then_evry": 1})
        Traceback (most recent call last):
          ...
        ValueError: FreezePlan config has unknown key 'then_evry' (did you mean 'then_every'?); \
the allowed keys are: stages, unit, bn, factors, then_every, then_add
        """
        check.config_keys("FreezePlan", config, ("stages", "unit", "bn", "factors", "then_every", "then_add"),
                          required=("stages",))
        stages_config = check.sequence("stages", config["stages"], min_len=1)
        pairs = []
        for i, pair in enumerate(stages_config):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"stages[{i}] must be a [start, trainable] pair; got {pair!r}")
            pairs.append(pair)
        stages = [Stage(s, tuple(t) if isinstance(t, list) else t) for s, t in pairs]
        return cls(stages=stages, unit=config.get("unit", "epoch"), bn=config.get("bn", "freeze_stats"),
                   factors=LRFactors.from_config(config.get("factors", {})),
                   then_every=config.get("then_every"), then_add=config.get("then_add", 1))


# A call with a misspelt or missing argument raises check.ArgumentError (a TypeError and a
# ValueError) that names the closest argument and every argument the class takes.
for _cls in (Stage, LRFactors, FreezePlan):
    check.checked_init(_cls)
del _cls


@dataclass(frozen=True)
class Recommendation:
    """What :meth:`FreezePlan.recommend` returns: the plan, the H5 cell and why.

    ``pretrained`` is False for the "train from scratch" cell; ``lr_scale`` multiplies the
    from-scratch learning rate (0.1 where H2's fine-tuning rule applies).
    """

    plan: FreezePlan
    cell: str
    explanation: str
    pretrained: bool = True
    lr_scale: float = 1.0

    def __str__(self) -> str:
        return f"[{self.cell}] {self.explanation}"
