"""One callback per core schedule family, with the family's name and arguments.

``CosineRestart(initial_learning_rate=None, first_decay_steps=None, t_mul=2.0, m_mul=1.0,
alpha=0.0)`` is :class:`hpcallbacks_hf.LearningRateSchedule` of ``hpcallbacks.CosineRestart(...)``
whose missing arguments (``None``) are filled at ``on_train_begin`` by the one rule every
adapter applies, :mod:`hpcallbacks.defaults`: a learning rate defaults to the optimizer's
(``TrainingArguments.learning_rate`` for the Trainer's own optimizer), a period to the run's
optimizer updates per epoch (after gradient accumulation), a whole decay to the run's total
optimizer updates (``state.max_steps``). Arguments with a default in the core keep it. The
arguments are checked when the callback is built (a wrong keyword is an
:class:`hpcallbacks.ArgumentError`).

Resume and extend (:func:`hpcallbacks.run.schedule_for_run`): the checkpoint keeps the facts the
defaults came from (:class:`hpcallbacks.run.ScheduleState`, in ``trainer_state.json``); a resumed
run keeps the first run's learning rate and recomputes the lengths derived from the run for the
run being started (more epochs: a longer decay), with a :class:`hpcallbacks.run.RunWarning`
giving the learning rate before and after when that changes the schedule.
"""
from __future__ import annotations

import inspect
from typing import Any

from hpcallbacks import defaults as D
from hpcallbacks import run as R
from hpcallbacks import schedules as S
from hpcallbacks._checks import bind

from . import _engine as E
from .callbacks import _ScheduleCallback

__all__ = [
    "FAMILIES",
    "Constant", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay",
    "CosineRestart", "LinearCosineDecay", "NoisyLinearCosineDecay", "StepDecay", "MultiStepDecay", "OneCycle",
    "Cyclic", "SlantedTriangular", "InverseSqrt", "WarmupStableDecay", "Warmup",
]


class _FamilyCallback(_ScheduleCallback):
    family: type[S.Schedule]
    __signature__: inspect.Signature

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        name = self.family.__name__
        # ArgumentError with "did you mean" for a wrong keyword; every given value checked now
        self.arguments = D.callback_arguments(name, bind(self.__signature__, type(self).__name__, args, kwargs))
        self._facts: R.ScheduleState | None = None  # this run's facts (checkpointed)
        self._saved_facts: dict[str, Any] | None = None  # the checkpoint's, on resume
        self.schedule_notice: str | None = None

    def get_config(self) -> dict[str, Any]:
        return {k: S.serialize(v) if isinstance(v, S.Schedule) else list(v) if isinstance(v, tuple) else v
                for k, v in self.arguments.items()}

    @property
    def schedule_state(self) -> dict[str, Any] | None:
        """The run facts the defaults came from (:class:`hpcallbacks.run.ScheduleState`), for the checkpoint."""
        return None if self._facts is None else self._facts.to_dict()

    @schedule_state.setter
    def schedule_state(self, value: dict[str, Any] | None) -> None:
        self._saved_facts = value

    def _attributes(self) -> dict[str, Any]:
        return {**super()._attributes(), "schedule_state": self.schedule_state}

    def reset(self) -> None:
        super().reset()
        self._saved_facts = None

    def build_schedule(self, ctx: E.Context) -> S.Schedule:
        state = ctx.state
        done = max(int(state.global_step) - int(getattr(self._run, "skipped", 0) or 0), 0)
        self.schedule, self._facts, self.schedule_notice = R.schedule_for_run(
            type(self).__name__, self.family.__name__, self.arguments, ctx.base_lr,
            ctx.steps_per_epoch if ctx.epoch_known else None, ctx.total_updates, saved=self._saved_facts,
            resumed_at=done)
        return self.schedule

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items() if v is not None)
        return f"{type(self).__name__}({given})"


def _family(name: str) -> type[_FamilyCallback]:
    family = S.SCHEDULES[name]
    doc = (f"The :class:`hpcallbacks.{name}` schedule as a Trainer callback (same arguments, same numbers).\n\n"
           f"Defaults taken from the run (:mod:`hpcallbacks.defaults`): {D.describe(name)}.\n\n"
           "See :class:`hpcallbacks_hf.LearningRateSchedule` for how it replaces HF's schedule.\n\n"
           + (family.__doc__ or "").split(">>>")[0].rstrip() + "\n")
    return type(name, (_FamilyCallback,), {"family": family, "__doc__": doc, "__module__": __name__,
                                           "__qualname__": name, "__signature__": D.callback_signature(name)})


Constant = _family("Constant")
ExponentialDecay = _family("ExponentialDecay")
PiecewiseConstantDecay = _family("PiecewiseConstantDecay")
PolynomialDecay = _family("PolynomialDecay")
InverseTimeDecay = _family("InverseTimeDecay")
CosineDecay = _family("CosineDecay")
CosineRestart = _family("CosineRestart")
LinearCosineDecay = _family("LinearCosineDecay")
NoisyLinearCosineDecay = _family("NoisyLinearCosineDecay")
StepDecay = _family("StepDecay")
MultiStepDecay = _family("MultiStepDecay")
OneCycle = _family("OneCycle")
Cyclic = _family("Cyclic")
SlantedTriangular = _family("SlantedTriangular")
InverseSqrt = _family("InverseSqrt")
WarmupStableDecay = _family("WarmupStableDecay")
Warmup = _family("Warmup")

#: Every family callback by name.
FAMILIES: dict[str, type[_FamilyCallback]] = {
    c.__name__: c for c in (Constant, ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay,
                            CosineDecay, CosineRestart, LinearCosineDecay, NoisyLinearCosineDecay, StepDecay,
                            MultiStepDecay, OneCycle, Cyclic, SlantedTriangular, InverseSqrt, WarmupStableDecay,
                            Warmup)
}
