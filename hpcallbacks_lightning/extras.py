"""Batch-size rules, scheduled hyperparameters, GAN schedules, the advisor and the LR range test.

Mixins with the Lightning hook methods, like :mod:`.callbacks`'s (combined with the ``Callback`` of
``lightning.pytorch`` or ``pytorch_lightning`` by :func:`.callbacks.build`); every number comes from a core
rule (:mod:`hpcallbacks.batch`, :mod:`hpcallbacks.params`, :mod:`hpcallbacks.gan`,
:mod:`hpcallbacks.advice`, :mod:`hpcallbacks.finder`), these classes only read the trainer and
write floats.

When things happen in a ``Trainer.fit`` (Lightning 2.6), besides :mod:`.callbacks`'s hooks::

``on_fit_start``     ``MicroBatchFinder`` probes the largest micro-batch that fits and sets the
                     dataloader's batch size and ``trainer.accumulate_grad_batches``;
                     ``GradientAccumulation`` sets ``trainer.accumulate_grad_batches`` (the train
                     data is loaded for its batch size: the seam's ``load_train_data``, as
                     ``trainer.estimated_stepping_batches`` does); ``ParamScheduler`` resolves
                     its targets; ``BatchRamp`` checks its ramp against the run;
``on_train_start``   ``ScaleLearningRate`` reads the effective batch; ``LRFinder`` runs its range
                     test and restores weights, optimizer state and RNG states;
``on_train_epoch_start``  ``BatchRamp`` sets the accumulation of the epoch; ``HyperparameterAdvisor``
                     checks the run once (after every ``on_train_start``, before the first update);
``on_train_batch_start``  ``ParamScheduler`` sets its values once per optimizer update;
``on_train_epoch_end``    ``LossBalance`` reads the logged loss terms;
``on_validation_end``     ``TrialReporter`` reports the monitored metric to its Optuna trial (or Ray
                     Tune) and stops the fit when the trial is pruned.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hpcallbacks import _checks as check
from hpcallbacks import advice as A
from hpcallbacks import batch as B
from hpcallbacks import finder as F
from hpcallbacks import run as R
from hpcallbacks import schedules as S
from hpcallbacks import torch as HT
from hpcallbacks.advice import HyperparameterWarning
from hpcallbacks.params import ParamSchedule, param_schedules
from hpcallbacks.search import TrialReporterBase
from hpcallbacks.torch import gan as TG
from hpcallbacks.torch import microbatch as HTM

from . import _seam as seam
from .callbacks import (
    _LOG_KW,
    DiscriminativeLRMixin,
    LightningCallback,
    StagedUnfreezeMixin,
    _log_every,
    _peers,
    _run_lengths,
    _ScheduleBase,
    mixins_of,
    updates,
)

log = logging.getLogger("hpcallbacks")



# ----------------------------------------------------------------------------------------------
# helpers
def per_device_batch_size(trainer: Any) -> int | None:
    """The train dataloader's batch size (per device), loading the train data if needed; None if unknown.

    Read from ``DataLoader.batch_size`` (or its ``batch_sampler.batch_size``); ``None`` for several
    train dataloaders or a loader without a fixed batch size.
    """
    if trainer.train_dataloader is None:
        seam.load_train_data(trainer)
    loader = trainer.train_dataloader
    if isinstance(loader, Mapping):
        loaders = list(loader.values())
    elif isinstance(loader, (list, tuple)):
        loaders = list(loader)
    else:
        loaders = [loader]
    if len(loaders) != 1 or loaders[0] is None:
        return None
    size = getattr(loaders[0], "batch_size", None)
    if size is None:
        size = getattr(getattr(loaders[0], "batch_sampler", None), "batch_size", None)
    return int(size) if isinstance(size, int) and size > 0 else None


def _batch_size(trainer: Any, given: int | None, who: str) -> int:
    size = given if given is not None else per_device_batch_size(trainer)
    if size is None:
        raise ValueError(f"{who}: the per-device batch size cannot be read from the train dataloader (several "
                         f"loaders, or no fixed batch_size): pass per_device_batch_size=")
    return size


def _effective_batch(trainer: Any, per_device: int) -> int:
    return per_device * max(1, int(trainer.accumulate_grad_batches)) * max(1, int(trainer.world_size))


def _automatic(pl_module: Any, who: str) -> None:
    if not pl_module.automatic_optimization:
        raise ValueError(f"{who} needs automatic optimization (Lightning accumulates micro-batches only then); with "
                         f"manual optimization (automatic_optimization=False) accumulate in training_step")


def _user_accumulation(trainer: Any, mine: int | None, who: str) -> None:
    """Refuse a Trainer(accumulate_grad_batches=k) or GradientAccumulationScheduler beside ``who``."""
    current = int(trainer.accumulate_grad_batches)
    if current != 1 and current != mine:
        raise ValueError(f"Trainer(accumulate_grad_batches={current}) and the {who} callback both set the "
                         f"accumulation: remove accumulate_grad_batches from the Trainer or the callback")
    for cb in trainer.callbacks:
        if type(cb).__name__ == "GradientAccumulationScheduler":
            raise ValueError(f"GradientAccumulationScheduler and the {who} callback both set the accumulation: "
                             "keep one")


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def _warn(message: str | None) -> None:
    if message is not None:
        warnings.warn(message, stacklevel=3)


def _find(cls: type, trainer: Any) -> Any:
    found = [cb for cb in trainer.callbacks if isinstance(cb, cls)]
    if not found:
        raise ValueError(f"the Trainer has no {cls.__name__.removesuffix('Mixin')} callback: add one to "
                         "Trainer(callbacks=[...])")
    if len(found) > 1:
        raise ValueError(f"the Trainer has {len(found)} {cls.__name__.removesuffix('Mixin')} callbacks; look them "
                         "up yourself or keep one")
    return found[0]


# ----------------------------------------------------------------------------------------------
# batch size (handbook H4)
class GradientAccumulationMixin:
    """Reach ``target_batch_size`` samples per optimizer update by gradient accumulation (handbook H4).

    At fit start sets ``trainer.accumulate_grad_batches`` to
    :func:`hpcallbacks.batch.accumulation_steps` ``(target_batch_size, per-device batch, world size)``:
    the per-device batch is the train dataloader's ``batch_size`` (or ``per_device_batch_size=``),
    the world size ``trainer.world_size``. A target that is not a multiple of ``per-device batch x
    world size`` is refused (``ValueError`` naming the nearest reachable sizes) unless
    ``exact=False``, which uses the nearest reachable one and warns. Every hpcallbacks schedule
    advances once per optimizer update (``trainer.global_step``), so it keeps its meaning; a
    default schedule length (``CosineDecay()`` over the run) counts the updates after the change.
    A torch LR scheduler that ``configure_optimizers`` built from ``trainer.estimated_stepping_batches``
    saw the accumulation before the change: use an hpcallbacks schedule callback instead.

    Refused (``ValueError`` at fit start): ``Trainer(accumulate_grad_batches=k)`` or Lightning's
    ``GradientAccumulationScheduler`` beside it, a ``BatchRamp``, manual optimization. As in
    Lightning, the last update of an epoch may hold fewer micro-batches. State: the accumulation.

    ``per_device_batch_size`` is named for what a Lightning loader's ``batch_size`` is: the batch of
    one process. Keras' adapter takes ``batch_size=`` instead, meaning what ``fit`` means by it (the
    global batch across replicas); each adapter speaks its framework's way.
    """

    def __init__(self, target_batch_size: int, exact: bool = True, per_device_batch_size: int | None = None) -> None:
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.exact = _bool("exact", exact)
        self.per_device_batch_size = (None if per_device_batch_size is None
                                      else check.positive_int("per_device_batch_size", per_device_batch_size))
        self.accumulation: B.Accumulation | None = None
        self._set: int | None = None
        self._saved: dict[str, Any] | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if _peers(trainer, BatchRampMixin):
            raise ValueError("GradientAccumulation and BatchRamp both set the accumulation: keep one (BatchRamp "
                             "grows the batch by accumulation itself)")
        _automatic(pl_module, "GradientAccumulation")
        _user_accumulation(trainer, self._set, "GradientAccumulation")
        per_device = _batch_size(trainer, self.per_device_batch_size, "GradientAccumulation")
        world = trainer.world_size
        acc = B.accumulation_for(self.target_batch_size, per_device, world, self.exact,
                                 f"per-device batch {per_device} and world size {world}")
        _warn(B.inexact_warning(acc, f"per-device batch {per_device} x world size {world}"))
        saved, self._saved = self._saved, None
        _warn(B.resume_warning(saved and saved.get("accumulation"), acc))
        trainer.accumulate_grad_batches = self._set = acc.steps
        self.accumulation = acc
        log.info("GradientAccumulation: %d micro-batches of %d x %d devices per update = %d samples", acc.steps,
                 per_device, acc.world_size, acc.effective_batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"accumulation": None if self.accumulation is None else self.accumulation.get_config()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = dict(state_dict)


class ScaleLearningRateMixin(_ScheduleBase):
    """Scale the learning rate with the batch size (handbook H4; Goyal et al. 2017), with warmup.

    ``lr = base LR x k`` with ``k`` the core's :func:`hpcallbacks.batch.scale_learning_rate` factor
    for the run's effective batch (per-device batch x ``accumulate_grad_batches`` x world size, read
    at train start, so after ``GradientAccumulation``) against ``base_batch_size``: ``rule="linear"``
    ``k = batch / base``, ``"sqrt"`` ``k = sqrt(batch / base)``. When the batch grows, ``k`` is
    reached by the core's :func:`hpcallbacks.batch.scaling_warmup` over ``warmup_epochs`` epochs of
    the run's updates (``0``: none), rising linearly from the unscaled rate.

    Composes like ``ReduceOnPlateau``: with a schedule callback (``CosineRestart()``, ...) it
    multiplies that schedule, ``lr(t) = schedule(t) x m(t)`` with ``m`` the warmup from 1 to ``k``
    (the schedule itself is not delayed); without one it owns the LR, ``lr(t) =
    scaling_warmup(Constant(scale_learning_rate(optimizer LR, ...)), ...)(t)``. A plateau factor
    applies after it. Refuses a ``BatchRamp`` (which scales the LR itself). State: the factor
    schedule, so a resumed run keeps it.
    """

    _order = 10

    def __init__(self, base_batch_size: int, rule: str = "linear", warmup_epochs: float = 5.0, *,
                 per_device_batch_size: int | None = None, log: bool = True) -> None:
        super().__init__(log=log)
        self.base_batch_size, self.rule, self.warmup_epochs = B.scaling_options(base_batch_size, rule, warmup_epochs)
        self.per_device_batch_size = (None if per_device_batch_size is None
                                      else check.positive_int("per_device_batch_size", per_device_batch_size))
        self.batch_size: int | None = None
        self.factor: S.Schedule | None = None  # m(t): 1 -> k over the warmup
        self._saved_factor: dict[str, Any] | None = None

    def _is_modifier(self) -> bool:
        return True

    def _modify(self, lr: float, step: int) -> float:
        return lr * self.factor(step)  # type: ignore[misc]

    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        return S.Constant(initial_lr)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if _peers(trainer, BatchRampMixin):
            raise ValueError("ScaleLearningRate and BatchRamp both scale the LR with the batch: keep one")
        super().on_fit_start(trainer, pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_start(trainer, pl_module)
        per_device = _batch_size(trainer, self.per_device_batch_size, "ScaleLearningRate")
        self.batch_size = _effective_batch(trainer, per_device)
        saved, self._saved_factor = self._saved_factor, None
        if saved is not None:
            self.factor = S.deserialize(saved)
            return
        spe, _ = _run_lengths(trainer)
        self.factor = B.scaling_factor(self.base_batch_size, self.batch_size, self.rule, self.warmup_epochs, spe,
                                       "an iterable data set without a length")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.factor is not None:
            state["factor"] = S.serialize(self.factor)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("factor"):
            self._saved_factor = state_dict["factor"]


class BatchRampMixin(_ScheduleBase):
    """"Don't decay the learning rate, increase the batch size" (Smith et al. 2017) by a core ramp.

    ``ramp``: a :class:`hpcallbacks.batch.BatchRamp` (the decay schedule you would run at
    ``base_batch_size``, the cap ``max_batch_size``, the per-device batch and world size). Its
    progress ``t`` counts base-batch steps, ``samples seen / base_batch_size``, kept by the callback
    (each update counts its nominal batch ``B``).

    When the batch changes: at the start of every epoch (``on_train_epoch_start``) the batch
    ``B = ramp.batch_size(t)`` is taken and ``trainer.accumulate_grad_batches`` set to
    ``ramp.accumulation(t).steps``; it holds for the whole epoch (Lightning counts accumulation
    within an epoch, so it cannot change safely mid-epoch). The LR is set every update:
    ``lr(t) = ramp.schedule(t) x B / base_batch_size`` with ``B`` the batch in effect, so the noise
    scale ``lr / B`` follows the schedule at every update, and once ``B`` reaches its cap the LR
    decays instead. This equals ``ramp.learning_rate(t)`` wherever the ramp's batch does not change
    inside an epoch (always after the cap).

    Owns the LR (a plateau factor may multiply it; another schedule callback, ``ScaleLearningRate``
    and ``GradientAccumulation`` are refused). At fit start the run must match the ramp: the train
    dataloader's batch size x ``trainer.world_size`` must equal ``ramp.unit`` and ``ramp.world_size``
    the trainer's (``ValueError`` otherwise). Automatic optimization only. State: samples seen and
    the batch of the current epoch (a mid-epoch resume keeps the epoch's batch). With a changing
    batch the updates per epoch change: give ``StagedUnfreeze`` plans in updates (``unit="update"``).
    """

    _tabled = False  # its LR depends on the samples seen, not only on the update count

    def __init__(self, ramp: B.BatchRamp, *, log: bool = True) -> None:
        super().__init__(log=log)
        if not isinstance(ramp, B.BatchRamp):
            raise ValueError(f"ramp must be a hpcallbacks.batch.BatchRamp; got {ramp!r}")
        self.ramp = ramp
        self.samples = 0  # samples seen (sum of the nominal batch of every update)
        self.batch_size = ramp.base_batch_size  # the batch of the current epoch
        self._epoch: int | None = None  # the epoch whose batch was chosen
        self._restored: dict[str, Any] | None = None
        self._set: int | None = None

    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        return self.ramp.schedule

    @property
    def progress(self) -> float:
        """``t``: samples seen / ``base_batch_size``."""
        return self.samples / self.ramp.base_batch_size

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        _automatic(pl_module, "BatchRamp")
        _user_accumulation(trainer, self._set, "BatchRamp")
        super().on_fit_start(trainer, pl_module)
        self.ramp.check_run(_batch_size(trainer, None, "BatchRamp"), int(trainer.world_size))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_start(trainer, pl_module)
        restored, self._restored = self._restored, None
        if restored is not None:
            self.samples = restored["samples"]
            self.batch_size = restored["batch_size"]
            self._epoch = restored["epoch"]
        else:
            self.samples, self._epoch = 0, None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if self._epoch != epoch:  # a resumed epoch keeps the batch it started with
            self._epoch = epoch
            self.batch_size = self.ramp.epoch_batch(self.progress, self.batch_size, epoch)
        trainer.accumulate_grad_batches = self._set = self.batch_size // self.ramp.unit
        self._last_step = -1  # the LR uses the new batch from the next update on
        super().on_train_epoch_start(trainer, pl_module)  # which it sets now

    def _lr_at(self, step: int) -> float:
        lr = self.ramp.schedule(self.progress) * self.batch_size / self.ramp.base_batch_size
        for m in self._multipliers:
            lr = m._modify(lr, step)
        return lr

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.samples += self.batch_size

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(samples=self.samples, batch_size=self.batch_size, epoch=self._epoch)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "samples" in state_dict:
            self._restored = {k: state_dict[k] for k in ("samples", "batch_size", "epoch")}


# ----------------------------------------------------------------------------------------------
# any hyperparameter on a schedule
class ParamSchedulerMixin:
    """Any numeric hyperparameter on a core schedule, set once per optimizer update (floats only).

    ``ParamScheduler({"optimizer.momentum": Cyclic(0.85, 0.95, 100), "module.head.dropout.p": ...})``
    or ``ParamScheduler(ParamSchedule("momentum", ...), ...)`` (:class:`hpcallbacks.ParamSchedule`;
    both forms mix). The value at optimizer update ``t`` (``trainer.global_step``; with manual
    optimization that counts every optimizer's steps) is ``schedule(t)``. Names:

    * ``"optimizer.<key>"`` (every optimizer having it) or ``"optimizer.<i>.<key>"``: a param-group
      hyperparameter, in every param group: ``momentum`` (on Adam-type optimizers: ``betas[0]``,
      the 1cycle convention), ``beta_1`` / ``beta_2`` (``betas[0]`` / ``betas[1]``), ``epsilon``
      (``eps``), ``weight_decay`` (groups built with ``weight_decay=0``, biases and norms, stay at
      0), ``dampening``, or any other numeric key of the groups; learning rates are refused (use a
      schedule callback);
    * bare ``momentum``, ``beta_1``, ``beta_2``, ``epsilon``, ``eps``, ``weight_decay``,
      ``dampening``: the same as ``"optimizer.<key>"``;
    * ``"module.<path>"`` or any other name: an attribute path of the LightningModule
      (``"module.noise_std"``, ``"module.encoder.0.p"``; digits index ``ModuleList`` /
      ``Sequential``). A path ending at a Dropout layer sets its ``p``; a bare ``"dropout"`` with no
      such attribute sets ``p`` of every Dropout layer. The attribute must hold a number (set as a
      float) or a one-element float tensor (``fill_``, no host sync).

    Targets are resolved at fit start (``ValueError`` naming the name otherwise), and values that a
    schedule would take outside the allowed range over the run (momentum, betas, dropout in
    [0, 1]; eps and weight decay >= 0) are refused then. Logs ``param/<name>`` every
    ``log_every_n_steps``. Stateless: the values are a function of ``trainer.global_step``, which
    Lightning restores on resume.
    """

    def __init__(self, *schedules: Mapping[str, Any] | ParamSchedule, log: bool = True) -> None:
        params = param_schedules(*schedules)
        self.schedules = tuple(params)
        self.log_values = _bool("log", log)
        self._targets: list[HT.ParamTarget] = []
        self._values: list[float] = []
        self._last_step = -1
        self._every = 0

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._targets = HT.resolve_param_targets(self.schedules, pl_module, list(trainer.optimizers),
                                              owner="LightningModule", optimizers_from="configure_optimizers returned")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        _, total = _run_lengths(trainer)
        HT.check_param_schedules(self.schedules, self._targets, int(trainer.global_step), total)
        self._last_step = -1
        self._values = [0.0] * len(self.schedules)
        self._every = _log_every(trainer, self.log_values)
        self._updates = updates(trainer)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        step = self._updates.completed
        if step == self._last_step:
            return
        self._last_step = step
        self._values = HT.set_params(self.schedules, self._targets, step)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._every and self._updates.completed % self._every == 0:
            for p, v in zip(self.schedules, self._values, strict=True):
                pl_module.log(f"param/{p.name}", v, **_LOG_KW)


# ----------------------------------------------------------------------------------------------
# GAN schedules (handbook H7)
class _GanMixin(TG.GanValues):
    """The discriminator update count ``step`` a GAN schedule is evaluated at, and the lookup."""

    def _init_count(self, optimizer: int | None) -> None:
        if optimizer is not None:
            optimizer = check.non_negative_int("optimizer", optimizer)
        self.optimizer = optimizer
        self.step = 0
        self._batches = 0
        self._steps = 0
        self._automatic = True
        self._rank, self._world, self._micro = 0, 1, 0

    @classmethod
    def of(cls, trainer: Any) -> Any:
        """The one callback of this class in ``trainer.callbacks`` (``ValueError`` if none or several)."""
        return _find(cls, trainer)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.optimizer is not None and self.optimizer >= len(trainer.optimizers):
            raise ValueError(f"{type(self).__name__}: optimizer={self.optimizer} but configure_optimizers returned "
                             f"{len(trainer.optimizers)} optimizer(s)")
        self._automatic = bool(pl_module.automatic_optimization)
        self._rank = int(getattr(trainer, "global_rank", 0))
        self._world = max(1, int(getattr(trainer, "world_size", 1)))

    def _count(self, trainer: Any) -> int:
        if self.optimizer is not None:
            return self._steps
        return trainer.global_step if self._automatic else self._batches

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.step = self._count(trainer)
        acc = int(trainer.accumulate_grad_batches) if self._automatic else 1
        self._micro = batch_idx % acc if acc > 1 else 0  # the micro-batch's place in its update

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.optimizer is not None and optimizer is trainer.optimizers[self.optimizer]:
            self._steps += 1
            self.step = self._steps

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self._batches, "optimizer_steps": self._steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._batches = int(state_dict.get("batches", 0))
        self._steps = int(state_dict.get("optimizer_steps", 0))


class _LoggedGanMixin(_GanMixin):
    """A GAN callback that logs its current value (``_LOG``) every ``log_every_n_steps`` when ``log``."""

    def _init_log(self, log: bool) -> None:
        self.log_value = _bool("log", log)
        self._every = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._every = _log_every(trainer, self.log_value)
        self._updates = updates(trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._every and self._updates.completed % self._every == 0:
            name, attribute = self._LOG  # type: ignore[misc]
            pl_module.log(name, getattr(self, attribute), **_LOG_KW)


_GAN_DOC = """

    ``step``, the update the value is for: with automatic optimization ``trainer.global_step``
    (optimizer updates); with manual optimization (a GAN's ``training_step`` stepping two
    optimizers, where ``global_step`` counts the steps of both) the training batches done so far,
    i.e. one per ``training_step`` call, so the discriminator's schedule advances once per batch;
    with ``optimizer=i`` the steps of ``trainer.optimizers[i]`` done so far (it advances as that
    optimizer steps, also inside one ``training_step``). Kept in the checkpoint state.

    Use from a ``training_step`` (``self.trainer`` is set there)::

        noise = InstanceNoise.of(self.trainer)        # the callback in Trainer(callbacks=[...])
        d_real = self.discriminator(noise.apply(real))

    or pass the callback to the module's constructor and keep a reference (not as a hyperparameter:
    ``save_hyperparameters(ignore=[...])``). Values are Python floats from the core rule; the tensor
    work (:mod:`hpcallbacks.torch.gan`) never reads a tensor back.
    """


class InstanceNoiseMixin(TG.InstanceNoiseValues, _LoggedGanMixin):
    __doc__ = TG.InstanceNoiseValues.__doc__ + " Logs ``instance_noise_std``." + _GAN_DOC

    def __init__(self, schedule: Any, optimizer: int | None = None, *, log: bool = True) -> None:
        self._init_values(schedule)
        self._init_count(optimizer)
        self._init_log(log)


class LabelSmoothingMixin(TG.LabelSmoothingValues, _GanMixin):
    __doc__ = TG.LabelSmoothingValues.__doc__ + _GAN_DOC


class LabelFlipMixin(TG.LabelFlipValues, _LoggedGanMixin):
    __doc__ = TG.LabelFlipValues.__doc__ + """ ``index`` numbers the samples of the update's whole batch:
    sample ``i`` of a ``n``-sample micro-batch has index ``(m * world_size + r) * n + i`` on rank ``r``
    for the ``m``-th micro-batch of the update (``m = batch_idx % accumulate_grad_batches``; 0 with
    manual optimization), so ranks and micro-batches flip different samples. ``.probability`` is
    the current ``p``. Logs ``label_flip_probability``.""" + _GAN_DOC

    def __init__(self, schedule: Any, seed: int = 0, optimizer: int | None = None, *, log: bool = True) -> None:
        self._init_values(schedule, seed)
        self._init_count(optimizer)
        self._init_log(log)


# ----------------------------------------------------------------------------------------------
# the advisor (handbook H1, H2)
def _report(who: str, findings: Sequence[A.Finding], strict: bool, trainer: Any) -> None:
    A.report(who, findings, strict, emit=getattr(trainer, "is_global_zero", True))


def _peak_lr(trainer: Any, opt: Any) -> float | None:
    """The largest LR the hpcallbacks LR callbacks set over the run (sampled at <= 10,000 updates), else the
    optimizer's base LR."""
    owners = [cb for cb in _peers(trainer, _ScheduleBase) if cb._owns_lr() and cb.schedule is not None]
    if owners:
        _, total = _run_lengths(trainer)
        end = int(total) if total != float("inf") else int(trainer.global_step) + 10_000
        start = int(trainer.global_step)
        stride = max(1, (end - start) // 10_000)
        return max(owners[0]._lr_at(t) for t in range(start, max(end, start + 1), stride))
    group = opt.param_groups[0]
    return HT.as_float(group.get("base_lr", group["lr"]))


class HyperparameterAdvisorMixin(A.AdvisorBase):
    """Check the run against the handbook's recommended values (H2) once, before the first update.

    Reads, at the start of the first training epoch (after every ``on_train_start``, so after
    ``GradientAccumulation`` and the schedule callbacks): the optimizer's kind (``SGD`` ->
    ``"sgd"`` / ``"sgd_momentum"`` / ``"nesterov"``, ``Adam`` -> ``"adam"`` (``"adamw"`` with
    ``decoupled_weight_decay``), ``AdamW`` -> ``"adamw"``, hpcallbacks ``LARS`` -> SGD's; others:
    only batch size, dropout and kernels are checked), the learning rate (the peak of the schedule
    callback's schedule over the run, else the optimizer's LR), momentum or ``betas`` / ``eps``,
    the largest ``weight_decay`` of the param groups, the effective batch (per-device x
    accumulation x world size), the ``p`` of every enabled Dropout layer and the kernel sizes of
    ``Conv2d`` layers, and runs :func:`hpcallbacks.advice.check`. ``fine_tuning=None`` means
    "fine-tuning when a ``StagedUnfreeze`` or ``DiscriminativeLR`` is in the Trainer";
    ``from_scratch_learning_rate`` sets the fine-tuning range (1 to 2 orders of magnitude below).

    Findings of severity ``"warning"`` are issued as :class:`HyperparameterWarning` (rank 0),
    ``"info"`` ones logged; ``strict=True`` raises ``ValueError`` listing the warnings instead,
    before any update. ``.findings`` and ``.values`` (what was checked) stay on the callback.
    """

    def __init__(self, strict: bool = False, fine_tuning: bool | None = None,
                 from_scratch_learning_rate: float | None = None) -> None:
        self._init_advisor(strict, fine_tuning, from_scratch_learning_rate, boolean=_bool)
        self._done = False

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._done = False

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._done:
            return
        self._done = True
        _report("HyperparameterAdvisor", self._advise(self.read(trainer, pl_module)), self.strict, trainer)

    def read(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """The arguments of :func:`hpcallbacks.advice.check` this run has."""
        values: dict[str, Any] = {}
        opt = trainer.optimizers[0] if trainer.optimizers else None
        kind = HT.optimizer_kind(opt) if opt is not None else None
        if opt is not None and kind is not None:
            values["optimizer"] = kind
            values["learning_rate"] = _peak_lr(trainer, opt)
            values.update(HT.optimizer_values(opt, kind))
        else:
            values["optimizer"] = "sgd"  # only the rows that do not depend on the optimizer are checked
            if opt is not None:
                log.info("HyperparameterAdvisor: %s is not in the handbook's table; checking batch size, dropout and "
                         "kernels only", type(opt).__name__)
        per_device = per_device_batch_size(trainer)
        if per_device is not None:
            values["batch_size"] = _effective_batch(trainer, per_device)
        values["dropout_rates"] = HT.dropout_rates(pl_module)
        values["kernel_sizes"] = HT.kernel_sizes(pl_module)
        fine = self.fine_tuning
        if fine is None:
            fine = bool(_peers(trainer, StagedUnfreezeMixin) or _peers(trainer, DiscriminativeLRMixin))
        values.update(A.fine_tuning_values(fine, self.from_scratch_learning_rate))
        return values


class LossBalanceMixin(A.LossBalanceBase):
    """Check that the loss terms stay within two orders of magnitude of each other (handbook H2).

    ``terms``: the names of two or more loss terms the module logs (``self.log("loss_a", ...)``,
    with ``on_epoch=True`` or from validation), read from ``trainer.callback_metrics`` at the end of
    every ``every_n_epochs``-th training epoch; ``reference``: the main term (default the first).
    Runs :func:`hpcallbacks.advice.loss_balance`: when the largest term is more than 100x the
    smallest, a :class:`HyperparameterWarning` names them and the suggested weights (``strict=True``:
    ``ValueError``, which stops training). ``.weights`` holds the last suggestion (1.0 each when
    balanced) for the module to use (``LossBalance.of(self.trainer).weights``); ``.findings``,
    ``.values`` the last check (under DDP rank 0's values, broadcast, unless the terms are logged
    with ``sync_dist=True``). A term not logged warns once and skips the check. State: the last
    suggestion and values.
    """

    def __init__(self, terms: Sequence[str] = ("loss_a", "loss_b"), every_n_epochs: int = 1, strict: bool = False,
                 reference: str | None = None) -> None:
        self._init_balance(terms, every_n_epochs, strict, reference, boolean=_bool)

    @classmethod
    def of(cls, trainer: Any) -> Any:
        """The one LossBalance in ``trainer.callbacks``."""
        return _find(cls, trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics = trainer.callback_metrics
        if self._missing(metrics, "were not logged", "log them with self.log(name, value, on_epoch=True)"):
            return
        values = {t: HT.as_float(metrics[t]) for t in self.terms}  # one host read per term, once per check
        result = self._balance(trainer.strategy.broadcast(values, src=0))  # every DDP rank: rank 0's values
        if result is not None:
            _report("LossBalance", result.findings, self.strict, trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "values": dict(self.values)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.weights = dict(state_dict.get("weights", self.weights))
        self.values = dict(state_dict.get("values", {}))


# ----------------------------------------------------------------------------------------------
# the learning-rate range test
def _loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return output.get("loss")
    return None


class LRFinderMixin(F.FinderBase):
    """The learning-rate range test (Smith 2017) before training, by the core's :mod:`hpcallbacks.finder`.

    At train start (a fresh run only: a resumed run keeps the checkpoint's result) it trains
    ``num_steps`` optimizer updates through the module's ``training_step`` on the train data, the
    LR of update ``t`` from :func:`hpcallbacks.finder.lr_range` (``min_lr`` .. ``max_lr``,
    ``mode="exponential"`` or ``"linear"``; times each param group's ``lr_factor``), each update of
    ``accumulate_grad_batches`` micro-batches (through ``trainer.strategy.training_step``: the
    precision context and DDP apply; the loss is averaged over ranks so every rank stops and
    suggests alike). It stops early when the smoothed loss (``beta``) exceeds ``divergence`` x
    its best. Then the weights and buffers (bit-identical), the optimizer state and
    hyperparameters and the RNG states (torch, CUDA, ``random``, numpy) are restored, so the run
    goes on as if the test had not happened; ``self.log`` calls of the module are dropped during
    the test and no callback hook runs, but ``training_step`` itself runs (its other side
    effects, e.g. appending to a list, happen ``num_steps x accumulate_grad_batches`` times).

    ``.suggestion`` is the suggested LR (:func:`hpcallbacks.finder.suggest`: ``method="steepest"``
    or ``"min_loss"``, ``skip_start`` / ``skip_end``), ``.result`` the LRs and losses; both in
    ``state_dict``. ``plot``: a path for the picture (matplotlib, rank 0). ``apply=True`` makes the
    suggestion the run's LR: the optimizer's param groups (x ``lr_factor``) and the base LR of the
    hpcallbacks schedule callbacks (``CosineRestart()`` then decays from it); refused with an LR
    scheduler from ``configure_optimizers``. The test syncs the loss to the host once per test
    update (it is not training). Automatic optimization, one optimizer.

    A test cut short (the loss became nan or inf, or it diverged before the suggestion rule had its
    points: :attr:`hpcallbacks.finder.RangeResult.cut_short`) warns once with a
    :class:`HyperparameterWarning` saying what to change; ``apply=True`` still applies its suggestion.
    """

    def __init__(self, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100, mode: str = "exponential",
                 method: str = "steepest", beta: float = 0.98, divergence: float = 4.0, skip_start: int = 10,
                 skip_end: int = 5, plot: str | Path | None = None, apply: bool = False) -> None:
        self._init_finder(min_lr, max_lr, num_steps, mode, method, beta, divergence, skip_start, skip_end, plot)
        self.apply = _bool("apply", apply)
        self._loaded = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        _automatic(pl_module, "LRFinder")
        if len(trainer.optimizers) != 1:
            raise ValueError(f"LRFinder needs exactly one optimizer; configure_optimizers returned "
                             f"{len(trainer.optimizers)}")
        if self.apply and (getattr(trainer, "lr_scheduler_configs", None) or []):
            raise ValueError("LRFinder(apply=True) cannot change the base LR of the LR scheduler that "
                             "configure_optimizers returns: use an hpcallbacks schedule callback, or apply=False and "
                             "read .suggestion")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self._loaded or trainer.global_step > 0:
            self._loaded = False
            log.info("LRFinder: resumed run; keeping the checkpoint's suggestion %s", self.suggestion)
            return
        lr = self._finish(self._run(trainer, pl_module), plot=trainer.is_global_zero)
        if lr is not None:
            self._apply(trainer, lr)

    def _run(self, trainer: Any, pl_module: Any) -> F.RangeResult:
        opt = trainer.optimizers[0]
        acc = max(1, int(trainer.accumulate_grad_batches))
        snapshot = HT.Snapshot(pl_module, [opt])  # weights, optimizer state, RNG states
        batches = HT.Batches(trainer.train_dataloader)

        def next_loss() -> torch.Tensor:
            batch = trainer.strategy.batch_to_device(batches.next())
            loss = _loss_of(trainer.strategy.training_step(batch, batches.count - 1))
            if loss is None:
                raise ValueError("LRFinder: training_step returned no loss; the range test needs one")
            return loss

        try:
            pl_module.train()
            with torch.enable_grad(), seam.no_logging(pl_module):
                return HT.range_test(self._new_test(), opt, next_loss, acc,
                                  reduce=lambda mean: trainer.strategy.reduce(mean, reduce_op="mean"))
        finally:
            snapshot.restore()

    def _apply(self, trainer: Any, lr: float) -> None:
        for opt in trainer.optimizers:
            HT.set_base_lr(opt, lr)
        mine = trainer.callbacks.index(self)
        for cb in _peers(trainer, _ScheduleBase):
            cb._initial_lr = lr
            if trainer.callbacks.index(cb) < mine and cb._owns_lr():  # its schedule was built already
                cb.schedule = cb._make_schedule(lr, *cb._lengths)
        log.info("LRFinder: learning rate set to %g", lr)

    def state_dict(self) -> dict[str, Any]:
        return {"result": None if self.result is None else self.result.get_config()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("result") is not None:
            self.result = F.RangeResult.from_config(state_dict["result"])
            self._loaded = True


# ----------------------------------------------------------------------------------------------
# the largest micro-batch that fits (handbook H4)
def _batch_holders(trainer: Any, pl_module: Any) -> list[tuple[str, Any]]:
    """Every holder of a ``batch_size`` that a ``train_dataloader()`` may use, named, as Lightning's
    ``BatchSizeFinder`` finds them: the LightningModule, its ``hparams``, the LightningDataModule, its ``hparams``."""
    holders: list[tuple[str, Any]] = []
    for owner, name in ((pl_module, "LightningModule"), (trainer.datamodule, "LightningDataModule")):
        if owner is None:
            continue
        if hasattr(owner, "batch_size"):
            holders.append((f"{name}.batch_size", owner))
        hparams = getattr(owner, "hparams", None)
        if isinstance(hparams, Mapping) and "batch_size" in hparams:
            holders.append((f"{name}.hparams['batch_size']", hparams))
    return holders


def _set_micro_batch(trainer: Any, holders: Sequence[tuple[str, Any]], size: int) -> None:
    """Make ``size`` the train dataloader's batch size; Lightning loads the data anew at its next load.

    A ``DataLoader`` passed to ``fit()`` is rebuilt with the new batch size; otherwise every holder
    (:func:`_batch_holders`) is set, as Lightning's ``BatchSizeFinder`` sets them.
    """
    source = seam.train_source(trainer)
    if isinstance(source, torch.utils.data.DataLoader):
        seam.set_train_source(trainer, HTM.with_batch_size(source, size))
        return
    if not holders or isinstance(source, (Mapping, list, tuple)):
        raise ValueError("MicroBatchFinder sets the micro-batch as the train dataloader's batch size: pass one "
                         "torch DataLoader to fit(), or give the LightningModule or LightningDataModule a "
                         "batch_size attribute (or hyperparameter) that its train_dataloader() uses, as "
                         "Lightning's BatchSizeFinder needs")
    for _, holder in holders:
        if isinstance(holder, Mapping):
            holder["batch_size"] = size  # type: ignore[index]
        else:
            holder.batch_size = size
    seam.reload_train_data(trainer)


def _first_batch(trainer: Any, holders: Sequence[tuple[str, Any]], size: int) -> Any:
    """The first batch of the train data loaded at batch size ``size``, on the device; refused when the loader
    does not give ``size`` samples (a ``train_dataloader()`` that ignores the ``batch_size`` it was given).

    The run's own ``limit_train_batches`` does not apply here (a probe reads one batch), as in Lightning's
    ``BatchSizeFinder``: a size the run will not use never trips the run's limits.
    """
    _set_micro_batch(trainer, holders, size)
    limit, trainer.limit_train_batches = trainer.limit_train_batches, 1.0
    try:
        seam.load_train_data(trainer)
        loader = trainer.train_dataloader
        if loader is None:
            raise ValueError("MicroBatchFinder: the Trainer has no train dataloader to probe with")
        whole = trainer.num_training_batches == 1  # the whole (shard of the) data set is one smaller batch
        batches = HT.Batches(loader)
        try:
            batch = batches.next()
        finally:
            batches.close()
    finally:
        trainer.limit_train_batches = limit
        seam.reload_train_data(trainer)  # the run loads its data with its own limits
    got = HTM.batch_length(batch)
    if got is not None and got != size and not (whole and got < size):
        where = ", ".join(name for name, _ in holders) or "the train DataLoader"
        raise ValueError(f"MicroBatchFinder set the train batch size to {size} ({where}), but the train dataloader "
                         f"gives batches of {got}: build train_dataloader()'s DataLoader with "
                         f"batch_size=self.batch_size (or self.hparams.batch_size), so the micro-batch it sets is used")
    return trainer.strategy.batch_to_device(batch)


class MicroBatchFinderMixin:
    """The largest micro-batch that fits in memory, accumulated to ``target_batch_size`` exactly (handbook H4).

    When the batch a recipe needs does not fit, accumulate gradients over smaller micro-batches
    rather than change the recipe. At fit start (before the first update, after every ``setup``,
    so a ``StagedUnfreeze``'s groups are known) it runs the core's
    :func:`hpcallbacks.batch.fit_micro_batch`: among the divisors of ``target_batch_size /
    world size`` (at most ``max_micro_batch``), the largest ``n`` for which a trial step fits,
    then sets the train dataloader's batch size to ``n`` and ``trainer.accumulate_grad_batches``
    to ``target / (n x world size)``: micro-batch x accumulation x world size is the target,
    exactly. Every hpcallbacks schedule counts optimizer updates, and a default schedule length
    (``CosineDecay()`` over the run) is taken after the change, so the learning rate of every
    update is that of a run set by hand to the same micro-batch and accumulation.

    The trial step of ``n`` (:func:`hpcallbacks.torch.microbatch.find_micro_batch`): the first
    batch of the real train dataloader at batch size ``n`` (per process under DDP), through the
    module's ``training_step`` (precision context of the Trainer, no DDP sync), backward, a step of
    the optimizers and a second forward + backward, with every group that a ``StagedUnfreeze`` of
    the Trainer trains at some stage trainable (the memory of its widest stage, so the run does
    not run out of memory at an unfreeze). An out-of-memory error means "does not fit"
    (:func:`hpcallbacks.torch.microbatch.is_out_of_memory`: ``torch.OutOfMemoryError`` and the
    allocation failures accelerate reads as such, a CPU's included); any other error is raised. The
    run's ``limit_train_batches`` does not apply to a probe (it reads one batch). Under DDP every
    decision is the minimum over the ranks. Afterwards the
    weights and buffers, optimizer state, gradients, ``requires_grad`` flags, training modes and
    RNG states are restored bit-identically; ``self.log`` calls of the module are dropped during
    the probes. ``.result`` is the :class:`hpcallbacks.batch.MicroBatch` (in ``state_dict``: a
    resumed run keeps the checkpoint's micro-batch without probing).

    The batch size is set as Lightning's ``BatchSizeFinder`` sets it: a ``DataLoader`` passed to
    ``fit()`` is rebuilt with the new ``batch_size``; with ``train_dataloader()`` of the module or
    datamodule, every ``batch_size`` attribute or hyperparameter of the module and the datamodule is
    set (more than one warns: keep one). The batch the loader then gives must have that size (a
    ``train_dataloader()`` that ignores the attribute is refused at fit start, also on resume;
    a data set smaller than one micro-batch is accepted). Refused (``ValueError``
    at fit start): ``Trainer(accumulate_grad_batches=k)``, ``GradientAccumulationScheduler``, a
    ``GradientAccumulation`` or ``BatchRamp`` beside it, manual optimization, a target below or not
    a multiple of the world size, and no micro-batch that fits (the message says what to change).
    """

    def __init__(self, target_batch_size: int, max_micro_batch: int | None = None) -> None:
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.max_micro_batch = None if max_micro_batch is None else check.positive_int("max_micro_batch",
                                                                                        max_micro_batch)
        self.result: B.MicroBatch | None = None
        self._set: int | None = None
        self._loaded = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        for other, name in ((GradientAccumulationMixin, "GradientAccumulation"), (BatchRampMixin, "BatchRamp")):
            if _peers(trainer, other):
                raise ValueError(f"{name} and MicroBatchFinder both set the accumulation: keep one (MicroBatchFinder "
                                 "reaches target_batch_size by accumulation itself)")
        _automatic(pl_module, "MicroBatchFinder")
        _user_accumulation(trainer, self._set, "MicroBatchFinder")
        world = max(1, int(trainer.world_size))
        holders = [] if isinstance(seam.train_source(trainer), torch.utils.data.DataLoader) else \
            _batch_holders(trainer, pl_module)
        if len(holders) > 1:
            names = ", ".join(name for name, _ in holders)
            warnings.warn(f"MicroBatchFinder: {len(holders)} objects hold batch_size ({names}); every one is set to "
                          "the micro-batch, as Lightning's BatchSizeFinder does: keep one", R.RunWarning, stacklevel=2)
        saved, self._loaded = self.result if self._loaded else None, False
        if saved is not None and (saved.target_batch_size, saved.world_size) == (self.target_batch_size, world):
            log.info("MicroBatchFinder: resumed run; keeping the checkpoint's %s", saved.describe())
            with torch.random.fork_rng(devices=[]):  # the sampler's draw is not the run's
                _first_batch(trainer, holders, saved.micro_batch_size)  # the loader uses the batch size it is given
        else:
            self.result = self._search(trainer, pl_module, world, holders)
            log.info("MicroBatchFinder: %s (probed %s)", self.result.describe(), list(self.result.probes))
        result = self.result
        assert result is not None
        _set_micro_batch(trainer, holders, result.micro_batch_size)
        trainer.accumulate_grad_batches = self._set = result.accumulation

    def _search(self, trainer: Any, pl_module: Any, world: int, holders: Sequence[tuple[str, Any]]) -> B.MicroBatch:
        widest = [p for plan in _peers(trainer, StagedUnfreezeMixin)
                  for p in HTM.widest_trainable(plan.groups, plan._effective_plan)]

        def loss_of(batch: Any) -> torch.Tensor:
            with trainer.precision_plugin.train_step_context():
                loss = _loss_of(pl_module.training_step(batch, 0))
            if loss is None:
                raise ValueError("MicroBatchFinder: training_step returned no loss; the probe needs one")
            return loss

        def reduce_min(code: int) -> int:
            return int(trainer.strategy.reduce(torch.tensor(code, device=pl_module.device), reduce_op="min"))

        try:
            with seam.no_logging(pl_module):
                return HTM.find_micro_batch(self.target_batch_size, world, pl_module, list(trainer.optimizers),
                                            lambda n: _first_batch(trainer, holders, n), loss_of,
                                            max_micro_batch=self.max_micro_batch, trainable=widest,
                                            reduce_min=reduce_min if world > 1 else None)
        except ValueError as e:
            raise ValueError(e if str(e).startswith("MicroBatchFinder") else f"MicroBatchFinder: {e}") from None

    def state_dict(self) -> dict[str, Any]:
        return {"micro_batch": self.result.get_config() if self.result is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("micro_batch")
        if saved:  # the run resumes with the checkpoint's micro-batch and accumulation
            self.result, self._loaded = B.MicroBatch.from_config(saved), True


# ----------------------------------------------------------------------------------------------
# hyperparameter search (handbook H8)
class TrialReporterMixin(TrialReporterBase):
    """Report the monitored metric to an Optuna trial or Ray Tune after each validation; stop when pruned.

    ``trial`` is an ``optuna.trial.Trial``, ``"ray"`` (inside a Ray Tune function trainable) or
    ``None``; ``monitor`` a metric of ``trainer.callback_metrics`` (default ``"val_loss"``). At
    ``on_validation_end`` (not during the sanity check) it reports ``monitor`` at step
    ``trainer.current_epoch`` (:class:`hpcallbacks.search.Reporter`: ``trial.report`` then the
    study's pruner); when the pruner says so it sets ``trainer.should_stop = True``: the epoch ends
    and ``fit`` returns. After ``fit``, :meth:`raise_if_pruned` raises ``optuna.TrialPruned`` so the
    study records the trial as pruned: the objective's two lines are ``trainer.fit(...)`` and
    ``reporter.raise_if_pruned()``::

        import optuna, lightning.pytorch as L
        from hpcallbacks_lightning import TrialReporter

        def objective(trial):
            model = Net(lr=trial.suggest_float("lr", 1e-4, 1e-1, log=True))  # logs "val_loss"
            reporter = TrialReporter(trial, monitor="val_loss")
            trainer = L.Trainer(max_epochs=10, callbacks=[reporter])
            trainer.fit(model, train_loader, val_loader)
            reporter.raise_if_pruned()
            return trainer.callback_metrics["val_loss"].item()

        optuna.create_study(pruner=optuna.pruners.MedianPruner()).optimize(objective, n_trials=20)

    Under DDP (``strategy="ddp"``: every rank runs the objective) only rank 0 talks to its trial;
    its decision reaches every rank through ``trainer.strategy.broadcast`` (each rank reports at
    each validation, so none waits in a collective the others skipped), and every rank stops at
    the same epoch. For every rank to train with rank 0's sampled values, read them through
    :func:`hpcallbacks.search.shared_params` inside ``fit``, e.g. in the module's ``setup``::

        def setup(self, stage):
            self.params = shared_params(self.params, lambda obj: self.trainer.strategy.broadcast(obj, src=0))

    (and build what depends on them there, or in ``configure_optimizers``). ``.pruned``,
    ``.pruned_step`` (the epoch) and ``.message`` say what happened, on every rank.

    A ``monitor`` not logged at a validation end is a ``ValueError`` naming it and the keys logged;
    a fit that will validate nothing (no validation loader, no ``validation_step``,
    ``limit_val_batches=0``) is refused at fit start, and one that never validated warns at its end.
    ``strategy="ddp_spawn"`` (``"ddp_fork"``, ``"ddp_notebook"``) fits in processes of its own: rank 0
    writes the prune to the trial's storage and :meth:`raise_if_pruned`, in the objective's process,
    reads it (an RDB or journal storage); an in-memory study is refused before the ranks start
    (``strategy="ddp"`` takes any storage: the objective's process is rank 0). A multi-objective
    study gets no report, with a warning when the reporter is built.
    """

    def __init__(self, trial: Any, monitor: str | None = None) -> None:
        self._init_reporter(trial, monitor)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        main = bool(trainer.is_global_zero)
        broadcast = (lambda obj: trainer.strategy.broadcast(obj, src=0)) if int(trainer.world_size) > 1 else None
        self._start(main, broadcast)
        self._check_evaluates(
            bool(trainer.enable_validation),
            "limit_val_batches=0" if trainer.limit_val_batches == 0 else
            "no validation loop: fit got no val_dataloaders, or the LightningModule has no validation_step",
            "give fit a validation DataLoader and log the monitor in validation_step")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if self._report(trainer.callback_metrics, int(trainer.current_epoch)):
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._end()


# ----------------------------------------------------------------------------------------------
# the whole fine-tuning recipe (handbook H2, H3, H4, H5)
def _samples(trainer: Any, given: int | None) -> int:
    """The train data set's length (the data is loaded now if needed), or ``given``."""
    if given is not None:
        return given
    if trainer.train_dataloader is None:
        seam.load_train_data(trainer)
    loader = trainer.train_dataloader
    try:
        return len(loader.dataset)  # type: ignore[union-attr]
    except (TypeError, AttributeError):
        raise ValueError("FineTune: the number of training samples cannot be read from the train dataloader (several "
                         "loaders, or a data set without a length): pass num_samples=") from None


class FineTuneMixin(StagedUnfreezeMixin, _ScheduleBase):
    """The handbook's whole fine-tuning recipe in one callback (fastai's ``learn.fine_tune`` for Lightning).

    At fit start the core :class:`hpcallbacks.recipe.Recipe` is computed from the run: the train data
    set's length (or ``num_samples``), ``similar``, the layer groups (``groups``, as for
    ``StagedUnfreeze``), the epochs and optimizer updates per epoch, the optimizer (its H2 row),
    the per-device batch size and whether the module has BatchNorm layers; then it acts as the
    ``StagedUnfreeze`` (plan, per-group factors, BatchNorm policy ``bn`` unless given) and the
    ``LearningRateSchedule`` (a cosine per stage with a warm restart at each unfreeze) the recipe
    names. ``learning_rate``: ``None`` (H2's rule for the optimizer), a number (the head's peak) or
    ``"range_test"`` (the rate an ``LRFinder(apply=True)`` of the same Trainer finds).
    ``str(callback.recipe)`` explains every choice with its handbook section.

    It is a schedule and a plan at once (:mod:`hpcallbacks.run`, role ``"recipe"``): another LR
    schedule, ``StagedUnfreeze`` or ``DiscriminativeLR`` beside it is refused at fit start; LR
    modifiers, ``ReduceOnPlateau``, ``GradientAccumulation``, ``MicroBatchFinder`` and
    ``TrialReporter`` work beside it. Its checkpoint state is StagedUnfreeze's and the schedule's,
    so a run resumed from ``ckpt_path`` continues the same recipe.

    >>> cb = FineTune(similar=False)  # doctest: +SKIP
    """

    def __init__(self, similar: bool = False, learning_rate: float | str | None = None,
                 num_samples: int | None = None, groups: Any = None, bn: str | None = None, head_epochs: float = 1.0,
                 large_threshold: int = 10_000, *, log: bool = True) -> None:
        from hpcallbacks.plans import FreezePlan
        from hpcallbacks.recipe import fine_tune_arguments

        StagedUnfreezeMixin.__init__(self, FreezePlan.head_then_all(), groups, bn, log=log)
        _ScheduleBase.__init__(self, log=log)
        # the arguments checked now (the run's facts come at fit start)
        vars(self).update(fine_tune_arguments(similar, learning_rate, num_samples, head_epochs, large_threshold))
        self.recipe: Any = None

    def _member(self) -> R.Member:
        return R.Member("FineTune", "recipe", factors=self.plan.factors, groups=self.groups_spec)

    def _make_schedule(self, initial_lr: float, steps_per_epoch: int | None, total: float) -> S.Schedule:
        from hpcallbacks.recipe import RANGE_TEST

        return self.recipe.schedule(initial_lr if self.learning_rate == RANGE_TEST else None)

    def _build(self, trainer: Any, pl_module: Any) -> None:
        """The recipe of this run's facts; its plan (with the factors and BN policy) becomes the one applied."""
        from hpcallbacks.recipe import Recipe, optimizer_kind

        samples = _samples(trainer, self.num_samples)
        spe, total = _run_lengths(trainer)
        if spe is None or total == float("inf"):
            raise ValueError("FineTune needs the updates per epoch and the run's length: give the train data a length "
                             "and the Trainer max_epochs or max_steps")
        first = trainer.optimizers[0].param_groups[0]
        kind = optimizer_kind(type(trainer.optimizers[0]).__name__, float(first.get("momentum", 0.0) or 0.0),
                              bool(first.get("nesterov", False)))
        norms = bool(HT.batch_norm_layers([pl_module]))
        self.recipe = Recipe(num_samples=samples, num_groups=len(self.groups), epochs=max(1, math.ceil(total / spe)),
                             steps_per_epoch=spe, similar=self.similar, optimizer=kind,
                             learning_rate=self.learning_rate, batch_size=per_device_batch_size(trainer),
                             batch_norm=norms, large_threshold=self.large_threshold, head_epochs=self.head_epochs)
        self.plan = self.recipe.plan
        self._effective_plan = R.plan_for_run(self.plan, self.bn, self.plan.factors)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        from hpcallbacks.recipe import RANGE_TEST

        if not trainer.optimizers:
            raise ValueError("FineTune needs an optimizer; configure_optimizers returned none")
        if self.learning_rate == RANGE_TEST and not any(
                isinstance(cb, LRFinderMixin) and cb.apply for cb in trainer.callbacks):
            raise ValueError("FineTune(learning_rate='range_test') takes the rate an LRFinder(apply=True) finds: add "
                             "LRFinder(apply=True) to the Trainer's callbacks, or give learning_rate")
        self._build(trainer, pl_module)  # the factors (groups and samples) regroup the optimizer now
        StagedUnfreezeMixin.on_fit_start(self, trainer, pl_module)
        _ScheduleBase.on_fit_start(self, trainer, pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # again with the run's final lengths (GradientAccumulation and others may change them after fit start)
        self._build(trainer, pl_module)
        log.info("%s", self.recipe)
        StagedUnfreezeMixin.on_train_start(self, trainer, pl_module)
        _ScheduleBase.on_train_start(self, trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        StagedUnfreezeMixin.on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx)
        _ScheduleBase.on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        StagedUnfreezeMixin.on_before_optimizer_step(self, trainer, pl_module, optimizer)
        _ScheduleBase.on_before_optimizer_step(self, trainer, pl_module, optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {**StagedUnfreezeMixin.state_dict(self), **_ScheduleBase.state_dict(self)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        StagedUnfreezeMixin.load_state_dict(self, state_dict)
        _ScheduleBase.load_state_dict(self, state_dict)


# -- the public classes: one line each -----------------------------------------------------------------------
class GradientAccumulation(GradientAccumulationMixin, LightningCallback): ...
class ScaleLearningRate(ScaleLearningRateMixin, LightningCallback): ...
class BatchRamp(BatchRampMixin, LightningCallback): ...
class ParamScheduler(ParamSchedulerMixin, LightningCallback): ...
class InstanceNoise(InstanceNoiseMixin, LightningCallback): ...
class LabelSmoothing(LabelSmoothingMixin, LightningCallback): ...
class LabelFlip(LabelFlipMixin, LightningCallback): ...
class HyperparameterAdvisor(HyperparameterAdvisorMixin, LightningCallback): ...
class LossBalance(LossBalanceMixin, LightningCallback): ...
class LRFinder(LRFinderMixin, LightningCallback): ...
class MicroBatchFinder(MicroBatchFinderMixin, LightningCallback): ...
class TrialReporter(TrialReporterMixin, LightningCallback): ...
class FineTune(FineTuneMixin, LightningCallback): ...


__all__ = [*sorted(mixins_of(__name__)), "HyperparameterWarning"]
