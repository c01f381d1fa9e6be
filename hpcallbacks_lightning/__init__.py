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

from hpcallbacks.advice import HyperparameterWarning as HyperparameterWarning

from . import callbacks as _callbacks
from . import extras as _extras
from .callbacks import *  # noqa: F403 - the callbacks in its __all__
from .extras import *  # noqa: F403 - the callbacks in its __all__

__all__ = sorted({*_callbacks.__all__, *_extras.__all__})
