"""The in-graph machinery shared by every hpcallbacks Keras callback (one engine per model).

The decisions come from the run contract (:mod:`hpcallbacks.run`): who owns the learning rate,
which callbacks conflict (one ``ValueError`` each), the plan a run resolves, the defaults a
schedule takes from the run, resume and reuse, the notices. The engine applies the answers with
Keras' mechanics:

* **the callbacks of a fit**: Keras gives a callback no handle on its peers. ``fit`` builds a
  ``keras.callbacks.CallbackList``, which calls ``set_params`` on every callback it holds; the
  hpcallbacks callback finds that list one frame up the call stack
  (:func:`hpcallbacks_keras._seam.callback_list_of`),
  joins its hpcallbacks peers into one :class:`_Fit` (keyed by the ``params`` dict the list
  gives every callback) and reads it for Keras' own learning-rate controllers
  (``keras.callbacks.LearningRateScheduler``, ``ReduceLROnPlateau``: :class:`hpcallbacks.run.Foreign`
  entries, refused next to an hpcallbacks LR callback). The list is then replaced by one with the
  hpcallbacks callbacks first, so the epoch logs they add (``learning_rate/<group>``,
  ``trainable_groups``) reach every other callback (TensorBoard, CSVLogger, a logger listed
  before them). A list Keras does not build (a ``CallbackList`` passed to ``fit``) is found the
  same way when it calls ``on_train_begin``;
* **the learning rate of every update**: at the start of ``fit`` the engine evaluates the
  contract's rule (:class:`hpcallbacks.run.LRRule`: the schedule, times any ``ScaleLearningRate``
  ramp and ``ReduceOnPlateau`` factor) into a float32 *window table* held in a non-trainable
  ``keras.Variable`` (``table[t - offset]``), refilled from the host only when the run leaves the
  window or a plateau reduction changes the future values;
* the model's optimizer (the inner one of a ``LossScaleOptimizer``) gets three instance-level
  wrappers (:data:`hpcallbacks_keras._seam.PATCHED`): ``_backend_apply_gradients`` assigns
  ``table[iterations - offset]`` to the optimizer's own learning-rate variable before the update
  and the next update's value after it
  (so ``optimizer.learning_rate`` shows, between updates and before the first, the rate the next
  update uses, as Keras' own schedule objects do, and weight decay, TensorBoard and user
  callbacks read it), ``_backend_update_step`` calls the original once per layer group with
  ``lr * factor[g]`` (per-group learning rates for any optimizer, Adam included) and
  ``_apply_weight_decay`` applies decoupled weight decay per group with the same factor;
* ``optimizer.iterations`` counts optimizer updates (Keras floor-divides its micro-batch counter
  by ``gradient_accumulation_steps``), so with accumulation the table advances per update;
* **what a resumed run needs** (the first run's learning rate, the schedule's
  :class:`hpcallbacks.run.ScheduleState`, the ``ReduceOnPlateau`` state) is a :class:`RunState`
  kept with the optimizer and saved with the model's weights: every ``keras.Model`` has a
  ``_hpcallbacks_state`` property (installed when this module is imported) that Keras' saving
  visits like a layer, so ``save_weights`` / ``load_weights``, ``BackupAndRestore``,
  ``ModelCheckpoint`` and ``model.save`` / ``load_model`` keep it, and a fresh model loads it,
  without a variable added to the optimizer (whose variable list a fresh and a fitted optimizer
  must share, or Keras skips loading its state). It is a few numbers written on the host.

Staged unfreezing: the optimizer holds every variable the plan will ever train; the trainable
flags are set per stage and ``model.make_train_function(force=True)`` is called once when they
change (never a recompile: iterations and slots stay). With ``steps_per_execution > 1`` a stage
can start inside an execution block, where Python callbacks do not run: the block then trains
the union of the groups of its updates, and each group that is not active at every update of
the block is gated in-graph (``ops.cond`` on the plan's stage table), so a frozen group gets no
update and no weight decay at exactly the updates the plan says.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from hpcallbacks import run as R
from hpcallbacks._versions import installed

from . import _seam
from ._groups import Group, hold_inference, left_out_layers, release_inference, resolve_groups, set_group_trainable

_JAX = _seam.BACKEND == "jax"
_ENGINE_ATTR = "_hpcallbacks_engine"
_STATE_PROPERTY = "_hpcallbacks_state"
_WINDOW_MIN = 64
_WINDOW_MAX = 1 << 16


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that really updates variables (unwraps ``LossScaleOptimizer``)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def variable_scope(model: Any) -> Any:
    """The context every variable hpcallbacks creates for ``model`` is created in: the model's
    ``tf.distribute`` strategy's scope (MirroredStrategy, MultiWorkerMirroredStrategy) when the model
    was built under one and the caller is not inside a strategy scope already; nothing otherwise
    (JAX's ``keras.distribution`` lays out new variables itself)."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    strategy = _seam.strategy_of(model)
    if strategy is None or tf.distribute.has_strategy():
        return contextlib.nullcontext()
    return strategy.scope()


def replicas(model: Any) -> int:
    """The number of replicas ``model`` trains on (1 outside a ``tf.distribute`` strategy)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    strategy = _seam.strategy_of(model)
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1) if strategy is not None else 1


def check_distributed_execution(model: Any, who: str) -> None:
    """Refuse what Keras itself cannot run under a ``tf.distribute`` strategy, before Keras fails
    with a graph error that names nothing the user wrote."""
    spe = int(getattr(model, "steps_per_execution", 1) or 1)
    strategy = _seam.strategy_of(model)
    if spe > 1 and strategy is not None and keras.backend.backend() == "tensorflow":
        raise ValueError(
            f"{who}: the model was compiled with steps_per_execution={spe} under {type(strategy).__name__}: Keras "
            f"{keras.__version__} cannot run more than one step per execution under a tf.distribute strategy here "
            "(its multi-step train function fails with 'You must feed a value for placeholder tensor'; keras "
            "issues #19504, #19245, #18627, tensorflow #72686, #37834); compile with steps_per_execution=1")


def _to_int(value: Any) -> int:
    return int(np.asarray(ops.convert_to_numpy(value)))


def _read_lr(variable: Any) -> float:
    """The learning rate as the user wrote it: the shortest decimal of the float32 value (0.05, not
    0.0500000007), so run-derived defaults equal those of the other adapters."""
    value = np.asarray(ops.convert_to_numpy(variable))
    return float(str(np.float32(value))) if value.dtype == np.float32 else float(value)


def _lr_is_variable(optimizer: Any) -> bool:
    return isinstance(_seam.lr_object(optimizer), keras.Variable)


def lr_variable(optimizer: Any) -> Any:
    """The optimizer's learning-rate variable (``require_variable_lr`` / ``_lr_is_variable`` first)."""
    return _seam.lr_object(optimizer)


def micro_count(optimizer: Any) -> int:
    """The optimizer's micro-batch counter on the host (one device read)."""
    return _to_int(_seam.micro_iterations(optimizer))


# -- what a resumed run needs --------------------------------------------------------------------
class RunState(_seam.SavedState):
    """What the hpcallbacks callbacks keep with an optimizer for a resumed run (host numbers).

    ``learning_rate``: the optimizer's learning rate when the first fit with an hpcallbacks
    callback started (what the family callbacks default to: a restored optimizer holds the last
    scheduled rate, not the one compiled); ``schedule``: the
    :class:`hpcallbacks.run.ScheduleState` of the run's schedule (its run facts); ``plateau``:
    the state of the ``ReduceOnPlateau`` rule. Keras saves it with the model's weights (see the
    module docstring) as one small byte array at ``_hpcallbacks_state`` (written only when there
    is something to keep), with the optimizer's update count when it was saved; a file without it
    loads as before. ``loaded_update``: the update count of the file last loaded, until a fit
    starts (a resumed run whose optimizer state Keras did not load is refused: :meth:`Engine.start`).
    """

    _KEYS = ("learning_rate", "schedule", "plateau")

    def __init__(self) -> None:
        self.learning_rate: float | None = None
        self.schedule: dict[str, Any] | None = None
        self.plateau: dict[str, Any] | None = None
        self.loaded_update: int | None = None
        self.optimizer: Callable[[], Any] = lambda: None  # a weak reference to the optimizer kept with

    def values(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._KEYS if getattr(self, k) is not None}

    def save_own_variables(self, store: Any) -> None:
        values = self.values()
        if values:
            opt = self.optimizer()
            if opt is not None:
                values["update"] = _to_int(opt.iterations)
            data = json.dumps({"version": 1, **values}).encode("utf-8")
            store["0"] = np.frombuffer(data, dtype=np.uint8).copy()

    def load_own_variables(self, store: Any) -> None:
        if "0" not in list(store.keys()):
            return  # saved without hpcallbacks state: keep what is known
        data = json.loads(np.asarray(store["0"], dtype=np.uint8).tobytes().decode("utf-8"))
        for key in self._KEYS:
            setattr(self, key, data.get(key))
        self.loaded_update = data.get("update")

    def __repr__(self) -> str:
        return f"RunState({self.values()})"


class _Detached(RunState):
    """The state of a model without an optimizer: nothing to keep."""

    def save_own_variables(self, store: Any) -> None:
        pass

    def load_own_variables(self, store: Any) -> None:
        pass


# keyed by the (inner) optimizer: a recompiled model starts afresh; not an attribute of the optimizer,
# so Keras' saving reaches it once, through the model
_STATES: weakref.WeakKeyDictionary[Any, RunState] = weakref.WeakKeyDictionary()


def run_state(optimizer: Any) -> RunState:
    """The :class:`RunState` of ``optimizer`` (its inner optimizer), created empty when first asked."""
    opt = inner_optimizer(optimizer)
    state = _STATES.get(opt)
    if state is None:
        state = _keep(opt, RunState())
    return state


def _keep(optimizer: Any, state: RunState) -> RunState:
    _STATES[optimizer] = state
    state.optimizer = weakref.ref(optimizer)
    return state


def _model_state(model: Any) -> RunState:
    opt = getattr(model, "optimizer", None)
    return _Detached() if opt is None else run_state(opt)


_seam.install_model_property(_STATE_PROPERTY, _model_state, doc=(
    "The hpcallbacks_keras state of this model's optimizer for a resumed run (a "
    "hpcallbacks_keras._engine.RunState); saved and loaded with the model's weights."))


# -- the callbacks of a fit ------------------------------------------------------------------------
def foreign_controllers(callbacks: Sequence[Any]) -> list[R.Foreign]:
    """Keras' own learning-rate callbacks among ``callbacks``, as the contract sees them."""
    out = []
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
            out.append(R.Foreign("keras.callbacks.ReduceLROnPlateau", "plateau",
                                 fix="remove keras.callbacks.ReduceLROnPlateau from callbacks"))
        elif isinstance(cb, keras.callbacks.LearningRateScheduler):
            out.append(R.Foreign("keras.callbacks.LearningRateScheduler", "schedule",
                                 fix="remove keras.callbacks.LearningRateScheduler from callbacks"))
    return out


@dataclass(eq=False)
class Param:
    """One scheduled hyperparameter (ParamScheduler): where it goes and how it is set.

    ``kind``: ``"variable"`` (a ``keras.Variable``: assigned in-graph, or from the host on torch),
    ``"float"`` (a Python number: set from the host, torch backend only), ``"hyper"`` (an
    optimizer float on a graph backend: a variable stands in for it while fit runs). ``forward``:
    the value is read by the forward pass (model attributes: set before the update's first
    micro-batch) rather than by the update step (optimizer hyperparameters).
    """

    name: str
    fn: Callable[[int], float]
    obj: Any
    attr: str
    kind: str
    forward: bool
    variable: Any = None
    table: Any = None
    host: np.ndarray | None = None


@dataclass
class _Fit:
    """What the callbacks of one ``fit`` call asked for (rebuilt at each fit).

    ``callbacks``: the hpcallbacks callbacks of the fit, in the order of its callback list (the
    first drives the engine); ``foreign``: Keras' own LR callbacks in the same fit;
    ``composition``: the contract's reading of both (:func:`hpcallbacks.run.compose`).
    """

    token: Any
    callbacks: list[Any] = field(default_factory=list)
    foreign: list[R.Foreign] = field(default_factory=list)
    composition: R.Composition | None = None
    schedule: tuple[Any, Callable[[int], float]] | None = None
    plateau: tuple[Any, Any] | None = None
    modifiers: list[tuple[Any, Callable[[int], float]]] = field(default_factory=list)
    groups: tuple[Any, list[Group]] | None = None
    factors: tuple[Any, tuple[float, ...]] | None = None
    plan: tuple[Any, Any] | None = None
    bn_policy: str = "freeze_stats"
    frozen_bn: list[Any] = field(default_factory=list)
    held_bn: list[Any] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    rule: R.LRRule | None = None
    started: bool = False
    logged_epoch: int | None = None
    epoch_logs: dict[str, float] = field(default_factory=dict)

    @property
    def modifier(self) -> tuple[Any, Callable[[int], float]] | None:
        return self.modifiers[0] if self.modifiers else None


@dataclass
class _Trace:
    """What the patched optimizer methods read while Keras traces the train step."""

    table: Any = None
    offset: Any = None
    window: int = 0
    var_group: dict[int, int] = field(default_factory=dict)
    factors: tuple[float, ...] = ()
    gated: frozenset[int] = frozenset()
    starts: Any = None
    masks: Any = None
    params: tuple[Param, ...] = ()
    frozen: frozenset[int] = frozenset()  # JAX: variables the optimizer holds that are frozen now (no update)

    @property
    def grouped(self) -> bool:
        return bool(self.frozen) or (bool(self.var_group) and (bool(self.gated) or any(f != 1.0 for f in self.factors)))


def _name(owner: Any) -> str:
    return type(owner).__name__


class Engine:
    """Per-model coordinator of the hpcallbacks callbacks of a ``fit`` call."""

    _cache_warned = False  # the JAX persistent-cache notice: once per process

    def __init__(self, model: Any) -> None:
        self.model = model
        self.fit: _Fit | None = None
        self.trace = _Trace()
        self.micro = 0
        self.acc = 1
        self.table = None
        self.offset = None
        self.window = 0
        self.window_start = 0
        self.host_table: np.ndarray | None = None
        self.traced_union: tuple[bool, ...] | None = None
        self.traced_gates: frozenset[int] = frozenset()
        self.need_retrace = False
        self.retraces = 0
        # micro-batches before which a block has nothing to decide (inside the table's window and the
        # stage of the last block): block_begin only counts them; -1 after anything that changes that
        self.quiet_until: float = -1
        # torch runs the train step eagerly, one micro-batch per block: the host knows the update
        # and sets the LR variable with one in-place fill (no device read); graph backends read
        # the table in-graph.
        self.host_sets_lr = keras.backend.backend() == "torch"
        self.host_lr: float | None = None
        self.jax_held: dict[int, Any] = {}  # JAX: the non-trainable values of the step being traced
        self.jax_step: Any = None  # JAX: the model's own train_step while the engine wraps it

    # -- attachment ----------------------------------------------------------------------------
    @classmethod
    def of(cls, model: Any) -> Engine:
        engine = model.__dict__.get(_ENGINE_ATTR)
        if engine is None:
            engine = cls(model)
            object.__setattr__(model, _ENGINE_ATTR, engine)
        engine.note_optimizer()
        return engine

    def note_optimizer(self) -> None:
        """Remember the optimizer's learning rate before any fit with hpcallbacks changes it (kept
        with the optimizer's :class:`RunState`, so a resumed run defaults to the first run's)."""
        opt = getattr(self.model, "optimizer", None)
        if opt is None:
            return
        opt = inner_optimizer(opt)
        state = run_state(opt)
        if state.learning_rate is None and _lr_is_variable(opt):
            state.learning_rate = _read_lr(lr_variable(opt))

    @property
    def optimizer(self) -> Any:
        opt = getattr(self.model, "optimizer", None)
        if opt is None:
            raise ValueError("model: compile the model with an optimizer before fit; hpcallbacks callbacks change "
                             "the optimizer's learning rate and variables")
        if _seam.is_multi_optimizer(opt):
            raise ValueError("model.optimizer: a MultiOptimizer cannot follow unfreezing or per-update schedules; "
                             "compile with one optimizer and give per-group learning rates with DiscriminativeLR")
        return inner_optimizer(opt)

    @property
    def run_state(self) -> RunState:
        """The state kept with the optimizer for a resumed run (:class:`RunState`)."""
        return run_state(self.optimizer)

    def initial_learning_rate(self, who: str) -> float:
        """The learning rate the run's defaults come from: the optimizer's at the start of the first run."""
        state = self.run_state
        if state.learning_rate is not None:
            return float(state.learning_rate)
        self.require_variable_lr(who)
        return _read_lr(lr_variable(self.optimizer))

    def set_learning_rate(self, lr: float, who: str) -> None:
        """Make ``lr`` the optimizer's learning rate and the one the schedule callbacks default to
        (``LRFinder(apply=True)``): the variable, and the rate kept for the run."""
        self.require_variable_lr(who)
        opt = self.optimizer
        if self.host_sets_lr:
            _fill_lr(opt, lr)
        else:
            lr_variable(opt).assign(lr)
        self.run_state.learning_rate = float(lr)

    def require_variable_lr(self, who: str) -> None:
        opt = self.optimizer
        if not _lr_is_variable(opt):
            raise ValueError(
                f"{who}: the optimizer was compiled with learning_rate={_seam.lr_object(opt)!r}, a schedule object, "
                f"so its learning rate cannot be set; {who} schedules it itself: compile with a float, e.g. "
                f"{type(opt).__name__}(learning_rate=1e-3), and pass the schedule to {who} (or use "
                "hpcallbacks_keras.LearningRateSchedule with the hpcallbacks equivalent of that schedule)")

    # -- the callbacks of a fit ------------------------------------------------------------------
    def join(self, callback: Any, peers: Sequence[Any] = (), foreign: Sequence[R.Foreign] | None = None) -> None:
        """Add ``callback`` (and its hpcallbacks ``peers`` of the same callback list, in order) to
        the current fit; a callback of a new fit (another ``params`` dict) starts a new one."""
        token = callback.params
        fit = self.fit
        if fit is None or fit.token is not token or fit.started:
            if fit is not None:  # a fit that did not end (an error): its inference holds and patches go
                for bn in fit.held_bn:
                    release_inference(bn)
                if getattr(self.model, "optimizer", None) is not None:
                    self.unpatch(inner_optimizer(self.model.optimizer))
            fit = self.fit = _Fit(token=token)
        for cb in (*peers, callback):
            if not any(c is cb for c in fit.callbacks):
                fit.callbacks.append(cb)
                fit.composition = None  # read again with the new member
        if foreign is not None:
            fit.foreign = list(foreign)

    def joined(self, callback: Any) -> bool:
        fit = self.fit
        return fit is not None and fit.token is callback.params and not fit.started and any(
            c is callback for c in fit.callbacks)

    def composition(self) -> R.Composition:
        """The contract's reading of the fit's callbacks (a ``ValueError`` for every conflict)."""
        fit = self.fit
        if fit.composition is None:
            fit.composition = R.compose([cb._member() for cb in fit.callbacks], fit.foreign)
        return fit.composition

    @property
    def accumulation(self) -> int:
        return int(getattr(self.optimizer, "gradient_accumulation_steps", None) or 1)

    def steps_per_epoch(self, who: str, required: bool = True) -> int | None:
        """Optimizer updates per epoch of the run (micro-batches // accumulation)."""
        steps = (self.fit.callbacks[0].params or {}).get("steps") if self.fit else None
        if steps is None:
            if required:
                raise ValueError(f"{who}: the number of steps per epoch is unknown (a dataset of unknown length): "
                                 "pass steps_per_epoch= to fit, or give the lengths in updates explicitly")
            return None
        updates = int(steps) // self.accumulation
        if updates < 1:
            raise ValueError(f"{who}: an epoch of {steps} batches makes no optimizer update with "
                             f"gradient_accumulation_steps={self.accumulation}; use more batches per epoch")
        return updates

    def epochs(self) -> int:
        return int((self.fit.callbacks[0].params or {}).get("epochs") or 1) if self.fit else 1

    def total_steps(self, who: str) -> int | None:
        """The run's total optimizer updates (counted from the first run's first update), if known."""
        steps = self.steps_per_epoch(who, required=False)
        return None if steps is None else steps * self.epochs()

    def set_schedule(self, owner: Any, fn: Callable[[int], float]) -> None:
        self.fit.schedule = (owner, fn)

    def set_plateau(self, owner: Any, plateau: Any) -> None:
        self.require_variable_lr(_name(owner))
        self.fit.plateau = (owner, plateau)

    def set_modifier(self, owner: Any, fn: Callable[[int], float]) -> None:
        """A factor of the update count multiplying the schedule (ScaleLearningRate's warmup to k)."""
        self.require_variable_lr(_name(owner))
        self.fit.modifiers = [m for m in self.fit.modifiers if m[0] is not owner] + [(owner, fn)]

    def layer_groups(self, who: str) -> list[Group]:
        """The layer groups of the fit, from the composition's ``groups=`` (the plan's, else
        ``DiscriminativeLR``'s; discovered when neither gives them). Given groups that leave a
        layer with weights out are refused (:func:`hpcallbacks.run.left_out_message`)."""
        fit = self.fit
        if fit.groups is None:
            spec = self.composition().groups
            try:
                found = resolve_groups(self.model, spec)
            except ValueError as e:
                raise ValueError(f"{who}: {e}") from None
            if spec is not None:
                left = left_out_layers(self.model, found)
                if left:
                    raise ValueError(f"{who}: {R.left_out_message(left)}")
            fit.groups = (None, found)
        return fit.groups[1]

    def set_factors(self, owner: Any, factors: tuple[float, ...]) -> None:
        self._check_weight_decay(owner, factors)
        self.fit.factors = (owner, tuple(float(f) for f in factors))

    def _check_weight_decay(self, owner: Any, factors: Sequence[float]) -> None:
        opt = self.optimizer
        if getattr(opt, "weight_decay", None) and any(f != 1.0 for f in factors) and not _lr_is_variable(opt):
            raise ValueError(f"{_name(owner)}: per-group factors with weight_decay need a float learning rate; the "
                             f"optimizer was compiled with learning_rate={_seam.lr_object(opt)!r}: compile with a "
                             "float and schedule it with an hpcallbacks LR callback")

    def set_plan(self, owner: Any, resolved: Any, bn_policy: str) -> None:
        self.fit.plan = (owner, resolved)
        self.fit.bn_policy = bn_policy

    def add_param(self, owner: Any, param: Param) -> None:
        if any(p.obj is param.obj and p.attr == param.attr for p in self.fit.params):
            raise ValueError(f"{_name(owner)}: {param.name!r} is scheduled twice in this fit; schedule it once")
        self.fit.params.append(param)

    def add_frozen_bn(self, owner: Any, layers: list[Any], freeze_affine: bool = True) -> None:
        """BatchNorm layers held in inference mode for this fit; ``freeze_affine``: gamma/beta frozen too."""
        for bn in layers:
            hold_inference(bn)
            self.fit.held_bn.append(bn)
        if freeze_affine:
            self.fit.frozen_bn.extend(layers)

    # -- flags ---------------------------------------------------------------------------------
    def _groups(self) -> list[Group]:
        return self.fit.groups[1] if self.fit and self.fit.groups else []

    def apply_flags(self, union: Sequence[bool] | None) -> None:
        groups = self._groups()
        if union is not None:
            for group, on in zip(groups, union):
                set_group_trainable(group, bool(on), self.fit.bn_policy)
        for bn in self.fit.frozen_bn:
            bn.trainable = False

    def ever_trainable_variables(self, masks: Sequence[Sequence[bool]]) -> list[Any]:
        """Variables trainable in some stage (flags restored afterwards)."""
        model = self.model
        layer_flags = [(layer, _seam.layer_trainable_flag(layer))
                       for layer in _seam.flatten_layers(model, include_self=False)]
        var_flags = [(v, v.trainable) for v in model.weights]
        ids: set[int] = set()
        try:
            for mask in dict.fromkeys(tuple(m) for m in masks):
                self.apply_flags(mask)
                ids.update(id(v) for v in model.trainable_variables)
        finally:
            for layer, flag in layer_flags:
                _seam.set_layer_trainable_flag(layer, flag)
            for v, flag in var_flags:
                v.trainable = flag
        return [v for v in model.weights if id(v) in ids]

    def ensure_optimizer_holds(self, owner: Any, variables: list[Any]) -> None:
        """The optimizer must be built on every variable the plan will train (rebuilt if still fresh)."""
        opt = self.optimizer
        order = {id(v): i for i, v in enumerate(self.model.weights)}
        if not opt.built:  # TF builds it lazily at the first trace: build it on everything the plan trains
            wanted = {id(v): v for v in list(self.model.trainable_variables) + list(variables)}
            self.model.optimizer.build(sorted(wanted.values(), key=lambda v: order.get(id(v), -1)))
            return
        missing = [v for v in variables if not _seam.holds_variable(opt, v)]
        if not missing:
            return
        names = sorted({v.path for v in missing})[:8]
        if micro_count(opt) != 0:
            raise ValueError(
                f"{_name(owner)}: the optimizer was built without the variables {names} (their layers were frozen "
                "when fit built it) and has already trained, so it cannot take them now. Leave the layers trainable "
                f"when you compile and call fit ({_name(owner)} freezes them itself), or build the optimizer on all of "
                "them first: model.optimizer.build(model.trainable_variables) with every layer trainable")
        wrapper = self.model.optimizer
        try:
            fresh = type(wrapper).from_config(wrapper.get_config())
        except Exception as e:  # noqa: BLE001 - any failure means we cannot rebuild it safely
            raise ValueError(
                f"{_name(owner)}: the optimizer was built without the variables {names} (their layers were frozen "
                f"before fit) and could not be rebuilt from its config ({e}); leave the layers trainable when you "
                f"call fit ({_name(owner)} freezes them itself)") from None
        state = _STATES.get(inner_optimizer(wrapper))
        ordered = sorted({id(v): v for v in _seam.trainable_variables_of(opt) + variables}.values(),
                         key=lambda v: order.get(id(v), -1))
        fresh.build(ordered)
        self.model.optimizer = fresh
        if state is not None:  # the run's state stays with the optimizer that trains
            _keep(inner_optimizer(fresh), state)

    # -- the run -------------------------------------------------------------------------------
    def lr_at(self, t: int) -> float:
        """The learning rate of update ``t`` before the group factors (the contract's rule)."""
        return self.fit.rule(t)

    @property
    def table_mode(self) -> bool:
        """Whether hpcallbacks sets the learning rate in this fit (a schedule, a plateau rule or a modifier)."""
        fit = self.fit
        return bool(fit and fit.composition is not None and fit.composition.sets_lr)

    def _rule(self) -> R.LRRule | None:
        fit = self.fit
        if not self.table_mode:
            return None
        if fit.schedule is not None:
            base = fit.schedule[1]
        else:  # a plateau rule or a modifier alone: the optimizer's learning rate of the first run
            lr0 = self.initial_learning_rate(_name(fit.callbacks[0]))

            def base(t: int, lr0: float = lr0) -> float:
                return lr0

        comp = fit.composition
        order = {id(self.fit.callbacks[i]): k for k, i in enumerate(comp.modifiers)}
        modifiers = [fn for _, fn in sorted(fit.modifiers, key=lambda m: order.get(id(m[0]), 0))]
        return R.LRRule(base, modifiers, fit.plateau[1] if fit.plateau else None)

    def start(self, epoch: int | None = None) -> None:
        """At the first epoch's start (after every ``on_train_begin``, so ``BackupAndRestore`` has restored
        the optimizer and the :class:`RunState`): each callback's run facts, the table, the patches."""
        fit = self.fit
        fit.started = True
        self.quiet_until = -1
        check_distributed_execution(self.model, _name(fit.callbacks[0]))
        if not _seam.JAX_CACHE_SAFE and _seam.jax_persistent_cache_dir() and not Engine._cache_warned:
            Engine._cache_warned = True
            warnings.warn(f"{_name(fit.callbacks[0])}: JAX's persistent compilation cache is on "
                          f"({_seam.jax_persistent_cache_dir()}) with jax {'.'.join(map(str, installed('jax') or ()))}:"
                          " on jax 0.4.38 a train step loaded from it read stale learning rates after a resume; "
                          "turn the cache off (unset JAX_COMPILATION_CACHE_DIR) or upgrade jax (0.10.2: checked)",
                          R.RunWarning, stacklevel=2)
        opt = self.optimizer
        self.acc = self.accumulation
        self.micro = micro_count(opt)
        u = self.micro // self.acc
        state = run_state(opt)
        self._check_loaded(state, u, epoch)
        for cb in fit.callbacks:  # schedules from the run (resume, extend), plateau state, notices
            cb.begin_run(self, u, state)
        fit.rule = self._rule()
        self.table = self.offset = None
        self.host_table = None
        self.window = 0
        if self.table_mode or fit.params:
            steps = self.steps_per_epoch("", required=False)
            remaining = (steps * self.epochs() - u) if steps else 4 * 1024
            spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
            self.window = int(min(_WINDOW_MAX, max(_WINDOW_MIN, remaining + spe + 2)))
            with variable_scope(self.model):
                self.offset = keras.Variable(0, trainable=False, dtype="int32", name="hpcallbacks_offset",
                                             aggregation="only_first_replica")
                if self.table_mode:
                    self.table = self._window_variable("hpcallbacks_lr_table")
                for param in fit.params:
                    self._prepare_param(param)
            self.fill(u)
            for param in fit.params:  # the first update's value, before its forward pass
                if param.kind != "float":
                    param.variable.assign(float(param.host[0]))
        if self.table is not None or (self.host_sets_lr and self.host_table is not None):
            self.show_lr(u)  # before the first update the optimizer shows its learning rate
        self.patch(opt)
        self.opt = opt
        steps = (fit.callbacks[0].params or {}).get("steps")
        self.steps = None if steps is None else int(steps)
        self.spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        self.plan = fit.plan[1] if fit.plan else None
        self.stage_key: tuple[int, int] | None = None
        self.traced_union = None
        self.traced_gates = frozenset()
        self.need_retrace = True
        if fit.plan is None:
            self.apply_flags(None)

    def _check_loaded(self, state: RunState, update: int, epoch: int | None) -> None:
        """A file's run state says update N > 0 and the optimizer says 0: Keras skipped the optimizer's
        state (an optimizer not built before ``load_weights``). Resuming (``initial_epoch`` > 0) is refused,
        a new run from the weights (epoch 0) warns: its schedules start at update 0."""
        loaded, state.loaded_update = state.loaded_update, None
        if not loaded or update != 0:
            return
        who = _name(self.fit.callbacks[0])
        message = (f"{who}: the weights loaded were saved at update {loaded}, but the optimizer is at update 0: "
                   "Keras did not load the optimizer's state (it skips it, warning 'Skipping variable loading for "
                   "optimizer', when the optimizer is not built before load_weights). To resume, build it before "
                   "loading: model.optimizer.build(model.trainable_variables); model.load_weights(path)")
        if epoch:
            raise ValueError(f"{message}; to start a new run from these weights, fit from initial_epoch=0")
        warnings.warn(f"{message}. This run starts afresh at update 0 (schedules and stages from their start)",
                      R.RunWarning, stacklevel=2)

    def param_now(self, param: Param) -> float:
        """A scheduled parameter's value at the last update done (its first before any)."""
        last = max(self.micro // self.acc - 1, 0)
        i = last - self.window_start
        return float(param.host[i]) if param.host is not None and 0 <= i < self.window else param.fn(last)

    def _window_variable(self, name: str) -> Any:
        return keras.Variable(np.zeros((self.window,), "float32"), trainable=False, dtype="float32", name=name,
                              aggregation="only_first_replica")

    def _prepare_param(self, param: Param) -> None:
        if param.kind == "hyper":  # a graph backend reads optimizer floats at trace time: a variable stands in
            param.variable = keras.Variable(float(getattr(param.obj, param.attr)), trainable=False, dtype="float32",
                                            name=f"hpcallbacks_{param.attr}", aggregation="only_first_replica")
            stand_in = _Hyperparameter(param.variable, functools.partial(self.param_now, param) if _JAX else None)
            stand_in.nonzero = float(getattr(param.obj, param.attr)) != 0
            object.__setattr__(param.obj, param.attr, stand_in)
            if "get_config" not in param.obj.__dict__:  # ModelCheckpoint may save the model while fit runs
                object.__setattr__(param.obj, "get_config", functools.partial(_float_config, param.obj.get_config))
        elif param.kind == "variable":
            param.variable = getattr(param.obj, param.attr)
        if not self.host_sets_lr and param.kind != "float":
            param.table = self._window_variable(f"hpcallbacks_{param.name}_table".replace(".", "_"))

    def fill(self, start: int) -> None:
        """Evaluate the core's numbers for updates ``start .. start + window - 1`` into the tables."""
        steps = range(start, start + self.window)
        if self.table_mode:
            values = np.array([self.lr_at(t) for t in steps], dtype=np.float64)  # the contract's numbers
            if not np.all(np.isfinite(values)):
                raise ValueError(f"the learning-rate schedule gave a non-finite value between updates {start} and "
                                 f"{start + self.window}")
            self.host_table = values
            if self.table is not None:
                self.table.assign(values.astype("float32"))
        for param in self.fit.params:
            param.host = np.array([param.fn(t) for t in steps], dtype=np.float64)
            if not np.all(np.isfinite(param.host)):
                raise ValueError(f"ParamScheduler: the schedule of {param.name!r} gave a non-finite value between "
                                 f"updates {start} and {start + self.window}")
            if param.table is not None:
                param.table.assign(param.host.astype("float32"))
        self.window_start = start
        self.quiet_until = -1
        self.offset.assign(start)
        if _JAX:  # JAX reads variables outside the train state as constants of the trace: trace again
            self.need_retrace = True

    def refill(self) -> None:
        """After a plateau reduction: the table from the next update on, and the rate it shows."""
        if self.window and self.fit is not None and self.fit.started:
            if self.fit.rule is not None:
                self.fit.rule.invalidate()
            self.fill(self.micro // self.acc)
            if self.host_table is not None:
                self.show_lr(self.micro // self.acc)

    def host_lr_at(self, t: int) -> float:
        i = t - self.window_start
        if self.host_table is not None and 0 <= i < self.window:
            return float(self.host_table[i])
        return self.lr_at(t)

    def show_lr(self, t: int) -> None:
        """Set the optimizer's learning-rate variable to update ``t``'s rate (a host write)."""
        value = self.host_lr_at(t)
        opt = self.optimizer
        if self.host_sets_lr:
            _fill_lr(opt, value)
        else:
            lr_variable(opt).assign(value)

    def block_begin(self, begin: int) -> None:
        """Before Keras runs the next execution block (``steps_per_execution`` micro-batches)."""
        if not self.fit.started:
            self.start()
        steps, spe = self.steps, self.spe
        n = spe if steps is None else max(1, min(spe, steps - begin))
        if self.micro + n <= self.quiet_until:  # the hot path: an integer comparison
            self.micro += n
            return
        first = self.micro // self.acc
        last = (self.micro + n - 1) // self.acc
        if self.window and (first < self.window_start or last >= self.window_start + self.window):
            self.fill(first)
        if self.host_sets_lr and self.window:
            i = first - self.window_start
            if self.table is not None:
                self.host_lr = float(self.host_table[i])
                _fill_lr(self.opt, self.host_lr)
            for param in self.fit.params:
                value = float(param.host[i])
                if param.kind == "float":
                    setattr(param.obj, param.attr, value)
                else:
                    _fill(param.variable, value)
        plan = self.plan
        if plan is not None:
            key = (plan.stage_at(first), plan.stage_at(last))
            if key == self.stage_key and not self.need_retrace:
                self.micro += n
                self.quiet_until = self._quiet(key)
                return  # the same stages as the previous block: nothing to decide
            self.stage_key = key
            masks = plan.masks[key[0]: key[1] + 1]
            union: tuple[bool, ...] | None = tuple(any(m[g] for m in masks) for g in range(plan.num_groups))
            gates = frozenset(g for g in range(plan.num_groups) if union[g] and not all(m[g] for m in masks))
        else:
            union, gates = None, frozenset()
        if self.need_retrace or union != self.traced_union or not gates <= self.traced_gates:
            if union != self.traced_union or self.need_retrace:
                if _JAX and _seam.jax_state_held(self.model):
                    self.model.jax_state_sync()  # the values of the old trainable set go back to the variables
                self.apply_flags(union)
                if _JAX:
                    _seam.jax_trainable_set_changed(self.model)
            self.traced_union = union
            self.traced_gates = gates
            self.need_retrace = False
            self.trace = self._snapshot(gates)
            if _JAX and self.jax_step is not None:
                self.fresh_jax_step()
            self.model.make_train_function(force=True)
            self.retraces += 1
        self.micro += n
        self.quiet_until = self._quiet(self.stage_key if plan is not None else None)

    def _quiet(self, key: tuple[int, int] | None) -> float:
        """The micro-batch count up to which the next blocks need no decision (see ``quiet_until``)."""
        if self.need_retrace or (self.host_sets_lr and self.window):
            return -1  # the host sets the LR of every block
        limit = (self.window_start + self.window) * self.acc if self.window else math.inf
        if key is not None:
            if key[0] != key[1]:
                return -1  # a block across a stage boundary: the next one is decided again
            starts = self.plan.starts  # type: ignore[union-attr]
            if key[1] + 1 < len(starts):
                limit = min(limit, starts[key[1] + 1] * self.acc)
        return limit

    def resync(self) -> None:
        """Read the device's update counter (once per epoch, only for data of unknown length)."""
        self.micro = micro_count(self.optimizer)
        self.quiet_until = -1

    def _snapshot(self, gates: frozenset[int]) -> _Trace:
        groups = self._groups()
        var_group: dict[int, int] = {}
        for g, group in enumerate(groups):
            for v in group.weights:
                var_group.setdefault(id(v), g)
                value = getattr(v, "value", None)
                if value is not None:
                    var_group.setdefault(id(value), g)
        factors = self.fit.factors[1] if self.fit.factors else (1.0,) * len(groups)
        plan = self.fit.plan[1] if self.fit.plan else None
        starts = masks = None
        if plan is not None and gates:
            starts = np.asarray(plan.starts, dtype="int32")
            masks = np.asarray(plan.masks, dtype=bool)
        params = () if self.host_sets_lr else tuple(self.fit.params)
        return _Trace(table=None if self.host_sets_lr else self.table, offset=self.offset, window=self.window,
                      var_group=var_group, factors=tuple(factors), gated=gates, starts=starts, masks=masks,
                      params=params)

    def end(self) -> None:
        """After fit: the optimizer gets its own methods back; the next fit re-traces without them."""
        self.quiet_until = -1
        self.unpatch(self.optimizer)
        for bn in self.fit.held_bn:
            release_inference(bn)
        last = max(self.micro // self.acc - 1, 0)
        for param in self.fit.params:
            if param.kind == "hyper":  # the optimizer gets a float again: the value of the last update
                i = last - self.window_start
                value = float(param.host[i]) if param.host is not None and 0 <= i < self.window else param.fn(last)
                object.__setattr__(param.obj, param.attr, value)
                param.obj.__dict__.pop("get_config", None)
        self.trace = _Trace()
        self.model.make_train_function(force=True)
        self.fit = None

    # -- logs ----------------------------------------------------------------------------------
    def epoch_logs(self, epoch: int, logs: dict | None) -> None:
        fit = self.fit
        if fit is None or not fit.started:
            return
        if fit.logged_epoch != epoch:
            fit.logged_epoch = epoch
            fit.epoch_logs = self._log_values()
        if logs is not None:
            logs.update(fit.epoch_logs)

    def _log_values(self) -> dict[str, float]:
        out: dict[str, float] = {}
        last = self.micro // self.acc - 1
        if last < 0:
            return out
        groups = self._groups()
        base = None
        if self.table_mode:
            base = self.host_lr_at(last)
            out["learning_rate"] = base
        elif groups and self.fit.factors is not None and _lr_is_variable(self.optimizer):
            base = _read_lr(lr_variable(self.optimizer))  # the optimizer's own (or Keras' schedule callback's)
        if base is not None and groups:  # every group's rate, frozen ones included (the rate they would get)
            factors = self.fit.factors[1] if self.fit.factors else (1.0,) * len(groups)
            for group, f in zip(groups, factors):
                out[f"learning_rate/{group.name}"] = base * f
        for param in self.fit.params:
            i = last - self.window_start
            out[f"param/{param.name}"] = float(param.host[i]) if param.host is not None and 0 <= i < self.window \
                else param.fn(last)
        plan = self.fit.plan[1] if self.fit.plan else None
        if plan is not None:
            out["trainable_groups"] = float(sum(plan.trainable_at(last)))
        return out

    # -- optimizer wrappers --------------------------------------------------------------------
    def patch(self, opt: Any) -> None:
        self.unpatch(opt)
        originals = _seam.optimizer_methods(opt)
        wrappers = {
            "apply_gradients": functools.partial(_apply_gradients, self, opt, originals["apply_gradients"]),
            "update_step": functools.partial(_update_step, self, originals["update_step"]),
            "weight_decay": functools.partial(_weight_decay, self, opt, originals["weight_decay"]),
        }
        if _JAX:
            wrappers["stateless_apply"] = functools.partial(_stateless_apply, self, opt, originals["stateless_apply"])
        _seam.wrap_optimizer(opt, **wrappers)
        if _JAX:
            model = self.model
            model.__dict__.pop("train_step", None)
            self.jax_step = model.train_step
            self.fresh_jax_step()

    def fresh_jax_step(self) -> None:
        """JAX: a new train-step callable, so ``jax.jit`` traces again (it caches a trace per function:
        the tables it reads as constants, or the trainable set, changed)."""
        object.__setattr__(self.model, "train_step", functools.partial(_jax_train_step, self, self.jax_step))

    def unpatch(self, opt: Any) -> None:
        _seam.unwrap_optimizer(opt, _ENGINE_WRAPPERS)  # the engine's wrappers go; another one (replicated
        # accumulation) stays
        step = self.model.__dict__.get("train_step")
        if isinstance(step, functools.partial) and step.func is _jax_train_step:
            object.__delattr__(self.model, "train_step")
        self.jax_step = None


# -- what runs inside the train step ----------------------------------------------------------
def _iteration(opt: Any) -> Any:
    return ops.cast(opt.iterations, "int32")


def _active(tr: _Trace, opt: Any, g: int) -> Any:
    stage = ops.sum(ops.cast(ops.greater_equal(_iteration(opt), tr.starts), "int32")) - 1
    return ops.take(ops.convert_to_tensor(tr.masks[:, g]), stage)


def _buckets(tr: _Trace, grads: Sequence[Any] | None, variables: Sequence[Any]) -> dict[int, tuple[list, list]]:
    out: dict[int, tuple[list, list]] = {}
    for i, v in enumerate(variables):
        if id(v) in tr.frozen:
            continue  # JAX: held by the optimizer, frozen now: no update, no weight decay, slots kept
        g = tr.var_group.get(id(v), -1)
        gs, vs = out.setdefault(g, ([], []))
        if grads is not None:
            gs.append(grads[i])
        vs.append(v)
    return out


def _fill_lr(opt: Any, value: float) -> None:
    import torch

    with torch.no_grad():
        lr_variable(opt).value.fill_(value)


def _scaled(learning_rate: Any, factor: float) -> Any:
    if factor == 1.0:
        return learning_rate
    if isinstance(learning_rate, keras.Variable) and keras.backend.backend() == "torch":
        return learning_rate.value * factor  # one torch op, not Keras' operator machinery
    return learning_rate * factor


def _fill(variable: Any, value: float) -> None:
    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            variable.value.fill_(value)
    else:
        variable.assign(value)


def _apply_gradients(engine: Engine, opt: Any, original: Callable, grads: Any, variables: Any) -> Any:
    tr = engine.trace
    lr_var = lr_variable(opt)
    # the micro-batch count of this update, read before it: Keras 3.8 and 3.9 increment it inside the original
    micro = ops.cast(_seam.micro_iterations(opt), "int32") if tr.table is not None or tr.params else None
    if tr.table is not None or tr.params:
        index = ops.clip(_iteration(opt) - tr.offset, 0, tr.window - 1)
        if tr.table is not None:
            lr_var.assign(ops.cast(ops.take(tr.table, index), lr_var.dtype))
        for param in tr.params:
            if not param.forward:
                param.variable.assign(ops.take(param.table, index))
    if _replicated_accumulation(opt):
        result = _accumulate_replicated(opt, grads, variables)
    else:
        result = original(grads, variables)
    if tr.table is not None:  # the next update's rate, as Keras' own schedules show it
        acc = int(getattr(opt, "gradient_accumulation_steps", None) or 1)
        following = ops.floor_divide(micro + 1, acc)
        index = ops.clip(following - tr.offset, 0, tr.window - 1)
        lr_var.assign(ops.cast(ops.take(tr.table, index), lr_var.dtype))
    elif engine.host_sets_lr and engine.host_table is not None and engine.fit is not None:
        _fill_lr(opt, engine.host_lr_at(engine.micro // engine.acc))  # eager: the host knows the next update
    forward = [] if _JAX else [param for param in tr.params if param.forward]
    if forward:  # the next micro-batch's update: its forward pass reads the value
        acc = int(getattr(opt, "gradient_accumulation_steps", None) or 1)
        following = ops.floor_divide(micro + 1, acc)
        index = ops.clip(following - tr.offset, 0, tr.window - 1)
        for param in forward:
            param.variable.assign(ops.cast(ops.take(param.table, index), param.variable.dtype))
    return result


def _replicated_accumulation(opt: Any) -> bool:
    """Gradient accumulation inside a ``tf.distribute`` replica context with more than one replica."""
    if keras.backend.backend() != "tensorflow" or not getattr(opt, "gradient_accumulation_steps", None) \
            or getattr(opt, "use_ema", False):
        return False
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    return ctx is not None and ctx.num_replicas_in_sync > 1


def _accumulate_replicated(opt: Any, grads: Sequence[Any], variables: Sequence[Any]) -> None:
    """Keras' accumulating ``_backend_apply_gradients`` for several replicas.

    Keras runs the update in one branch of an ``ops.cond`` and the update all-reduces the gradients
    and calls ``merge_call``, which TensorFlow refuses inside a replica's control flow. Here every
    micro-batch runs the update unconditionally on the accumulated mean (the same arithmetic as
    Keras), and one ``merge_call`` then keeps, on every device, the new values at an update step
    and the old ones (model, slots) otherwise, and sets the accumulators (zero after an update, the
    running sum otherwise)."""
    import tensorflow as tf

    steps = int(opt.gradient_accumulation_steps)
    counter = _seam.micro_iterations(opt)
    is_update = tf.equal(tf.math.floormod(tf.cast(counter, "int64") + 1, steps), 0)
    held = _seam.accumulators(opt)
    accumulators = [held[_seam.variable_index(opt, v)] for v in variables]
    summed = [tf.convert_to_tensor(g) + tf.convert_to_tensor(a.value) for g, a in zip(grads, accumulators)]
    skip = {id(a) for a in accumulators} | {id(counter)}
    watched = list(variables) + [v for v in opt.variables if id(v) not in skip]
    before = [tf.identity(tf.convert_to_tensor(v.value)) for v in watched]
    mean = _seam.clip_gradients(opt, [s / steps for s in summed])
    _seam.apply_weight_decay(opt, variables)
    _seam.backend_update_step(opt, mean, variables, opt.learning_rate)

    def keep(var: Any, old: Any, update: Any) -> Any:
        return var.assign(tf.where(update, tf.convert_to_tensor(var), old))

    def accumulate(var: Any, total: Any, update: Any) -> Any:
        return var.assign(tf.where(update, tf.zeros_like(total), total))

    def merged(distribution: Any, update: Any, before: Any, summed: Any) -> None:
        for v, old in zip(watched, before):
            distribution.extended.update(v.value, keep, args=(old, update), group=False)
        for a, total in zip(accumulators, summed):
            distribution.extended.update(a.value, accumulate, args=(total, update), group=False)

    tf.distribute.get_replica_context().merge_call(merged, args=(is_update, before, summed))
    if not _seam.KERAS_GE_3_10:  # this replaces the method that counts the micro-batch there (3.8)
        counter.assign_add(1)


def _replicated_apply(opt: Any, original: Callable, grads: Any, variables: Any) -> Any:
    if _replicated_accumulation(opt):
        return _accumulate_replicated(opt, grads, variables)
    return original(grads, variables)


def install_replicated_accumulation(opt: Any) -> None:
    """Give ``opt`` (TensorFlow backend) gradient accumulation that runs under a ``tf.distribute``
    strategy with several replicas (:func:`_accumulate_replicated`), in every fit, with or without
    the engine; elsewhere Keras' own."""
    if keras.backend.backend() != "tensorflow" or _seam.optimizer_wrapped(opt, "apply_gradients", (_replicated_apply,)):
        return
    original = _seam.optimizer_methods(opt)["apply_gradients"]
    _seam.wrap_optimizer(opt, apply_gradients=functools.partial(_replicated_apply, opt, original))


def _float_config(original: Callable[[], dict], *args: Any) -> dict:
    return {k: (float(v) if isinstance(v, _Hyperparameter) else v) for k, v in original(*args).items()}


class _Hyperparameter:
    """Stands in for an optimizer float while a graph backend traces: a variable in arithmetic
    (``ops.cast(self.momentum, ...)``, ``1 - self.beta_1``), a Python value in the optimizer's own
    ``if self.momentum != 0`` tests (their answer cannot change within a fit: a schedule that
    reaches 0 is refused for such a hyperparameter)."""

    def __init__(self, variable: Any, host: Callable[[], float] | None = None) -> None:
        self.variable = variable
        self.nonzero = True
        self.host = host  # JAX: the value on the host (the variable's in-graph value stays in the train step)

    def __bool__(self) -> bool:
        return self.nonzero

    def __eq__(self, other: Any) -> Any:
        if isinstance(other, (int, float)) and other == 0:
            return not self.nonzero
        return NotImplemented

    def __ne__(self, other: Any) -> Any:
        if isinstance(other, (int, float)) and other == 0:
            return self.nonzero
        return NotImplemented

    __hash__ = object.__hash__

    def _tensor(self) -> Any:
        return ops.convert_to_tensor(self.variable)

    def __float__(self) -> float:
        if self.host is not None:
            return float(self.host())
        return float(ops.convert_to_numpy(self.variable))

    def __jax_array__(self) -> Any:  # JAX: jnp.asarray / ops.cast while the train step is traced
        return self.variable.value

    def __add__(self, other: Any) -> Any:
        return self._tensor() + other

    def __radd__(self, other: Any) -> Any:
        return other + self._tensor()

    def __sub__(self, other: Any) -> Any:
        return self._tensor() - other

    def __rsub__(self, other: Any) -> Any:
        return other - self._tensor()

    def __mul__(self, other: Any) -> Any:
        return self._tensor() * other

    def __rmul__(self, other: Any) -> Any:
        return other * self._tensor()

    def __truediv__(self, other: Any) -> Any:
        return self._tensor() / other

    def __rtruediv__(self, other: Any) -> Any:
        return other / self._tensor()

    def __neg__(self) -> Any:
        return -self._tensor()


if keras.backend.backend() == "tensorflow":
    import tensorflow as _tf

    def _convert_hyperparameter(value: _Hyperparameter, dtype: Any = None, name: Any = None,
                                as_ref: bool = False) -> Any:
        tensor = _tf.convert_to_tensor(value.variable.value)
        return tensor if dtype is None or dtype == tensor.dtype else _tf.cast(tensor, dtype)

    _tf.register_tensor_conversion_function(_Hyperparameter, _convert_hyperparameter)


def _update_step(engine: Engine, original: Callable, grads: Any, variables: Any, learning_rate: Any) -> Any:
    tr = engine.trace
    if not tr.grouped:
        return original(grads, variables, learning_rate)
    opt = inner_optimizer(engine.model.optimizer)
    host = engine.host_lr if engine.host_sets_lr and engine.table is not None else None
    for g, (gs, vs) in _buckets(tr, grads, variables).items():
        factor = tr.factors[g] if g >= 0 else 1.0
        # eager torch: a Python float (torch's foreach ops take it without reading a tensor)
        lr = host * factor if host is not None else _scaled(learning_rate, factor)

        def run(gs: list = gs, vs: list = vs, lr: Any = lr) -> None:
            original(gs, vs, lr)

        if g in tr.gated:
            _gate(tr, opt, g, run, vs)
        else:
            run()
    return None


def _weight_decay(engine: Engine, opt: Any, original: Callable, variables: Any) -> Any:
    tr = engine.trace
    if getattr(opt, "weight_decay", None) is None or not tr.grouped:
        return original(variables)
    for g, (_, vs) in _buckets(tr, None, variables).items():
        factor = tr.factors[g] if g >= 0 else 1.0

        def run(vs: list = vs, factor: float = factor) -> None:
            if factor == 1.0 or not _lr_is_variable(opt):
                original(vs)
                return
            lr_var = lr_variable(opt)
            base = ops.convert_to_tensor(lr_var)
            lr_var.assign(base * factor)
            original(vs)
            lr_var.assign(base)

        if g in tr.gated:
            _gate(tr, opt, g, run, vs)
        else:
            run()
    return None


def _gate(tr: _Trace, opt: Any, g: int, run: Callable[[], None], vs: Sequence[Any]) -> None:
    """Run group ``g``'s update only at the updates where the plan has it active."""
    active = _active(tr, opt, g)
    if not _JAX:
        ops.cond(active, run, lambda: None)
        return
    # JAX: a variable assigned inside a traced branch leaks its tracer; run the update and keep, for
    # every variable it may touch (the group's and the optimizer's), the old value where inactive
    watched = list(vs) + list(opt.variables)
    before = [v.value for v in watched]
    run()
    for v, old in zip(watched, before):
        v.assign(ops.where(active, v.value, old))


def _stateless_apply(engine: Engine, opt: Any, original: Callable, optimizer_variables: Any, grads: Any,
                     trainable_variables: Any) -> Any:
    """JAX: the optimizer is built on every variable the plan trains, the train state holds the ones
    trainable now. The frozen ones go in with their values and zero gradients and get no update
    (:func:`_buckets`); the update of the trainable ones comes back in the model's order."""
    built = _seam.trainable_variables_of(opt)
    current = list(engine.model.trainable_variables)
    if len(trainable_variables) == len(built) or len(current) != len(trainable_variables):
        return original(optimizer_variables, grads, trainable_variables)
    given = {id(v): i for i, v in enumerate(current)}
    held = engine.jax_held
    values, full_grads, frozen = [], [], set()
    for v in built:
        i = given.get(id(v))
        if i is None:
            value = held.get(id(v))
            if value is None:
                value = v.value
            values.append(value)
            full_grads.append(ops.zeros_like(value))
            frozen.add(id(v))
        else:
            values.append(trainable_variables[i])
            full_grads.append(grads[i])
    saved = engine.trace.frozen
    engine.trace.frozen = frozenset(frozen)
    try:
        new_values, new_opt = original(optimizer_variables, full_grads, values)
    finally:
        engine.trace.frozen = saved
    out = list(trainable_variables)
    for v, value in zip(built, new_values):
        i = given.get(id(v))
        if i is not None:
            out[i] = value
    return out, new_opt


def _jax_train_step(engine: Engine, original: Callable, state: Any, data: Any) -> Any:
    """JAX: the train step sees the state as arguments. Keep the frozen variables' values for
    :func:`_stateless_apply`, and give each forward-pass parameter (ParamScheduler) the value of
    this micro-batch's update in the state the forward pass reads."""
    if not isinstance(state, (tuple, list)) or len(state) != 4:
        return original(state, data)
    trainable, non_trainable, optimizer_values, metrics = state
    model = engine.model
    nts = list(model.non_trainable_variables)
    forward = [p for p in engine.trace.params if p.forward]
    if forward and engine.trace.offset is not None:
        non_trainable = list(non_trainable)
        where = {id(v): k for k, v in enumerate(nts)}
        opt = engine.model.optimizer
        with keras.StatelessScope(state_mapping=list(zip(opt.variables, optimizer_values))):
            index = ops.clip(_iteration(inner_optimizer(opt)) - engine.trace.offset, 0, engine.trace.window - 1)
            for param in forward:
                k = where.get(id(param.variable))
                if k is not None:
                    non_trainable[k] = ops.cast(ops.take(param.table, index), param.variable.dtype)
    engine.jax_held = {id(v): value for v, value in zip(nts, non_trainable)}
    try:
        return original((trainable, non_trainable, optimizer_values, metrics), data)
    finally:
        engine.jax_held = {}


_ENGINE_WRAPPERS = (_apply_gradients, _update_step, _weight_decay, _stateless_apply)

__all__ = ["Engine", "Param", "check_distributed_execution", "inner_optimizer", "install_replicated_accumulation",
           "lr_variable", "micro_count", "replicas", "variable_scope"]
