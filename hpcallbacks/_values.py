"""The ``get_config()`` / ``from_config()`` round-trip shared by the core's plan values.

A plan value is a frozen dataclass whose fields are its constructor arguments; nested schedules
travel as :func:`hpcallbacks.schedules.serialize` dicts, tuples as lists. Plain JSON only: no
pickle, no eval.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .schedules import _from_json, _to_json

T = TypeVar("T", bound="Value")


class Value:
    """Mixin for frozen dataclasses: ``get_config()`` and ``from_config()`` through plain JSON."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_config(cls: type[T], config: dict[str, Any]) -> T:
        """Rebuild from :meth:`get_config` output; refuses keys the constructor does not take."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict from get_config(); got {config!r}")
        known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"config keys must be among {sorted(known)}; got unknown {unknown}")
        return cls(**{k: _from_json(v) for k, v in config.items()})
