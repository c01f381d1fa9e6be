"""The ``get_config()`` / ``from_config()`` round-trip shared by the core's plan values.

A plan value is a frozen dataclass whose fields are its constructor arguments; nested schedules
travel as :func:`hpcallbacks.schedules.serialize` dicts, tuples as lists. Plain JSON only: no
pickle, no eval.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from . import _checks as check
from .schedules import _from_json, _to_json

T = TypeVar("T", bound="Value")


class Value:
    """Mixin for frozen dataclasses: ``get_config()`` and ``from_config()`` through plain JSON."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_config(cls: type[T], config: dict[str, Any]) -> T:
        """Rebuild from :meth:`get_config` output.

        A non-dict, or a key the constructor does not take, is a ``ValueError`` that names the
        unknown key, the closest allowed one ("did you mean ...?") and every allowed key.
        """
        known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        check.config_keys(cls.__name__, config, known)
        return cls(**{k: _from_json(v) for k, v in config.items()})
