"""Layer groups of a Keras model: discovery, explicit selection, and trainable flags.

A *group* is an ordered tuple of layers that train (or stay frozen) together; groups are listed
bottom (input side) to top (the head), as the core plans expect.
"""
from __future__ import annotations

import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

from . import _seam

__all__ = ["Group", "discover_groups", "resolve_groups", "left_out_layers", "batch_norm_layers", "hold_inference",
           "release_inference"]


@dataclass(frozen=True, eq=False)
class Group:
    """One layer group: a display name and its layers."""

    name: str
    layers: tuple[Any, ...]

    @property
    def weights(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for layer in self.layers:
            for w in layer.weights:
                seen.setdefault(id(w), w)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"Group({self.name!r}, layers={[layer.name for layer in self.layers]})"


def _is_container(layer: Any) -> bool:
    return isinstance(layer, keras.Model) or (
        hasattr(layer, "layers") and isinstance(getattr(layer, "layers", None), list) and bool(layer.layers)
    )


def _weighted(layers: Sequence[Any]) -> list[Any]:
    return [layer for layer in layers if layer.weights]


def discover_groups(model: Any) -> list[Group]:
    """Default groups: every top-level layer that has weights, one group each, bottom to top.

    A top-level layer that is itself a model (a pretrained base such as
    ``keras.applications.MobileNetV2`` used inside a functional model) is opened: each of its own
    layers with weights becomes a group, so the plan can unfreeze the base from its top down.
    """
    groups: list[Group] = []
    for layer in _weighted(model.layers):
        if _is_container(layer) and len(_weighted(layer.layers)) > 1:
            groups.extend(Group(sub.name, (sub,)) for sub in _weighted(layer.layers))
        else:
            groups.append(Group(layer.name, (layer,)))
    if not groups:
        raise ValueError(f"groups: the model {model.name!r} has no layer with weights to group; build it first")
    return groups


def _all_layers(model: Any) -> list[Any]:
    """Every layer inside ``model``, nested ones included, in the order the models list them."""
    out: list[Any] = []
    seen: set[int] = set()

    def walk(container: Any) -> None:
        for layer in getattr(container, "layers", []) or []:
            if id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
                walk(layer)

    walk(model)
    for layer in _seam.flatten_layers(model, include_self=False):  # layers reachable only as attributes
        if id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def _match(model: Any, spec: Any, where: str, layers: list[Any]) -> list[Any]:
    if isinstance(spec, keras.layers.Layer):
        if not any(layer is spec for layer in layers):
            raise ValueError(f"{where}: layer {spec.name!r} is not part of the model {model.name!r}")
        return [spec]
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{where} must be a layer name, a regular expression, a Layer, or a list of those; "
                         f"got {spec!r}")
    exact = [layer for layer in layers if layer.name == spec]
    if exact:
        return exact
    try:
        pattern = re.compile(spec)
    except re.error as e:
        raise ValueError(f"{where}: {spec!r} is neither a layer name nor a valid regular expression ({e})") from None
    found = [layer for layer in layers if pattern.fullmatch(layer.name)]
    if not found:
        names = [layer.name for layer in layers]
        shown = ", ".join(repr(n) for n in names[:30]) + (", ..." if len(names) > 30 else "")
        raise ValueError(f"{where}: {spec!r} matches no layer of the model {model.name!r} (by name or as a regular "
                         f"expression over the whole name); change it to one of: {shown}")
    return found


def resolve_groups(model: Any, groups: Sequence[Any] | None) -> list[Group]:
    """Groups from ``groups`` (bottom to top) or, when None, :func:`discover_groups`.

    Each entry of ``groups`` is a layer name, a regular expression matched against whole layer
    names (nested layers included), a ``Layer``, or a list of those (one group of several layers).
    A layer may belong to one group only.
    """
    if groups is None:
        return discover_groups(model)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(f"groups must be a non-empty list of layer names / regexes / layers (bottom to top), "
                         f"or None to discover them; got {groups!r}")
    layers = _all_layers(model)
    out: list[Group] = []
    owner: dict[int, int] = {}
    for i, entry in enumerate(groups):
        specs = entry if isinstance(entry, (list, tuple)) else [entry]
        if not specs:
            raise ValueError(f"groups[{i}] must name at least one layer; got {entry!r}")
        members: list[Any] = []
        for j, spec in enumerate(specs):
            where = f"groups[{i}]" if not isinstance(entry, (list, tuple)) else f"groups[{i}][{j}]"
            for layer in _match(model, spec, where, layers):
                if id(layer) in owner and owner[id(layer)] != i:
                    raise ValueError(f"{where}: layer {layer.name!r} is already in groups[{owner[id(layer)]}]; "
                                     "a layer may belong to one group only")
                if id(layer) not in owner:
                    owner[id(layer)] = i
                    members.append(layer)
        if not any(layer.weights for layer in members):
            raise ValueError(f"groups[{i}] ({[layer.name for layer in members]}) has no weights; "
                             "build the model first or name layers that have weights")
        name = members[0].name if len(members) == 1 else (entry if isinstance(entry, str) else f"group{i}")
        out.append(Group(str(name), tuple(members)))
    return out


def left_out_layers(model: Any, groups: Sequence[Group]) -> list[str]:
    """The names of the layers of ``model`` (nested ones included) holding weights in none of
    ``groups``: ``groups=`` that leaves them out is refused (they would train in every stage)."""
    covered = {id(w) for g in groups for w in g.weights}
    return [layer.name for layer in _all_layers(model) if any(id(w) not in covered for w in _seam.own_weights(layer))]


def batch_norm_layers(layer: Any) -> list[Any]:
    """The BatchNormalization layers in ``layer`` (itself included)."""
    found = [sub for sub in _seam.flatten_layers(layer, include_self=True)
             if isinstance(sub, keras.layers.BatchNormalization)]
    return found


def _inference_call(self: Any, inputs: Any, training: Any = None, mask: Any = None) -> Any:
    return type(self).call(self, inputs, training=False, mask=mask)


def hold_inference(bn: Any) -> None:
    """Keep a BatchNormalization layer in inference mode whatever ``training`` and ``trainable``
    say (moving statistics used and kept), its ``gamma``/``beta`` still trainable: an
    instance-level ``call`` passing ``training=False``. Undone by :func:`release_inference`."""
    if "call" not in bn.__dict__:
        object.__setattr__(bn, "call", types.MethodType(_inference_call, bn))


def release_inference(bn: Any) -> None:
    """Undo :func:`hold_inference`."""
    call = bn.__dict__.get("call")
    if isinstance(call, types.MethodType) and call.__func__ is _inference_call:
        del bn.__dict__["call"]


def bn_affine(bn: Any) -> list[Any]:
    return [w for w in (getattr(bn, "gamma", None), getattr(bn, "beta", None)) if w is not None]


def set_group_trainable(group: Group, on: bool, bn_policy: str) -> None:
    """Freeze or unfreeze one group's layers under a BatchNorm policy (see ``hpcallbacks.BN_POLICIES``)."""
    for layer in group.layers:
        layer.trainable = on
        for bn in batch_norm_layers(layer):
            if bn_policy == "freeze_all":
                bn.trainable = False
            elif bn_policy == "train" and not on:
                # batch statistics and moving averages as in training; affine weights frozen
                bn.trainable = True
                for w in bn_affine(bn):
                    w.trainable = False
