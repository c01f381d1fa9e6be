"""BatchNorm swaps for torch modules (handbook H4, H6), planned by :class:`hpcallbacks.norms.NormSwap`.

Swap before the optimizer and DDP exist (Lightning: in ``setup``; HF: before the Trainer
builds its optimizer): a layer swapped afterwards has parameters the optimizer does not hold.
With ``reuse_params=True`` (the default) the GroupNorm keeps the BatchNorm's very
``weight``/``bias`` Parameter objects, so even an existing optimizer keeps training them.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["FrozenBatchNorm2d", "swap_norms"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine values (all buffers, no parameters).

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` over dimension 1, for
    inputs of any rank >= 2 (so it also replaces ``BatchNorm1d`` / ``BatchNorm3d``), the same
    numbers as the BatchNorm in eval mode. As in torchvision / detectron2.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batch_norm(cls, bn: _BatchNorm, eps: float | None = None) -> FrozenBatchNorm2d:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"a BatchNorm without running statistics (track_running_stats=False, "
                             f"{bn.num_features} features) cannot be frozen; skip it")
        frozen = cls(bn.num_features, bn.eps if eps is None else eps)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight.detach())
                frozen.bias.copy_(bn.bias.detach())
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen.to(bn.running_mean.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.reshape(shape).to(x.dtype) + shift.reshape(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _group_norm(bn: _BatchNorm, groups: int, eps: float | None, reuse_params: bool) -> nn.GroupNorm:
    gn = nn.GroupNorm(groups, bn.num_features, eps=bn.eps if eps is None else eps, affine=bn.affine)
    if bn.affine:
        if reuse_params:
            gn.weight = bn.weight
            gn.bias = bn.bias
        else:
            with torch.no_grad():
                gn.weight.copy_(bn.weight.detach())
                gn.bias.copy_(bn.bias.detach())
            gn.to(bn.weight.device)
    return gn


def _skip_entries(model: nn.Module, skip: Any) -> tuple[list[str], set[int]]:
    if isinstance(skip, (str, nn.Module)):
        skip = [skip]
    names: list[str] = []
    modules: set[int] = set()
    for entry in skip:
        if isinstance(entry, nn.Module):
            modules.update(id(m) for m in entry.modules())
        else:
            names.append(entry)
    return names, modules


def swap_norms(model: nn.Module, to: str = "group", skip: Iterable[Any] = (), groups: int | None = None,
               eps: float | None = None, reuse_params: bool = True) -> nn.Module:
    """Replace the BatchNorm layers of ``model`` in place; returns ``model`` (or the new layer
    when ``model`` itself is a BatchNorm).

    * ``to="group"``: ``nn.GroupNorm`` with :func:`hpcallbacks.norms.group_norm_groups` groups
      (or ``groups``), affine weights reused (``reuse_params=True``: the same Parameter objects)
      or copied;
    * ``to="frozen"``: :class:`FrozenBatchNorm2d` with the layer's statistics and affine values;
    * ``to="sync"``: ``nn.SyncBatchNorm`` via torch's ``convert_sync_batchnorm`` (same
      parameter objects and statistics).

    ``skip``: layer names, dotted prefixes, regular expressions (see
    :class:`hpcallbacks.norms.NormSwap`) or modules whose BatchNorm layers stay. Swap before
    the optimizer and DDP exist.
    """
    from hpcallbacks.norms import NormSwap

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch nn.Module; got {type(model).__name__}")
    skip_names, skip_modules = _skip_entries(model, skip)
    plan = NormSwap(to=to, skip=tuple(skip_names), groups=groups, eps=eps)
    if isinstance(model, _BatchNorm):
        return _swap_one("", model, plan, reuse_params)  # type: ignore[return-value]
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and id(m) not in skip_modules]
    for name, bn in targets:
        new = _swap_one(name, bn, plan, reuse_params)
        if new is bn:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def _swap_one(name: str, bn: _BatchNorm, plan: Any, reuse_params: bool) -> nn.Module:
    decision = plan.decide(name or "<model>", bn.num_features)
    if not decision.swap:
        return bn
    if decision.to == "group":
        new: nn.Module = _group_norm(bn, decision.groups, plan.eps, reuse_params)
    elif decision.to == "frozen":
        new = FrozenBatchNorm2d.from_batch_norm(bn, plan.eps)
    else:
        new = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
        if plan.eps is not None:
            new.eps = plan.eps
    new.train(bn.training)
    return new
