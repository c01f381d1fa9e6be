"""Batch-size rules, scheduled hyperparameters, GAN schedules, the advisor and the LR range test for HF.

The same callback names, arguments and numbers as ``hpcallbacks_lightning``'s; every number comes
from a core rule (:mod:`hpcallbacks.batch`, :mod:`hpcallbacks.params`, :mod:`hpcallbacks.gan`,
:mod:`hpcallbacks.advice`, :mod:`hpcallbacks.finder`) and the torch mechanics
(:mod:`hpcallbacks.torch`); these classes translate ``transformers.Trainer`` events.

When things happen in a ``Trainer`` (transformers 4.47 to 5.x), besides :mod:`.callbacks`' events::

``on_init_end``      (inside ``Trainer(...)``, the last event before ``train()`` reads the
                     accumulation) ``MicroBatchFinder`` probes the largest micro-batch that fits
                     and sets the batch size and the accumulation; ``GradientAccumulation`` sets
                     ``args.gradient_accumulation_steps``; ``BatchRamp`` checks the run and sets
                     it to 1 (one micro-batch per update slot, see its docstring);
``on_train_begin``   the optimizer and the train dataloader exist: ``ScaleLearningRate`` reads
                     the effective batch, ``ParamScheduler`` resolves its targets, ``LRFinder``
                     runs its range test and restores everything;
``on_epoch_begin``   ``BatchRamp`` sets the accumulation of the epoch; ``HyperparameterAdvisor``
                     checks the run once (after every ``on_train_begin``, before the first update);
``on_step_begin``    once per optimizer update: ``ParamScheduler`` sets its values, the GAN
                     callbacks take the update count;
``on_log``           ``LossBalance`` reads the logged loss terms; the callbacks add their values;
``on_evaluate``      ``TrialReporter`` reports the monitored metric to its Optuna trial (or Ray Tune)
                     and stops training when the trial is pruned.

In ``Trainer.hyperparameter_search`` HF sets each trial's values on ``args`` inside ``train()``, after
``on_init_end``: ``GradientAccumulation`` and ``MicroBatchFinder`` set the accumulation again for the
trial's batch size, before ``train()`` reads it (see :func:`hpcallbacks_hf._seam.after_trial_values`).

State survives ``trainer.train(resume_from_checkpoint=...)`` whatever
``restore_callback_states_from_checkpoint`` is: the stateful callbacks are ``ExportableState``
and read their state back at ``on_train_begin`` (see :mod:`.callbacks`); the others are
functions of ``state.global_step``.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

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

from . import _engine as E
from . import _seam
from .callbacks import HPCallback, StagedUnfreeze, add_logs, public_callback

log = logging.getLogger("hpcallbacks")

__all__ = [
    "GradientAccumulation", "ScaleLearningRate", "BatchRamp", "ParamScheduler", "InstanceNoise", "LabelSmoothing",
    "LabelFlip", "HyperparameterAdvisor", "LossBalance", "LRFinder", "HyperparameterWarning", "MicroBatchFinder",
    "TrialReporter", "FineTune",
]


# ----------------------------------------------------------------------------------------------
# helpers
def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else check.positive_int(name, value)


def _warn(message: str | None) -> None:
    if message is not None:
        warnings.warn(message, stacklevel=3)


def _find(cls: type, trainer: Any) -> Any:
    found = [cb for cb in _seam.callback_list(trainer) if isinstance(cb, cls)]
    if not found:
        raise ValueError(f"the Trainer has no {cls.__name__} callback: add one to Trainer(callbacks=[...])")
    if len(found) > 1:
        raise ValueError(f"the Trainer has {len(found)} {cls.__name__} callbacks; look them up yourself or keep one")
    return found[0]


def _per_device(args: Any, given: int | None, who: str) -> int:
    """Samples per process and micro-batch: ``args.train_batch_size`` (per-device batch x GPUs of the process)."""
    size = int(args.train_batch_size)
    if given is not None and given != size:
        raise ValueError(f"{who}: per_device_batch_size={given} but the Trainer's batch per process is {size} "
                         f"(per_device_train_batch_size={args.per_device_train_batch_size}): drop "
                         "per_device_batch_size (HF's is used) or make them equal")
    return size


def _effective_batch(args: Any, per_device: int) -> int:
    return per_device * max(1, int(args.gradient_accumulation_steps)) * max(1, int(args.world_size))


def _members(run: E.Run | None, cls: type) -> list[Any]:
    return [] if run is None else [m for m in run.members if isinstance(m, cls)]


#: The attribute of ``TrainingArguments`` where the accumulation callbacks note what they set:
#: ``(callback name, steps, id of the Trainer's initial state)``.
_MARK = "_hpcallbacks_accumulation"


def _take_accumulation(args: Any, state: Any, who: str, steps: int) -> None:
    """Set ``args.gradient_accumulation_steps`` for ``who``, refusing a user's value or another callback's."""
    if getattr(args, "auto_find_batch_size", False):
        raise ValueError(f"{who} sets the accumulation for the per-device batch, which auto_find_batch_size would "
                         "shrink after an out-of-memory error (changing the effective batch): set "
                         "auto_find_batch_size=False")
    mark = getattr(args, _MARK, None)
    current = int(args.gradient_accumulation_steps)
    if mark is not None and mark[2] == id(state) and mark[0] != who:
        raise ValueError(f"{mark[0]} and {who} both set the accumulation: keep one (BatchRamp grows the batch by "
                         "accumulation itself)")
    ours = mark is not None and mark[1] == current
    if current != 1 and not ours:
        raise ValueError(f"TrainingArguments(gradient_accumulation_steps={current}) and the {who} callback both set "
                         f"the accumulation: leave gradient_accumulation_steps at 1 (and accelerator_config without "
                         f"num_steps) or drop the callback")
    args.gradient_accumulation_steps = steps
    setattr(args, _MARK, (who, steps, id(state)))


def _check_taken(args: Any, who: str, steps: int) -> None:
    mark = getattr(args, _MARK, None)
    if mark is None or mark[0] != who or int(args.gradient_accumulation_steps) != steps:
        raise ValueError(f"{who} did not set the accumulation before train() read it (it does so at on_init_end): "
                         "pass it in Trainer(callbacks=[...]); add_callback() after the Trainer is built is too late")


# ----------------------------------------------------------------------------------------------
# batch size (handbook H4)
class GradientAccumulation(HPCallback):
    """Reach ``target_batch_size`` samples per optimizer update by gradient accumulation (handbook H4).

    At ``on_init_end`` (inside ``Trainer(...)``: the last event before ``train()`` computes the
    updates per epoch, the total updates and the LR schedule from it) sets
    ``args.gradient_accumulation_steps`` to :func:`hpcallbacks.batch.accumulation_steps`
    ``(target_batch_size, batch per process, args.world_size)``; the batch per process is
    ``args.train_batch_size`` (``per_device_train_batch_size`` x GPUs of the process;
    ``per_device_batch_size=`` may repeat it, and must equal it: the name is HF's own,
    ``per_device_train_batch_size``; Keras' adapter takes fit's global ``batch_size=``). A target that is not a multiple
    of ``batch x world size`` is refused (``ValueError`` naming the nearest reachable sizes)
    unless ``exact=False``, which uses the nearest reachable one and warns. The Trainer then
    counts updates after accumulation: ``state.max_steps``, HF's LR schedule and every
    hpcallbacks schedule follow the new count.

    The ``TrainingArguments`` object is changed (``gradient_accumulation_steps``); building
    another Trainer with it and this callback again is fine. Refused (``ValueError`` when the
    Trainer is built): ``gradient_accumulation_steps`` (or ``accelerator_config``'s
    ``num_steps``) other than 1 beside it, a ``BatchRamp``, ``auto_find_batch_size``. Added with
    ``add_callback()`` after the Trainer exists it is too late: refused at ``on_train_begin``. As in
    HF, the last update of an epoch may hold fewer micro-batches. State: the accumulation (a
    resumed run with a different one warns).

    In ``Trainer.hyperparameter_search`` with ``per_device_train_batch_size`` in the search space,
    each trial keeps ``target_batch_size``: the accumulation is set again from the trial's batch
    per process once HF has applied the trial's values, before ``train()`` counts the updates
    (HF sends no event in between; :func:`hpcallbacks_hf._seam.after_trial_values`). A search space holding
    ``gradient_accumulation_steps`` itself is refused, as the argument is.
    """

    role = "accumulation"

    def __init__(self, target_batch_size: int, exact: bool = True, per_device_batch_size: int | None = None) -> None:
        super().__init__()
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.exact = _bool("exact", exact)
        self.per_device_batch_size = _optional_int("per_device_batch_size", per_device_batch_size)
        self.accumulation: B.Accumulation | None = None
        self._saved: dict[str, Any] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"target_batch_size": self.target_batch_size, "exact": self.exact,
                "per_device_batch_size": self.per_device_batch_size}

    @property
    def accumulation_config(self) -> dict[str, Any] | None:
        return None if self.accumulation is None else self.accumulation.get_config()

    @accumulation_config.setter
    def accumulation_config(self, value: dict[str, Any] | None) -> None:
        self._saved = value

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "accumulation_config": self.accumulation_config}

    def _compute(self, args: Any) -> B.Accumulation:
        per_device = _per_device(args, self.per_device_batch_size, "GradientAccumulation")
        world = max(1, int(args.world_size))
        return B.accumulation_for(self.target_batch_size, per_device, world, self.exact,
                                  f"batch {per_device} per process and world size {world}")

    def on_init_end(self, args, state, control, **kwargs):
        super().on_init_end(args, state, control, **kwargs)
        self._take(args, state)
        trainer = _seam.calling_trainer()
        if trainer is not None:  # Trainer.hyperparameter_search: again for each trial's batch size
            _seam.after_trial_values(trainer, lambda: self._take(trainer.args, trainer.state))

    def _take(self, args: Any, state: Any) -> None:
        acc = self._compute(args)
        _warn(B.inexact_warning(acc, f"batch {acc.per_device_batch_size} x world size {acc.world_size}"))
        _take_accumulation(args, state, "GradientAccumulation", acc.steps)
        self.accumulation = acc
        log.info("GradientAccumulation: %d micro-batches of %d x %d processes per update = %d samples", acc.steps,
                 acc.per_device_batch_size, acc.world_size, acc.effective_batch_size)

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if _members(self._run, BatchRamp):
            raise ValueError("GradientAccumulation and BatchRamp both set the accumulation: keep one (BatchRamp grows "
                             "the batch by accumulation itself)")
        acc = self._compute(args)  # also for an instance HF rebuilt from the checkpoint
        _check_taken(args, "GradientAccumulation", acc.steps)
        self.accumulation = acc
        saved, self._saved = self._saved, None
        _warn(B.resume_warning(saved, acc))

    def reset(self) -> None:
        super().reset()
        self._saved = None


class ScaleLearningRate(HPCallback):
    """Scale the learning rate with the batch size (handbook H4; Goyal et al. 2017), with warmup.

    ``lr = LR x m(t)``: ``m`` rises from 1 to ``k`` over ``warmup_epochs`` epochs of the run's
    updates (the core's :func:`hpcallbacks.batch.scaling_warmup` of ``Constant(k)``; ``0``: ``k``
    at once; no warmup when the batch shrinks) and ``k`` is the core's
    :func:`hpcallbacks.batch.scale_learning_rate` factor for the run's effective batch
    (``args.train_batch_size x args.gradient_accumulation_steps x args.world_size``, read at
    ``on_train_begin``, so after ``GradientAccumulation``) against ``base_batch_size``:
    ``rule="linear"`` ``k = batch / base``, ``"sqrt"`` ``k = sqrt(batch / base)``.

    ``LR`` is the hpcallbacks schedule of the Trainer when there is one (``CosineRestart()``, ...;
    the schedule itself is not delayed), else HF's ``lr_scheduler_type`` schedule: with
    ``"constant"`` the numbers are Lightning's ``ScaleLearningRate`` alone,
    ``scaling_warmup(Constant(scale_learning_rate(learning_rate, ...)), ...)``. A
    ``ReduceOnPlateau`` factor applies after it; layer factors multiply it as every LR.
    Refused (``ValueError`` at ``on_train_begin``): a ``BatchRamp`` (which scales the LR itself),
    a second ``ScaleLearningRate``, ``lr_scheduler_type="reduce_lr_on_plateau"`` (use the
    ``ReduceOnPlateau`` callback). ``per_device_batch_size`` may repeat the batch per process;
    ``log`` adds ``lr_scale`` (``m(t)``) to the training logs. State: the factor schedule, so a
    resumed run keeps it.
    """

    role = "modifier"
    order = 10  # before the plateau factors

    def __init__(self, base_batch_size: int, rule: str = "linear", warmup_epochs: float = 5.0, *,
                 per_device_batch_size: int | None = None, log: bool = True) -> None:
        super().__init__()
        self.base_batch_size, self.rule, self.warmup_epochs = B.scaling_options(base_batch_size, rule, warmup_epochs)
        self.per_device_batch_size = _optional_int("per_device_batch_size", per_device_batch_size)
        self.log_value = _bool("log", log)
        self.batch_size: int | None = None
        self.factor: S.Schedule | None = None  # m(t): 1 -> k over the warmup
        self._saved: dict[str, Any] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"base_batch_size": self.base_batch_size, "rule": self.rule, "warmup_epochs": self.warmup_epochs,
                "per_device_batch_size": self.per_device_batch_size, "log": self.log_value}

    @property
    def factor_config(self) -> dict[str, Any] | None:
        return None if self.factor is None else S.serialize(self.factor)

    @factor_config.setter
    def factor_config(self, value: dict[str, Any] | None) -> None:
        self._saved = value

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "factor_config": self.factor_config}

    def reset(self) -> None:
        super().reset()
        self._saved = None

    def modify(self, lr: float, step: int) -> float:
        return lr * self.factor(step)  # type: ignore[misc]

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        run = self._run
        if _members(run, BatchRamp):
            raise ValueError("ScaleLearningRate and BatchRamp both scale the LR with the batch: keep one")
        self.batch_size = _effective_batch(args, _per_device(args, self.per_device_batch_size, "ScaleLearningRate"))
        saved, self._saved = self._saved, None
        if saved is not None and state.global_step > 0:
            self.factor = S.deserialize(saved)
            return
        ctx = run.ctx
        self.factor = B.scaling_factor(self.base_batch_size, self.batch_size, self.rule, self.warmup_epochs,
                                       ctx.steps_per_epoch if ctx.epoch_known else None,
                                       "an IterableDataset without a length")

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self.log_value and logs is not None and "loss" in logs and self.factor is not None:
            add_logs(state, logs, {"lr_scale": self.factor(max(state.global_step - 1, 0))})


class _RampLR:
    """BatchRamp's learning rate as the run's schedule: ``ramp.schedule(t) x B / base_batch_size``."""

    def __init__(self, owner: BatchRamp) -> None:
        self.owner = owner

    def __call__(self, step: float) -> float:
        ramp = self.owner.ramp
        return ramp.schedule(self.owner.progress) * self.owner.batch_size / ramp.base_batch_size

    def __repr__(self) -> str:
        return f"BatchRamp({self.owner.ramp!r})"


class BatchRamp(HPCallback):
    """"Don't decay the learning rate, increase the batch size" (Smith et al. 2017) by a core ramp.

    ``ramp``: a :class:`hpcallbacks.batch.BatchRamp` (or its ``get_config()``): the decay schedule
    you would run at ``base_batch_size``, the cap ``max_batch_size``, the per-device batch and
    world size. Its progress ``t`` counts base-batch steps, ``samples seen / base_batch_size``, kept
    by the callback (each performed update counts its nominal batch ``B``).

    The same numbers as Lightning's ``BatchRamp``: at every epoch start the batch
    ``B = ramp.batch_size(t)`` is taken and held for the epoch (``B / ramp.unit`` micro-batches per
    update); the LR of every update is ``ramp.schedule(t) x B / base_batch_size``, so the noise
    scale ``lr / B`` follows the schedule, and once ``B`` reaches its cap the LR decays instead.

    What HF allows, and why: ``Trainer.train()`` computes the update slots of an epoch once, from
    ``gradient_accumulation_steps`` at its start, and reads ``gradient_accumulation_steps`` again
    for every update slot. So the callback sets it to 1 at ``on_init_end`` (the most update slots
    an epoch can need) and to ``B / unit`` at each ``on_epoch_begin``: the epoch's micro-batches
    are consumed ``B / unit`` at a time and the slots left over find the data exhausted and do
    nothing. HF's ``state.max_steps`` stays the count for one micro-batch per update (an upper
    bound; the run ends after ``num_train_epochs``). Hence refused (``ValueError`` when the Trainer
    is built): ``max_steps > 0`` (HF turns it into epochs of one micro-batch per update, which would
    end the run early), a dataloader without a length (an ``IterableDataset``), a batch per process
    x world size other than ``ramp.unit`` / a world size other than ``ramp.world_size``,
    ``gradient_accumulation_steps`` other than 1, ``auto_find_batch_size``, a
    ``GradientAccumulation`` or ``ScaleLearningRate`` beside it. And resume: HF places a resumed
    run by ``global_step / updates per epoch`` for one micro-batch per update, which is wrong once
    the batch has grown, so resuming from a checkpoint written after the first growth is refused
    at ``on_train_begin`` (earlier checkpoints resume exactly).

    Owns the LR like a schedule callback (HF's ``lr_scheduler_type`` must be ``"linear"`` or
    ``"constant"`` without warmup; another schedule callback is refused; a ``ReduceOnPlateau``
    factor may multiply it). Give ``StagedUnfreeze`` plans in updates (``unit="update"``): the
    updates per epoch change with the batch. ``log`` adds ``batch_size`` to the training logs.
    State: samples seen, the batch of the current epoch and whether it grew.
    """

    role = "schedule"

    def __init__(self, ramp: B.BatchRamp | dict[str, Any], *, log: bool = True) -> None:
        super().__init__()
        if isinstance(ramp, dict):
            ramp = B.BatchRamp.from_config(ramp)
        if not isinstance(ramp, B.BatchRamp):
            raise ValueError(f"ramp must be a hpcallbacks.batch.BatchRamp; got {ramp!r}")
        self.ramp = ramp
        self.log_value = _bool("log", log)
        self.reset()

    def get_config(self) -> dict[str, Any]:
        return {"ramp": self.ramp.get_config(), "log": self.log_value}

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "samples": self.samples, "batch_size": self.batch_size,
                "ramp_epoch": self.ramp_epoch, "grown": self.grown}

    def reset(self) -> None:
        super().reset()
        self.samples = 0  # samples seen (sum of the nominal batch of every performed update)
        self.batch_size = self.ramp.base_batch_size  # the batch of the current epoch
        self.ramp_epoch: int | None = None  # the epoch whose batch was chosen
        self.grown = False  # whether an update held more than one micro-batch

    @property
    def progress(self) -> float:
        """``t``: samples seen / ``base_batch_size``."""
        return self.samples / self.ramp.base_batch_size

    def build_schedule(self, ctx: E.Context) -> Any:
        return _RampLR(self)

    def on_init_end(self, args, state, control, **kwargs):
        super().on_init_end(args, state, control, **kwargs)
        self.ramp.check_run(int(args.train_batch_size), max(1, int(args.world_size)), "the Trainer's batch is",
                            "per_device_train_batch_size")
        if args.max_steps is not None and args.max_steps > 0:
            raise ValueError(f"BatchRamp needs num_train_epochs, not max_steps={args.max_steps}: HF turns max_steps "
                             "into epochs of one micro-batch per update, so a growing batch would end the run early")
        _take_accumulation(args, state, "BatchRamp", 1)

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        run = self._run
        for other in (GradientAccumulation, ScaleLearningRate):
            if _members(run, other):
                what = "set the accumulation" if other is GradientAccumulation else "scale the LR with the batch"
                raise ValueError(f"{other.__name__} and BatchRamp both {what}: keep one (BatchRamp grows the batch "
                                 "by accumulation and sets the LR itself)")
        _check_taken(args, "BatchRamp", 1)
        if not run.ctx.epoch_known:
            raise ValueError("BatchRamp needs a train dataloader with a length (an IterableDataset has none)")
        if state.global_step > 0 and self.grown:
            raise ValueError(f"BatchRamp: this checkpoint (update {state.global_step}) was written after the batch "
                             f"grew to {self.batch_size}; HF would resume at the wrong place in the data (it counts "
                             "one micro-batch per update): resume from a checkpoint written before the first growth "
                             "or train again")

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = int(math.floor((state.epoch or 0.0) + 1e-9))
        if self.ramp_epoch != epoch:  # a resumed epoch keeps the batch it started with
            self.ramp_epoch = epoch
            self.batch_size = self.ramp.epoch_batch(self.progress, self.batch_size, epoch)
        steps = self.batch_size // self.ramp.unit
        args.gradient_accumulation_steps = steps
        setattr(args, _MARK, ("BatchRamp", steps, getattr(args, _MARK, (None, None, None))[2]))
        self.grown = self.grown or steps > 1
        run = self._run
        if run is not None and run.configured:
            run.refresh()  # the LR of the next update uses the new batch

    def on_optimizer_step(self, args, state, control, **kwargs):
        super().on_optimizer_step(args, state, control, **kwargs)
        if not _seam.step_was_skipped(kwargs.get("optimizer")):
            self.samples += self.batch_size

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self.log_value and logs is not None and "loss" in logs:
            add_logs(state, logs, {"batch_size": float(self.batch_size)})

    def on_train_end(self, args, state, control, **kwargs):
        mark = getattr(args, _MARK, None)
        if mark is not None and mark[0] == "BatchRamp":  # back to one micro-batch per slot for another train()
            args.gradient_accumulation_steps = 1
            setattr(args, _MARK, ("BatchRamp", 1, mark[2]))


# ----------------------------------------------------------------------------------------------
# any hyperparameter on a schedule
class ParamScheduler(TrainerCallback):
    """Any numeric hyperparameter on a core schedule, set once per optimizer update (floats only).

    ``ParamScheduler({"optimizer.momentum": Cyclic(0.85, 0.95, 100), "model.head.dropout": ...})``
    or ``ParamScheduler(ParamSchedule("momentum", ...), ...)`` (both forms mix), as in every
    adapter. The value at optimizer update ``t`` (``state.global_step``, set at ``on_step_begin``)
    is ``schedule(t)``. Names (:mod:`hpcallbacks.torch.params`):

    * ``"optimizer.<key>"`` or ``"optimizer.0.<key>"`` (the Trainer has one optimizer): a
      param-group hyperparameter of every param group: ``momentum`` (on Adam-type optimizers, the
      Trainer's default AdamW included: ``betas[0]``, the 1cycle convention), ``beta_1`` /
      ``beta_2``, ``epsilon`` (``eps``), ``weight_decay`` (HF's no-decay group of biases and norms
      stays at 0), ``dampening``, or any other numeric key; learning rates are refused (use a
      schedule callback);
    * bare ``momentum``, ``beta_1``, ``beta_2``, ``epsilon``, ``eps``, ``weight_decay``,
      ``dampening``: the same as ``"optimizer.<key>"``;
    * ``"model.<path>"`` / ``"module.<path>"`` or any other name: an attribute path of the model
      (``"model.classifier.dropout"``, ``"model.bert.encoder.layer.0.output.dropout.p"``; digits
      index ``ModuleList``). A path ending at a Dropout layer sets its ``p``; a bare ``"dropout"``
      with no such attribute sets ``p`` of every Dropout layer.

    Targets are resolved at ``on_train_begin`` (``ValueError`` naming the name otherwise), and a
    schedule that would leave the allowed range over the run (momentum, betas, dropout in [0, 1];
    eps and weight decay >= 0) is refused then. The values reach the optimizer as regrouped by
    ``StagedUnfreeze`` / ``DiscriminativeLR`` too. ``log`` adds ``param/<name>`` to the training
    logs. Stateless: the values are a function of ``state.global_step``, which HF restores.
    """

    def __init__(self, *schedules: Mapping[str, Any] | ParamSchedule, log: bool = True) -> None:
        self.schedules = param_schedules(*schedules)
        self.log_values = _bool("log", log)
        self._targets: list[HT.ParamTarget] = []
        self._values: list[float] = []
        self._model: Any = None
        self._optimizer: Any = None
        self._layout: tuple[int, int] | None = None

    def _resolve(self) -> None:
        groups = self._optimizer.param_groups
        self._targets = HT.resolve_param_targets(self.schedules, self._model, [self._optimizer], owner="model",
                                              optimizers_from="the Trainer has")
        self._layout = (id(groups[0]) if groups else 0, len(groups))

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            raise ValueError("ParamScheduler needs the Trainer's model and optimizer at on_train_begin")
        self._model, self._optimizer = model, E.inner_optimizer(optimizer)
        self._resolve()
        total = state.max_steps if state.max_steps and state.max_steps > 0 else math.inf
        HT.check_param_schedules(self.schedules, self._targets, int(state.global_step), total)
        self._values = [0.0] * len(self.schedules)

    def on_step_begin(self, args, state, control, **kwargs):
        if self._optimizer is None:
            return
        groups = self._optimizer.param_groups
        if (id(groups[0]) if groups else 0, len(groups)) != self._layout:  # regrouped by StagedUnfreeze & co.
            self._resolve()
        self._values = HT.set_params(self.schedules, self._targets, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log_values and logs is not None and "loss" in logs and self._values:
            add_logs(state, logs, {f"param/{p.name}": v for p, v in zip(self.schedules, self._values, strict=True)})

    def on_train_end(self, args, state, control, **kwargs):
        self._model = self._optimizer = None  # let the finished run go
        self._targets = []


# ----------------------------------------------------------------------------------------------
# GAN schedules (handbook H7)
class _Gan(TG.GanValues, TrainerCallback):
    """The update count ``step`` a GAN schedule is evaluated at, the micro-batch and rank, and the lookup."""

    def _init_count(self, optimizer: int | None) -> None:
        if optimizer is not None:
            optimizer = check.non_negative_int("optimizer", optimizer)
            if optimizer != 0:
                raise ValueError(f"optimizer must be None or 0: the HF Trainer steps one optimizer; got {optimizer}")
        self.optimizer = optimizer
        self.step = 0
        self._rank, self._world, self._micro = 0, 1, 0

    @classmethod
    def of(cls, trainer: Any) -> Any:
        """The one callback of this class in ``trainer``'s callbacks (``ValueError`` if none or several)."""
        return _find(cls, trainer)

    def on_train_begin(self, args, state, control, **kwargs):
        self._rank = int(getattr(args, "process_index", 0))
        self._world = max(1, int(getattr(args, "world_size", 1)))
        self.step = int(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = int(state.global_step)
        self._micro = 0

    def on_substep_end(self, args, state, control, **kwargs):
        self._micro += 1


class _LoggedGan(_Gan):
    """A GAN callback that adds its current value (``_LOG``) to the training logs when ``log``."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log_value and logs is not None and "loss" in logs:
            name, attribute = self._LOG  # type: ignore[misc]
            add_logs(state, logs, {name: getattr(self, attribute)})


_GAN_DOC = """

    ``step``, the update the value is for: ``state.global_step``, the optimizer updates done
    before this one (the HF Trainer steps one optimizer: ``optimizer`` may be ``None`` or ``0``, as
    the other adapters take it). HF restores it on resume, so the callback keeps no state.

    Use from a ``Trainer`` subclass's ``compute_loss`` (``self`` is the Trainer)::

        noise = InstanceNoise.of(self)                # the callback in Trainer(callbacks=[...])
        d_real = model.discriminator(noise.apply(real))

    or keep a reference to the callback. Values are Python floats from the core rule; the tensor
    work (:mod:`hpcallbacks.torch.gan`) never reads a tensor back.
    """


class InstanceNoise(TG.InstanceNoiseValues, _LoggedGan):
    __doc__ = TG.InstanceNoiseValues.__doc__ + """ ``log`` adds ``instance_noise_std`` to
    the training logs.""" + _GAN_DOC

    def __init__(self, schedule: Any, optimizer: int | None = None, *, log: bool = True) -> None:
        self._init_values(schedule)
        self._init_count(optimizer)
        self.log_value = _bool("log", log)


class LabelSmoothing(TG.LabelSmoothingValues, _Gan):
    __doc__ = TG.LabelSmoothingValues.__doc__ + _GAN_DOC


class LabelFlip(TG.LabelFlipValues, _LoggedGan):
    __doc__ = TG.LabelFlipValues.__doc__ + """ ``index`` numbers the samples of the update's whole batch,
    as in every adapter: sample ``i`` of an ``n``-sample micro-batch has index
    ``(m * world_size + r) * n + i`` on process ``r`` for the ``m``-th micro-batch of the update, so
    processes and micro-batches flip different samples (one ``targets`` call per micro-batch).
    ``.probability`` is the current ``p``. ``log`` adds ``label_flip_probability`` to the training
    logs.""" + _GAN_DOC

    def __init__(self, schedule: Any, seed: int = 0, optimizer: int | None = None, *, log: bool = True) -> None:
        self._init_values(schedule, seed)
        self._init_count(optimizer)
        self.log_value = _bool("log", log)


# ----------------------------------------------------------------------------------------------
# the advisor (handbook H1, H2)
class HyperparameterAdvisor(A.AdvisorBase, TrainerCallback):
    """Check the run against the handbook's recommended values (H2) once, before the first update.

    Reads, at the first ``on_epoch_begin`` (right after every callback's ``on_train_begin``, so
    after ``GradientAccumulation`` and the schedule callbacks, and before any update), and runs
    :func:`hpcallbacks.advice.check` on:

    * the optimizer's kind, from the Trainer's optimizer object (what ``TrainingArguments.optim``
      built, or the one passed in ``optimizers=``): ``AdamW`` -> ``"adamw"``, ``Adam`` ->
      ``"adam"``, ``SGD`` / hpcallbacks ``LARS`` -> ``"sgd"`` / ``"sgd_momentum"`` /
      ``"nesterov"``; others (Adafactor, 8-bit, ...) are not in the table: only the batch size,
      dropout and kernels are checked;
    * the learning rate: the peak over the run of the hpcallbacks schedule when there is one,
      else the optimizer's base LR (``TrainingArguments.learning_rate``; every HF schedule peaks
      there), times ``ScaleLearningRate``'s factor;
    * ``betas`` / ``eps`` (``adam_beta1``, ``adam_beta2``, ``adam_epsilon``) for Adam kinds,
      ``momentum`` for SGD, the largest ``weight_decay`` of the param groups
      (``TrainingArguments.weight_decay``), all as the optimizer holds them;
    * the effective batch: ``per_device_train_batch_size`` x GPUs x
      ``gradient_accumulation_steps`` x ``world_size``;
    * the ``p`` of every enabled Dropout layer of the model (a BERT's ``hidden_dropout_prob`` and
      ``attention_probs_dropout_prob`` when its layers hold them as ``nn.Dropout``) and the kernel
      sizes of ``Conv2d`` layers.

    ``fine_tuning=None`` means "fine-tuning when a ``StagedUnfreeze`` or ``DiscriminativeLR`` is
    in the Trainer"; ``from_scratch_learning_rate`` sets the fine-tuning range (1 to 2 orders of
    magnitude below). Findings of severity ``"warning"`` are issued as
    :class:`HyperparameterWarning` (main process), ``"info"`` ones logged; ``strict=True`` raises
    ``ValueError`` listing the warnings instead, before any update. ``.findings`` and ``.values``
    (what was checked) stay on the callback.
    """

    def __init__(self, strict: bool = False, fine_tuning: bool | None = None,
                 from_scratch_learning_rate: float | None = None) -> None:
        self._init_advisor(strict, fine_tuning, from_scratch_learning_rate, boolean=_bool)
        self._done = True

    def on_train_begin(self, args, state, control, **kwargs):
        self._done = False

    def on_epoch_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self._done:
            return
        self._done = True
        findings = self._advise(self.read(args, state, model, optimizer))
        A.report("HyperparameterAdvisor", findings, self.strict, emit=bool(args.should_log))

    def read(self, args: Any, state: Any, model: Any, optimizer: Any) -> dict[str, Any]:
        """The arguments of :func:`hpcallbacks.advice.check` this run has."""
        values: dict[str, Any] = {}
        run = E.run_for(state)
        inner = E.inner_optimizer(optimizer) if optimizer is not None else None
        kind = HT.optimizer_kind(inner) if inner is not None else None
        if inner is not None and kind is not None:
            group = inner.param_groups[0]
            values["optimizer"] = kind
            if run is not None and run.ctx is not None:
                values["learning_rate"] = run.peak_lr()
            else:
                values["learning_rate"] = HT.as_float(group.get("initial_lr", group["lr"]))
            values.update(HT.optimizer_values(inner, kind))
        else:
            values["optimizer"] = "sgd"  # only the rows that do not depend on the optimizer are checked
            log.info("HyperparameterAdvisor: %s (optim=%r) is not in the handbook's table; checking batch size, "
                     "dropout and kernels only", type(inner).__name__, getattr(args.optim, "value", args.optim))
        values["batch_size"] = _effective_batch(args, int(args.train_batch_size))
        if model is not None:
            values["dropout_rates"] = HT.dropout_rates(model)
            values["kernel_sizes"] = HT.kernel_sizes(model)
        fine = self.fine_tuning
        if fine is None:
            fine = run is not None and any(m.role in ("plan", "factors") for m in run.members)
        values.update(A.fine_tuning_values(fine, self.from_scratch_learning_rate))
        return values


class LossBalance(A.LossBalanceBase, HPCallback):
    """Check that the loss terms stay within two orders of magnitude of each other (handbook H2).

    ``terms``: the names of two or more loss terms the training logs (``self.log({"loss_a": ...,
    "loss_b": ...})`` from a ``Trainer`` subclass's ``compute_loss``, or evaluation metrics such as
    ``"eval_loss_a"``), read in ``on_log``; ``reference``: the main term (default the first). At
    the end of every ``every_n_epochs``-th epoch the mean of each term over the logs since the
    last check goes through :func:`hpcallbacks.advice.loss_balance` (when the epoch's logs come
    after ``on_epoch_end``, as with ``logging_strategy="epoch"``, at the next log that has them):
    when the largest term is more than 100x the smallest, a :class:`HyperparameterWarning` names
    them and the suggested weights (``strict=True``: ``ValueError``, which stops training).
    ``.weights`` holds the last suggestion (1.0 each when balanced) for the loss to use
    (``LossBalance.of(self).weights`` in ``compute_loss``); ``.findings``, ``.values`` the last
    check. Each process decides on the values it logged. Terms never logged by the end of
    training warn once. State: the last suggestion and values.
    """

    def __init__(self, terms: Sequence[str] = ("loss_a", "loss_b"), every_n_epochs: int = 1, strict: bool = False,
                 reference: str | None = None) -> None:
        super().__init__()
        self._init_balance(terms, every_n_epochs, strict, reference, boolean=_bool)
        self.reset()

    @classmethod
    def of(cls, trainer: Any) -> Any:
        """The one LossBalance in ``trainer``'s callbacks."""
        return _find(cls, trainer)

    def get_config(self) -> dict[str, Any]:
        return {"terms": list(self.terms), "every_n_epochs": self.every_n_epochs, "strict": self.strict,
                "reference": self.reference}

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "weights": dict(self.weights), "values": dict(self.values)}

    def reset(self) -> None:
        super().reset()
        self.weights: dict[str, float] = {t: 1.0 for t in self.terms}
        self.values: dict[str, float] = {}
        self.findings: tuple[A.Finding, ...] = ()
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._seen: set[str] = set()
        self._due = False
        self._emit = True

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._sums, self._counts, self._seen, self._due = {}, {}, set(), False
        self._emit = bool(args.should_log)

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=logs, **kwargs)
        if not logs:
            return
        self._seen.update(logs)
        for t in self.terms:
            if t in logs:
                self._sums[t] = self._sums.get(t, 0.0) + HT.as_float(logs[t])
                self._counts[t] = self._counts.get(t, 0) + 1
        if self._due:
            self._check()

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = int(round(state.epoch or 0.0))
        if epoch % self.every_n_epochs == 0:
            self._due = True
            self._check()

    def _check(self) -> None:
        if any(not self._counts.get(t) for t in self.terms):
            return  # not all logged yet: at the next log
        values = {t: self._sums[t] / self._counts[t] for t in self.terms}
        self._sums, self._counts, self._due = {}, {}, False
        result = self._balance(values)
        if result is not None:
            A.report("LossBalance", result.findings, self.strict, emit=self._emit)

    def on_train_end(self, args, state, control, **kwargs):
        message = A.missing_terms_warning(self.terms, self._seen, "were not logged", "log them with self.log({...}) in "
                                          "compute_loss, or name evaluation metrics (eval_...)")
        if message is not None and (self._due or not self.values):
            warnings.warn(message, stacklevel=2)


# ----------------------------------------------------------------------------------------------
# the learning-rate range test
def _model_loss(model: torch.nn.Module, inputs: Any) -> torch.Tensor | None:
    """The loss ``Trainer.compute_loss`` takes by default: ``outputs["loss"]``, else ``outputs[0]``."""
    outputs = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    if isinstance(outputs, (tuple, list)) and outputs:
        return outputs[0]
    return outputs if isinstance(outputs, torch.Tensor) else None


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return inputs


class LRFinder(F.FinderBase, HPCallback):
    """The learning-rate range test (Smith 2017) before training, by the core's :mod:`hpcallbacks.finder`.

    The same arguments and rule as Lightning's ``LRFinder``. At ``on_train_begin`` of a fresh run
    (a resumed run keeps the checkpoint's result) it trains ``num_steps`` optimizer updates on the
    train dataloader, the LR of update ``t`` from :func:`hpcallbacks.finder.lr_range` (``min_lr``
    .. ``max_lr``, ``mode="exponential"`` or ``"linear"``; times each param group's ``lr_factor``),
    each update of ``gradient_accumulation_steps`` micro-batches; the loss is the model's own
    (``outputs["loss"]``, what ``Trainer.compute_loss`` returns without ``compute_loss_func`` or
    label smoothing), averaged over processes when distributed so every process stops and suggests
    alike. It stops early when the smoothed loss (``beta``) exceeds ``divergence`` x its best. Then
    the weights and buffers (bit-identical), the optimizer state and hyperparameters and the RNG
    states (torch, CUDA, ``random``, numpy) are restored (:class:`hpcallbacks.torch.Snapshot`), so
    the run goes on as if the test had not happened; no other callback event runs during the test.
    The test trains what is trainable when it runs (with ``StagedUnfreeze``: every group some
    stage trains) and calls the model directly (no DDP gradient sync, no mixed-precision scaler).

    ``.suggestion`` is the suggested LR (:func:`hpcallbacks.finder.suggest`: ``method="steepest"``
    or ``"min_loss"``, ``skip_start`` / ``skip_end``), ``.result`` the LRs and losses; both
    exported in ``trainer_state.json`` (``ExportableState``). ``plot``: a path for the picture
    (matplotlib, main process). ``apply=True`` makes the suggestion the run's LR: the optimizer's
    param groups (x ``lr_factor``), HF's LR scheduler's base LRs, and the LR the hpcallbacks
    schedule callbacks default to (``CosineRestart()`` then decays from it). The test syncs the
    loss to the host once per test update (it is not training). A test cut short (a nan or inf
    loss, or a divergence before the suggestion rule had its points:
    :attr:`hpcallbacks.finder.RangeResult.cut_short`) warns once with a :class:`HyperparameterWarning`
    saying what to change; ``apply=True`` still applies its suggestion.
    """

    def __init__(self, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100, mode: str = "exponential",
                 method: str = "steepest", beta: float = 0.98, divergence: float = 4.0, skip_start: int = 10,
                 skip_end: int = 5, plot: str | Path | None = None, apply: bool = False) -> None:
        super().__init__()
        self._init_finder(min_lr, max_lr, num_steps, mode, method, beta, divergence, skip_start, skip_end, plot)
        self.apply = _bool("apply", apply)

    @property
    def result_config(self) -> dict[str, Any] | None:
        return None if self.result is None else self.result.get_config()

    @result_config.setter
    def result_config(self, value: dict[str, Any] | None) -> None:
        self.result = None if value is None else F.RangeResult.from_config(value)

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "result_config": self.result_config}

    def reset(self) -> None:
        super().reset()
        self.result = None

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)  # a resumed run reads its result back here
        if state.global_step > 0:
            log.info("LRFinder: resumed run; keeping the checkpoint's suggestion %s", self.suggestion)
            return
        lr = self._finish(self._run_test(args, kwargs), plot=args.should_save)
        if lr is not None:
            self._apply(lr, kwargs)

    def _run_test(self, args: Any, kwargs: dict[str, Any]) -> F.RangeResult:
        model = kwargs.get("model")
        optimizer = kwargs.get("optimizer")
        loader = kwargs.get("train_dataloader")
        if model is None or optimizer is None or loader is None:
            raise ValueError("LRFinder needs the Trainer's model, optimizer and train dataloader at on_train_begin")
        inner = E.inner_optimizer(optimizer)
        acc = max(1, int(args.gradient_accumulation_steps))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        batches = HT.Batches(loader)

        def next_loss() -> torch.Tensor:
            loss = _model_loss(model, _to_device(batches.next(), device))
            if loss is None:
                raise ValueError("LRFinder: the model returned no loss (outputs['loss']); the range test needs one: "
                                 "give the batches labels")
            return loss

        reduce = None
        if int(args.world_size) > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            def reduce(mean: torch.Tensor) -> torch.Tensor:
                mean = mean.clone()
                torch.distributed.all_reduce(mean)
                return mean / torch.distributed.get_world_size()

        snapshot = HT.Snapshot(model, [inner])  # weights, optimizer state and hyperparameters, RNG states
        try:
            model.train()
            with torch.enable_grad():
                return HT.range_test(self._new_test(), inner, next_loss, acc, reduce=reduce)
        finally:
            snapshot.restore()
            batches.close()  # end accelerate's DataLoaderShard generator now, not at interpreter exit

    def _apply(self, lr: float, kwargs: dict[str, Any]) -> None:
        inner = E.inner_optimizer(kwargs["optimizer"])
        HT.set_base_lr(inner, lr)
        sched = kwargs.get("lr_scheduler")
        if isinstance(getattr(sched, "base_lrs", None), list):
            sched.base_lrs = [lr * g.get("lr_factor", 1.0) for g in inner.param_groups]
            lambdas = getattr(sched, "lr_lambdas", None)
            if isinstance(lambdas, list) and len(lambdas) == len(inner.param_groups):  # HF's LambdaLR: lr = base x f
                for group, base, fn in zip(inner.param_groups, sched.base_lrs, lambdas, strict=True):
                    value = base * fn(sched.last_epoch)
                    if isinstance(group["lr"], torch.Tensor):
                        group["lr"].fill_(value)
                    else:
                        group["lr"] = value
            _seam.set_last_lr(sched, [HT.as_float(g["lr"]) for g in inner.param_groups])
        rec = E._RECORDS.get(inner)  # an optimizer regrouped by an earlier train(): its as-built LRs too
        if rec is not None:
            for hyper in rec.hyper:
                for key in ("lr", "initial_lr"):
                    if key in hyper:
                        hyper[key] = lr
        run = self._run
        if run is not None and run.ctx is not None:
            run.ctx.base_lr = lr  # the schedule callbacks' default LR
            run.validate()  # rebuild the schedules that defaulted to the old one
        log.info("LRFinder: learning rate set to %g", lr)


# ----------------------------------------------------------------------------------------------
# the largest micro-batch that fits (handbook H4)
class MicroBatchFinder(HPCallback):
    """The largest micro-batch that fits in memory, accumulated to ``target_batch_size`` exactly (handbook H4).

    The same arguments and rule as Lightning's ``MicroBatchFinder``, where HF's
    ``auto_find_batch_size`` would shrink the batch (x 0.9 per out-of-memory error) and keep the
    accumulation, changing the effective batch and stretching the schedule. At ``on_init_end``
    (inside ``Trainer(...)``, before ``train()`` counts its updates) it runs the core's
    :func:`hpcallbacks.batch.fit_micro_batch`: among the divisors of ``target_batch_size /
    args.world_size`` (at most ``max_micro_batch``), the largest ``n`` for which a trial step
    fits; then ``args.per_device_train_batch_size`` (and the Trainer's batch size) become ``n`` and
    ``args.gradient_accumulation_steps`` ``target / (n x world size)``: micro-batch x accumulation x
    world size is the target, exactly, and ``state.max_steps``, HF's LR schedule and every
    hpcallbacks schedule count the updates of the run set by hand to those numbers.

    The trial step of ``n`` (:func:`hpcallbacks.torch.microbatch.find_micro_batch`): the first
    batch of the Trainer's own train dataloader (``get_train_dataloader()``: its collator, column
    removal and sampler; per process under torchrun) at ``n``, the Trainer's ``compute_loss``,
    backward, an optimizer step (the optimizer passed in ``optimizers=``, else a temporary one
    from ``create_optimizer()``, dropped afterwards) and a second forward + backward, with every
    group that a ``StagedUnfreeze`` of the Trainer trains at some stage trainable (the memory of
    its widest stage). An out-of-memory error means "does not fit"
    (:func:`hpcallbacks.torch.microbatch.is_out_of_memory`: ``torch.cuda.OutOfMemoryError`` and the
    out-of-memory messages accelerate reads, a CPU allocation failure among them); any other error is raised.
    Under torchrun every decision is the minimum over the processes (``torch.distributed``).
    Afterwards weights, buffers, optimizer state, gradients, ``requires_grad`` flags, training
    modes and RNG states are restored bit-identically. ``.result`` is the
    :class:`hpcallbacks.batch.MicroBatch` (exported in ``trainer_state.json``).

    The ``TrainingArguments`` object is changed (``per_device_train_batch_size``,
    ``gradient_accumulation_steps``). Refused (``ValueError`` when the Trainer is built):
    ``gradient_accumulation_steps`` other than 1, ``auto_find_batch_size``, a
    ``GradientAccumulation`` or ``BatchRamp`` beside it, several GPUs in one process
    (DataParallel: use torchrun), a target below or not a multiple of the world size, and no
    micro-batch that fits; added with ``add_callback()`` after the Trainer exists it is too late
    (refused at ``on_train_begin``). The model is probed as it is, unwrapped (no DeepSpeed / FSDP
    sharding).

    In ``Trainer.hyperparameter_search`` with ``per_device_train_batch_size`` in the search space,
    each trial keeps ``target_batch_size``: the trial's batch per device is the micro-batch and the
    accumulation is set again (``target / (batch x world size)``) once HF has applied the trial's
    values, before ``train()`` counts the updates. A trial's batch that does not divide
    ``target_batch_size / world size``, or is above the micro-batch found (the largest that fits,
    or ``max_micro_batch``), is refused (``ValueError`` naming the values to search over) before
    that trial trains. Without the batch in the space every trial uses the micro-batch found.
    """

    role = "accumulation"

    def __init__(self, target_batch_size: int, max_micro_batch: int | None = None) -> None:
        super().__init__()
        self.target_batch_size = check.positive_int("target_batch_size", target_batch_size)
        self.max_micro_batch = _optional_int("max_micro_batch", max_micro_batch)
        self.result: B.MicroBatch | None = None
        self._saved: dict[str, Any] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"target_batch_size": self.target_batch_size, "max_micro_batch": self.max_micro_batch}

    @property
    def result_config(self) -> dict[str, Any] | None:
        return None if self.result is None else self.result.get_config()

    @result_config.setter
    def result_config(self, value: dict[str, Any] | None) -> None:
        self._saved = value  # a checkpoint's result: this run probed its own at on_init_end

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "result_config": self.result_config}

    def on_init_end(self, args, state, control, **kwargs):
        super().on_init_end(args, state, control, **kwargs)
        trainer = _seam.calling_trainer()
        if trainer is None:
            raise ValueError("MicroBatchFinder probes at on_init_end, inside Trainer(...): pass it in "
                             "Trainer(callbacks=[...])")
        if int(getattr(args, "n_gpu", 1) or 1) > 1:
            raise ValueError(f"MicroBatchFinder sets the micro-batch per process, but this process drives "
                             f"{args.n_gpu} GPUs (DataParallel): launch one process per GPU with torchrun")
        _take_accumulation(args, state, "MicroBatchFinder", int(args.gradient_accumulation_steps))  # refusals first
        self.result = result = self._search(trainer, args, kwargs)
        _seam.set_train_batch_size(trainer, result.micro_batch_size)
        args.per_device_train_batch_size = result.micro_batch_size
        _take_accumulation(args, state, "MicroBatchFinder", result.accumulation)
        log.info("MicroBatchFinder: %s (probed %s)", result.describe(), list(result.probes))
        # Trainer.hyperparameter_search: each trial's per_device_train_batch_size, once HF has set it
        _seam.after_trial_values(trainer, lambda: self._trial_values(trainer, result))

    def _trial_values(self, trainer: Any, found: B.MicroBatch) -> None:
        """A search trial's batch per process as the micro-batch, accumulated to ``target_batch_size`` exactly.

        The trial's ``per_device_train_batch_size`` (the one found when the space does not hold it)
        must divide ``target_batch_size / world size`` and be at most the micro-batch found at
        ``on_init_end`` (the largest that fits, or ``max_micro_batch``); anything else is refused
        before the trial trains, as an inexact ``GradientAccumulation`` target is.
        """
        args = trainer.args
        size = int(args.train_batch_size)
        per = found.target_batch_size // found.world_size
        if size != found.micro_batch_size:
            fitting = [d for d in range(1, found.micro_batch_size + 1) if per % d == 0]
            if per % size or size > found.micro_batch_size:
                why = (f"does not divide target_batch_size / world size = {per}" if per % size else
                       f"is above the largest micro-batch that fits, {found.micro_batch_size}")
                raise ValueError(f"MicroBatchFinder(target_batch_size={found.target_batch_size}): this trial's "
                                 f"per_device_train_batch_size={size} {why}, so no accumulation reaches the target: "
                                 f"search over {fitting} or leave per_device_train_batch_size out of the space")
        self.result = result = B.MicroBatch(size, per // size, found.world_size, found.target_batch_size,
                                            found.probes)
        _seam.set_train_batch_size(trainer, size)
        _take_accumulation(args, trainer.state, "MicroBatchFinder", result.accumulation)
        log.info("MicroBatchFinder: trial %s", result.describe())

    def _search(self, trainer: Any, args: Any, kwargs: dict[str, Any]) -> B.MicroBatch:
        from .callbacks import StagedUnfreeze

        model = kwargs.get("model") or trainer.model
        widest = [p for plan in _seam.callback_list(trainer) if isinstance(plan, StagedUnfreeze)
                  for p in HTM.widest_trainable(HT.discover_groups(model, plan.groups), plan.plan)]
        flags = [p.requires_grad for p in widest]
        given = kwargs.get("optimizer")
        world = max(1, int(args.world_size))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        before = _seam.train_batch_size(trainer)

        def batch_of(n: int) -> Any:
            _seam.set_train_batch_size(trainer, n)
            loader = trainer.get_train_dataloader()
            batches = HT.Batches(loader)
            try:
                return _to_device(batches.next(), device)
            finally:
                batches.close()
                _seam.forget_prepared_loader(trainer, loader)

        def loss_of(batch: Any) -> torch.Tensor:
            with trainer.compute_loss_context_manager():
                return trainer.compute_loss(model, dict(batch))

        def reduce_min(code: int) -> int:
            value = torch.tensor([code], device=args.device)
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
            return int(value.item())

        distributed = world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
        try:
            for p in widest:  # before a temporary optimizer is built: it holds what the widest stage trains
                p.requires_grad_(True)
            optimizer = E.inner_optimizer(given) if given is not None else trainer.create_optimizer()
            return HTM.find_micro_batch(self.target_batch_size, world, model, [optimizer], batch_of, loss_of,
                                        max_micro_batch=self.max_micro_batch,
                                        reduce_min=reduce_min if distributed else None)
        except ValueError as e:
            raise ValueError(f"MicroBatchFinder: {e}") from None
        finally:
            _seam.set_train_batch_size(trainer, before)
            for p, flag in zip(widest, flags, strict=True):
                p.requires_grad_(flag)
            if given is None:
                trainer.optimizer = None  # the Trainer builds its own in train()
            HTM.free_memory()

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        for other in (GradientAccumulation, BatchRamp):
            if _members(self._run, other):
                raise ValueError(f"{other.__name__} and MicroBatchFinder both set the accumulation: keep one "
                                 "(MicroBatchFinder reaches target_batch_size by accumulation itself)")
        if self.result is None:
            raise ValueError("MicroBatchFinder did not run before train() read the batch size (it does so at "
                             "on_init_end): pass it in Trainer(callbacks=[...]); add_callback() after the Trainer is "
                             "built is too late")
        _check_taken(args, "MicroBatchFinder", self.result.accumulation)
        trainer = _seam.calling_trainer()
        trains_at = _seam.training_batch_size(trainer) if trainer is not None else self.result.micro_batch_size
        if trains_at != self.result.micro_batch_size:
            raise ValueError(  # transformers 4.x resumes at the checkpoint's batch, whatever this run found
                f"MicroBatchFinder: this run found {self.result.describe()}, but the Trainer trains at "
                f"{trains_at} samples per micro-batch (the checkpoint's: transformers {_seam.TRANSFORMERS_VERSION} "
                f"resumes at the batch it was written with), so an update would hold {trains_at} x "
                f"{self.result.accumulation} micro-batches instead of {self.result.target_batch_size} samples: resume "
                f"where the same micro-batch fits, or set per_device_train_batch_size={trains_at} with "
                "GradientAccumulation instead of the finder")
        saved, self._saved = self._saved, None
        if saved is not None and saved != self.result.get_config():
            log.info("MicroBatchFinder: the checkpoint's run used %s; this run uses %s (the same %d samples per "
                     "update)", B.MicroBatch.from_config(saved).describe(), self.result.describe(),
                     self.result.target_batch_size)

    def reset(self) -> None:
        super().reset()
        self._saved = None


# ----------------------------------------------------------------------------------------------
# hyperparameter search (handbook H8)
def broadcast_from_rank0(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (``torch.distributed.broadcast_object_list``); ``obj`` itself when
    no process group is initialized. Every process must call it (a collective).

    Under ``torchrun`` the group exists once ``TrainingArguments`` is made, so an objective can share rank
    0's sampled values before building the model:
    ``params = hpcallbacks.search.shared_params(params, broadcast_from_rank0)``.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1):
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


@public_callback
class TrialReporter(TrialReporterBase, TrainerCallback):
    """Report the monitored metric to an Optuna trial or Ray Tune at each evaluation; stop when pruned.

    The same arguments as Lightning's and Keras' ``TrialReporter``: ``trial`` an
    ``optuna.trial.Trial``, ``"ray"`` or ``None``; ``monitor`` a key of the evaluation metrics
    (default ``"eval_loss"``, HF's name of the validation loss). At each ``on_evaluate`` during
    ``train()`` it reports ``metrics[monitor]`` at step = the evaluation's index (0, 1, ...: the
    epoch with ``eval_strategy="epoch"``, and comparable between trials of different batch sizes;
    :class:`hpcallbacks.search.Reporter`); when the pruner says so it sets
    ``control.should_training_stop = True``: training ends after that evaluation. After
    ``train()``, :meth:`raise_if_pruned` raises ``optuna.TrialPruned`` so the study records it::

        import optuna
        from transformers import Trainer, TrainingArguments
        from hpcallbacks_hf import TrialReporter

        def objective(trial):
            args = TrainingArguments("out", eval_strategy="epoch", num_train_epochs=10,
                                     learning_rate=trial.suggest_float("lr", 1e-5, 1e-3, log=True))
            reporter = TrialReporter(trial)
            trainer = Trainer(model=make_model(), args=args, train_dataset=train, eval_dataset=val,
                              callbacks=[reporter])
            trainer.train()
            reporter.raise_if_pruned()
            return trainer.evaluate()["eval_loss"]

    Under ``torchrun`` (every process runs the objective) only process 0 talks to its trial; its
    decision reaches every process by :func:`broadcast_from_rank0` at each evaluation, so every
    process stops after the same evaluation. For every process to train with process 0's sampled
    values, share them once ``TrainingArguments`` exists (it sets up the process group):
    ``params = shared_params(params, broadcast_from_rank0)`` (:func:`hpcallbacks.search.shared_params`).
    Evaluations outside ``train()`` (a final ``trainer.evaluate()``) are not reported. ``.pruned``,
    ``.pruned_step`` and ``.message`` say what happened, on every process.

    A ``monitor`` missing from an evaluation's metrics is a ``ValueError`` naming it and the keys
    logged; ``eval_strategy="no"`` is refused when training begins. A multi-objective study gets no
    report (as in ``hyperparameter_search``), with a warning when the reporter is built. Inside
    ``Trainer.hyperparameter_search`` the Trainer reports and prunes by itself: ``TrialReporter`` is
    for an objective of your own.
    """

    default_monitor = "eval_loss"
    unit = "evaluation"

    def __init__(self, trial: Any, monitor: str | None = None) -> None:
        self._init_reporter(trial, monitor)
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._start(int(args.process_index) == 0, broadcast_from_rank0 if int(args.world_size) > 1 else None)
        strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
        self._check_evaluates(strategy != "no", f'eval_strategy="{strategy}"',
                              'pass TrainingArguments(eval_strategy="epoch") and an eval_dataset')
        self._training = True

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        self._end()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._training and self._report(metrics or {}, len(self.reporter.history)):
            control.should_training_stop = True


# the exported callbacks not derived from HPCallback: the same guards, argument checks and place in the Trainer
for _cls in (ParamScheduler, InstanceNoise, LabelSmoothing, LabelFlip, HyperparameterAdvisor):
    public_callback(_cls)
del _cls


# ----------------------------------------------------------------------------------------------
# the whole fine-tuning recipe (handbook H2, H3, H4, H5)
class FineTune(StagedUnfreeze):
    """The handbook's whole fine-tuning recipe in one callback (fastai's ``learn.fine_tune`` for HF ``Trainer``).

    The same arguments and rule as Lightning's and Keras' ``FineTune``. At ``on_train_begin`` the
    core :class:`hpcallbacks.recipe.Recipe` is computed from the run: the train data set's length
    (or ``num_samples``), ``similar``, the layer groups (``groups``, as for ``StagedUnfreeze``;
    default embeddings / each block / the head), the epochs and updates per epoch, the optimizer
    (its H2 row), ``per_device_train_batch_size`` and whether the model has BatchNorm layers;
    then it acts as the ``StagedUnfreeze`` (plan, per-group factors, BatchNorm policy ``bn``
    unless given) and the schedule callback (a cosine per stage with a warm restart at each
    unfreeze; it replaces HF's default ``lr_scheduler_type``) the recipe names. ``learning_rate``:
    ``None`` (H2's rule for the optimizer: ``TrainingArguments.learning_rate`` is not used), a
    number (the head's peak), or ``"range_test"`` (what an ``LRFinder(apply=True)`` in the same
    Trainer finds). ``str(callback.recipe)`` explains every choice with its handbook section.

    A schedule and a plan at once (role ``"recipe"`` of :mod:`hpcallbacks.run`): another schedule
    callback, ``StagedUnfreeze``, ``DiscriminativeLR`` or a non-default ``lr_scheduler_type`` is
    refused; ``GradientAccumulation``, ``MicroBatchFinder``, ``TrialReporter`` work beside it. The
    recipe is a function of the run's facts, so ``resume_from_checkpoint`` continues it exactly.

    >>> FineTune(similar=True).get_config()["similar"]
    True
    """

    role = "recipe"

    def __init__(self, similar: bool = False, learning_rate: float | str | None = None,
                 num_samples: int | None = None, groups: Sequence[Any] | None = None, bn: str | None = None,
                 head_epochs: float = 1.0, large_threshold: int = 10_000) -> None:
        from hpcallbacks.plans import FreezePlan
        from hpcallbacks.recipe import fine_tune_arguments

        super().__init__(FreezePlan.head_then_all(), groups, bn)
        vars(self).update(fine_tune_arguments(similar, learning_rate, num_samples, head_epochs, large_threshold))
        self.recipe: Any = None

    def get_config(self) -> dict[str, Any]:
        from .callbacks import _groups_json

        return {"similar": self.similar, "learning_rate": self.learning_rate, "num_samples": self.num_samples,
                "groups": _groups_json(self.groups, self._model), "bn": self.bn, "head_epochs": self.head_epochs,
                "large_threshold": self.large_threshold}

    def _run_member(self) -> R.Member:
        return R.Member("FineTune", "recipe", factors=self.plan.factors, groups=self.groups)

    def build_schedule(self, ctx: E.Context) -> S.Schedule:
        from hpcallbacks.recipe import RANGE_TEST

        return self.recipe.schedule(ctx.base_lr if self.learning_rate == RANGE_TEST else None)

    def on_train_begin(self, args, state, control, **kwargs):
        from hpcallbacks.recipe import RANGE_TEST, Recipe, optimizer_kind
        from hpcallbacks.torch import discover_groups

        from .callbacks import _handler

        model = kwargs.get("model") or self._model
        optimizer = kwargs.get("optimizer")
        loader = kwargs.get("train_dataloader")
        if model is None or optimizer is None:
            raise ValueError("FineTune needs the Trainer's model and optimizer at on_train_begin")
        if self.learning_rate == RANGE_TEST:
            handler = _handler()
            if handler is None or not any(isinstance(cb, LRFinder) and cb.apply for cb in handler.callbacks):
                raise ValueError("FineTune(learning_rate='range_test') takes the rate an LRFinder(apply=True) finds: "
                                 "add LRFinder(apply=True) to the Trainer's callbacks, or give learning_rate")
        samples = self.num_samples
        if samples is None:
            try:
                samples = len(loader.dataset)  # type: ignore[union-attr]
            except (TypeError, AttributeError):
                raise ValueError("FineTune: the number of training samples cannot be read from the train dataloader "
                                 "(a data set without a length): pass num_samples=") from None
        spe, known = E.steps_per_epoch(args, state, loader)
        if not known:
            raise ValueError("FineTune needs the updates per epoch: give the train data set a length")
        try:
            groups = discover_groups(model, self.groups)
        except ValueError as error:
            raise ValueError(f"FineTune(groups={self.groups!r}): {error}") from None
        total = int(state.max_steps) if state.max_steps and state.max_steps > 0 else spe
        inner = E.inner_optimizer(optimizer)
        first = inner.param_groups[0]
        kind = optimizer_kind(type(inner).__name__, float(first.get("momentum", 0.0) or 0.0),
                              bool(first.get("nesterov", False)))
        norms = any(isinstance(m, _seam.BatchNormBase) for m in model.modules())
        self.recipe = Recipe(num_samples=samples, num_groups=len(groups), epochs=max(1, math.ceil(total / spe)),
                             steps_per_epoch=spe, similar=self.similar, optimizer=kind,
                             learning_rate=self.learning_rate, batch_size=int(args.per_device_train_batch_size),
                             batch_norm=norms, large_threshold=self.large_threshold, head_epochs=self.head_epochs)
        log.info("%s", self.recipe)
        self.plan = self.recipe.plan
        super().on_train_begin(args, state, control, **kwargs)
