"""Argument checks shared by every public constructor of the core.

Every check raises ``ValueError`` whose message names the argument, the value it got and what
is allowed, so a wrong argument fails at once with a message that says what to change.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """Return ``value`` as a float (or int when ``integer``) after checking it.

    ``low``/``high`` bound the allowed interval; ``*_open`` makes that end exclusive.
    NaN, infinities, bools and non-numbers are always refused.
    """
    allowed = _describe(low, high, low_open, high_open, integer)
    if not _is_real(value):
        # numpy scalars and similar number types are accepted when they convert losslessly
        try:
            converted = float(value) if not isinstance(value, (str, bytes, bool)) else None
        except (TypeError, ValueError):
            converted = None
        if converted is None or type(value).__name__ in ("bool_", "bool"):
            raise ValueError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
        value = int(converted) if integer and converted == int(converted) else converted
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    if integer:
        if isinstance(value, float):
            if value != int(value):
                raise ValueError(f"{name} must be {allowed}; got {value!r}")
            value = int(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return value if integer else float(value)


def _describe(low, high, low_open, high_open, integer) -> str:
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        return f"{kind} in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return kind


def positive(name: str, value: Any) -> float:
    return number(name, value, low=0.0, low_open=True)


def non_negative(name: str, value: Any) -> float:
    return number(name, value, low=0.0)


def positive_int(name: str, value: Any) -> int:
    return number(name, value, low=1, integer=True)  # type: ignore[return-value]


def non_negative_int(name: str, value: Any) -> int:
    return number(name, value, low=0, integer=True)  # type: ignore[return-value]


def unit(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    return number(name, value, low=0.0, high=1.0)


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")
    return value


def sequence(name: str, value: Any, *, min_len: int = 0) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, tuple, list)):
        try:
            value = tuple(value)
        except TypeError:
            raise ValueError(f"{name} must be a list; got {value!r} ({type(value).__name__})") from None
    value = tuple(value)
    if len(value) < min_len:
        raise ValueError(f"{name} must have at least {min_len} element(s); got {list(value)!r}")
    return value


def increasing(name: str, values: Sequence[float]) -> None:
    for a, b in zip(values, values[1:]):
        if not b > a:
            raise ValueError(f"{name} must be strictly increasing; got {list(values)!r} ({b!r} follows {a!r})")
