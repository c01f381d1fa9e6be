"""The seam with Keras: every touch of Keras', TensorFlow's and JAX's internals the adapter makes.

The rest of ``hpcallbacks_keras`` calls these functions and the frameworks' public API only
(``tests/test_seam_keras.py`` checks that by reading the source, and tests every touch below on
the installed releases: a release that changes one fails a test naming it). When Keras releases,
this is the one file to read.

Every touch names the releases it was checked on:

* **3.8** = Keras 3.8.0 on TensorFlow 2.18.0 (the floor: ``.venv-floor``; TensorFlow and torch
  2.13 backends);
* **3.15** = Keras 3.15.1 on TensorFlow 2.21.0 (the newest: ``.venv``; TensorFlow, torch 2.13
  and JAX 0.10.2 backends).

Where releases differ the code branches on a flag computed once here from the installed version
(:mod:`hpcallbacks._versions`), never on ``try/except AttributeError`` around behaviour.

Public routes used instead of internals (checked on 3.8 and 3.15): ``optimizer.iterations`` (the
update count; the micro-batch counter below is private), ``model.distribute_strategy``,
``keras.StatelessScope``, ``Callback.set_model`` / ``set_params`` (the ``params`` dict one fit
gives all its callbacks is the key that joins them). No public route gives a callback the other
callbacks of its fit: Keras' ``CallbackList`` does not hand itself to the callbacks it holds
(3.8 and 3.15), so :func:`callback_list_of` walks the call stack to it.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import keras

from hpcallbacks._versions import at_least

__all__ = [
    "BACKEND", "KERAS_GE_3_10", "KERAS_GE_3_11", "KERAS_GE_3_12", "PATCHED", "SavedState", "accumulators",
    "apply_weight_decay", "backend_update_step", "callback_list_of", "callback_model", "clip_gradients",
    "create_accumulators",
    "data_adapter", "fit_data", "flatten_layers", "global_seed_state", "holds_variable", "install_model_property",
    "is_array_adapter", "is_functional", "is_multi_optimizer", "jax_state_held", "jax_trainable_set_changed",
    "layer_trainable_flag", "lr_object", "micro_iterations", "optimizer_methods", "optimizer_wrapped", "own_weights",
    "set_layer_trainable_flag", "set_lr_object", "strategy_of", "symbolic_build", "trainable_variables_of",
    "unwrap_optimizer", "variable_index", "wrap_optimizer",
]

# -- version flags (one line each, computed once) ----------------------------------------------------
#: ``optimizer._iterations`` is incremented by ``BaseOptimizer.apply`` after ``_backend_apply_gradients``
#: returns (keras PR #21262, released in 3.10); before, at the end of ``_backend_apply_gradients`` itself
#: (3.8: checked; a wrapper of it then sees the counter already advanced, and one replacing it must count).
KERAS_GE_3_10 = at_least("keras", "3.10")
#: ``keras.optimizers.MultiOptimizer`` exists (3.15: yes; 3.8: no; 3.10: no, per issue 19's trial).
KERAS_GE_3_11 = at_least("keras", "3.11")
#: The JAX trainer no longer records each state variable's sharding at fit start and enforces the records in
#: its train step (``_record_training_state_sharding_spec`` / ``_enforce_jax_state_sharding``: 3.8 has them,
#: 3.15 passes ``out_shardings`` to ``jax.jit`` instead; keras PR #21559, August 2025: assumed from 3.12).
KERAS_GE_3_12 = at_least("keras", "3.12")

BACKEND = keras.backend.backend()
#: JAX's persistent compilation cache is safe with the adapter's in-graph table from this JAX release on
#: (0.10.2: checked, the newest leg runs with the cache). On jax 0.4.38 (Keras 3.8's, the floor leg) a fit
#: whose train step came from the cache read stale learning rates after a ``BackupAndRestore`` resume
#: (tests/keras_cases.py, two tests; both pass without the cache). Releases between are unchecked.
JAX_CACHE_SAFE_FROM = "0.10"
JAX_CACHE_SAFE = BACKEND != "jax" or at_least("jax", JAX_CACHE_SAFE_FROM)


def jax_persistent_cache_dir() -> str | None:
    """The directory of JAX's persistent compilation cache when it is on (``JAX_COMPILATION_CACHE_DIR``
    or ``jax.config.update("jax_compilation_cache_dir", ...)``), on the JAX backend; else None.
    ``jax.config.jax_compilation_cache_dir``: public config, checked on jax 0.4.38 and 0.10.2."""
    if BACKEND != "jax":
        return None
    import jax

    return jax.config.jax_compilation_cache_dir or None


# -- saving: the run state saved with the model's weights --------------------------------------------
# Keras' saving (``saving_lib._save_state`` / ``_load_state``, 3.8 and 3.15) visits every attribute of a
# model that is a ``keras.src.saving.keras_saveable.KerasSaveable`` (no public name on 3.8 or 3.15) and
# calls its ``save_own_variables`` / ``load_own_variables``; the attributes of a visited object are filtered
# by ``get_attr_skipset(obj._obj_type())``, which accepts "Layer", "Functional", "Sequential", "Metric",
# "Optimizer" and "Loss" on 3.8 (and "Operation" from a later release on: 3.8 and 3.10 refuse it with
# "get_attr_skipset got invalid obj_type='Operation'"). "Loss" is accepted by both: its skip set is a bare
# Loss's attributes, none of which the state object has.
from keras.src.saving.keras_saveable import KerasSaveable as _KerasSaveable  # noqa: E402 - 3.8, 3.15

_SAVED_AS = "Loss"  # the obj_type Keras' saving is told (3.8, 3.15)


class SavedState(_KerasSaveable):  # type: ignore[misc,valid-type]
    """Base of an object Keras' saving visits as an attribute of a model (see the comment above)."""

    def _obj_type(self) -> str:  # the private hook of KerasSaveable (3.8, 3.15)
        return _SAVED_AS


def install_model_property(name: str, getter: Callable[[Any], Any], doc: str) -> None:
    """A read-only property ``name`` on every ``keras.Model`` (once), which Keras' saving then visits like
    a layer when its value is a :class:`SavedState` (``save_weights``, ``model.save``, ``BackupAndRestore``,
    ``ModelCheckpoint``; 3.8 and 3.15: ``_walk_saveable`` reads ``dir(model)``)."""
    if not hasattr(keras.Model, name):
        setattr(keras.Model, name, property(getter, doc=doc))


# -- the callbacks of a fit -------------------------------------------------------------------------------
def callback_list_of(callback: Any, depth: int = 12) -> Any:
    """The ``keras.callbacks.CallbackList`` calling ``callback`` now, or None.

    Keras gives a callback no handle on the other callbacks of its fit (3.8, 3.15). The list that
    calls a hook is the ``self`` of a caller frame: ``CallbackList.__init__`` (which sets
    ``self.callbacks`` and then calls ``set_model`` and ``set_params`` on each: 3.8 and 3.15) when
    ``fit`` builds it, ``CallbackList.on_train_begin`` for a list passed to ``fit``; a few frames up
    when subclasses call ``super()``.
    """
    frame = sys._getframe(1)
    try:
        for _ in range(depth):
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                    cb is callback for cb in getattr(owner, "callbacks", ()) or ()):
                return owner
            frame = frame.f_back
        return None
    finally:
        del frame


def callback_model(callback: Any) -> Any:
    """The model a callback was given (``Callback._model``, None before ``set_model``: 3.8, 3.15), without
    the public ``model`` property's JAX state sync."""
    return getattr(callback, "_model", None)


# -- optimizers ---------------------------------------------------------------------------------------------
_MULTI_OPTIMIZER = keras.optimizers.MultiOptimizer if KERAS_GE_3_11 else None


def is_multi_optimizer(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a ``keras.optimizers.MultiOptimizer`` (3.15; absent on 3.8: never)."""
    return _MULTI_OPTIMIZER is not None and isinstance(optimizer, _MULTI_OPTIMIZER)


def lr_object(optimizer: Any) -> Any:
    """What the optimizer holds as its learning rate: a ``keras.Variable`` (compiled with a float) or a
    ``LearningRateSchedule`` (``BaseOptimizer._learning_rate``; the public ``learning_rate`` evaluates the
    schedule: 3.8, 3.15)."""
    return getattr(optimizer, "_learning_rate", None)


def set_lr_object(optimizer: Any, value: Any) -> None:
    """Replace a schedule object the optimizer holds (``_learning_rate``: 3.8, 3.15; the public setter
    would assign a number to a variable instead)."""
    optimizer._learning_rate = value


def micro_iterations(optimizer: Any) -> Any:
    """The optimizer's micro-batch counter variable (``_iterations``; the public ``iterations`` is it floor-
    divided by ``gradient_accumulation_steps``: 3.8, 3.15)."""
    return optimizer._iterations


def accumulators(optimizer: Any) -> list[Any]:
    """The gradient accumulators, in the order of :func:`trainable_variables_of` (``_accumulated_gradients``,
    created by ``build`` when ``gradient_accumulation_steps`` is set: 3.8, 3.15)."""
    return list(getattr(optimizer, "_accumulated_gradients", None) or [])


def create_accumulators(optimizer: Any) -> None:
    """Create what ``BaseOptimizer.build`` creates when ``gradient_accumulation_steps`` is set, for an
    optimizer built without it (3.8, 3.15: one ``gradient_accumulator`` per trainable variable)."""
    optimizer._accumulated_gradients = [optimizer.add_variable_from_reference(v, name="gradient_accumulator")
                                        for v in optimizer._trainable_variables]


def trainable_variables_of(optimizer: Any) -> list[Any]:
    """The variables the optimizer was built on (``_trainable_variables``: 3.8, 3.15)."""
    return list(optimizer._trainable_variables)


def holds_variable(optimizer: Any, variable: Any) -> bool:
    """Whether a built optimizer was built on ``variable`` (``_var_key`` in ``_trainable_variables_indices``:
    3.8, 3.15)."""
    return optimizer._var_key(variable) in getattr(optimizer, "_trainable_variables_indices", {})


def variable_index(optimizer: Any, variable: Any) -> int:
    """The index of ``variable`` in the optimizer's slot lists (``_get_variable_index``: 3.8, 3.15), what a
    custom optimizer's ``update_step`` uses to find its slot."""
    return optimizer._get_variable_index(variable)


def clip_gradients(optimizer: Any, grads: Sequence[Any]) -> list[Any]:
    """The optimizer's gradient clipping (``_clip_gradients(grads)``: 3.8, 3.15)."""
    return optimizer._clip_gradients(grads)


def apply_weight_decay(optimizer: Any, variables: Sequence[Any]) -> None:
    """The optimizer's decoupled weight decay (``_apply_weight_decay(variables)``: 3.8, 3.15)."""
    optimizer._apply_weight_decay(variables)


def backend_update_step(optimizer: Any, grads: Sequence[Any], variables: Sequence[Any], learning_rate: Any) -> None:
    """The per-variable update of every variable (``_backend_update_step(grads, variables, lr)``: 3.8, 3.15)."""
    optimizer._backend_update_step(grads, variables, learning_rate)


#: The optimizer methods the engine wraps per instance (role -> method), with the signatures they have on
#: 3.8 and 3.15: ``_backend_apply_gradients(grads, trainable_variables)`` (the update of one micro-batch:
#: accumulation, clipping, weight decay, the update step; on 3.8 also the ``_iterations`` increment, see
#: KERAS_GE_3_10), ``_backend_update_step(grads, trainable_variables, learning_rate)``,
#: ``_apply_weight_decay(variables)``, ``stateless_apply(optimizer_variables, grads, trainable_variables)``
#: (public; the JAX trainer's update).
PATCHED = {"apply_gradients": "_backend_apply_gradients", "update_step": "_backend_update_step",
           "weight_decay": "_apply_weight_decay", "stateless_apply": "stateless_apply"}


def optimizer_methods(optimizer: Any) -> dict[str, Callable[..., Any]]:
    """The bound methods of :data:`PATCHED` (an instance-level wrapper already there included), by role."""
    return {role: getattr(optimizer, name) for role, name in PATCHED.items()}


def wrap_optimizer(optimizer: Any, **wrappers: Callable[..., Any]) -> None:
    """Instance-level replacements of the :data:`PATCHED` methods, by role, bypassing Keras' attribute
    tracking (3.8, 3.15: the optimizer and the backend's trainer look the methods up on the instance)."""
    for role, wrapper in wrappers.items():
        object.__setattr__(optimizer, PATCHED[role], wrapper)


def optimizer_wrapped(optimizer: Any, role: str, funcs: Sequence[Callable[..., Any]]) -> bool:
    """Whether the method of ``role`` is an instance-level ``functools.partial`` of one of ``funcs``."""
    current = optimizer.__dict__.get(PATCHED[role])
    return isinstance(current, functools.partial) and current.func in funcs


def unwrap_optimizer(optimizer: Any, funcs: Sequence[Callable[..., Any]]) -> None:
    """Remove the instance-level methods that are ``functools.partial`` s of one of ``funcs`` (another
    wrapper stays)."""
    for role, name in PATCHED.items():
        if optimizer_wrapped(optimizer, role, funcs):
            object.__delattr__(optimizer, name)


# -- layers and models ---------------------------------------------------------------------------------------
def flatten_layers(layer: Any, include_self: bool = True, recursive: bool = True) -> list[Any]:
    """Every layer tracked inside ``layer``, nested ones and those held only as attributes included
    (``Layer._flatten_layers(include_self, recursive)``: 3.8, 3.15; the public ``layers`` lists only a
    model's direct layers)."""
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def layer_trainable_flag(layer: Any) -> bool:
    """A layer's own ``trainable`` flag, without the public setter's walk over its sublayers and
    variables (``Layer._trainable``: 3.8, 3.15)."""
    return bool(layer._trainable)


def set_layer_trainable_flag(layer: Any, value: bool) -> None:
    """Restore a layer's own flag read by :func:`layer_trainable_flag` (3.8, 3.15)."""
    layer._trainable = value


def own_weights(layer: Any) -> list[Any]:
    """The weights a layer holds itself, not through its sublayers (``_trainable_variables`` and
    ``_non_trainable_variables``; a layer with neither and no sublayers (``_layers``): its ``weights``;
    3.8, 3.15)."""
    own = list(getattr(layer, "_trainable_variables", None) or []) + \
        list(getattr(layer, "_non_trainable_variables", None) or [])
    if not own and not getattr(layer, "_layers", None):
        own = list(layer.weights)
    return own


def is_functional(model: Any) -> bool:
    """Whether ``model`` is a Functional model (a graph of layers: ``_nodes_by_depth``; the class
    ``keras.src.models.Functional`` has no public name: 3.8, 3.15)."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def strategy_of(model: Any) -> Any:
    """The ``tf.distribute`` strategy ``model`` was built under, or None (``_distribute_strategy``, set at
    construction when a strategy scope is active: 3.8, 3.15 TensorFlow trainer; the public
    ``distribute_strategy`` falls back to the default strategy, which cannot tell the two apart)."""
    return getattr(model, "_distribute_strategy", None)


def symbolic_build(model: Any, batch: Any) -> None:
    """Build the model's, metrics' and optimizer's variables from one batch, as ``fit`` does first
    (``Trainer._symbolic_build(data_batch=...)``; under a strategy the TensorFlow trainer's
    ``_maybe_symbolic_build``, which enters its scope: 3.8, 3.15)."""
    if strategy_of(model) is not None and hasattr(model, "_maybe_symbolic_build"):
        model._maybe_symbolic_build(data_batch=batch)
    else:
        model._symbolic_build(data_batch=batch)


def jax_trainable_set_changed(model: Any) -> None:
    """JAX: the trainable set changed inside ``fit`` (a stage). Before 3.12 the trainer's train step enforces
    the shardings it recorded at fit start, one per trainable variable then: they are recorded again
    (``_record_training_state_sharding_spec()``: 3.8); later releases derive them when the step is jitted."""
    if not KERAS_GE_3_12:
        model._record_training_state_sharding_spec()


def jax_state_held(model: Any) -> bool:
    """JAX: whether the model's variables are held in its train state now (``_jax_state``, set by the JAX
    trainer during ``fit`` and emptied by ``jax_state_sync()``: 3.15)."""
    return bool(getattr(model, "_jax_state", None))


# -- data and global state ----------------------------------------------------------------------------------
def data_adapter(x: Any, y: Any, sample_weight: Any, batch_size: int | None) -> Any:
    """The adapter ``fit`` makes of its data (``keras.src.trainers.data_adapters.get_data_adapter``, no public
    name; signature ``(x, y, sample_weight, batch_size, steps_per_epoch, shuffle, class_weight)``: 3.8, 3.15)."""
    from keras.src.trainers.data_adapters import get_data_adapter

    return get_data_adapter(x, y, sample_weight, batch_size=batch_size, shuffle=False)


def is_array_adapter(adapter: Any) -> bool:
    """Whether the adapter batches arrays with fit's ``batch_size`` (``ArrayDataAdapter``: 3.8, 3.15)."""
    return type(adapter).__name__ == "ArrayDataAdapter"


def fit_data(depth: int = 24) -> tuple[int | None, int | None]:
    """``(samples, batch size)`` of the arrays of the ``fit`` calling now, or ``(None, None)`` (a dataset or a
    generator, or no ``fit`` on the stack). Keras gives callbacks no handle on the data (3.8, 3.15): the
    trainer's ``fit`` frame holds ``epoch_iterator`` while it builds the callback list, whose
    ``data_adapter`` (an ``ArrayDataAdapter`` for arrays) keeps ``_num_samples`` and ``_batch_size``."""
    frame = sys._getframe(1)
    try:
        for _ in range(depth):
            if frame is None:
                break
            adapter = getattr(frame.f_locals.get("epoch_iterator"), "data_adapter", None)
            if adapter is not None:
                samples = getattr(adapter, "_num_samples", None)
                batch = getattr(adapter, "_batch_size", None) or getattr(adapter, "batch_size", None)
                return (int(samples) if isinstance(samples, int) else None,
                        int(batch) if isinstance(batch, int) else None)
            frame = frame.f_back
        return None, None
    finally:
        del frame


def fit_validates(depth: int = 24) -> bool | None:
    """Whether the ``fit`` calling now evaluates validation data, or None (no ``fit`` on the stack). Keras hands
    callbacks no such fact (3.8, 3.15): every backend's trainer ``fit`` frame holds ``validation_data`` (the
    argument, or what ``validation_split`` made of the arrays) beside ``epoch_iterator`` when it calls
    ``on_train_begin`` (checked in the TensorFlow, torch and JAX trainers of 3.8.0 and 3.15.1)."""
    frame = sys._getframe(1)
    try:
        for _ in range(depth):
            if frame is None:
                break
            names = frame.f_locals
            if "epoch_iterator" in names and "validation_data" in names:
                return names["validation_data"] is not None
            frame = frame.f_back
        return None
    finally:
        del frame


def global_seed_state() -> Any:
    """The state variable of Keras' global ``SeedGenerator`` (dropout without a seed draws from it), or None
    before one exists (``keras.src.backend.common.global_state``, attribute ``"global_seed_generator"``:
    3.8, 3.15)."""
    from keras.src.backend.common import global_state

    seeds = global_state.get_global_attribute("global_seed_generator")
    return None if seeds is None else seeds.state
