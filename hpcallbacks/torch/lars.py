"""LARS (You et al. 2017) as a torch optimizer: SGD with momentum and a layer-wise trust ratio.

Per parameter tensor ``w`` with gradient ``g`` (the formula of
:func:`hpcallbacks.batch.lars_trust_ratio`, computed with tensor ops, no host sync)::

    ratio = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
    ratio = min(ratio / lr, 1)                                                  (clip=True: LARC)
    d     = (g + weight_decay * w) * ratio
    buf   = momentum * buf + d
    w    -= lr * (d + momentum * buf if nesterov else buf)

Bias and normalisation parameters (``ndim <= 1``) are excluded by default
(``exclude_bias_and_norm=True``): no trust ratio and no weight decay, plain momentum SGD, as in
the LARS recipes for large-batch ImageNet. A param group may set ``"lars_exclude": True/False``
to decide for its parameters.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["LARS"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling over SGD with momentum (handbook H4: large batches)."""

    def __init__(self, params: Iterable[Any], lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, nesterov: bool = False, clip: bool = False,
                 exclude_bias_and_norm: bool = True) -> None:
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr must be a number >= 0; got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
        if trust_coefficient <= 0:
            raise ValueError(f"trust_coefficient must be > 0; got {trust_coefficient!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0; got {eps!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, nesterov=nesterov, clip=clip, exclude_bias_and_norm=exclude_bias_and_norm)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            decay = group["weight_decay"]
            trust = group["trust_coefficient"]
            eps = group["eps"]
            exclude_group = group.get("lars_exclude")
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                exclude = exclude_group if exclude_group is not None else (
                    group["exclude_bias_and_norm"] and p.ndim <= 1)
                if exclude:
                    d = g
                else:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    ratio = trust * w_norm / (g_norm + decay * w_norm + eps)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                    if group["clip"] and lr > 0:
                        ratio = torch.clamp(ratio / lr, max=1.0)
                    d = g.add(p, alpha=decay) if decay else g.clone()
                    d.mul_(ratio)
                if momentum:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(momentum).add_(d)
                    d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d, alpha=-lr)
        return loss
