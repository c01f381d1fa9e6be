"""Hyperparameter search over the handbook's ranges (handbook H8), on Optuna or Ray Tune.

* :func:`space` — a :class:`SearchSpace` drawn from the H2 table (:data:`hpcallbacks.advice.TABLE`):
  the learning rate (log-uniform over the optimizer's row; lowered by 1 to 2 orders of magnitude
  for fine-tuning, as :func:`~hpcallbacks.plans.fine_tune_learning_rate` does), the effective
  batch size, weight decay, dropout, and the schedule family and freeze plan as categorical
  choices. The handbook's single recommended values (momentum 0.9, Adam's betas and epsilon) stay
  fixed unless named in ``tune=``. Every configuration the space can produce passes
  :func:`~hpcallbacks.advice.check` with no warning.
  :meth:`SearchSpace.suggest` asks an Optuna trial, :meth:`SearchSpace.to_ray` writes a Ray Tune
  ``param_space``, :meth:`SearchSpace.sample` draws with :mod:`random`, and
  :meth:`SearchSpace.build` turns a configuration into the core objects the callbacks take.
* :class:`Reporter` — the framework-free body of every adapter's ``TrialReporter`` callback:
  ``report(value, step) -> should_stop`` for an Optuna trial (pruners) or Ray Tune (schedulers),
  with :func:`rank_zero_decides` for distributed runs and :func:`pruned_message`;
  :class:`TrialReporterBase` holds every decision the adapters share (a monitor never logged, a run
  that evaluates nothing, a multi-objective study, a fit in processes of its own) and its message.
* :class:`ScaledSchedule`, :func:`pbt_checkpoint`, :func:`pbt_restore` — population-based
  training: a learning-rate *scale* on an hpcallbacks schedule; after an exploit the update count
  continues from the donor's checkpoint, and the LR is the donor's schedule there times the new scale.
* :func:`search_main` — ``hpcallbacks search``: a study of a :class:`Task` (by default the demo's
  digits task, :mod:`hpcallbacks_demo.search`) with a pruner, resumable storage, several worker
  processes, a table of the trials, the best configuration beside the recipe's, and a picture of
  the trials against the H2 ranges; ``--engine ray`` runs it on Ray Tune with ASHA. No trial is
  lost to a killed worker: a resumed study fails the trials left running by a dead worker and runs
  them again (:func:`recover_stale_trials`: Optuna's heartbeat on RDB storages, the same rule with
  a heartbeat of its own on a journal file, and at once for a worker of this machine whose process
  is gone), and prints what it found and did.

Optuna, Ray and matplotlib are imported inside the functions that use them
(``pip install 'hpcallbacks[search]'``): ``import hpcallbacks.search`` stays pure Python.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _checks as check_arg
from . import defaults as D
from . import schedules as S
from .advice import OPTIMIZERS, ROWS, Finding
from .advice import check as check_hyperparameters
from .plans import FreezePlan, fine_tune_learning_rate

_log = logging.getLogger("hpcallbacks")

__all__ = [
    "Dimension",
    "SearchSpace",
    "Built",
    "space",
    "TUNABLE",
    "DEFAULT_SCHEDULES",
    "DEFAULT_PLANS",
    "FINE_TUNING_PLANS",
    "DEFAULT_BATCH_SIZES",
    "Reporter",
    "TrialReporterBase",
    "PRUNED_ATTR",
    "missing_monitor_message",
    "no_evaluation_message",
    "never_reported_message",
    "multi_objective_message",
    "other_process_message",
    "storage_is_shared",
    "rank_zero_decides",
    "shared_params",
    "pruned_message",
    "ScaledSchedule",
    "deserialize",
    "pbt_checkpoint",
    "pbt_restore",
    "Task",
    "load_task",
    "toy_train",
    "TOY_SPACE",
    "TOY",
    "TrialRow",
    "open_storage",
    "recover_stale_trials",
    "stale_reason",
    "HEARTBEAT_INTERVAL",
    "GRACE_PERIOD",
    "HEARTBEAT_ATTR",
    "run_optuna",
    "run_ray",
    "format_trials",
    "format_best",
    "plot_trials",
    "search_main",
]

# ------------------------------------------------------------------------------------- the space
#: Values the handbook gives as one recommended number, and the range searched when ``tune=`` names them.
TUNABLE: dict[str, tuple[float, float, bool]] = {
    "momentum": (0.8, 0.99, False),
    "beta_1": (0.8, 0.95, False),
    "beta_2": (0.99, 0.9999, False),
    "epsilon": (1e-10, 1e-6, True),
}
_ADAM_KINDS = ("adam", "adamw")
_MOMENTUM_KINDS = ("sgd_momentum", "nesterov")

#: Schedule families searched by default (core :data:`~hpcallbacks.schedules.SCHEDULES` names whose
#: arguments all default from the run, :mod:`hpcallbacks.defaults`); the first is the recipe's.
DEFAULT_SCHEDULES: tuple[str, ...] = ("CosineDecay", "Constant", "ExponentialDecay", "CosineRestart", "OneCycle")
#: Freeze plans (:class:`~hpcallbacks.plans.FreezePlan` constructors) searched when fine-tuning; the first is
#: the recipe's. From scratch nothing is pretrained, so the plan is ``all_trainable`` alone.
FINE_TUNING_PLANS: tuple[str, ...] = ("head_then_all", "all_trainable", "head_only", "gradual",
                                      "head_then_top_fraction")
DEFAULT_PLANS: tuple[str, ...] = ("all_trainable",)
_PLAN_CONSTRUCTORS = ("all_trainable", "head_only", "head_then_all", "gradual", "head_then_top_fraction")
#: Effective batch sizes searched by default: powers of two inside the H2 row [1, 1024].
DEFAULT_BATCH_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
#: Decoupled weight decay searched for ``"adamw"`` (not an H2 row: the table's is an L2 coefficient, which
#: :func:`~hpcallbacks.advice.check` does not apply to AdamW; torch's default 0.01 is inside).
ADAMW_WEIGHT_DECAY = (0.0, 0.1)
_REL = 1e-9


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter of a :class:`SearchSpace`.

    ``kind`` is ``"log"`` (log-uniform over ``[low, high]``), ``"uniform"``, ``"choice"`` (one of
    ``choices``) or ``"fixed"`` (always ``value``); ``row`` is the key of the H2 row it comes from
    (:data:`hpcallbacks.advice.ROWS`), ``note`` says how.
    """

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    row: str | None = None
    note: str = ""

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna ``trial`` suggests (``value`` itself when fixed)."""
        if self.kind == "log":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.value

    def to_ray(self) -> Any:
        """The Ray Tune domain (``tune.loguniform``, ``tune.uniform``, ``tune.choice``), or the fixed value."""
        if self.kind == "fixed":
            return self.value
        from ray import tune

        if self.kind == "log":
            return tune.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        return tune.choice(list(self.choices))

    def sample(self, rng: random.Random) -> Any:
        """A plain random draw (``rng`` a :class:`random.Random`)."""
        if self.kind == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))  # type: ignore[arg-type]
            return min(max(value, self.low), self.high)  # type: ignore[type-var]
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)  # type: ignore[arg-type]
        if self.kind == "choice":
            return rng.choice(self.choices)
        return self.value

    def contains(self, value: Any) -> bool:
        if self.kind in ("log", "uniform"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                return False
            return (self.low - _REL * abs(self.low) <= value  # type: ignore[operator]
                    <= self.high + _REL * abs(self.high))  # type: ignore[operator]
        if self.kind == "choice":
            return value in self.choices
        return value == self.value

    def describe(self) -> str:
        if self.kind == "log":
            return f"log-uniform [{self.low:g}, {self.high:g}]"
        if self.kind == "uniform":
            return f"uniform [{self.low:g}, {self.high:g}]"
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"fixed {self.value!r}"


@dataclass(frozen=True)
class Built:
    """What :meth:`SearchSpace.build` makes of a configuration: the objects the callbacks take.

    ``schedule`` (a core schedule, a :class:`ScaledSchedule` when an LR scale is given) and ``plan``
    (a :class:`~hpcallbacks.plans.FreezePlan`) go to the adapters' ``LearningRateSchedule`` /
    ``StagedUnfreeze``; ``optimizer_values`` holds the optimizer's other arguments under the H2
    names (``momentum`` and ``nesterov``, or ``beta_1``, ``beta_2``, ``epsilon``).
    """

    schedule: S.Schedule
    plan: FreezePlan
    learning_rate: float
    batch_size: int
    weight_decay: float
    dropout: float
    optimizer: str
    optimizer_values: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchSpace:
    """The handbook's ranges for one optimizer, as search dimensions (make it with :func:`space`).

    >>> s = space("sgd_momentum")
    >>> s["learning_rate"].describe(), s["momentum"].describe()
    ('log-uniform [0.001, 0.01]', 'fixed 0.9')
    >>> config = s.sample(random.Random(0))
    >>> s.findings(config)
    []
    """

    optimizer: str
    fine_tuning: bool
    dimensions: tuple[Dimension, ...]

    def __getitem__(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        hint = check_arg.did_you_mean(name, self.names)
        raise KeyError(f"{name!r} is not a dimension of this space ({', '.join(self.names)})"
                       + (f"; {hint}" if hint else ""))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def searched(self) -> tuple[str, ...]:
        """The names that vary (the others are fixed)."""
        return tuple(d.name for d in self.dimensions if d.searched)

    @property
    def fixed(self) -> dict[str, Any]:
        return {d.name: d.value for d in self.dimensions if not d.searched}

    # -- drawing --------------------------------------------------------------------------------
    def suggest(self, trial: Any) -> dict[str, Any]:
        """One configuration, every dimension asked of the Optuna ``trial`` (fixed values included)."""
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def to_ray(self) -> dict[str, Any]:
        """A Ray Tune ``param_space``: ``tune.loguniform`` / ``tune.uniform`` / ``tune.choice`` and fixed values."""
        return {d.name: d.to_ray() for d in self.dimensions}

    def sample(self, rng: random.Random | int | None = None) -> dict[str, Any]:
        """One configuration drawn with :mod:`random` (``rng`` a ``Random`` or a seed)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return {d.name: d.sample(rng) for d in self.dimensions}

    def recipe(self) -> dict[str, Any]:
        """The configuration the handbook picks without a search: the learning rate in the middle of its
        row (log scale, one significant digit; for fine-tuning the from-scratch one lowered by one
        order of magnitude), the middle batch size, weight decay 5e-4 (AdamW: 0.01), the middle of
        the dropout range, the first schedule and plan, the recommended single values."""
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "fixed":
                out[d.name] = d.value
            elif d.name == "learning_rate":
                out[d.name] = _recipe_learning_rate(self.optimizer, self.fine_tuning)
            elif d.name == "batch_size":
                out[d.name] = d.choices[(len(d.choices) - 1) // 2] if d.kind == "choice" else d.low
            elif d.name == "weight_decay":
                out[d.name] = 0.01 if self.optimizer == "adamw" else 5e-4
            elif d.name == "dropout":
                out[d.name] = round((d.low + d.high) / 2, 6)  # type: ignore[operator]
            elif d.name in TUNABLE:
                out[d.name] = ROWS[d.name].low
            elif d.kind == "choice":
                out[d.name] = d.choices[0]
            else:  # pragma: no cover - every dimension is one of the above
                out[d.name] = d.low
        for name, value in out.items():
            if not self[name].contains(value):  # a narrowed range: its nearest end
                dim = self[name]
                out[name] = (min(max(value, dim.low), dim.high) if dim.kind in ("log", "uniform")
                             else dim.choices[0])
        return out

    # -- checking ---------------------------------------------------------------------------
    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked: every dimension present and inside the space (``ValueError`` naming the
        first that is not); keys that are not dimensions (``lr_scale``, a trial's own) are kept."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict of hyperparameters; got {params!r}")
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"params lacks {', '.join(missing)} (the space has {', '.join(self.names)})")
        for d in self.dimensions:
            if not d.contains(params[d.name]):
                raise ValueError(f"params[{d.name!r}] must be {d.describe()} (H2: {_row_text(d)}); "
                                 f"got {params[d.name]!r}")
        return dict(params)

    def check_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of :func:`~hpcallbacks.advice.check` for the configuration ``params``."""
        values: dict[str, Any] = {
            "optimizer": self.optimizer,
            "learning_rate": params["learning_rate"],
            "batch_size": params["batch_size"],
            "weight_decay": params["weight_decay"],
            "dropout_rates": (params["dropout"],),
            "fine_tuning": self.fine_tuning,
        }
        for name in ("momentum", "beta_1", "beta_2", "epsilon"):
            if name in params and name in self.names:
                values[name] = params[name]
        return values

    def findings(self, params: Mapping[str, Any]) -> list[Finding]:
        """What the advisor (:func:`~hpcallbacks.advice.check`) finds in ``params``: nothing of severity
        ``"warning"`` for any configuration of this space (``"info"`` where ``tune=`` moved a
        single recommended value)."""
        return check_hyperparameters(**self.check_values(params))

    # -- building -------------------------------------------------------------------------------
    def build(self, params: Mapping[str, Any], steps_per_epoch: int | None = None, epochs: float | None = None,
              total_steps: int | None = None, *, lr_scale: float | None = None, **plan_kwargs: Any) -> Built:
        """The core objects of configuration ``params`` for a run of ``steps_per_epoch`` updates per epoch
        and ``total_steps`` updates (default ``epochs * steps_per_epoch``).

        The schedule family gets its arguments from the run as the callbacks' defaults do
        (:mod:`hpcallbacks.defaults`: peak = the learning rate, the decay over the run, a restart per
        epoch); ``lr_scale`` (or ``params["lr_scale"]``, a PBT mutation) wraps it in a
        :class:`ScaledSchedule`. ``plan_kwargs`` go to the FreezePlan constructor (``bn``,
        ``factors``, ``head_epochs``...).

        >>> s = space("adam")
        >>> built = s.build(s.recipe(), steps_per_epoch=10, epochs=5)
        >>> built.schedule
        CosineDecay(initial_learning_rate=0.003, decay_steps=50.0, alpha=0.0, warmup_target=None, warmup_steps=0.0)
        >>> built.plan.stages, built.batch_size, built.optimizer_values
        ((Stage(start=0.0, trainable='all'),), 128, {'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-08})
        """
        params = self.validate(params)
        spe = None if steps_per_epoch is None else check_arg.positive_int("steps_per_epoch", steps_per_epoch)
        if total_steps is not None:
            total: int | None = check_arg.positive_int("total_steps", total_steps)
        elif epochs is not None:
            epochs = check_arg.positive("epochs", epochs)
            if spe is None:
                raise ValueError("epochs needs steps_per_epoch (or pass total_steps)")
            total = max(1, math.ceil(epochs * spe - 1e-9))
        else:
            total = None
        lr = float(params["learning_rate"])
        schedule = D.build(params["schedule"], {}, D.RunFacts(learning_rate=lr, steps_per_epoch=spe,
                                                               total_steps=total))
        scale = lr_scale if lr_scale is not None else params.get("lr_scale")
        if scale is not None:
            schedule = ScaledSchedule(schedule, scale)
        plan = getattr(FreezePlan, params["plan"])(**plan_kwargs)
        values: dict[str, Any] = {}
        if self.optimizer in _MOMENTUM_KINDS:
            values = {"momentum": params["momentum"], "nesterov": self.optimizer == "nesterov"}
        elif self.optimizer in _ADAM_KINDS:
            values = {k: params[k] for k in ("beta_1", "beta_2", "epsilon")}
        return Built(schedule=schedule, plan=plan, learning_rate=lr, batch_size=int(params["batch_size"]),
                     weight_decay=float(params["weight_decay"]), dropout=float(params["dropout"]),
                     optimizer=self.optimizer, optimizer_values=values, params=params)

    # -- population-based training --------------------------------------------------------------
    def scale_bounds(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """The LR scales that keep ``learning_rate * scale`` inside the learning-rate dimension (for a PBT
        explore step: clip the perturbed ``lr_scale`` into these).

        >>> space("adam").scale_bounds({"learning_rate": 2e-3})
        (0.5, 5.0)
        """
        d = self["learning_rate"]
        lr = check_arg.positive("params['learning_rate']", params["learning_rate"])
        return d.low / lr, d.high / lr  # type: ignore[operator]

    def describe(self) -> str:
        """One line per dimension: name, distribution, the H2 row it comes from."""
        width = max(len(n) for n in self.names)
        dist = max(len(d.describe()) for d in self.dimensions)
        head = f"search space for {self.optimizer}{' (fine-tuning)' if self.fine_tuning else ''}:"
        lines = [head] + [f"  {d.name:<{width}}  {d.describe():<{dist}}  {d.note or _row_text(d)}"
                          for d in self.dimensions]
        return "\n".join(lines)


def _row_text(d: Dimension) -> str:
    return f"H2 {ROWS[d.row].hyperparameter}: {ROWS[d.row].recommended}" if d.row else "not an H2 row"


def _recipe_learning_rate(optimizer: str, fine_tuning: bool) -> float:
    row = ROWS[OPTIMIZERS[optimizer]]
    middle = math.sqrt(row.low * row.high)  # type: ignore[operator]
    exponent = math.floor(math.log10(middle))
    lr = float(f"{round(middle / 10**exponent)}e{exponent}")
    return float(f"{fine_tune_learning_rate(lr):.12g}") if fine_tuning else lr


def _names(name: str, value: Any, allowed: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        value = (value,)
    items = check_arg.sequence(name, value, min_len=1)
    for i, item in enumerate(items):
        if not isinstance(item, str) or item not in allowed:
            hint = check_arg.did_you_mean(item, allowed)
            raise ValueError(f"{name}[{i}] must be one of {', '.join(allowed)}; got {item!r}"
                             + (f" ({hint})" if hint else ""))
    if len(set(items)) != len(items):
        raise ValueError(f"{name} must not repeat a name; got {list(items)!r}")
    return tuple(items)


def _schedule_families() -> tuple[str, ...]:
    # the families whose every required argument defaults from the run (what SearchSpace.build needs)
    return tuple(name for name in D.FAMILIES if name not in ("PiecewiseConstantDecay", "MultiStepDecay"))


def space(optimizer: str = "adam", fine_tuning: bool = False, tune: Iterable[str] | str | None = None, *,
          batch_sizes: Sequence[int] | None = None, schedules: Sequence[str] | str | None = None,
          plans: Sequence[str] | str | None = None) -> SearchSpace:
    """The H2 table of the handbook as a search space for ``optimizer`` (a key of
    :data:`hpcallbacks.advice.OPTIMIZERS`).

    * ``learning_rate``: log-uniform over the optimizer's H2 row; with ``fine_tuning``, over the row
      lowered by 1 to 2 orders of magnitude (``[fine_tune_learning_rate(low, 2),
      fine_tune_learning_rate(high, 1)]``, Adam: ``[1e-5, 1e-3]``).
    * ``batch_size`` (the effective batch): one of ``batch_sizes`` (default
      :data:`DEFAULT_BATCH_SIZES`, powers of two inside the row [1, 1024]).
    * ``weight_decay``: uniform over the checked row [0, 5e-4] (``"adamw"``: its decoupled decay,
      [0, 0.1], which the advisor does not check).
    * ``dropout``: uniform over [0.2, 0.5].
    * ``schedule``: one of ``schedules`` (default :data:`DEFAULT_SCHEDULES`), names of core schedule
      families; ``plan``: one of ``plans``, names of :class:`~hpcallbacks.plans.FreezePlan`
      constructors (default: :data:`FINE_TUNING_PLANS` when fine-tuning, else ``all_trainable``).
    * ``momentum`` (``"sgd_momentum"``, ``"nesterov"``) and ``beta_1``, ``beta_2``, ``epsilon``
      (``"adam"``, ``"adamw"``): fixed at the handbook's 0.9 / 0.9, 0.999, 1e-8, unless named in
      ``tune`` (then searched over :data:`TUNABLE`: momentum [0.8, 0.99], beta_1 [0.8, 0.95],
      beta_2 [0.99, 0.9999], epsilon log [1e-10, 1e-6]). Plain ``"sgd"`` has no momentum.

    A bad argument is a ``ValueError`` naming it.

    >>> s = space("adam", fine_tuning=True, tune=["beta_2"])
    >>> s["learning_rate"].describe(), s["beta_2"].describe(), s["beta_1"].describe()
    ('log-uniform [1e-05, 0.001]', 'uniform [0.99, 0.9999]', 'fixed 0.9')
    >>> space("sgd", tune="momentum")
    Traceback (most recent call last):
      ...
    ValueError: tune names 'momentum', which optimizer='sgd' does not have (plain SGD: the momentum rows are \
'sgd_momentum' and 'nesterov'); it may name: nothing
    """
    kind = check_arg.choice("optimizer", optimizer, OPTIMIZERS)
    fine_tuning = check_arg.boolean("fine_tuning", fine_tuning)
    own = (("momentum",) if kind in _MOMENTUM_KINDS else ("beta_1", "beta_2", "epsilon") if kind in _ADAM_KINDS
           else ())
    if tune is None:
        tuned: tuple[str, ...] = ()
    else:
        tuned = (tune,) if isinstance(tune, str) else check_arg.sequence("tune", tune)
        for name in tuned:
            if not isinstance(name, str) or name not in TUNABLE:
                hint = check_arg.did_you_mean(name, TUNABLE)
                raise ValueError(f"tune must name values among {', '.join(TUNABLE)}; got {name!r}"
                                 + (f" ({hint})" if hint else ""))
            if name not in own:
                extra = (" (plain SGD: the momentum rows are 'sgd_momentum' and 'nesterov')"
                         if kind == "sgd" and name == "momentum" else "")
                raise ValueError(f"tune names {name!r}, which optimizer={kind!r} does not have{extra}; it may name: "
                                 f"{', '.join(own) or 'nothing'}")
    if batch_sizes is None:
        batches = DEFAULT_BATCH_SIZES
    else:
        batches = check_arg.sequence("batch_sizes", batch_sizes, min_len=1)
        row = ROWS["batch_size"]
        batches = tuple(check_arg.number(f"batch_sizes[{i}]", b, low=row.low, high=row.high, integer=True)
                        for i, b in enumerate(batches))
        if len(set(batches)) != len(batches):
            raise ValueError(f"batch_sizes must not repeat a size; got {list(batches)!r}")
        batches = tuple(sorted(batches))  # type: ignore[type-var]
    families = _names("schedules", schedules, _schedule_families(), DEFAULT_SCHEDULES)
    plan_names = _names("plans", plans, _PLAN_CONSTRUCTORS, FINE_TUNING_PLANS if fine_tuning else DEFAULT_PLANS)

    lr_row = ROWS[OPTIMIZERS[kind]]
    if fine_tuning:
        low, high = fine_tune_learning_rate(lr_row.low, 2.0), fine_tune_learning_rate(lr_row.high, 1.0)  # type: ignore
        lr = Dimension("learning_rate", "log", low, high, row="learning_rate_fine_tuning",
                       note=f"H2 {lr_row.hyperparameter} {lr_row.recommended}, lowered 1 to 2 orders (fine-tuning)")
    else:
        lr = Dimension("learning_rate", "log", lr_row.low, lr_row.high, row=lr_row.key)
    dims = [lr, _choice("batch_size", batches, "batch_size")]
    if kind == "adamw":
        dims.append(Dimension("weight_decay", "uniform", *ADAMW_WEIGHT_DECAY,
                              note="AdamW's decoupled decay (the H2 row is an L2 coefficient)"))
    else:
        dims.append(Dimension("weight_decay", "uniform", ROWS["weight_decay"].low, ROWS["weight_decay"].high,
                              row="weight_decay"))
    dims.append(Dimension("dropout", "uniform", ROWS["dropout_rate"].low, ROWS["dropout_rate"].high,
                          row="dropout_rate"))
    dims.append(_choice("schedule", families, None, "core schedule families (H3)"))
    dims.append(_choice("plan", plan_names, None, "FreezePlan constructors (H5)"))
    for name in own:
        if name in tuned:
            low, high, log = TUNABLE[name]
            dims.append(Dimension(name, "log" if log else "uniform", low, high, row=name,
                                  note=f"tuned around the handbook's {ROWS[name].recommended}"))
        else:
            dims.append(Dimension(name, "fixed", value=ROWS[name].low, row=name))
    return SearchSpace(kind, fine_tuning, tuple(dims))


def _choice(name: str, choices: Sequence[Any], row: str | None, note: str = "") -> Dimension:
    if len(choices) == 1:
        return Dimension(name, "fixed", value=choices[0], row=row, note=note)
    return Dimension(name, "choice", choices=tuple(choices), row=row, note=note)


# ---------------------------------------------------------------------------------- reporting
def rank_zero_decides(decision: bool, broadcast: Callable[[Any], Any] | None = None) -> bool:
    """The stop decision every process takes: rank 0's, sent to all by ``broadcast``.

    Only rank 0 talks to the Optuna trial (or counts for Ray Tune), so only its decision is real;
    every rank must stop at the same update or the others hang in their next collective.
    ``broadcast(obj)`` returns rank 0's ``obj`` on every rank: Lightning
    ``lambda obj: trainer.strategy.broadcast(obj, src=0)``; HF/accelerate
    ``lambda obj: accelerate.utils.broadcast_object_list([obj], from_process=0)[0]``;
    ``torch.distributed``: ``broadcast_object_list([obj], src=0)`` then the list's element.
    ``None`` (one process) keeps ``decision``.

    >>> rank_zero_decides(True), rank_zero_decides(False, broadcast=lambda obj: True)
    (True, True)
    """
    if broadcast is None:
        return bool(decision)
    return bool(broadcast(bool(decision)))


def shared_params(params: Mapping[str, Any] | None, broadcast: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Rank 0's hyperparameters on every rank: every process of a distributed trial trains with them.

    Each process runs the objective, but only rank 0's trial counts (its sampler's draw); call this
    on every rank, in the same place, before the values are used: rank 0 passes the ``params`` it
    sampled, the others anything (their own draw, or ``None``), and every rank gets rank 0's dict.
    ``broadcast`` as for :func:`rank_zero_decides`: Lightning
    ``lambda obj: trainer.strategy.broadcast(obj, src=0)`` (inside ``fit``: in ``setup`` or
    ``configure_model`` of the module), HF under ``torchrun`` (the process group exists once
    ``TrainingArguments`` is made) ``torch.distributed.broadcast_object_list``; ``None`` (one
    process, Keras' ``MirroredStrategy``) returns a copy of ``params``.

    >>> shared_params({"lr": 0.1}), shared_params(None, broadcast=lambda obj: {"lr": 0.3})
    ({'lr': 0.1}, {'lr': 0.3})
    """
    if broadcast is not None:
        if not callable(broadcast):
            raise ValueError(f"broadcast must be a callable broadcast(obj) -> rank 0's obj; got {broadcast!r}")
        params = broadcast(None if params is None else dict(params))
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be the dict of hyperparameters (rank 0's, when distributed); got {params!r}")
    return dict(params)


def pruned_message(who: str, monitor: str, value: float, step: int, trial: Any = None, unit: str = "epoch") -> str:
    """What a reporter says when its trial is pruned (``trial`` its number or id, when known).

    >>> pruned_message("TrialReporter", "val_loss", 0.83, 2, trial=5)
    'TrialReporter: trial 5 pruned at epoch 2 (val_loss = 0.83): training stops here, the study records it as pruned'
    """
    label = f"trial {trial}" if trial is not None else "the trial"
    return (f"{who}: {label} pruned at {unit} {step} ({monitor} = {value:.4g}): training stops here, "
            f"the study records it as pruned")


#: The user attribute a reporter that ran in another process than its objective's (Lightning ``ddp_spawn``)
#: writes on its trial when pruned: ``{"step", "value", "message"}``; the objective's ``raise_if_pruned`` reads it.
PRUNED_ATTR = "hpcallbacks_pruned"


def missing_monitor_message(who: str, monitor: str, logged: Iterable[Any], unit: str = "epoch") -> str:
    """What a reporter says when ``monitor`` is not among the ``logged`` keys at the end of an epoch or evaluation.

    >>> missing_monitor_message("TrialReporter", "val_los", ["loss", "val_loss"])
    "TrialReporter: monitor 'val_los' was not logged at this epoch's end (logged: loss, val_loss; did you mean \
'val_loss'?): a trial that reports nothing can never be pruned. Pass monitor= one of the logged keys, or log it"
    """
    keys = sorted(str(k) for k in logged)
    hint = check_arg.did_you_mean(monitor, keys)
    extra = f"; {hint}" if hint else ""
    if monitor.startswith("val_") and not any(k.startswith("val_") for k in keys):
        extra = "; no validation metric at all: does the run get validation data?"
    return (f"{who}: monitor {monitor!r} was not logged at this {unit}'s end (logged: {', '.join(keys) or 'nothing'}"
            f"{extra}): a trial that reports nothing can never be pruned. Pass monitor= one of the logged keys, "
            f"or log it")


def no_evaluation_message(who: str, monitor: str, why: str, fix: str) -> str:
    """What a reporter says at fit start when the run will evaluate nothing (``why``, and ``fix``: the adapter's facts).

    >>> print(no_evaluation_message("TrialReporter", "eval_loss", 'eval_strategy="no"', 'pass eval_strategy="epoch"'))
    TrialReporter: monitor 'eval_loss' can never be reported: this run evaluates nothing (eval_strategy="no"), so the \
trial could never be pruned; pass eval_strategy="epoch"
    """
    return (f"{who}: monitor {monitor!r} can never be reported: this run evaluates nothing ({why}), so the trial "
            f"could never be pruned; {fix}")


def never_reported_message(who: str, monitor: str, unit: str = "epoch") -> str:
    """The warning at the end of a run in which the reporter reported nothing (no evaluation ran)."""
    return (f"{who}: monitor {monitor!r} was never reported in this run (no {unit} ended with an evaluation): "
            f"the trial could not be pruned; evaluate at least once per epoch")


def multi_objective_message(who: str) -> str:
    """The warning when a reporter is given a trial of a multi-objective Optuna study."""
    return (f"{who}: the trial's study is multi-objective, which Optuna's pruners do not handle (trial.report "
            f"raises NotImplementedError): nothing is reported and training is never stopped, as HF's "
            f"hyperparameter_search does. Prune a single-objective study, or drop the reporter")


def _is_multi_objective(trial: Any) -> bool:
    directions = getattr(getattr(trial, "study", None), "directions", None)
    try:
        return directions is not None and len(directions) > 1
    except TypeError:
        return False


def storage_is_shared(storage: Any) -> bool:
    """Whether several processes see the same Optuna ``storage``: not an ``InMemoryStorage`` (each process has its
    own copy) nor an in-memory SQLite database; RDB files and servers, journal files and Redis, gRPC are."""
    import optuna

    if isinstance(storage, optuna.storages.InMemoryStorage):
        return False
    url = getattr(storage, "url", None) or getattr(getattr(storage, "_backend", None), "url", None)  # _CachedStorage
    if isinstance(url, str) and url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") == "sqlite:"):
        return False
    return True


def other_process_message(who: str, backend: str, storage: Any = None, pid: int | None = None,
                          home: int | None = None) -> str:
    """The refusal when a reporter's trial cannot reach the objective from the process the fit runs in."""
    where = f" (process {pid}, the reporter was built in process {home})" if pid is not None else ""
    return (f"{who}: this fit runs in another process than the objective's{where}, as Lightning's "
            f"strategy='ddp_spawn', 'ddp_fork' and 'ddp_notebook' do, and the trial's study is in memory "
            f"({type(storage).__name__}): a copy of it goes to the new process, so its reports and the prune would "
            f"be lost. Use strategy='ddp' (every rank runs your script: the objective's process is rank 0), or a "
            f"storage the processes share: optuna.create_study(storage='sqlite:///study.db') or a JournalStorage file")


def _is_ray(trial: Any) -> bool:
    return (isinstance(trial, str) and trial == "ray") or getattr(trial, "__name__", None) == "ray.tune"


class Reporter:
    """The framework-free body of a ``TrialReporter(trial, monitor=...)`` callback.

    ``trial`` is an Optuna trial (``optuna.trial.Trial``: its ``report`` and ``should_prune``), the
    string ``"ray"`` (or the ``ray.tune`` module) for a Ray Tune session, or ``None`` on a process
    that holds no trial (ranks other than 0). :meth:`report` takes the monitored ``value`` at
    ``step`` (the epoch, counted from 0, or an evaluation index) and returns True when training
    should stop:

    * Optuna: ``trial.report(value, step)``, then ``trial.should_prune()`` (the study's pruner, e.g.
      ``MedianPruner``). After training stopped, :meth:`raise_if_pruned` raises ``optuna.TrialPruned``
      so the study records the trial as pruned, at the step where it stopped.
    * Ray Tune: ``ray.tune.report({monitor: value, "step": step, ...}, checkpoint=...)``. Ray's
      scheduler (ASHA, PBT) stops a trial itself (its function ends at the next report), so
      :meth:`report` returns False.
    * Distributed (``broadcast`` given, :func:`rank_zero_decides`): every rank calls :meth:`report`;
      rank 0 (``is_main``) reports, and its decision is what every rank returns.
    * A multi-objective Optuna study: Optuna cannot prune it (``trial.report`` raises
      ``NotImplementedError``), so nothing is reported to it and :meth:`report` returns False, as
      HF's own ``hyperparameter_search`` does; a warning says so when the reporter is built.

    When pruned, :attr:`pruned_step` is the step, :attr:`message` the :func:`pruned_message`, logged to
    the ``hpcallbacks`` logger on the main process. An adapter's callback is a few lines: at the end
    of each epoch (or evaluation) read ``logs[monitor]`` (:meth:`value_from`: a ``ValueError`` when missing),
    call :meth:`report`, and on True stop the framework's loop --- Lightning
    ``trainer.should_stop = True``, HF ``control.should_training_stop = True``, Keras
    ``model.stop_training = True`` --- and after ``fit`` call :meth:`raise_if_pruned` (an Optuna
    objective must end with ``TrialPruned`` for the study to record the prune). For Lightning::

        class TrialReporter(Callback):
            def __init__(self, trial, monitor="val_loss"):
                self.trial, self.monitor = trial, monitor

            def on_fit_start(self, trainer, module):
                self.reporter = Reporter(self.trial if trainer.is_global_zero else None, self.monitor,
                                         broadcast=lambda obj: trainer.strategy.broadcast(obj, src=0),
                                         is_main=trainer.is_global_zero)

            def on_validation_end(self, trainer, module):
                if not trainer.sanity_checking:  # value_from: a ValueError when the monitor was not logged
                    value = self.reporter.value_from(trainer.callback_metrics)
                    trainer.should_stop = trainer.should_stop or self.reporter.report(value, trainer.current_epoch)

    >>> class Trial:  # the two methods of optuna.trial.Trial a reporter calls
    ...     number, values = 7, {}
    ...     def report(self, value, step): self.values[step] = value
    ...     def should_prune(self): return len(self.values) == 2
    >>> r = Reporter(Trial(), monitor="val_loss")
    >>> r.report(0.9, 0), r.report(0.8, 1), r.pruned_step
    (False, True, 1)
    """

    def __init__(self, trial: Any = None, monitor: str = "val_loss", *, broadcast: Callable[[Any], Any] | None = None,
                 is_main: bool | None = None, who: str = "TrialReporter", unit: str = "epoch",
                 warn: bool = True) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged metric; got {monitor!r}")
        if broadcast is not None and not callable(broadcast):
            raise ValueError(f"broadcast must be a callable broadcast(obj) -> rank 0's obj; got {broadcast!r}")
        self.backend = "ray" if _is_ray(trial) else ("none" if trial is None else "optuna")
        if self.backend == "optuna" and not (callable(getattr(trial, "report", None))
                                             and callable(getattr(trial, "should_prune", None))):
            raise ValueError(f"trial must be an Optuna trial (with report and should_prune), 'ray' for a Ray Tune "
                             f"session, or None on a rank without a trial; got {trial!r}")
        self.trial = trial
        self.monitor = monitor
        self.broadcast = broadcast
        self.is_main = (trial is not None) if is_main is None else check_arg.boolean("is_main", is_main)
        self.who = who
        self.unit = unit
        self.history: list[tuple[int, float]] = []
        self.pruned_step: int | None = None
        self.pruned_value: float | None = None
        self.message: str | None = None
        #: True where this process is not the one that holds the objective (the fit was started in another
        #: process: Lightning's ``ddp_spawn``); a prune is then also written to the trial's storage.
        self.remote = False
        #: A multi-objective Optuna study: Optuna prunes single-objective studies only (``trial.report`` raises
        #: ``NotImplementedError``), so nothing is reported and training never stops, as HF's own
        #: ``hyperparameter_search`` does; a warning says so once, when the reporter is built.
        self.multi_objective = self.backend == "optuna" and _is_multi_objective(trial)
        if self.multi_objective and warn:
            warnings.warn(multi_objective_message(who), UserWarning, stacklevel=3)

    @property
    def pruned(self) -> bool:
        return self.pruned_step is not None

    @property
    def trial_label(self) -> Any:
        if self.backend == "optuna":
            return getattr(self.trial, "number", None)
        if self.backend == "ray":
            try:
                from ray import tune

                return tune.get_context().get_trial_name()
            except Exception:  # outside a session: no label
                return None
        return None

    def value_from(self, logs: Mapping[str, Any]) -> float:
        """``logs[monitor]`` as a float; a ``ValueError`` (:func:`missing_monitor_message`: the monitor and the
        keys that were logged) when it was not logged: a trial that never reports can never be pruned."""
        value = logs.get(self.monitor) if isinstance(logs, Mapping) else None
        if value is None:
            raise ValueError(missing_monitor_message(self.who, self.monitor, logs or {}, self.unit))
        return float(value)

    def report(self, value: float, step: int, *, checkpoint: Any = None, **metrics: Any) -> bool:
        """Report ``value`` (the monitored metric) at ``step``; True when training should stop now.

        ``checkpoint`` and ``metrics`` go to Ray Tune with the value (ignored for Optuna).
        """
        step = check_arg.non_negative_int("step", step)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"value must be a number (the monitored {self.monitor!r}); got {value!r}") from None
        stop = False
        if self.is_main and self.backend == "optuna" and not self.multi_objective:
            self.trial.report(value, step)
            stop = bool(self.trial.should_prune())
        elif self.is_main and self.backend == "ray":
            from ray import tune

            tune.report({self.monitor: value, "step": step, **metrics}, checkpoint=checkpoint)
        stop = rank_zero_decides(stop, self.broadcast)
        self.history.append((step, value))
        if stop and self.pruned_step is None:
            self.pruned_step, self.pruned_value = step, value
            self.message = pruned_message(self.who, self.monitor, value, step, self.trial_label, self.unit)
            if self.is_main:
                _log.info(self.message)
                if self.remote and self.backend == "optuna":  # the objective's process reads it back
                    self.trial.set_user_attr(PRUNED_ATTR, {"step": step, "value": value, "message": self.message})
        return stop

    def raise_if_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` (with :attr:`message`) when the trial was pruned; else nothing.

        Call it after ``fit`` returned, in the Optuna objective (on the process that holds the trial).
        """
        if self.pruned and self.backend == "optuna":
            import optuna

            raise optuna.TrialPruned(self.message)


class TrialReporterBase:
    """What every adapter's ``TrialReporter(trial, monitor=None)`` callback shares (see :class:`Reporter`).

    The adapter calls :meth:`_init_reporter` in its ``__init__``, :meth:`_start` when training begins
    (its rank and broadcast), :meth:`_check_evaluates` with the run's facts when it can tell that
    the run will evaluate nothing, :meth:`_report` at each epoch end or evaluation and :meth:`_end`
    when training ends; setting the framework's stop flag on True is the adapter's. The user's
    objective calls :meth:`raise_if_pruned` after training. Every decision and message is here:

    * The monitor not logged at an epoch or evaluation end: ``ValueError`` naming the monitor and
      the logged keys (:func:`missing_monitor_message`); a run that will evaluate nothing: a
      ``ValueError`` at fit start (:func:`no_evaluation_message`); a run that ended without a
      report: a warning (:func:`never_reported_message`).
    * A multi-objective study: reports skipped, a warning when built (:func:`multi_objective_message`).
    * The fit started in another process than the one that built the reporter (Lightning's
      ``ddp_spawn``): refused when the trial's storage is in memory (:func:`other_process_message`;
      already when the reporter is pickled for the new process; Ray is not refused: a Ray Train
      worker has a session of its own);
      with a shared storage, rank 0 writes the prune to the trial (:data:`PRUNED_ATTR`) and
      :meth:`raise_if_pruned` in the objective's process reads it back.
    """

    #: The metric reported when ``monitor`` is None: the framework's name of the validation loss.
    default_monitor = "val_loss"
    #: What a step counts, in the pruned message.
    unit = "epoch"

    def _init_reporter(self, trial: Any, monitor: str | None) -> None:
        self.trial = trial
        self.monitor = self.default_monitor if monitor is None else monitor
        self.reporter = Reporter(trial, self.monitor, unit=self.unit)  # the arguments checked now
        self._home_pid = os.getpid()
        self._started_here = False

    def _start(self, is_main: bool, broadcast: Callable[[Any], Any] | None = None) -> None:
        """A fresh :class:`Reporter` for a run: the trial on the main process only, the others follow it."""
        remote = os.getpid() != getattr(self, "_home_pid", os.getpid())
        if remote:
            self._refuse_unshared(os.getpid())
        else:
            self._started_here = True
        self.reporter = Reporter(self.trial if is_main else None, self.monitor, broadcast=broadcast,
                                 is_main=is_main, unit=self.unit, warn=False)
        self.reporter.remote = remote

    def _refuse_unshared(self, pid: int | None = None) -> None:
        # Ray is not refused: a Ray Train worker holds a session of its own, where ray.tune.report works
        backend = self.reporter.backend
        storage = getattr(self.trial, "storage", None) if backend == "optuna" else None
        if backend == "optuna" and storage is not None and not storage_is_shared(storage):
            raise ValueError(other_process_message(type(self).__name__, backend, storage, pid,
                                                   getattr(self, "_home_pid", None)))

    def __getstate__(self) -> dict[str, Any]:
        # pickled for another process (Lightning's ddp_spawn sends the Trainer, callbacks included, to its ranks):
        # an in-memory study cannot follow, so refuse here, in the objective's process, before anything starts
        reporter = self.__dict__.get("reporter")
        if reporter is not None and reporter.backend == "optuna":
            self._refuse_unshared()
        return self.__dict__.copy()

    def _check_evaluates(self, evaluates: bool, why: str, fix: str) -> None:
        """Refuse at fit start a run that will evaluate nothing (``why``: the adapter's fact; ``fix``: what to pass)."""
        if not evaluates:
            raise ValueError(no_evaluation_message(type(self).__name__, self.monitor, why, fix))

    def _report(self, logs: Mapping[str, Any], step: int) -> bool:
        """Report ``logs[monitor]`` at ``step``; True when training should stop (the same on every rank).

        The monitor missing from ``logs`` is a ``ValueError`` (the same keys on every rank: all raise alike)."""
        return self.reporter.report(self.reporter.value_from(logs), step)

    def _end(self) -> None:
        """At the end of training: warn once when nothing was reported in the whole run."""
        if not self.reporter.history and not self.reporter.multi_objective and self.reporter.is_main:
            warnings.warn(never_reported_message(type(self).__name__, self.monitor, self.unit), UserWarning,
                          stacklevel=3)

    def _sync(self) -> None:
        # The fit ran in another process (never started here): its rank 0 wrote the prune to the trial's storage.
        if self._started_here or self.reporter.pruned or getattr(self, "_home_pid", None) != os.getpid():
            return
        if self.reporter.backend != "optuna" or not hasattr(self.trial, "study"):
            return
        number = getattr(self.trial, "number", None)
        stored = [t for t in self.trial.study.get_trials(deepcopy=False) if t.number == number]
        if not stored:
            return
        mark = stored[0].user_attrs.get(PRUNED_ATTR)
        steps = stored[0].intermediate_values
        self.reporter.history = [(int(k), float(v)) for k, v in sorted(steps.items())]
        if isinstance(mark, Mapping):
            self.reporter.pruned_step, self.reporter.pruned_value = int(mark["step"]), float(mark["value"])
            self.reporter.message = str(mark.get("message") or pruned_message(
                type(self).__name__, self.monitor, self.reporter.pruned_value, self.reporter.pruned_step, number,
                self.unit))

    @property
    def pruned(self) -> bool:
        """Whether the trial was pruned (on every rank; in the objective's process also when the fit ran in another)."""
        self._sync()
        return self.reporter.pruned

    @property
    def pruned_step(self) -> int | None:
        """The step (epoch, or evaluation) at which the trial was pruned, or None."""
        self._sync()
        return self.reporter.pruned_step

    @property
    def message(self) -> str | None:
        """What was said when the trial was pruned (:func:`pruned_message`), or None."""
        self._sync()
        return self.reporter.message

    def raise_if_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` when the trial was pruned (on the rank holding the Optuna trial, or in the
        objective's process when the fit ran in processes of its own, as under Lightning's ``ddp_spawn``)."""
        self._sync()
        self.reporter.raise_if_pruned()


# ------------------------------------------------------------------------ population-based training
@dataclass(frozen=True)
class ScaledSchedule(S.Schedule):
    """``lr(t) = scale * schedule(t)``: an hpcallbacks schedule times a learning-rate scale (PBT's mutation).

    Population-based training exploits a better trial (its weights, its update count) and perturbs
    the scale: the schedule keeps counting updates from the donor's checkpoint and the LR is the
    donor's schedule at that update times the new scale (:func:`pbt_restore`). ``get_config`` /
    ``from_config`` round-trip through JSON; :func:`deserialize` reads it back where
    :func:`hpcallbacks.schedules.deserialize` would refuse its class name (it is not one of
    :data:`~hpcallbacks.schedules.SCHEDULES`).

    >>> s = ScaledSchedule(S.CosineDecay(0.01, decay_steps=100), scale=0.5)
    >>> s(0), round(s(50), 12)
    (0.005, 0.0025)
    >>> ScaledSchedule.from_config(s.get_config()) == s
    True
    """

    schedule: S.Schedule
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", S.as_schedule(self.schedule))
        object.__setattr__(self, "scale", check_arg.positive("scale", self.scale))

    @property
    def base(self) -> S.Schedule:
        """The schedule without the scale (a nested ScaledSchedule unwrapped)."""
        return self.schedule.base if isinstance(self.schedule, ScaledSchedule) else self.schedule

    def rescaled(self, scale: float) -> ScaledSchedule:
        """The same schedule at another scale."""
        return ScaledSchedule(self.schedule, scale)

    def __call__(self, step: int | float) -> float:
        return self.schedule(step) * self.scale


# Kept out of the core registry: SCHEDULES lists the families of hpcallbacks.schedules (the CLI's `list`, the
# callbacks' defaults); this wrapper is read back by `deserialize` below.
S.SCHEDULES.pop("ScaledSchedule", None)
check_arg.checked_init(ScaledSchedule)


def deserialize(data: dict[str, Any]) -> S.Schedule:
    """:func:`hpcallbacks.schedules.deserialize`, also for a :class:`ScaledSchedule` (at the top level).

    >>> deserialize(S.serialize(ScaledSchedule(S.Constant(0.1), 2.0)))
    ScaledSchedule(schedule=Constant(value=0.1), scale=2.0)
    """
    if isinstance(data, dict) and data.get("class_name") == "ScaledSchedule":
        check_arg.config_keys("serialized schedule", data, ("class_name", "config"))
        return ScaledSchedule.from_config(data.get("config", {}))
    return S.deserialize(data)


def pbt_checkpoint(schedule: S.Schedule, update: int, **state: Any) -> dict[str, Any]:
    """The JSON a PBT trial writes into its checkpoint beside its weights: the update count, the base
    schedule (without the scale) and the scale, plus ``state`` (JSON values).

    >>> pbt_checkpoint(ScaledSchedule(S.Constant(0.1), 2.0), 40)
    {'update': 40, 'schedule': {'class_name': 'Constant', 'config': {'value': 0.1}}, 'scale': 2.0}
    """
    update = check_arg.non_negative_int("update", update)
    scale = 1.0
    if isinstance(schedule, ScaledSchedule):
        scale, schedule = schedule.scale, schedule.schedule
    if not isinstance(schedule, S.Schedule):
        raise ValueError(f"schedule must be a hpcallbacks schedule; got {schedule!r}")
    return {"update": update, "schedule": S.serialize(schedule), "scale": scale, **state}


def pbt_restore(checkpoint: Mapping[str, Any], scale: float) -> tuple[int, ScaledSchedule]:
    """After an exploit: the update count to continue from (the donor's) and the schedule to train with,
    the donor's schedule at the trial's new ``scale``. The LR of the next update is then
    ``donor_schedule(update) * scale``.

    >>> ckpt = pbt_checkpoint(ScaledSchedule(S.ExponentialDecay(0.01, 10, 0.5), 1.0), update=20)
    >>> update, schedule = pbt_restore(ckpt, scale=1.2)
    >>> update, round(schedule(update), 12)
    (20, 0.003)
    """
    if not isinstance(checkpoint, Mapping) or "update" not in checkpoint or "schedule" not in checkpoint:
        raise ValueError(f"checkpoint must be a pbt_checkpoint() dict with 'update' and 'schedule'; got {checkpoint!r}")
    update = check_arg.non_negative_int("checkpoint['update']", checkpoint["update"])
    base = deserialize(checkpoint["schedule"])
    return update, ScaledSchedule(base, scale)


# ------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class Task:
    """What ``hpcallbacks search`` optimises.

    ``train(params, reporter, *, space, epochs, seed) -> value`` trains one configuration (a dict from
    ``space``, which builds it: :meth:`SearchSpace.build`), calls ``reporter.report(value, epoch)``
    after each epoch and stops when it returns True, and returns the last ``monitor`` value;
    ``direction`` is ``"maximize"`` or ``"minimize"``. The space is
    ``space(optimizer, fine_tuning, **space_kwargs)``; ``recipe`` overrides entries of
    :meth:`SearchSpace.recipe` (what the task's own recipe uses); ``epochs`` is the default per trial
    (``fine_tuning_epochs`` when fine-tuning, if given).
    """

    train: Callable[..., float]
    monitor: str
    direction: str = "minimize"
    optimizer: str = "adam"
    fine_tuning: bool = False
    space_kwargs: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    epochs: int = 5
    fine_tuning_epochs: int | None = None

    def space(self, optimizer: str | None = None, fine_tuning: bool | None = None) -> SearchSpace:
        kw = dict(self.space_kwargs)
        return space(optimizer or self.optimizer, self.fine_tuning if fine_tuning is None else fine_tuning, **kw)

    def recipe_params(self, s: SearchSpace) -> dict[str, Any]:
        params = s.recipe()
        params.update({k: v for k, v in self.recipe.items() if k in s.names and s[k].contains(v)})
        return params


def toy_train(params: Mapping[str, Any], reporter: Reporter, *, space: SearchSpace | None = None, epochs: int = 5,
              seed: int = 0) -> float:
    """A tiny model in plain Python: a linear regression ``y = 3x - 1`` (noisy) trained by minibatch SGD with
    the configuration's schedule, weight decay and batch size; reports the validation MSE each epoch.
    Fast (milliseconds), no framework: for trying the search machinery and for tests."""
    fixed = random.Random(1234)  # the same data for every trial; ``seed`` shuffles it
    data = [(x, 3.0 * x - 1.0 + fixed.gauss(0.0, 0.1)) for x in (fixed.uniform(-1, 1) for _ in range(256))]
    train, val = data[:192], data[192:]
    rng = random.Random(seed)
    batch = min(int(params["batch_size"]), len(train))
    steps = math.ceil(len(train) / batch)
    built = (space or TOY_SPACE).build(params, steps_per_epoch=steps, epochs=epochs)
    w = b = 0.0
    velocity = [0.0, 0.0]
    momentum = built.optimizer_values.get("momentum", 0.0)
    t = 0
    mse = float("inf")
    for epoch in range(epochs):
        rng.shuffle(train)
        for i in range(0, len(train), batch):
            chunk = train[i:i + batch]
            lr = built.schedule(t)
            gw = sum(2 * (w * x + b - y) * x for x, y in chunk) / len(chunk) + built.weight_decay * w
            gb = sum(2 * (w * x + b - y) for x, y in chunk) / len(chunk)
            velocity = [momentum * velocity[0] + gw, momentum * velocity[1] + gb]
            w, b = w - lr * velocity[0], b - lr * velocity[1]
            t += 1
        mse = sum((w * x + b - y) ** 2 for x, y in val) / len(val)
        if reporter.report(mse, epoch):
            break
    return mse


TOY_SPACE = space("sgd_momentum", batch_sizes=(8, 16, 32, 64))
#: The toy task (``--task hpcallbacks.search:TOY``): :func:`toy_train` on SGD with momentum.
TOY = Task(toy_train, monitor="val_mse", direction="minimize", optimizer="sgd_momentum",
           space_kwargs={"batch_sizes": (8, 16, 32, 64)}, description="linear regression in plain Python (toy)")


def load_task(spec: str) -> Task:
    """``module:attribute`` or ``path/to/file.py:attribute`` -> the :class:`Task` there."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--task must look like package.module:NAME or path/to/file.py:NAME; got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise ValueError(f"--task names the file {module_name!r}, which does not exist")
        name = f"_hpcallbacks_task_{zlib.crc32(str(path).encode()):08x}"
        module = sys.modules.get(name)
        if module is None:
            spec_ = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec_)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec_.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        module = importlib.import_module(module_name)
    task = getattr(module, attr, None)
    if not isinstance(task, Task):
        raise ValueError(f"--task {spec!r} must name a hpcallbacks.search.Task; got {task!r}")
    return task


# ---------------------------------------------------------------------------------- studies
@dataclass
class TrialRow:
    """One trial of a finished study, whatever the engine: for the table and the picture."""

    number: int
    state: str  # "complete", "pruned", "failed", "running", "waiting"
    value: float | None
    epochs: int
    params: dict[str, Any]
    note: str = ""


#: Seconds between two heartbeats of a running trial, and without one before the trial counts as dead.
HEARTBEAT_INTERVAL, GRACE_PERIOD = 10, 30
#: The user attribute a journal trial's heartbeat writes (``time.time()``); RDB storages keep Optuna's own.
HEARTBEAT_ATTR = "hpcallbacks_heartbeat"
#: Database drivers by the module SQLAlchemy imports, for the message when one is missing.
DRIVERS = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "mysql": "mysql-connector-python", "mariadb": "mariadb",
           "psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "asyncpg": "asyncpg",
           "pyodbc": "pyodbc", "pymssql": "pymssql", "oracledb": "oracledb", "cx_Oracle": "cx_Oracle"}


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        user, _, host = rest.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        rest = f"{user}@{host}"
    return scheme + sep + rest


def open_storage(spec: str | None, out: Path | str, heartbeat: int = HEARTBEAT_INTERVAL,
                 grace: int = GRACE_PERIOD) -> Any:
    """An Optuna storage from ``--storage``: None -> the SQLite file ``<out>/hpcallbacks-search.db`` (resumable);
    an URL with ``://`` -> an RDB storage (``sqlite:///...``, ``postgresql://...``, ``mysql://...``); anything
    else -> a journal file at that path (``JournalStorage(JournalFileBackend(path))``), which several
    processes can share.

    No trial is lost to a killed worker (:func:`recover_stale_trials`, run when a study resumes): RDB
    storages get Optuna's heartbeat (``heartbeat_interval=heartbeat``, ``grace_period=grace``,
    ``RetryHeartbeatStaleTrialCallback(max_retry=1)``); Optuna's journal storage has none, so each
    trial of ``hpcallbacks search`` writes its own (:data:`HEARTBEAT_ATTR`, every ``heartbeat``
    seconds). A database URL whose driver is not installed is a ``ValueError`` naming the package.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    heartbeat = check_arg.positive_int("heartbeat", heartbeat)
    grace = check_arg.positive_int("grace", grace)
    if spec is None:
        path = Path(out).resolve() / "hpcallbacks-search.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = f"sqlite:///{path}"
    if "://" in spec:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    spec, heartbeat_interval=heartbeat, grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
        except ImportError as error:
            cause = error.__cause__ if isinstance(error.__cause__, ImportError) else error
            module = getattr(cause, "name", None) or "its driver"
            package = DRIVERS.get(str(module).split(".")[0], str(module))
            raise ValueError(f"--storage {_hide_password(spec)!r} needs the database driver {module}, which is not "
                             f"installed: pip install {package} (or pass a sqlite:/// URL or a journal file)") from None
        except Exception as error:
            if type(error).__name__ in ("NoSuchModuleError", "ArgumentError"):  # SQLAlchemy: no such dialect / bad URL
                raise ValueError(f"--storage {_hide_password(spec)!r} is not a database URL SQLAlchemy knows "
                                 f"({error}); pass sqlite:///file.db, postgresql://..., mysql://... or a journal "
                                 f"file path") from None
            raise
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _heartbeat_enabled(storage: Any) -> bool:
    get = getattr(storage, "get_heartbeat_interval", None)
    return callable(get) and get() is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    try:  # a killed child not yet reaped (a zombie) is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_reason(trial: Any, *, grace: float = GRACE_PERIOD, host: str | None = None, now: float | None = None,
                 own_heartbeat: bool = True) -> str | None:
    """Why the RUNNING ``trial`` (an Optuna ``FrozenTrial`` of ``hpcallbacks search``) is dead, or None.

    The rule: its worker (the user attribute ``worker``, ``host:pid``) ran on this ``host`` and that
    process is gone; or (``own_heartbeat``: a journal storage) its last heartbeat
    (:data:`HEARTBEAT_ATTR`, else its start) is more than ``grace`` seconds old. An RDB storage's
    heartbeat is Optuna's (``optuna.storages.fail_stale_trials``).
    """
    host = socket.gethostname() if host is None else host
    now = time.time() if now is None else now
    worker = trial.user_attrs.get("worker")
    if isinstance(worker, str):
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            return f"its worker process {worker} is gone"
    if own_heartbeat:
        beat = trial.user_attrs.get(HEARTBEAT_ATTR)
        last = float(beat) if isinstance(beat, (int, float)) else (
            trial.datetime_start.timestamp() if trial.datetime_start is not None else None)
        if last is not None and now - last > grace:
            return f"no heartbeat for {now - last:.0f} s (grace period {grace:g} s)"
    return None


def recover_stale_trials(study: Any, *, grace: float = GRACE_PERIOD, max_retry: int = 1) -> list[str]:
    """Fail the trials of ``study`` left RUNNING by a dead worker and queue each again (once); say what was done.

    Optuna's heartbeat first (RDB storages: ``optuna.storages.fail_stale_trials``, its
    ``RetryHeartbeatStaleTrialCallback``), then :func:`stale_reason` for every trial still running
    (a journal storage, or a worker on this machine that is gone before the grace period ends).
    Each failed trial is queued again with its parameters
    (``optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)``). Returns one line per trial
    found stale or still running, for the command line to print.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage  # Optuna 5.1: fail_stale_trials and the retry callback need the study's storage
    own = not _heartbeat_enabled(storage)
    running = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    lines: list[str] = []
    if not own:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    for trial in study.get_trials(deepcopy=False):
        if trial.number not in running:
            continue
        if trial.state == TrialState.FAIL:  # Optuna's heartbeat failed it (and its callback queued the retry)
            lines.append(f"trial {trial.number}: left running by a worker without a heartbeat for more than the grace "
                         f"period: marked failed{_retried_as(study, trial.number)}")
            continue
        if trial.state != TrialState.RUNNING:
            continue
        reason = stale_reason(trial, grace=grace, own_heartbeat=own)
        if reason is None:
            beat = trial.user_attrs.get(HEARTBEAT_ATTR)
            seen = f", last heartbeat {time.time() - float(beat):.0f} s ago" if isinstance(beat, (int, float)) else ""
            lines.append(f"trial {trial.number}: running (worker {trial.user_attrs.get('worker', '?')}{seen}): "
                         f"left to its worker, counted as one of the trials")
            continue
        try:
            failed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another process finished or failed it meanwhile
            continue
        if failed is False:
            continue
        retry(study, storage.get_trial(trial._trial_id))
        lines.append(f"trial {trial.number}: left running, {reason}: marked failed{_retried_as(study, trial.number)}")
    return lines


def _retried_as(study: Any, number: int) -> str:
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        history = t.system_attrs.get("retry_history") or []
        if history and history[-1] == number:
            return f", queued again as trial {t.number}"
    return ", not queued again (retried once already)"


class _Heartbeat:
    """A thread that writes ``time.time()`` to the trial's :data:`HEARTBEAT_ATTR` every ``interval`` seconds
    while the trial runs (a storage without Optuna's heartbeat: the journal); nothing when ``interval`` is None."""

    def __init__(self, trial: Any, interval: float | None) -> None:
        import threading

        self.trial, self.interval = trial, interval
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hpcallbacks-heartbeat", daemon=True)

    def _beat(self) -> None:
        try:
            self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        except Exception as error:  # a storage hiccup must not end the trial: the next beat tries again
            _log.debug("heartbeat of trial %s not written: %s", getattr(self.trial, "number", "?"), error)

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        if self.interval is not None:
            self._beat()
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.interval is not None:
            self.done.set()
            self.thread.join()


def _optuna_quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _counts(study: Any) -> int:
    """The trials of ``study`` finished (complete or pruned) or running."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) for t in trials)


def _objective(task: Task, s: SearchSpace, epochs: int, seed: int, worker: int,
               progress: bool, heartbeat: float | None = None) -> Callable[[Any], float]:
    def objective(trial: Any) -> float:
        params = s.suggest(trial)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        reporter = Reporter(trial, task.monitor)
        start = time.perf_counter()
        try:
            with _Heartbeat(trial, heartbeat):
                value = task.train(params, reporter, space=s, epochs=epochs, seed=seed + trial.number)
        finally:
            trial.set_user_attr("epochs", len(reporter.history))
        if progress:
            what = f"pruned at epoch {reporter.pruned_step}" if reporter.pruned else f"{len(reporter.history)} epochs"
            print(f"  trial {trial.number:>3} (worker {worker}): {task.monitor} {value:.4g}, {what}, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        reporter.raise_if_pruned()
        return value
    return objective


def run_optuna(task: Task, s: SearchSpace, *, trials: int, epochs: int, storage: Any, study_name: str,
               seed: int = 0, worker: int = 0, enqueue_recipe: bool = True, progress: bool = True,
               n_trials: int | None = None, heartbeat: int = HEARTBEAT_INTERVAL, grace: int = GRACE_PERIOD,
               say: Callable[[str], Any] | None = print) -> Any:
    """Run ``task`` on an Optuna study until it holds ``trials`` finished (or running) trials, in this process.

    The study (created or loaded: a stored study resumes) maximises or minimises ``task.monitor``
    with a TPE sampler (seeded by ``seed``, ``worker`` and the trials already there) and a
    ``MedianPruner`` (3 startup trials, no pruning in the first epoch); the recipe's configuration
    is its first trial. ``n_trials`` is the number this call runs instead (a worker's share).
    Before counting, a resumed study's trials left running by a dead worker are failed and queued
    again (:func:`recover_stale_trials`, ``grace`` seconds without a heartbeat; not in a worker's
    share), each line of what was found and done given to ``say``; on a storage without Optuna's
    heartbeat (a journal) each trial writes one every ``heartbeat`` seconds. Returns the study.
    """
    import optuna

    _optuna_quiet()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=task.direction,
                                pruner=pruner, load_if_exists=True)
    # a sampler seeded per worker and per resume: a resumed study must not draw its first configurations again
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + worker * 10_007 + existing) % 2**32,
                                               n_startup_trials=min(10, max(3, trials // 3)))
    if enqueue_recipe and not study.get_trials(deepcopy=False):
        study.enqueue_trial(task.recipe_params(s), user_attrs={"recipe": True})
    if n_trials is None:
        found = recover_stale_trials(study, grace=grace)
        if found and say is not None:
            say(f"study {study_name!r} resumed: {len(found)} trial(s) were left running")
            for line in found:
                say("  " + line)
    done = _counts(study)
    todo = max(0, trials - done) if n_trials is None else n_trials
    if todo:
        beat = None if _heartbeat_enabled(study._storage) else heartbeat
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(_objective(task, s, epochs, seed, worker, progress, beat), n_trials=todo,
                           catch=(ValueError, ArithmeticError))
    return study


def _spawn_workers(argv: Sequence[str], shares: Sequence[int]) -> list[int]:
    procs = []
    for i, share in enumerate(shares):
        if share <= 0:
            continue
        cmd = [sys.executable, "-m", "hpcallbacks", "search", *argv, "--_worker", str(i), "--_share", str(share)]
        procs.append(subprocess.Popen(cmd))
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: each records its trial as failed and stops
        for p in procs:
            p.wait()
        raise


def _optuna_rows(study: Any) -> list[TrialRow]:
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = t.intermediate_values
        value = t.value if t.state == TrialState.COMPLETE else (steps[max(steps)] if steps else None)
        notes = (["recipe"] if t.user_attrs.get("recipe") else []) + (
            [f"retry of {t.system_attrs['retry_history'][-1]}"] if t.system_attrs.get("retry_history") else [])
        rows.append(TrialRow(t.number, names.get(t.state, str(t.state)), value,
                             int(t.user_attrs.get("epochs", len(steps))), dict(t.params), ", ".join(notes)))
    return rows


def run_ray(task: Task, s: SearchSpace, *, trials: int, epochs: int, out: Path, study_name: str, workers: int = 2,
            seed: int = 0, progress: bool = True) -> list[TrialRow]:
    """The same study on Ray Tune: random search over :meth:`SearchSpace.to_ray` (the recipe first) with ASHA
    (``max_t=epochs``, a grace period of 2 epochs (1 for runs of 1 or 2), halving), one CPU per trial,
    on a local Ray of ``workers`` CPUs (started here unless Ray already runs). An interrupted run
    resumes from ``<out>/ray/<study_name>``. Returns the rows of the trials."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    def trainable(config: dict[str, Any]) -> None:
        reporter = Reporter("ray", task.monitor)
        trial_seed = seed + zlib.crc32(tune.get_context().get_trial_id().encode()) % 100_000
        task.train(dict(config), reporter, space=s, epochs=epochs, seed=trial_seed)

    class Lines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            done = int(result.get("training_iteration", 0))
            what = f"{done} epochs" if done >= epochs else f"stopped by ASHA after epoch {done - 1}"
            value = result.get(task.monitor)
            print(f"  trial {trial.trial_id}: {task.monitor} {'-' if value is None else f'{value:.4g}'}, {what}",
                  flush=True)

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    storage = (Path(out) / "ray").resolve()
    path = storage / study_name
    resources = tune.with_resources(trainable, {"cpu": 1})
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), resources, resume_unfinished=True, resume_errored=True)
    else:
        mode = "max" if task.direction == "maximize" else "min"
        tuner = tune.Tuner(
            resources, param_space=s.to_ray(),
            tune_config=tune.TuneConfig(
                metric=task.monitor, mode=mode, num_samples=trials, reuse_actors=True,
                scheduler=ASHAScheduler(max_t=epochs, grace_period=2 if epochs > 2 else 1, reduction_factor=2),
                search_alg=BasicVariantGenerator(points_to_evaluate=[task.recipe_params(s)], random_state=seed)),
            run_config=tune.RunConfig(storage_path=str(storage), name=study_name, verbose=0,
                                      callbacks=[Lines()] if progress else []))
    grid = tuner.fit()
    rows = []
    recipe = task.recipe_params(s)
    results = sorted(grid, key=lambda r: str((r.metrics or {}).get("trial_id", "")))  # creation order, also resumed
    for i, result in enumerate(results):
        config = {k: v for k, v in (result.config or {}).items() if k in s.names}
        metrics = result.metrics or {}
        epochs_run = int(metrics.get("training_iteration", 0))
        state = "failed" if result.error else ("complete" if epochs_run >= epochs else "pruned")
        rows.append(TrialRow(i, state, metrics.get(task.monitor), epochs_run, config,
                             "recipe" if config == recipe else ""))
    return rows


# ------------------------------------------------------------------------------------ output
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


_SHORT = {"learning_rate": "lr", "batch_size": "batch", "weight_decay": "wd", "dropout": "dropout",
          "schedule": "schedule", "plan": "plan", "momentum": "momentum", "beta_1": "beta1", "beta_2": "beta2",
          "epsilon": "eps"}


def _best(rows: Sequence[TrialRow], direction: str) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete" and r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    return (max if direction == "maximize" else min)(done, key=lambda r: r.value)  # type: ignore[arg-type,return-value]


def format_trials(rows: Sequence[TrialRow], s: SearchSpace, monitor: str, direction: str = "minimize") -> str:
    """The trial table: number, state, the monitored value (the last reported one for a pruned trial), epochs
    trained, the searched hyperparameters; ``*`` marks the best trial."""
    best = _best(rows, direction)
    cols = list(s.searched)
    header = ["#", "state", monitor, "epochs", *(_SHORT.get(c, c) for c in cols), "note"]
    body = []
    for r in sorted(rows, key=lambda r: r.number):
        mark = "*" if best is not None and r.number == best.number else ""
        body.append([f"{r.number}{mark}", r.state, "-" if r.value is None else f"{r.value:.4f}", str(r.epochs),
                     *(_fmt(r.params.get(c, "-")) for c in cols), r.note])
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in body]
    return "\n".join(lines)


def format_best(rows: Sequence[TrialRow], s: SearchSpace, recipe: Mapping[str, Any], monitor: str,
                direction: str = "minimize") -> str:
    """The best configuration beside the recipe's (with the recipe trial's value when it ran) and the H2 ranges."""
    best = _best(rows, direction)
    if best is None:
        return "no trial completed: no best configuration"
    ran = [r for r in rows if "recipe" in r.note.split(", ") and r.state in ("complete", "pruned")]
    recipe_value = (f"{ran[0].value:.4f}" + (" (pruned)" if ran[0].state == "pruned" else "")
                    if ran and ran[0].value is not None else "not run")
    lines = [f"best: trial {best.number}, {monitor} {best.value:.4f}; the recipe's: {recipe_value}",
             f"  {'hyperparameter':<15} {'best':>12} {'recipe':>14}   range searched (H2)"]
    for d in s.dimensions:
        lines.append(f"  {d.name:<15} {_fmt(best.params.get(d.name, d.value)):>12} {_fmt(recipe.get(d.name)):>14}   "
                     f"{d.describe()}")
    return "\n".join(lines)


def plot_trials(rows: Sequence[TrialRow], s: SearchSpace, path: str | Path, monitor: str,
                direction: str = "minimize", recipe: Mapping[str, Any] | None = None, title: str | None = None) -> Path:
    """A picture of the trials against the H2 ranges: one panel per searched hyperparameter, the monitored value
    of each trial over the hyperparameter's value, the H2 row's range shaded (for a fine-tuning learning
    rate the from-scratch row too), pruned trials as crosses, the best as a star, the recipe as a square."""
    from .plot import _pyplot

    plt = _pyplot()
    dims = [s[n] for n in s.searched]
    cols = min(3, max(1, len(dims)))
    nrows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), dpi=110, squeeze=False)
    best = _best(rows, direction)
    shown = [r for r in rows if r.value is not None and math.isfinite(r.value)]
    for ax, d in zip([a for row in axes for a in row], dims):
        cats = list(d.choices) if d.kind == "choice" else None

        def x_of(value: Any, cats: list[Any] | None = cats) -> float:
            return float(cats.index(value)) if cats is not None else float(value)

        if d.row is not None and ROWS[d.row].low is not None and cats is None:
            ax.axvspan(ROWS[d.row].low, ROWS[d.row].high, color="tab:green", alpha=0.15, label="H2 range")
        if d.name == "learning_rate" and s.fine_tuning:
            row = ROWS[OPTIMIZERS[s.optimizer]]
            ax.axvspan(row.low, row.high, color="tab:gray", alpha=0.15, label="H2 from scratch")
            ax.axvspan(d.low, d.high, color="tab:green", alpha=0.15, label="H2 range")
        if cats is None:  # a margin around the searched range, so the band's ends show
            lows = [d.low] + ([ROWS[OPTIMIZERS[s.optimizer]].low] if d.name == "learning_rate" else [])
            highs = [d.high] + ([ROWS[OPTIMIZERS[s.optimizer]].high] if d.name == "learning_rate" else [])
            lo, hi = min(lows), max(highs)
            if d.kind == "log":
                ax.set_xlim(lo / 1.6, hi * 1.6)
            else:
                ax.set_xlim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
        for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:red")):
            pts = [(x_of(r.params[d.name]), r.value) for r in shown if r.state == state and d.name in r.params]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=28, label=state, zorder=3)
        if best is not None and d.name in best.params:
            ax.scatter([x_of(best.params[d.name])], [best.value], marker="*", s=160, color="gold",
                       edgecolor="k", zorder=4, label="best")
        if recipe is not None and d.name in recipe:
            ran = [r for r in shown if "recipe" in r.note.split(", ") and r.state in ("complete", "pruned")]
            if ran:
                ax.scatter([x_of(recipe[d.name])], [ran[0].value], marker="s", s=70, facecolor="none",
                           edgecolor="k", zorder=4, label="recipe")
        if d.kind == "log":
            ax.set_xscale("log")
        if cats is not None:
            ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=30, fontsize=7, ha="right")
            ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.set_xlabel(d.name + (" (H2 [1, 1024])" if d.name == "batch_size" else ""), fontsize=8)
        ax.set_ylabel(monitor, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in [a for row in axes for a in row][len(dims):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in [a for row in axes for a in row]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title or f"trials against the handbook's H2 ranges ({s.optimizer}"
                 f"{', fine-tuning' if s.fine_tuning else ''})", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ the verb
DEFAULT_TASK = "hpcallbacks_demo.search:DIGITS"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hpcallbacks search",
        description="Search the handbook's H2 ranges on a task (default: the demo's digits MLP) with Optuna "
                    "(MedianPruner, a resumable SQLite study) or Ray Tune (ASHA); print the trials and the best "
                    "configuration beside the recipe's, draw the trials against the H2 ranges.")
    p.add_argument("--trials", type=int, default=20, help="trials in the study (a resumed study runs the rest)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per trial (default: the task's; digits: 5, fine-tuning 20)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None,
                   help="the optimizer whose H2 row is searched (default: the task's, adam)")
    p.add_argument("--fine-tuning", action="store_true",
                   help="fine-tune a pretrained model (the lowered LR range and the freeze plans)")
    p.add_argument("--tune", nargs="+", default=None, choices=sorted(TUNABLE), metavar="NAME",
                   help=f"also search these single recommended values ({', '.join(TUNABLE)})")
    p.add_argument("--storage", default=None,
                   help="an Optuna storage URL (sqlite:///x.db, postgresql://...) or a journal file path shared by "
                        "several processes (default: sqlite <out>/hpcallbacks-search.db)")
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT_INTERVAL, metavar="SECONDS",
                   help=f"seconds between a running trial's heartbeats (default {HEARTBEAT_INTERVAL})")
    p.add_argument("--grace", type=int, default=GRACE_PERIOD, metavar="SECONDS",
                   help=f"a trial left running without a heartbeat for this long counts as dead, is marked failed and "
                        f"run again when the study resumes (default {GRACE_PERIOD}; a worker of this machine whose "
                        f"process is gone: at once)")
    p.add_argument("--study-name", default=None, help="default: hpcallbacks-<task>-<optimizer>")
    p.add_argument("--workers", type=int, default=1, help="processes on the study (Ray: concurrent trials)")
    p.add_argument("--engine", choices=("optuna", "ray"), default="optuna")
    p.add_argument("--task", default=DEFAULT_TASK, help="package.module:NAME or file.py:NAME of a Task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="hpcallbacks-search", help="folder for the study, the table and the picture")
    p.add_argument("-o", "--output", default=None, help="the picture (default: <out>/search.png)")
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    p.add_argument("--_worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_share", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _split(todo: int, workers: int) -> list[int]:
    return [todo // workers + (1 if i < todo % workers else 0) for i in range(workers)]


def search_main(argv: Sequence[str]) -> int:
    """``hpcallbacks search``: parse ``argv``, run the study, print the table and the best configuration, draw
    the picture; return the exit status (0; 2 for invalid arguments or a missing package)."""
    argv = list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("trials", "workers", "heartbeat", "grace"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    if args.engine == "ray" and args.storage is not None:
        parser.error("--storage is for the Optuna engine; Ray Tune keeps its experiment in <out>/ray")
    try:
        task = load_task(args.task)
        s = task.space(args.optimizer, args.fine_tuning or None)
        if args.tune:
            s = space(s.optimizer, s.fine_tuning, args.tune, **dict(task.space_kwargs))
    except (ValueError, ModuleNotFoundError) as error:
        print(f"hpcallbacks search: error: {error}", file=sys.stderr)
        return 2
    epochs = args.epochs or (task.fine_tuning_epochs if s.fine_tuning and task.fine_tuning_epochs else task.epochs)
    study_name = args.study_name or f"hpcallbacks-{args.task.rpartition(':')[2].lower()}-{s.optimizer}" + (
        "-ft" if s.fine_tuning else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = task.recipe_params(s)
    try:
        if args.engine == "ray":
            _header(task, s, args, epochs, f"Ray Tune, ASHA, {args.workers} trials at a time, in {out / 'ray'}")
            rows = run_ray(task, s, trials=args.trials, epochs=epochs, out=out, study_name=study_name,
                           workers=args.workers, seed=args.seed, progress=not args.quiet)
        else:
            try:
                storage = open_storage(args.storage, out, args.heartbeat, args.grace)
            except ValueError as error:
                print(f"hpcallbacks search: error: {error}", file=sys.stderr)
                return 2
            beats = {"heartbeat": args.heartbeat, "grace": args.grace}
            if args._worker is not None:  # one of --workers N: run its share, quietly
                run_optuna(task, s, trials=args.trials, epochs=epochs, storage=storage, study_name=study_name,
                           seed=args.seed, worker=args._worker, progress=not args.quiet, n_trials=args._share,
                           enqueue_recipe=False, **beats)
                return 0
            where = _hide_password(args.storage) if args.storage else \
                f"sqlite:///{(out / 'hpcallbacks-search.db').resolve()}"
            _header(task, s, args, epochs, f"Optuna, MedianPruner, storage {where}, study {study_name!r}")
            if args.workers == 1:
                study = run_optuna(task, s, trials=args.trials, epochs=epochs, storage=storage,
                                   study_name=study_name, seed=args.seed, progress=not args.quiet, **beats)
            else:
                study = run_optuna(task, s, trials=0, epochs=epochs, storage=storage, study_name=study_name,
                                   seed=args.seed, progress=False, **beats)  # create it, the recipe first
                done = _counts(study)
                shares = _split(max(0, args.trials - done), args.workers)
                print(f"{args.workers} worker processes: {shares} trials", flush=True)
                worker_argv = list(argv)
                if "--storage" not in argv:
                    worker_argv += ["--storage", f"sqlite:///{(out / 'hpcallbacks-search.db').resolve()}"]
                codes = _spawn_workers(worker_argv + ["--study-name", study_name, "--out", str(out)], shares)
                if any(codes):
                    print(f"hpcallbacks search: error: a worker failed (exit codes {codes})", file=sys.stderr)
                    return 1
            study = _load(storage, study_name)
            rows = _optuna_rows(study)
    except ModuleNotFoundError as error:
        extra = "search-ray" if args.engine == "ray" else "search"
        print(f"hpcallbacks search: error: {error.name} is not installed; pip install 'hpcallbacks[{extra}]' "
              f"(and the task's packages)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args._worker is None:
            where = out / "ray" if args.engine == "ray" else (args.storage or out / "hpcallbacks-search.db")
            print(f"\nhpcallbacks search: interrupted; the study is kept in {where}: run the same command again to "
                  f"resume it (an interrupted trial counts as failed and is replaced)", file=sys.stderr)
        return 130
    table = format_trials(rows, s, task.monitor, task.direction)
    best = format_best(rows, s, recipe, task.monitor, task.direction)
    print("\n" + table + "\n\n" + best)
    (out / "trials.txt").write_text(table + "\n\n" + best + "\n")
    (out / "trials.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1, default=str))
    picture = plot_trials(rows, s, args.output or out / "search.png", task.monitor, task.direction, recipe,
                          title=f"{task.description or args.task}: {len(rows)} trials ({args.engine}) "
                                f"against the H2 ranges")
    print(f"\nwrote {out / 'trials.txt'}, {out / 'trials.json'}, {picture}")
    return 0


def _load(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _header(task: Task, s: SearchSpace, args: argparse.Namespace, epochs: int, engine: str) -> None:
    print(f"task: {task.description or args.task}; {args.trials} trials x {epochs} epochs; {engine}")
    print(s.describe(), flush=True)
