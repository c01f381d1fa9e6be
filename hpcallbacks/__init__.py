"""hpcallbacks: the techniques of a hyperparameter handbook as plans any training loop can apply.

This package is the framework-agnostic core (pure Python, no framework imported):

* :mod:`hpcallbacks.schedules` — learning-rate schedules, pure functions of the update count.
* :mod:`hpcallbacks.plans` — fine-tuning plans: staged unfreezing, per-group LR factors, BN policy.

Adapters apply the plans while training runs: ``hpcallbacks_keras``, ``hpcallbacks_lightning``,
``hpcallbacks_hf``.
"""
from __future__ import annotations

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

from .plans import (
    BN_POLICIES,
    FreezePlan,
    LRFactors,
    Recommendation,
    ResolvedPlan,
    Stage,
    fine_tune_learning_rate,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEDULES", "Constant", "CosineDecay", "CosineRestart", "Cyclic", "ExponentialDecay", "InverseSqrt",
    "InverseTimeDecay", "Join", "LinearCosineDecay", "MultiStepDecay", "NoisyLinearCosineDecay", "OneCycle",
    "PiecewiseConstantDecay", "PolynomialDecay", "ReduceOnPlateau", "Schedule", "SlantedTriangular", "StepDecay",
    "Warmup", "WarmupStableDecay", "as_schedule", "deserialize", "serialize", "__version__",
    "BN_POLICIES", "FreezePlan", "LRFactors", "Recommendation", "ResolvedPlan", "Stage", "fine_tune_learning_rate",
]
