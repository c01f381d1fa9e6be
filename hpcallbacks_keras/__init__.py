"""hpcallbacks for Keras 3 (any backend): the core's plans as callbacks that change a real ``fit``.

>>> from hpcallbacks_keras import CosineRestart, StagedUnfreeze
>>> callbacks = [CosineRestart(), StagedUnfreeze()]   # doctest: +SKIP
"""
from __future__ import annotations

from . import extras as _extras
from ._groups import Group, discover_groups, resolve_groups
from .callbacks import *  # noqa: F403 - the names in its __all__
from .callbacks import keras_only as _keras_only
from .extras import *  # noqa: F403 - the names in its __all__

# every public callback: given to a Lightning or HF loop it raises TypeError naming the import to
# use, and a wrong keyword is an ArgumentError (hpcallbacks.run.guard_hooks, hpcallbacks._checks);
# the HPCallback subclasses, SwapNorm, BatchRamp and the GAN helpers get both where they are defined
for _cls in (_extras.GradientAccumulation, _extras.HyperparameterAdvisor, _extras.LossBalance, _extras.LRFinder):
    _keras_only(_cls)
del _cls

__all__ = [
    "Constant", "CosineDecay", "CosineRestart", "Cyclic", "DiscriminativeLR", "ExponentialDecay", "FreezeBatchNorm",
    "HPCallback", "InverseSqrt", "InverseTimeDecay", "LearningRateSchedule", "LinearCosineDecay", "MultiStepDecay",
    "NoisyLinearCosineDecay", "OneCycle", "PiecewiseConstantDecay", "PolynomialDecay", "ReduceOnPlateau",
    "SlantedTriangular", "StagedUnfreeze", "StepDecay", "Warmup", "WarmupStableDecay",
    "GradientAccumulation", "ScaleLearningRate", "LARS", "HyperparameterAdvisor", "LossBalance",
    "HyperparameterWarning", "UpdateCountSchedule", "SwapNorm", "ParamScheduler", "InstanceNoise", "LabelFlip",
    "LabelSmoothing", "BatchRamp", "LRFinder", "MicroBatchFinder", "TrialReporter",
    "Group", "discover_groups", "resolve_groups", "FrozenBatchNormalization", "swap_norms",
]
