"""The learning-rate range test (Smith 2017) for Keras 3, by the core's :mod:`hpcallbacks.finder`.

Why a method to call before ``fit`` rather than a test inside ``fit``: Keras 3 gives callbacks the
model and ``params`` (epochs, steps, verbose) but not the data. ``fit`` keeps its epoch iterator in
a local variable (``keras/src/trainers/trainer.py`` and the TF / torch trainers), so a callback
that ran trial updates at ``on_train_begin`` would have no batches to run them on, and one that
took its batches from the run's own iterator (by wrapping ``model.train_function``) would shift
the run's data by ``num_steps`` batches and, on TensorFlow, could not give them back (a
``tf.data`` iterator does not rewind). So the test runs in :meth:`LRFinder.run` on data passed to
it, and the callback's part in ``fit`` is to refuse a finder that has not run and to make its
suggestion the run's learning rate (``apply=True``).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from hpcallbacks import _checks as check
from hpcallbacks import finder as F

from . import _seam
from ._engine import Engine, _fill_lr, _lr_is_variable, inner_optimizer, lr_variable, micro_count

__all__ = ["LRFinder"]

log = logging.getLogger("hpcallbacks")
_BACKEND = _seam.BACKEND


class LRFinder(F.FinderBase, keras.callbacks.Callback):
    """The learning-rate range test (Smith 2017) before training, by the core's :mod:`hpcallbacks.finder`.

    The same arguments, in the same order, and the same rule as Lightning's and HF's ``LRFinder``
    (the core decides the learning-rate ramp, the smoothing, the divergence stop and the
    suggestion; this class only runs trial updates and feeds it their losses). Keras 3 does not
    give callbacks fit's data (see the module docstring), so the test is a call before ``fit``::

        finder = LRFinder(apply=True)
        finder.run(model, x, y, batch_size=32)     # .suggestion, .result; the model is as it was
        model.fit(x, y, batch_size=32, callbacks=[finder, CosineDecay()])   # decays from the suggestion

    :meth:`run` trains ``num_steps`` optimizer updates through the model's own compiled train
    function (its ``train_step``, loss, ``jit_compile``, ``LossScaleOptimizer``; one micro-batch per
    call whatever ``steps_per_execution``), each update of ``gradient_accumulation_steps``
    micro-batches (the first one starting afresh if the optimizer stopped inside an accumulation), on
    the batches of ``x`` / ``y`` / ``sample_weight`` in order (any data ``fit``
    takes; cycled when they run out). The learning rate of update ``t`` is
    :func:`hpcallbacks.finder.lr_range` (``min_lr`` .. ``max_lr``, ``mode="exponential"`` or
    ``"linear"``), written to the optimizer's learning-rate variable before the update (a host
    write). The update's loss is the ``"loss"`` the train step logs (the mean over its
    micro-batches, weighted by batch size): the one device value read per trial update, which
    the core needs to decide when to stop (the test is not training). It stops early when the
    smoothed loss (``beta``) exceeds ``divergence`` x its best. Then every variable of the model
    (weights, non-trainable state, dropout seed generators), its metrics and its optimizer
    (``iterations``, learning rate, slots, accumulators, loss scale) is put back bit-identically
    from device-side copies, and the global RNG states (Python, numpy, torch on the torch
    backend, Keras' global seed generator), so a later ``fit`` goes as if the test had not
    happened. The model must be compiled with an optimizer whose learning rate is a float (a
    Keras schedule object cannot be set).

    ``.suggestion`` is the suggested LR (:func:`hpcallbacks.finder.suggest`: ``method="steepest"``
    or ``"min_loss"``, ``skip_start`` / ``skip_end``), ``.result`` the LRs and losses
    (:class:`hpcallbacks.finder.RangeResult`; ``result.get_config()`` is plain JSON, and a result
    assigned back to ``.result`` serves a later process). ``plot``: a path for the picture
    (matplotlib). ``apply=True`` makes the suggestion the run's learning rate, through the engine
    of the hpcallbacks Keras callbacks: the optimizer's learning-rate variable and the rate the
    schedule callbacks default to (``CosineDecay()`` then decays from it), set by :meth:`run` and
    again when the finder is in a ``fit``'s callbacks (so a recompiled optimizer gets it too).

    In ``fit`` (``callbacks=[finder, ...]``) a finder that has not run is refused (``ValueError``
    before the first update). Differences from the torch adapters: the test runs outside ``fit``
    (no callback of the fit sees it), so ``DiscriminativeLR`` factors and ``StagedUnfreeze`` do
    not apply during it (one learning rate for every variable trainable when it runs); under
    ``tf.distribute`` each replica runs the whole trial batch (as ``train_on_batch`` does).
    Tested on the TensorFlow and torch backends; on other backends each micro-batch goes through
    ``train_on_batch`` (one loss read per micro-batch).

    A test cut short (a nan or inf loss, or a divergence before the suggestion rule had its points:
    :attr:`hpcallbacks.finder.RangeResult.cut_short`) warns once, in :meth:`run`, with a
    :class:`hpcallbacks.advice.HyperparameterWarning` saying what to change; ``apply=True`` still
    applies its suggestion.
    """

    def __init__(self, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100, mode: str = "exponential",
                 method: str = "steepest", beta: float = 0.98, divergence: float = 4.0, skip_start: int = 10,
                 skip_end: int = 5, plot: str | Path | None = None, apply: bool = False) -> None:
        super().__init__()
        self._init_finder(min_lr, max_lr, num_steps, mode, method, beta, divergence, skip_start, skip_end, plot)
        self.apply = check.boolean("apply", apply)

    # -- the test --------------------------------------------------------------------------------
    def run(self, model: Any, x: Any, y: Any = None, batch_size: int | None = None,
            sample_weight: Any = None) -> F.RangeResult:
        """Run the range test on ``model`` with the batches of ``x`` (as ``fit`` takes them); return ``.result``.

        The model and its optimizer are restored bit-identically afterwards; with ``apply=True``
        the suggestion becomes the optimizer's learning rate.
        """
        opt = _checked_optimizer(model)
        if batch_size is not None:
            batch_size = check.positive_int("batch_size", batch_size)
        batches = _Batches(x, y, sample_weight, batch_size)
        first = batches.peek()
        _build(model, first)
        acc = max(1, int(getattr(opt, "gradient_accumulation_steps", None) or 1))
        step = _step_function(model)
        snapshot = _Snapshot(model)
        test = self._new_test()
        was_training = getattr(model, "training", None)
        try:
            _align(opt, acc)
            if _BACKEND == "torch":
                model.train()  # as fit does: torch modules inside the model follow it
            for t in range(test.num_steps):
                _set_lr(opt, test.lr(t))
                loss = step([batches.next() for _ in range(acc)])
                if test.record(loss):
                    break
        finally:
            snapshot.restore()
            if _BACKEND == "torch" and was_training is not None:
                model.train(was_training)
        lr = self._finish(test.result())
        if lr is not None:
            self._apply(model, lr)
        return self.result

    def _apply(self, model: Any, lr: float) -> None:
        Engine.of(model).set_learning_rate(lr, "LRFinder(apply=True)")
        log.info("LRFinder: learning rate set to %g", lr)

    # -- in fit ----------------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if self.result is None:
            raise ValueError("LRFinder: the range test has not run. Keras does not give callbacks fit's data, so "
                             "the test runs before fit: call finder.run(model, x, y, batch_size=...) first (it "
                             "restores the model), then pass the finder to fit to apply its suggestion")
        if self.apply and self.suggestion is not None:
            self._apply(model, self.suggestion)


# -- what the test needs -----------------------------------------------------------------------------
def _checked_optimizer(model: Any) -> Any:
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a compiled keras.Model; got {type(model).__name__}")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ValueError("model: compile the model with an optimizer and a loss before LRFinder.run")
    opt = inner_optimizer(model.optimizer)
    if not _lr_is_variable(opt):
        raise ValueError(f"model.optimizer: LRFinder sets the learning rate of every trial update, but the optimizer "
                         f"was compiled with learning_rate={_seam.lr_object(opt)!r}, a schedule object; compile with a "
                         f"float, e.g. {type(opt).__name__}(learning_rate=1e-3)")
    return opt


class _Batches:
    """The batches of ``fit``-style data, in order, started again when they run out."""

    def __init__(self, x: Any, y: Any, sample_weight: Any, batch_size: int | None) -> None:
        try:
            self.adapter = _seam.data_adapter(x, y, sample_weight, batch_size)
        except (ValueError, TypeError) as e:
            raise ValueError(f"x: LRFinder.run takes the data fit takes; {e}") from None
        self.it: Iterator[Any] = iter(self.adapter.get_numpy_iterator())
        self.head: Any = None
        self.count = 0
        self.passes = 0

    def _pull(self) -> Any:
        try:
            batch = next(self.it)
        except StopIteration:
            if self.count == 0:
                raise ValueError("x: the data gave no batch") from None
            self.adapter.on_epoch_end()
            self.it = iter(self.adapter.get_numpy_iterator())
            self.passes += 1
            try:
                batch = next(self.it)
            except StopIteration:
                raise ValueError(f"x: the data ran out after {self.count} batches and cannot be iterated again (a "
                                 "Python generator); pass arrays, a tf.data.Dataset, a PyDataset or an endless "
                                 "generator") from None
        self.count += 1
        return batch if isinstance(batch, tuple) else (batch,)

    def peek(self) -> Any:
        if self.head is None:
            self.head = self._pull()
        return self.head

    def next(self) -> Any:
        if self.head is None:
            return self._pull()
        batch, self.head = self.head, None
        return batch


def _build(model: Any, batch: tuple) -> None:
    """Create the model's, metrics' and optimizer's variables before they are copied (what fit does)."""
    _seam.symbolic_build(model, batch)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _step_function(model: Any) -> Callable[[list], float]:
    """One trial update (its micro-batches) -> its loss, read once."""
    if _BACKEND in ("tensorflow", "torch"):
        model.make_train_function()
        train = model.train_function

        def step(micro_batches: list) -> float:
            model.reset_metrics()  # the logged loss is then this update's mean
            logs: dict = {}
            for batch in micro_batches:  # one call, one micro-batch, whatever steps_per_execution
                logs = train(iter([batch]) if _BACKEND == "tensorflow" else [batch])
            return _loss_of(logs)

        return step

    def step_on_batch(micro_batches: list) -> float:  # other backends: the public per-batch API
        total = weight = 0.0
        for batch in micro_batches:
            x, y, sw = keras.utils.unpack_x_y_sample_weight(batch)
            n = float(len(keras.tree.flatten(x)[0]))
            model.reset_metrics()  # this batch's loss (Keras 3.8 returns the running mean over calls otherwise)
            total += n * _loss_of(model.train_on_batch(x, y, sw, return_dict=True))
            weight += n
        return total / weight

    return step_on_batch


def _loss_of(logs: Any) -> float:
    if not isinstance(logs, dict) or "loss" not in logs:
        logged = sorted(logs) if isinstance(logs, dict) else logs
        raise ValueError(f"model: the train step logged no 'loss' (logged {logged!r}); LRFinder needs the loss of "
                         "every trial update")
    return float(np.asarray(ops.convert_to_numpy(logs["loss"])))


def _align(opt: Any, acc: int) -> None:
    """Start the test on an update boundary: an optimizer stopped inside an accumulation (restored afterwards)
    drops its partial sum, so trial update 0 has ``acc`` micro-batches of its own."""
    micro = micro_count(opt)
    if acc > 1 and micro % acc:
        _seam.micro_iterations(opt).assign(micro - micro % acc)
        for g in _seam.accumulators(opt):
            g.assign(ops.zeros(g.shape, g.dtype))


def _set_lr(opt: Any, lr: float) -> None:
    if _BACKEND == "torch":
        _fill_lr(opt, lr)
    else:
        lr_variable(opt).assign(lr)


def _copy(variable: Any) -> Any:
    if _BACKEND == "torch":
        return variable.value.detach().clone()
    return ops.copy(variable.value)


class _Snapshot:
    """Device-side copies of every variable the test can change, and the global RNG states."""

    def __init__(self, model: Any) -> None:
        opt = model.optimizer
        found: dict[int, Any] = {}
        groups = [model.variables, model.metrics_variables, opt.variables, inner_optimizer(opt).variables]
        seeds = _seam.global_seed_state()
        if seeds is not None:
            groups.append([seeds])
        for group in groups:
            for v in group:
                found.setdefault(id(v), v)
        self.variables = list(found.values())
        self.values = [_copy(v) for v in self.variables]
        self.random = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = None
        if _BACKEND == "torch":
            import torch

            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
            self.torch = (torch.get_rng_state(), cuda)

    def restore(self) -> None:
        for v, value in zip(self.variables, self.values, strict=True):
            v.assign(value)
        random.setstate(self.random)
        np.random.set_state(self.numpy)
        if self.torch is not None:
            import torch

            torch.set_rng_state(self.torch[0])
            if self.torch[1] is not None:
                torch.cuda.set_rng_state_all(self.torch[1])
