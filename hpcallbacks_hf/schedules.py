"""One callback per core schedule family, with the family's name and arguments.

``CosineRestart(initial_learning_rate=None, first_decay_steps=None, t_mul=2.0, m_mul=1.0,
alpha=0.0)`` is :class:`hpcallbacks_hf.LearningRateSchedule` of
``hpcallbacks.CosineRestart(...)`` whose missing arguments are taken from the run at
``on_train_begin``:

* the learning rate (``initial_learning_rate``, ``value``, ``max_lr``; ``Warmup``'s ``schedule``:
  that rate held constant): the optimizer's learning rate (``TrainingArguments.learning_rate``
  for the Trainer's own optimizer);
* :data:`EPOCH_DEFAULTS` (a period, a decay interval): the run's optimizer updates per epoch;
* :data:`TOTAL_DEFAULTS` (a whole decay, a cycle): the run's total optimizer updates
  (``state.max_steps``).

Every other argument keeps the core family's default, and required ones stay required
(``ExponentialDecay(decay_rate=0.5)``). The arguments are checked when the callback is built.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from hpcallbacks import schedules as S

from . import _engine as E
from .callbacks import _ScheduleCallback

__all__ = [
    "FAMILIES", "LR_DEFAULTS", "EPOCH_DEFAULTS", "TOTAL_DEFAULTS",
    "Constant", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay",
    "CosineRestart", "LinearCosineDecay", "NoisyLinearCosineDecay", "StepDecay", "MultiStepDecay", "OneCycle",
    "Cyclic", "SlantedTriangular", "InverseSqrt", "WarmupStableDecay", "Warmup",
]

#: Arguments that default to the optimizer's learning rate.
LR_DEFAULTS: dict[str, tuple[str, ...]] = {
    "Constant": ("value",),
    **{name: ("initial_learning_rate",) for name in (
        "ExponentialDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "CosineRestart",
        "LinearCosineDecay", "NoisyLinearCosineDecay", "StepDecay", "MultiStepDecay", "InverseSqrt",
        "WarmupStableDecay")},
    "OneCycle": ("max_lr",), "SlantedTriangular": ("max_lr",), "Cyclic": ("max_lr",), "Warmup": ("schedule",),
}
#: Arguments that default to the run's optimizer updates per epoch.
EPOCH_DEFAULTS: dict[str, tuple[str, ...]] = {
    "CosineRestart": ("first_decay_steps",), "ExponentialDecay": ("decay_steps",),
    "InverseTimeDecay": ("decay_steps",), "StepDecay": ("step_size",), "Cyclic": ("step_size_up",),
    "Warmup": ("warmup_steps",),
}
#: Arguments that default to the run's total optimizer updates.
TOTAL_DEFAULTS: dict[str, tuple[str, ...]] = {
    "CosineDecay": ("decay_steps",), "PolynomialDecay": ("decay_steps",), "LinearCosineDecay": ("decay_steps",),
    "NoisyLinearCosineDecay": ("decay_steps",), "OneCycle": ("total_steps",), "SlantedTriangular": ("total_steps",),
}

_PLACEHOLDER_LR = 1.0
_PLACEHOLDER_STEPS = 100


class _FamilyCallback(_ScheduleCallback):
    family: type[S.Schedule]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        name = self.family.__name__
        fields = [f for f in dataclasses.fields(self.family) if f.init]
        names = [f.name for f in fields]
        if len(args) > len(names):
            raise TypeError(f"{name}() takes at most {len(names)} arguments ({len(args)} given)")
        values: dict[str, Any] = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}; it takes {', '.join(names)}")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            values[key] = value
        optional = self._run_defaults()
        for f in fields:
            if f.name in values:
                continue
            if f.name in optional:
                values[f.name] = None
            elif f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                values[f.name] = f.default_factory()  # type: ignore[misc]
            else:
                raise TypeError(f"{name}() missing required argument {f.name!r}")
        self.arguments = {n: values[n] for n in names}
        self._build(_PLACEHOLDER_LR, _PLACEHOLDER_STEPS, _PLACEHOLDER_STEPS)  # checks every given argument

    @classmethod
    def _run_defaults(cls) -> dict[str, str]:
        name = cls.family.__name__
        out = {a: "lr" for a in LR_DEFAULTS.get(name, ())}
        out.update({a: "epoch" for a in EPOCH_DEFAULTS.get(name, ())})
        out.update({a: "total" for a in TOTAL_DEFAULTS.get(name, ())})
        return out

    def _build(self, lr: float, epoch: int, total: int) -> S.Schedule:
        fill = {"lr": lr, "epoch": epoch, "total": total}
        kwargs = dict(self.arguments)
        for key, kind in self._run_defaults().items():
            if kwargs.get(key) is None:
                kwargs[key] = S.Constant(lr) if key == "schedule" else fill[kind]
            elif key == "schedule" and isinstance(kwargs[key], dict):
                kwargs[key] = S.deserialize(kwargs[key])
        return self.family(**kwargs)

    def get_config(self) -> dict[str, Any]:
        return {k: S.serialize(v) if isinstance(v, S.Schedule) else list(v) if isinstance(v, tuple) else v
                for k, v in self.arguments.items()}

    def build_schedule(self, ctx: E.Context) -> S.Schedule:
        try:
            self.schedule = self._build(ctx.base_lr, ctx.steps_per_epoch, ctx.total_updates)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: with the run's defaults (learning rate {ctx.base_lr:g}, "
                             f"{ctx.steps_per_epoch} updates per epoch, {ctx.total_updates} updates): {error}"
                             ) from None
        return self.schedule


def _family(name: str) -> type[_FamilyCallback]:
    family = S.SCHEDULES[name]
    defaults = []
    for kind, table in (("the optimizer's learning rate", LR_DEFAULTS), ("the updates per epoch", EPOCH_DEFAULTS),
                        ("the run's total updates", TOTAL_DEFAULTS)):
        for arg in table.get(name, ()):
            defaults.append(f"``{arg}=None``: {kind}")
    doc = (f"The :class:`hpcallbacks.{name}` schedule as a Trainer callback (same arguments).\n\n"
           + ("Run defaults: " + "; ".join(defaults) + ".\n\n" if defaults else "")
           + "See :class:`hpcallbacks_hf.LearningRateSchedule` for how it replaces HF's schedule.\n\n"
           + (family.__doc__ or "").split(">>>")[0].rstrip() + "\n")
    return type(name, (_FamilyCallback,), {"family": family, "__doc__": doc, "__module__": __name__,
                                           "__qualname__": name})


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
