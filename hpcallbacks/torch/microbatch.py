"""The largest micro-batch that fits (handbook H4): the torch probing of the adapters' ``MicroBatchFinder``.

The search itself is the core's :func:`hpcallbacks.batch.fit_micro_batch` (divisors of the target
batch per process, bisection, the accumulation that keeps the target exact). This module runs its
probes on a torch module and undoes them; Lightning and HF only say how to get a batch of ``n``
real samples and its loss, and how to take the minimum over processes:

* :func:`find_micro_batch` — the trial steps (forward + backward, optimizer step, forward +
  backward again: the second pass runs with the optimizer state and the gradients allocated, as
  every later step of the run does), with the widest trainable set a freeze plan reaches, then
  weights, buffers, optimizer state, gradients, ``requires_grad`` flags and RNG states put back
  bit-identically (:class:`hpcallbacks.torch.Snapshot`);
* :func:`is_out_of_memory` / :func:`free_memory` — what counts as "does not fit"
  (``torch.OutOfMemoryError``, and the ``RuntimeError`` messages of an allocation failure that
  accelerate's ``should_reduce_batch_size`` reads as out of memory; every other error is raised)
  and what is freed after it;
* :func:`batch_length` — the number of samples of a batch (the first tensor's first dimension);
* :func:`widest_trainable` — the parameters a :class:`hpcallbacks.FreezePlan` trains at some stage;
* :func:`with_batch_size` — a ``DataLoader`` like another one with a new batch size.
"""
from __future__ import annotations

import gc
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset

from hpcallbacks import batch as B
from hpcallbacks.plans import FreezePlan

from .groups import LayerGroup
from .snapshot import Snapshot

__all__ = ["find_micro_batch", "is_out_of_memory", "free_memory", "widest_trainable", "with_batch_size", "batch_length",
           "OUT_OF_MEMORY_MESSAGES"]

#: Probe outcomes, reduced with ``min`` over processes: one process's error or out-of-memory wins.
_ERROR, _OOM, _FITS = 0, 1, 2


#: Parts of a ``RuntimeError``'s message that mean an allocation failed: accelerate's ``should_reduce_batch_size``
#: list (1.16), which Lightning's ``is_oom_error`` shares for CUDA, cuDNN and CPU.
OUT_OF_MEMORY_MESSAGES = (
    " out of memory.",  # CUDA, HIP, XPU (torch.OutOfMemoryError's own message; older builds raise a RuntimeError)
    "MPS backend out of memory",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",  # cuDNN refusing a too large batch
    "DefaultCPUAllocator: can't allocate memory",
    "FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed",  # HPU
)


def is_out_of_memory(error: BaseException) -> bool:
    """True when ``error`` means "does not fit": ``torch.OutOfMemoryError`` (CUDA's, or one raised by an
    allocator-limited model), or a ``RuntimeError`` with one message argument holding one of
    :data:`OUT_OF_MEMORY_MESSAGES` (a CPU allocation failure, MPS, cuDNN, HPU), the rule of accelerate's
    ``should_reduce_batch_size``. Every other error (a ``MemoryError`` of Python, a bug) is not.

    >>> is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:116] . DefaultCPUAllocator: can't allocate "
    ...                               "memory: you tried to allocate 8589934592 bytes."))
    True
    >>> is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x8)"))
    False
    """
    if isinstance(error, torch.cuda.OutOfMemoryError):  # torch.OutOfMemoryError from torch 2.5 on, the same class
        return True
    return (isinstance(error, RuntimeError) and len(error.args) == 1 and isinstance(error.args[0], str)
            and any(message in error.args[0] for message in OUT_OF_MEMORY_MESSAGES))


def batch_length(batch: Any) -> int | None:
    """The samples of a batch: the first dimension of its first tensor (depth first through mappings, lists
    and tuples); None when it holds no tensor with a dimension.

    >>> batch_length((torch.zeros(8, 3), torch.zeros(8)))
    8
    >>> batch_length({"input_ids": torch.zeros(4, 16, dtype=torch.long)}), batch_length([1, 2])
    (4, None)
    """
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else None
    values = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        found = batch_length(value)
        if found is not None:
            return found
    return None


def free_memory() -> None:
    """Release what a failed probe held: ``gc.collect()`` and, when CUDA is in use, ``torch.cuda.empty_cache()``."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def widest_trainable(groups: Sequence[LayerGroup], plan: FreezePlan) -> list[torch.nn.Parameter]:
    """The parameters of every group that some stage of ``plan`` trains (the plan's widest trainable set)."""
    ever = plan.resolve(len(groups), steps_per_epoch=10**9).ever_trainable
    return [p for group, trains in zip(groups, ever, strict=True) if trains for p in group.params]


def with_batch_size(loader: Any, batch_size: int, who: str = "MicroBatchFinder") -> DataLoader:
    """A ``DataLoader`` like ``loader`` (data set, sampler, collate function, workers...) with ``batch_size``.

    Only a plain ``torch.utils.data.DataLoader`` with a fixed ``batch_size`` can be rebuilt; anything
    else is a ``ValueError`` (``who`` names the caller).
    """
    if type(loader) is not DataLoader or loader.batch_size is None or type(loader.batch_sampler) is not BatchSampler:
        raise ValueError(f"{who} sets the micro-batch by rebuilding the train DataLoader with another batch_size, "
                         f"which needs a plain torch DataLoader(batch_size=...); got {type(loader).__name__}"
                         f"{'' if getattr(loader, 'batch_size', None) else ' without a fixed batch_size'}")
    if batch_size == loader.batch_size:
        return loader
    accepted = inspect.signature(DataLoader.__init__).parameters
    kwargs = {name: getattr(loader, name) for name in (
        "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn", "multiprocessing_context",
        "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order")
        if name in accepted and hasattr(loader, name)}
    if not isinstance(loader.dataset, IterableDataset):
        kwargs["sampler"] = loader.sampler  # the same order (and, with a generator, the same shuffling)
    return DataLoader(loader.dataset, batch_size=batch_size, **kwargs)


def _outcome(probe: Callable[[int], bool], n: int) -> tuple[int, Exception | None]:
    try:
        return (_FITS if probe(n) else _OOM), None
    except Exception as e:  # raised after the processes agreed, so that none waits for the others forever
        return _ERROR, e


def find_micro_batch(target_batch_size: int, world_size: int, module: torch.nn.Module,
                     optimizers: Sequence[torch.optim.Optimizer], batch_of: Callable[[int], Any],
                     loss_of: Callable[[Any], torch.Tensor], *, max_micro_batch: int | None = None,
                     trainable: Iterable[torch.nn.Parameter] = (),
                     reduce_min: Callable[[int], int] | None = None) -> B.MicroBatch:
    """:func:`hpcallbacks.batch.fit_micro_batch` with trial steps on ``module``, undone afterwards.

    The probe of ``n``: ``batch = batch_of(n)`` (a batch of ``n`` real samples of this process),
    ``loss_of(batch).backward()``, a step of every optimizer, ``loss_of(batch).backward()`` again
    (with ``optimizers`` empty: one forward + backward); it does not fit when it raises an
    out-of-memory error (:func:`is_out_of_memory`; then :func:`free_memory`); any other error is raised. During the
    search the module is in training mode and ``trainable`` (e.g. :func:`widest_trainable`) has
    ``requires_grad=True``. ``reduce_min(code)``, the minimum over processes, makes every process
    take the same decision at every probe (a size fits only where it fits on every process; an
    error on one process stops all). Afterwards weights and buffers, optimizer state and
    hyperparameters, gradients, ``requires_grad`` flags, every submodule's training mode and the
    RNG states are as before, bit-identically.
    """
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    modes = [(m, m.training) for m in module.modules()]
    snapshot = Snapshot(module, optimizers)

    def zero_grad() -> None:
        for p in params:
            p.grad = None

    def step(n: int) -> None:
        zero_grad()
        try:
            batch = batch_of(n)
            with torch.enable_grad():
                loss_of(batch).backward()
                if optimizers:
                    for opt in optimizers:
                        opt.step()
                    loss_of(batch).backward()
        finally:
            zero_grad()  # also after an out-of-memory error, before the memory is freed

    probe = B.memory_probe(step, is_out_of_memory, free_memory)

    def fits(n: int) -> bool:
        code, error = _outcome(probe, n)
        agreed = code if reduce_min is None else int(reduce_min(code))
        if error is not None:
            raise error
        if agreed == _ERROR:
            raise RuntimeError(f"the probe of a micro-batch of {n} failed on another process; see its error")
        return agreed == _FITS

    try:
        for p in trainable:
            p.requires_grad_(True)
        module.train()
        return B.fit_micro_batch(target_batch_size, world_size, fits, max_micro_batch)
    finally:
        snapshot.restore()
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            m.training = mode
        free_memory()
