"""The hpcallbacks callbacks for ``transformers.Trainer``.

Rule for learning rates, whatever the combination of callbacks:

* with an hpcallbacks schedule (:class:`LearningRateSchedule` or a family callback such as
  :class:`CosineRestart`), that schedule **replaces** HF's: the LR of param group ``k`` at update
  ``t`` is ``schedule(t) * factor[g(k)]``. HF's scheduler object stays (HF still calls
  ``lr_scheduler.step()`` and logs ``learning_rate``), but it computes the hpcallbacks numbers. Its
  ``lr_scheduler_type`` must be the default ``"linear"`` or ``"constant"``, with no warmup and no
  ``lr_scheduler_kwargs``; anything else is a second schedule and refused at ``on_train_begin``.
* without one, HF's schedule stays and the callbacks **compose** with it: the LR of param group
  ``k`` is ``HF schedule(t) * factor[g(k)]`` (any LambdaLR: an ``lr_scheduler_type`` or a
  ``LambdaLR`` passed to ``Trainer(optimizers=...)``). ``"reduce_lr_on_plateau"`` composes with
  the per-group factors only: it is a second plateau rule beside :class:`ReduceOnPlateau`.
* :class:`ReduceOnPlateau` multiplies either by its factor (never below ``min_lr``).

Which combinations are refused, and with which message, is decided by
:func:`hpcallbacks.run.compose` (HF's scheduler is a :class:`hpcallbacks.run.Foreign` there).

The update counter ``t`` counts optimizer updates (after gradient accumulation) that were not
skipped (a mixed-precision overflow skips the update and HF then skips ``lr_scheduler.step()``):
the LR and the freeze stage advance once per performed update.

Freezing: :class:`StagedUnfreeze` makes the parameters of every layer group that any stage
trains ``requires_grad=True`` at ``on_init_end`` (so the Trainer's optimizer holds them even
when the user froze them before building the Trainer), then regroups the optimizer before the
first step (one named param group per layer group x HF's decay / no-decay group) and applies
the stage of the current update. Frozen parameters get no gradient (``.grad is None``): no
backward below the lowest trainable group, no weight decay, nothing in gradient clipping.

Resume: every callback is an ``ExportableState``; its arguments and state are in
``trainer_state.json``. At ``on_train_begin`` the callbacks read them back from
``state.stateful_callbacks`` themselves, so ``restore_callback_states_from_checkpoint`` may be
True or False. Plans and schedules are functions of the update count, re-applied from
``state.global_step``. The optimizer's ``state_dict()`` is written in the layout the Trainer
built, so the resumed Trainer loads it before the callbacks regroup again.

Logging: at each training log the callbacks add ``lr/<layer group>`` (the LR of the last update)
and ``trainable_groups`` to ``logs`` (and to ``state.log_history``). HF lists the ``report_to``
integrations (TensorBoard, W&B, ...) before the user's callbacks and calls every callback in its
list's order, so when the Trainer is built (``on_init_end``) and again at ``on_train_begin``
the hpcallbacks callbacks move themselves right after HF's ``DefaultFlowCallback``, before the
integrations and every other callback (whose order is kept): the integrations and any callback
of yours, wherever listed, see the keys, and see the learning rates and frozen groups the
hpcallbacks callbacks set for the update. ``report_to`` needs nothing else.

Contract (:mod:`hpcallbacks.run`, the same in every adapter): conflicts between the callbacks,
and with HF's own ``lr_scheduler_type`` or scheduler, are one ``ValueError`` each at
``on_train_begin``; valid but suspicious set-ups (a plan stage after the run's end, a model with
one layer group) train and warn once with :class:`hpcallbacks.run.RunWarning`; a callback
instance reused for a new Trainer starts fresh unless the run resumes a checkpoint; a wrong
keyword is an :class:`hpcallbacks.ArgumentError` (a ``TypeError`` and a ``ValueError``); a
callback given to a Keras or Lightning loop raises ``TypeError`` naming the import to use.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from torch import nn
from transformers import DefaultFlowCallback, TrainerCallback

from hpcallbacks import defaults as D
from hpcallbacks import run as R
from hpcallbacks import schedules as S
from hpcallbacks._checks import ArgumentChecked, bind, checked_init
from hpcallbacks.plans import BN_POLICIES, FreezePlan, LRFactors, Recommendation
from hpcallbacks.torch import discover_groups, frozen_batch_norms, hold_batch_norms, swap_norms

from . import _engine as E
from . import _seam
from ._seam import ExportableState

__all__ = ["HPCallback", "LearningRateSchedule", "ReduceOnPlateau", "StagedUnfreeze", "DiscriminativeLR",
           "FreezeBatchNorm", "SwapNorm", "FAMILIES"]  # and every family class, added where they are defined


#: The public callback classes of this adapter (and their subclasses): moved first in the Trainer's list.
_PUBLIC: list[type] = []


#: The other frameworks' first hooks, each raising TypeError naming the import to use.
_GUARDS: dict[str, Any] = R.guard_hooks("hf")


def public_callback(cls: type) -> type:
    """Make ``cls`` a public callback class of this adapter (every class ``hpcallbacks_hf`` exports).

    * given to a Keras or Lightning loop, its first hook there raises ``TypeError`` naming the
      import to use (:func:`hpcallbacks.run.guard_hooks`);
    * a call with an argument its signature does not take raises
      :class:`hpcallbacks.ArgumentError` (:func:`hpcallbacks._checks.checked_init`; a class that
      inherits its ``__init__`` is checked against ``inspect.signature(cls)``);
    * the Trainer calls it before the ``report_to`` integrations and the user's other callbacks
      (:func:`callbacks_first`).
    """
    for name, guard in _GUARDS.items():
        if not hasattr(cls, name):
            setattr(cls, name, guard)
    if cls.on_init_end is TrainerCallback.on_init_end:  # every public callback checks the list it is in
        cls.on_init_end = _init_end
    if "__init__" not in vars(cls) and "__signature__" not in vars(cls):
        cls.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]
    checked_init(cls)
    if not any(issubclass(cls, c) for c in _PUBLIC):
        _PUBLIC.append(cls)
    return cls


def seen_by_trainer() -> None:
    """What every hpcallbacks callback does where the Trainer shows it the whole callback list
    (``on_init_end``, inside ``Trainer(...)``, and again at ``on_train_begin``): refuse a callback
    class given twice (:func:`hpcallbacks.run.refuse_repeats`, before anything trains) and put the
    hpcallbacks callbacks first (:func:`callbacks_first`). Nothing without a Trainer on the stack."""
    trainer = _seam.calling_trainer()
    if trainer is None:
        return
    current = _seam.callback_list(trainer)
    public = tuple(_PUBLIC)
    R.refuse_repeats([type(cb).__name__ for cb in current if isinstance(cb, public)])
    callbacks_first(trainer, current)


def _handler() -> Any:
    """The Trainer's callback list as ``.callbacks`` (None without a Trainer on the stack): kept for callers
    written before the seam; new code calls ``_seam.calling_trainer()`` and ``_seam.callback_list()``."""
    trainer = _seam.calling_trainer()
    return None if trainer is None else SimpleNamespace(callbacks=_seam.callback_list(trainer))


def _init_end(self, args, state, control, **kwargs):  # the on_init_end of public classes that have none
    seen_by_trainer()


def callbacks_first(trainer: Any, current: list[Any]) -> None:
    """Put the hpcallbacks callbacks right after HF's ``DefaultFlowCallback`` in the Trainer's callback list.

    HF lists ``[DefaultFlowCallback, <report_to integrations>, <callbacks=...>, Printer/Progress]``
    and calls them in that order, so the integrations would log before the hpcallbacks callbacks
    add ``lr/<group>`` to the logs. A new list is assigned (an event in progress goes on over the
    old one); the order of every other callback is kept. Idempotent.
    """
    public = tuple(_PUBLIC)
    ours = [cb for cb in current if isinstance(cb, public)]
    if not ours:
        return
    flow = [cb for cb in current if isinstance(cb, DefaultFlowCallback)]
    placed = {id(cb) for cb in flow + ours}
    order = flow + ours + [cb for cb in current if id(cb) not in placed]
    if [id(cb) for cb in order] != [id(cb) for cb in current]:
        _seam.set_callback_list(trainer, order)


class HPCallback(TrainerCallback, ExportableState, ArgumentChecked):
    """Base of the hpcallbacks callbacks: attaches to the run of each ``train()`` call."""

    role: str = ""
    #: Whether the callback keeps state across a checkpoint (read back at on_train_begin).
    restorable: bool = True
    _drives = 0  # id() of the TrainerState whose per-update events this callback forwards to its run (0: none)
    _stage_at: float = math.inf  # the global_step whose start has work (configuring the run, a new stage)
    _counts_skips = False  # whether the step's end reads step_was_skipped (a scaler can skip a step)

    def __init__(self) -> None:
        self.skipped_updates = 0
        self._run: E.Run | None = None

    def _run_member(self) -> R.Member:
        """This callback as the contract sees it (:func:`hpcallbacks.run.compose`)."""
        role = self.role if self.role in R.ROLES else "other"
        return R.Member(type(self).__name__, role, order=int(getattr(self, "order", 0)))

    # -- ExportableState ---------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _attributes(self) -> dict[str, Any]:
        return {"skipped_updates": self._run.skipped if self._run is not None else int(self.skipped_updates)}

    def state(self) -> dict[str, Any]:
        return {"args": self.get_config(), "attributes": self._attributes()}

    def reset(self) -> None:
        self.skipped_updates = 0

    def restore_from(self, state: Any) -> None:
        """Take this callback's attributes from the checkpoint's ``state.stateful_callbacks``."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if saved is None:
            return
        entries = saved if isinstance(saved, list) else [saved]
        mine = self.get_config()
        match = [e for e in entries if isinstance(e, dict) and e.get("args") == mine]
        entry = match[0] if match else (entries[0] if len(entries) == 1 else None)
        if entry is None:
            return
        for key, value in (entry.get("attributes") or {}).items():
            setattr(self, key, value)

    # -- events --------------------------------------------------------------------------------------
    def on_init_end(self, args, state, control, **kwargs):
        seen_by_trainer()

    def on_train_begin(self, args, state, control, **kwargs):
        seen_by_trainer()  # again: add_callback() or a restored callback state appends
        run = E.run_for(state, create=True)
        ctx = run.ctx or E.make_context(args, state, kwargs, type(self).__name__)
        self._run = run
        run.attach(self, ctx)
        drives = run.driver is self
        self._drives = id(state) if drives else 0  # (an id: no reference that keeps a finished run)
        self._stage_at = 0 if drives else math.inf  # the driver's first step configures the run
        self._counts_skips = drives  # until the run is configured; it then says whether a step can be skipped

    def _driving(self, state) -> E.Run | None:
        run = self._run
        if run is None or run.driver is not self or E.run_for(state) is not run:
            return None
        return run

    # per update: the run's first member (its driver) forwards the events of its state; the step's
    # start has work only at the first step and at a stage's first update (``_stage_at``, a global step),
    # the step's end only when a step can be skipped (a mixed-precision scaler): one comparison otherwise
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step >= self._stage_at and self._drives == id(state):
            run = self._run
            self._stage_at = run.step_begin()  # type: ignore[union-attr]
            self._counts_skips = run.may_skip  # type: ignore[union-attr]

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._counts_skips and self._drives == id(state):
            self._stage_at = self._run.optimizer_step(kwargs.get("optimizer"))  # type: ignore[union-attr]

    def on_log(self, args, state, control, logs=None, **kwargs):
        run = self._driving(state)
        if run is None or logs is None or "learning_rate" not in logs:
            return
        add_logs(state, logs, run.log_values(), "learning_rate")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def add_logs(state: Any, logs: dict[str, Any], values: dict[str, Any], key: str = "loss") -> None:
    """Add ``values`` to the ``logs`` of an ``on_log`` and to the ``state.log_history`` entry HF made of them.

    ``Trainer.log`` appends a copy of ``logs`` to ``log_history`` before the callbacks run; that
    entry (the last one, of this step, holding ``key``) gets the values too.
    """
    if not values:
        return
    logs.update(values)
    last = state.log_history[-1] if state.log_history else None
    if last is not None and last.get("step") == state.global_step and key in last:
        last.update(values)


# -- schedules ---------------------------------------------------------------------------------------
class _ScheduleCallback(HPCallback):
    role = "schedule"
    restorable = True

    def build_schedule(self, ctx: E.Context) -> S.Schedule:  # pragma: no cover - abstract
        raise NotImplementedError


class LearningRateSchedule(_ScheduleCallback):
    """Any hpcallbacks schedule as the learning rate of every optimizer update.

    ``schedule`` is a :class:`hpcallbacks.Schedule` (a number means :class:`hpcallbacks.Constant`,
    a ``serialize()`` dict is deserialized). The LR of update ``t`` (``t`` updates done before it)
    is ``schedule(t)``, times the layer group's factor when :class:`DiscriminativeLR` or a plan's
    factors are in the Trainer too. It replaces HF's ``lr_scheduler_type`` schedule (see the
    module docstring for which ones it refuses as conflicting).

    >>> from hpcallbacks import CosineDecay
    >>> LearningRateSchedule(CosineDecay(1e-3, decay_steps=1000)).get_config()["schedule"]["class_name"]
    'CosineDecay'
    """

    def __init__(self, schedule: S.Schedule | float | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(schedule, dict):
            schedule = S.deserialize(schedule)
        self.schedule = S.as_schedule(schedule, "schedule")

    def get_config(self) -> dict[str, Any]:
        return {"schedule": S.serialize(self.schedule)}

    def build_schedule(self, ctx: E.Context) -> S.Schedule:
        return self.schedule


# -- plateau -----------------------------------------------------------------------------------------
class ReduceOnPlateau(HPCallback):
    """Reduce the learning rate when an evaluation metric stops improving (the core state machine).

    The same arguments, in the same order, as ``hpcallbacks_lightning.ReduceOnPlateau``:
    ``schedule`` (optional) is the schedule reduced, as a :class:`LearningRateSchedule` would set
    it; the rest are those of the core :class:`hpcallbacks.ReduceOnPlateau`. ``monitor`` defaults
    to ``"val_loss"`` like Lightning's and is read from HF's evaluation metrics as the name itself,
    ``eval_<name>`` or, for ``val_<x>``, ``eval_<x>`` (so ``"val_loss"`` reads ``eval_loss``). It is
    fed at every evaluation (``on_evaluate``), so the Trainer needs ``eval_strategy`` other than
    ``"no"``. The reduction multiplies the learning rate of every group, on top of the
    hpcallbacks schedule or HF's, never below ``min_lr``. Its state (best value, wait, cooldown,
    reductions) is checkpointed.
    """

    role = "plateau"

    def __init__(self, schedule: S.Schedule | float | dict[str, Any] | None = None, monitor: str = "val_loss",
                 factor: float = 0.1, patience: int = 10, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, convention: str = "keras",
                 threshold_mode: str | None = None) -> None:
        super().__init__()
        self.schedule, self.machine = R.plateau_arguments(schedule, monitor, factor, patience, mode, min_delta,
                                                          cooldown, min_lr, convention, threshold_mode)

    def get_config(self) -> dict[str, Any]:
        config = self.machine.get_config()
        config["schedule"] = None if self.schedule is None else S.serialize(self.schedule)
        return config

    def build_schedule(self, ctx: E.Context) -> S.Schedule | None:
        return self.schedule

    def _run_member(self) -> R.Member:
        return R.Member("ReduceOnPlateau", "plateau", has_schedule=self.schedule is not None)

    @property
    def plateau_state(self) -> dict[str, Any]:
        return self.machine.state_dict()

    @plateau_state.setter
    def plateau_state(self, value: dict[str, Any]) -> None:
        self.machine.load_state_dict(value)

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "plateau_state": self.plateau_state}

    def reset(self) -> None:
        super().reset()
        self.machine.reset()

    def on_train_begin(self, args, state, control, **kwargs):
        if str(getattr(args.eval_strategy, "value", args.eval_strategy)) == "no":
            raise ValueError(f"ReduceOnPlateau(monitor={self.machine.monitor!r}) is fed by evaluations, but "
                             "eval_strategy='no': set eval_strategy='epoch' (or 'steps') and give an eval_dataset")
        super().on_train_begin(args, state, control, **kwargs)

    def _value(self, metrics: dict[str, Any]) -> float:
        name = self.machine.monitor
        candidates = [name, f"eval_{name}"]
        if name.startswith("val_"):
            candidates.append("eval_" + name[4:])
        for key in candidates:
            if key in metrics:
                return float(metrics[key])
        raise ValueError(f"ReduceOnPlateau(monitor={name!r}) found no such metric in the evaluation; "
                         f"it has {sorted(metrics)}: set monitor to one of those")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        run = self._run
        if run is None or E.run_for(state) is not run or not metrics:
            return
        run.ensure()
        before = self.machine.reductions
        self.machine.update(self._value(metrics))
        if self.machine.reductions != before:
            run.refresh()


# -- freezing and per-group learning rates ---------------------------------------------------------
def _groups_json(groups: Any, model: nn.Module | None = None) -> Any:
    """``groups`` with modules replaced by their names in ``model`` (JSON for the checkpoint)."""
    if groups is None:
        return None
    names: dict[int, str] = {}
    if model is not None:
        names = {id(m): n for n, m in model.named_modules()}

    def one(item: Any) -> Any:
        if isinstance(item, nn.Module):
            return names.get(id(item), f"<{type(item).__name__}>")
        if isinstance(item, (list, tuple)):
            return [one(i) for i in item]
        return item

    return [one(g) for g in groups]


class _Structural(HPCallback):
    """A callback that needs layer groups: :class:`StagedUnfreeze`, :class:`DiscriminativeLR`."""

    def __init__(self, groups: Sequence[Any] | None) -> None:
        super().__init__()
        if groups is not None and (isinstance(groups, (str, nn.Module)) or not isinstance(groups, (list, tuple))):
            raise ValueError(f"groups must be None or a list (bottom to top) of module names, regular expressions, "
                             f"modules or lists of those; got {groups!r}")
        if groups is not None and not groups:
            raise ValueError("groups must name at least one group; got []")
        self.groups = list(groups) if groups is not None else None
        self._model: nn.Module | None = None

    def on_init_end(self, args, state, control, **kwargs):
        super().on_init_end(args, state, control, **kwargs)
        self._model = kwargs.get("model")

    def on_train_begin(self, args, state, control, **kwargs):
        self._model = kwargs.get("model") or self._model
        super().on_train_begin(args, state, control, **kwargs)


class StagedUnfreeze(_Structural):
    """Unfreeze layer groups in stages (handbook H5 way 2, ULMFiT gradual unfreezing).

    * ``plan``: a :class:`hpcallbacks.FreezePlan` (or a ``FreezePlan.recommend(...)`` result, or
      its ``get_config()``); ``None`` is ``FreezePlan.gradual(every_epochs=1)``: the top group
      first, one more group every epoch. Epoch starts become updates with the run's updates per
      epoch (after gradient accumulation). The plan's ``factors`` set per-group LRs.
    * ``groups``: the layer groups, bottom to top, as :func:`hpcallbacks.torch.discover_groups`
      takes them (module names, regular expressions, modules, lists of those). ``None``:
      embeddings / each encoder block / the rest (pooler, head) for BERT-, RoBERTa-, GPT-2- and
      ViT-style models, the top-level children otherwise.
    * ``bn``: BatchNorm policy of frozen groups (``"train"``, ``"freeze_stats"``,
      ``"freeze_all"``); ``None`` takes the plan's (default ``"freeze_stats"``: kept in eval mode
      through the Trainer's ``model.train()``).

    The plan owns ``requires_grad`` of every parameter of its groups. Pass it in
    ``Trainer(callbacks=[...])``: at ``on_init_end`` it makes every group some stage trains
    trainable, so the Trainer's optimizer holds those parameters even when they were frozen before
    the Trainer was built; the stage of the current update is applied before the first step.
    """

    role = "plan"

    def __init__(self, plan: FreezePlan | Recommendation | dict[str, Any] | None = None,
                 groups: Sequence[Any] | None = None, bn: str | None = None) -> None:
        super().__init__(groups)
        plan = R.as_plan(plan)  # a FreezePlan, a recommend() result, a get_config() dict or None
        if bn is not None and bn not in BN_POLICIES:
            raise ValueError(f"bn must be None (the plan's) or one of {', '.join(map(repr, BN_POLICIES))}; got {bn!r}")
        self.plan = plan
        self.bn = bn

    def get_config(self) -> dict[str, Any]:
        return {"plan": self.plan.get_config(), "groups": _groups_json(self.groups, self._model), "bn": self.bn}

    def _run_member(self) -> R.Member:
        return R.Member("StagedUnfreeze", "plan", factors=self.plan.factors, groups=self.groups)

    def on_init_end(self, args, state, control, **kwargs):
        """Before the Trainer builds its optimizer: every group some stage trains is made trainable."""
        super().on_init_end(args, state, control, **kwargs)
        model = kwargs.get("model")
        if model is None:
            return
        try:
            groups = discover_groups(model, self.groups)
            stages = self.plan.expanded_stages(len(groups))
            ever = [any(stage.mask(len(groups))[g] for stage in stages) for g in range(len(groups))]
        except ValueError:
            return  # the same error is raised, with context, at on_train_begin
        for layer, trains in zip(groups, ever, strict=True):
            if trains:
                for p in layer.params:
                    if not p.requires_grad:
                        p.requires_grad_(True)


class DiscriminativeLR(_Structural):
    """Per-layer-group learning rates (handbook H5 way 1): layer-wise LR decay, ULMFiT, fastai.

    ``factors`` (read by :meth:`hpcallbacks.LRFactors.parse`, as in every adapter): a
    :class:`hpcallbacks.LRFactors`; a number ``d >= 1`` is ``LRFactors.geometric(d)`` (the
    default, ULMFiT's 2.6: each group below gets the LR above / d); a number ``d`` in (0, 1) is
    ``LRFactors.layer_decay(d)`` (timm / BEiT layer-wise LR decay: group ``g`` of ``n`` gets
    ``d ** (n - 1 - g)``); a list is ``LRFactors.explicit(list)``. The top group's factor is 1:
    group LR = schedule x factor, with the hpcallbacks schedule or HF's.
    ``groups`` as for :class:`StagedUnfreeze` (give the same groups to both, or to one of them
    only). Freezes nothing.
    """

    role = "factors"

    def __init__(self, factors: LRFactors | float | Sequence[float] | dict[str, Any] = 2.6,
                 groups: Sequence[Any] | None = None) -> None:
        super().__init__(groups)
        self.factors = _as_factors(factors)

    def get_config(self) -> dict[str, Any]:
        return {"factors": self.factors.get_config(), "groups": _groups_json(self.groups, self._model)}

    def _run_member(self) -> R.Member:
        return R.Member("DiscriminativeLR", "factors", factors=self.factors, groups=self.groups)


def _as_factors(value: Any) -> LRFactors:
    return LRFactors.parse(value)  # the one rule of every adapter


# -- BatchNorm -------------------------------------------------------------------------------------
class FreezeBatchNorm(HPCallback):
    """Freeze the BatchNorm layers of a pretrained model (handbook H4: small batches).

    Every BatchNorm layer of the model (or only those inside ``layers``: names, regular
    expressions or modules), except those under ``skip`` (names, dotted prefixes or regular
    expressions of ``named_modules``), stays in inference mode through the Trainer's
    ``model.train()``: it normalises with its running statistics and keeps them.
    ``freeze_affine=True`` also freezes its weight and bias. Applied before the first step and
    again after each stage of a :class:`StagedUnfreeze` (it overrides the plan for these layers).
    """

    role = "bn"
    restorable = False

    def __init__(self, skip: Sequence[str] = (), freeze_affine: bool = False,
                 layers: Sequence[Any] | None = None) -> None:
        from hpcallbacks.norms import NormSwap

        super().__init__()
        skip = (skip,) if isinstance(skip, str) else tuple(skip)
        self._matcher = NormSwap("frozen", skip=skip)  # its skip rules and checks
        if not isinstance(freeze_affine, bool):
            raise ValueError(f"freeze_affine must be True or False; got {freeze_affine!r}")
        if layers is not None and (isinstance(layers, (str, nn.Module)) or not isinstance(layers, (list, tuple))
                                   or not layers):
            raise ValueError(f"layers must be None or a non-empty list of module names, regular expressions or "
                             f"modules; got {layers!r}")
        self.skip = skip
        self.freeze_affine = freeze_affine
        self.layers = list(layers) if layers is not None else None
        self._model: nn.Module | None = None
        self._found: list[nn.Module] = []

    def get_config(self) -> dict[str, Any]:
        return {"skip": list(self.skip), "freeze_affine": self.freeze_affine,
                "layers": _groups_json(self.layers, self._model)}

    def on_train_begin(self, args, state, control, **kwargs):
        model = kwargs.get("model")
        self._model = model
        self._found = frozen_batch_norms(model, self.layers, self._matcher)
        super().on_train_begin(args, state, control, **kwargs)

    def apply(self, model: nn.Module) -> None:
        hold_batch_norms(self._found, self.freeze_affine)


class SwapNorm(TrainerCallback, ExportableState, ArgumentChecked):
    """Replace BatchNorm layers before the Trainer builds its optimizer (handbook H4, H6).

    ``to="group"`` (GroupNorm), ``"frozen"`` (fixed statistics and affine values) or ``"sync"``
    (SyncBatchNorm); ``skip``, ``groups``, ``eps``, ``reuse_params`` as in
    :func:`hpcallbacks.torch.swap_norms`. The swap happens at ``on_init_end``, the last event before
    the optimizer and the DDP wrapper exist, so pass it in ``Trainer(callbacks=[...])``: added
    later, it refuses at ``on_train_begin``.
    """

    def __init__(self, to: str = "group", skip: Sequence[Any] = (), groups: int | None = None,
                 eps: float | None = None, reuse_params: bool = True) -> None:
        from hpcallbacks.norms import NormSwap

        NormSwap(to=to, skip=tuple(s for s in ([skip] if isinstance(skip, str) else skip)
                                   if isinstance(s, str)), groups=groups, eps=eps)  # checks the arguments
        if not isinstance(reuse_params, bool):
            raise ValueError(f"reuse_params must be True or False; got {reuse_params!r}")
        self.to, self.skip, self.groups, self.eps, self.reuse_params = to, skip, groups, eps, reuse_params
        self.swapped = False

    def state(self) -> dict[str, Any]:
        skip = [self.skip] if isinstance(self.skip, str) else [s for s in self.skip if isinstance(s, str)]
        return {"args": {"to": self.to, "skip": skip, "groups": self.groups, "eps": self.eps,
                         "reuse_params": self.reuse_params}, "attributes": {}}

    def on_init_end(self, args, state, control, **kwargs):
        seen_by_trainer()
        model = kwargs.get("model")
        if model is None:
            return
        swap_norms(model, to=self.to, skip=self.skip, groups=self.groups, eps=self.eps,
                   reuse_params=self.reuse_params)
        self.swapped = True

    def on_train_begin(self, args, state, control, **kwargs):
        if self.swapped or kwargs.get("model") is None:
            return
        from hpcallbacks.norms import NormSwap

        plan = NormSwap(to=self.to, groups=self.groups, eps=self.eps,
                        skip=tuple(s for s in ([self.skip] if isinstance(self.skip, str) else self.skip)
                                   if isinstance(s, str)))
        left = [n for n, m in kwargs["model"].named_modules()
                if isinstance(m, _seam.BatchNormBase) and not isinstance(m, nn.SyncBatchNorm) and plan.skips(n) is None]
        if left:
            raise ValueError(f"SwapNorm(to={self.to!r}) did not run before the optimizer was built ({left[0]!r} is "
                             "still a BatchNorm): pass it in Trainer(callbacks=[...]) so it swaps at on_init_end, "
                             "before the optimizer and DDP exist; add_callback() after that is too late")


for _cls in (HPCallback, LearningRateSchedule, ReduceOnPlateau, StagedUnfreeze, DiscriminativeLR, FreezeBatchNorm,
             SwapNorm):
    public_callback(_cls)


# -- one callback per core schedule family ---------------------------------------------------------
# One callback per core schedule family, with the family's name and arguments.
#
# ``CosineRestart(initial_learning_rate=None, first_decay_steps=None, t_mul=2.0, m_mul=1.0,
# alpha=0.0)`` is :class:`hpcallbacks_hf.LearningRateSchedule` of ``hpcallbacks.CosineRestart(...)``
# whose missing arguments (``None``) are filled at ``on_train_begin`` by the one rule every
# adapter applies, :mod:`hpcallbacks.defaults`: a learning rate defaults to the optimizer's
# (``TrainingArguments.learning_rate`` for the Trainer's own optimizer), a period to the run's
# optimizer updates per epoch (after gradient accumulation), a whole decay to the run's total
# optimizer updates (``state.max_steps``). Arguments with a default in the core keep it. The
# arguments are checked when the callback is built (a wrong keyword is an
# :class:`hpcallbacks.ArgumentError`).
#
# Resume and extend (:func:`hpcallbacks.run.schedule_for_run`): the checkpoint keeps the facts the
# defaults came from (:class:`hpcallbacks.run.ScheduleState`, in ``trainer_state.json``); a resumed
# run keeps the first run's learning rate and recomputes the lengths derived from the run for the
# run being started (more epochs: a longer decay), with a :class:`hpcallbacks.run.RunWarning`
# giving the learning rate before and after when that changes the schedule.



class _FamilyCallback(_ScheduleCallback):
    family: type[S.Schedule]
    __signature__: inspect.Signature

    def __init_subclass__(cls, family: type[S.Schedule] | None = None, **kwargs: Any) -> None:
        if family is not None:  # a public family: class CosineRestart(_FamilyCallback, family=S.CosineRestart)
            core, family_name = family, family.__name__
            cls.family = core
            cls.__signature__ = D.callback_signature(family_name)
            cls.__doc__ = (
                f"The :class:`hpcallbacks.{family_name}` schedule as a Trainer callback (same arguments, same "
                f"numbers).\n\nDefaults taken from the run (:mod:`hpcallbacks.defaults`): "
                f"{D.describe(family_name)}.\n\n"
                "See :class:`hpcallbacks_hf.LearningRateSchedule` for how it replaces HF's schedule.\n\n"
                + (core.__doc__ or "").split(">>>")[0].rstrip() + "\n")
        super().__init_subclass__(**kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        name = self.family.__name__
        # ArgumentError with "did you mean" for a wrong keyword; every given value checked now
        self.arguments = D.callback_arguments(name, bind(self.__signature__, type(self).__name__, args, kwargs))
        self._facts: R.ScheduleState | None = None  # this run's facts (checkpointed)
        self._saved_facts: dict[str, Any] | None = None  # the checkpoint's, on resume
        self.schedule_notice: str | None = None

    def get_config(self) -> dict[str, Any]:
        return {k: S.serialize(v) if isinstance(v, S.Schedule) else list(v) if isinstance(v, tuple) else v
                for k, v in self.arguments.items()}

    @property
    def schedule_state(self) -> dict[str, Any] | None:
        """The run facts the defaults came from (:class:`hpcallbacks.run.ScheduleState`), for the checkpoint."""
        return None if self._facts is None else self._facts.to_dict()

    @schedule_state.setter
    def schedule_state(self, value: dict[str, Any] | None) -> None:
        self._saved_facts = value

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "schedule_state": self.schedule_state}

    def reset(self) -> None:
        super().reset()
        self._saved_facts = None

    def build_schedule(self, ctx: E.Context) -> S.Schedule:
        state = ctx.state
        done = max(int(state.global_step) - int(getattr(self._run, "skipped", 0) or 0), 0)
        self.schedule, self._facts, self.schedule_notice = R.schedule_for_run(
            type(self).__name__, self.family.__name__, self.arguments, ctx.base_lr,
            ctx.steps_per_epoch if ctx.epoch_known else None, ctx.total_updates, saved=self._saved_facts,
            resumed_at=done)
        return self.schedule

    def __repr__(self) -> str:
        return D.callback_repr(type(self).__name__, self.arguments)


# one class per core family (the family's arguments and docstring: _FamilyCallback.__init_subclass__)
class Constant(_FamilyCallback, family=S.Constant): ...
class ExponentialDecay(_FamilyCallback, family=S.ExponentialDecay): ...
class PiecewiseConstantDecay(_FamilyCallback, family=S.PiecewiseConstantDecay): ...
class PolynomialDecay(_FamilyCallback, family=S.PolynomialDecay): ...
class InverseTimeDecay(_FamilyCallback, family=S.InverseTimeDecay): ...
class CosineDecay(_FamilyCallback, family=S.CosineDecay): ...
class CosineRestart(_FamilyCallback, family=S.CosineRestart): ...
class LinearCosineDecay(_FamilyCallback, family=S.LinearCosineDecay): ...
class NoisyLinearCosineDecay(_FamilyCallback, family=S.NoisyLinearCosineDecay): ...
class StepDecay(_FamilyCallback, family=S.StepDecay): ...
class MultiStepDecay(_FamilyCallback, family=S.MultiStepDecay): ...
class OneCycle(_FamilyCallback, family=S.OneCycle): ...
class Cyclic(_FamilyCallback, family=S.Cyclic): ...
class SlantedTriangular(_FamilyCallback, family=S.SlantedTriangular): ...
class InverseSqrt(_FamilyCallback, family=S.InverseSqrt): ...
class WarmupStableDecay(_FamilyCallback, family=S.WarmupStableDecay): ...
class Warmup(_FamilyCallback, family=S.Warmup): ...

#: Every family callback by name (each class statement above adds one).
FAMILIES: dict[str, type[_FamilyCallback]] = {c.__name__: c for c in _FamilyCallback.__subclasses__()}
__all__ += list(FAMILIES)
