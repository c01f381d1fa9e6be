"""Batch-size rules (handbook H4), the LARS optimizer and the H2 advisor, for Keras 3.

* :class:`GradientAccumulation` — micro-batches per update from a target batch size, with
  Keras' own ``gradient_accumulation_steps`` (and a Keras schedule object corrected to count
  updates, not micro-batches);
* :class:`ScaleLearningRate` — the learning rate scaled with the batch size, with warmup;
* :class:`LARS` — layer-wise adaptive rate scaling as a backend-agnostic Keras optimizer, the
  numbers of :class:`hpcallbacks.torch.LARS` and :func:`hpcallbacks.batch.lars_trust_ratio`;
* :class:`HyperparameterAdvisor` and :class:`LossBalance` — the H2 table of
  :mod:`hpcallbacks.advice` checked against the run;
* :class:`MicroBatchFinder` — the largest micro-batch that fits, accumulated to the target batch
  (:meth:`MicroBatchFinder.run` before ``fit``).
* :class:`TrialReporter` — the monitored metric to an Optuna trial or Ray Tune at each epoch end,
  and ``fit`` stopped when the trial is pruned (handbook H8).

Keras tells callbacks neither the batch size nor the data: where a rule needs the batch size, pass
``batch_size=``, the number you pass to ``fit(batch_size=...)``: under a ``tf.distribute`` strategy
that is the global batch, split across the replicas, as ``fit`` means it. (The Lightning and HF
adapters take ``per_device_batch_size=``, the per-device batch their dataloaders and
``TrainingArguments`` name; Keras keeps that keyword, meaning the per-replica batch, deprecated.)
"""
from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from hpcallbacks import _checks as check
from hpcallbacks import advice as A
from hpcallbacks import batch as B
from hpcallbacks import schedules as S
from hpcallbacks.advice import HyperparameterWarning
from hpcallbacks.search import TrialReporterBase

from . import _seam
from ._engine import Engine, inner_optimizer, install_replicated_accumulation, micro_count, variable_scope
from .callbacks import HPCallback, keras_only
from .callbacks import StagedUnfreeze as _StagedUnfreeze

__all__ = ["GradientAccumulation", "ScaleLearningRate", "LARS", "HyperparameterAdvisor", "LossBalance",
           "HyperparameterWarning", "UpdateCountSchedule", "MicroBatchFinder", "TrialReporter", "LRFinder",
           "InstanceNoise", "LabelFlip", "LabelSmoothing", "FrozenBatchNormalization", "swap_norms", "ParamScheduler",
           "FineTune"]

log = logging.getLogger("hpcallbacks")
_BACKEND = _seam.BACKEND


def _world_size(model: Any) -> int:
    strategy = getattr(model, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def _batch_arguments(batch_size: int | None, per_device_batch_size: int | None, who: str) -> tuple[int | None,
                                                                                                   int | None]:
    """``(batch_size, per_device_batch_size)`` checked: at most one given; the per-device one deprecated."""
    if batch_size is not None and per_device_batch_size is not None:
        raise ValueError(f"{who}: batch_size={batch_size!r} and per_device_batch_size={per_device_batch_size!r} are "
                         "both given; pass batch_size= alone (fit's batch_size: the global batch across replicas)")
    if per_device_batch_size is not None:
        warnings.warn(f"{who}: per_device_batch_size= is deprecated in Keras; pass batch_size=, fit's batch_size "
                      "(the global batch across the replicas of a tf.distribute strategy, per_device_batch_size x "
                      "replicas)", DeprecationWarning, stacklevel=4)
        return None, check.positive_int("per_device_batch_size", per_device_batch_size)
    return (None if batch_size is None else check.positive_int("batch_size", batch_size)), None


def _global_batch(batch_size: int | None, per_device_batch_size: int | None, world: int, who: str) -> int:
    """fit's batch size (global across the ``world`` replicas): the one given, checked against the batch
    size of fit's arrays when the ``fit`` running now has arrays (:func:`hpcallbacks_keras._seam.fit_data`),
    else that one; a ``ValueError`` when neither is known or they differ."""
    given = per_device_batch_size * world if per_device_batch_size is not None else batch_size
    fit_batch = _seam.fit_data()[1]
    if given is None:
        if fit_batch is None:
            raise ValueError(f"{who}: batch_size must be given (fit's batch_size, e.g. {who}(..., batch_size=32) "
                             "beside fit(dataset, ...) of batches of 32): fit was not given arrays, and Keras does "
                             "not tell callbacks the batch size of a dataset")
        return fit_batch
    if fit_batch is not None and fit_batch != given:
        shown = (f"per_device_batch_size={per_device_batch_size} x {world} replica(s) = {given}"
                 if per_device_batch_size is not None else f"batch_size={given}")
        raise ValueError(f"{who}: {shown}, but fit was called with batch_size={fit_batch}; pass fit's batch_size "
                         f"(batch_size={fit_batch}, or leave it out: it is read from fit's arrays)")
    return given


def _per_replica(batch: int, world: int, who: str) -> int:
    if batch % world:
        raise ValueError(f"{who}: batch_size={batch} (fit's batch_size) is not a multiple of the {world} replicas "
                         f"the strategy splits it across; use a multiple of {world}")
    return batch // world


# -- gradient accumulation -------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="hpcallbacks")
class UpdateCountSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras schedule object evaluated at the optimizer-update count, not the micro-batch count.

    Keras calls a compiled schedule with its micro-batch counter when ``gradient_accumulation_steps``
    is set (updates then use ``schedule(k * t + k - 1)``); this wrapper calls it with
    ``step // accumulation_steps``, the update count.
    """

    def __init__(self, schedule: Any, accumulation_steps: int) -> None:
        self.schedule = schedule
        self.accumulation_steps = int(accumulation_steps)

    def __call__(self, step: Any) -> Any:
        return self.schedule(ops.floor_divide(step, self.accumulation_steps))

    def get_config(self) -> dict[str, Any]:
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "accumulation_steps": self.accumulation_steps}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UpdateCountSchedule:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["accumulation_steps"])


class GradientAccumulation(keras.callbacks.Callback):
    """Reach ``target_batch_size`` samples per optimizer update by gradient accumulation (handbook H4).

    Sets the optimizer's ``gradient_accumulation_steps`` to ``target_batch_size / batch_size``
    (:func:`hpcallbacks.batch.accumulation_steps` of the per-replica batch and the replicas) when
    fit starts (in ``set_model``, before every other callback, so schedule defaults and
    ``BackupAndRestore`` see it). ``batch_size`` (keyword-only): what you pass to
    ``fit(batch_size=...)``; read from ``fit`` when it is given arrays (and checked against it when
    given too), required with a dataset (Keras does not tell callbacks its batches). Under a
    ``tf.distribute`` strategy fit's batch is global (split across the replicas), so each update reaches
    ``target_batch_size`` samples on any number of replicas: ``GradientAccumulation(64,
    batch_size=16)`` beside ``fit(x, y, batch_size=16)`` accumulates 4 micro-batches with 1 replica
    or 2. ``per_device_batch_size`` (the Lightning and HF keyword: their dataloaders give a
    per-device batch) still works in Keras, meaning the per-replica batch, with a
    ``DeprecationWarning``; giving both is a ``ValueError``. A target that is not
    a multiple is refused (``ValueError`` naming the nearest reachable sizes) unless ``exact=False``
    (nearest, with a warning). Keras' own accumulation is right for the gradients; its one wrong
    count — a compiled Keras schedule object sees micro-batches — is corrected by wrapping it in
    :class:`UpdateCountSchedule`. hpcallbacks schedules already count updates. The optimizer must
    not have trained with another accumulation (``ValueError``: the update count would change
    meaning). Updates per epoch become ``batches // steps``.
    """

    def __init__(self, target_batch_size: int, exact: bool = True, per_device_batch_size: int | None = None, *,
                 batch_size: int | None = None) -> None:
        super().__init__()
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.exact = check.boolean("exact", exact)
        self.batch_size, self.per_device_batch_size = _batch_arguments(batch_size, per_device_batch_size,
                                                                       "GradientAccumulation")
        self.accumulation: B.Accumulation | None = None

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if getattr(model, "optimizer", None) is None:
            raise ValueError("GradientAccumulation: compile the model with an optimizer before fit")
        world = _world_size(model)
        batch = _global_batch(self.batch_size, self.per_device_batch_size, world, "GradientAccumulation")
        per_replica = _per_replica(batch, world, "GradientAccumulation")
        acc = B.accumulation_for(self.target_batch_size, per_replica, world, self.exact,
                                 f"batch_size={batch} (fit's) over {world} replica(s)")
        inexact = B.inexact_warning(acc)
        if inexact is not None:
            warnings.warn(inexact, stacklevel=2)
        self.accumulation = acc
        opt = inner_optimizer(model.optimizer)
        if world > 1 and acc.steps > 1:  # Keras' accumulation cannot run under a strategy's replicas
            install_replicated_accumulation(opt)
        current = int(opt.gradient_accumulation_steps or 1)
        if current == acc.steps:
            return
        if micro_count(opt) != 0:
            raise ValueError(f"GradientAccumulation: the optimizer already trained with {current} micro-batch(es) per "
                             f"update; switching to {acc.steps} would change what its update count means. Compile "
                             f"with gradient_accumulation_steps={acc.steps} or a fresh optimizer")
        opt.gradient_accumulation_steps = acc.steps if acc.steps > 1 else None
        # a train function traced before (LRFinder.run, MicroBatchFinder.run's probes, an earlier fit) has the
        # old accumulation baked in, and fit reuses it: the next fit traces anew
        model.make_train_function(force=True)
        if acc.steps > 1 and opt.built and not _seam.accumulators(opt):
            with variable_scope(model):  # a tf.distribute strategy's variables are made in its scope
                _seam.create_accumulators(opt)  # what BaseOptimizer.build creates when the steps are set
        lr = _seam.lr_object(opt)
        if isinstance(lr, UpdateCountSchedule):
            lr = lr.schedule
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            _seam.set_lr_object(opt, UpdateCountSchedule(lr, acc.steps) if acc.steps > 1 else lr)
        log.info("GradientAccumulation: %d micro-batches of %d x %d replica(s) per update = %d samples", acc.steps,
                 per_replica, world, acc.effective_batch_size)


# -- LR scaling ---------------------------------------------------------------------------------------
class ScaleLearningRate(HPCallback):
    """Scale the learning rate with the batch size (handbook H4; Goyal et al. 2017), with warmup.

    ``lr = base LR x k`` with ``k`` the core's :func:`hpcallbacks.batch.scale_learning_rate` factor
    for the effective batch (``batch_size`` x ``gradient_accumulation_steps``, read when fit starts,
    so after :class:`GradientAccumulation`) against ``base_batch_size``; ``batch_size``
    (keyword-only, required at fit start) is fit's ``batch_size`` (global across the replicas of a
    ``tf.distribute`` strategy; the deprecated ``per_device_batch_size`` is per replica, as in the
    Lightning and HF adapters):
    ``rule="linear"`` ``k = batch / base``, ``"sqrt"`` ``k = sqrt(batch / base)``. When the batch
    grows, ``k`` is reached by :func:`hpcallbacks.batch.scaling_warmup` over ``warmup_epochs``
    epochs of updates (``0``: none), rising linearly from the unscaled rate.

    Composes like ``ReduceOnPlateau``: with an LR callback it multiplies that schedule,
    ``lr(t) = schedule(t) x m(t)`` (``m``: the warmup from 1 to ``k``); without one it scales the
    compiled learning rate. A plateau factor applies after it. In-graph like every LR callback.
    """

    def __init__(self, base_batch_size: int, rule: str = "linear", warmup_epochs: float = 5.0, *,
                 per_device_batch_size: int | None = None, batch_size: int | None = None) -> None:
        super().__init__()
        self.base_batch_size, self.rule, self.warmup_epochs = B.scaling_options(base_batch_size, rule, warmup_epochs)
        self.fit_batch_size, self.per_device_batch_size = _batch_arguments(batch_size, per_device_batch_size,
                                                                           "ScaleLearningRate")
        self.batch_size: int | None = None  # the effective batch, when fit starts
        self.factor: S.Schedule | None = None

    _role = "modifier"  # the run contract's role: a factor of the update count multiplying the LR

    def prepare(self, engine: Engine) -> None:
        engine.require_variable_lr("ScaleLearningRate")
        batch = _global_batch(self.fit_batch_size, self.per_device_batch_size, _world_size(self.model),
                              "ScaleLearningRate")
        self.batch_size = batch * engine.accumulation
        k = B.scale_learning_rate(1.0, self.base_batch_size, self.batch_size, self.rule)
        steps = engine.steps_per_epoch("ScaleLearningRate", required=self.warmup_epochs > 0 and k > 1)
        self.factor = B.scaling_warmup(S.Constant(k), self.base_batch_size, self.batch_size, steps or 1,
                                       self.warmup_epochs, self.rule)
        engine.set_modifier(self, self.factor)


# -- LARS ------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="hpcallbacks")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise adaptive rate scaling over SGD with momentum (You et al. 2017; handbook H4).

    Per variable ``w`` with gradient ``g`` (the core's :func:`hpcallbacks.batch.lars_trust_ratio`
    with backend ops, no host sync; the numbers of :class:`hpcallbacks.torch.LARS`)::

        ratio = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
        ratio = min(ratio / lr, 1)                                                  (clip=True: LARC)
        d     = (g + weight_decay * w) * ratio
        buf   = momentum * buf + d
        w    -= lr * (d + momentum * buf if nesterov else buf)

    Variables with ``ndim <= 1`` (biases, normalisation) are excluded by default
    (``exclude_bias_and_norm``): plain momentum SGD, no trust ratio, no weight decay.
    ``weight_decay`` is LARS' coupled decay (inside the trust ratio), not Keras' decoupled one.
    Per-group factors of :class:`~hpcallbacks_keras.DiscriminativeLR` scale ``lr`` as for any
    optimizer.
    """

    def __init__(self, learning_rate: Any = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, nesterov: bool = False, clip: bool = False,
                 exclude_bias_and_norm: bool = True, name: str = "lars", **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = check.number("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.lars_weight_decay = check.non_negative("weight_decay", weight_decay)
        self.trust_coefficient = check.positive("trust_coefficient", trust_coefficient)
        self.eps = check.non_negative("eps", eps)
        self.nesterov = check.boolean("nesterov", nesterov)
        self.clip = check.boolean("clip", clip)
        self.exclude_bias_and_norm = check.boolean("exclude_bias_and_norm", exclude_bias_and_norm)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0")

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        # add_variable_from_reference per variable: Keras 3.8 has no add_optimizer_variables (3.15 has)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables] if self.momentum else []

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.exclude_bias_and_norm and len(variable.shape) <= 1:
            d = g
        else:
            w = ops.convert_to_tensor(variable)
            decay = self.lars_weight_decay
            w_norm = ops.sqrt(ops.sum(ops.square(w)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            ratio = self.trust_coefficient * w_norm / (g_norm + decay * w_norm + self.eps)
            ratio = ops.where(ops.logical_and(w_norm > 0, g_norm > 0), ratio, ops.ones_like(ratio))
            if self.clip:
                ratio = ops.where(lr > 0, ops.minimum(ratio / ops.maximum(lr, 1e-30), 1.0), ratio)
            d = (g + decay * w) * ratio if decay else g * ratio
        if self.momentum:
            buf = self.momentums[_seam.variable_index(self, variable)]
            self.assign(buf, self.momentum * buf + d)
            d = d + self.momentum * buf if self.nesterov else buf
        self.assign_sub(variable, lr * d)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.lars_weight_decay,
                       "trust_coefficient": self.trust_coefficient, "eps": self.eps, "nesterov": self.nesterov,
                       "clip": self.clip, "exclude_bias_and_norm": self.exclude_bias_and_norm})
        return config


# -- the advisor -------------------------------------------------------------------------------------------
def optimizer_kind(optimizer: Any) -> str | None:
    """The row of the H2 table for a Keras optimizer, or None when it has none."""
    opt = inner_optimizer(optimizer)
    if isinstance(opt, LARS):
        return "nesterov" if opt.nesterov else ("sgd_momentum" if opt.momentum else "sgd")
    if isinstance(opt, keras.optimizers.SGD):
        return "nesterov" if opt.nesterov else ("sgd_momentum" if opt.momentum else "sgd")
    if isinstance(opt, keras.optimizers.AdamW):
        return "adamw"
    if isinstance(opt, keras.optimizers.Adam):
        return "adam"
    return None


def dropout_rates(model: Any) -> list[float]:
    return [float(layer.rate) for layer in _seam.flatten_layers(model, include_self=False)
            if isinstance(layer, keras.layers.Dropout) and float(layer.rate) > 0]


def kernel_sizes(model: Any) -> list[tuple[int, int]]:
    return [tuple(int(k) for k in layer.kernel_size) for layer in _seam.flatten_layers(model, include_self=False)
            if isinstance(layer, keras.layers.Conv2D)]


class HyperparameterAdvisor(A.AdvisorBase, keras.callbacks.Callback):
    """Check the run against the handbook's recommended values (H2) once, before the first update.

    Reads, at the first epoch's start (after every ``on_train_begin``): the optimizer's kind
    (``SGD`` -> ``"sgd"`` / ``"sgd_momentum"`` / ``"nesterov"``, ``Adam`` -> ``"adam"``, ``AdamW`` ->
    ``"adamw"``, :class:`LARS` -> SGD's; others: only batch size, dropout and kernels), the learning
    rate (the peak of the hpcallbacks LR schedule over the run, else the compiled rate),
    ``momentum`` or ``beta_1`` / ``beta_2`` / ``epsilon``, ``weight_decay``, the effective batch
    (``batch_size`` x accumulation; ``batch_size`` is read from ``fit`` when it is given arrays, and
    not checked when neither gives it: Keras does not tell callbacks a dataset's batch size), the
    rate of every Dropout layer and the kernel sizes of
    ``Conv2D`` layers, and runs :func:`hpcallbacks.advice.check`. ``fine_tuning=None`` means
    "fine-tuning when a StagedUnfreeze or DiscriminativeLR is in the fit".

    Warnings are issued as :class:`HyperparameterWarning`, infos logged; ``strict=True`` raises
    ``ValueError`` listing the warnings instead, before any update. ``.findings`` and ``.values``
    stay on the callback.

    ``batch_size`` (keyword-only, Keras only): fit's ``batch_size`` (global across the replicas of
    a ``tf.distribute`` strategy; ``per_device_batch_size``, per replica, is deprecated). The torch
    adapters read the batch from the train dataloader / ``TrainingArguments``; Keras gives
    callbacks neither the data nor the batch size, so the effective batch can only be checked when
    it is given here.
    """

    def __init__(self, strict: bool = False, fine_tuning: bool | None = None,
                 from_scratch_learning_rate: float | None = None, *, batch_size: int | None = None,
                 per_device_batch_size: int | None = None) -> None:
        super().__init__()
        self._init_advisor(strict, fine_tuning, from_scratch_learning_rate)
        self.batch_size, self.per_device_batch_size = _batch_arguments(batch_size, per_device_batch_size,
                                                                       "HyperparameterAdvisor")
        self.findings: list[A.Finding] = []
        self.values: dict[str, Any] = {}
        self._done = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._done = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._done:
            return
        self._done = True
        A.report("HyperparameterAdvisor", self._advise(self.read()), self.strict)

    def _engine_fit(self) -> Any:
        engine = self.model.__dict__.get("_hpcallbacks_engine")
        fit = getattr(engine, "fit", None)
        return fit if fit is not None and fit.token is self.params else None

    def _peak_lr(self, opt: Any) -> float:
        fit = self._engine_fit()
        engine = self.model.__dict__.get("_hpcallbacks_engine")
        if fit is not None and engine.table_mode:
            steps = engine.steps_per_epoch("HyperparameterAdvisor", required=False)
            start = int(ops.convert_to_numpy(opt.iterations))
            end = steps * engine.epochs() if steps else start + 10_000
            stride = max(1, (end - start) // 10_000)
            return max(engine.lr_at(t) for t in range(start, max(end, start + 1), stride))
        lr = _seam.lr_object(opt)
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            return float(ops.convert_to_numpy(lr(0)))
        return float(ops.convert_to_numpy(opt.learning_rate))

    def read(self) -> dict[str, Any]:
        """The arguments of :func:`hpcallbacks.advice.check` this run has."""
        model = self.model
        opt = inner_optimizer(model.optimizer)
        kind = optimizer_kind(opt)
        values: dict[str, Any] = {"optimizer": kind or "sgd"}
        if kind is not None:
            values["learning_rate"] = self._peak_lr(opt)
            if kind in ("adam", "adamw"):
                values["beta_1"], values["beta_2"] = float(opt.beta_1), float(opt.beta_2)
                values["epsilon"] = float(opt.epsilon)
            elif kind in ("sgd_momentum", "nesterov"):
                values["momentum"] = float(opt.momentum)
            decay = opt.lars_weight_decay if isinstance(opt, LARS) else opt.weight_decay
            if decay:
                values["weight_decay"] = float(decay)
        else:
            log.info("HyperparameterAdvisor: %s is not in the handbook's table; checking batch size, dropout and "
                     "kernels only", type(opt).__name__)
        if self.batch_size is not None or self.per_device_batch_size is not None or _seam.fit_data()[1]:
            batch = _global_batch(self.batch_size, self.per_device_batch_size, _world_size(model),
                                  "HyperparameterAdvisor")
            values["batch_size"] = batch * int(opt.gradient_accumulation_steps or 1)
        values["dropout_rates"] = dropout_rates(model)
        values["kernel_sizes"] = kernel_sizes(model)
        fine = self.fine_tuning
        if fine is None:
            fit = self._engine_fit()
            fine = bool(fit is not None and (fit.plan is not None or fit.factors is not None))
        values.update(A.fine_tuning_values(fine, self.from_scratch_learning_rate, where="fit"))
        return values


class LossBalance(A.LossBalanceBase, keras.callbacks.Callback):
    """Check that the loss terms stay within two orders of magnitude of each other (handbook H2).

    ``terms``: two or more names in the epoch logs (a multi-output model logs ``"<output>_loss"``;
    a custom ``train_step`` returns its terms), read at the end of every ``every_n_epochs``-th epoch;
    ``reference``: the main term (default the first). Runs :func:`hpcallbacks.advice.loss_balance`:
    when the largest term is more than 100x the smallest, a :class:`HyperparameterWarning` names
    them and the suggested weights (``strict=True``: ``ValueError``, which stops training).
    ``.weights`` holds the last suggestion (1.0 each when balanced); ``.findings``, ``.values`` the
    last check. A term missing from the logs warns once and skips the check.
    """

    def __init__(self, terms: Sequence[str] = ("loss_a", "loss_b"), every_n_epochs: int = 1, strict: bool = False,
                 reference: str | None = None) -> None:
        super().__init__()
        self._init_balance(terms, every_n_epochs, strict, reference)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        logs = logs or {}
        if self._missing(logs, "are not in the logs", "pass terms= names that fit logs"):
            return
        result = self._balance({t: float(logs[t]) for t in self.terms})
        if result is not None:
            A.report("LossBalance", result.findings, self.strict)


# -- the largest micro-batch that fits (handbook H4) ---------------------------------------------------
def _out_of_memory(error: BaseException) -> bool:
    """The backend's out-of-memory error: ``tf.errors.ResourceExhaustedError``; on the torch backend the
    torch adapters' rule (:func:`hpcallbacks.torch.microbatch.is_out_of_memory`)."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        return isinstance(error, tf.errors.ResourceExhaustedError)
    if _BACKEND == "torch":
        from hpcallbacks.torch.microbatch import is_out_of_memory

        return is_out_of_memory(error)
    return False


def _free_memory() -> None:
    gc.collect()
    if _BACKEND == "torch":
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _plan_layers(model: Any, callbacks: Sequence[Any]) -> list[Any]:
    """The layers of every group that a ``StagedUnfreeze`` in ``callbacks`` trains at some stage."""
    from ._groups import resolve_groups
    from .callbacks import StagedUnfreeze

    layers: list[Any] = []
    for plan in (cb for cb in callbacks if isinstance(cb, StagedUnfreeze)):
        groups = resolve_groups(model, plan.groups)
        ever = plan.plan.resolve(len(groups), steps_per_epoch=10**9).ever_trainable
        layers.extend(layer for group, trains in zip(groups, ever, strict=True) if trains for layer in group.layers)
    return list({id(layer): layer for layer in layers}.values())


class MicroBatchFinder(keras.callbacks.Callback):
    """The largest micro-batch that fits in memory, accumulated to ``target_batch_size`` exactly (handbook H4).

    The same arguments and rule as Lightning's and HF's ``MicroBatchFinder`` (the core's
    :func:`hpcallbacks.batch.fit_micro_batch`: among the divisors of ``target_batch_size /
    replicas``, at most ``max_micro_batch``, the largest ``n`` for which a trial step fits; then
    ``accumulation = target / (n x replicas)``). Keras gives callbacks no data (see
    :mod:`hpcallbacks_keras._finder`), so the probing is a call before ``fit``, like ``LRFinder``'s::

        finder = MicroBatchFinder(64)
        batch_size = finder.run(model, x, y, callbacks=callbacks)   # 8 when 8 fits and 16 does not
        model.fit(x, y, batch_size=batch_size, callbacks=[finder, *callbacks])

    :meth:`run` takes array data (what ``fit``'s ``batch_size`` batches); the trial step of ``n``
    is the model's own compiled train step (its loss, ``LossScaleOptimizer``) on the first
    ``n x replicas`` samples. It does not fit when it raises the backend's out-of-memory error
    (``tf.errors.ResourceExhaustedError``; on the torch backend ``torch.cuda.OutOfMemoryError`` and the
    out-of-memory messages of :func:`hpcallbacks.torch.microbatch.is_out_of_memory`); any
    other error is raised. With a ``StagedUnfreeze`` in ``callbacks`` every group some stage of its
    plan trains is trainable during the probes (the memory of its widest stage; the optimizer must
    hold their variables: compile with the layers trainable, as ``StagedUnfreeze`` asks). Afterwards
    every variable of the model, its metrics and its optimizer, the ``trainable`` flags and the
    global RNG states are as before, bit-identically. :meth:`run` returns fit's ``batch_size``
    (``n x replicas``) and sets the optimizer's ``gradient_accumulation_steps`` as
    ``GradientAccumulation`` does (a compiled Keras schedule object is wrapped to count updates),
    so every schedule runs as in a fit set by hand to the same numbers. ``.result`` is the
    :class:`hpcallbacks.batch.MicroBatch`, ``.batch_size`` fit's batch size.

    :meth:`run` builds the model's metrics and optimizer (what ``fit`` does first, as
    ``LRFinder.run``); on the torch backend Keras' ``fit`` draws the global RNG once when it builds
    an unbuilt model itself, so there the run equals one set by hand on a model built before ``fit``.

    In ``fit`` (``callbacks=[finder, ...]``) a finder that has not run is refused (``ValueError``
    before the first update); one that ran sets the accumulation again (a recompiled optimizer gets
    it too). Do not combine it with ``GradientAccumulation``: both set the accumulation. A target
    below or not a multiple of the replicas, and no micro-batch that fits, are refused with a
    ``ValueError`` saying what to change.
    """

    def __init__(self, target_batch_size: int, max_micro_batch: int | None = None) -> None:
        super().__init__()
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.max_micro_batch = None if max_micro_batch is None else check.positive_int("max_micro_batch",
                                                                                        max_micro_batch)
        self.result: B.MicroBatch | None = None
        self.batch_size: int | None = None

    def run(self, model: Any, x: Any, y: Any = None, sample_weight: Any = None,
            callbacks: Sequence[Any] | None = None) -> int:
        """Probe on the samples of ``x`` / ``y`` / ``sample_weight``; return fit's ``batch_size``.

        ``callbacks``: those of the coming ``fit`` (a ``StagedUnfreeze`` there widens the probes).
        """
        from ._finder import _Batches, _build, _Snapshot, _step_function

        if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None \
                or not getattr(model, "compiled", False):
            raise ValueError("model: compile a keras.Model with an optimizer and a loss before MicroBatchFinder.run")
        world = _world_size(model)
        head = _Batches(x, y, sample_weight, 1)
        if not _seam.is_array_adapter(head.adapter):
            raise ValueError(f"x: MicroBatchFinder.run takes arrays, which fit batches with its batch_size; a "
                             f"{type(x).__name__} brings its own batches (batch it with the micro-batch yourself)")
        layers = _plan_layers(model, list(callbacks or ()))
        flags = [layer.trainable for layer in layers]
        opt = inner_optimizer(model.optimizer)
        widened = not all(flags)  # the train step is traced again with the widest set, and after it without
        try:
            for layer in layers:
                layer.trainable = True
            missing = [v.path for layer in layers for v in layer.trainable_weights
                       if opt.built and not _seam.holds_variable(opt, v)]
            if missing:
                raise ValueError(f"MicroBatchFinder: the optimizer was built without {sorted(missing)[:8]}, which the "
                                 "StagedUnfreeze plan trains: compile with those layers trainable (StagedUnfreeze "
                                 "freezes them itself)")
            _build(model, head.peek())
            if widened:
                model.make_train_function(force=True)
            result = self._search(model, world, _step_function(model),
                                  lambda n: _Batches(x, y, sample_weight, n * world).next(), _Snapshot(model))
        finally:
            for layer, flag in zip(layers, flags, strict=True):
                layer.trainable = flag
            if widened:
                model.make_train_function(force=True)
        self.result, self.batch_size = result, result.micro_batch_size * world
        self._accumulate(model)
        log.info("MicroBatchFinder: %s (probed %s); fit with batch_size=%d", result.describe(), list(result.probes),
                 self.batch_size)
        return self.batch_size

    def _search(self, model: Any, world: int, step: Any, batch_of: Any, snapshot: Any) -> B.MicroBatch:
        was_training = getattr(model, "training", None)
        try:
            if _BACKEND == "torch":
                model.train()  # as fit does: torch modules inside the model follow it
            fits = B.memory_probe(lambda n: step([batch_of(n)]), _out_of_memory, _free_memory)
            return B.fit_micro_batch(self.target_batch_size, world, fits, self.max_micro_batch)
        except ValueError as e:
            raise ValueError(f"MicroBatchFinder: {e}") from None
        finally:
            snapshot.restore()
            if _BACKEND == "torch" and was_training is not None:
                model.train(was_training)
            _free_memory()

    def _accumulate(self, model: Any) -> None:
        assert self.result is not None
        GradientAccumulation(self.target_batch_size, batch_size=self.batch_size).set_model(model)

    def set_model(self, model: Any) -> None:
        if self.result is None:
            raise ValueError("MicroBatchFinder: the probes have not run. Keras does not give callbacks fit's data, so "
                             "they run before fit: call batch_size = finder.run(model, x, y) first, then "
                             "fit(x, y, batch_size=batch_size, callbacks=[finder, ...])")
        super().set_model(model)
        self._accumulate(model)


keras_only(MicroBatchFinder)


# -- hyperparameter search (handbook H8) -------------------------------------------------------------
@keras_only
class TrialReporter(TrialReporterBase, keras.callbacks.Callback):
    """Report the monitored metric to an Optuna trial or Ray Tune at each epoch end; stop when pruned.

    The same arguments as Lightning's and HF's ``TrialReporter``: ``trial`` an
    ``optuna.trial.Trial``, ``"ray"`` or ``None``; ``monitor`` a key of the epoch logs (default
    ``"val_loss"``). At ``on_epoch_end`` it reports ``logs[monitor]`` at step = the epoch (from 0;
    :class:`hpcallbacks.search.Reporter`); when the pruner says so it sets
    ``model.stop_training = True``: ``fit`` returns after that epoch. After ``fit``,
    :meth:`raise_if_pruned` raises ``optuna.TrialPruned`` so the study records the trial as pruned::

        import keras, optuna
        from hpcallbacks_keras import TrialReporter

        def objective(trial):
            model = make_model()
            model.compile(keras.optimizers.Adam(trial.suggest_float("lr", 1e-4, 1e-1, log=True)), "mse")
            reporter = TrialReporter(trial, monitor="val_loss")
            model.fit(x, y, validation_data=(xv, yv), epochs=10, callbacks=[reporter], verbose=0)
            reporter.raise_if_pruned()
            return model.evaluate(xv, yv, verbose=0)

    Keras' ``MirroredStrategy`` runs one process (the replicas are devices of it): there is one
    trial and one decision, nothing to broadcast, and the sampled values are the same for every
    replica. ``.pruned``, ``.pruned_step`` (the epoch) and ``.message`` say what happened.

    A ``val_*`` monitor in a fit without ``validation_data`` or ``validation_split`` is refused at fit
    start (``ValueError``: the run evaluates nothing); a ``monitor`` missing from an epoch's logs (a
    typo) is a ``ValueError`` at that epoch's end naming it and the keys logged: a trial that reports
    nothing could never be pruned. A trial of a multi-objective study gets no report (Optuna prunes
    single-objective studies only; HF's ``hyperparameter_search`` does the same), with a warning
    when the reporter is built.
    """

    def __init__(self, trial: Any, monitor: str | None = None) -> None:
        super().__init__()
        self._init_reporter(trial, monitor)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start(True)
        if str(self.monitor).startswith("val_"):  # Keras logs validation metrics as val_<name>
            self._check_evaluates(_seam.fit_validates() is not False, "fit got no validation_data and no "
                                  "validation_split", "pass fit validation_data= (or validation_split=)")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._report(logs or {}, int(epoch)):
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self._end()


# The extras that live in their own private modules (Keras mechanics of their own), listed here as in
# the torch adapters' extras modules.
from ._finder import LRFinder  # noqa: E402
from ._gan import InstanceNoise, LabelFlip, LabelSmoothing  # noqa: E402
from ._norms import FrozenBatchNormalization, swap_norms  # noqa: E402
from ._params import ParamScheduler  # noqa: E402

# every public callback: given to a Lightning or HF loop it raises TypeError naming the import to
# use, and a wrong keyword is an ArgumentError (hpcallbacks.run.guard_hooks, hpcallbacks._checks);
# the HPCallback subclasses, SwapNorm, BatchRamp and the GAN helpers get both where they are defined
for _cls in (GradientAccumulation, HyperparameterAdvisor, LossBalance, LRFinder):
    keras_only(_cls)
del _cls


# ----------------------------------------------------------------------------------------------
# the whole fine-tuning recipe (handbook H2, H3, H4, H5)
def _fit_data(depth: int = 24) -> tuple[int | None, int | None]:
    """(samples, batch size) of the arrays of the ``fit`` calling now (:func:`hpcallbacks_keras._seam.fit_data`),
    or ``(None, None)`` (a dataset or generator)."""
    return _seam.fit_data(depth)


class FineTune(_StagedUnfreeze):
    """The handbook's whole fine-tuning recipe in one callback (fastai's ``learn.fine_tune`` for Keras ``fit``).

    The same arguments and rule as Lightning's and HF's ``FineTune``. At ``on_train_begin`` the
    core :class:`hpcallbacks.recipe.Recipe` is computed from the fit: the number of samples of
    ``fit``'s arrays (or ``num_samples``: required for a ``tf.data`` dataset or a generator),
    ``similar``, the layer groups (``groups``, as for ``StagedUnfreeze``), the epochs and updates
    per epoch, the optimizer (its H2 row), the batch size and whether the model has BatchNorm
    layers; then it acts as the ``StagedUnfreeze`` (plan, per-group factors, BatchNorm policy
    ``bn`` unless given) and the ``LearningRateSchedule`` (a cosine per stage with a warm restart
    at each unfreeze) the recipe names. ``learning_rate``: ``None`` (H2's rule for the optimizer;
    the compiled learning rate is not used), a number (the head's peak), or ``"range_test"`` (what
    an ``LRFinder(apply=True)`` in the same fit finds). ``str(callback.recipe)`` explains each
    choice with its handbook section.

    A schedule and a plan at once (role ``"recipe"`` of :mod:`hpcallbacks.run`): another schedule
    callback, ``StagedUnfreeze``, ``DiscriminativeLR`` or Keras' ``LearningRateScheduler`` is
    refused; ``GradientAccumulation``, ``MicroBatchFinder``, ``TrialReporter`` work beside it. The
    recipe is a function of the fit's facts, so ``BackupAndRestore`` and ``save_weights`` /
    ``load_weights`` continue it exactly.

    >>> FineTune(similar=True).get_config()["similar"]
    True
    """

    _role = "recipe"

    def __init__(self, similar: bool = False, learning_rate: float | str | None = None,
                 num_samples: int | None = None, groups: Sequence[Any] | None = None, bn: str | None = None,
                 head_epochs: float = 1.0, large_threshold: int = 10_000) -> None:
        from hpcallbacks.plans import FreezePlan
        from hpcallbacks.recipe import fine_tune_arguments

        super().__init__(FreezePlan.head_then_all(), groups, bn)
        vars(self).update(fine_tune_arguments(similar, learning_rate, num_samples, head_epochs, large_threshold))
        self.recipe: Any = None
        self._data: tuple[int | None, int | None] = (None, None)

    def _member(self) -> Any:
        from hpcallbacks import run as R

        return R.Member("FineTune", "recipe", factors=self.plan.factors, groups=self.groups)

    def get_config(self) -> dict[str, Any]:
        return {"similar": self.similar, "learning_rate": self.learning_rate, "num_samples": self.num_samples,
                "groups": self.groups, "bn": self.bn, "head_epochs": self.head_epochs,
                "large_threshold": self.large_threshold}

    def set_params(self, params: Any) -> None:
        self._data = _fit_data()  # fit's frame is on the stack while it builds its callback list
        found = _seam.callback_list_of(self)
        self._finder = found is not None and any(isinstance(cb, LRFinder) and cb.apply for cb in found.callbacks)
        super().set_params(params)

    def prepare(self, engine: Engine) -> None:
        from hpcallbacks.recipe import Recipe, optimizer_kind

        engine.require_variable_lr("FineTune")
        samples, batch = self._data
        if self.num_samples is not None:
            samples = self.num_samples
        if samples is None:
            raise ValueError("FineTune: the number of training samples is unknown (fit was given a dataset or a "
                             "generator, not arrays): pass num_samples=")
        groups = self.resolve_groups(engine)
        spe = engine.steps_per_epoch("FineTune")
        opt = engine.optimizer
        momentum = getattr(opt, "momentum", 0.0)
        kind = optimizer_kind(type(opt).__name__, float(momentum) if isinstance(momentum, (int, float)) else 0.0,
                              bool(getattr(opt, "nesterov", False)))
        norms = any(isinstance(layer, keras.layers.BatchNormalization)
                    for layer in _seam.flatten_layers(self.model, include_self=False))
        self.recipe = Recipe(num_samples=samples, num_groups=len(groups), epochs=engine.epochs(), steps_per_epoch=spe,
                             similar=self.similar, optimizer=kind, learning_rate=self.learning_rate, batch_size=batch,
                             batch_norm=norms, large_threshold=self.large_threshold, head_epochs=self.head_epochs)
        log.info("%s", self.recipe)
        self.plan = self.recipe.plan
        engine.fit.composition = None  # read again: the plan's factors are the recipe's now
        super().prepare(engine)

    def begin_run(self, engine: Engine, update: int, state: Any) -> None:
        from hpcallbacks import run as R
        from hpcallbacks.recipe import RANGE_TEST

        super().begin_run(engine, update, state)
        if self.learning_rate == RANGE_TEST and not getattr(self, "_finder", False):
            raise ValueError("FineTune(learning_rate='range_test') takes the rate an LRFinder(apply=True) finds: add "
                             "LRFinder(apply=True) to fit's callbacks, or give learning_rate")
        steps = engine.steps_per_epoch("FineTune", required=False)
        lr = engine.initial_learning_rate("FineTune")
        state.schedule = R.ScheduleState(lr, steps, engine.total_steps("FineTune")).to_dict()
        schedule = self.recipe.schedule(lr if self.learning_rate == RANGE_TEST else None)
        self.resolved_schedule = schedule
        engine.set_schedule(self, schedule)
