"""Where a scheduled hyperparameter goes in torch objects: optimizer param groups or a module attribute.

What every torch adapter's ``ParamScheduler`` resolves its names to (the core's
:class:`hpcallbacks.ParamSchedule` names a value; this finds it):

* :func:`resolve_param_target` ``(name, module, optimizers)`` -> :class:`ParamTarget`, with the
  allowed range of the value (momentum, betas, dampening, dropout in [0, 1]; eps, weight decay
  >= 0); ``ValueError`` naming ``name`` when nothing matches;
* :meth:`ParamTarget.set` per optimizer update: float assignments (``fill_`` for tensors, no
  host-device synchronisation);
* :meth:`ParamTarget.check_schedule` refuses a schedule that leaves the range during the run;
  :func:`check_disjoint` two names that set the same value;
* :func:`resolve_param_targets`, :func:`check_param_schedules`, :func:`set_params`: what every torch
  adapter's ``ParamScheduler`` does with its schedules, at fit start and per update.

Names: ``"optimizer.<key>"`` (every optimizer having it), ``"optimizer.<i>.<key>"``, the bare
keys of :data:`OPTIMIZER_KEYS`, ``"module.<path>"`` / ``"model.<path>"`` or any other dotted
attribute path of the module (digits index ``ModuleList`` / ``Sequential``; a path ending at a
dropout layer sets its ``p``; a bare ``"dropout"`` without such attribute sets every dropout
layer's ``p``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .advice import DROPOUT_TYPES
from .optim import LR_KEYS

__all__ = ["ParamTarget", "resolve_param_target", "check_disjoint", "OPTIMIZER_KEYS", "MODULE_PREFIXES",
           "resolve_param_targets", "check_param_schedules", "set_params"]

_OPTIMIZER_ALIASES = {"beta_1": ("betas", 0), "beta1": ("betas", 0), "beta_2": ("betas", 1), "beta2": ("betas", 1),
                      "epsilon": ("eps", None)}
#: Bare names that mean ``"optimizer.<name>"``.
OPTIMIZER_KEYS = ("momentum", "beta_1", "beta_2", "beta1", "beta2", "epsilon", "eps", "weight_decay", "dampening")
#: First path parts that name the module itself (``"module.head.dropout"``).
MODULE_PREFIXES = ("module", "model", "pl_module")
_UNIT_KEYS = ("momentum", "betas", "dampening")  # values in [0, 1]


class ParamTarget:
    """Where one scheduled value goes: optimizer param groups and/or attributes, and its allowed range."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.groups: list[tuple[Any, int, str, int | None]] = []  # (optimizer, group index, key, tuple index)
        self.attrs: list[tuple[Any, str]] = []  # (object, attribute)
        self.low, self.high = -math.inf, math.inf

    def set(self, value: float) -> None:
        """Write ``value`` everywhere this target points (floats; ``fill_`` for tensors)."""
        for opt, g, key, i in self.groups:
            group = opt.param_groups[g]
            if i is None:
                current = group[key]
                if isinstance(current, torch.Tensor):
                    current.fill_(value)
                else:
                    group[key] = value
            else:
                pair = group[key]
                if isinstance(pair[i], torch.Tensor):
                    pair[i].fill_(value)
                else:
                    group[key] = (value, pair[1]) if i == 0 else (pair[0], value)
        for obj, attr in self.attrs:
            current = getattr(obj, attr)
            if isinstance(current, torch.Tensor):
                current.fill_(value)
            else:
                setattr(obj, attr, value)

    def places(self) -> list[tuple[Any, ...]]:
        """Identities of the values this target writes (for :func:`check_disjoint`)."""
        return [(id(o), g, k, i) for o, g, k, i in self.groups] + [(id(o), a) for o, a in self.attrs]

    def check_schedule(self, param: Any, start: int, total: float, who: str = "ParamScheduler") -> None:
        """Refuse a :class:`hpcallbacks.ParamSchedule` whose values over updates ``start .. total`` leave the range.

        ``total`` may be ``inf`` (10,000 updates are checked then); at most 100,000 are checked.
        """
        if self.low == -math.inf and self.high == math.inf:
            return
        n = int(min(total, 100_000)) if total != math.inf else start + 10_000
        values = param.curve(max(0, n - start), start) or [param.value(start)]
        bad = next((v for v in values if not self.low <= v <= self.high), None)
        if bad is not None:
            raise ValueError(f"{who}: {param.name!r} must stay in [{self.low:g}, {self.high:g}] but its schedule "
                             f"{param.schedule!r} reaches {bad!r} in this run")


def check_disjoint(names: Sequence[str], targets: Sequence[ParamTarget], who: str = "ParamScheduler") -> None:
    """``ValueError`` when two names set the same value (``"momentum"`` and ``"optimizer.momentum"``)."""
    seen: dict[Any, str] = {}
    for name, target in zip(names, targets, strict=True):
        for where in target.places():
            if where in seen:
                raise ValueError(f"{who}: {name!r} and {seen[where]!r} set the same value; keep one")
            seen[where] = name


def _resolve_optimizer(name: str, key: str, index: int | None, optimizers: Sequence[Any], who: str,
                       optimizers_from: str) -> ParamTarget:
    if key in LR_KEYS or key in ("learning_rate",):
        raise ValueError(f"{who}: {name!r} is a learning rate; use LearningRateSchedule or a schedule "
                         "callback (CosineRestart(), ...) for it")
    if index is not None and not 0 <= index < len(optimizers):
        raise ValueError(f"{who}: {name!r} names optimizer {index} but {optimizers_from} {len(optimizers)}")
    target = ParamTarget(name)
    chosen = range(len(optimizers)) if index is None else [index]
    real, slot = _OPTIMIZER_ALIASES.get(key, (key, None))
    for o in chosen:
        opt = optimizers[o]
        for g, group in enumerate(opt.param_groups):
            k, i = real, slot
            if k == "momentum" and "momentum" not in group and "betas" in group:
                k, i = "betas", 0  # Adam-type: momentum is beta_1 (the 1cycle convention)
            if k not in group:
                continue
            if k == "weight_decay" and not group[k]:
                continue  # a no-decay group (biases, norms) stays without decay
            target.groups.append((opt, g, k, i))
    if not target.groups:
        known = sorted({k for opt in (optimizers[o] for o in chosen) for g in opt.param_groups for k in g
                        if k != "params" and isinstance(g[k], (int, float, tuple, torch.Tensor))
                        and not isinstance(g[k], bool)})
        kinds = ", ".join(type(optimizers[o]).__name__ for o in chosen)
        raise ValueError(f"{who}: {name!r}: no param group of {kinds} has {key!r}"
                         f"{' (or only groups without decay)' if real == 'weight_decay' else ''}; its numeric "
                         f"hyperparameters are {known} (beta_1/beta_2 name betas[0]/betas[1], epsilon is eps)")
    if real in _UNIT_KEYS:
        target.low, target.high = 0.0, 1.0
    elif real in ("eps", "weight_decay"):
        target.low = 0.0
    return target


def _resolve_attribute(name: str, path: list[str], module: Any, who: str, owner: str) -> ParamTarget:
    target = ParamTarget(name)
    obj = module
    for i, part in enumerate(path[:-1]):
        try:
            obj = obj[int(part)] if part.isdigit() and not hasattr(obj, part) else getattr(obj, part)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise ValueError(f"{who}: {name!r}: the {owner} has no {'.'.join(path[:i + 1])!r}") from None
    last = path[-1]
    value = getattr(obj, last, None)
    if isinstance(value, DROPOUT_TYPES):
        target.attrs.append((value, "p"))
        target.low, target.high = 0.0, 1.0
    elif isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        target.attrs.append((obj, last))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        target.attrs.append((obj, last))
        if isinstance(obj, DROPOUT_TYPES) and last == "p":
            target.low, target.high = 0.0, 1.0
    elif value is None and path == ["dropout"] and not hasattr(obj, "dropout"):
        layers = [m for m in module.modules() if isinstance(m, DROPOUT_TYPES)]
        if not layers:
            raise ValueError(f"{who}: 'dropout': the {owner} has no attribute dropout and no Dropout layer")
        target.attrs.extend((m, "p") for m in layers)
        target.low, target.high = 0.0, 1.0
    else:
        what = "no attribute" if not hasattr(obj, last) else f"a {type(value).__name__}, not a number"
        raise ValueError(f"{who}: {name!r}: {'.'.join(path)!r} of the {owner} is {what}; name a float attribute "
                         f"(or a Dropout layer, whose p is set), e.g. 'module.dropout.p'")
    return target


def resolve_param_target(name: str, module: Any, optimizers: Sequence[Any], *, who: str = "ParamScheduler",
                         owner: str = "module",
                         optimizers_from: str = "there are") -> ParamTarget:
    """The :class:`ParamTarget` of ``name`` (see the module docstring) in ``module`` and ``optimizers``.

    ``who`` starts every error message, ``owner`` names the module in it (``"LightningModule"``,
    ``"model"``) and ``optimizers_from`` says where the optimizers came from (``"... names
    optimizer 1 but <optimizers_from> 1"``).
    """
    parts = name.split(".")
    if parts[0] in ("optimizer", "optimizers"):
        rest = parts[1:]
        index = None
        if rest and rest[0].isdigit():
            index, rest = int(rest[0]), rest[1:]
        if len(rest) != 1:
            raise ValueError(f"{who}: {name!r} must look like 'optimizer.<key>' or 'optimizer.<i>.<key>' "
                             "(key: momentum, beta_1, beta_2, epsilon, weight_decay, ... of the param groups)")
        return _resolve_optimizer(name, rest[0], index, optimizers, who, optimizers_from)
    if parts[0] in MODULE_PREFIXES:
        if len(parts) < 2:
            raise ValueError(f"{who}: {name!r} must name an attribute path, e.g. 'module.dropout.p'")
        return _resolve_attribute(name, parts[1:], module, who, owner)
    if name in OPTIMIZER_KEYS:
        return _resolve_optimizer(name, name, None, optimizers, who, optimizers_from)
    return _resolve_attribute(name, parts, module, who, owner)


def resolve_param_targets(schedules: Sequence[Any], module: Any, optimizers: Sequence[Any], *,
                          who: str = "ParamScheduler", owner: str = "module",
                          optimizers_from: str = "there are") -> list[ParamTarget]:
    """The :class:`ParamTarget` of every :class:`hpcallbacks.ParamSchedule` in ``schedules`` (see
    :func:`resolve_param_target`), refusing two that set the same value (:func:`check_disjoint`)."""
    targets = [resolve_param_target(p.name, module, optimizers, who=who, owner=owner, optimizers_from=optimizers_from)
               for p in schedules]
    check_disjoint([p.name for p in schedules], targets, who)
    return targets


def check_param_schedules(schedules: Sequence[Any], targets: Sequence[ParamTarget], start: int, total: float,
                          who: str = "ParamScheduler") -> None:
    """:meth:`ParamTarget.check_schedule` of every schedule over updates ``start .. total``."""
    for p, t in zip(schedules, targets, strict=True):
        t.check_schedule(p, start, total, who)


def set_params(schedules: Sequence[Any], targets: Sequence[ParamTarget], step: int) -> list[float]:
    """Set every schedule's value at update ``step`` on its target; the values, in order (floats only)."""
    values = []
    for p, t in zip(schedules, targets, strict=True):
        value = p.schedule(step)
        t.set(value)
        values.append(value)
    return values
