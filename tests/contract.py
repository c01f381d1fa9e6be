"""The behaviour contract as one table: every row runs on every adapter (and every Keras backend).

A row is a tiny run described without a framework: a stack of dense layer groups (``body``,
``neck``, ``head``; one group ``net``; four groups ``stem`` .. ``head``; or ``body`` + a
BatchNorm ``body_bn`` + ``neck`` + ``head``), 16 samples in batches of 4 (4 updates per epoch),
an optimizer at learning rate 0.1 and no schedule of the framework's own, the callbacks built
from the adapter module ``A`` by the same names, and optionally a second run (``Then``): resumed
from the first run's checkpoint (new model, new callback instances, more epochs), or reusing the
same callback instances for a new model.

What every adapter must give (each driver records it through its framework's own hooks):

* ``lr(t)``: the learning rate of each group (bottom to top) at update ``t``, counted across a
  resumed run; the LR a frozen group would get counts too;
* ``trainable(t)``: which groups train at update ``t``;
* ``visible``: the LR the framework shows after update ``t`` (Keras ``optimizer.learning_rate``,
  torch ``param_group["lr"]``) is the LR of update ``t + 1``, as the frameworks' own schedules do;
* ``bn_frozen_moves``: whether the BatchNorm statistics of the frozen bottom group move;
* ``raises``: the exception class and message of bad input (raised when the callbacks are built or
  at the start of the run, never in the middle);
* ``warns``: the warning class and message of input that is valid but suspicious, once, in the run
  given; no other :class:`hpcallbacks.run.RunWarning` may be emitted;
* ``logged``: the per-group LR and trainable-group logs reach a consumer listed before the
  hpcallbacks callbacks (a logger or a framework integration).

Expected numbers come from the core only (schedules, plans, the plateau state machine).
``{adapter}`` in a message pattern is the adapter under test.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcallbacks import ArgumentError, FreezePlan, LRFactors
from hpcallbacks import schedules as S
from hpcallbacks.advice import HyperparameterWarning
from hpcallbacks.run import RunWarning

LR0 = 0.1
SPE = 4  # updates per epoch at accumulation 1 (16 samples, batch 4)
NAMES = {1: ("net",), 3: ("body", "neck", "head"), 4: ("stem", "body", "neck", "head")}
BN_GROUPS = [["body", "body_bn"], "neck", "head"]


@dataclass(frozen=True)
class Then:
    """A second run: ``"resume"`` (from the first run's checkpoint, new model and callback
    instances, ``epochs`` in all) or ``"reuse"`` (the same callback instances, a new model)."""

    kind: str
    epochs: int


@dataclass(frozen=True)
class Row:
    id: str
    callbacks: Callable[..., list]  # (A, other) -> callbacks; other() imports another adapter
    points: tuple[int, ...] = ()  # the points of the contract issue the row covers
    groups: int = 3
    bn: bool = False
    epochs: int = 2
    accumulation: int = 1
    metric: bool = False  # the model logs a constant metric "const" at every epoch end
    foreign: str | None = None  # "schedule" | "plateau": the framework's own LR controller in the run
    then: Then | None = None
    lr: Callable[[int], tuple[float, ...]] | None = None
    trainable: Callable[[int], tuple[bool, ...]] | None = None
    visible: bool = False
    bn_frozen_moves: bool | None = None
    raises: tuple[type, str] | None = None
    warns: tuple[tuple[int, type, str], ...] = ()  # (run index, class, pattern)
    logged: bool = False

    @property
    def spe(self) -> int:
        return SPE // self.accumulation

    def updates(self, run: int = 0) -> range:
        """The update counts of run 0 (the first) or 1 (the ``then`` run)."""
        first = self.spe * self.epochs
        if run == 0:
            return range(first)
        assert self.then is not None
        if self.then.kind == "reuse":
            return range(first)
        return range(first, self.spe * self.then.epochs)

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES[self.groups]


# -- expectations from the core ------------------------------------------------------------------------
def every(schedule: Callable[[int], float], factors: tuple[float, ...] = (1.0, 1.0, 1.0)):
    return lambda t: tuple(schedule(t) * f for f in factors)


def constant(lr: float = LR0, factors: tuple[float, ...] = (1.0, 1.0, 1.0)):
    return every(lambda t: lr, factors)


def stages(plan: FreezePlan, groups: int = 3, spe: int = SPE):
    r = plan.resolve(groups, spe)
    return r.trainable_at


ALL3 = lambda t: (True, True, True)  # noqa: E731


def _recipe(epochs: int):
    """The core recipe of a FineTune row's run: 16 samples, 3 groups, ``epochs`` of 4 updates, head LR 0.05."""
    from hpcallbacks.recipe import Recipe

    return Recipe(num_samples=16, num_groups=3, epochs=epochs, steps_per_epoch=SPE, learning_rate=0.05,
                  batch_norm=False)


def plateau_factors(machine: S.ReduceOnPlateau, epochs: int, value: float = 1.0) -> list[dict[str, Any]]:
    """The core machine's state in force during each epoch, fed ``value`` at every epoch end."""
    machine = S.ReduceOnPlateau.from_config(machine.get_config())
    out = []
    for _ in range(epochs):
        out.append(machine.state_dict())
        machine.update(value)
    return out


def on_plateau(base: Callable[[int], float], machine: S.ReduceOnPlateau, epochs: int, spe: int = SPE,
               factors: tuple[float, ...] = (1.0, 1.0, 1.0)):
    states = plateau_factors(machine, epochs)

    def lr(t: int) -> tuple[float, ...]:
        m = S.ReduceOnPlateau.from_config(machine.get_config())
        m.load_state_dict(states[t // spe])
        return tuple(m.apply(base(t)) * f for f in factors)

    return lr


def geo(decay: float, n: int = 3) -> tuple[float, ...]:
    return LRFactors.geometric(decay).resolve(n)


P = lambda **kw: S.ReduceOnPlateau(monitor="const", patience=0, **kw)  # noqa: E731

# -- the table -----------------------------------------------------------------------------------------
ROWS: list[Row] = [
    # schedules and their defaults from the run
    Row("schedule-defaults-cosine-restart", lambda A, o: [A.CosineRestart()],
        lr=every(S.CosineRestart(LR0, SPE)), trainable=ALL3, visible=True, points=(11,)),
    Row("schedule-explicit-warmup-cosine", lambda A, o: [A.LearningRateSchedule(S.Warmup(S.CosineDecay(0.05, 6), 2))],
        lr=every(S.Warmup(S.CosineDecay(0.05, 6), 2)), trainable=ALL3, visible=True, points=(11,)),
    Row("schedule-defaults-cosine-decay-whole-run", lambda A, o: [A.CosineDecay(alpha=0.1)],
        lr=every(S.CosineDecay(LR0, 8, alpha=0.1)), trainable=ALL3),
    Row("schedule-defaults-one-cycle", lambda A, o: [A.OneCycle(max_lr=0.5)], lr=every(S.OneCycle(0.5, 8)),
        trainable=ALL3),
    Row("schedule-counts-updates-under-accumulation", lambda A, o: [A.CosineDecay()], accumulation=2,
        lr=every(S.CosineDecay(LR0, 4)), trainable=ALL3),
    Row("growth-m-mul-accepted", lambda A, o: [A.CosineRestart(first_decay_steps=2, m_mul=4.0)],
        lr=every(S.CosineRestart(LR0, 2, m_mul=4.0)), trainable=ALL3, points=(15,)),
    Row("growth-decay-rate-accepted", lambda A, o: [A.ExponentialDecay(decay_steps=8, decay_rate=2.0)],
        lr=every(S.ExponentialDecay(LR0, 8, 2.0)), trainable=ALL3, points=(15,)),
    # per-group factors
    Row("discriminative-alone", lambda A, o: [A.DiscriminativeLR(2.0)], lr=constant(factors=geo(2.0)),
        trainable=ALL3),
    Row("discriminative-with-schedule", lambda A, o: [A.CosineRestart(), A.DiscriminativeLR(0.5)],
        lr=every(S.CosineRestart(LR0, SPE), (0.25, 0.5, 1.0)), trainable=ALL3, visible=True, points=(11,)),
    Row("plan-and-discriminative-same-factors",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1, factors=LRFactors.geometric(2.0))),
                      A.DiscriminativeLR(2.0)],
        lr=constant(factors=geo(2.0)), trainable=stages(FreezePlan.head_then_all(1))),
    Row("uniform-plan-takes-discriminative-factors",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1)), A.DiscriminativeLR(2.0)],
        lr=constant(factors=geo(2.0)), trainable=stages(FreezePlan.head_then_all(1))),
    # freeze plans
    Row("gradual-unfreeze-with-factors",
        lambda A, o: [A.CosineRestart(), A.StagedUnfreeze(FreezePlan.gradual(1, factors=LRFactors.geometric(2.0)))],
        epochs=3, lr=every(S.CosineRestart(LR0, SPE), geo(2.0)), trainable=stages(FreezePlan.gradual(1)),
        visible=True, points=(11,)),
    Row("gradual-unfreeze-under-accumulation", lambda A, o: [A.StagedUnfreeze(FreezePlan.gradual(1))],
        accumulation=2, epochs=3, lr=constant(), trainable=stages(FreezePlan.gradual(1), spe=2)),
    Row("head-then-top-half-of-four-groups",
        lambda A, o: [A.OneCycle(max_lr=0.1), A.StagedUnfreeze(FreezePlan.head_then_top_fraction(1, 0.5))],
        groups=4, lr=every(S.OneCycle(0.1, 8), (1.0,) * 4),
        trainable=stages(FreezePlan.head_then_top_fraction(1, 0.5), groups=4)),
    Row("update-unit-stages-mid-epoch",
        lambda A, o: [A.Constant(), A.StagedUnfreeze(FreezePlan([(0, 1), (3, 2), (6, "all")], unit="update"))],
        lr=constant(), trainable=stages(FreezePlan([(0, 1), (3, 2), (6, "all")], unit="update"))),
    Row("explicit-group-indices",
        lambda A, o: [A.StagedUnfreeze(FreezePlan([(0, (2,)), (1, (0, 2)), (2, "all")], unit="update"))],
        lr=constant(), trainable=stages(FreezePlan([(0, (2,)), (1, (0, 2)), (2, "all")], unit="update"))),
    Row("groups-by-name", lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["body", "neck", "head"])],
        lr=constant(), trainable=stages(FreezePlan.head_then_all(1))),
    Row("plan-from-recommend", lambda A, o: [A.StagedUnfreeze(FreezePlan.recommend(100, similar=False))],
        lr=constant(), trainable=stages(FreezePlan.head_then_top_fraction(1, 0.5)), points=(5,)),
    Row("plan-from-config-dict", lambda A, o: [A.StagedUnfreeze(FreezePlan.gradual(1).get_config())], epochs=3,
        lr=constant(), trainable=stages(FreezePlan.gradual(1)), points=(5,)),
    # plateau
    Row("plateau-multiplies-schedule",
        lambda A, o: [A.CosineRestart(), A.ReduceOnPlateau(monitor="const", factor=0.5, patience=0)], metric=True,
        epochs=3, lr=on_plateau(S.CosineRestart(LR0, SPE), P(factor=0.5), 3), trainable=ALL3),
    Row("plateau-alone-on-optimizer-lr", lambda A, o: [A.ReduceOnPlateau(monitor="const", factor=0.5, patience=0)],
        metric=True, epochs=3, lr=on_plateau(lambda t: LR0, P(factor=0.5), 3), trainable=ALL3),
    Row("plateau-floors-at-min-lr",
        lambda A, o: [A.ReduceOnPlateau(monitor="const", factor=0.1, patience=0, min_lr=0.005)], metric=True,
        epochs=3, lr=on_plateau(lambda t: LR0, P(factor=0.1, min_lr=0.005), 3), trainable=ALL3),
    Row("plateau-with-its-own-schedule",
        lambda A, o: [A.ReduceOnPlateau(S.Constant(0.05), monitor="const", factor=0.5, patience=0)], metric=True,
        epochs=3, lr=on_plateau(lambda t: 0.05, P(factor=0.5), 3), trainable=ALL3),
    Row("plateau-with-factors-and-stages",
        lambda A, o: [A.ReduceOnPlateau(monitor="const", factor=0.5, patience=0),
                      A.StagedUnfreeze(FreezePlan.gradual(1, factors=LRFactors.geometric(2.0)))], metric=True,
        epochs=3, lr=on_plateau(lambda t: LR0, P(factor=0.5), 3, factors=geo(2.0)),
        trainable=stages(FreezePlan.gradual(1))),
    # BatchNorm policies (point 4)
    Row("bn-plan-default-keeps-frozen-statistics",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1), groups=BN_GROUPS)], bn=True,
        lr=constant(), trainable=stages(FreezePlan.head_then_all(1)), bn_frozen_moves=False),
    Row("bn-override-train-moves-frozen-statistics",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1), groups=BN_GROUPS, bn="train")], bn=True,
        lr=constant(), trainable=stages(FreezePlan.head_then_all(1)), bn_frozen_moves=True, points=(4,)),
    Row("bn-override-freeze-stats-over-plan-train",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1, bn="train"), groups=BN_GROUPS,
                                       bn="freeze_stats")], bn=True,
        lr=constant(), trainable=stages(FreezePlan.head_then_all(1)), bn_frozen_moves=False, points=(4,)),
    # valid but suspicious: trains and warns once (points 1, 7)
    Row("short-run-trains-and-warns", lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(2))], epochs=1,
        lr=constant(), trainable=stages(FreezePlan.head_then_all(2)),
        warns=((0, RunWarning, r"before the plan's stage 1 at update 8"),), points=(1,)),
    Row("stage-at-the-last-update-boundary-warns", lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(2))],
        lr=constant(), trainable=stages(FreezePlan.head_then_all(2)),
        warns=((0, RunWarning, r"ends after update 8 .*stage 1 at update 8"),), points=(1,)),
    Row("short-run-then-resumed-applies-the-stage", lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(2))],
        epochs=1, then=Then("resume", 3), lr=constant(), trainable=stages(FreezePlan.head_then_all(2)),
        warns=((0, RunWarning, r"stage 1 at update 8"),), points=(1,)),
    Row("single-group-staged-unfreeze-warns", lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1))],
        groups=1, lr=constant(factors=(1.0,)), trainable=lambda t: (True,),
        warns=((0, RunWarning, r"StagedUnfreeze: the model has a single layer group"),), points=(7,)),
    Row("single-group-discriminative-warns", lambda A, o: [A.DiscriminativeLR(2.0)], groups=1,
        lr=constant(factors=(1.0,)), trainable=lambda t: (True,),
        warns=((0, RunWarning, r"DiscriminativeLR: the model has a single layer group"),), points=(7,)),
    # resume, extend, reuse (points 2, 3)
    Row("resume-same-length-continues", lambda A, o: [A.CosineRestart()], epochs=1, then=Then("resume", 2),
        lr=every(S.CosineRestart(LR0, SPE)), trainable=ALL3, points=(9,)),
    Row("resume-keeps-given-lengths", lambda A, o: [A.CosineDecay(decay_steps=12)], epochs=1, then=Then("resume", 3),
        lr=every(S.CosineDecay(LR0, 12)), trainable=ALL3, points=(2,)),
    Row("extend-recomputes-derived-lengths-and-warns", lambda A, o: [A.CosineDecay()], epochs=2,
        then=Then("resume", 4), lr=lambda t: every(S.CosineDecay(LR0, 8 if t < 8 else 16))(t), trainable=ALL3,
        warns=((1, RunWarning, r"CosineDecay: this run has 16 updates.*decay_steps 8.0 -> 16.0"),), points=(2,)),
    Row("resume-keeps-plan-stage", lambda A, o: [A.StagedUnfreeze(FreezePlan.gradual(1))], epochs=1,
        then=Then("resume", 3), lr=constant(), trainable=stages(FreezePlan.gradual(1)),
        warns=((0, RunWarning, r"stage 1 at update 4"),)),
    Row("resume-keeps-plateau-state", lambda A, o: [A.ReduceOnPlateau(monitor="const", factor=0.5, patience=0)],
        metric=True, epochs=2, then=Then("resume", 4), lr=on_plateau(lambda t: LR0, P(factor=0.5), 4),
        trainable=ALL3, points=(9,)),
    Row("reuse-plateau-starts-fresh", lambda A, o: [A.ReduceOnPlateau(monitor="const", factor=0.5, patience=0)],
        metric=True, epochs=3, then=Then("reuse", 3), lr=on_plateau(lambda t: LR0, P(factor=0.5), 3),
        trainable=ALL3, points=(3,)),
    Row("reuse-plan-starts-fresh", lambda A, o: [A.StagedUnfreeze(FreezePlan.gradual(1))], epochs=3,
        then=Then("reuse", 3), lr=constant(), trainable=stages(FreezePlan.gradual(1))),
    Row("reuse-schedule-recomputes-defaults", lambda A, o: [A.CosineDecay()], epochs=2, then=Then("reuse", 2),
        lr=every(S.CosineDecay(LR0, 8)), trainable=ALL3),
    # the framework's own LR controllers (point 10)
    Row("framework-schedule-and-hpcallbacks-schedule-refused", lambda A, o: [A.CosineRestart()], foreign="schedule",
        raises=(ValueError, r"conflicting schedulers"), points=(10,)),
    Row("framework-plateau-and-hpcallbacks-plateau-refused", lambda A, o: [A.ReduceOnPlateau(monitor="const")],
        foreign="plateau", metric=True, raises=(ValueError, r"both reduce the learning rate"), points=(10,)),
    Row("framework-schedule-with-factors", lambda A, o: [A.DiscriminativeLR(2.0)], foreign="schedule",
        lr=lambda t: tuple(LR0 * 0.5 ** (t // SPE) * f for f in geo(2.0)), trainable=ALL3),
    # bad input: refused at once, one exception class in every adapter (points 6, 8, 12, 14)
    Row("two-schedules-refused", lambda A, o: [A.CosineRestart(), A.OneCycle()],
        raises=(ValueError, r"callbacks holds 2 learning-rate schedules \(CosineRestart, OneCycle\)")),
    Row("plateau-schedule-and-schedule-callback-refused",
        lambda A, o: [A.ReduceOnPlateau(S.Constant(0.1), monitor="const"), A.CosineRestart()], metric=True,
        raises=(ValueError, r"ReduceOnPlateau\(schedule=...\) and the CosineRestart callback both give a schedule")),
    Row("two-plateaus-refused", lambda A, o: [A.ReduceOnPlateau(monitor="const"), A.ReduceOnPlateau(monitor="const")],
        metric=True, raises=(ValueError, r"callbacks holds 2 ReduceOnPlateau callbacks")),
    Row("two-plans-refused", lambda A, o: [A.StagedUnfreeze(), A.StagedUnfreeze()],
        raises=(ValueError, r"callbacks holds 2 StagedUnfreeze callbacks")),
    Row("two-discriminative-refused", lambda A, o: [A.DiscriminativeLR(2.0), A.DiscriminativeLR(3.0)],
        raises=(ValueError, r"callbacks holds 2 DiscriminativeLR callbacks")),
    # one instance per class (hpcallbacks.run.refuse_repeats): the contract's message, not the framework's own
    # error (Lightning's stateful-callback RuntimeError) nor two instances acting silently (issue 20, defect 10)
    Row("two-gradient-accumulations-refused", lambda A, o: [A.GradientAccumulation(8), A.GradientAccumulation(8)],
        raises=(ValueError, r"callbacks holds 2 GradientAccumulation callbacks; keep one")),
    Row("two-range-tests-refused",
        lambda A, o: [A.LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=8) for _ in range(2)],
        raises=(ValueError, r"callbacks holds 2 LRFinder callbacks; keep one")),
    Row("plan-and-discriminative-different-factors-refused",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1, factors=LRFactors.geometric(2.0))),
                      A.DiscriminativeLR(3.0)],
        raises=(ValueError, r"both the plan's factors and DiscriminativeLR\(factors\) are given")),
    Row("groups-leaving-a-layer-out-refused",
        lambda A, o: [A.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["neck", "head"])],
        raises=(ValueError, r"groups leaves .*body.* in no group"), points=(6,)),
    Row("wrong-keyword-refused", lambda A, o: [A.CosineRestart(first_decay_step=3)],
        raises=(ArgumentError, r"unexpected keyword argument 'first_decay_step'; did you mean 'first_decay_steps'"),
        points=(8,)),
    Row("wrong-keyword-of-a-plan-callback-refused", lambda A, o: [A.StagedUnfreeze(plans=None)],
        raises=(ArgumentError, r"unexpected keyword argument 'plans'; did you mean 'plan'"), points=(8,)),
    Row("bad-value-refused", lambda A, o: [A.CosineRestart(t_mul=0.0)], raises=(ValueError, r"t_mul")),
    Row("plan-config-unknown-key-refused", lambda A, o: [A.StagedUnfreeze({"stages": [[0, 1]], "then_evry": 1})],
        raises=(ValueError, r"then_evry.*did you mean 'then_every'"), points=(12,)),
    Row("callback-of-another-adapter-refused", lambda A, o: [o().CosineRestart()],
        raises=(TypeError, r"import it from {adapter} instead"), points=(14,)),
    # the LR range test (point 13): a test cut short by an exploding loss still applies its suggestion, and says so
    Row("range-test-cut-short-warns", lambda A, o: [A.LRFinder(min_lr=1e-4, max_lr=1e6, num_steps=30, apply=True)],
        trainable=ALL3, warns=((0, HyperparameterWarning, r"LRFinder: the range test stopped after \d+ of 30 points"),),
        points=(13,)),
    # logs reach consumers that come before the callbacks (point 16)
    Row("logs-reach-earlier-consumers",
        lambda A, o: [A.CosineRestart(), A.StagedUnfreeze(FreezePlan.gradual(1, factors=LRFactors.geometric(2.0)))],
        epochs=3, lr=every(S.CosineRestart(LR0, SPE), geo(2.0)), trainable=stages(FreezePlan.gradual(1)), logged=True,
        points=(16,)),
    # FineTune (issue 22): the core Recipe of the run's facts (16 samples, 3 groups, epochs, 4 updates per epoch),
    # applied as its plan, factors and schedule; a second LR schedule or plan beside it is refused
    Row("fine-tune-applies-the-recipe", lambda A, o: [A.FineTune(learning_rate=0.05)], epochs=3,
        lr=lambda t: tuple(_recipe(3).schedule()(t) * f for f in _recipe(3).factors),
        trainable=lambda t: _recipe(3).resolved().trainable_at(t), visible=True),
    Row("fine-tune-beside-a-schedule-refused", lambda A, o: [A.FineTune(), A.CosineDecay()],
        raises=(ValueError, r"2 learning-rate schedules \(FineTune, CosineDecay\)")),
    Row("fine-tune-beside-staged-unfreeze-refused", lambda A, o: [A.FineTune(), A.StagedUnfreeze()],
        raises=(ValueError, r"FineTune applies the whole fine-tuning recipe .* StagedUnfreeze gives a freeze plan")),
    Row("fine-tune-wrong-keyword-refused", lambda A, o: [A.FineTune(simlar=True)],
        raises=(ArgumentError, r"did you mean 'similar'")),
    Row("fine-tune-bad-learning-rate-refused", lambda A, o: [A.FineTune(learning_rate=-1.0)],
        raises=(ValueError, r"learning_rate")),
    Row("fine-tune-range-test-without-a-finder-refused", lambda A, o: [A.FineTune(learning_rate="range_test")],
        raises=(ValueError, r"FineTune\(learning_rate='range_test'\) takes the rate an LRFinder\(apply=True\) finds")),
    Row("fine-tune-resume-continues-the-recipe", lambda A, o: [A.FineTune(learning_rate=0.05)], epochs=1,
        then=Then("resume", 3),
        lr=lambda t: tuple(_recipe(1 if t < SPE else 3).schedule()(t) * f for f in _recipe(3).factors),
        trainable=lambda t: _recipe(3).resolved().trainable_at(t),
        warns=((0, RunWarning, r"stage 1 at update 4"),)),
]

IDS = [r.id for r in ROWS]
assert len(set(IDS)) == len(IDS), "row ids must be unique"


# -- the outcome a driver returns, and the one check of it ----------------------------------------------
@dataclass
class Outcome:
    """What a driver saw. ``records[run]``: ``(update, lrs, trainable)`` per update; ``visible[run]``:
    the framework's LR of the top group after each update; ``bn[run]``: the bottom BatchNorm's
    moving-mean sum before the run and after each update; ``warnings[run]``: the warnings caught;
    ``logged``: keys a consumer listed first received; ``lr_keys``: the per-group LR keys the
    adapter logs (``{group}`` filled in)."""

    records: list[list[tuple[int, tuple[float, ...], tuple[bool, ...]]]] = field(default_factory=list)
    visible: list[list[float]] = field(default_factory=list)
    bn: list[list[float]] = field(default_factory=list)
    warnings: list[list[Any]] = field(default_factory=list)
    logged: set[str] = field(default_factory=set)
    lr_key: str = "lr/{group}"
    error: BaseException | None = None
    weights: list[list[Any]] = field(default_factory=list)  # final weights of each run (arrays), where recorded
    reference: Outcome | None = None  # the same row on one device, for a leg under a distribution strategy


WEIGHTS_ATOL = 1e-5  # a distributed leg's final weights against the reference's, absolute


def check(row: Row, out: Outcome, adapter: str, rel: float = 1e-6) -> None:
    """Compare a driver's outcome with the row; the message says which update and group differ."""
    if row.raises is not None:
        cls, pattern = row.raises
        import re

        assert out.error is not None, f"{row.id}: expected {cls.__name__} matching {pattern!r}; the run trained"
        assert isinstance(out.error, cls), f"{row.id}: expected {cls.__name__}, got {out.error!r}"
        assert re.search(pattern.format(adapter=adapter), str(out.error)), (
            f"{row.id}: message {str(out.error)!r} does not match {pattern!r}")
        assert not any(out.records), f"{row.id}: refused after {sum(map(len, out.records))} updates, not at once"
        return
    if out.error is not None:
        raise AssertionError(f"{row.id}: the run failed") from out.error
    runs = 1 if row.then is None else 2
    assert len(out.records) == runs, f"{row.id}: {len(out.records)} runs recorded, expected {runs}"
    for run in range(runs):
        updates = list(row.updates(run))
        got = out.records[run]
        assert [r[0] for r in got] == updates, f"{row.id}: run {run} recorded updates {[r[0] for r in got]}"
        for t, lrs, trainable in got:
            if row.trainable is not None:
                assert tuple(trainable) == tuple(row.trainable(t)), (
                    f"{row.id}: run {run}, update {t}: trainable {tuple(trainable)} != {row.trainable(t)}")
            if row.lr is not None:
                want = row.lr(t)
                assert len(lrs) == len(want), f"{row.id}: {len(lrs)} groups recorded"
                for g, (a, b) in enumerate(zip(lrs, want)):
                    assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), (
                        f"{row.id}: run {run}, update {t}, group {row.names[g]}: lr {a!r} != {b!r}")
        if row.visible and row.lr is not None:
            shown = out.visible[run]
            assert len(shown) == len(updates), f"{row.id}: {len(shown)} visible LRs for {len(updates)} updates"
            for t, v in zip(updates, shown):
                want = row.lr(t + 1)[-1]
                assert math.isclose(v, want, rel_tol=rel, abs_tol=1e-12), (
                    f"{row.id}: after update {t} the framework shows lr {v!r}; the next update's is {want!r}")
        if row.bn_frozen_moves is not None:
            bn = out.bn[run]
            frozen = [i for i, t in enumerate(updates) if not row.trainable(t)[0]]
            moved = any(bn[i + 1] != bn[i] for i in frozen)
            assert moved == row.bn_frozen_moves, (
                f"{row.id}: BatchNorm statistics of the frozen group {'moved' if moved else 'did not move'}")
        expected = [(cls, pattern) for r, cls, pattern in row.warns if r == run]
        caught = out.warnings[run]
        import re

        for cls, pattern in expected:
            hits = [w for w in caught if issubclass(w.category, cls) and re.search(pattern, str(w.message))]
            assert len(hits) == 1, (f"{row.id}: run {run}: expected one {cls.__name__} matching {pattern!r}; got "
                                    f"{[str(w.message) for w in caught]}")
        others = [w for w in caught if issubclass(w.category, RunWarning)
                  and not any(issubclass(w.category, c) and re.search(p, str(w.message)) for c, p in expected)]
        assert not others, f"{row.id}: run {run}: unexpected {[str(w.message) for w in others]}"
    if out.reference is not None:
        _check_reference(row, out, out.reference)
    if row.logged:
        names = row.names
        want = {out.lr_key.format(group=n) for n in names} | {"trainable_groups"}
        assert want <= out.logged, f"{row.id}: a consumer listed first got {sorted(out.logged)}, missing {want}"


def _check_reference(row: Row, out: Outcome, ref: Outcome) -> None:
    """The final weights of each run equal the reference run's (one device) within WEIGHTS_ATOL."""
    if ref.error is not None:
        raise AssertionError(f"{row.id}: the reference run (one device) failed") from ref.error
    assert len(out.weights) == len(ref.weights) == len(out.records), (
        f"{row.id}: weights of {len(out.weights)} runs, {len(ref.weights)} in the reference")
    for run, (got, want) in enumerate(zip(out.weights, ref.weights)):
        assert len(got) == len(want), f"{row.id}: run {run}: {len(got)} weights, {len(want)} in the reference"
        for i, (a, b) in enumerate(zip(got, want)):
            assert a.shape == b.shape, f"{row.id}: run {run}, weight {i}: shape {a.shape} != {b.shape}"
            diff = float(abs(a - b).max()) if a.size else 0.0
            assert diff <= WEIGHTS_ATOL, (
                f"{row.id}: run {run}, weight {i}: differs from one device's by {diff:.3g} > {WEIGHTS_ATOL}")


assert len(ROWS) >= 40
