"""hpcallbacks for PyTorch Lightning: the core's schedules and plans as Lightning callbacks.

``hpcallbacks_lightning.X`` subclasses ``lightning.pytorch.Callback`` (or
``pytorch_lightning.Callback`` when only ``pytorch_lightning`` is installed);
``hpcallbacks_lightning.pl.X`` is the same callback on ``pytorch_lightning.Callback``. Use the one
matching your ``Trainer``'s package; both have the same names, arguments and numbers, and their
checkpoint states are interchangeable.

>>> from hpcallbacks_lightning import CosineRestart, StagedUnfreeze   # doctest: +SKIP
>>> Trainer(callbacks=[CosineRestart(), StagedUnfreeze(FreezePlan.gradual(every_epochs=1))])  # doctest: +SKIP

Callbacks: ``LearningRateSchedule(schedule)`` and one per core schedule family
(``CosineRestart``, ``CosineDecay``, ``ExponentialDecay``, ``OneCycle``, ``Warmup``, ...),
``ReduceOnPlateau``, ``StagedUnfreeze``, ``DiscriminativeLR``, ``FreezeBatchNorm``, ``SwapNorm``;
``GradientAccumulation``, ``ScaleLearningRate``, ``BatchRamp`` (batch size, H4), ``ParamScheduler``
(any hyperparameter on a schedule), ``InstanceNoise``, ``LabelSmoothing``, ``LabelFlip`` (GAN, H7),
``HyperparameterAdvisor``, ``LossBalance`` (H2 checks, warning :class:`HyperparameterWarning`),
``LRFinder`` (the LR range test).
"""
from __future__ import annotations

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # pragma: no cover - only pytorch_lightning installed
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
