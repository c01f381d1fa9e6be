"""hpcallbacks for Keras 3 (any backend): the core's plans as callbacks that change a real ``fit``.

>>> from hpcallbacks_keras import CosineRestart, StagedUnfreeze
>>> callbacks = [CosineRestart(), StagedUnfreeze()]   # doctest: +SKIP
"""
from __future__ import annotations

from ._groups import Group, discover_groups, resolve_groups
from .callbacks import (
    BatchRamp,
    Constant,
    CosineDecay,
    CosineRestart,
    Cyclic,
    DiscriminativeLR,
    ExponentialDecay,
    FreezeBatchNorm,
    HPCallback,
    InverseSqrt,
    InverseTimeDecay,
    LearningRateSchedule,
    LinearCosineDecay,
    MultiStepDecay,
    NoisyLinearCosineDecay,
    OneCycle,
    PiecewiseConstantDecay,
    PolynomialDecay,
    ReduceOnPlateau,
    SlantedTriangular,
    StagedUnfreeze,
    StepDecay,
    SwapNorm,
    Warmup,
    WarmupStableDecay,
)
from .extras import (
    LARS,
    GradientAccumulation,
    HyperparameterAdvisor,
    HyperparameterWarning,
    LossBalance,
    ScaleLearningRate,
    UpdateCountSchedule,
)
from .finder import LRFinder
from .gan import InstanceNoise, LabelFlip, LabelSmoothing
from .norms import FrozenBatchNormalization, swap_norms
from .params import ParamScheduler

__all__ = [
    "Constant", "CosineDecay", "CosineRestart", "Cyclic", "DiscriminativeLR", "ExponentialDecay", "FreezeBatchNorm",
    "HPCallback", "InverseSqrt", "InverseTimeDecay", "LearningRateSchedule", "LinearCosineDecay", "MultiStepDecay",
    "NoisyLinearCosineDecay", "OneCycle", "PiecewiseConstantDecay", "PolynomialDecay", "ReduceOnPlateau",
    "SlantedTriangular", "StagedUnfreeze", "StepDecay", "Warmup", "WarmupStableDecay",
    "GradientAccumulation", "ScaleLearningRate", "LARS", "HyperparameterAdvisor", "LossBalance",
    "HyperparameterWarning", "UpdateCountSchedule", "SwapNorm", "ParamScheduler", "InstanceNoise", "LabelFlip",
    "LabelSmoothing", "BatchRamp", "LRFinder",
    "Group", "discover_groups", "resolve_groups", "FrozenBatchNormalization", "swap_norms",
]
