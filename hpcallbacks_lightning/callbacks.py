"""The callbacks' behaviour, independent of the Lightning namespace.

Each class here is a mixin with the Lightning hook methods; :mod:`hpcallbacks_lightning` and
:mod:`hpcallbacks_lightning.pl` combine them with the ``Callback`` base of ``lightning.pytorch``
and ``pytorch_lightning`` respectively. Nothing here imports Lightning: the trainer and the
module are used through their public attributes, and Lightning's internals only through the
seam, :mod:`hpcallbacks_lightning._seam` (the one file to read when Lightning releases).

Where the whole callback list is first seen: every hpcallbacks callback's ``setup`` starts with
:func:`check_callbacks` (a class given twice is the contract's ``ValueError``, and each callback
gets its checkpoint key, the class name), before anything trains.

When things happen in a ``Trainer.fit`` (Lightning 2.6)::

``setup``            groups discovered, plans checked, norms swapped, ``requires_grad`` of every
                     group a stage will train set (before DDP wraps the model);
``on_fit_start``     after ``configure_optimizers`` and after callback states were restored from
                     ``ckpt_path``, before the optimizer state is restored: the optimizer is
                     regrouped (one named group per layer group), user LR schedulers are
                     expanded to the new groups or refused;
``on_train_start``   after the checkpoint's loop state is restored (``trainer.global_step`` is the
                     resumed update count) and the data is set up (steps per epoch known): plans
                     and default schedule lengths resolved, the stage of ``global_step`` applied;
``on_train_epoch_start``  (after every callback's ``on_train_start``) the LR of the epoch's
                     first update is set;
``on_train_batch_end``  per micro-batch, one integer comparison; after the micro-batch that
                     completed an optimizer update, the LR (and, at a stage boundary, the
                     trainable set) of the next update is set, so with
                     ``accumulate_grad_batches=k`` it changes once per update, never per
                     micro-batch, and the optimizer shows the next update's LR as torch's
                     schedulers do;
``on_before_optimizer_step``  logging, every ``log_every_n_steps`` updates.
"""
from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

from hpcallbacks import defaults as D
from hpcallbacks import run as R
from hpcallbacks import schedules as S
from hpcallbacks._checks import bind, checked_init
from hpcallbacks.plans import BN_POLICIES, LRFactors, ResolvedPlan

from . import _seam as seam

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # pragma: no cover - only pytorch_lightning installed
    from pytorch_lightning import Callback as _Callback

from hpcallbacks.torch import (
    LayerGroup,
    apply_trainable,
    discover_groups,
    frozen_batch_norms,
    hold_batch_norms,
    lr_writer,
    regroup_lr_scheduler,
    regroup_optimizer,
    swap_norms,
)

log = logging.getLogger("hpcallbacks")

_LOG_KW = dict(on_step=True, on_epoch=False, prog_bar=False, logger=True, batch_size=1)


# ----------------------------------------------------------------------------------------------
# helpers
def _fitting(stage: Any) -> bool:
    return str(getattr(stage, "value", stage)) == "fit"


def _run_lengths(trainer: Any) -> tuple[int | None, float]:
    """(updates per epoch or None for an iterable data set, total updates (may be inf))."""
    batches = trainer.num_training_batches
    acc = max(1, int(trainer.accumulate_grad_batches))
    spe = None if batches == float("inf") else max(1, math.ceil(batches / acc))
    return spe, trainer.estimated_stepping_batches


def updates(trainer: Any) -> Any:
    """An object whose ``completed`` is ``trainer.global_step``, cheap to read in per-update hooks
    (the seam's :func:`~hpcallbacks_lightning._seam.update_counter`, taken at train start)."""
    return seam.update_counter(trainer)


def _log_every(trainer: Any, enabled: bool) -> int:
    """The trainer's logging interval in updates, or 0 (no logging: disabled or no logger)."""
    if not enabled or not getattr(trainer, "loggers", None):
        return 0
    return max(1, int(getattr(trainer, "log_every_n_steps", 50) or 50))


def _peers(trainer: Any, kind: type) -> list[Any]:
    return [cb for cb in trainer.callbacks if isinstance(cb, kind)]


def _warn(message: str | None) -> None:
    if message:
        warnings.warn(message, R.RunWarning, stacklevel=3)


def _foreign(trainer: Any) -> list[R.Foreign]:
    """The LR schedulers ``configure_optimizers`` returned, as the contract sees them."""
    out = []
    for config in getattr(trainer, "lr_scheduler_configs", []) or []:
        sched = config.scheduler
        kind = "plateau" if type(sched).__name__ == "ReduceLROnPlateau" else "schedule"
        out.append(R.Foreign(f"the {type(sched).__name__} scheduler from configure_optimizers", kind,
                             fix="return only the optimizer from configure_optimizers"))
    return out


def _composition(trainer: Any, foreign: bool = True) -> tuple[list[Any], R.Composition]:
    """The hpcallbacks callbacks of the Trainer and the contract's reading of them (one rule, in the core)."""
    callbacks = [cb for cb in trainer.callbacks if callable(getattr(cb, "_member", None))]
    return callbacks, R.compose([cb._member() for cb in callbacks], _foreign(trainer) if foreign else ())


def _group_spec(groups: Any, pl_module: Any) -> Any:
    return groups(pl_module) if callable(groups) else groups


def _split_by_optimizer(groups: Sequence[LayerGroup], optimizers: Sequence[Any]) -> list[list[LayerGroup]]:
    """With several optimizers, each gets the part of every group it already holds."""
    if len(optimizers) == 1:
        return [list(groups)]
    owner: dict[int, int] = {}
    for i, opt in enumerate(optimizers):
        for g in opt.param_groups:
            for p in g["params"]:
                owner.setdefault(id(p), i)
    orphans = [f"{g.name}" for g in groups for p in g.params if id(p) not in owner]
    if orphans:
        raise ValueError(
            f"with {len(optimizers)} optimizers every grouped parameter must already be in one of them; "
            f"parameters of group(s) {sorted(set(orphans))} are in none: add them to an optimizer in "
            "configure_optimizers, or pass groups= covering one optimizer's modules only")
    out: list[list[LayerGroup]] = [[] for _ in optimizers]
    for i in range(len(optimizers)):
        for g in groups:
            params = tuple(p for p in g.params if owner[id(p)] == i)
            if params:
                out[i].append(LayerGroup(g.name, g.modules, params))
    return out


def _regroup(trainer: Any, groups: Sequence[LayerGroup], factors: Sequence[float]) -> None:
    optimizers = list(trainer.optimizers)
    if not optimizers:
        raise ValueError("configure_optimizers returned no optimizer; StagedUnfreeze/DiscriminativeLR need one")
    if all(f == 1.0 for f in factors):
        held = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
        if all(id(p) in held for g in groups for p in g.params):
            return  # nothing to scale, nothing missing: the user's param groups stay (one foreach batch each)
    by_name = {g.name: f for g, f in zip(groups, factors, strict=True)}
    for opt, part in zip(optimizers, _split_by_optimizer(groups, optimizers), strict=True):
        if part:
            regroup_optimizer(opt, part, [by_name[g.name] for g in part])
    for config in getattr(trainer, "lr_scheduler_configs", []) or []:
        for opt in optimizers:
            regroup_lr_scheduler(config.scheduler, opt)


# ----------------------------------------------------------------------------------------------
# learning-rate schedules
class _ScheduleBase:
    """Owns the learning rate: sets ``lr = schedule(update) x factor of the group`` once per update.

    A *modifier* (``ReduceOnPlateau`` without ``schedule=``, ``ScaleLearningRate``) multiplies the
    schedule of the one schedule callback of the Trainer; without one, the first modifier in
    ``callbacks`` owns the LR with the optimizer's LR as constant schedule. The owner sets
    ``lr = modifier_n(... modifier_1(schedule(update)))``, modifiers in ``_order`` (plateau last).
    """

    _order = 0  # modifiers: lower applies first

    def __init__(self, log: bool = True) -> None:
        if not isinstance(log, bool):
            raise ValueError(f"log must be True or False; got {log!r}")
        self.log_lr = log
        self.schedule: S.Schedule | None = None  # the resolved schedule of this run
        self._resumed: dict[str, Any] | None = None  # the first run's LR and lengths, from a checkpoint
        self._initial_lr: float | None = None
        self._facts: R.ScheduleState | None = None
        self._last_step = -1
        self._lr = 0.0
        self._every = 0
        self._owns = True
        self._multipliers: list[Any] = []
        self._table: list[float] = []  # the LRs of updates _table_start .. (the hot path reads them)
        self._table_start = 0
        self._written: float | None = None  # the LR last written
        self._write: Any = None  # lr_writer of the run's optimizers (made at train start and epoch start)
        self._updates: Any = None  # updates(trainer): the update count, read per update

    # subclasses: the schedule of this run from the optimizer's LR and the run's lengths
    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        raise NotImplementedError

    def _owns_lr(self) -> bool:
        return self._owns

    def _is_modifier(self) -> bool:
        """True for a callback that multiplies another callback's schedule when there is one."""
        return False

    def _member(self) -> R.Member:
        return R.Member(type(self).__name__, "modifier" if self._is_modifier() else "schedule", order=self._order)

    @property
    def _lengths(self) -> tuple[int | None, float]:
        """This run's (updates per epoch, total updates)."""
        facts = self._facts
        if facts is None:
            return None, float("inf")
        return facts.steps_per_epoch, float("inf") if facts.total_steps is None else facts.total_steps

    def _schedule_for_run(self, lr: float, spe: int | None, total: float, saved: dict[str, Any] | None,
                          at: int) -> tuple[S.Schedule, str | None]:
        """This run's schedule and the contract's notice (family callbacks recompute run-derived lengths)."""
        return self._make_schedule(lr, spe, total), None

    def _modify(self, lr: float, step: int) -> float:
        """A modifier's change of the schedule's ``lr`` at ``step`` (floats only)."""
        return lr

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        callbacks, comp = _composition(trainer)
        if comp.schedule is not None:
            owner = comp.schedule
        else:  # a modifier or the plateau alone: the first in callbacks owns the optimizer's constant LR
            owner = min(i for i in (comp.plateau, *comp.modifiers) if i is not None)
        self._owns = callbacks[owner] is self
        if not self._owns:
            return
        if not trainer.optimizers:
            raise ValueError(f"{type(self).__name__} needs an optimizer; configure_optimizers returned none")
        first = trainer.optimizers[0].param_groups[0]
        lr = first.get("base_lr", first["lr"])
        self._initial_lr = float(lr.item() if hasattr(lr, "item") else lr)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = -1
        self._updates = updates(trainer)
        self._every = _log_every(trainer, self.log_lr and self._owns_lr())
        self._multipliers = sorted((cb for cb in _peers(trainer, _ScheduleBase) if cb._is_modifier()),
                                   key=lambda cb: cb._order)
        if not self._owns_lr():
            self.schedule = None
            return
        spe, total = _run_lengths(trainer)
        resumed, self._resumed = self._resumed, None
        saved = None
        if resumed:  # the first run's facts: its optimizer LR, and the lengths it derived (compared, not kept)
            saved = resumed.get("facts") or {"learning_rate": resumed.get("initial_lr"),
                                             "steps_per_epoch": resumed.get("steps_per_epoch"),
                                             "total_steps": resumed.get("total_steps")}
        facts = R.ScheduleState.from_dict(saved)
        lr = facts.learning_rate if facts is not None else (self._initial_lr or 0.0)
        self._facts = R.ScheduleState(lr, spe, None if total == float("inf") else int(total))
        self.schedule, notice = self._schedule_for_run(lr, spe, total, saved, trainer.global_step)
        self._forget()
        _warn(notice)

    def _lr_at(self, step: int) -> float:
        lr = self.schedule(step)  # type: ignore[misc]
        for m in self._multipliers:
            lr = m._modify(lr, step)
        return lr

    #: Whether the LRs of the coming updates can be computed ahead (BatchRamp's depend on the data seen).
    _tabled = True
    _TABLE = 4096  # updates computed at once

    def _forget(self) -> None:
        """Drop the LRs computed ahead (a new schedule, a plateau reduction): the next update recomputes them."""
        self._table = []
        self._written = None
        self._write = None

    def _set_lr(self, trainer: Any, step: int) -> None:
        """Per update: a table read and, when the LR changed, one write per param group."""
        self._last_step = step
        i = step - self._table_start
        if not 0 <= i < len(self._table):
            if not self._tabled:
                lr = self._lr_at(step)
                i = -1
            else:  # the rest of the run at once (4,096 at most), after every on_train_start (modifiers are ready)
                total = self._facts.total_steps if self._facts is not None else None
                n = self._TABLE if total is None else max(1, min(self._TABLE, total - step + 1))
                self._table_start, i = step, 0
                self._table = [self._lr_at(t) for t in range(step, step + n)]
        lr = self._lr = self._table[i] if i >= 0 else lr
        if lr != self._written or self._write is None:
            if self._write is None:
                self._write = lr_writer(trainer.optimizers)
            self._written = lr
            self._write(lr)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # the LR of the epoch's first update, after every on_train_start (the modifiers are ready);
        # the param groups are read again (groups added between epochs get their LRs too)
        self._write = None
        if self.schedule is not None:
            self._set_lr(trainer, self._updates.completed)

    # per micro-batch: an integer comparison, and the LR writes once an update was done
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # after an update the optimizer shows the next update's LR, as torch schedulers and Keras do
        if self.schedule is not None and self._updates.completed != self._last_step:
            self._set_lr(trainer, self._updates.completed)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._every and self._updates.completed % self._every == 0:
            pl_module.log("lr", self._lr, **_LOG_KW)

    def state_dict(self) -> dict[str, Any]:
        """The run's resolved defaults (optimizer LR, updates per epoch, total updates) and schedule.

        On resume the callback's own arguments are kept and its defaults are resolved from these
        values, so a resumed run sees the LRs of the uninterrupted one.
        """
        if self.schedule is None or self._facts is None:
            return {}
        return {"schedule": S.serialize(self.schedule), "facts": self._facts.to_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("schedule"):
            self._resumed = dict(state_dict)


class LearningRateScheduleMixin(_ScheduleBase):
    """Any core schedule as the learning rate of every update: ``lr = schedule(update) x group factor``.

    ``schedule``: a :class:`hpcallbacks.Schedule` (or a number, a constant LR). The schedule
    counts optimizer updates (``trainer.global_step``), so ``accumulate_grad_batches`` does not
    change it. Refuses (``ValueError`` at fit start) an LR scheduler returned by
    ``configure_optimizers``: the callback owns the LR. Per-group factors come from
    ``StagedUnfreeze`` / ``DiscriminativeLR`` (the ``"lr_factor"`` of each param group, 1 when
    absent). Logs ``lr`` (keyword-only ``log=False``, Lightning only, stops it). State (the
    schedule) is saved in checkpoints.
    """

    def __init__(self, schedule: S.Schedule | float, *, log: bool = True) -> None:
        super().__init__(log=log)
        self._given = S.as_schedule(schedule)

    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        return self._given


def _run_facts(initial_lr: float, steps_per_epoch: int | None, total: float | None) -> D.RunFacts:
    known = total is not None and total != float("inf")
    return D.RunFacts(learning_rate=initial_lr, steps_per_epoch=steps_per_epoch,
                      total_steps=int(total) if known else None)  # type: ignore[arg-type]


def family_mixin(name: str) -> type:
    """A callback mixin for the core family ``name``: the family's arguments, missing ones from the run.

    The arguments left as ``None`` are filled at train start by the one rule every adapter
    applies, :func:`hpcallbacks.defaults.build`, from the optimizer's LR at fit start, the run's
    optimizer updates per epoch and its total updates (``trainer.estimated_stepping_batches``).
    Every given argument is checked when the callback is built (:func:`hpcallbacks.defaults.check`).
    """
    core = S.SCHEDULES[name]
    signature = D.callback_signature(name, [inspect.Parameter("log", inspect.Parameter.KEYWORD_ONLY, default=True)])

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        arguments = D.callback_arguments(name, bind(signature, name, args, kwargs))
        _ScheduleBase.__init__(self, log=arguments.pop("log"))
        self.arguments = arguments

    def _make_schedule(self: Any, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        return self._schedule_for_run(initial_lr, steps_per_epoch, total, None, 0)[0]

    def _schedule_for_run(self: Any, lr: float, spe: int | None, total: float, saved: dict[str, Any] | None,
                          at: int) -> tuple[S.Schedule, str | None]:
        schedule, _, notice = R.schedule_for_run(name, name, self.arguments, lr, spe, total, saved=saved,
                                                 resumed_at=at)
        return schedule, notice

    def __repr__(self: Any) -> str:
        return D.callback_repr(name, self.arguments)

    doc = (f"The :class:`hpcallbacks.{name}` schedule as a callback setting the LR of every update.\n\n"
           f"Same arguments as the core schedule. Defaults taken from the run (:mod:`hpcallbacks.defaults`, the same "
           f"rule in every adapter): {D.describe(name)}.\n\n"
           "Keyword-only ``log`` (Lightning only): ``False`` stops logging ``lr`` to the Trainer's loggers.\n\n"
           "The LR counts optimizer updates (not micro-batches) and is multiplied by each param group's "
           "``lr_factor``. A scheduler from ``configure_optimizers`` is refused (ValueError at fit start).\n\n"
           + (core.__doc__ or "").split(">>>")[0].rstrip() + "\n")
    namespace = {"__init__": __init__, "_make_schedule": _make_schedule, "_schedule_for_run": _schedule_for_run,
                 "__repr__": __repr__,
                 "__signature__": signature, "__doc__": doc}
    return type(f"{name}Mixin", (_ScheduleBase,), namespace)


#: Every family callback mixin by name (the families of :data:`hpcallbacks.defaults.FAMILIES`).
FAMILY_MIXINS: dict[str, type] = {name: family_mixin(name) for name in D.FAMILIES}


class ReduceOnPlateauMixin(_ScheduleBase):
    """Divide the LR by ``1 / factor`` when ``monitor`` stops improving (core :class:`hpcallbacks.ReduceOnPlateau`).

    Composes with a schedule: ``lr = max(schedule(t) * factor ** reductions, min(schedule(t), min_lr))``.
    The schedule is ``schedule`` when given, else the schedule callback in the same Trainer
    (``CosineRestart()``, ``LearningRateSchedule(...)``, ...) when there is one, else the
    optimizer's constant LR. The metric is read from ``trainer.callback_metrics`` at the end of
    each training epoch (after validation); a missing metric warns and changes nothing. Under
    DDP, rank 0's decision is broadcast. Keyword-only ``log`` (Lightning only): ``False`` stops
    logging ``lr``. State (best, wait, cooldown, reductions) is saved in
    checkpoints.
    """

    def __init__(self, schedule: S.Schedule | float | None = None, monitor: str = "val_loss", factor: float = 0.1,
                 patience: int = 10, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0, convention: str = "keras", threshold_mode: str | None = None,
                 *, log: bool = True) -> None:
        super().__init__(log=log)
        self._given, self.plateau = R.plateau_arguments(schedule, monitor, factor, patience, mode, min_delta,
                                                         cooldown, min_lr, convention, threshold_mode)
        self._warned = False
        self._plateau_loaded = False

    _order = 100  # the plateau factor applies last (its min_lr floors the final LR)

    def _is_modifier(self) -> bool:
        return self._given is None

    def _member(self) -> R.Member:
        return R.Member("ReduceOnPlateau", "plateau", has_schedule=self._given is not None, order=self._order)

    def _modify(self, lr: float, step: int) -> float:
        return self.plateau.apply(lr)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # checkpoint states are loaded before on_fit_start: a reused instance starts fresh unless resuming
        if R.fresh(resuming=self._plateau_loaded):
            self.plateau.reset()
        self._plateau_loaded = False
        super().on_fit_start(trainer, pl_module)

    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        return self._given if self._given is not None else S.Constant(initial_lr)

    def _lr_at(self, step: int) -> float:
        lr = super()._lr_at(step)
        return lr if self._is_modifier() else self.plateau.apply(lr)  # with schedule=, its own factor

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        value = trainer.callback_metrics.get(self.plateau.monitor)
        if value is None:
            if not self._warned:
                self._warned = True
                known = sorted(trainer.callback_metrics)
                warnings.warn(f"ReduceOnPlateau: metric {self.plateau.monitor!r} was not logged this epoch "
                              f"(logged: {known}); the learning rate is not reduced", stacklevel=2)
            return
        before = self.plateau.reductions
        self.plateau.update(float(value))
        state = trainer.strategy.broadcast(self.plateau.state_dict(), src=0)
        self.plateau.load_state_dict(state)
        if self.plateau.reductions != before:
            log.info("ReduceOnPlateau: %s plateaued, LR factor now %g", self.plateau.monitor,
                     self.plateau.current_factor)
        for cb in _peers(trainer, _ScheduleBase):  # the owner shows the reduced LR of the next update now
            if cb._owns_lr() and cb.schedule is not None:
                cb._forget()
                cb._set_lr(trainer, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "plateau" in state_dict:
            self.plateau.load_state_dict(state_dict["plateau"])
            self._plateau_loaded = True


# ----------------------------------------------------------------------------------------------
# fine-tuning: staged unfreezing and discriminative learning rates
def _as_factors(factors: Any) -> LRFactors:
    return LRFactors.parse(factors)  # the one rule of every adapter


class StagedUnfreezeMixin:
    """Staged unfreezing of layer groups (handbook H5 way 2) by a core :class:`hpcallbacks.FreezePlan`.

    ``plan``: a ``FreezePlan`` (default ``FreezePlan.gradual(every_epochs=1)``: the top group,
    then one more group each epoch) or ``FreezePlan.recommend(...)``. ``groups``: ``None`` (the
    module's groups by :func:`hpcallbacks.torch.discover_groups`), a list of module names /
    regexes / modules / lists of those (bottom to top), or a callable ``pl_module -> list``.
    ``bn``: overrides the plan's BatchNorm policy (``"train"``, ``"freeze_stats"``,
    ``"freeze_all"``).

    At fit start the optimizer is regrouped (one named param group per layer group, every
    parameter in it from the start, LR ``x`` the plan's factor), so nothing is added mid-run:
    torch LR schedulers from ``configure_optimizers`` keep working (their per-group lists are
    expanded to the new groups) and checkpoints keep one structure. At each optimizer update the
    trainable set of the plan's stage for that update is applied (``requires_grad``: frozen
    groups get no gradient, backward stops at the lowest trainable group). The plan is
    re-applied from ``trainer.global_step`` on resume. Logs ``lr/<group>`` and ``trainable_groups``
    (keyword-only ``log=False``, Lightning only, stops it).

    Under DDP every group a stage will train is made trainable before the model is wrapped and
    the strategy's ``find_unused_parameters`` is switched on (frozen groups are then unused
    parameters): ranks stay identical after each unfreeze, at the cost of DDP's search for
    unused parameters each step. Without DDP nothing of that is paid.
    """

    def __init__(self, plan: Any = None, groups: Any = None, bn: str | None = None, *, log: bool = True) -> None:
        self.plan = R.as_plan(plan)
        if bn is not None and bn not in BN_POLICIES:
            raise ValueError(f"bn must be one of {', '.join(repr(b) for b in BN_POLICIES)} or None "
                             f"(the plan's policy); got {bn!r}")
        self.bn = bn
        if groups is not None and not callable(groups) and (
                isinstance(groups, str) or not isinstance(groups, (list, tuple)) or not groups):
            raise ValueError(f"groups must be None, a non-empty list (bottom to top) of module names, regexes, "
                             f"modules or lists of those, or a callable(pl_module) -> list; got {groups!r}")
        if not isinstance(log, bool):
            raise ValueError(f"log must be True or False; got {log!r}")
        self.groups_spec = groups
        self.log_lr = log
        self.groups: list[LayerGroup] = []
        self.resolved: ResolvedPlan | None = None
        self._effective_plan = self.plan
        self._saved: dict[str, Any] | None = None
        self._next: float = math.inf  # the first update of the next stage
        self._updates: Any = None
        self._stage = -1
        self._names: list[str] = []
        self._group_index: list[int] = []
        self._every = 0

    def _member(self) -> R.Member:
        return R.Member("StagedUnfreeze", "plan", factors=self.plan.factors, groups=self.groups_spec)

    # -- setup: groups, plan checks, DDP preparation ---------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: Any) -> None:
        if not _fitting(stage):
            return
        _, comp = _composition(trainer, foreign=False)
        plan = R.plan_for_run(self.plan, self.bn, comp.factors)
        self._effective_plan = plan
        self.groups = discover_groups(pl_module, _group_spec(self.groups_spec, pl_module))
        self._names = [g.name for g in self.groups]
        n = len(self.groups)
        # resolving with a huge epoch length checks the plan against the group count now
        probe = plan.resolve(n, steps_per_epoch=10**9)
        ever = probe.ever_trainable
        for group, trainable in zip(self.groups, ever, strict=True):
            if trainable:
                for p in group.params:
                    p.requires_grad_(True)
        kwargs = seam.ddp_kwargs(trainer)
        if kwargs is not None and not all(probe.masks[0]):
            if not kwargs.get("find_unused_parameters"):
                kwargs["find_unused_parameters"] = True
                log.info("StagedUnfreeze: DDP find_unused_parameters=True (frozen groups are unused parameters)")

    # -- fit start: regroup the optimizer ------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # callback states from ckpt_path are restored between setup and here
        if self._saved is not None and self._saved.get("group_names") not in (None, self._names):
            raise ValueError(f"the checkpoint's StagedUnfreeze groups {self._saved['group_names']} differ from the "
                             f"model's {self._names}: resume with the same model and groups=")
        factors = self._effective_plan.factors.resolve(len(self.groups))
        _regroup(trainer, self.groups, factors)

    # -- train start: resolve the plan, apply the stage of the (resumed) update -----------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        spe, total = _run_lengths(trainer)
        saved = self._saved or {}
        self._saved = None
        if self._effective_plan.unit == "epoch":
            if spe is None:
                raise ValueError("an epoch plan needs the updates per epoch, unknown for an iterable data set "
                                 "without a length: use FreezePlan(..., unit='update')")
        self.steps_per_epoch = spe
        self.resolved = self._effective_plan.resolve(len(self.groups), spe)
        saved_spe = saved.get("steps_per_epoch") if self._effective_plan.unit == "epoch" else None
        for notice in R.plan_notices("StagedUnfreeze", self.resolved, self._names, trainer.global_step, total, spe,
                                     saved_spe):
            _warn(notice)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        self._group_index = []
        if opt is not None:
            index = {id(p): i for i, g in enumerate(opt.param_groups) for p in g["params"]}
            self._group_index = [index.get(id(g.params[0]), -1) for g in self.groups]
        self._stage = -1
        self._updates = updates(trainer)
        self._every = _log_every(trainer, self.log_lr)
        self._apply(trainer, trainer.global_step)

    def _apply(self, trainer: Any, step: int) -> None:
        r = self.resolved
        assert r is not None
        stage = r.stage_at(step)
        self._next = r.starts[stage + 1] if stage + 1 < len(r.starts) else math.inf
        if stage == self._stage:
            return
        self._stage = stage
        apply_trainable(self.groups, r.masks[stage], bn=r.bn, training=True)
        for frozen in _peers(trainer, FreezeBatchNormMixin):  # it overrides the plan for its layers
            frozen.apply()
        trainable = [g.name for g, t in zip(self.groups, r.masks[stage], strict=True) if t]
        log.info("StagedUnfreeze: update %d, stage %d: %d/%d groups trainable (%s)", step, stage,
                 len(trainable), len(self.groups), ", ".join(trainable))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # an integer comparison until the next stage, applied once the update before it is done
        if self._updates.completed >= self._next:
            self._apply(trainer, self._updates.completed)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not self._every or self._updates.completed % self._every:
            return
        groups = optimizer.param_groups
        for name, i in zip(self._names, self._group_index, strict=False):
            if 0 <= i < len(groups):
                pl_module.log(f"lr/{name}", groups[i]["lr"], **_LOG_KW)
        if self.resolved is not None:
            pl_module.log("trainable_groups", float(sum(self.resolved.masks[self._stage])), **_LOG_KW)

    # -- checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"plan": self._effective_plan.get_config(), "group_names": list(self._names),
                "steps_per_epoch": getattr(self, "steps_per_epoch", None), "bn": self._effective_plan.bn}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = dict(state_dict)


class DiscriminativeLRMixin:
    """Per-group learning-rate factors (handbook H5 way 1): ``group LR = LR x factor[g]``, top group x 1.

    ``factors``: an :class:`hpcallbacks.LRFactors` (``geometric(2.6)``, ``layer_decay(0.75)``,
    ``spread(lo, hi)``, ...), a list of factors bottom to top, a number ``>= 1`` (geometric decay)
    or a number in (0, 1) (layer-wise decay), read by :meth:`hpcallbacks.LRFactors.parse`.
    ``groups`` as for ``StagedUnfreeze``. The optimizer is regrouped at fit start; the factors
    compose with any LR callback here (``CosineRestart()``...) and with a torch LR scheduler
    from ``configure_optimizers`` (its base LRs are scaled per group). With a ``StagedUnfreeze``
    in the same Trainer, the factors go to its plan and this callback does nothing else.
    """

    def __init__(self, factors: Any = 2.6, groups: Any = None) -> None:
        self.factors = _as_factors(factors)
        if groups is not None and not callable(groups) and (
                isinstance(groups, str) or not isinstance(groups, (list, tuple)) or not groups):
            raise ValueError(f"groups must be None, a non-empty list (bottom to top) of module names, regexes, "
                             f"modules or lists of those, or a callable(pl_module) -> list; got {groups!r}")
        self.groups_spec = groups
        self.groups: list[LayerGroup] = []
        self._active = False

    def _member(self) -> R.Member:
        return R.Member("DiscriminativeLR", "factors", factors=self.factors, groups=self.groups_spec)

    def setup(self, trainer: Any, pl_module: Any, stage: Any) -> None:
        if not _fitting(stage):
            return
        _, comp = _composition(trainer, foreign=False)
        self._active = comp.plan is None
        if self._active:
            self.groups = discover_groups(pl_module, _group_spec(self.groups_spec, pl_module))
            self.factors.resolve(len(self.groups))
            _warn(R.single_group_notice("DiscriminativeLR", [g.name for g in self.groups]))

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._active:
            _regroup(trainer, self.groups, self.factors.resolve(len(self.groups)))


# ----------------------------------------------------------------------------------------------
# norms
class FreezeBatchNormMixin:
    """Freeze the BatchNorm layers of a pretrained model (handbook H4: small batches).

    Every BatchNorm layer of the module (or only those inside ``layers``: module names, regular
    expressions or modules, as one group of :func:`hpcallbacks.torch.discover_groups`), except
    those under ``skip`` (names, dotted prefixes or regexes of ``named_modules``), normalises with
    its running statistics and keeps them: it stays in inference mode through the trainer's
    ``model.train()`` calls. ``freeze_affine=True`` also freezes its weight and bias. Applied in
    ``setup`` (before the optimizer and DDP exist) and again after each stage of a
    ``StagedUnfreeze`` (it overrides the plan for these layers). No layer left to freeze is a
    ``ValueError`` at fit start. The same arguments and meaning as the Keras and HF
    ``FreezeBatchNorm``.
    """

    def __init__(self, skip: Sequence[str] = (), freeze_affine: bool = False, layers: Any = None) -> None:
        if isinstance(skip, str):
            skip = (skip,)
        from hpcallbacks.norms import NormSwap

        self._matcher = NormSwap("frozen", skip=tuple(skip))  # reuse its skip rules and checks
        if not isinstance(freeze_affine, bool):
            raise ValueError(f"freeze_affine must be True or False; got {freeze_affine!r}")
        if layers is not None and (isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers):
            raise ValueError(f"layers must be None or a non-empty list of module names, regular expressions or "
                             f"modules; got {layers!r}")
        self.skip = tuple(skip)
        self.freeze_affine = freeze_affine
        self.layers_spec = None if layers is None else list(layers)
        self.layers: list[Any] = []

    def setup(self, trainer: Any, pl_module: Any, stage: Any) -> None:
        if not _fitting(stage):
            return
        self.layers = frozen_batch_norms(pl_module, self.layers_spec, self._matcher)
        self.apply()

    def apply(self) -> None:
        """Hold the layers in inference mode (and their affine weights frozen with ``freeze_affine``)."""
        hold_batch_norms(self.layers, self.freeze_affine)


class SwapNormMixin:
    """Replace BatchNorm layers before training (handbook H4, H6): ``to="group"`` (GroupNorm),
    ``"frozen"`` (:class:`hpcallbacks.torch.FrozenBatchNorm2d`) or ``"sync"`` (SyncBatchNorm).

    Acts in ``setup``: before ``configure_optimizers`` (the new layers' parameters are in the
    optimizer) and before DDP wraps the model; also before a checkpoint is loaded, so a resumed
    run loads into the swapped model. See :func:`hpcallbacks.torch.swap_norms` for ``skip``,
    ``groups``, ``eps`` and ``reuse_params``.
    """

    def __init__(self, to: str = "group", skip: Sequence[Any] = (), groups: int | None = None,
                 eps: float | None = None, reuse_params: bool = True) -> None:
        from hpcallbacks.norms import NormSwap

        names = [s for s in ((skip,) if isinstance(skip, str) else skip) if isinstance(s, str)]
        NormSwap(to=to, skip=tuple(names), groups=groups, eps=eps)  # check the arguments now
        self.to, self.skip, self.groups, self.eps, self.reuse_params = to, skip, groups, eps, reuse_params

    def setup(self, trainer: Any, pl_module: Any, stage: Any) -> None:
        swap_norms(pl_module, to=self.to, skip=self.skip, groups=self.groups, eps=self.eps,
                   reuse_params=self.reuse_params)


#: The instance attribute holding a callback's checkpoint key once a Trainer's ``setup`` checked its callbacks.
_KEY = "_hpcallbacks_state_key"


def _state_key(self: Any) -> str:
    """Lightning's key of the callback's checkpoint state: the class name (Lightning's default).

    Lightning refuses two stateful callbacks with one key when the ``Trainer`` is built, with its
    own ``RuntimeError``. Until the Trainer's ``setup`` the key is this instance's own (the class
    name and the object's id), so two instances of one class reach ``setup``, where
    :func:`check_callbacks` refuses them with the contract's ``ValueError`` (saying what to keep);
    from ``setup`` on, before a checkpoint is saved or loaded, it is the class name, so checkpoint
    keys stay what they were. (An instance that already ran a fit keeps its class-name key: two such
    instances given to one new Trainer meet Lightning's ``RuntimeError``, still before training.)
    """
    # an attribute read, not self.__dict__: reading __dict__ turns the instance's inline attribute values into a
    # dict and slows every later attribute read of the per-update hooks (~1 us an update in bench_lightning)
    return self._hpcallbacks_state_key or f"{type(self).__qualname__}@{id(self):x}"


def check_callbacks(trainer: Any) -> None:
    """Where the adapter first sees the whole callback list (every hpcallbacks callback's ``setup``, before
    anything trains): a class given twice is refused by the core's rule
    (:func:`hpcallbacks.run.refuse_repeats`), and every hpcallbacks callback gets its checkpoint key,
    the class name (a repeatable class's later instances: ``name#1``, ``name#2`` by their order)."""
    ours = [cb for cb in trainer.callbacks if getattr(cb, "_hpcallbacks_adapter", None) == "lightning"]
    R.refuse_repeats([type(cb).__name__ for cb in ours])
    seen: dict[str, int] = {}
    for cb in ours:
        name = type(cb).__qualname__
        seen[name] = count = seen.get(name, -1) + 1
        setattr(cb, _KEY, name if count == 0 else f"{name}#{count}")


def _checked_setup(setup: Any) -> Any:
    """``setup`` preceded by :func:`check_callbacks` (once per class: a subclass keeps its parent's)."""
    if getattr(setup, "_checks_callbacks", False):
        return setup

    def checked_setup(self: Any, trainer: Any, pl_module: Any, stage: Any) -> Any:
        check_callbacks(trainer)
        return setup(self, trainer, pl_module, stage)

    checked_setup.__doc__ = setup.__doc__
    checked_setup._checks_callbacks = True  # type: ignore[attr-defined]
    return checked_setup


def finish(cls: type, mixin: type) -> type:
    """What a public class gets beyond its mixin and ``Callback``: its arguments checked when it is
    built (a wrong keyword is an :class:`hpcallbacks.ArgumentError`, as in every adapter), the mixin's
    docstring and, for a schedule family, its signature; its ``setup`` checks the Trainer's callbacks first
    (:func:`check_callbacks`)."""
    checked_init(mixin)
    cls.setup = _checked_setup(cls.setup)  # type: ignore[attr-defined]
    if cls.__doc__ is None:
        cls.__doc__ = mixin.__doc__
    if "__signature__" in mixin.__dict__:
        cls.__signature__ = mixin.__dict__["__signature__"]  # type: ignore[attr-defined]
    return cls


def _guards() -> dict[str, Any]:
    """The other frameworks' first hooks (each says which import to use), Lightning's checkpoint key and
    the mark :func:`check_callbacks` finds the hpcallbacks callbacks by (in both namespaces)."""
    return {**R.guard_hooks("lightning"), "state_key": property(_state_key), "_hpcallbacks_adapter": "lightning",
            _KEY: None}


class LightningCallback(_Callback):
    """Base of the public callbacks: ``lightning.pytorch.Callback`` (``pytorch_lightning.Callback`` when
    only ``pytorch_lightning`` is installed), the checkpoint key and the wrong-framework guards.

    A public callback is its mixin (the behaviour) on this base, one class statement each:
    ``class StagedUnfreeze(StagedUnfreezeMixin, LightningCallback)``. The ``pytorch_lightning``
    namespace (:mod:`hpcallbacks_lightning.pl`) puts the same mixins on its own ``Callback``
    (:func:`build`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        finish(cls, cls.__bases__[0])


for _hook, _guard in _guards().items():
    setattr(LightningCallback, _hook, _guard)
del _hook, _guard


def mixins_of(module: str) -> dict[str, type]:
    """``{name: mixin}`` of the public classes a module defined on :class:`LightningCallback`."""
    return {c.__name__: c.__bases__[0] for c in LightningCallback.__subclasses__() if c.__module__ == module}


def build(callback_base: type, module: str) -> dict[str, type]:
    """The public callback classes again on ``callback_base`` (another namespace's ``Callback``), from the
    mixins of every class defined on :class:`LightningCallback`."""
    out: dict[str, type] = {}
    base = type("LightningCallback", (callback_base,), {"__module__": module, "__doc__": LightningCallback.__doc__,
                                                      **_guards()})
    for owner in (__name__, __name__.rsplit(".", 1)[0] + ".extras"):
        for name, mixin in mixins_of(owner).items():
            cls = type(name, (mixin, base), {"__module__": module, "__qualname__": name})
            out[name] = finish(cls, mixin)
    return out


# -- the public classes: one line each -----------------------------------------------------------------------
class LearningRateSchedule(LearningRateScheduleMixin, LightningCallback): ...
class Constant(FAMILY_MIXINS["Constant"], LightningCallback): ...
class ExponentialDecay(FAMILY_MIXINS["ExponentialDecay"], LightningCallback): ...
class PiecewiseConstantDecay(FAMILY_MIXINS["PiecewiseConstantDecay"], LightningCallback): ...
class PolynomialDecay(FAMILY_MIXINS["PolynomialDecay"], LightningCallback): ...
class InverseTimeDecay(FAMILY_MIXINS["InverseTimeDecay"], LightningCallback): ...
class CosineDecay(FAMILY_MIXINS["CosineDecay"], LightningCallback): ...
class CosineRestart(FAMILY_MIXINS["CosineRestart"], LightningCallback): ...
class LinearCosineDecay(FAMILY_MIXINS["LinearCosineDecay"], LightningCallback): ...
class NoisyLinearCosineDecay(FAMILY_MIXINS["NoisyLinearCosineDecay"], LightningCallback): ...
class Warmup(FAMILY_MIXINS["Warmup"], LightningCallback): ...
class StepDecay(FAMILY_MIXINS["StepDecay"], LightningCallback): ...
class MultiStepDecay(FAMILY_MIXINS["MultiStepDecay"], LightningCallback): ...
class OneCycle(FAMILY_MIXINS["OneCycle"], LightningCallback): ...
class Cyclic(FAMILY_MIXINS["Cyclic"], LightningCallback): ...
class SlantedTriangular(FAMILY_MIXINS["SlantedTriangular"], LightningCallback): ...
class InverseSqrt(FAMILY_MIXINS["InverseSqrt"], LightningCallback): ...
class WarmupStableDecay(FAMILY_MIXINS["WarmupStableDecay"], LightningCallback): ...
class ReduceOnPlateau(ReduceOnPlateauMixin, LightningCallback): ...
class StagedUnfreeze(StagedUnfreezeMixin, LightningCallback): ...
class DiscriminativeLR(DiscriminativeLRMixin, LightningCallback): ...
class FreezeBatchNorm(FreezeBatchNormMixin, LightningCallback): ...
class SwapNorm(SwapNormMixin, LightningCallback): ...


__all__ = sorted(mixins_of(__name__))
