"""What the advisor (:mod:`hpcallbacks.advice`) needs to read from torch objects.

* :func:`optimizer_kind` — a torch optimizer as one of the core's :data:`hpcallbacks.advice.OPTIMIZERS`;
* :func:`dropout_rates` — the ``p`` of every enabled dropout layer;
* :func:`kernel_sizes` — the ``(rows, columns)`` of every ``Conv2d``;
* :func:`optimizer_values` — the arguments of :func:`hpcallbacks.advice.check` a torch optimizer
  holds (all but the learning rate); :func:`as_float` — a number or one-element tensor as a float.
"""
from __future__ import annotations

from typing import Any

import torch

from .lars import LARS

__all__ = ["optimizer_kind", "dropout_rates", "kernel_sizes", "DROPOUT_TYPES", "optimizer_values", "as_float"]

#: The torch dropout layers whose ``p`` is a dropout rate.
DROPOUT_TYPES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
                 torch.nn.FeatureAlphaDropout)


def optimizer_kind(optimizer: Any) -> str | None:
    """The core's name for ``optimizer``'s kind, or None when the handbook's table has no row for it.

    ``AdamW`` -> ``"adamw"``; ``Adam`` -> ``"adam"`` (``"adamw"`` with ``decoupled_weight_decay``);
    ``SGD`` and hpcallbacks ``LARS`` -> ``"nesterov"`` with ``nesterov=True``, else ``"sgd"`` (which
    :func:`hpcallbacks.advice.check` reads as SGD with momentum when a momentum > 0 is given).
    """
    groups = getattr(optimizer, "param_groups", None) or [{}]
    group = groups[0]
    if isinstance(optimizer, torch.optim.AdamW):
        return "adamw"
    if isinstance(optimizer, torch.optim.Adam):
        return "adamw" if group.get("decoupled_weight_decay") else "adam"
    if isinstance(optimizer, (torch.optim.SGD, LARS)):
        return "nesterov" if group.get("nesterov") else "sgd"
    return None


def dropout_rates(module: torch.nn.Module) -> list[float]:
    """``p`` of every dropout layer of ``module`` with ``p > 0`` (``p = 0`` is dropout switched off)."""
    return [float(m.p) for m in module.modules() if isinstance(m, DROPOUT_TYPES) and m.p > 0]


def kernel_sizes(module: torch.nn.Module) -> list[tuple[int, int]]:
    """``(rows, columns)`` of every ``Conv2d`` of ``module``."""
    return [(int(m.kernel_size[0]), int(m.kernel_size[1])) for m in module.modules()
            if isinstance(m, torch.nn.Conv2d)]


def as_float(value: Any) -> float:
    """``value`` as a Python float (``.item()`` of a tensor: a host read)."""
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def optimizer_values(optimizer: Any, kind: str) -> dict[str, Any]:
    """What :func:`hpcallbacks.advice.check` reads from ``optimizer`` of ``kind`` (:func:`optimizer_kind`),
    the learning rate aside: ``beta_1`` / ``beta_2`` / ``epsilon`` of Adam kinds, else ``momentum``,
    and the largest ``weight_decay`` of the param groups (each only when the optimizer has it)."""
    values: dict[str, Any] = {}
    group = optimizer.param_groups[0]
    if kind in ("adam", "adamw"):
        betas = group.get("betas")
        if betas is not None:
            values["beta_1"], values["beta_2"] = as_float(betas[0]), as_float(betas[1])
        if "eps" in group:
            values["epsilon"] = as_float(group["eps"])
    elif "momentum" in group:
        values["momentum"] = as_float(group["momentum"])
    decays = [as_float(g["weight_decay"]) for g in optimizer.param_groups if "weight_decay" in g]
    if decays:
        values["weight_decay"] = max(decays)
    return values
