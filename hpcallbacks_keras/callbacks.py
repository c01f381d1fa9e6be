"""The hpcallbacks Keras callbacks: learning-rate schedules, plateau rule, fine-tuning plans.

Every callback here drives the shared per-model :class:`~hpcallbacks_keras._engine.Engine`:
the learning rate is read in-graph from a table of the core's numbers at every optimizer update
(also with ``steps_per_execution > 1``, ``jit_compile=True``, ``gradient_accumulation_steps`` and
``LossScaleOptimizer``), per-group factors scale each group's update, and stages re-trace the
train step once. Arguments are checked when the callback is built (a wrong keyword is a
:class:`hpcallbacks._checks.ArgumentError`) or at ``on_train_begin``.

Every decision is the run contract's (:mod:`hpcallbacks.run`), the same in every adapter: which
callbacks of a fit conflict (``R.compose``, with Keras' ``LearningRateScheduler`` and
``ReduceLROnPlateau`` as foreign controllers), the plan a run resolves, the defaults a schedule
takes from the run and what a resumed or extended run keeps, that a reused callback starts
afresh, and the set-ups that train but warn (:class:`hpcallbacks.run.RunWarning`).

Resume: ``BackupAndRestore``, or ``save_weights`` and, in the new process, the same model
compiled the same way, its optimizer built (``model.optimizer.build(model.trainable_variables)``,
as Keras needs to load any optimizer state), ``load_weights`` and ``fit(initial_epoch=...)`` with
the same callbacks: the resumed run's learning rates and stages are the uninterrupted run's (the
first run's learning rate and the ``ReduceOnPlateau`` state are saved with the weights: see
:class:`hpcallbacks_keras._engine.RunState`). A second ``fit`` of the same model and optimizer
continues in the same way.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import keras

from hpcallbacks import defaults as D
from hpcallbacks import run as R
from hpcallbacks import schedules as S
from hpcallbacks._checks import ArgumentChecked, checked_init
from hpcallbacks.plans import BN_POLICIES, LRFactors

from ._engine import Engine, RunState, foreign_controllers
from ._groups import batch_norm_layers, resolve_groups
from ._seam import callback_list_of, callback_model

__all__ = ["HPCallback", "LearningRateSchedule", "ReduceOnPlateau", "StagedUnfreeze", "DiscriminativeLR",
           "FreezeBatchNorm", "SwapNorm", "BatchRamp"]


def _warn(message: str | None) -> None:
    if message:
        warnings.warn(message, R.RunWarning, stacklevel=3)


def _public_class(callback: Any) -> str | None:
    """The hpcallbacks_keras class ``callback`` is an instance of (a user's subclass counts as its base)."""
    for klass in type(callback).__mro__:
        if klass.__module__.startswith("hpcallbacks_keras") and not klass.__name__.startswith("_"):
            return klass.__name__
    return None


def refuse_repeats(callback: Any) -> None:
    """The contract's one ``ValueError`` for an hpcallbacks class given twice to this fit
    (:func:`hpcallbacks.run.refuse_repeats`), read from the ``CallbackList`` calling ``callback``
    now (``set_model``, the first hook Keras calls, before anything trains)."""
    found = callback_list_of(callback)
    if found is not None:
        R.refuse_repeats([name for name in map(_public_class, found.callbacks) if name is not None])


def keras_only(cls: type) -> type:
    """``cls`` (a Keras callback class) refuses another framework's loop at its first hook
    (:func:`hpcallbacks.run.guard_hooks`: ``TypeError`` naming the import to use), a wrong
    keyword (:class:`hpcallbacks._checks.ArgumentError`) and a second instance of its class in
    the same fit (:func:`refuse_repeats`, at ``set_model``). Hooks the class defines itself are kept."""
    for name, guard in R.guard_hooks("keras").items():
        if not any(name in klass.__dict__ for klass in cls.__mro__ if klass is not object):
            setattr(cls, name, guard)
    set_model = cls.set_model
    if not getattr(set_model, "_refuses_repeats", False):
        @functools.wraps(set_model)
        def checked_set_model(self: Any, model: Any) -> None:
            refuse_repeats(self)
            set_model(self, model)

        checked_set_model._refuses_repeats = True  # type: ignore[attr-defined]
        cls.set_model = checked_set_model  # type: ignore[method-assign]
    checked_init(cls)
    return cls


class HPCallback(ArgumentChecked, keras.callbacks.Callback):
    """Base of the callbacks that share the model's engine (see the module docstring).

    When ``fit`` builds its callback list, each hpcallbacks callback joins its peers of the list
    (Keras gives callbacks no handle on each other: the list is found on the call stack, see
    :func:`hpcallbacks_keras._seam.callback_list_of`) and the list is reordered with the
    hpcallbacks callbacks first, so the epoch logs they add reach every callback of the fit. At
    ``on_train_begin`` the contract composes them (:func:`hpcallbacks.run.compose`; Keras'
    ``LearningRateScheduler`` / ``ReduceLROnPlateau`` in the same fit are foreign controllers) and
    each callback prepares its part (:meth:`prepare`). The first drives the engine: it starts it
    at the first epoch (after every ``on_train_begin``, so ``BackupAndRestore`` has restored the
    optimizer and the run's state; each callback's :meth:`begin_run` then reads the run's facts),
    prepares each execution block in ``on_train_batch_begin`` (a few integer comparisons; it
    never reads a device value), and writes the LR logs at each epoch end. It defines no
    ``on_train_batch_end``, so Keras keeps dispatching batch ends asynchronously.

    Given to a Lightning or HF loop, it raises ``TypeError`` at that loop's first hook, naming the
    import to use instead.
    """

    _role = "other"

    def __init__(self) -> None:
        super().__init__()
        self._engine: Engine | None = None
        self._driver = False

    def _member(self) -> R.Member:
        """This callback as the run contract sees it (its role in the LR rule and the plan)."""
        return R.Member(type(self).__name__, self._role)

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self._engine = Engine.of(model)

    def set_params(self, params: Any) -> None:
        super().set_params(params)
        if callback_model(self) is not None:
            self._join(callback_list_of(self))

    def _join(self, callback_list: Any) -> None:
        """Join this fit's peers (the hpcallbacks callbacks of ``callback_list``) and put them first."""
        if callback_list is None:
            self.engine.join(self)
            return
        callbacks = list(callback_list.callbacks)
        ours = [cb for cb in callbacks if isinstance(cb, HPCallback) and callback_model(cb) is self.model]
        self.engine.join(self, ours, foreign_controllers(callbacks))
        reordered = ours + [cb for cb in callbacks if not any(cb is o for o in ours)]
        if any(a is not b for a, b in zip(reordered, callbacks)):
            # a new list object: a loop of the CallbackList over the old one goes on unchanged
            callback_list.callbacks = reordered

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine.of(self.model)
        return self._engine

    def prepare(self, engine: Engine) -> None:
        """Register with the engine at ``on_train_begin``; raise ValueError for what the model or run
        does not allow (the composition is ``engine.composition()``)."""

    def begin_run(self, engine: Engine, update: int, state: RunState) -> None:
        """At the start of the run's first epoch: ``update`` is the update count the run starts at
        (a resumed run's), ``state`` what the optimizer keeps for a resumed run."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        engine = self.engine
        if not engine.joined(self):  # a CallbackList not built by fit: found now, one frame up
            self._join(callback_list_of(self))
        self._driver = engine.fit.callbacks[0] is self
        engine.composition()
        self.prepare(engine)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._driver:
            return
        engine = self.engine
        if not engine.fit.started:
            engine.start(epoch)
        elif (self.params or {}).get("steps") is None:
            engine.resync()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._driver:
            self.engine.block_begin(batch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.engine.epoch_logs(epoch, logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._driver and self.engine.fit is not None:
            self.engine.end()


keras_only(HPCallback)


# -- learning-rate schedules ----------------------------------------------------------------------
class LearningRateSchedule(HPCallback):
    """Apply any core schedule (``hpcallbacks.schedules``) to the optimizer at every update.

    ``schedule(t)`` is the learning rate of update ``t`` (``t = optimizer.iterations``, counting
    updates, not micro-batches). The optimizer must be compiled with a float learning rate
    (a Keras schedule object cannot be set: ``ValueError`` at ``on_train_begin``).

    >>> import hpcallbacks as hp
    >>> cb = LearningRateSchedule(hp.CosineDecay(1e-3, decay_steps=1000))
    >>> cb.schedule
    CosineDecay(initial_learning_rate=0.001, decay_steps=1000.0, alpha=0.0, warmup_target=None, warmup_steps=0.0)
    """

    _role = "schedule"

    def __init__(self, schedule: S.Schedule | float) -> None:
        super().__init__()
        self.schedule = S.as_schedule(schedule, "schedule")

    def build_schedule(self, engine: Engine, update: int, state: RunState) -> S.Schedule:
        """This run's schedule; ``state.schedule`` becomes this run's facts."""
        who = type(self).__name__
        steps = engine.steps_per_epoch(who, required=False)
        facts = R.ScheduleState(engine.initial_learning_rate(who), steps, engine.total_steps(who))
        state.schedule = facts.to_dict()
        return self.schedule

    def prepare(self, engine: Engine) -> None:
        engine.require_variable_lr(type(self).__name__)

    def begin_run(self, engine: Engine, update: int, state: RunState) -> None:
        schedule = self.build_schedule(engine, update, state)
        self.resolved_schedule = schedule
        engine.set_schedule(self, schedule)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": S.serialize(self.schedule)}


class _Family(LearningRateSchedule):
    """A callback for one core family: the core's arguments, missing ones from the run.

    The defaults follow the one rule of :mod:`hpcallbacks.defaults` (the same in every adapter):
    learning rates from the compiled optimizer, periods from the updates per epoch, whole decays
    from the run's total updates.
    """

    family: str = ""

    def __init_subclass__(cls, family: type[S.Schedule] | None = None, **kwargs: Any) -> None:
        if family is not None:  # a public family: class CosineRestart(_Family, family=S.CosineRestart)
            name = family.__name__
            doc = (f"Callback for the core :class:`hpcallbacks.{name}`: same arguments, same numbers, the learning "
                   f"rate set in-graph at every update.\n\nDefaults taken from the run: {D.describe(name)}.\n\n"
                   "The core's description:\n\n" + inspect.cleandoc(family.__doc__ or ""))
            cls.family = name
            cls.__doc__ = doc.replace(">>>", "...")  # the core's examples are the core's doctests
            cls.__signature__ = D.callback_signature(name)  # type: ignore[attr-defined]
        super().__init_subclass__(**kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        HPCallback.__init__(self)
        # the generated __signature__ is checked before this body (ArgumentError: checked_init)
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        self.arguments = dict(bound.arguments)
        try:
            D.check(self.family, self.arguments)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None
        self.schedule = None

    def build_schedule(self, engine: Engine, update: int, state: RunState) -> S.Schedule:
        """The contract's :func:`hpcallbacks.run.schedule_for_run`: the given arguments kept, the
        learning rate of the first run (``state``), the lengths of this run (a notice when a resumed
        run's derived lengths change)."""
        who = type(self).__name__
        steps = engine.steps_per_epoch(who, required=False)
        schedule, facts, notice = R.schedule_for_run(
            who, self.family, self.arguments, engine.initial_learning_rate(who), steps, engine.total_steps(who),
            saved=state.schedule, resumed_at=update)
        _warn(notice)
        state.schedule = facts.to_dict()
        self.schedule = schedule
        return schedule

    def get_config(self) -> dict[str, Any]:
        return {k: (S.serialize(v) if isinstance(v, S.Schedule) else v) for k, v in self.arguments.items()}

    def __repr__(self) -> str:
        return D.callback_repr(type(self).__name__, self.arguments)


# one class per core family (the family's arguments and docstring: _Family.__init_subclass__)
class Constant(_Family, family=S.Constant): ...
class ExponentialDecay(_Family, family=S.ExponentialDecay): ...
class PiecewiseConstantDecay(_Family, family=S.PiecewiseConstantDecay): ...
class PolynomialDecay(_Family, family=S.PolynomialDecay): ...
class InverseTimeDecay(_Family, family=S.InverseTimeDecay): ...
class CosineDecay(_Family, family=S.CosineDecay): ...
class CosineRestart(_Family, family=S.CosineRestart): ...
class LinearCosineDecay(_Family, family=S.LinearCosineDecay): ...
class NoisyLinearCosineDecay(_Family, family=S.NoisyLinearCosineDecay): ...
class Warmup(_Family, family=S.Warmup): ...
class StepDecay(_Family, family=S.StepDecay): ...
class MultiStepDecay(_Family, family=S.MultiStepDecay): ...
class OneCycle(_Family, family=S.OneCycle): ...
class Cyclic(_Family, family=S.Cyclic): ...
class SlantedTriangular(_Family, family=S.SlantedTriangular): ...
class InverseSqrt(_Family, family=S.InverseSqrt): ...
class WarmupStableDecay(_Family, family=S.WarmupStableDecay): ...

__all__ += [c.__name__ for c in _Family.__subclasses__()]  # every family class above


# -- plateau ----------------------------------------------------------------------------------------
class ReduceOnPlateau(HPCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stops improving (core rule).

    The same arguments, in the same order, as the Lightning and HF ``ReduceOnPlateau``:
    ``schedule`` (optional: a :class:`hpcallbacks.Schedule`, a number or a serialized schedule)
    is the schedule reduced, set as a :class:`LearningRateSchedule` would set it; without it the
    reduction composes with the hpcallbacks LR callback of the same fit, or with the compiled
    learning rate alone (``lr = max(schedule(t) * factor**k, min(schedule(t), min_lr))``). Giving
    ``schedule`` and another LR callback is refused at ``on_train_begin``. The rest are the
    arguments of the core :class:`hpcallbacks.ReduceOnPlateau`; ``monitor`` is a key of fit's epoch
    logs (``"val_loss"`` needs validation data; ``"loss"`` otherwise). Unlike Keras'
    ``ReduceLROnPlateau`` it works when the learning rate is scheduled. The reduced values are
    written into the in-graph table at the epoch end (no re-trace).

    ``verbose`` (keyword-only, Keras only): ``1`` prints a line at each reduction, as Keras'
    ``ReduceLROnPlateau(verbose=1)`` does; the torch adapters log reductions to the
    ``hpcallbacks`` logger instead.

    Its state (best value, wait, cooldown, reductions) is kept with the optimizer
    (:class:`hpcallbacks_keras._engine.RunState`, saved with the model's weights, no optimizer
    variable added), written at each epoch end before the other callbacks of the fit run theirs:
    checkpoints (``BackupAndRestore``, ``ModelCheckpoint``, ``save_weights``) hold it, a run resumed
    from one continues it, and so does a second ``fit`` of the same model and optimizer. An instance
    reused for a new model starts afresh (:func:`hpcallbacks.run.fresh`).
    """

    def __init__(self, schedule: S.Schedule | float | dict[str, Any] | None = None, monitor: str = "val_loss",
                 factor: float = 0.1, patience: int = 10, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, convention: str = "keras",
                 threshold_mode: str | None = None, *, verbose: int = 0) -> None:
        super().__init__()
        self.schedule, self.plateau = R.plateau_arguments(schedule, monitor, factor, patience, mode, min_delta,
                                                          cooldown, min_lr, convention, threshold_mode)
        if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose < 0:
            raise ValueError(f"verbose must be 0 (silent) or a positive int (print each reduction); got {verbose!r}")
        self.verbose = verbose

    _role = "plateau"

    def _member(self) -> R.Member:
        return R.Member("ReduceOnPlateau", "plateau", has_schedule=self.schedule is not None)

    def prepare(self, engine: Engine) -> None:
        engine.set_plateau(self, self.plateau)

    def begin_run(self, engine: Engine, update: int, state: RunState) -> None:
        # the state kept with the optimizer: a resumed run (or a second fit) continues it
        if R.fresh(resuming=state.plateau is not None):
            self.plateau.reset()
        else:
            self.plateau.load_state_dict(state.plateau)
        if self.schedule is not None:
            who = "ReduceOnPlateau"
            facts = R.ScheduleState(engine.initial_learning_rate(who), engine.steps_per_epoch(who, required=False),
                                    engine.total_steps(who))
            state.schedule = facts.to_dict()
            engine.set_schedule(self, self.schedule)

    def get_config(self) -> dict[str, Any]:
        config = self.plateau.get_config()
        config["schedule"] = None if self.schedule is None else S.serialize(self.schedule)
        config["verbose"] = self.verbose
        return config

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        value = (logs or {}).get(self.plateau.monitor)
        if value is None:
            warnings.warn(f"ReduceOnPlateau: monitor {self.plateau.monitor!r} is not in the logs "
                          f"(available: {sorted(logs or {})}); pass monitor= one of them", stacklevel=2)
            return
        before = self.plateau.reductions
        self.plateau.update(float(value))
        self.engine.run_state.plateau = self.plateau.state_dict()
        if self.plateau.reductions != before:
            self.engine.refill()
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: ReduceOnPlateau: learning rate x {self.plateau.current_factor:g}")


# -- fine-tuning ------------------------------------------------------------------------------------
class _Grouped(HPCallback):
    def __init__(self, groups: Sequence[Any] | None) -> None:
        super().__init__()
        if groups is not None and (isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence)
                                   or not groups):
            raise ValueError(f"groups must be a non-empty list of layer names / regexes / layers (bottom to top), "
                             f"or None to discover them; got {groups!r}")
        self.groups = groups

    def _member(self) -> R.Member:
        factors = self.plan.factors if self._role == "plan" else self.factors  # type: ignore[attr-defined]
        return R.Member(type(self).__name__, self._role, factors=factors, groups=self.groups)

    def resolve_groups(self, engine: Engine) -> list[Any]:
        """The fit's layer groups (``groups=`` of the plan, else of ``DiscriminativeLR``; discovered
        when neither gives them); a ``groups=`` leaving a layer with weights out is refused."""
        self.resolved_groups = engine.layer_groups(type(self).__name__)
        return self.resolved_groups


class StagedUnfreeze(_Grouped):
    """Unfreeze layer groups in stages (handbook H5 way 2), really, inside one ``fit``.

    ``plan`` is a :class:`hpcallbacks.FreezePlan` (default ``FreezePlan.gradual(every_epochs=1)``:
    the top group, then one more group every epoch); ``groups`` lists the layer groups bottom to
    top (layer names, regular expressions over whole layer names, layers, or lists of those;
    default: the top-level layers with weights, a nested base model opened into its layers);
    ``bn`` overrides the plan's BatchNorm policy for frozen groups (``"freeze_stats"``: inference
    mode, moving statistics kept; ``"train"``: batch statistics and moving averages as in training,
    affine weights frozen; ``"freeze_all"``: every BatchNorm in inference mode, always).

    At each stage the trainable flags change and the train step is re-traced once
    (``make_train_function(force=True)``); the optimizer keeps its slots and ``iterations``. The
    optimizer must hold every variable the plan will train: leave the layers trainable when you
    compile (the callback freezes them); a fresh optimizer built without them is rebuilt. The
    plan's LR factors apply per group (see :class:`DiscriminativeLR`). With
    ``steps_per_execution > 1`` a stage starting inside an execution block is applied exactly by
    an in-graph gate; BatchNorm layers of a group unfrozen inside a block switch to training mode
    at the start of that block.

    After fit the layers keep the trainable flags of the stage in force. A model saved while some
    groups are still frozen loads (``keras.models.load_model``) with an optimizer built on the
    trainable variables only, so Keras skips the saved optimizer state (its warning); to continue
    a plan use ``BackupAndRestore`` or ``save_weights`` / ``load_weights`` with the same callbacks
    (see the module docstring).

    As in every adapter (:mod:`hpcallbacks.run`): ``plan`` may also be a
    ``FreezePlan.recommend(...)`` result or a ``FreezePlan.get_config()`` dict; ``groups=`` that
    leaves a layer with weights in no group is refused (it would train in every stage); a run
    that ends before a stage starts, or a model with one layer group, trains and warns once
    (:class:`hpcallbacks.run.RunWarning`); the stage in force follows ``optimizer.iterations``,
    so a resumed run continues the plan and an instance reused for a new model starts afresh.
    """

    _role = "plan"

    def __init__(self, plan: Any = None, groups: Sequence[Any] | None = None, bn: str | None = None) -> None:
        super().__init__(groups)
        self.plan = R.as_plan(plan)
        if bn is not None and bn not in BN_POLICIES:
            raise ValueError(f"bn must be one of {', '.join(map(repr, BN_POLICIES))} or None (the plan's policy); "
                             f"got {bn!r}")
        self.bn = bn

    def prepare(self, engine: Engine) -> None:
        groups = self.resolve_groups(engine)
        plan = R.plan_for_run(self.plan, self.bn, engine.composition().factors)
        steps = engine.steps_per_epoch("StagedUnfreeze", required=plan.unit == "epoch")
        try:
            resolved = plan.resolve(len(groups), steps)
        except ValueError as e:
            raise ValueError(f"StagedUnfreeze: {e} (the model has {len(groups)} groups: "
                             f"{[g.name for g in groups]})") from None
        self.resolved_plan = resolved
        engine.set_plan(self, resolved, resolved.bn)
        engine.set_factors(self, resolved.factors)
        engine.ensure_optimizer_holds(self, engine.ever_trainable_variables(resolved.masks))

    def begin_run(self, engine: Engine, update: int, state: RunState) -> None:
        steps = engine.steps_per_epoch("StagedUnfreeze", required=False)
        names = [g.name for g in self.resolved_groups]
        for notice in R.plan_notices("StagedUnfreeze", self.resolved_plan, names, update,
                                     engine.total_steps("StagedUnfreeze"), steps):
            _warn(notice)

    def get_config(self) -> dict[str, Any]:
        return {"plan": self.plan.get_config(), "groups": self.groups, "bn": self.bn}


class DiscriminativeLR(_Grouped):
    """Per-group learning-rate factors (handbook H5 way 1): ``lr_g = lr * factor[g]``, top group 1.

    ``factors`` (read by :meth:`hpcallbacks.LRFactors.parse`, as in every adapter): a
    :class:`hpcallbacks.LRFactors` (``geometric(2.6)``, ``layer_decay(0.75)``, ``spread(lo, hi)``,
    ...); a number ``d >= 1`` is ``LRFactors.geometric(d)`` (the default, ULMFiT's 2.6: each group
    below gets the LR above / d); a number in (0, 1) is ``LRFactors.layer_decay(d)``; a list is
    ``LRFactors.explicit(list)`` (one per group, bottom to top, divided by the last); a dict is a
    ``get_config()``. ``groups`` as for :class:`StagedUnfreeze`.

    Works with any Keras optimizer (each group's update step is called with its own learning rate,
    so Adam's normalisation is not undone as gradient scaling would be), composes with any LR
    callback and with :class:`StagedUnfreeze`; decoupled weight decay is scaled per group too. A
    plan's own factors (``FreezePlan(..., factors=...)``) apply through ``StagedUnfreeze`` without
    this callback, as in the other adapters; giving different non-uniform factors to both is
    refused at ``on_train_begin``. A model with one layer group trains and warns once
    (:class:`hpcallbacks.run.RunWarning`: nothing to scale).
    """

    _role = "factors"

    def __init__(self, factors: LRFactors | float | Sequence[float] | dict[str, Any] = 2.6,
                 groups: Sequence[Any] | None = None) -> None:
        super().__init__(groups)
        self.factors = LRFactors.parse(factors)  # the one rule of every adapter

    def prepare(self, engine: Engine) -> None:
        if engine.composition().plan is not None:
            return  # the plan's callback applies the composed factors with its stages
        groups = self.resolve_groups(engine)
        _warn(R.single_group_notice("DiscriminativeLR", [g.name for g in groups]))
        try:
            resolved = self.factors.resolve(len(groups))
        except ValueError as e:
            raise ValueError(f"DiscriminativeLR: {e} ({[g.name for g in groups]}); give one factor per group or "
                             "pass groups=") from None
        self.resolved_factors = resolved
        engine.set_factors(self, resolved)

    def get_config(self) -> dict[str, Any]:
        return {"factors": self.factors.get_config(), "groups": self.groups}


class FreezeBatchNorm(HPCallback):
    """Freeze the BatchNorm layers of a pretrained model (handbook H4: small batches).

    Every BatchNormalization layer of the model (nested ones included; or only those inside
    ``layers``: names, regular expressions over whole layer names, or layers), except those under
    ``skip`` (layer names, dotted path prefixes such as ``"base"`` for every BatchNorm inside the
    nested model ``base``, regular expressions, or layers), stays in inference mode for the whole
    fit: it normalises with its moving statistics and keeps them. ``freeze_affine=True`` also
    freezes ``gamma`` and ``beta`` (``layer.trainable = False``, which Keras ties to inference
    mode; the flag stays after fit). With the default ``False`` they keep training with the
    layer's group: the layer is held in inference mode by an instance-level ``call`` that passes
    ``training=False``, removed at the end of fit with the engine's other patches. The same
    arguments and meaning as the Lightning and HF ``FreezeBatchNorm``. Applied at the start of fit
    (one re-trace) and over any :class:`StagedUnfreeze` stage (it overrides the plan's BatchNorm
    policy for these layers). No layer left to freeze is a ``ValueError`` at ``on_train_begin``.
    For a BatchNorm-free replacement use :func:`hpcallbacks_keras.swap_norms`.
    """

    def __init__(self, skip: Sequence[Any] = (), freeze_affine: bool = False,
                 layers: Sequence[Any] | None = None) -> None:
        super().__init__()
        from ._norms import skip_entries

        skip_entries(skip)  # check the entries now
        if not isinstance(freeze_affine, bool):
            raise ValueError(f"freeze_affine must be True or False; got {freeze_affine!r}")
        if layers is not None and (isinstance(layers, (str, bytes, keras.layers.Layer))
                                   or not isinstance(layers, Sequence) or not layers):
            raise ValueError(f"layers must be None or a non-empty list of layer names, regular expressions or "
                             f"layers; got {layers!r}")
        self.skip = (skip,) if isinstance(skip, (str, keras.layers.Layer)) else tuple(skip)
        self.freeze_affine = freeze_affine
        self.layers = None if layers is None else list(layers)

    _role = "bn"

    def prepare(self, engine: Engine) -> None:
        from ._norms import unskipped

        if self.layers is None:
            found = batch_norm_layers(self.model)
        else:
            try:
                groups = resolve_groups(self.model, self.layers)
            except ValueError as e:
                raise ValueError(f"FreezeBatchNorm: {e}".replace("groups[", "layers[")) from None
            found = list({id(bn): bn for g in groups for layer in g.layers for bn in batch_norm_layers(layer)}.values())
        found = unskipped(self.model, found, self.skip)
        if not found:
            raise ValueError(f"FreezeBatchNorm found no BatchNormalization layer to freeze in {self.model.name!r} "
                             f"(layers={self.layers!r}, skip={list(self.skip)!r}); drop the callback or change them")
        self.frozen = found
        engine.add_frozen_bn(self, found, self.freeze_affine)

    def get_config(self) -> dict[str, Any]:
        def name(entry: Any) -> Any:
            return entry.name if isinstance(entry, keras.layers.Layer) else entry

        return {"skip": [name(e) for e in self.skip], "freeze_affine": self.freeze_affine,
                "layers": None if self.layers is None else [name(e) for e in self.layers]}


@keras_only
class SwapNorm(keras.callbacks.Callback):
    """The Lightning/HF ``SwapNorm`` callback's name in Keras, where a swap cannot be a callback.

    Keras traces the train step and builds the optimizer on the model's variables before any
    callback runs, so a layer replaced inside ``fit`` would never train. Swap before compile:
    ``model = hpcallbacks_keras.swap_norms(model, to=..., skip=..., groups=..., eps=...)``. This
    callback takes the same arguments as the other adapters' and, at ``on_train_begin``, raises
    ``ValueError`` naming that call if the model still has BatchNormalization layers the swap
    would replace (a no-op once they are swapped), so a script moved from another framework fails
    loudly, not silently. ``reuse_params`` (torch: the GroupNorm keeps the BatchNorm's very
    Parameter objects, so an optimizer built before the swap keeps training them) is checked and
    kept for the same signature; it changes nothing in Keras, where ``swap_norms`` builds a new
    model with the weights copied and the optimizer is built after the swap.
    """

    def __init__(self, to: str = "group", skip: Sequence[Any] = (), groups: int | None = None,
                 eps: float | None = None, reuse_params: bool = True) -> None:
        super().__init__()
        from hpcallbacks.norms import NormSwap

        names = [e for e in ((skip,) if isinstance(skip, str) else skip) if isinstance(e, str)]
        NormSwap(to=to, skip=tuple(names), groups=groups, eps=eps)  # check the arguments now
        if not isinstance(reuse_params, bool):
            raise ValueError(f"reuse_params must be True or False; got {reuse_params!r}")
        self.to, self.skip, self.groups, self.eps, self.reuse_params = to, skip, groups, eps, reuse_params

    def on_train_begin(self, logs: dict | None = None) -> None:
        from ._norms import layers_to_swap

        left = [layer.name for layer in layers_to_swap(self.model, self.to, self.skip, self.groups, self.eps)]
        if left:
            raise ValueError(
                f"SwapNorm: Keras cannot replace layers inside fit (the train step and the optimizer already hold "
                f"them); {len(left)} BatchNormalization layer(s) to swap are still in the model ({left[:5]}): call "
                f"model = hpcallbacks_keras.swap_norms(model, to={self.to!r}, ...) before compile")


@keras_only
class BatchRamp(keras.callbacks.Callback):
    """The Lightning ``BatchRamp``'s name in Keras, where a batch-size ramp inside one fit cannot work.

    Growing the batch within a ``fit`` means changing ``gradient_accumulation_steps`` mid-run: Keras
    bakes it into the traced train step and divides its micro-batch counter by it to get
    ``optimizer.iterations``, so a change would also change every update count (schedules,
    stages, checkpoints). Run one ``fit`` per stage of ``ramp.stages(total_steps)`` instead, with
    ``batch_size`` (or ``GradientAccumulation``) set to the stage's batch and the LR to
    ``ramp.learning_rate``. This callback takes the core :class:`hpcallbacks.batch.BatchRamp` and
    raises ``ValueError`` saying so at ``on_train_begin``.
    """

    def __init__(self, ramp: Any) -> None:
        super().__init__()
        from hpcallbacks.batch import BatchRamp as CoreRamp

        if not isinstance(ramp, CoreRamp):
            raise ValueError(f"ramp must be a hpcallbacks.batch.BatchRamp; got {ramp!r}")
        self.ramp = ramp

    def on_train_begin(self, logs: dict | None = None) -> None:
        raise ValueError("BatchRamp: Keras cannot change the batch size or gradient_accumulation_steps inside one fit "
                         "(the step count would change meaning); run one fit per stage of ramp.stages(total_steps) "
                         "with that stage's batch_size and learning rate")
