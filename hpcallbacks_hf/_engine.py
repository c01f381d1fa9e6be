"""The coordinator shared by the hpcallbacks callbacks of one ``Trainer.train()`` call.

Several hpcallbacks callbacks may sit in one Trainer (a schedule, a freeze plan, layer-wise LR
factors, a plateau reduction, frozen BatchNorm). They meet in one :class:`Run`, keyed by the
``TrainerState`` of the ``train()`` call (a new one per call, also on resume):

* at ``on_train_begin`` each callback *attaches*: the run is read through the contract of
  :mod:`hpcallbacks.run` (the members' roles and HF's own scheduler go to ``compose``; the plan,
  the ``bn`` override and the factors to ``plan_for_run``; a schedule's run-derived defaults, on
  resume too, to ``schedule_for_run``), and the arguments are checked against the model, the
  optimizer, the LR scheduler and the data (every mistake is a ``ValueError`` there);
* before the first optimizer step (``on_step_begin``) the run is *configured* once: the
  optimizer is regrouped (one named param group per layer group x hyperparameter group, every
  parameter any stage trains included), HF's ``LambdaLR`` is made to compute the hpcallbacks
  learning rates, the plan's stage at the current update is applied, and the run's notices
  (:class:`hpcallbacks.run.RunWarning`) are issued once;
* per update: the stage is checked at ``on_step_begin`` (a bisect), the update counter moves at
  ``on_optimizer_step`` unless the update was skipped, and HF's own ``lr_scheduler.step()``
  evaluates the hpcallbacks learning rate of the next update.

Nothing here imports another adapter; the mechanics come from :mod:`hpcallbacks.torch`.
"""
from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchPlateau
from transformers.utils import logging

from hpcallbacks import run as R
from hpcallbacks.plans import ResolvedPlan
from hpcallbacks.torch import (
    LR_KEYS,
    LayerGroup,
    apply_trainable,
    discover_groups,
    regroup_lr_scheduler,
    regroup_optimizer,
)

from . import _seam
from ._seam import hf_lambda_kind, inner_optimizer, may_skip  # noqa: F401 - also this module's API

logger = logging.get_logger("hpcallbacks_hf")

#: Per-param-group lists of torch LR schedulers (reordered with the param groups).
_SCHEDULER_LISTS = _seam.SCHEDULER_GROUP_LISTS

#: Member roles that set or change learning rates.
LR_ROLES = ("schedule", "plateau", "plan", "factors", "modifier", "recipe")

#: ``lr_scheduler_type`` values an hpcallbacks schedule replaces without a word: HF's default
#: (``"linear"``) and ``"constant"``, both without warmup. Anything else is a second schedule.
REPLACEABLE_SCHEDULERS = ("linear", "constant")


# -- small helpers --------------------------------------------------------------------------------
def steps_per_epoch(args: Any, state: Any, train_dataloader: Any) -> tuple[int, bool]:
    """``(updates per epoch, known)`` exactly as ``Trainer.set_initial_training_values`` counts them."""
    try:
        batches = len(train_dataloader)
    except TypeError:
        batches = None
    if not batches:
        return max(int(state.max_steps or 1), 1), False
    acc = args.gradient_accumulation_steps
    return max(batches // acc + int(batches % acc > 0), 1), True


def _set_lr(group: dict[str, Any], value: float) -> None:
    current = group["lr"]
    if isinstance(current, torch.Tensor):
        current.fill_(value)
    else:
        group["lr"] = value


def _float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


# -- what the optimizer looked like when the Trainer built it --------------------------------------
class _Record:
    """The as-built layout of one optimizer, kept for checkpoints (see :func:`_as_built_state_dict`)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.params = [list(g["params"]) for g in optimizer.param_groups]
        self.hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        self.groups: list[LayerGroup] | None = None
        self.scaled = False  # whether the regroup scaled every LR key by the factor (under a user's torch scheduler)
        self.handle = optimizer.register_state_dict_post_hook(_as_built_state_dict)

    def base_lr(self, h: int) -> float:
        hyper = self.hyper[h]
        return _float(hyper.get("initial_lr", hyper["lr"]))


_RECORDS: weakref.WeakKeyDictionary[torch.optim.Optimizer, _Record] = weakref.WeakKeyDictionary()


def _record(optimizer: torch.optim.Optimizer) -> _Record:
    rec = _RECORDS.get(optimizer)
    if rec is None:
        rec = _RECORDS[optimizer] = _Record(optimizer)
    return rec


def _as_built_state_dict(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` in the layout the Trainer built, so a resumed Trainer can load it.

    A resumed ``Trainer`` builds a fresh optimizer (the as-built layout: HF's decay / no-decay
    groups) and loads ``optimizer.pt`` into it *before* any callback runs; the regrouped layout
    would not fit. The per-parameter state (Adam moments, momentum) is kept for every parameter
    the as-built optimizer holds; the callbacks regroup again at the next ``on_train_begin``.
    """
    rec = _RECORDS.get(optimizer)
    if rec is None or rec.groups is None:
        return None
    index: dict[int, int] = {}
    for group, packed in zip(optimizer.param_groups, state_dict["param_groups"], strict=True):
        for p, i in zip(group["params"], packed["params"], strict=True):
            index[id(p)] = i
    current: dict[int, dict[str, Any]] = {}
    for group in optimizer.param_groups:
        current.setdefault(group.get("hp_group", 0), group)
    new_groups, new_state, n = [], {}, 0
    for h, params in enumerate(rec.params):
        entry = dict(rec.hyper[h])
        cur = current.get(h)
        if cur is not None:
            # the current values (a scheduler's momentum, a ReduceLROnPlateau's reductions), the LRs without the
            # layer factor: "lr" always carries it; initial_lr / max_lr / min_lr only when the regroup scaled them
            factor = float(cur.get("lr_factor", 1.0)) or 1.0
            for key in entry:
                if key not in cur or key in ("name", "params"):
                    continue
                value = cur[key]
                if key == "lr" or (rec.scaled and key in LR_KEYS):
                    value = value.clone() / factor if isinstance(value, torch.Tensor) else value / factor
                entry[key] = value
        ids = []
        for p in params:
            old = index.get(id(p))
            if old is not None and old in state_dict["state"]:
                new_state[n] = state_dict["state"][old]
            ids.append(n)
            n += 1
        entry["params"] = ids
        new_groups.append(entry)
    return {"state": new_state, "param_groups": new_groups}


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class Context:
    """What ``on_train_begin`` gives the callbacks, plus the numbers derived from it.

    The ``TrainerState`` is held weakly: the registry of runs is keyed by it and must let it go.
    """

    args: Any
    state_ref: Any
    model: torch.nn.Module
    optimizer: Any
    inner: torch.optim.Optimizer
    scheduler: Any
    steps_per_epoch: int
    epoch_known: bool
    total_updates: int
    base_lr: float

    @property
    def state(self) -> Any:
        return self.state_ref()


_RUNS: dict[int, tuple[weakref.ref, Run]] = {}


def run_for(state: Any, create: bool = False) -> Run | None:
    """The run of the ``train()`` call that owns ``state`` (created on first attach)."""
    entry = _RUNS.get(id(state))
    if entry is not None and entry[0]() is state:
        return entry[1]
    if not create:
        return None
    for key in [k for k, (ref, _) in _RUNS.items() if ref() is None]:
        del _RUNS[key]
    run = Run()
    _RUNS[id(state)] = (weakref.ref(state), run)
    return run


def make_context(args: Any, state: Any, kwargs: dict[str, Any], who: str) -> Context:
    model = kwargs.get("model")
    optimizer = kwargs.get("optimizer")
    if model is None or optimizer is None:
        raise ValueError(f"{who} needs the Trainer's model and optimizer at on_train_begin; got model={model!r}, "
                         f"optimizer={optimizer!r}: use it as a transformers Trainer callback")
    inner = inner_optimizer(optimizer)
    spe, known = steps_per_epoch(args, state, kwargs.get("train_dataloader"))
    total = int(state.max_steps) if state.max_steps and state.max_steps > 0 else spe
    rec = _RECORDS.get(inner)
    first = rec.hyper[0] if rec is not None else inner.param_groups[0]
    base_lr = _float(first.get("initial_lr", first["lr"]))
    if rec is not None and rec.groups is not None:  # a second train() on a regrouped optimizer
        base_lr = rec.base_lr(0)
    return Context(args, weakref.ref(state), model, optimizer, inner, kwargs.get("lr_scheduler"), spe, known, total,
                   base_lr)


class Run:
    """The members of one ``train()`` call and the state they share."""

    def __init__(self) -> None:
        self.members: list[Any] = []
        self.ctx: Context | None = None
        self.configured = False
        # decided at attach time
        self.schedule = None  # a core Schedule, or None: HF's own schedule
        self.plateaus: list[Any] = []  # core ReduceOnPlateau state machines
        self.modifiers: list[Any] = []  # members multiplying the LR (ScaleLearningRate), before the plateaus
        self.groups: list[LayerGroup] | None = None
        self.group_spec: Any = None
        self.resolved: ResolvedPlan | None = None
        self.factors: tuple[float, ...] | None = None
        self.bn = "freeze_stats"
        self.bn_members: list[Any] = []
        # per-update state (the performed updates: the ``updates`` property)
        self.skipped = 0
        self.stage = -1
        self._next_stage: float = -1  # the update at which apply_stage has something to do (-1: not configured)
        self.mask: tuple[bool, ...] | None = None
        self.adopted = False
        self.composition: R.Composition | None = None
        self.notices: list[str] = []  # the run's RunWarnings, issued once when it is configured
        self._cache_step: int | None = None
        self._layer_pg: dict[int, int] = {}  # layer group -> the Trainer's param group (not regrouped)
        self._table: list[float] = []  # the base LRs of updates _table_start .. (hpcallbacks schedule only)
        self._table_start = 0
        self._cache: dict[int, float] = {}
        self._lambdas: list[Any] = []
        self._pg_layer: list[int | None] = []
        self._sources: dict[int, Any] = {}
        self._bases: dict[int, float] = {}
        self.may_skip = True  # whether an optimizer step can be skipped (read after each step); set by configure

    # -- attach: check everything, change nothing ------------------------------------------------
    @property
    def driver(self) -> Any:
        return self.members[0] if self.members else None

    def attach(self, member: Any, ctx: Context) -> None:
        if self.ctx is None:
            self.ctx = ctx
        if member not in self.members:
            self.members.append(member)
        if member.restorable:
            # a callback instance given to a new run starts fresh, unless the run resumes a checkpoint
            if R.fresh(resuming=ctx.state.global_step > 0):
                member.reset()
            else:
                member.restore_from(ctx.state)
        self.skipped = max(int(getattr(m, "skipped_updates", 0) or 0) for m in self.members)
        self.validate()

    def _role(self, role: str) -> list[Any]:
        return [m for m in self.members if m.role == role]

    def foreign(self, members: list[R.Member]) -> list[R.Foreign]:
        """HF's own LR scheduler of this run, as the contract sees it (:class:`hpcallbacks.run.Foreign`).

        HF's default ``"linear"`` and ``"constant"`` schedules without warmup or kwargs are replaced by
        an hpcallbacks schedule without a word (they are not foreign then); any other ``LambdaLR`` (an
        ``lr_scheduler_type``, a warmup, or one passed to ``Trainer(optimizers=...)``) is a schedule the
        hpcallbacks factors, modifiers and plateau multiply; ``"reduce_lr_on_plateau"`` is a plateau
        rule; any other torch scheduler sets the LR itself.
        """
        ctx = self.ctx
        sched = ctx.scheduler
        if sched is None:
            return []
        args = ctx.args
        if isinstance(sched, TorchPlateau):
            return [R.Foreign("lr_scheduler_type='reduce_lr_on_plateau'", "plateau",
                              fix="set lr_scheduler_type='constant' and use the ReduceOnPlateau callback for the "
                                  "reductions")]
        if isinstance(sched, LambdaLR):
            kinds = [hf_lambda_kind(fn) for fn in sched.lr_lambdas]
            if any(kind is None for kind, _ in kinds):
                return [R.Foreign("an LR scheduler passed to Trainer(optimizers=...)", "schedule", composable=True,
                                  fix="pass no lr_scheduler to Trainer(optimizers=...)")]
            replaceable = all(kind in REPLACEABLE_SCHEDULERS and not warmup for kind, warmup in kinds) \
                and not args.lr_scheduler_kwargs
            owned = any(m.role in ("schedule", "recipe") or (m.role == "plateau" and m.has_schedule) for m in members)
            if replaceable and owned:
                return []  # an hpcallbacks schedule replaces HF's default
            return [R.Foreign(f"the Trainer's lr_scheduler_type={_type_name(args)!r} (warmup_steps="
                              f"{args.warmup_steps!r}, lr_scheduler_kwargs={args.lr_scheduler_kwargs!r})", "schedule",
                              composable=True,
                              fix="set lr_scheduler_type='constant', warmup_steps=0 and no lr_scheduler_kwargs (wrap "
                                  "the schedule in hpcallbacks.Warmup for a warmup)")]
        return [R.Foreign(f"the {type(sched).__name__} passed to Trainer(optimizers=...)", "schedule",
                          fix="pass no lr_scheduler to Trainer(optimizers=...)")]

    def validate(self) -> None:
        """Read the run's callbacks and HF's scheduler through the contract (:func:`hpcallbacks.run.compose`).

        Called at every attach (and again when ``LRFinder`` changes the base LR): it changes nothing
        in the model or optimizer. The notices of the run (:class:`hpcallbacks.run.RunWarning`) are
        kept and issued once, when the run is configured.
        """
        ctx = self.ctx
        assert ctx is not None
        members = [m._run_member() for m in self.members]
        comp = self.composition = R.compose(members, self.foreign(members))
        plan_member = self.members[comp.plan] if comp.plan is not None else None
        factor_member = self.members[comp.factors_from] if comp.factors_from is not None \
            and comp.factors_from != comp.plan else None
        structural = [m for m in (plan_member, factor_member) if m is not None]
        self._check_backend(bool(structural))
        self.notices = []
        owner = self.members[comp.schedule] if comp.schedule is not None else None
        self.schedule = owner.build_schedule(ctx) if owner is not None else None
        self._table = []
        if owner is not None and getattr(owner, "schedule_notice", None):
            self.notices.append(owner.schedule_notice)
        self.plateaus = [self.members[comp.plateau].machine] if comp.plateau is not None else []
        self.modifiers = [self.members[i] for i in comp.modifiers]
        self.bn_members = self._role("bn")
        if not structural:
            self.groups = None
            return
        spec = comp.groups
        who = type(next((m for m in structural if m.groups is not None), structural[0])).__name__
        try:
            groups = discover_groups(ctx.model, spec)
        except ValueError as error:
            raise ValueError(f"{who}(groups={spec!r}): {error}") from None
        self.groups, self.group_spec = groups, spec
        names = [g.name for g in groups]
        n = len(groups)
        listing = ", ".join(names[:6]) + (", ..." if n > 6 else "")
        self.resolved = None
        start = max(int(ctx.state.global_step) - self.skipped, 0)
        try:
            self.factors = tuple(comp.factors.resolve(n))
        except ValueError as error:
            who = "DiscriminativeLR(factors=...)" if factor_member is not None else "StagedUnfreeze(plan=...)"
            raise ValueError(f"{who}: the model has {n} layer groups ({listing}): {error}") from None
        if plan_member is None:
            self.notices += [m for m in (R.single_group_notice("DiscriminativeLR", names),) if m]
        else:
            plan = R.plan_for_run(plan_member.plan, plan_member.bn, comp.factors)
            if plan.unit == "epoch" and not ctx.epoch_known:
                raise ValueError("StagedUnfreeze(plan=...) counts epochs but the train dataloader has no length "
                                 "(an IterableDataset): use FreezePlan(..., unit='update')")
            try:
                self.resolved = plan.resolve(n, ctx.steps_per_epoch)
            except ValueError as error:
                raise ValueError(f"StagedUnfreeze(plan=...): the model has {n} layer groups ({listing}): {error}"
                                 ) from None
            self.bn = plan.bn
            self.notices += R.plan_notices("StagedUnfreeze", self.resolved, names, start, ctx.total_updates,
                                           ctx.steps_per_epoch if ctx.epoch_known else None)
        self._check_distributed()

    def _check_backend(self, structural: bool) -> None:
        ctx = self.ctx
        args = ctx.args
        if structural and (getattr(args, "deepspeed", None) or getattr(args, "fsdp", None)):
            raise ValueError("StagedUnfreeze / DiscriminativeLR regroup the torch optimizer, which DeepSpeed and "
                             "FSDP own; train without deepspeed=/fsdp= or drop these callbacks")
        if _seam.is_layerwise_optimizer(ctx.inner):
            raise ValueError("the layer-wise optimizers (optim='*_layerwise') have no shared param groups to set "
                             "learning rates on; choose another optim")

    def _check_distributed(self) -> None:
        ctx = self.ctx
        args = ctx.args
        if getattr(args, "world_size", 1) <= 1 or self.resolved is None:
            return
        ever_frozen = any(not all(m) for m in self.resolved.masks)
        if not ever_frozen:
            return
        if not _seam.ddp_finds_unused(ctx.model, args):
            raise ValueError("StagedUnfreeze freezes layer groups in a distributed run, and DDP then needs "
                             "ddp_find_unused_parameters=True in TrainingArguments")

    # -- configure: once, before the first optimizer step --------------------------------------------
    def ensure(self) -> None:
        if not self.configured and self.ctx is not None:
            self.configure()

    def configure(self) -> None:
        ctx = self.ctx
        inner = ctx.inner
        rec = _record(inner)
        self._layer_pg: dict[int, int] = {}
        held = {id(p) for params in rec.params for p in params}
        if self.groups is not None and rec.groups is None and all(f == 1.0 for f in self.factors) and all(
                id(p) in held for layer in self.groups for p in layer.params):
            # nothing to scale, nothing missing: the Trainer's param groups stay (no extra foreach batches)
            where = {id(p): i for i, pg in enumerate(inner.param_groups) for p in pg["params"]}
            self._layer_pg = {g: where[id(layer.params[0])] for g, layer in enumerate(self.groups)}
            self._pg_layer = [None] * len(inner.param_groups)
        elif self.groups is not None:
            if rec.groups is None:
                self._warn_missing(rec)
                # a user's torch scheduler (OneCycleLR, StepLR, SequentialLR, ...) computes every group's LR
                # itself, from the group's own values: they carry the factor (as in the Lightning adapter);
                # HF's LambdaLR and ReduceLROnPlateau get the factor from the run (_adopt)
                foreign = ctx.scheduler is not None and not isinstance(ctx.scheduler, (LambdaLR, TorchPlateau))
                regroup_optimizer(inner, self.groups, self.factors if foreign else (1.0,) * len(self.groups))
                rec.groups, rec.scaled = self.groups, foreign
                if not isinstance(ctx.scheduler, LambdaLR) and ctx.scheduler is not None:
                    regroup_lr_scheduler(ctx.scheduler, inner)
            elif [tuple(map(id, g.params)) for g in rec.groups] != [tuple(map(id, g.params)) for g in self.groups]:
                raise ValueError("the Trainer's optimizer was regrouped for other layer groups by an earlier "
                                 "train(); build a new Trainer (or keep the same groups=)")
            else:
                self.groups = rec.groups
            owner = {id(p): g for g, layer in enumerate(self.groups) for p in layer.params}
            self._top_first(inner, ctx.scheduler, owner)
            self._pg_layer = [owner.get(id(pg["params"][0])) if pg["params"] else None for pg in inner.param_groups]
            for pg, g in zip(inner.param_groups, self._pg_layer, strict=True):
                pg["lr_factor"] = self.factors[g] if g is not None else 1.0
        else:
            self._pg_layer = [None] * len(inner.param_groups)
        self.may_skip = may_skip(ctx.optimizer)
        self._adopt(rec)
        self.stage = -1
        self.apply_stage()
        for member in self.bn_members:
            member.apply(ctx.model)
        self.configured = True
        for notice in self.notices:  # valid but suspicious: trains, and says so once per run
            warnings.warn(notice, R.RunWarning, stacklevel=2)

    def _top_first(self, inner: torch.optim.Optimizer, sched: Any, owner: dict[int, int]) -> None:
        """Put the top layer group's param groups first (factor 1), so HF's own ``learning_rate`` log
        (param group 0) shows the schedule's value; the scheduler's per-group lists follow."""
        top = len(self.groups) - 1
        groups = inner.param_groups
        layer = [owner.get(id(pg["params"][0])) if pg["params"] else None for pg in groups]
        order = [i for i, g in enumerate(layer) if g == top] + [i for i, g in enumerate(layer) if g != top]
        if order == list(range(len(groups))):
            return
        groups[:] = [groups[i] for i in order]
        for part in _seam.scheduler_parts(sched):  # SequentialLR / ChainedScheduler: theirs too
            if part is None or getattr(part, "_hpcallbacks_top_first", False):
                continue  # a resumed scheduler's lists are loaded in this order already
            for attr in _SCHEDULER_LISTS:
                values = getattr(part, attr, None)
                if isinstance(values, list) and len(values) == len(order):
                    setattr(part, attr, [values[i] for i in order])
            part._hpcallbacks_top_first = True

    def _warn_missing(self, rec: _Record) -> None:
        held = {id(p) for params in rec.params for p in params}
        ever = self.resolved.ever_trainable if self.resolved is not None else (True,) * len(self.groups)
        missing = [layer.name for layer, e in zip(self.groups, ever, strict=True)
                   if e and any(id(p) not in held for p in layer.params)]
        if missing and self.ctx.args.save_strategy != "no":
            logger.warning(
                "hpcallbacks: the optimizer was built without parameters of %s (frozen when it was built): they "
                "are added now and train, but their optimizer state is not in checkpoints. Pass StagedUnfreeze "
                "to Trainer(callbacks=...) and let the Trainer build the optimizer to checkpoint it.",
                ", ".join(missing[:4]))

    def _adopt(self, rec: _Record) -> None:
        """Make the Trainer's LR scheduler compute the hpcallbacks learning rates."""
        ctx = self.ctx
        sched = ctx.scheduler
        inner = ctx.inner
        lr_members = [m for m in self.members if m.role in LR_ROLES]
        if not lr_members:
            return
        groups = inner.param_groups
        regrouped = rec.groups is not None

        def hp_of(i: int) -> int:
            return int(groups[i].get("hp_group", 0)) if regrouped else i

        if sched is not None and not isinstance(sched, (LambdaLR, TorchPlateau)):
            return  # a user's torch scheduler: it sets every group's LR from the group's (scaled) values
        if isinstance(sched, LambdaLR):
            lambdas = list(sched.lr_lambdas)
            if len(lambdas) == len(rec.params):
                by_hp = dict(enumerate(lambdas))
            else:
                by_hp = {}
                for i in range(len(groups)):
                    by_hp.setdefault(hp_of(i), lambdas[i] if i < len(lambdas) else lambdas[0])
            self._sources = {h: getattr(fn, "_hpcallbacks_source", fn) for h, fn in by_hp.items()}
            self._bases = {h: rec.base_lr(h) for h in range(len(rec.params))}
            self._lambdas = [self._lambda(hp_of(i), self._pg_layer[i]) for i in range(len(groups))]
            sched.lr_lambdas = self._lambdas
            sched.base_lrs = [1.0] * len(groups)
            sched.last_epoch = self.updates
            self.adopted = True
            self.refresh()
            return
        # torch ReduceLROnPlateau (lr_scheduler_type="reduce_lr_on_plateau"): group LR = its LR x factor
        self.adopted = False
        for i, pg in enumerate(groups):
            g = self._pg_layer[i]
            base = _float(rec.hyper[hp_of(i)]["lr"])
            _set_lr(pg, base * (self.factors[g] if g is not None else 1.0))
        _seam.set_last_lr(sched, [_float(pg["lr"]) for pg in groups])

    def _lambda(self, h: int, g: int | None):
        run = self

        def lr_lambda(step: int) -> float:
            return run.lr_value(h, g, step)

        lr_lambda._hpcallbacks_source = self._sources.get(h)  # type: ignore[attr-defined]
        return lr_lambda

    def lr_value(self, h: int, g: int | None, step: int) -> float:
        """The learning rate of param groups (hyperparameter group ``h``, layer group ``g``) at ``step``."""
        if step != self._cache_step:  # one schedule evaluation per update, not one per param group
            self._cache_step, self._cache = step, {}
        key = -1 if self.schedule is not None else h
        base = self._cache.get(key)
        if base is None:
            if self.schedule is not None:  # computed ahead, a stretch at a time: a list read per update
                i = step - self._table_start
                if not 0 <= i < len(self._table):  # the rest of the run (4,096 at most)
                    n = max(1, min(4096, int(self.ctx.total_updates) - step + 1))
                    self._table_start, i = step, 0
                    self._table = [self._base(h, t) for t in range(step, step + n)]
                base = self._table[i]
            else:
                base = self._base(h, step)
            self._cache[key] = base
        lr = base * (self.factors[g] if g is not None else 1.0)
        if not math.isfinite(lr):
            raise ValueError(f"the learning rate of update {step} is {lr!r}; check the schedule's arguments")
        return lr

    def _base(self, h: int, step: int) -> float:
        base = self.schedule(step) if self.schedule is not None else self._bases[h] * self._sources[h](step)
        for member in self.modifiers:
            base = member.modify(base, step)
        for plateau in self.plateaus:
            base = plateau.apply(base)
        return base

    def peak_lr(self) -> float:
        """The largest LR of the top group over the rest of the run (sampled at <= 10,000 updates), plateaus left out.

        With an hpcallbacks schedule its values; with HF's schedule the optimizer's base LR (every HF
        schedule peaks at 1x); the modifiers (``ScaleLearningRate``) multiply either.
        """
        ctx = self.ctx
        start = max(int(ctx.state.global_step) - self.skipped, 0)
        end = max(int(ctx.total_updates), start + 1)
        stride = max(1, (end - start) // 10_000)
        peak = -math.inf
        for t in range(start, end, stride):
            lr = self.schedule(t) if self.schedule is not None else ctx.base_lr
            for member in self.modifiers:
                lr = member.modify(lr, t)
            peak = max(peak, lr)
        return peak

    def refresh(self) -> None:
        """Write the learning rates of update ``self.updates`` into the param groups (after a change)."""
        ctx = self.ctx
        sched = ctx.scheduler
        groups = ctx.inner.param_groups
        self._cache_step = None
        self._table = []
        if self.adopted:
            values = [fn(self.updates) for fn in self._lambdas]
            for pg, value in zip(groups, values, strict=True):
                _set_lr(pg, value)
            _seam.set_last_lr(sched, [_float(pg["lr"]) for pg in groups])
        elif self.plateaus:
            pass  # a torch ReduceLROnPlateau owns the LR; refused with plateaus at attach

    def apply_stage(self) -> None:
        if self.resolved is None:
            self._next_stage = math.inf
            return
        starts = self.resolved.starts
        stage = self.resolved.stage_at(self.updates)
        self._next_stage = starts[stage + 1] if stage + 1 < len(starts) else math.inf
        if stage == self.stage:
            return
        self.stage = stage
        self.mask = self.resolved.masks[stage]
        apply_trainable(self.groups, self.mask, self.bn)
        for member in self.bn_members:
            member.apply(self.ctx.model)

    # -- per-update events (called by the driver only) ------------------------------------------------
    @property
    def updates(self) -> int:
        """The optimizer updates performed so far: the Trainer's ``global_step`` (every step, performed or
        skipped, outside ``on_optimizer_step``) less the skipped ones."""
        state = self.ctx.state if self.ctx is not None else None
        return max(int(state.global_step) - self.skipped, 0) if state is not None else 0

    def step_begin(self) -> float:
        """At the first step and a stage's first update: configure the run, apply the stage. Returns the
        ``global_step`` at which the next step's start has work again (the driver compares, nothing more)."""
        if not self.configured:
            self.configure()
        elif self.updates >= self._next_stage:
            self.apply_stage()
        return self._next_stage + self.skipped

    def optimizer_step(self, optimizer: Any) -> float:
        """After an optimizer step that can be skipped (:attr:`may_skip`): count a skipped one. Returns the
        ``global_step`` of the next stage's first update, which a skipped step moves by one."""
        if not self.configured:
            self.configure()
        if _seam.step_was_skipped(optimizer):
            self.skipped += 1
        return self._next_stage + self.skipped

    def log_values(self) -> dict[str, float]:
        """Per-layer-group LR of the last update (named ``lr/<group>``) and the trainable-group count."""
        if not self.configured or self.groups is None:
            return {}
        t = max(self.updates - 1, 0)
        out: dict[str, float] = {}
        groups = self.ctx.inner.param_groups
        first: dict[int, int] = dict(self._layer_pg)  # the Trainer's own groups, when not regrouped
        for i, g in enumerate(self._pg_layer):
            if g is not None:
                first.setdefault(g, i)
        for g, layer in enumerate(self.groups):
            i = first.get(g)
            if i is None:
                continue
            out[f"lr/{layer.name}"] = self._lambdas[i](t) if self.adopted else _float(groups[i]["lr"])
        mask = self.mask if self.mask is not None else (True,) * len(self.groups)
        out["trainable_groups"] = float(sum(mask))
        return out


def _type_name(args: Any) -> str:
    value = args.lr_scheduler_type
    return getattr(value, "value", value)
