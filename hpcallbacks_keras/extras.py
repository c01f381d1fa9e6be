"""Batch-size rules (handbook H4), the LARS optimizer and the H2 advisor, for Keras 3.

* :class:`GradientAccumulation` — micro-batches per update from a target batch size, with
  Keras' own ``gradient_accumulation_steps`` (and a Keras schedule object corrected to count
  updates, not micro-batches);
* :class:`ScaleLearningRate` — the learning rate scaled with the batch size, with warmup;
* :class:`LARS` — layer-wise adaptive rate scaling as a backend-agnostic Keras optimizer, the
  numbers of :class:`hpcallbacks.torch.LARS` and :func:`hpcallbacks.batch.lars_trust_ratio`;
* :class:`HyperparameterAdvisor` and :class:`LossBalance` — the H2 table of
  :mod:`hpcallbacks.advice` checked against the run.

Keras tells callbacks neither the batch size nor the data: where a rule needs the per-device
batch, pass ``per_device_batch_size`` (fit's ``batch_size``).
"""
from __future__ import annotations

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

from ._engine import Engine, _to_int, inner_optimizer
from .callbacks import HPCallback

__all__ = ["GradientAccumulation", "ScaleLearningRate", "LARS", "HyperparameterAdvisor", "LossBalance",
           "HyperparameterWarning", "UpdateCountSchedule"]

log = logging.getLogger("hpcallbacks")


def _world_size(model: Any) -> int:
    strategy = getattr(model, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)


def _per_device(value: int | None, who: str) -> int:
    if value is None:
        raise ValueError(f"{who}: per_device_batch_size must be given (fit's batch_size): Keras does not tell "
                         "callbacks the batch size")
    return check.positive_int("per_device_batch_size", value)


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

    Sets the optimizer's ``gradient_accumulation_steps`` to
    :func:`hpcallbacks.batch.accumulation_steps` ``(target_batch_size, per_device_batch_size,
    replicas)`` when fit starts (in ``set_model``, before every other callback, so schedule
    defaults and ``BackupAndRestore`` see it); ``per_device_batch_size`` is fit's ``batch_size``
    (Keras does not tell callbacks), replicas the ``tf.distribute`` strategy's. A target that is not
    a multiple is refused (``ValueError`` naming the nearest reachable sizes) unless ``exact=False``
    (nearest, with a warning). Keras' own accumulation is right for the gradients; its one wrong
    count — a compiled Keras schedule object sees micro-batches — is corrected by wrapping it in
    :class:`UpdateCountSchedule`. hpcallbacks schedules already count updates. The optimizer must
    not have trained with another accumulation (``ValueError``: the update count would change
    meaning). Updates per epoch become ``batches // steps``.
    """

    def __init__(self, target_batch_size: int, exact: bool = True, per_device_batch_size: int | None = None) -> None:
        super().__init__()
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.exact = check.boolean("exact", exact)
        self.per_device_batch_size = _per_device(per_device_batch_size, "GradientAccumulation")
        self.accumulation: B.Accumulation | None = None

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if getattr(model, "optimizer", None) is None:
            raise ValueError("GradientAccumulation: compile the model with an optimizer before fit")
        world = _world_size(model)
        acc = B.accumulation_for(self.target_batch_size, self.per_device_batch_size, world, self.exact,
                                 f"per_device_batch_size={self.per_device_batch_size} and {world} replica(s)")
        inexact = B.inexact_warning(acc)
        if inexact is not None:
            warnings.warn(inexact, stacklevel=2)
        self.accumulation = acc
        opt = inner_optimizer(model.optimizer)
        current = int(opt.gradient_accumulation_steps or 1)
        if current == acc.steps:
            return
        if _to_int(opt._iterations) != 0:
            raise ValueError(f"GradientAccumulation: the optimizer already trained with {current} micro-batch(es) per "
                             f"update; switching to {acc.steps} would change what its update count means. Compile "
                             f"with gradient_accumulation_steps={acc.steps} or a fresh optimizer")
        opt.gradient_accumulation_steps = acc.steps if acc.steps > 1 else None
        if acc.steps > 1 and opt.built and not getattr(opt, "_accumulated_gradients", None):
            opt._accumulated_gradients = []  # what BaseOptimizer.build creates when the steps are set
            for v in opt._trainable_variables:
                opt._accumulated_gradients.append(opt.add_variable_from_reference(v, name="gradient_accumulator"))
        lr = opt._learning_rate
        if isinstance(lr, UpdateCountSchedule):
            lr = lr.schedule
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            opt._learning_rate = UpdateCountSchedule(lr, acc.steps) if acc.steps > 1 else lr
        log.info("GradientAccumulation: %d micro-batches of %d x %d replica(s) per update = %d samples", acc.steps,
                 self.per_device_batch_size, world, acc.effective_batch_size)


# -- LR scaling ---------------------------------------------------------------------------------------
class ScaleLearningRate(HPCallback):
    """Scale the learning rate with the batch size (handbook H4; Goyal et al. 2017), with warmup.

    ``lr = base LR x k`` with ``k`` the core's :func:`hpcallbacks.batch.scale_learning_rate` factor
    for the effective batch (``per_device_batch_size`` x ``gradient_accumulation_steps`` x replicas,
    read when fit starts, so after :class:`GradientAccumulation`) against ``base_batch_size``:
    ``rule="linear"`` ``k = batch / base``, ``"sqrt"`` ``k = sqrt(batch / base)``. When the batch
    grows, ``k`` is reached by :func:`hpcallbacks.batch.scaling_warmup` over ``warmup_epochs``
    epochs of updates (``0``: none), rising linearly from the unscaled rate.

    Composes like ``ReduceOnPlateau``: with an LR callback it multiplies that schedule,
    ``lr(t) = schedule(t) x m(t)`` (``m``: the warmup from 1 to ``k``); without one it scales the
    compiled learning rate. A plateau factor applies after it. In-graph like every LR callback.
    """

    def __init__(self, base_batch_size: int, rule: str = "linear", warmup_epochs: float = 5.0, *,
                 per_device_batch_size: int | None = None) -> None:
        super().__init__()
        self.base_batch_size, self.rule, self.warmup_epochs = B.scaling_options(base_batch_size, rule, warmup_epochs)
        self.per_device_batch_size = _per_device(per_device_batch_size, "ScaleLearningRate")
        self.batch_size: int | None = None
        self.factor: S.Schedule | None = None

    _role = "modifier"  # the run contract's role: a factor of the update count multiplying the LR

    def prepare(self, engine: Engine) -> None:
        engine.require_variable_lr("ScaleLearningRate")
        self.batch_size = self.per_device_batch_size * engine.accumulation * _world_size(self.model)
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
        self.momentums = self.add_optimizer_variables(variables, "momentum") if self.momentum else []

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
            buf = self.momentums[self._get_variable_index(variable)]
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
    return [float(layer.rate) for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Dropout) and float(layer.rate) > 0]


def kernel_sizes(model: Any) -> list[tuple[int, int]]:
    return [tuple(int(k) for k in layer.kernel_size) for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Conv2D)]


class HyperparameterAdvisor(A.AdvisorBase, keras.callbacks.Callback):
    """Check the run against the handbook's recommended values (H2) once, before the first update.

    Reads, at the first epoch's start (after every ``on_train_begin``): the optimizer's kind
    (``SGD`` -> ``"sgd"`` / ``"sgd_momentum"`` / ``"nesterov"``, ``Adam`` -> ``"adam"``, ``AdamW`` ->
    ``"adamw"``, :class:`LARS` -> SGD's; others: only batch size, dropout and kernels), the learning
    rate (the peak of the hpcallbacks LR schedule over the run, else the compiled rate),
    ``momentum`` or ``beta_1`` / ``beta_2`` / ``epsilon``, ``weight_decay``, the effective batch
    (``per_device_batch_size`` x accumulation x replicas; not checked when not given: Keras does not
    tell callbacks the batch size), the rate of every Dropout layer and the kernel sizes of
    ``Conv2D`` layers, and runs :func:`hpcallbacks.advice.check`. ``fine_tuning=None`` means
    "fine-tuning when a StagedUnfreeze or DiscriminativeLR is in the fit".

    Warnings are issued as :class:`HyperparameterWarning`, infos logged; ``strict=True`` raises
    ``ValueError`` listing the warnings instead, before any update. ``.findings`` and ``.values``
    stay on the callback.

    ``per_device_batch_size`` (keyword-only, Keras only): fit's ``batch_size``. The torch adapters
    read the batch from the train dataloader / ``TrainingArguments``; Keras gives callbacks
    neither the data nor the batch size, so the effective batch can only be checked when it is
    given here.
    """

    def __init__(self, strict: bool = False, fine_tuning: bool | None = None,
                 from_scratch_learning_rate: float | None = None, *,
                 per_device_batch_size: int | None = None) -> None:
        super().__init__()
        self._init_advisor(strict, fine_tuning, from_scratch_learning_rate)
        self.per_device_batch_size = (None if per_device_batch_size is None
                                      else check.positive_int("per_device_batch_size", per_device_batch_size))
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
            start = _to_int(opt.iterations)
            end = steps * engine.epochs() if steps else start + 10_000
            stride = max(1, (end - start) // 10_000)
            return max(engine.lr_at(t) for t in range(start, max(end, start + 1), stride))
        lr = opt._learning_rate
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
        if self.per_device_batch_size is not None:
            values["batch_size"] = self.per_device_batch_size * int(opt.gradient_accumulation_steps or 1) * \
                _world_size(model)
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
