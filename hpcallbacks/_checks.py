"""Argument checks shared by every public constructor of the core.

Every check raises ``ValueError`` whose message names the argument, the value it got and what
is allowed, so a wrong argument fails at once with a message that says what to change.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
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


# -------------------------------------------------------------------------------- arguments
class ArgumentError(ValueError, TypeError):
    """A call with arguments its signature does not take: an unknown or misspelt keyword, too many
    positional arguments, a missing required one, or one given twice.

    One class for every adapter: it is a ``TypeError`` (what Python raises for such a call) and a
    ``ValueError`` (what every other bad argument of hpcallbacks raises), so ``except TypeError``
    and ``except ValueError`` both catch it.

    >>> issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, ValueError)
    True
    """


def did_you_mean(name: Any, candidates: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the closest of ``candidates`` to ``name``, or ``""``.

    >>> did_you_mean("then_evry", ["stages", "then_every", "then_add"])
    "did you mean 'then_every'?"
    """
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [c for c in candidates if isinstance(c, str)], n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _takes(signature: inspect.Signature) -> str:
    """The parameter names of ``signature``, marked as Python writes them (``/``, ``*``, ``**``)."""
    out: list[str] = []
    star = False
    params = list(signature.parameters.values())
    for i, p in enumerate(params):
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star:
                out.append("*")
                star = True
            out.append(p.name)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY):
            out.append("/")
    return ", ".join(out) or "no arguments"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _diagnose(signature: inspect.Signature, who: str, args: tuple, kwargs: dict) -> str | None:
    """Why ``signature.bind(*args, **kwargs)`` fails, in the words of :func:`bind`; None if unsure."""
    params = list(signature.parameters.values())
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_keyword = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not var_kw:
        for key in kwargs:
            if key not in by_keyword:
                if any(p.name == key and p.kind is p.POSITIONAL_ONLY for p in params):
                    return f"{who}() got positional-only argument {key!r} passed as a keyword argument"
                hint = did_you_mean(key, by_keyword)
                return f"{who}() got an unexpected keyword argument {key!r}" + (f"; {hint}" if hint else "")
    if len(args) > len(positional) and not var_pos:
        most = len(positional)
        at_most = "at most " if any(p.default is not p.empty for p in positional) else ""
        return (f"{who}() takes {at_most}{_plural(most, 'positional argument')} but {len(args)} "
                f"{'was' if len(args) == 1 else 'were'} given")
    given_positionally = {p.name for p in positional[: len(args)]}
    for key in kwargs:
        if key in given_positionally:
            return f"{who}() got multiple values for argument {key!r}"
    missing = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               and p.name not in given_positionally and p.name not in kwargs]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        return f"{who}() missing {_plural(len(missing), 'required argument')}: {names}"
    return None


def bind(signature: inspect.Signature, who: str, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    """``signature.bind(*args, **kwargs)``, or an :class:`ArgumentError` that says what to change.

    The message names the argument at fault, the closest accepted keyword when one is close, and
    every argument ``who`` takes.

    >>> import inspect
    >>> sig = inspect.signature(lambda initial_learning_rate, first_decay_steps, t_mul=2.0: None)
    >>> bind(sig, "CosineRestart", (0.1,), {"first_decay_step": 10})
    Traceback (most recent call last):
      ...
    hpcallbacks._checks.ArgumentError: CosineRestart() got an unexpected keyword argument 'first_decay_step'; \
did you mean 'first_decay_steps'? CosineRestart takes: initial_learning_rate, first_decay_steps, t_mul
    """
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as error:
        why = _diagnose(signature, who, args, kwargs) or f"{who}(): {error}"
        sep = " " if why.endswith("?") else ". "
        raise ArgumentError(f"{why}{sep}{who} takes: {_takes(signature)}") from None


_CHECKED = "__hpcallbacks_checked__"


def _own_signature(cls: type) -> inspect.Signature | None:
    sig = cls.__dict__.get("__signature__")
    return sig if isinstance(sig, inspect.Signature) else None


def _without_self(init: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]
    return sig.replace(parameters=params)


def checked_init(cls: type) -> type:
    """Make calls of ``cls`` with arguments its signature does not take raise :class:`ArgumentError`.

    The check runs before the body of ``__init__``. It binds against ``cls.__signature__`` when the
    class defines one in its own ``__dict__`` (generated classes whose ``__init__(self, *args,
    **kwargs)`` is inherited), else against the class's own ``__init__``. Only a class whose
    ``__dict__`` holds an ``__init__`` or a ``__signature__`` is changed; ``inspect.signature(cls)``,
    ``__doc__``, ``__qualname__`` and ``__wrapped__`` are kept. Apply it after ``@dataclass``
    (which writes ``__init__`` after the class is made) and after setting ``__signature__`` on a
    class already made; :class:`ArgumentChecked` applies it to every subclass as it is made.
    Applying it twice changes nothing. Returns ``cls``.
    """
    own = cls.__dict__.get("__init__")
    declared = _own_signature(cls)
    if own is not None and getattr(own, _CHECKED, False):
        return cls
    if own is None and declared is None:
        return cls
    if own is not None:
        inner = own
        of_init: list[inspect.Signature] = []  # the signature of the own __init__, less self, made once

        def signature() -> inspect.Signature:
            declared_now = _own_signature(cls)
            if declared_now is not None:
                return declared_now
            if not of_init:
                of_init.append(_without_self(inner))
            return of_init[0]

        @functools.wraps(inner)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            # named after the class called, unless a subclass's own __init__ calls this one
            owner_call = type(self).__init__ is __init__
            bind(signature(), type(self).__name__ if owner_call else cls.__name__, args, kwargs)
            inner(self, *args, **kwargs)
    else:
        inherited = super(cls, cls).__init__  # type: ignore[misc]

        @functools.wraps(inherited)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            sig = _own_signature(cls) or declared
            owner_call = type(self).__init__ is __init__
            bind(sig, type(self).__name__ if owner_call else cls.__name__, args, kwargs)  # type: ignore[arg-type]
            super(cls, self).__init__(*args, **kwargs)  # type: ignore[misc]

        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        __init__.__signature__ = declared.replace(  # type: ignore[attr-defined, union-attr]
            parameters=[self_param, *declared.parameters.values()])  # type: ignore[union-attr]
    setattr(__init__, _CHECKED, True)
    cls.__init__ = __init__  # type: ignore[misc]
    return cls


class ArgumentChecked:
    """Mixin: every subclass's calls are checked by :func:`checked_init` (see there).

    >>> class Schedule(ArgumentChecked):
    ...     def __init__(self, initial_learning_rate, *, decay_steps=100):
    ...         self.lr = initial_learning_rate
    >>> Schedule(0.1, decay_step=10)
    Traceback (most recent call last):
      ...
    hpcallbacks._checks.ArgumentError: Schedule() got an unexpected keyword argument 'decay_step'; \
did you mean 'decay_steps'? Schedule takes: initial_learning_rate, *, decay_steps
    """

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        checked_init(cls)


# --------------------------------------------------------------------------------- configs
def config_keys(who: str, config: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    """Refuse a ``from_config`` input that is not a dict, has a key outside ``allowed`` or lacks
    one of ``required``; return it. The message names the unknown keys, the closest allowed key
    and every allowed key.

    >>> config_keys("FreezePlan", {"stages": [[0, 1]], "then_evry": 1}, ["stages", "then_every", "then_add"])
    Traceback (most recent call last):
      ...
    ValueError: FreezePlan config has unknown key 'then_evry' (did you mean 'then_every'?); \
the allowed keys are: stages, then_every, then_add
    """
    allowed = list(allowed)
    if not isinstance(config, dict):
        raise ValueError(f"{who} config must be a dict from get_config(); got {config!r} ({type(config).__name__})")
    unknown = [k for k in config if k not in allowed]
    if unknown:
        described = []
        for key in unknown:
            hint = did_you_mean(key, allowed)
            described.append(f"{key!r} ({hint})" if hint else repr(key))
        raise ValueError(f"{who} config has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(described)}; "
                         f"the allowed keys are: {', '.join(allowed)}")
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"{who} config must have the key{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(k) for k in missing)}; got keys {list(config)!r}")
    return config
