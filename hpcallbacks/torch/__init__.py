"""Torch mechanics shared by the torch adapters (Lightning, HuggingFace): modules, optimizers, norms.

Imports torch only (never a trainer). The adapters translate their framework's events into
these calls:

* :func:`discover_groups` -> :class:`LayerGroup` list, bottom to top;
* :func:`regroup_optimizer` once at fit start (every parameter in the optimizer from the
  beginning, one named param group per layer group x hyperparameter group, carrying its LR
  factor), :func:`regroup_lr_scheduler` for a torch scheduler built before it;
* :func:`set_group_lrs` per optimizer update (floats only), :func:`lr_writer` for the hot path;
* :func:`apply_trainable` when a plan's stage changes (``requires_grad`` + BatchNorm policy);
* :func:`swap_norms` / :class:`FrozenBatchNorm2d` before the optimizer and DDP exist;
* :class:`LARS`, a torch optimizer;
* :func:`add_instance_noise`, :func:`smooth_labels`, :func:`flip_labels`, :func:`gan_targets`: the core's
  GAN schedules on tensors, no host syncs;
* :func:`optimizer_kind`, :func:`dropout_rates`, :func:`kernel_sizes`, :func:`optimizer_values`: what
  the advisor reads;
* :func:`resolve_param_target` -> :class:`ParamTarget`: where a scheduled hyperparameter goes
  (param-group keys, module attributes), set per update with floats (:func:`resolve_param_targets`,
  :func:`set_params` for a ``ParamScheduler``'s schedules);
* :class:`Snapshot`, :func:`range_test`, :func:`rng_state`, :class:`Batches`: the LR range test's trial
  updates, undone bit-identically; :func:`set_base_lr` applies its suggestion.
"""
from __future__ import annotations

from .advice import DROPOUT_TYPES, as_float, dropout_rates, kernel_sizes, optimizer_kind, optimizer_values
from .freeze import apply_trainable, batch_norm_layers, frozen_batch_norms, hold_batch_norms, is_kept_eval, keep_eval
from .gan import add_instance_noise, flip_labels, flip_mask, gan_targets, smooth_labels
from .groups import BLOCK_LIST_NAMES, LayerGroup, discover_groups
from .lars import LARS
from .norms import FrozenBatchNorm2d, swap_norms
from .optim import LR_KEYS, lr_writer, param_group_index, regroup_lr_scheduler, regroup_optimizer, set_group_lrs
from .params import (
    OPTIMIZER_KEYS,
    ParamTarget,
    check_disjoint,
    check_param_schedules,
    resolve_param_target,
    resolve_param_targets,
    set_params,
)
from .snapshot import Batches, Snapshot, range_test, rng_state, set_base_lr, set_rng_state

__all__ = [
    "LayerGroup", "discover_groups", "BLOCK_LIST_NAMES",
    "regroup_optimizer", "regroup_lr_scheduler", "set_group_lrs", "lr_writer", "param_group_index", "LR_KEYS",
    "apply_trainable", "batch_norm_layers", "keep_eval", "is_kept_eval", "frozen_batch_norms", "hold_batch_norms",
    "swap_norms", "FrozenBatchNorm2d",
    "LARS",
    "add_instance_noise", "smooth_labels", "flip_mask", "flip_labels", "gan_targets",
    "optimizer_kind", "dropout_rates", "kernel_sizes", "DROPOUT_TYPES", "optimizer_values", "as_float",
    "ParamTarget", "resolve_param_target", "check_disjoint", "OPTIMIZER_KEYS",
    "resolve_param_targets", "check_param_schedules", "set_params",
    "Snapshot", "range_test", "rng_state", "set_rng_state", "Batches", "set_base_lr",
]
