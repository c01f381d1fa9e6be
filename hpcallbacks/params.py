"""Scheduled hyperparameters: any named hyperparameter driven by any schedule of the core.

The learning rate is not the only number that changes during training: momentum or Adam's
``beta_1`` (cycled against the learning rate in the 1cycle policy), weight decay, a dropout
rate, a GAN's instance-noise level. :class:`ParamSchedule` names the hyperparameter and the
schedule; an adapter sets the named value of the optimizer (or model) before each update.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._values import Value
from .schedules import Schedule, as_schedule

__all__ = ["ParamSchedule", "param_schedules"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True)
class ParamSchedule(Value):
    """The hyperparameter ``name`` follows ``schedule``: ``value(t) = schedule(t)``.

    ``name`` is what the adapter sets (an optimizer hyperparameter such as ``"momentum"``,
    ``"beta_1"`` or ``"weight_decay"``, or a model attribute such as ``"dropout"``); letters,
    digits, ``_`` and ``.``. ``t`` is the optimizer-update count, as for learning rates.
    ``schedule`` is any core schedule, or a number for a constant.

    >>> from hpcallbacks.schedules import Cyclic
    >>> momentum = ParamSchedule("momentum", Cyclic(0.85, 0.95, step_size_up=100))
    >>> momentum.value(0), momentum.value(100)
    (0.85, 0.95)
    """

    name: str
    schedule: Schedule

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"name must be a hyperparameter name (letters, digits, '_' and '.', not starting with a digit); "
                f"got {self.name!r}"
            )
        object.__setattr__(self, "schedule", as_schedule(self.schedule))

    def value(self, step: int | float) -> float:
        """The hyperparameter's value at optimizer update ``step``."""
        return self.schedule(step)

    def __call__(self, step: int | float) -> float:
        return self.schedule(step)

    def curve(self, n: int, start: int = 0) -> list[float]:
        """The values at updates ``start .. start + n - 1`` (for plots and tables)."""
        return self.schedule.curve(n, start)


def param_schedules(*items: Mapping[str, Any] | ParamSchedule) -> tuple[ParamSchedule, ...]:
    """The hyperparameter schedules an adapter's ``ParamScheduler(*items)`` is given, checked.

    Each item is a :class:`ParamSchedule` or a dict of name -> schedule (a number is a constant);
    both forms mix. Refuses no item at all, another kind of item (``schedules[i]``) and a name
    given twice.

    >>> from hpcallbacks.schedules import Constant
    >>> [p.name for p in param_schedules({"momentum": 0.9}, ParamSchedule("dropout", Constant(0.1)))]
    ['momentum', 'dropout']
    """
    params: list[ParamSchedule] = []
    for i, item in enumerate(items):
        if isinstance(item, ParamSchedule):
            params.append(item)
        elif isinstance(item, Mapping):
            params.extend(ParamSchedule(name, schedule) for name, schedule in item.items())
        else:
            raise ValueError(f"schedules[{i}] must be a dict of name -> schedule or a hpcallbacks.ParamSchedule; "
                             f"got {item!r}")
    if not params:
        raise ValueError("schedules must name at least one hyperparameter, e.g. ParamScheduler({'momentum': "
                         "Cyclic(0.85, 0.95, step_size_up=100)})")
    names = [p.name for p in params]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"schedules name {dup} more than once; give each hyperparameter one schedule")
    return tuple(params)
