"""What the advisor (:mod:`hpcallbacks.advice`) needs to read from torch objects.

* :func:`optimizer_kind` — a torch optimizer as one of the core's :data:`hpcallbacks.advice.OPTIMIZERS`;
* :func:`dropout_rates` — the ``p`` of every enabled dropout layer;
* :func:`kernel_sizes` — the ``(rows, columns)`` of every ``Conv2d``.
"""
from __future__ import annotations

from typing import Any

import torch

from .lars import LARS

__all__ = ["optimizer_kind", "dropout_rates", "kernel_sizes", "DROPOUT_TYPES"]

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
