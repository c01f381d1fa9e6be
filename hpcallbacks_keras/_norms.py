"""Norm-layer swaps for small batches (handbook H4, H6): BatchNorm -> GroupNorm or frozen BatchNorm.

A swap builds a *new* model: it cannot happen inside a running ``fit`` (the traced train step
and the optimizer hold the old layers' variables), so call :func:`swap_norms` before
``compile``; the returned model is not compiled. For freezing BatchNorm statistics during a fit
without a new model use the :class:`~hpcallbacks_keras.FreezeBatchNorm` callback.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import keras

from hpcallbacks.norms import NormSwap

from . import _seam
from ._engine import variable_scope

__all__ = ["FrozenBatchNormalization", "swap_norms", "layers_to_swap", "skip_entries", "unskipped"]


@keras.saving.register_keras_serializable(package="hpcallbacks")
class FrozenBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that always normalises with its moving statistics and never updates them.

    It stays in inference mode whatever ``trainable`` and ``training`` say. ``train_affine=False``
    (what :func:`swap_norms` ``to="frozen"`` builds) also fixes ``gamma``/``beta``: detectron2's /
    torchvision's ``FrozenBatchNorm2d``; ``train_affine=True`` keeps them trainable (the
    ``freeze_stats`` policy of ``hpcallbacks.BN_POLICIES`` as a layer).
    """

    def __init__(self, train_affine: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_affine = bool(train_affine)

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        if not self.train_affine:
            for w in (self.gamma, self.beta):
                if w is not None:
                    w.trainable = False

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        return super().call(inputs, training=False, mask=mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "train_affine": self.train_affine}


def skip_entries(skip: Any) -> tuple[list[str], set[int]]:
    """``skip`` checked: (its names / prefixes / regexes, the ids of its layers); ValueError otherwise."""
    names, layers = _entries(skip)
    NormSwap("frozen", skip=tuple(names))  # the core's checks of the names and regexes
    return names, layers


def unskipped(model: Any, layers: Sequence[Any], skip: Any) -> list[Any]:
    """``layers`` of ``model`` without those ``skip`` names (the rule of :func:`swap_norms`)."""
    names, skip_layers = _entries(skip)
    plan = NormSwap("frozen", skip=tuple(names))
    inside = {id(sub) for layer in _seam.flatten_layers(model, include_self=False) if id(layer) in skip_layers
              for sub in _seam.flatten_layers(layer, include_self=True)}
    paths = _dotted_paths(model)
    return [layer for layer in layers if not _skipped(plan, layer, skip_layers, inside, paths)]


def _entries(skip: Any) -> tuple[list[str], set[int]]:
    entries = (skip,) if isinstance(skip, (str, keras.layers.Layer)) else tuple(skip)
    names = [e for e in entries if isinstance(e, str)]
    layers = {id(e) for e in entries if isinstance(e, keras.layers.Layer)}
    bad = [e for e in entries if not isinstance(e, (str, keras.layers.Layer))]
    if bad:
        raise ValueError(f"skip entries must be layer names, prefixes, regular expressions or layers; got {bad[0]!r}")
    return names, layers


def _dotted_paths(model: Any) -> dict[int, list[str]]:
    """id(layer) -> its dotted paths inside ``model`` (``"base.bn1"`` for ``bn1`` of the nested model
    ``base``), as torch's ``named_modules`` names them; a layer reached several ways has several."""
    out: dict[int, list[str]] = {}

    def walk(container: Any, prefix: str, above: frozenset[int]) -> None:
        for layer in _seam.flatten_layers(container, include_self=False, recursive=False):
            if id(layer) in above:
                continue
            path = prefix + layer.name
            out.setdefault(id(layer), []).append(path)
            walk(layer, path + ".", above | {id(layer)})

    walk(model, "", frozenset({id(model)}))
    return out


def _skipped(plan: NormSwap, layer: Any, skip_layers: set[int], inside: set[int],
             paths: dict[int, list[str]] | None = None) -> bool:
    if id(layer) in skip_layers or id(layer) in inside:
        return True
    dotted = [getattr(layer, "path", layer.name).replace("/", "."), *(paths or {}).get(id(layer), ())]
    return plan.skips(layer.name) is not None or any(plan.skips(d) is not None for d in dotted)


def _channels(bn: Any) -> int:
    ref = bn.gamma if bn.gamma is not None else bn.moving_mean
    return int(ref.shape[0])


def layers_to_swap(model: Any, to: str = "group", skip: Sequence[Any] = (), groups: int | None = None,
                   eps: float | None = None) -> list[Any]:
    """The BatchNormalization layers of ``model`` that :func:`swap_norms` would replace."""
    names, skip_layers = _entries(skip)
    plan = NormSwap(to=to, skip=tuple(names), groups=groups, eps=eps)
    inside = {id(sub) for layer in _seam.flatten_layers(model, include_self=False) if id(layer) in skip_layers
              for sub in _seam.flatten_layers(layer, include_self=True)}
    paths = _dotted_paths(model)
    return [layer for layer in _seam.flatten_layers(model, include_self=False)
            if _swappable(layer, to) and not _skipped(plan, layer, skip_layers, inside, paths)]


def _swappable(layer: Any, to: str) -> bool:
    if not isinstance(layer, keras.layers.BatchNormalization) or isinstance(layer, FrozenBatchNormalization):
        return False
    return not (to == "sync" and getattr(layer, "synchronized", False))


def swap_norms(model: Any, to: str = "group", skip: Sequence[Any] = (), groups: int | None = None,
               eps: float | None = None) -> Any:
    """A copy of ``model`` with its BatchNormalization layers replaced; every weight copied.

    Same arguments and decisions as :func:`hpcallbacks.torch.swap_norms` (the core's
    :class:`hpcallbacks.norms.NormSwap`):

    * ``to="group"``: ``GroupNormalization`` with :func:`hpcallbacks.norms.group_norm_groups`
      groups (or ``groups``), the same axis, center and scale; ``gamma``/``beta`` copied, the
      moving statistics dropped (GroupNorm has none);
    * ``to="frozen"``: :class:`FrozenBatchNormalization` (statistics and affine weights fixed,
      detectron2's ``FrozenBatchNorm2d``), all four weights copied;
    * ``to="sync"``: ``BatchNormalization(synchronized=True)`` (statistics over all replicas of a
      ``tf.distribute`` strategy), all four weights copied.

    ``skip``: layer names, dotted path prefixes (``"base"`` skips every BatchNorm inside the
    nested model ``base``), regular expressions over whole names, or layers (a layer skips what it
    contains). ``eps``: the new layers' epsilon (default: each replaced layer's own).

    Works for Sequential and Functional models, nested ones included (not subclassed ones). The
    result is a new, uncompiled model: compile it (a fresh optimizer) before fit. A swap cannot
    happen inside a running ``fit`` (the traced train step and the optimizer hold the old layers'
    variables). Keras 3.15's ``clone_model(clone_function=...)`` alone fails on Functional models
    ("unexpected keyword argument 'mask'": the call arguments recorded for the BatchNorm node are
    replayed on the new layer), so they are filtered to what the new layer's ``call`` accepts.
    """
    names, skip_layers = _entries(skip)
    plan = NormSwap(to=to, skip=tuple(names), groups=groups, eps=eps)
    if not isinstance(model, keras.Sequential) and not _seam.is_functional(model):
        raise ValueError(f"model must be a Sequential or Functional Keras model (a subclassed model has no graph "
                         f"to rewrite: replace its layers in its own code); got {type(model).__name__}")
    if not model.built:
        raise ValueError("model must be built (call it on data or give it an Input) before swap_norms")
    targets = {id(layer) for layer in layers_to_swap(model, to, skip, groups, eps)}
    pairs: list[tuple[Any, Any]] = []

    def clone(layer: Any) -> Any:
        new = None
        if id(layer) in targets:
            decision = plan.decide(layer.name, _channels(layer))
            config = layer.get_config()
            epsilon = plan.eps if plan.eps is not None else layer.epsilon
            if decision.to == "group":
                axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
                new = keras.layers.GroupNormalization(
                    groups=decision.groups, axis=axis, epsilon=epsilon, center=layer.center, scale=layer.scale,
                    name=layer.name, trainable=layer.trainable, dtype=layer.dtype_policy)
            elif decision.to == "frozen":
                config = {k: v for k, v in config.items() if k != "synchronized"}
                new = FrozenBatchNormalization(train_affine=False, **{**config, "epsilon": epsilon})
            else:
                new = keras.layers.BatchNormalization(**{**config, "epsilon": epsilon, "synchronized": True})
        if new is None:
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            accepted = inspect.signature(layer.call).parameters
        except (TypeError, ValueError):
            return layer(*args, **kwargs)
        if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return layer(*args, **kwargs)

    extra = {} if isinstance(model, keras.Sequential) else {"call_function": call}
    # under a tf.distribute strategy the copy's variables are made in the strategy's scope, whether or
    # not the caller is inside it (so fit and a synchronised BatchNorm see the model's replicas)
    with variable_scope(model):
        new_model = keras.models.clone_model(model, clone_function=clone, recursive=True, **extra)
        for old, new in pairs:
            if not old.weights:
                continue
            if isinstance(old, keras.layers.BatchNormalization) and isinstance(new, keras.layers.GroupNormalization):
                if old.gamma is not None:
                    new.gamma.assign(old.gamma)
                if old.beta is not None:
                    new.beta.assign(old.beta)
            else:
                new.set_weights(old.get_weights())
    return new_model
