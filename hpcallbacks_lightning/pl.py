"""The hpcallbacks Lightning callbacks on ``pytorch_lightning.Callback`` (for a ``pytorch_lightning.Trainer``).

Same names, arguments, numbers and checkpoint states as :mod:`hpcallbacks_lightning`.
"""
from __future__ import annotations

from pytorch_lightning import Callback as _Callback

from hpcallbacks.advice import HyperparameterWarning as HyperparameterWarning

from .callbacks import build as _build
from .extras import build as _build_extras

_classes = {**_build(_Callback, __name__), **_build_extras(_Callback, __name__)}

LearningRateSchedule = _classes["LearningRateSchedule"]
Constant = _classes["Constant"]
ExponentialDecay = _classes["ExponentialDecay"]
PiecewiseConstantDecay = _classes["PiecewiseConstantDecay"]
PolynomialDecay = _classes["PolynomialDecay"]
InverseTimeDecay = _classes["InverseTimeDecay"]
CosineDecay = _classes["CosineDecay"]
CosineRestart = _classes["CosineRestart"]
LinearCosineDecay = _classes["LinearCosineDecay"]
NoisyLinearCosineDecay = _classes["NoisyLinearCosineDecay"]
Warmup = _classes["Warmup"]
StepDecay = _classes["StepDecay"]
MultiStepDecay = _classes["MultiStepDecay"]
OneCycle = _classes["OneCycle"]
Cyclic = _classes["Cyclic"]
SlantedTriangular = _classes["SlantedTriangular"]
InverseSqrt = _classes["InverseSqrt"]
WarmupStableDecay = _classes["WarmupStableDecay"]
ReduceOnPlateau = _classes["ReduceOnPlateau"]
StagedUnfreeze = _classes["StagedUnfreeze"]
DiscriminativeLR = _classes["DiscriminativeLR"]
FreezeBatchNorm = _classes["FreezeBatchNorm"]
SwapNorm = _classes["SwapNorm"]
GradientAccumulation = _classes["GradientAccumulation"]
ScaleLearningRate = _classes["ScaleLearningRate"]
BatchRamp = _classes["BatchRamp"]
ParamScheduler = _classes["ParamScheduler"]
InstanceNoise = _classes["InstanceNoise"]
LabelSmoothing = _classes["LabelSmoothing"]
LabelFlip = _classes["LabelFlip"]
HyperparameterAdvisor = _classes["HyperparameterAdvisor"]
LossBalance = _classes["LossBalance"]
LRFinder = _classes["LRFinder"]
MicroBatchFinder = _classes["MicroBatchFinder"]
TrialReporter = _classes["TrialReporter"]

__all__ = sorted([*_classes, "HyperparameterWarning"])
