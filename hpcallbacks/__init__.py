"""hpcallbacks: the techniques of a hyperparameter handbook as plans any training loop can apply.

This package is the framework-agnostic core (pure Python, no framework imported):

* :mod:`hpcallbacks.schedules` — learning-rate schedules, pure functions of the update count.
* :mod:`hpcallbacks.plans` — fine-tuning plans: staged unfreezing, per-group LR factors, BN policy.
* :mod:`hpcallbacks.recipe` — the whole fine-tuning recipe (H2-H5) from a run's facts (``FineTune``).
* :mod:`hpcallbacks.batch` — batch-size rules: LR scaling, accumulation, batch ramp, LARS ratio.
* :mod:`hpcallbacks.norms` — norm-swap plans (BatchNorm to GroupNorm / frozen / synchronised).
* :mod:`hpcallbacks.gan` — GAN schedules: instance noise, label smoothing, label flips.
* :mod:`hpcallbacks.params` — any named hyperparameter driven by a schedule.
* :mod:`hpcallbacks.advice` — the handbook's H2 table as checks, and loss-term balance.
* :mod:`hpcallbacks.finder` — the learning-rate range test: LR ramp, stop rule, suggestion.
* :mod:`hpcallbacks.plot` — pictures of schedules and plans (matplotlib, optional).

Adapters apply the plans while training runs: ``hpcallbacks_keras``, ``hpcallbacks_lightning``,
``hpcallbacks_hf``.
"""
from __future__ import annotations

from ._checks import ArgumentError
from .advice import Finding, loss_balance
from .advice import check as check_hyperparameters
from .batch import (
    Accumulation,
    BatchRamp,
    MicroBatch,
    accumulation_steps,
    fit_micro_batch,
    lars_trust_ratio,
    scale_learning_rate,
    scaling_warmup,
)
from .gan import InstanceNoise, LabelFlip, LabelSmoothing
from .norms import NormSwap, group_norm_groups
from .params import ParamSchedule
from .plans import (
    BN_POLICIES,
    FreezePlan,
    LRFactors,
    Recommendation,
    ResolvedPlan,
    Stage,
    fine_tune_learning_rate,
)
from .recipe import Recipe
from .run import RunWarning
from .schedules import (
    SCHEDULES,
    Constant,
    CosineDecay,
    CosineRestart,
    Cyclic,
    ExponentialDecay,
    InverseSqrt,
    InverseTimeDecay,
    Join,
    LinearCosineDecay,
    MultiStepDecay,
    NoisyLinearCosineDecay,
    OneCycle,
    PiecewiseConstantDecay,
    PolynomialDecay,
    ReduceOnPlateau,
    Schedule,
    SlantedTriangular,
    StepDecay,
    Warmup,
    WarmupStableDecay,
    as_schedule,
    deserialize,
    serialize,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEDULES", "Constant", "CosineDecay", "CosineRestart", "Cyclic", "ExponentialDecay", "InverseSqrt",
    "InverseTimeDecay", "Join", "LinearCosineDecay", "MultiStepDecay", "NoisyLinearCosineDecay", "OneCycle",
    "PiecewiseConstantDecay", "PolynomialDecay", "ReduceOnPlateau", "Schedule", "SlantedTriangular", "StepDecay",
    "Warmup", "WarmupStableDecay", "as_schedule", "deserialize", "serialize", "__version__",
    "Finding", "loss_balance", "check_hyperparameters", "Accumulation", "BatchRamp",
    "MicroBatch", "fit_micro_batch", "accumulation_steps",
    "lars_trust_ratio", "scale_learning_rate", "scaling_warmup", "InstanceNoise", "LabelFlip", "LabelSmoothing",
    "NormSwap", "group_norm_groups", "ParamSchedule", "RunWarning",
    "BN_POLICIES", "FreezePlan", "LRFactors", "Recommendation", "ResolvedPlan", "Stage", "fine_tune_learning_rate",
    "Recipe",
    "ArgumentError",
]
