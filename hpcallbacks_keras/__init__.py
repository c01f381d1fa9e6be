"""hpcallbacks for Keras 3 (any backend): the core's plans as callbacks that change a real ``fit``.

>>> from hpcallbacks_keras import CosineRestart, StagedUnfreeze
>>> callbacks = [CosineRestart(), StagedUnfreeze()]   # doctest: +SKIP
"""
from __future__ import annotations

from . import callbacks as _callbacks
from . import extras as _extras
from ._groups import Group as Group
from ._groups import discover_groups as discover_groups
from ._groups import resolve_groups as resolve_groups
from .callbacks import *  # noqa: F403 - the names in its __all__
from .extras import *  # noqa: F403 - the names in its __all__

__all__ = sorted({*_callbacks.__all__, *_extras.__all__, "Group", "discover_groups", "resolve_groups"})
