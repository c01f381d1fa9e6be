"""Run a few trial updates and put everything back: what the torch adapters' ``LRFinder`` needs.

* :func:`rng_state` / :func:`set_rng_state` — torch (CPU and initialised CUDA), ``random`` and
  numpy generator states;
* :class:`Snapshot` — a module's weights and buffers, optimizers' per-parameter state and
  param-group hyperparameters, and the RNG states; :meth:`Snapshot.restore` puts them back
  bit-identically (parameters are copied in place, so optimizers and DDP keep their references;
  the optimizer state is kept by parameter, so it does not go through ``state_dict`` hooks);
* :func:`range_test` — the loop of the core's :class:`hpcallbacks.finder.RangeTest` on a torch
  optimizer: the LR of each test update (times each group's ``lr_factor``), ``accumulation``
  micro-batches per update, one loss read per update (it is not training);
* :class:`Batches` — a data loader's batches for the test, started again when they run out;
* :func:`set_base_lr` — a suggestion made the optimizer's learning rate (``apply=True``).
"""
from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from hpcallbacks.finder import RangeResult, RangeTest

from .optim import set_group_lrs

__all__ = ["rng_state", "set_rng_state", "Snapshot", "range_test", "Batches", "set_base_lr"]


def rng_state() -> dict[str, Any]:
    """The generator states of torch (CPU, and CUDA when initialised), ``random`` and numpy."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "random": random.getstate()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _copy_into(group: dict[str, Any], key: str, saved: Any) -> None:
    current = group.get(key)
    if isinstance(current, torch.Tensor) and isinstance(saved, torch.Tensor) and current.shape == saved.shape:
        current.copy_(saved)
    else:
        group[key] = copy.deepcopy(saved)


class Snapshot:
    """Weights, buffers, optimizer state and hyperparameters and RNG states, taken now; :meth:`restore` them.

    ``optimizers`` are torch optimizers (unwrap accelerate's ``AcceleratedOptimizer`` first).
    """

    def __init__(self, module: torch.nn.Module, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.module = module
        self.training = module.training
        self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.optimizers = list(optimizers)
        self.states = [{p: copy.deepcopy(s) for p, s in opt.state.items()} for opt in self.optimizers]
        self.hyper = [[copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in opt.param_groups]
                      for opt in self.optimizers]
        self.rng = rng_state()

    def restore(self) -> None:
        """Put everything back (bit-identical); gradients are cleared (``None``)."""
        self.module.load_state_dict(self.weights)
        for opt, state, hyper in zip(self.optimizers, self.states, self.hyper, strict=True):
            opt.state.clear()  # in place: wrappers (Lightning, accelerate) hold the same dict
            opt.state.update({p: copy.deepcopy(s) for p, s in state.items()})
            for group, saved in zip(opt.param_groups, hyper, strict=True):
                for key in [k for k in group if k != "params" and k not in saved]:
                    del group[key]
                for key, value in saved.items():
                    _copy_into(group, key, value)
            opt.zero_grad(set_to_none=True)
        set_rng_state(self.rng)
        self.module.train(self.training)


def range_test(test: RangeTest, optimizer: torch.optim.Optimizer, next_loss: Callable[[], torch.Tensor],
               accumulation: int = 1, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> RangeResult:
    """Run ``test`` on ``optimizer``: per test update ``t``, LR ``test.lr(t)`` (x ``lr_factor``), ``accumulation``
    calls of ``next_loss()`` (each a micro-batch's loss, back-propagated divided by ``accumulation``), one step.

    The mean loss of the update (``reduce``-d, e.g. averaged over ranks, so every rank stops alike)
    is read to the host once per update and recorded; the test stops when :meth:`RangeTest.record`
    says so. Does not restore anything: take a :class:`Snapshot` first.
    """
    for t in range(test.num_steps):
        set_group_lrs(optimizer, test.lr(t))
        optimizer.zero_grad(set_to_none=True)
        total = None
        for _ in range(accumulation):
            loss = next_loss()
            (loss / accumulation).backward()
            total = loss.detach() if total is None else total + loss.detach()
        optimizer.step()
        mean = total / accumulation  # type: ignore[operator]
        if reduce is not None:
            mean = reduce(mean)
        if test.record(float(mean)):
            break
    return test.result()


class Batches:
    """The batches of ``loader`` in order, started again when they run out; ``count`` taken so far."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.it: Any = iter(loader)
        self.count = 0

    def next(self) -> Any:
        """The next batch (a new pass over ``loader`` when it ran out)."""
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            batch = next(self.it)
        self.count += 1
        return batch

    def close(self) -> None:
        """End the iterator now (a generator, e.g. accelerate's ``DataLoaderShard``), not at interpreter exit."""
        it, self.it = self.it, None
        close = getattr(it, "close", None)
        if close is not None:
            close()


def set_base_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Make ``lr`` ``optimizer``'s learning rate: every param group's ``lr`` and ``initial_lr`` (when present)
    become ``lr * lr_factor`` (``fill_`` for tensors), its ``base_lr`` (when present) ``lr``."""
    for group in optimizer.param_groups:
        factor = group.get("lr_factor", 1.0)
        for key in ("lr", "initial_lr"):
            if key in group:
                if isinstance(group[key], torch.Tensor):
                    group[key].fill_(lr * factor)
                else:
                    group[key] = lr * factor
        if "base_lr" in group:
            group["base_lr"] = lr
