"""The hpcallbacks Lightning callbacks on ``pytorch_lightning.Callback`` (for a ``pytorch_lightning.Trainer``).

Same names, arguments, numbers and checkpoint states as :mod:`hpcallbacks_lightning`.
"""
from __future__ import annotations

from pytorch_lightning import Callback as _Callback

from hpcallbacks.advice import HyperparameterWarning as HyperparameterWarning

from .callbacks import build as _build

# the classes of hpcallbacks_lightning, name for name, on pytorch_lightning.Callback (see that package)
_classes = _build(_Callback, __name__)
globals().update(_classes)

__all__ = sorted([*_classes, "HyperparameterWarning"])
