"""The run contract: every decision around the numbers, made once for every adapter.

An adapter translates its framework's events into the questions below and applies the answers
with the framework's mechanics; it never decides. The questions, in the order a run asks them:

* **composition** (:func:`compose`): the hpcallbacks callbacks of one run, plus the framework's
  own LR controllers (a torch scheduler from ``configure_optimizers``, HF's
  ``lr_scheduler_type``, ``keras.callbacks.LearningRateScheduler`` / ``ReduceLROnPlateau``),
  give one :class:`Composition`: who sets the learning rate, which modifiers multiply it, the
  plan and the per-group factors. Every conflict is one ``ValueError`` with one message;
* **arguments** (:func:`as_plan`, :func:`plan_for_run`): a plan given as a ``FreezePlan``, a
  ``FreezePlan.recommend(...)`` result, a ``get_config()`` dict or ``None``; the ``bn=`` override
  and the factors of a ``DiscriminativeLR`` folded into the plan the run resolves;
* **run-derived defaults, resume and extend** (:func:`schedule_for_run`): arguments the user gave
  are kept; the learning rate a family defaults to is the optimizer's at the start of the *first*
  run (a checkpoint keeps it); lengths derived from the run (updates per epoch, total updates) are
  recomputed for the run being started; when that changes the schedule of a resumed run a
  :class:`RunWarning` gives the learning rate before and after;
* **reuse** (:func:`fresh`): a callback instance given to a new run starts from fresh state unless
  the run resumes from a checkpoint;
* **notices** (:func:`plan_notices`): valid but suspicious set-ups train and warn once with
  :class:`RunWarning`: a stage that starts after this run's end (it is applied when training
  continues), a model with a single layer group (nothing to stage or scale);
* **the learning rate of every group at every update** (:class:`LRRule`):
  ``lr(t, g) = floor(base(t) x modifiers(t) x plateau, min_lr) x factor[g]``;
* **wrong framework** (:func:`wrong_framework`, :func:`guard_hooks`): a callback of one adapter
  given to another framework's loop fails at once, naming the import to use.

Nothing here imports a framework.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import defaults as D
from . import schedules as S
from .plans import FreezePlan, LRFactors, Recommendation, ResolvedPlan

__all__ = [
    "RunWarning", "Member", "Foreign", "Composition", "compose", "as_plan", "plan_for_run", "schedule_for_run",
    "ScheduleState", "fresh", "plan_notices", "short_run_notice", "single_group_notice", "LRRule",
    "wrong_framework", "guard_hooks", "ADAPTERS", "left_out_message", "plateau_arguments",
    "REPEATABLE", "refuse_repeats",
]


class RunWarning(UserWarning):
    """A run set-up that is valid but probably not what was meant: it trains, and says so once.

    One class for every adapter: ``warnings.filterwarnings("error", category=RunWarning)`` turns
    every such notice into an error whatever the framework.
    """


#: The adapter package of each framework, for messages that name the import to use.
ADAPTERS = {"keras": "hpcallbacks_keras", "lightning": "hpcallbacks_lightning", "hf": "hpcallbacks_hf"}

#: Roles a callback plays in the learning-rate rule and the freeze plan.
ROLES = ("schedule", "plateau", "modifier", "plan", "factors", "bn", "other", "recipe")

#: ``"recipe"`` (``FineTune``) is a schedule and a plan at once: it owns the learning rate of every
#: update, the freeze plan and the per-group factors, so it is refused beside any of those.
RECIPE_CONFLICTS = {"plan": "StagedUnfreeze", "factors": "DiscriminativeLR"}


# -- composition ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One hpcallbacks callback of a run, as the contract sees it.

    ``role``: ``"schedule"`` (a schedule callback: it gives the LR of every update), ``"plateau"``
    (``ReduceOnPlateau``; ``has_schedule`` when built with ``schedule=``), ``"modifier"`` (a factor
    of the update count multiplying the schedule: ``ScaleLearningRate``), ``"plan"``
    (``StagedUnfreeze``), ``"factors"`` (``DiscriminativeLR``), ``"bn"``, ``"other"``, ``"recipe"``
    (``FineTune``: a schedule and a plan with its factors at once).
    ``factors``: the per-group factors it gives (a plan's or ``DiscriminativeLR``'s);
    ``groups``: the ``groups=`` it was given (``None``: discovered).
    """

    name: str
    role: str
    has_schedule: bool = False
    factors: LRFactors | None = None
    groups: Any = None
    order: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {self.role!r}")


@dataclass(frozen=True)
class Foreign:
    """A learning-rate controller of the framework itself in the same run.

    ``kind``: ``"schedule"`` (sets the LR of every update or epoch) or ``"plateau"`` (reduces it
    on a metric). ``composable``: the adapter can multiply its values by hpcallbacks factors and
    modifiers (HF's ``LambdaLR`` schedules can). ``fix``: how the user removes it, in the
    framework's words.
    """

    name: str
    kind: str = "schedule"
    composable: bool = False
    fix: str = ""


@dataclass(frozen=True)
class Composition:
    """Who does what in a run: indices into the members given to :func:`compose`.

    ``base``: where the LR of an update comes from before modifiers, plateau and factors:
    ``"schedule"`` (an hpcallbacks schedule), ``"foreign"`` (the framework's own, multiplied),
    ``"constant"`` (the optimizer's learning rate) or ``"none"`` (hpcallbacks sets no LR).
    """

    schedule: int | None
    plateau: int | None
    modifiers: tuple[int, ...]
    plan: int | None
    factors_from: int | None
    factors: LRFactors
    groups: Any
    base: str

    @property
    def sets_lr(self) -> bool:
        return self.base != "none"


def _one(members: Sequence[Member], role: str, what: str, hint: str) -> int | None:
    found = [i for i, m in enumerate(members) if m.role == role]
    if len(found) > 1:
        raise ValueError(f"callbacks holds {len(found)} {what} callbacks; keep one ({hint})")
    return found[0] if found else None


#: Callback classes a run may hold more than once: each instance acts only on what it is given
#: (``ParamScheduler``: its own hyperparameters; ``FreezeBatchNorm``: its own layers) and keeps no
#: state of the run. Every other hpcallbacks callback class may appear once per run.
REPEATABLE = frozenset({"ParamScheduler", "FreezeBatchNorm"})

#: What to keep when a class is given twice (the message's hint); classes not named: "keep one".
_KEEP_ONE = {
    "StagedUnfreeze": "merge their plans into one FreezePlan",
    "DiscriminativeLR": "one set of per-group factors",
    "ReduceOnPlateau": "one plateau rule reduces the learning rate",
    "GradientAccumulation": "one target batch size per run",
    "MicroBatchFinder": "one target batch size per run",
    "BatchRamp": "one ramp; give every step of it to one BatchRamp",
    "ScaleLearningRate": "one scaling rule multiplies the learning rate",
    "LRFinder": "one range test before training",
    "TrialReporter": "one trial per run",
    "SwapNorm": "one norm swap; a swap plan covers every layer it names",
    "HyperparameterAdvisor": "one advisor checks every hyperparameter",
    "LossBalance": "one balance check of the loss terms",
}


def refuse_repeats(names: Sequence[str]) -> None:
    """Refuse a callback class given twice to one run: one ``ValueError`` in every adapter.

    ``names``: the class names of the hpcallbacks callbacks of the run, in their order. Each
    adapter calls this where it first sees the whole list (Keras at ``on_train_begin``, Lightning
    when the ``Trainer`` checks its callbacks, HF at ``on_init_end``), before anything trains, so
    two instances never both act (two accumulations multiplied, two range tests, two state keys).
    Classes in :data:`REPEATABLE` may repeat.

    >>> refuse_repeats(["CosineRestart", "ParamScheduler", "ParamScheduler", "GradientAccumulation"])
    >>> refuse_repeats(["GradientAccumulation", "CosineRestart", "GradientAccumulation"])
    Traceback (most recent call last):
    ...
    ValueError: callbacks holds 2 GradientAccumulation callbacks; keep one (one target batch size per run)
    """
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if count > 1 and name not in REPEATABLE:
            raise ValueError(f"callbacks holds {count} {name} callbacks; keep one ({_KEEP_ONE.get(name, 'keep one')})"
                             .replace("(keep one)", "(two would both act on the same run)"))


def compose(members: Sequence[Member], foreign: Sequence[Foreign] = ()) -> Composition:
    """The one reading of a run's callbacks; every conflict is a ``ValueError`` saying what to keep.

    >>> c = compose([Member("CosineRestart", "schedule"), Member("ReduceOnPlateau", "plateau")])
    >>> c.base, c.schedule, c.plateau
    ('schedule', 0, 1)
    >>> compose([Member("CosineRestart", "schedule"), Member("OneCycle", "schedule")])
    Traceback (most recent call last):
    ...
    ValueError: callbacks holds 2 learning-rate schedules (CosineRestart, OneCycle); keep one (run schedules one \
after another with hpcallbacks.Join, or warm up with hpcallbacks.Warmup)
    """
    recipes = [i for i, m in enumerate(members) if m.role == "recipe"]
    if len(recipes) > 1:
        raise ValueError(f"callbacks holds {len(recipes)} FineTune callbacks; keep one")
    for r in recipes:  # FineTune owns the plan and the factors: a second source of either is refused
        for m in members:
            if m.role in RECIPE_CONFLICTS:
                what = "a freeze plan" if m.role == "plan" else "per-group factors"
                raise ValueError(f"{members[r].name} applies the whole fine-tuning recipe (its freeze plan, per-group "
                                 f"factors and schedule) and {m.name} gives {what} too; keep one: drop {m.name}, or "
                                 f"drop {members[r].name} to build the run by hand")
    schedules = [i for i, m in enumerate(members)
                 if m.role in ("schedule", "recipe") or (m.role == "plateau" and m.has_schedule)]
    plateau = _one(members, "plateau", "ReduceOnPlateau", "one plateau rule reduces the learning rate")
    if len(schedules) > 1:
        with_schedule = [i for i in schedules if members[i].role == "plateau"]
        if with_schedule:
            other = next(i for i in schedules if i not in with_schedule)
            raise ValueError(f"ReduceOnPlateau(schedule=...) and the {members[other].name} callback both give a "
                             "schedule: drop schedule= (the plateau factor then multiplies the other callback's LR)")
        names = ", ".join(members[i].name for i in schedules)
        raise ValueError(f"callbacks holds {len(schedules)} learning-rate schedules ({names}); keep one (run "
                         "schedules one after another with hpcallbacks.Join, or warm up with hpcallbacks.Warmup)")
    plan = _one(members, "plan", "StagedUnfreeze", "merge their plans into one FreezePlan")
    if recipes:
        plan = recipes[0]
    dlr = _one(members, "factors", "DiscriminativeLR", "one set of per-group factors")
    modifiers = tuple(sorted((i for i, m in enumerate(members) if m.role == "modifier"),
                             key=lambda i: members[i].order))
    schedule = schedules[0] if schedules else None

    # per-group factors: the plan's, or DiscriminativeLR's; both only when they agree
    factors, factors_from, groups = LRFactors.uniform(), None, None
    if plan is not None:
        factors, factors_from, groups = members[plan].factors or LRFactors.uniform(), plan, members[plan].groups
    if dlr is not None:
        theirs = members[dlr].factors or LRFactors.uniform()
        if plan is not None and factors != LRFactors.uniform() and theirs != factors:
            raise ValueError("both the plan's factors and DiscriminativeLR(factors) are given: keep one "
                             "(FreezePlan(..., factors=...) or DiscriminativeLR)")
        if plan is not None and members[dlr].groups is not None and groups is not None \
                and members[dlr].groups != groups:
            raise ValueError("StagedUnfreeze(groups=...) and DiscriminativeLR(groups=...) differ; give groups to one "
                             "of them (or the same to both)")
        factors, factors_from = theirs, dlr
        groups = groups if groups is not None else members[dlr].groups

    # the framework's own controllers
    own_lr = schedule is not None or plateau is not None or bool(modifiers)
    base = "schedule" if schedule is not None else "none"
    for f in foreign:
        if f.kind == "plateau" and plateau is not None:
            raise ValueError(f"conflicting schedulers: ReduceOnPlateau and {f.name} both reduce the learning rate on "
                             f"a metric; keep one ({f.fix or 'remove ' + f.name})")
        if schedule is not None:
            who = members[schedule].name
            raise ValueError(f"conflicting schedulers: {who} sets the learning rate of every update, and {f.name} "
                             f"also sets it; keep one: {f.fix or 'remove ' + f.name}, or drop {who} to keep it")
        if own_lr and not f.composable:
            who = " and ".join(members[i].name for i in ((plateau,) if plateau is not None else ()) + modifiers)
            raise ValueError(f"{who} multiplies the learning rate of an hpcallbacks schedule (or the optimizer's "
                             f"constant one), and {f.name} sets the learning rate itself; keep one: "
                             f"{f.fix or 'remove ' + f.name}, or use an hpcallbacks schedule callback instead of it")
        if own_lr:
            base = "foreign"
    if base == "none" and own_lr:
        base = "constant"
    return Composition(schedule, plateau, modifiers, plan, factors_from, factors, groups, base)


# -- arguments -----------------------------------------------------------------------------------------
def as_plan(plan: Any, who: str = "StagedUnfreeze") -> FreezePlan:
    """``plan=`` of ``StagedUnfreeze`` in every adapter: a ``FreezePlan``, a ``FreezePlan.recommend()``
    result, a ``get_config()`` dict, or ``None`` (``FreezePlan.gradual(every_epochs=1)``).

    >>> as_plan(FreezePlan.recommend(1797, similar=True)) == FreezePlan.head_only()
    True
    """
    if plan is None:
        return FreezePlan.gradual(every_epochs=1)
    if isinstance(plan, Recommendation):
        return plan.plan
    if isinstance(plan, dict):
        try:
            return FreezePlan.from_config(plan)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{who}: plan is a dict but not a FreezePlan.get_config(): {e}") from None
    if isinstance(plan, FreezePlan):
        return plan
    raise ValueError(f"{who}: plan must be a hpcallbacks.FreezePlan, a FreezePlan.recommend(...) result, a "
                     f"FreezePlan.get_config() dict or None; got {plan!r}")


def plateau_arguments(schedule: Any, monitor: str, factor: float, patience: int, mode: str, min_delta: float,
                      cooldown: int, min_lr: float, convention: str,
                      threshold_mode: str | None) -> tuple[S.Schedule | None, S.ReduceOnPlateau]:
    """``ReduceOnPlateau``'s arguments in every adapter: the schedule it reduces (``None``: the run's
    own; a number is ``Constant``; a ``serialize()`` dict is read back) and the core state machine.

    >>> plateau_arguments("val_loss", "val_loss", 0.1, 10, "auto", 1e-4, 0, 0.0, "keras", None)
    ...                   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ReduceOnPlateau: schedule must be a hpcallbacks schedule, a number or None; got 'val_loss'...
    """
    if isinstance(schedule, str):
        raise ValueError(f"ReduceOnPlateau: schedule must be a hpcallbacks schedule, a number or None; got "
                         f"{schedule!r}. The monitored metric is the second argument, as in every adapter: "
                         f"ReduceOnPlateau(monitor={schedule!r})")
    if isinstance(schedule, dict):
        schedule = S.deserialize(schedule)
    given = None if schedule is None else S.as_schedule(schedule, "schedule")
    machine = S.ReduceOnPlateau(monitor=monitor, factor=factor, patience=patience, mode=mode, min_delta=min_delta,
                                cooldown=cooldown, min_lr=min_lr, convention=convention,
                                threshold_mode=threshold_mode)
    return given, machine


def plan_for_run(plan: FreezePlan, bn: str | None, factors: LRFactors) -> FreezePlan:
    """The plan a run resolves: ``bn`` (when given) overrides the plan's policy; ``factors`` are the
    composition's (the plan's own, or ``DiscriminativeLR``'s)."""
    return dataclasses.replace(plan, bn=plan.bn if bn is None else bn, factors=factors)


# -- run-derived defaults, resume, extend ----------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleState:
    """What a schedule callback keeps in a checkpoint: the run facts its defaults came from."""

    learning_rate: float
    steps_per_epoch: int | None
    total_steps: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any] | None) -> ScheduleState | None:
        if not state or state.get("learning_rate") is None:
            return None
        total = state.get("total_steps")
        spe = state.get("steps_per_epoch")
        return cls(float(state["learning_rate"]), None if spe is None else int(spe),
                   None if total is None or total == math.inf else int(total))


def _finite(total: float | int | None) -> int | None:
    return None if total is None or total == math.inf else int(total)


def schedule_for_run(who: str, family: str, given: dict[str, Any], learning_rate: float,
                     steps_per_epoch: int | None, total_steps: float | int | None, *,
                     saved: dict[str, Any] | None = None, resumed_at: int = 0) -> tuple[S.Schedule, ScheduleState,
                                                                                        str | None]:
    """The schedule of a family callback for this run, the state to checkpoint, and a notice.

    ``given``: the user's arguments (``None`` = not given). ``learning_rate``, ``steps_per_epoch``
    and ``total_steps``: this run's facts (optimizer LR now, updates per epoch, total updates).
    ``saved``: the :class:`ScheduleState` of the run that wrote the checkpoint being resumed
    (``resumed_at`` updates done). The user's arguments are kept; the learning rate default is the
    first run's (a resumed optimizer holds the last scheduled LR, not the one the user compiled);
    lengths derived from the run are this run's. The notice says what changed with the LR of
    update ``resumed_at`` before and after.

    >>> s, state, note = schedule_for_run("CosineDecay", "CosineDecay", {}, 0.1, 10, 40,
    ...                                   saved={"learning_rate": 0.1, "steps_per_epoch": 10, "total_steps": 20},
    ...                                   resumed_at=20)
    >>> s.decay_steps, note.split(",")[0]
    (40.0, 'CosineDecay: this run has 40 updates (10 per epoch)')
    """
    old = ScheduleState.from_dict(saved)
    lr = old.learning_rate if old is not None else learning_rate
    now = ScheduleState(lr, steps_per_epoch, _finite(total_steps))
    try:
        schedule = D.build(family, given, D.RunFacts(lr, now.steps_per_epoch, now.total_steps))
    except ValueError as e:
        raise ValueError(f"{who}: with this run's learning rate {lr:g}, {now.steps_per_epoch} updates per epoch and "
                         f"{now.total_steps} updates: {e}") from None
    notice = None
    if old is not None and (old.steps_per_epoch, old.total_steps) != (now.steps_per_epoch, now.total_steps):
        try:
            before = D.build(family, given, D.RunFacts(lr, old.steps_per_epoch, old.total_steps))
        except ValueError:
            before = None
        if before is not None and before != schedule:
            derived = [a for a in D.run_defaults(family) if given.get(a) is None
                       and getattr(before, a, None) != getattr(schedule, a, None)]
            changes = ", ".join(f"{a} {getattr(before, a)!r} -> {getattr(schedule, a)!r}" for a in derived)
            what = (f"this run has {now.total_steps} updates ({now.steps_per_epoch} per epoch), the run that wrote "
                    f"the checkpoint had {old.total_steps} ({old.steps_per_epoch} per epoch)")
            notice = (f"{who}: {what}; the arguments derived from the run are recomputed ({changes}), so the "
                      f"learning rate of update {resumed_at} is {schedule(resumed_at):.6g} instead of "
                      f"{before(resumed_at):.6g}. Pass {', '.join(f'{a}=' for a in derived)} to keep them fixed.")
    return schedule, now, notice


def fresh(resuming: bool) -> bool:
    """Whether a callback starts from fresh state: always, unless the run resumes a checkpoint.

    A callback instance reused for a new model and run (the same ``ReduceOnPlateau`` object in a
    second ``Trainer``) forgets the first run's reductions, best value and stage.
    """
    return not resuming


# -- notices ---------------------------------------------------------------------------------------------
def _names(names: Sequence[str], mask: Sequence[bool]) -> str:
    on = [n for n, m in zip(names, mask, strict=True) if m]
    return ", ".join(on) if on else "none"


def short_run_notice(who: str, resolved: ResolvedPlan, names: Sequence[str], start: int,
                     total: float | int | None, steps_per_epoch: int | None = None) -> str | None:
    """A stage that starts at or after this run's last update: it trains what it can, and says so.

    >>> r = FreezePlan.head_then_all(head_epochs=2).resolve(3, steps_per_epoch=4)
    >>> print(short_run_notice("StagedUnfreeze", r, ["body", "neck", "head"], 0, 4, 4))
    StagedUnfreeze: this run ends after update 4 (epoch 1), before the plan's stage 1 at update 8 (epoch 2) \
trains body, neck, head; this run trains head. The stage is applied when training continues past update 8 \
(resume from a checkpoint with more epochs or steps).
    """
    total = _finite(total)
    if total is None:
        return None
    late = [i for i, s in enumerate(resolved.starts) if i > 0 and s >= total and s > start]
    if not late:
        return None
    i = late[0]
    s = resolved.starts[i]

    def when(u: int) -> str:
        return f"update {u}" + (f" (epoch {u / steps_per_epoch:g})" if steps_per_epoch else "")

    current = resolved.masks[resolved.stage_at(max(start, 0))]
    more = f" (and {len(late) - 1} later stage(s))" if len(late) > 1 else ""
    return (f"{who}: this run ends after {when(total)}, before the plan's stage {i} at {when(s)} trains "
            f"{_names(names, resolved.masks[i])}{more}; this run trains {_names(names, current)}. The stage is "
            f"applied when training continues past update {s} (resume from a checkpoint with more epochs or steps).")


def single_group_notice(who: str, names: Sequence[str]) -> str | None:
    """One layer group: a plan has nothing to stage and factors nothing to scale."""
    if len(names) != 1:
        return None
    what = "freezes nothing (every update trains the whole model)" if who == "StagedUnfreeze" else \
        "gives every parameter factor 1"
    return (f"{who}: the model has a single layer group ({names[0]!r}), so it {what}; pass groups= with the layers "
            f"bottom to top (module or layer names, regexes, or lists of them) to split it")


def plan_notices(who: str, resolved: ResolvedPlan, names: Sequence[str], start: int, total: float | int | None,
                 steps_per_epoch: int | None = None, saved_steps_per_epoch: int | None = None) -> list[str]:
    """Every notice of a plan at the start of a run (see :func:`short_run_notice`, :func:`single_group_notice`);
    ``saved_steps_per_epoch``: the epoch length of the run that wrote the checkpoint being resumed (an epoch
    plan's stages are placed with this run's, and a change is said)."""
    moved = None
    if saved_steps_per_epoch and steps_per_epoch and saved_steps_per_epoch != steps_per_epoch:
        moved = (f"{who}: this run has {steps_per_epoch} updates per epoch, the run that wrote the checkpoint had "
                 f"{saved_steps_per_epoch}; the plan's epochs are placed with this run's, its stages now start at "
                 f"updates {', '.join(map(str, resolved.starts))}. Give the plan in updates (unit='update') to keep "
                 "them fixed.")
    out = [single_group_notice(who, names), moved,
           short_run_notice(who, resolved, names, start, total, steps_per_epoch)]
    return [n for n in out if n]


def left_out_message(names: Sequence[str], count: int | None = None) -> str:
    """``groups=`` that leaves layers with weights out: refused in every adapter (they would train unplanned)."""
    shown = ", ".join(repr(n) for n in names[:8])
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return (f"groups leaves {shown}{more} in no group: a layer in no group would train in every stage whatever the "
            "plan says; add it to a group (lists of names make one group of several layers)")


# -- the learning rate of every group at every update ---------------------------------------------------
class LRRule:
    """``lr(t, g) = base(t) x m_1(t) x ... x plateau x factor[g]``, evaluated once per update.

    ``base``: the schedule (or the framework's own, or a constant); ``modifiers``: functions of the
    update count (``ScaleLearningRate``'s ramp); ``plateau``: a core
    :class:`hpcallbacks.ReduceOnPlateau` (its ``apply`` multiplies by its factor and floors at
    ``min_lr``); ``factors``: one per group. A non-finite value is a ``ValueError`` naming the update.

    >>> rule = LRRule(S.Constant(0.1), factors=(0.5, 1.0))
    >>> rule.group(3, 0)
    0.05
    """

    def __init__(self, base: Callable[[int], float] | None, modifiers: Sequence[Callable[[int], float]] = (),
                 plateau: S.ReduceOnPlateau | None = None, factors: Sequence[float] = (1.0,)) -> None:
        self.base = base
        self.modifiers = tuple(modifiers)
        self.plateau = plateau
        self.factors = tuple(float(f) for f in factors)
        self._t: int | None = None
        self._v = 0.0

    def __call__(self, t: int) -> float:
        if t == self._t:
            return self._v
        lr = self.base(t) if self.base is not None else 1.0
        for m in self.modifiers:
            lr = lr * m(t)
        if self.plateau is not None:
            lr = self.plateau.apply(lr)
        if not math.isfinite(lr):
            raise ValueError(f"the learning rate of update {t} is {lr!r}; check the schedule's arguments")
        self._t, self._v = t, lr
        return lr

    def invalidate(self) -> None:
        """Forget the cached value (after a plateau reduction)."""
        self._t = None

    def group(self, t: int, g: int) -> float:
        return self(t) * self.factors[g]

    def groups(self, t: int) -> tuple[float, ...]:
        v = self(t)
        return tuple(v * f for f in self.factors)


# -- wrong framework -------------------------------------------------------------------------------------
#: The first methods each framework calls on a callback it was given (measured: Keras 3.15 reads
#: ``on_batch_end`` and calls ``set_model``; Lightning 2.6 calls ``setup`` and, after an error,
#: ``on_exception``; transformers 5 calls ``on_init_end``). A callback of another adapter lacks
#: them, or has them with another meaning.
FIRST_HOOKS = {"keras": ("on_batch_end", "set_model", "set_params"), "lightning": ("setup", "on_exception"),
               "hf": ("on_init_end",)}

#: Hooks a foreign loop calls while it reports an error: they must not raise a second error.
_QUIET_HOOKS = ("on_exception", "on_batch_end")

#: Attributes a foreign loop reads before its first hook (Lightning names its profiler's section with
#: ``state_key`` before it calls ``setup``): harmless values, so the guarded hook is reached.
_READ_FIRST = {"lightning": ("state_key",)}


def wrong_framework(callback: Any, belongs: str, given: str) -> str:
    """The message for a callback of ``belongs``'s adapter given to a ``given`` training loop."""
    name = type(callback).__name__
    return (f"{name} is a {belongs} callback (from {ADAPTERS[belongs]}) given to a {given} training loop; "
            f"import it from {ADAPTERS[given]} instead: from {ADAPTERS[given]} import {name}")


def guard_hooks(belongs: str, own: Sequence[str] = ()) -> dict[str, Callable[..., Any]]:
    """Methods for an adapter's base class: the other frameworks' first hooks, each raising
    :func:`wrong_framework`'s message as a ``TypeError`` (a wrong object, not a wrong value).
    ``own``: names the adapter's framework uses itself (never guarded)."""
    out: dict[str, Callable[..., Any]] = {}
    for framework, hooks in FIRST_HOOKS.items():
        if framework == belongs:
            continue
        for hook in hooks:
            if hook in own or hook in FIRST_HOOKS[belongs]:
                continue

            def guard(self: Any, *args: Any, _given: str = framework, _quiet: bool = hook in _QUIET_HOOKS,
                      **kwargs: Any) -> Any:
                if not _quiet:
                    raise TypeError(wrong_framework(self, belongs, _given))

            guard.__name__ = hook
            guard.__doc__ = f"Raises: this callback belongs to {ADAPTERS[belongs]}, not to a {framework} loop."
            out[hook] = guard
        for name in _READ_FIRST.get(framework, ()):
            if name not in own:
                out[name] = property(lambda self: type(self).__qualname__,
                                     doc=f"What a {framework} loop reads before its first hook (a harmless value).")
    return out
