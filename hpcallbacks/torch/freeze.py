"""Freezing and unfreezing layer groups by ``requires_grad``, with the plan's BatchNorm policy.

A frozen parameter (``requires_grad=False``) gets no gradient: autograd does not compute it and
backward stops below the lowest trainable group, so frozen stages save compute. The optimizer
skips parameters whose ``.grad`` is ``None``, so they are not updated (no weight decay, no
momentum) either.

BatchNorm policies (:data:`hpcallbacks.plans.BN_POLICIES`):

* ``"train"``: nothing special: a frozen group's BatchNorm still normalises with batch
  statistics and updates its running statistics in training mode (plain ``requires_grad``).
* ``"freeze_stats"``: a frozen group's BatchNorm layers stay in inference mode (running
  statistics used and kept) even when the trainer calls ``model.train()``: a forward pre-hook
  on those layers only, removed when the group unfreezes. Trainable groups pay nothing.
* ``"freeze_all"``: every BatchNorm layer of every group in inference mode, its affine weights
  frozen, also in trainable groups.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .groups import LayerGroup

__all__ = ["apply_trainable", "batch_norm_layers", "keep_eval", "is_kept_eval", "frozen_batch_norms",
           "hold_batch_norms"]

_HOOKS: weakref.WeakKeyDictionary[nn.Module, object] = weakref.WeakKeyDictionary()


def _eval_pre_hook(module: nn.Module, args: object) -> None:
    # Runs before each forward of a kept-in-eval BatchNorm: undo a model.train() from the trainer.
    if module.training:
        module.training = False


def batch_norm_layers(modules: Iterable[nn.Module]) -> list[nn.Module]:
    """The BatchNorm layers (``_BatchNorm``: 1d/2d/3d, SyncBatchNorm) in ``modules``, each once."""
    out: list[nn.Module] = []
    seen: set[int] = set()
    for root in modules:
        for m in root.modules():
            if isinstance(m, _BatchNorm) and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
    return out


def is_kept_eval(layer: nn.Module) -> bool:
    """Whether ``layer`` is held in inference mode by :func:`keep_eval`."""
    return layer in _HOOKS


def keep_eval(layers: Iterable[nn.Module], keep: bool = True, training: bool = True) -> None:
    """Hold ``layers`` in inference mode through ``model.train()`` calls (``keep=True``) or release them.

    A kept layer switches to inference mode at its next forward (its ``training`` flag is left
    alone until then, so a trainer's check of the modes at train start sees nothing unusual).
    Released layers get ``training`` (the mode of the model around them, normally True).
    """
    for layer in layers:
        handle = _HOOKS.get(layer)
        if keep:
            if handle is None:
                _HOOKS[layer] = layer.register_forward_pre_hook(_eval_pre_hook)
        elif handle is not None:
            handle.remove()  # type: ignore[attr-defined]
            del _HOOKS[layer]
            layer.training = training


def apply_trainable(groups: Sequence[LayerGroup], mask: Sequence[bool], bn: str = "freeze_stats",
                    training: bool | None = None) -> None:
    """Make group ``g`` trainable when ``mask[g]``, frozen otherwise, with the BatchNorm policy ``bn``.

    ``requires_grad`` of every parameter of the group follows the mask; a parameter that becomes
    frozen loses its ``.grad`` (so the optimizer does not keep moving it with a stale one).
    ``training`` is the mode to give BatchNorm layers released from inference mode (default:
    the mode of the group's outermost module). Costs nothing per step: call it when the mask
    changes.
    """
    if bn not in ("train", "freeze_stats", "freeze_all"):
        raise ValueError(f"bn must be one of 'train', 'freeze_stats', 'freeze_all'; got {bn!r}")
    if len(mask) != len(groups):
        raise ValueError(f"mask has {len(mask)} entries but there are {len(groups)} groups")
    for group, trainable in zip(groups, mask, strict=True):
        trainable = bool(trainable)
        for p in group.params:
            if p.requires_grad != trainable:
                p.requires_grad_(trainable)
            if not trainable and p.grad is not None:
                p.grad = None
        if bn == "train":
            continue
        layers = batch_norm_layers(group.modules)
        if not layers:
            continue
        if bn == "freeze_all":
            keep_eval(layers, True)
            for layer in layers:
                for p in layer.parameters(recurse=False):
                    p.requires_grad_(False)
                    p.grad = None
            continue
        mode = training if training is not None else (group.modules[0].training if group.modules else True)
        if group.modules and isinstance(group.modules[0], _BatchNorm) and training is None:
            mode = True
        keep_eval(layers, not trainable, training=mode)


def frozen_batch_norms(model: nn.Module, layers: Any, skip: Any, who: str = "FreezeBatchNorm") -> list[nn.Module]:
    """The BatchNorm layers ``FreezeBatchNorm(skip, layers=...)`` holds in ``model`` (Lightning and HF).

    ``layers``: ``None`` (the whole model) or module names / regexes / modules, read as one group of
    :func:`hpcallbacks.torch.discover_groups`; ``skip``: a :class:`hpcallbacks.norms.NormSwap` whose
    ``skips(name)`` says which layers stay out. None left is a ``ValueError`` naming the arguments.
    """
    from .groups import discover_groups

    roots = [model]
    if layers is not None:
        try:
            roots = list(discover_groups(model, [layers], rest="top")[0].modules)
        except ValueError as error:
            raise ValueError(f"{who}(layers={layers!r}): {error}") from None
    names = {id(m): n for n, m in model.named_modules()}
    found = [m for m in batch_norm_layers(roots) if skip.skips(names.get(id(m), "")) is None]
    if not found:
        raise ValueError(f"{who} found no BatchNorm layer to freeze in {type(model).__name__} (layers={layers!r}, "
                         f"skip={list(skip.skip)!r}); drop the callback or change them")
    return found


def hold_batch_norms(layers: Sequence[nn.Module], freeze_affine: bool) -> None:
    """``FreezeBatchNorm``'s hold: inference mode through ``model.train()``; ``freeze_affine`` also
    freezes each layer's weight and bias (no gradient, none kept)."""
    keep_eval(layers, True)
    if freeze_affine:
        for layer in layers:
            for p in layer.parameters(recurse=False):
                p.requires_grad_(False)
                p.grad = None
