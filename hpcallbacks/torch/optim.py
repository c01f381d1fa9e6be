"""Optimizer param-group surgery done once at fit start, and per-update LR setting.

:func:`regroup_optimizer` splits the optimizer's parameter groups by layer group, so every layer
group has its own learning rate (``base_lr * lr_factor``) and name, and every parameter any
stage will train is in the optimizer from the start: no parameter group is ever added while
training runs (that is what breaks torch LR schedulers and DDP in Lightning's
``BackboneFinetuning``). :func:`regroup_lr_scheduler` brings a torch LR scheduler built on the
old groups in line with the new ones. :func:`set_group_lrs` is the per-update hot path: a few
float assignments.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .groups import LayerGroup

__all__ = [
    "regroup_optimizer",
    "regroup_lr_scheduler",
    "set_group_lrs",
    "param_group_index",
    "LR_KEYS",
]

#: Param-group keys holding learning rates: scaled by the layer group's factor when regrouping
#: (``initial_lr`` is set by torch LR schedulers, ``max_lr`` / ``min_lr`` by ``OneCycleLR``).
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")

# Per-param-group lists kept by torch's LR schedulers: learning rates (scaled by the factor) ...
_SCHEDULER_LR_LISTS = ("base_lrs", "_last_lr", "max_lrs", "min_lrs")
# ... and other per-group values (copied from the source group).
_SCHEDULER_LISTS = ("lr_lambdas", "base_momentums", "max_momentums")

_SOURCE_COUNT = "_hpcallbacks_source_groups"


def _scale(value: Any, factor: float) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone().mul_(factor)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * factor
    return value


def _default_source(param: torch.nn.Parameter, hyper: list[dict[str, Any]]) -> int:
    """The hyperparameter group of a parameter the optimizer did not hold (frozen when it was built)."""
    if len(hyper) == 2 and param.ndim <= 1:
        decays = [h.get("weight_decay", None) for h in hyper]
        if all(isinstance(d, (int, float)) for d in decays) and sorted(d == 0 for d in decays) == [False, True]:
            return decays.index(0) if 0 in decays else decays.index(0.0)
    return 0


def regroup_optimizer(optimizer: torch.optim.Optimizer, groups: Sequence[LayerGroup],
                      factors: Sequence[float]) -> None:
    """One param group per (layer group x existing hyperparameter group), named and carrying its factor.

    Call once at fit start, before a torch LR scheduler steps (fix an existing one with
    :func:`regroup_lr_scheduler`). Afterwards:

    * every parameter of every layer group is in the optimizer, also those that were
      ``requires_grad=False`` when the optimizer was built: they join the first hyperparameter
      group (or, when there are exactly two groups and one has ``weight_decay == 0`` while the
      other does not, a bias / norm parameter (``ndim <= 1``) joins the no-decay one);
    * param group ``k`` holds the parameters of layer group ``g`` that were in hyperparameter
      group ``h``, ordered bottom to top then by ``h``, with the hyperparameters of ``h`` and the
      keys ``"name"`` (the layer group's name; with several hyperparameter groups,
      ``"<name>/<h's name or pgH>"``), ``"lr_factor"`` (``factors[g]``), ``"base_lr"`` (``h``'s
      learning rate) and ``"hp_group"`` (``h``); ``lr``, ``initial_lr``, ``max_lr``, ``min_lr``
      are ``h``'s values times the factor;
    * parameters of the optimizer in no layer group keep their hyperparameter group, last, named
      after it (``"other"`` when unnamed), factor 1;
    * the optimizer's state (momentum buffers, Adam moments) is untouched: it is keyed by
      parameter.

    No parameter group is ever added after this, so LR schedulers, DDP and checkpoints see one
    fixed structure for the whole run.
    """
    groups = list(groups)
    factors = tuple(float(f) for f in factors)
    if not groups:
        raise ValueError("groups must hold at least one LayerGroup; got []")
    if len(factors) != len(groups):
        raise ValueError(f"factors must have one entry per group ({len(groups)}); got {len(factors)}")
    if any(f <= 0 or f != f for f in factors):
        raise ValueError(f"factors must be positive; got {list(factors)!r}")
    if getattr(optimizer, _SOURCE_COUNT, None) is not None:
        raise ValueError("optimizer was already regrouped by regroup_optimizer; build a new optimizer for a new fit")
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    source: dict[int, int] = {}
    for h, g in enumerate(optimizer.param_groups):
        for p in g["params"]:
            source[id(p)] = h
    if not hyper:
        raise ValueError("optimizer has no parameter groups")
    in_layer_groups: set[int] = set()
    many = len(hyper) > 1
    new_groups: list[dict[str, Any]] = []
    for layer, factor in zip(groups, factors, strict=True):
        per_source: dict[int, list[torch.nn.Parameter]] = {}
        for p in layer.params:
            if id(p) in in_layer_groups:
                raise ValueError(f"a parameter of group {layer.name!r} is also in an earlier group; "
                                 "groups must be disjoint (use discover_groups)")
            in_layer_groups.add(id(p))
            h = source.get(id(p))
            if h is None:
                h = _default_source(p, hyper)
            per_source.setdefault(h, []).append(p)
        for h in sorted(per_source):
            entry = {k: _scale(v, factor) if k in LR_KEYS else v for k, v in hyper[h].items()}
            label = hyper[h].get("name", f"pg{h}")
            entry.update(params=per_source[h], name=f"{layer.name}/{label}" if many else layer.name,
                         lr_factor=factor, base_lr=_as_float(hyper[h]["lr"]), hp_group=h)
            new_groups.append(entry)
    for h, g in enumerate(optimizer.param_groups):
        rest = [p for p in g["params"] if id(p) not in in_layer_groups]
        if rest:
            entry = dict(hyper[h])
            entry.update(params=rest, name=hyper[h].get("name", f"other/pg{h}" if many else "other"),
                         lr_factor=1.0, base_lr=_as_float(hyper[h]["lr"]), hp_group=h)
            new_groups.append(entry)
    names = [e["name"] for e in new_groups]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"layer group names must be unique in the optimizer; {dup} repeat (rename the groups)")
    optimizer.param_groups.clear()
    for entry in new_groups:
        optimizer.add_param_group(entry)
    setattr(optimizer, _SOURCE_COUNT, len(hyper))


def _as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def regroup_lr_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """Expand a torch LR scheduler's per-group lists to the groups made by :func:`regroup_optimizer`.

    A scheduler built on the old groups keeps one entry per old group (``base_lrs``,
    ``lr_lambdas``, ``min_lrs``, ``max_lrs``, ``base_momentums``, ...); after the regroup each new
    group takes the entry of its source group (``"hp_group"``), learning rates times the group's
    ``lr_factor``. So ``LambdaLR``, ``OneCycleLR``, ``CyclicLR``, ``ReduceLROnPlateau``,
    ``SequentialLR`` and the rest keep running, the layer factors composing with the schedule.
    Idempotent; a scheduler of another optimizer is left alone.
    """
    count = getattr(optimizer, _SOURCE_COUNT, None)
    if count is None or getattr(scheduler, "optimizer", optimizer) is not optimizer:
        return
    if getattr(scheduler, "_hpcallbacks_regrouped", False):
        return
    groups = optimizer.param_groups
    for sub in getattr(scheduler, "_schedulers", None) or ():
        regroup_lr_scheduler(sub, optimizer)
    for attr in _SCHEDULER_LR_LISTS + _SCHEDULER_LISTS:
        values = getattr(scheduler, attr, None)
        if not isinstance(values, (list, tuple)):
            continue
        if len(values) != count:
            raise ValueError(
                f"{type(scheduler).__name__}.{attr} has {len(values)} entries but the optimizer had {count} "
                "parameter groups when it was regrouped; build the LR scheduler on the same optimizer")
        scale = attr in _SCHEDULER_LR_LISTS
        expanded = [_scale(values[g["hp_group"]], g["lr_factor"]) if scale else values[g["hp_group"]]
                    for g in groups]
        setattr(scheduler, attr, type(values)(expanded) if isinstance(values, tuple) else expanded)
    scheduler._hpcallbacks_regrouped = True


def set_group_lrs(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's learning rate to ``lr * group["lr_factor"]`` (factor 1 when absent).

    Python floats only: no tensor op, no host-device synchronisation (a group whose ``lr`` is a
    tensor, as for capturable/fused optimizers, gets an in-place ``fill_``).
    """
    for group in optimizer.param_groups:
        value = lr * group.get("lr_factor", 1.0)
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


def lr_writer(optimizers: Sequence[torch.optim.Optimizer]) -> Callable[[float], None]:
    """``write(lr)``: :func:`set_group_lrs` on every optimizer, with the groups and factors read once.

    For the per-update hot path: the param groups and their ``lr_factor`` are looked up when the
    writer is made, so a write is one multiplication and one store per group. Make a new writer
    when the param groups change (a regrouped optimizer, a new run).
    """
    groups = [g for opt in optimizers for g in opt.param_groups]
    if any(isinstance(g["lr"], torch.Tensor) for g in groups):  # capturable/fused: in-place fills
        def write_tensors(lr: float) -> None:
            for opt in optimizers:
                set_group_lrs(opt, lr)
        return write_tensors
    pairs = [(g, float(g.get("lr_factor", 1.0))) for g in groups]

    def write(lr: float) -> None:
        for group, factor in pairs:
            group["lr"] = lr * factor
    return write


def param_group_index(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter) -> int:
    """Index of the param group holding ``param``; ``ValueError`` when none does."""
    for i, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            if p is param:
                return i
    raise ValueError("param is in no parameter group of the optimizer")
