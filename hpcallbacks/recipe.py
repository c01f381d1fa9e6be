"""The handbook's whole fine-tuning recipe, computed from what the user knows (H2, H3, H4, H5).

:class:`Recipe` takes the facts of a fine-tuning run — the number of training samples, whether
the data resembles the pretraining data, the number of layer groups (bottom to top, the new head
last), the epochs and optimizer updates per epoch, the optimizer, and optionally a learning rate
— and gives every choice the handbook makes, each with its reason:

========================  =====================================================================
choice                    rule
========================  =====================================================================
freeze plan               H5's table (size x similarity, :meth:`FreezePlan.recommend`), with
                          the *reach rule* below for "small / different"
per-group LR factors      the new head at 1; the pretrained groups spread geometrically from
                          the top down to 1/100 at the bottom group (H2: fine-tuning rates
                          1 to 2 orders of magnitude below from scratch; H5 way 1; ULMFiT's
                          discriminative rates, fastai's ``slice(lr/100, lr)``)
BatchNorm policy          H4: a pretrained body keeps its BatchNorm statistics and affine
                          weights (``"freeze_all"``), whatever the batch size
schedule                  H3: cosine with a warm restart at each unfreeze (SGDR), each stage
                          warming up linearly over its first 10% (the new groups start with
                          fresh optimizer moments), ending at 5% of its peak
learning rate             H2: the new head trains from scratch, so the middle (in log space)
                          of H2's from-scratch range for the optimizer (Adam 3.16e-3, SGD
                          3.16e-2, SGD with momentum 3.16e-3); or the LR range test's
                          suggestion when asked
========================  =====================================================================

**The reach rule** (what the demos taught; H5 with Howard & Ruder 2018, ULMFiT): H5's "small /
different: after the head, unfreeze the top half" keeps the bottom half frozen for the whole run.
That is right when the bottom groups hold general features the new data reuses (edges of an
image network), and wrong when the new task needs the input representation to change (the
polarity of single words is in MiniLM's word embeddings; a small CNN pretrained on five other
classes): the recipe cannot tell which, but it can bound the price of either mistake. After the
head's stage **every** group trains, with the per-group factors putting the top half at 1 to 1/10
of the head's rate and the bottom half at 1/10 to 1/100: the general features move slowly
instead of not at all. Measured on the demos' tasks (seed 0, one run each): MiniLM on word
sentiment 0.891 with the bottom half frozen, 0.901 with every group trained (same factors);
EfficientNet-Lite0 on digits 0.975 with the top half, 0.978 with every group. See
:attr:`Recipe.reasons` for the rule as applied.

Nothing here imports a framework; every adapter's ``FineTune`` computes one :class:`Recipe` from
its run's facts and applies it as a ``StagedUnfreeze`` plus a ``LearningRateSchedule``.

>>> r = Recipe(num_samples=1437, num_groups=9, epochs=6, steps_per_epoch=23)
>>> r.cell, round(r.head_learning_rate, 5), r.bn
('small/different', 0.00316, 'freeze_all')
>>> r.resolved().starts, r.resolved().masks[1]
((0, 23), (True, True, True, True, True, True, True, True, True))
>>> round(r.factors[-2], 3), round(r.factors[0], 6)
(0.562, 0.01)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _checks as check
from . import schedules as S
from .plans import DEFAULT_LARGE_DATASET, FreezePlan, LRFactors, ResolvedPlan

__all__ = ["Recipe", "RANGE_TEST", "H2_RANGES", "FROM_SCRATCH_LR", "SMALL_BATCH", "SPREAD", "WARMUP_FRACTION",
           "OPTIMIZERS", "optimizer_kind", "fine_tune_arguments"]

#: ``learning_rate=RANGE_TEST``: the learning rate comes from an LR range test (``LRFinder``).
RANGE_TEST = "range_test"

#: H2's from-scratch learning-rate ranges per optimizer (low, high).
H2_RANGES = {"adam": (1e-3, 1e-2), "adamw": (1e-3, 1e-2), "sgd": (1e-2, 1e-1), "sgd_momentum": (1e-3, 1e-2),
             "nesterov": (1e-3, 1e-2)}
#: The new head's learning rate: the middle of H2's from-scratch range in log space, ``sqrt(low x high)``.
FROM_SCRATCH_LR = {k: math.sqrt(lo * hi) for k, (lo, hi) in H2_RANGES.items()}
OPTIMIZERS = tuple(FROM_SCRATCH_LR)

#: H4: a batch smaller than this (per device) gives BatchNorm inaccurate statistics (Wu & He 2018,
#: "Group Normalization", Fig. 1: BN's error grows as the batch falls below 32). The recipe freezes
#: a pretrained body's BatchNorm layers at any batch size (H4's remedy); the size is named in the reason.
SMALL_BATCH = 32

#: H2: the bottom pretrained group trains at ``1 / SPREAD`` of the head's rate (two orders of
#: magnitude: fastai's ``slice(lr/100, lr)``).
SPREAD = 100.0

#: H3: each stage warms up over this fraction of its updates before its cosine.
WARMUP_FRACTION = 0.1

#: A stage's cosine ends at this fraction of its peak learning rate (the demos' SGDR ``alpha``).
ALPHA = 0.05

_KEYS = ("num_samples", "num_groups", "epochs", "steps_per_epoch", "similar", "optimizer", "learning_rate",
         "batch_size", "batch_norm", "large_threshold", "head_epochs")


def _set(obj: Any, **values: Any) -> None:
    for key, value in values.items():
        object.__setattr__(obj, key, value)


@dataclass(frozen=True)
class Recipe:
    """Every choice of a fine-tuning run from its facts, each explained with its handbook section.

    Inputs: ``num_samples`` (training examples), ``num_groups`` (layer groups, the new head
    last), ``epochs`` and ``steps_per_epoch`` (optimizer updates per epoch), ``similar`` (the data
    resembles the pretraining data; default False: when unsure, the side of H5's table that trains
    more), ``optimizer`` (one of :data:`OPTIMIZERS`), ``learning_rate`` (``None``: H2's rule;
    a number: the head's rate; :data:`RANGE_TEST`: the range test's suggestion, given later with
    :meth:`with_learning_rate`), ``batch_size`` (per device, for H4; ``None``: unknown),
    ``batch_norm`` (the model has BatchNorm layers), ``large_threshold`` (H5's small/large
    boundary) and ``head_epochs`` (the head-only stage, 1 as fastai's ``freeze_epochs``).

    Outputs: ``cell`` (H5's), ``plan`` (a :class:`FreezePlan` with the factors and BN policy),
    ``factors`` (bottom to top), ``bn``, ``head_learning_rate`` (the head's peak, ``None`` while
    a range test is awaited), ``pretrained`` (False for H5's "train from scratch" cell),
    :meth:`schedule` and ``reasons`` (``(section, text)`` pairs; ``str(recipe)`` lists them).

    Group ``g`` at update ``t`` trains at ``schedule(t) x factors[g]`` while the plan's stage
    says it is trainable.

    >>> r = Recipe(num_samples=384, num_groups=8, epochs=4, steps_per_epoch=12, optimizer="adamw")
    >>> r.plan.stages[1].trainable, round(r.head_learning_rate, 5)
    ('all', 0.00316)
    >>> Recipe.from_config(r.get_config()) == r
    True
    """

    num_samples: int
    num_groups: int
    epochs: int
    steps_per_epoch: int
    similar: bool = False
    optimizer: str = "adam"
    learning_rate: float | str | None = None
    batch_size: int | None = None
    batch_norm: bool = True
    large_threshold: int = DEFAULT_LARGE_DATASET
    head_epochs: float = 1.0
    # outputs
    cell: str = field(init=False, compare=False)
    pretrained: bool = field(init=False, compare=False)
    plan: FreezePlan = field(init=False, compare=False)
    factors: tuple[float, ...] = field(init=False, compare=False)
    bn: str = field(init=False, compare=False)
    head_learning_rate: float | None = field(init=False, compare=False)
    reasons: tuple[tuple[str, str], ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        n = check.non_negative_int("num_samples", self.num_samples)
        groups = check.positive_int("num_groups", self.num_groups)
        epochs = check.positive_int("epochs", self.epochs)
        spe = check.positive_int("steps_per_epoch", self.steps_per_epoch)
        similar = check.boolean("similar", self.similar)
        optimizer = check.choice("optimizer", self.optimizer, OPTIMIZERS)
        lr = self.learning_rate
        if lr is not None and lr != RANGE_TEST:
            if isinstance(lr, str) or isinstance(lr, bool):
                raise ValueError(f"learning_rate must be None (H2's rule), a positive number or {RANGE_TEST!r}; "
                                 f"got {lr!r}")
            lr = check.positive("learning_rate", lr)
        batch = None if self.batch_size is None else check.positive_int("batch_size", self.batch_size)
        batch_norm = check.boolean("batch_norm", self.batch_norm)
        threshold = check.positive_int("large_threshold", self.large_threshold)
        head_epochs = check.positive("head_epochs", self.head_epochs)
        _set(self, num_samples=n, num_groups=groups, epochs=epochs, steps_per_epoch=spe, similar=similar,
             optimizer=optimizer, learning_rate=lr, batch_size=batch, batch_norm=batch_norm,
             large_threshold=threshold, head_epochs=head_epochs)
        reasons: list[tuple[str, str]] = []
        total = epochs * spe

        # H5: the table
        rec = FreezePlan.recommend(n, similar, large_threshold=threshold, head_epochs=head_epochs)
        cell, pretrained = rec.cell, rec.pretrained
        reasons.append(("H5", f"[{cell}] {rec.explanation}"))
        plan = rec.plan
        head = math.ceil(head_epochs * spe - 1e-9)
        if groups == 1:
            plan = FreezePlan.all_trainable()
            reasons.append(("H5", "one layer group: nothing to stage; the whole model trains from the start."))
        elif cell == "small/different":
            plan = FreezePlan.head_then_all(head_epochs=head_epochs)
            reasons[-1] = ("H5", reasons[-1][1] + " The reach rule below replaces the frozen bottom half.")
            reasons.append(("H5 reach rule", (
                "after the head's stage every group trains, the bottom half at 1/10 to 1/100 of the head's rate "
                "(the factors below) instead of not at all: H5's frozen bottom half cannot learn what the new task "
                "needs from the input representation (measured: MiniLM on single words lost with it), while slow "
                "bottom groups keep "
                "the general features (Howard & Ruder 2018, ULMFiT: every layer unfrozen after the classifier, "
                "lower ones at lower rates; H5 way 2: 'unfreeze some layers below the top, or all').")))
        elif cell == "small/similar":
            reasons.append(("H5", "only the new output layer trains; the pretrained groups keep their weights."))
        if head >= total and len(plan.stages) > 1:
            reasons.append(("H5", f"the head's stage ({head} updates) fills the whole run ({total}): only the head "
                                  "trains in this run; give more epochs to reach the later stages."))

        # H2 / H5 way 1: per-group factors
        if groups == 1:
            factors: tuple[float, ...] = (1.0,)
        elif groups == 2:
            factors = (1.0 / math.sqrt(SPREAD), 1.0)
        else:
            # pretrained groups 0..groups-2 from 1/SPREAD (bottom) up, geometrically, the head at 1
            step = SPREAD ** (1.0 / (groups - 1))
            factors = tuple(step ** -(groups - 1 - g) for g in range(groups))
        if not pretrained:
            factors = (1.0,) * groups
            reasons.append(("H2", "from scratch: every group at the same, from-scratch learning rate."))
        else:
            reasons.append(("H2, H5 way 1", (
                f"per-group LR factors bottom to top {', '.join(f'{f:.3g}' for f in factors)}: the new head at the "
                f"from-scratch rate, the pretrained groups below it spread geometrically down to 1/{SPREAD:g} at the "
                "bottom (H2: fine-tuning 1 to 2 orders of magnitude below from scratch; lower groups hold more "
                "general features, ULMFiT's discriminative rates, fastai's slice(lr/100, lr)).")))

        # H4: BatchNorm
        if not pretrained or not batch_norm:
            bn = "train" if not pretrained else "freeze_stats"
            if batch_norm:
                reasons.append(("H4", "from scratch: BatchNorm trains as usual."))
        else:
            bn = "freeze_all"
            if batch is not None and batch < SMALL_BATCH:
                size = f"batches of {batch} (< {SMALL_BATCH}) give BatchNorm inaccurate statistics"
            else:
                size = (f"batches of {'unknown size' if batch is None else batch}: a BatchNorm layer's statistics "
                        "over a batch of the new data are still noisier than the pretrained ones (per channel they "
                        "count batch x positions, few in the top layers of an image network)")
            reasons.append(("H4", (
                f"{size}: every pretrained BatchNorm layer keeps its statistics and affine weights, in every "
                "stage ('with a pretrained model, freeze its BatchNorm layers'). Pass bn='freeze_stats' to let "
                "the trainable groups' BatchNorm adapt when the body was pretrained on little data.")))
        plan = FreezePlan(plan.stages, plan.unit, bn, LRFactors.explicit(factors), plan.then_every, plan.then_add)

        # H2: the learning rate
        if lr == RANGE_TEST:
            head_lr = None
            reasons.append(("H3", "learning rate: the LR range test's suggestion (run LRFinder with apply=True in "
                                  "the same run, before the first update)."))
        elif lr is not None:
            head_lr = float(lr)
            reasons.append(("H2", f"learning rate {head_lr:g} for the head, as given."))
        else:
            head_lr = FROM_SCRATCH_LR[optimizer]
            reasons.append(("H2", (
                f"learning rate {head_lr:.3g} for the new head: the middle (in log space) of H2's from-scratch range "
                f"{H2_RANGES[optimizer][0]:g}-{H2_RANGES[optimizer][1]:g} for {optimizer} (a new layer trains from "
                "scratch); the pretrained groups get it x their factor.")))
        _set(self, cell=cell, pretrained=pretrained, plan=plan, factors=factors, bn=bn, head_learning_rate=head_lr,
             reasons=tuple(reasons))
        self._schedule_reason()

    def _schedule_reason(self) -> None:
        starts = [s for s in self.resolved().starts if s < self.total_steps]
        if len(starts) > 1:
            text = (f"cosine with a warm restart at each unfreeze (updates {', '.join(map(str, starts[1:]))}), each "
                    f"stage warming up over its first {WARMUP_FRACTION:.0%} and ending at {ALPHA:g} x its peak: the "
                    "groups a stage adds start with fresh optimizer moments (SGDR, Loshchilov & Hutter 2017).")
        else:
            text = (f"one cosine over the run's {self.total_steps} updates, warming up over its first "
                    f"{WARMUP_FRACTION:.0%} and ending at {ALPHA:g} x its peak.")
        _set(self, reasons=self.reasons + (("H3", text),))

    # -- derived values -----------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """The run's optimizer updates: ``epochs x steps_per_epoch``."""
        return self.epochs * self.steps_per_epoch

    def resolved(self) -> ResolvedPlan:
        """The plan bound to the groups and the run's updates per epoch."""
        return self.plan.resolve(self.num_groups, self.steps_per_epoch)

    def schedule(self, learning_rate: float | None = None) -> S.Schedule:
        """The head's learning rate of every update (H3): a cosine per stage with a warm restart at each
        unfreeze. ``learning_rate``: the peak (default the recipe's; required after a range test).

        >>> s = Recipe(1437, 9, epochs=2, steps_per_epoch=10, learning_rate=1e-3).schedule()
        >>> round(s(0), 6), round(s(1), 6), round(s(10), 6), round(s(19), 6)
        (0.0001, 0.001, 0.0001, 7.9e-05)
        """
        lr = self.head_learning_rate if learning_rate is None else check.positive("learning_rate", learning_rate)
        if lr is None:
            raise ValueError("learning_rate must be given: this recipe's learning rate comes from the LR range test "
                             "(pass its suggestion)")
        total = self.total_steps
        starts = [s for s in self.resolved().starts if s < total]
        ends = starts[1:] + [total]
        pieces = [_stage_schedule(lr, end - start) for start, end in zip(starts, ends)]
        return pieces[0] if len(pieces) == 1 else S.Join(pieces, boundaries=starts[1:])

    def with_learning_rate(self, learning_rate: float) -> Recipe:
        """The same recipe with the head's learning rate given (e.g. the range test's suggestion)."""
        config = self.get_config()
        config["learning_rate"] = check.positive("learning_rate", learning_rate)
        return Recipe.from_config(config)

    # -- text, configuration, picture ----------------------------------------------------------------
    def __str__(self) -> str:
        lines = [f"FineTune recipe: {self.num_samples} samples, {'similar' if self.similar else 'different'} data, "
                 f"{self.num_groups} layer groups, {self.epochs} epochs x {self.steps_per_epoch} updates, "
                 f"{self.optimizer}"]
        lines += [f"  [{section}] {text}" for section, text in self.reasons]
        return "\n".join(lines)

    def get_config(self) -> dict[str, Any]:
        """The inputs (plain JSON): :meth:`from_config` rebuilds the same recipe."""
        return {k: getattr(self, k) for k in _KEYS}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Recipe:
        """Rebuild from :meth:`get_config`; a key it does not write is refused (``ValueError`` naming it).

        >>> Recipe.from_config({"num_samples": 10, "num_groups": 2, "epochs": 1, "steps_per_epoch": 1, "simlar": 1})
        Traceback (most recent call last):
          ...
        ValueError: Recipe config has unknown key 'simlar' (did you mean 'similar'?); the allowed keys are: \
num_samples, num_groups, epochs, steps_per_epoch, similar, optimizer, learning_rate, batch_size, batch_norm, \
large_threshold, head_epochs
        """
        check.config_keys("Recipe", config, _KEYS, required=_KEYS[:4])
        return cls(**config)

    def plot(self, path: str | Path, group_names: list[str] | None = None, learning_rate: float | None = None,
             title: str | None = None) -> Path:
        """The plan picture (:func:`hpcallbacks.plot.plot_plan`): each group's LR and the freeze timeline."""
        from .plot import plot_plan

        return plot_plan(self.schedule(learning_rate), self.plan, self.num_groups, self.steps_per_epoch, self.epochs,
                         path, group_names=group_names,
                         title=title or f"FineTune recipe [{self.cell}]: LR per layer group and freeze timeline")


def fine_tune_arguments(similar: bool = False, learning_rate: float | str | None = None,
                        num_samples: int | None = None, head_epochs: float = 1.0,
                        large_threshold: int = 10_000) -> dict[str, Any]:
    """The arguments of every adapter's ``FineTune`` that the recipe takes, checked when the callback is built.

    The run's facts (samples when not given, groups, epochs, updates per epoch, optimizer) come at
    fit start; a probe :class:`Recipe` checks the user's arguments now, so a wrong value is a
    ``ValueError`` naming it at construction, in every adapter alike.

    >>> fine_tune_arguments(similar=True)["similar"]
    True
    >>> fine_tune_arguments(learning_rate=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be a finite number > 0; got -1.0
    """
    Recipe(num_samples=0 if num_samples is None else num_samples, num_groups=2, epochs=1, steps_per_epoch=1,
           similar=similar, learning_rate=learning_rate, head_epochs=head_epochs, large_threshold=large_threshold)
    return {"similar": similar, "learning_rate": learning_rate, "num_samples": num_samples,
            "head_epochs": head_epochs, "large_threshold": large_threshold}


def optimizer_kind(name: str, momentum: float = 0.0, nesterov: bool = False) -> str:
    """The H2 row of an optimizer from its class name (``Adam``, ``AdamW``, ``SGD``...), momentum and nesterov:
    the one reading every adapter's ``FineTune`` uses. Unknown optimizers read as ``"adam"`` (adaptive).

    >>> optimizer_kind("AdamW"), optimizer_kind("SGD", momentum=0.9), optimizer_kind("SGD"), optimizer_kind("Lion")
    ('adamw', 'sgd_momentum', 'sgd', 'adam')
    """
    key = name.lower()
    if key == "sgd":
        if nesterov:
            return "nesterov"
        return "sgd_momentum" if momentum else "sgd"
    if key == "adamw":
        return "adamw"
    return "adam"


def _stage_schedule(lr: float, length: int) -> S.Schedule:
    """One stage: a linear warmup from ``lr / 10`` over ``WARMUP_FRACTION`` of it, then a cosine to ``ALPHA x lr``."""
    warm = int(WARMUP_FRACTION * length)
    if length < 2:
        return S.Constant(lr)
    if warm < 1:
        return S.CosineDecay(lr, decay_steps=length, alpha=ALPHA)
    return S.CosineDecay(lr / 10, decay_steps=length - warm, alpha=ALPHA, warmup_target=lr, warmup_steps=warm)


check.checked_init(Recipe)
