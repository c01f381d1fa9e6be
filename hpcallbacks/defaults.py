"""What a schedule callback's missing arguments default to: one rule for every adapter.

``CosineRestart()`` in Keras, Lightning and HF builds the same schedule from the same run: the
callback fills only the arguments the core schedule *requires* and the user left out, from
three facts of the run (:class:`RunFacts`)::

==========================  ===============================================================
argument                    default
==========================  ===============================================================
a learning rate             the optimizer's learning rate at the start of training
(``initial_learning_rate``, (``Warmup``'s ``schedule``: that rate held constant;
``max_lr``, ``value``)      ``Cyclic``'s ``base_lr``: ``max_lr / 10``)
a period                    the run's optimizer updates per epoch (``CosineRestart`` restarts
                            after the first epoch; ``StepDecay`` steps once an epoch;
                            ``InverseTimeDecay`` is ``lr / (1 + epochs done)``; ``Warmup``
                            warms up over the first epoch)
a whole decay               the run's total optimizer updates (``CosineDecay`` after its
                            warmup, ``PolynomialDecay``, ``LinearCosineDecay``, ``OneCycle``,
                            ``SlantedTriangular``; ``ExponentialDecay`` ends 10x lower;
                            ``WarmupStableDecay`` warms up and decays over 10% each)
==========================  ===============================================================

Arguments with a default in the core keep it (``Cyclic(step_size_up=2000)``, torch's).
``PiecewiseConstantDecay`` and ``MultiStepDecay`` need their boundaries: nothing to guess.

>>> run = RunFacts(learning_rate=0.1, steps_per_epoch=50, total_steps=500)
>>> build("CosineRestart", {}, run)
CosineRestart(initial_learning_rate=0.1, first_decay_steps=50.0, t_mul=2.0, m_mul=1.0, alpha=0.0)
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import schedules as S

__all__ = ["RunFacts", "build", "check", "run_defaults", "describe", "FAMILIES", "callback_signature", "callback_repr",
           "callback_arguments"]


@dataclass(frozen=True)
class RunFacts:
    """What an adapter knows of the run when training starts."""

    learning_rate: float
    steps_per_epoch: int | None
    total_steps: int | None


_Rule = Callable[[RunFacts, Mapping[str, Any]], Any]


def _lr(run: RunFacts, given: Mapping[str, Any]) -> float:
    return run.learning_rate


def _epoch(name: str) -> _Rule:
    def rule(run: RunFacts, given: Mapping[str, Any]) -> int:
        if run.steps_per_epoch is None:
            raise ValueError(f"{name} defaults to the updates per epoch, unknown for this run (a data set without "
                             f"a length): pass {name}=")
        return run.steps_per_epoch
    return rule


def _total(name: str, minus: str | None = None) -> _Rule:
    def rule(run: RunFacts, given: Mapping[str, Any]) -> int:
        if run.total_steps is None:
            raise ValueError(f"{name} defaults to the run's total updates, unknown for this run (no epoch or step "
                             f"limit, or a data set without a length): pass {name}=")
        return max(1, run.total_steps - int(given.get(minus) or 0)) if minus else max(1, run.total_steps)
    return rule


def _tenth(run: RunFacts) -> int:
    if run.total_steps is None:
        raise ValueError("WarmupStableDecay defaults its phases to 10% of the run's total updates, unknown for this "
                         "run: pass warmup_steps=, stable_steps= and decay_steps=")
    return max(1, round(0.1 * run.total_steps))


def _wsd(part: str) -> _Rule:
    def rule(run: RunFacts, given: Mapping[str, Any]) -> int:
        warm = given.get("warmup_steps")
        decay = given.get("decay_steps")
        warm = _tenth(run) if warm is None else warm
        decay = _tenth(run) if decay is None else decay
        if part == "stable_steps":
            return max(0, (run.total_steps or 0) - warm - decay)
        return warm if part == "warmup_steps" else decay
    return rule


#: Per family: argument -> (rule, what the docs say it defaults to).
FAMILIES: dict[str, dict[str, tuple[_Rule, str]]] = {
    "Constant": {"value": (_lr, "the optimizer's learning rate")},
    "ExponentialDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_total("decay_steps"), "the run's total updates"),
        "decay_rate": (lambda run, given: 0.1, "0.1 (the LR ends 10x lower)"),
    },
    "PiecewiseConstantDecay": {},
    "PolynomialDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_total("decay_steps"), "the run's total updates"),
    },
    "InverseTimeDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_epoch("decay_steps"), "the updates per epoch"),
        "decay_rate": (lambda run, given: 1.0, "1.0 (lr / (1 + epochs done))"),
    },
    "CosineDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_total("decay_steps", minus="warmup_steps"), "the run's total updates after the warmup"),
    },
    "CosineRestart": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "first_decay_steps": (_epoch("first_decay_steps"), "the updates per epoch (restarts after the first epoch)"),
    },
    "LinearCosineDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_total("decay_steps"), "the run's total updates"),
    },
    "NoisyLinearCosineDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "decay_steps": (_total("decay_steps"), "the run's total updates"),
    },
    "Warmup": {
        "schedule": (lambda run, given: S.Constant(run.learning_rate), "the optimizer's learning rate, constant"),
        "warmup_steps": (_epoch("warmup_steps"), "the updates per epoch"),
    },
    "StepDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "step_size": (_epoch("step_size"), "the updates per epoch"),
    },
    "MultiStepDecay": {"initial_learning_rate": (_lr, "the optimizer's learning rate")},
    "OneCycle": {
        "max_lr": (_lr, "the optimizer's learning rate"),
        "total_steps": (_total("total_steps"), "the run's total updates"),
    },
    "Cyclic": {
        "max_lr": (_lr, "the optimizer's learning rate"),
        "base_lr": (lambda run, given: (given.get("max_lr") or run.learning_rate) / 10.0, "max_lr / 10"),
    },
    "SlantedTriangular": {
        "max_lr": (_lr, "the optimizer's learning rate"),
        "total_steps": (_total("total_steps"), "the run's total updates"),
    },
    "InverseSqrt": {"initial_learning_rate": (_lr, "the optimizer's learning rate")},
    "WarmupStableDecay": {
        "initial_learning_rate": (_lr, "the optimizer's learning rate"),
        "warmup_steps": (_wsd("warmup_steps"), "10% of the run's total updates"),
        "stable_steps": (_wsd("stable_steps"), "the updates between warmup and decay"),
        "decay_steps": (_wsd("decay_steps"), "10% of the run's total updates"),
    },
}

_PLACEHOLDER = RunFacts(learning_rate=0.1, steps_per_epoch=10, total_steps=1000)


def _family(family: str | type[S.Schedule]) -> tuple[str, type[S.Schedule]]:
    name = family if isinstance(family, str) else family.__name__
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(sorted(FAMILIES))}; got {name!r}")
    return name, S.SCHEDULES[name]


def run_defaults(family: str | type[S.Schedule]) -> dict[str, str]:
    """The arguments of ``family`` a callback fills from the run, with what they default to."""
    name, _ = _family(family)
    return {arg: text for arg, (_, text) in FAMILIES[name].items()}


def build(family: str | type[S.Schedule], given: Mapping[str, Any], run: RunFacts) -> S.Schedule:
    """The core schedule ``family`` from the user's arguments (``None`` = not given) and the run."""
    name, cls = _family(family)
    given = {k: v for k, v in given.items() if v is not None}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"{name} takes {', '.join(fields)}; got unknown argument(s) {', '.join(unknown)}")
    kwargs = dict(given)
    for arg, (rule, _) in FAMILIES[name].items():
        if arg not in kwargs:
            kwargs[arg] = rule(run, given)
    missing = [a for a, f in fields.items() if a not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)}: no default can be taken from the run")
    return cls(**kwargs)


def check(family: str | type[S.Schedule], given: Mapping[str, Any]) -> None:
    """Refuse bad arguments when a callback is built, before the run is known."""
    build(family, given, _PLACEHOLDER)


def describe(family: str | type[S.Schedule]) -> str:
    """One docstring line per defaulted argument, for the adapters' docstrings."""
    return "; ".join(f"``{arg}`` = {text}" for arg, text in run_defaults(family).items()) or "none"


def callback_signature(family: str | type[S.Schedule], extras: Sequence[inspect.Parameter] = ()) -> inspect.Signature:
    """The signature of ``family``'s callback in every adapter: the core schedule's arguments, in its
    order, those filled from the run defaulting to ``None``; ``extras``: an adapter's keyword-only ones.

    >>> callback_signature("CosineRestart")
    <Signature (initial_learning_rate=None, first_decay_steps=None, t_mul=2.0, m_mul=1.0, alpha=0.0)>
    """
    name, cls = _family(family)
    ruled = FAMILIES[name]
    params = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = None if (f.name in ruled or f.default is dataclasses.MISSING) else f.default
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
    return inspect.Signature([*params, *extras])


def callback_arguments(family: str | type[S.Schedule], bound: inspect.BoundArguments) -> dict[str, Any]:
    """A family callback's arguments from its bound call: defaults applied, a ``serialize()`` dict read
    back as a schedule, every given value checked now (:func:`check`; ``ValueError`` naming it)."""
    name, _ = _family(family)
    bound.apply_defaults()
    arguments = {k: S.deserialize(v) if isinstance(v, dict) and "class_name" in v else v
                 for k, v in bound.arguments.items()}
    check(name, {k: v for k, v in arguments.items() if k in {f.name for f in dataclasses.fields(S.SCHEDULES[name])}})
    return arguments


def callback_repr(name: str, arguments: dict[str, Any]) -> str:
    """How a family callback shows itself in every adapter: the arguments given, those left to the run
    (``None``) omitted.

    >>> callback_repr("CosineRestart", {"initial_learning_rate": None, "first_decay_steps": 500, "t_mul": 2.0})
    'CosineRestart(first_decay_steps=500, t_mul=2.0)'
    """
    given = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if v is not None)
    return f"{name}({given})"
