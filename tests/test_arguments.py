"""ArgumentError, bind, checked_init / ArgumentChecked and config_keys (hpcallbacks._checks).

One exception class for a call with arguments the signature does not take, in every adapter: it
is caught by ``except TypeError`` (Python's class for such calls) and by ``except ValueError`` (the
class of every other bad argument in hpcallbacks). Pure Python classes only.
"""
from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

import hpcallbacks
from hpcallbacks import _checks as check
from hpcallbacks._checks import ArgumentChecked, ArgumentError, bind, checked_init

P = inspect.Parameter


def restart_signature() -> inspect.Signature:
    """The signature of a generated family class: every argument optional (None = from the run)."""
    names = [("initial_learning_rate", None), ("first_decay_steps", None), ("t_mul", 2.0), ("m_mul", 1.0),
             ("alpha", 0.0)]
    return inspect.Signature([P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in names])


TAKES = "CosineRestart takes: initial_learning_rate, first_decay_steps, t_mul, m_mul, alpha"


# ------------------------------------------------------------------------------ the class
def test_argument_error_is_a_type_error_and_a_value_error():
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, ValueError)
    assert hpcallbacks.ArgumentError is ArgumentError and "ArgumentError" in hpcallbacks.__all__
    for catch in (TypeError, ValueError):
        try:
            raise ArgumentError("x")
        except catch as e:
            assert str(e) == "x"
    assert pickle.loads(pickle.dumps(ArgumentError("y"))).args == ("y",)


# ----------------------------------------------------------------------------------- bind
def test_bind_returns_the_bound_arguments():
    bound = bind(restart_signature(), "CosineRestart", (0.1,), {"t_mul": 1.0})
    assert isinstance(bound, inspect.BoundArguments)
    assert bound.arguments == {"initial_learning_rate": 0.1, "t_mul": 1.0}


def test_a_misspelt_keyword_names_the_closest_one_and_every_argument():
    with pytest.raises(ArgumentError) as info:
        bind(restart_signature(), "CosineRestart", (), {"first_decay_step": 5})
    assert str(info.value) == ("CosineRestart() got an unexpected keyword argument 'first_decay_step'; "
                               f"did you mean 'first_decay_steps'? {TAKES}")


def test_an_unknown_keyword_with_nothing_close_gives_no_guess():
    with pytest.raises(ArgumentError) as info:
        bind(restart_signature(), "CosineRestart", (), {"nonsense": 1})
    message = str(info.value)
    assert "unexpected keyword argument 'nonsense'" in message and "did you mean" not in message
    assert message.endswith(TAKES)


def test_too_many_positional_arguments():
    with pytest.raises(ArgumentError) as info:
        bind(restart_signature(), "CosineRestart", (1, 2, 3, 4, 5, 6), {})
    assert str(info.value) == f"CosineRestart() takes at most 5 positional arguments but 6 were given. {TAKES}"
    required = inspect.signature(lambda a, b: None)
    with pytest.raises(ArgumentError, match="takes 2 positional arguments but 3 were given"):
        bind(required, "F", (1, 2, 3), {})


def test_a_missing_required_argument():
    sig = inspect.signature(lambda initial_learning_rate, decay_steps, decay_rate=0.5: None)
    with pytest.raises(ArgumentError) as info:
        bind(sig, "ExponentialDecay", (0.1,), {})
    assert str(info.value) == ("ExponentialDecay() missing 1 required argument: 'decay_steps'. "
                               "ExponentialDecay takes: initial_learning_rate, decay_steps, decay_rate")
    with pytest.raises(ArgumentError, match="missing 2 required arguments: 'initial_learning_rate', 'decay_steps'"):
        bind(sig, "ExponentialDecay", (), {})


def test_multiple_values_for_one_argument():
    with pytest.raises(ArgumentError, match="got multiple values for argument 'initial_learning_rate'"):
        bind(restart_signature(), "CosineRestart", (0.1,), {"initial_learning_rate": 0.2})


def test_keyword_only_positional_only_and_var_arguments():
    def f(a, /, b, *, c, d=1):
        pass

    sig = inspect.signature(f)
    with pytest.raises(ArgumentError) as info:
        bind(sig, "F", (1, 2, 3), {"c": 1})
    assert "takes 2 positional arguments but 3 were given" in str(info.value)
    assert str(info.value).endswith("F takes: a, /, b, *, c, d")
    with pytest.raises(ArgumentError, match="positional-only argument 'a' passed as a keyword"):
        bind(sig, "F", (), {"a": 1, "b": 2, "c": 3})
    with pytest.raises(ArgumentError, match="missing 1 required argument: 'c'"):
        bind(sig, "F", (1, 2), {})
    with pytest.raises(ArgumentError, match="did you mean 'd'"):
        bind(sig, "F", (1, 2), {"c": 3, "dd": 4})

    def g(a, *args, key=None, **kwargs):
        pass

    sig = inspect.signature(g)
    assert bind(sig, "G", (1, 2, 3), {"anything": 4}).arguments["kwargs"] == {"anything": 4}
    with pytest.raises(ArgumentError) as info:
        bind(sig, "G", (), {"key": 1})
    assert str(info.value) == "G() missing 1 required argument: 'a'. G takes: a, *args, key, **kwargs"


# ------------------------------------------------------------------- checked_init / mixin
class Plain(ArgumentChecked):
    """A plain class."""

    calls = 0

    def __init__(self, initial_learning_rate, decay_steps, decay_rate=0.5):
        """Build it."""
        type(self).calls += 1
        self.args = (initial_learning_rate, decay_steps, decay_rate)


def test_a_normal_init_runs_and_keeps_its_face():
    before = Plain.calls
    assert Plain(0.1, 10).args == (0.1, 10, 0.5) and Plain(0.1, decay_steps=3, decay_rate=0.9).args == (0.1, 3, 0.9)
    assert Plain.calls == before + 2
    assert str(inspect.signature(Plain)) == "(initial_learning_rate, decay_steps, decay_rate=0.5)"
    assert str(inspect.signature(Plain.__init__)) == "(self, initial_learning_rate, decay_steps, decay_rate=0.5)"
    assert Plain.__init__.__doc__ == "Build it." and Plain.__doc__ == "A plain class."
    assert Plain.__init__.__qualname__ == "Plain.__init__" and Plain.__init__.__name__ == "__init__"
    assert inspect.unwrap(Plain.__init__) is Plain.__init__.__wrapped__
    assert Plain.__init__.__wrapped__.__qualname__ == "Plain.__init__"


def test_bad_arguments_are_refused_before_the_body_runs():
    before = Plain.calls
    for call, text in [
        (lambda: Plain(0.1, decay_step=10), "did you mean 'decay_steps'?"),
        (lambda: Plain(0.1, 10, 0.5, 4), "takes at most 3 positional arguments but 4 were given"),
        (lambda: Plain(0.1), "missing 1 required argument: 'decay_steps'"),
        (lambda: Plain(0.1, 10, decay_steps=3), "multiple values for argument 'decay_steps'"),
    ]:
        with pytest.raises(ArgumentError) as info:
            call()
        assert text in str(info.value) and str(info.value).startswith("Plain() ")
        assert str(info.value).endswith("Plain takes: initial_learning_rate, decay_steps, decay_rate")
    assert Plain.calls == before


@pytest.mark.parametrize("catch", [TypeError, ValueError])
def test_a_misspelt_keyword_is_caught_as_either_class(catch):
    with pytest.raises(catch, match="did you mean 'decay_rate'"):
        Plain(0.1, 10, decay_rat=0.9)


def test_keyword_only_arguments():
    class KeywordOnly(ArgumentChecked):
        def __init__(self, schedule, *, every=1, warmup_steps=0):
            self.values = (schedule, every, warmup_steps)

    assert KeywordOnly("s", every=2).values == ("s", 2, 0)
    assert str(inspect.signature(KeywordOnly)) == "(schedule, *, every=1, warmup_steps=0)"
    with pytest.raises(ArgumentError) as info:
        KeywordOnly("s", 2)
    assert str(info.value) == ("KeywordOnly() takes 1 positional argument but 2 were given. "
                               "KeywordOnly takes: schedule, *, every, warmup_steps")
    with pytest.raises(ArgumentError, match="did you mean 'warmup_steps'"):
        KeywordOnly("s", warmup_step=3)


class FamilyBase(ArgumentChecked):
    """What an adapter's generated family classes inherit: ``__init__(self, *args, **kwargs)``."""

    def __init__(self, *args, **kwargs):
        self.arguments = inspect.signature(type(self)).bind(*args, **kwargs).arguments


def make_family(name: str, signature: inspect.Signature) -> type:
    return type(name, (FamilyBase,), {"__signature__": signature, "__doc__": f"{name} callback."})


def test_a_generated_subclass_binds_against_its_own_signature():
    CosineRestart = make_family("CosineRestart", restart_signature())
    assert inspect.signature(CosineRestart) == restart_signature()
    assert CosineRestart.__doc__ == "CosineRestart callback."
    assert CosineRestart.__init__.__qualname__ == "CosineRestart.__init__"
    assert list(inspect.signature(CosineRestart.__init__).parameters)[:2] == ["self", "initial_learning_rate"]
    assert CosineRestart(0.1, first_decay_steps=5).arguments == {"initial_learning_rate": 0.1,
                                                                   "first_decay_steps": 5}
    with pytest.raises(ArgumentError) as info:
        CosineRestart(first_decay_step=5)
    assert str(info.value) == ("CosineRestart() got an unexpected keyword argument 'first_decay_step'; "
                               f"did you mean 'first_decay_steps'? {TAKES}")
    with pytest.raises(ArgumentError, match="takes at most 5 positional arguments but 6 were given"):
        CosineRestart(1, 2, 3, 4, 5, 6)
    # the base itself still takes anything
    assert FamilyBase(1, x=2).__class__ is FamilyBase


def test_a_generated_signature_with_a_required_argument():
    sig = inspect.Signature([P("boundaries", P.POSITIONAL_OR_KEYWORD), P("values", P.POSITIONAL_OR_KEYWORD),
                             P("convention", P.KEYWORD_ONLY, default="keras")])
    Piecewise = make_family("PiecewiseConstantDecay", sig)
    assert Piecewise([10], [1.0, 0.1]).arguments == {"boundaries": [10], "values": [1.0, 0.1]}
    with pytest.raises(ArgumentError, match=r"missing 1 required argument: 'values'\. PiecewiseConstantDecay "
                                            r"takes: boundaries, values, \*, convention"):
        Piecewise([10])
    with pytest.raises(ArgumentError, match="did you mean 'convention'"):
        Piecewise([10], [1.0, 0.1], conventoin="torch")


def test_subclasses_of_checked_classes():
    CosineRestart = make_family("CosineRestart", restart_signature())

    class Mine(CosineRestart):  # neither __init__ nor __signature__: the parent's check, under its own name
        pass

    assert inspect.signature(Mine) == restart_signature()
    with pytest.raises(ArgumentError, match=r"^Mine\(\) got an unexpected keyword argument 'm_mull'; did you mean"):
        Mine(m_mull=2.0)

    class Narrow(Plain):
        def __init__(self, rate):
            super().__init__(rate, decay_stepz=10)  # a bug inside: named after the class whose call it is

    with pytest.raises(ArgumentError, match=r"^Plain\(\) got an unexpected keyword argument 'decay_stepz'"):
        Narrow(0.1)
    with pytest.raises(ArgumentError, match=r"^Narrow\(\) got an unexpected keyword argument 'rat'"):
        Narrow(rat=0.1)


def test_an_own_init_with_a_declared_signature_binds_against_the_declared_one():
    class Declared(ArgumentChecked):
        __signature__ = inspect.Signature([P("learning_rate", P.POSITIONAL_OR_KEYWORD)])

        def __init__(self, *args, **kwargs):
            self.got = (args, kwargs)

    assert Declared(0.1).got == ((0.1,), {})
    with pytest.raises(ArgumentError, match="did you mean 'learning_rate'"):
        Declared(learning_rat=0.1)


def test_checked_init_on_a_dataclass_and_twice():
    @checked_init
    @dataclasses.dataclass(frozen=True)
    class Schedule:
        initial_learning_rate: float
        decay_steps: float = 1.0

    assert checked_init(Schedule) is Schedule  # applying it again wraps nothing twice
    assert Schedule.__init__.__wrapped__.__name__ == "__init__"
    assert not hasattr(Schedule.__init__.__wrapped__, "__wrapped__")
    assert str(inspect.signature(Schedule)) == "(initial_learning_rate: 'float', decay_steps: 'float' = 1.0) -> None"
    assert Schedule(0.1) == Schedule(initial_learning_rate=0.1, decay_steps=1.0)
    assert dataclasses.replace(Schedule(0.1), decay_steps=3.0).decay_steps == 3.0
    with pytest.raises(ArgumentError, match="did you mean 'decay_steps'"):
        Schedule(0.1, decay_step=3)


def test_a_class_without_init_or_signature_is_left_alone():
    class Nothing:
        pass

    assert checked_init(Nothing) is Nothing and "__init__" not in Nothing.__dict__

    class Child(ArgumentChecked):
        pass

    assert "__init__" not in Child.__dict__ and isinstance(Child(), Child)


# ------------------------------------------------------------------------------- configs
def test_config_keys():
    assert check.config_keys("X", {"a": 1}, ["a", "b"]) == {"a": 1}
    with pytest.raises(ValueError, match=r"X config must be a dict from get_config\(\); got \[1\] \(list\)"):
        check.config_keys("X", [1], ["a"])
    with pytest.raises(ValueError) as info:
        check.config_keys("FreezePlan", {"stages": [], "then_evry": 1, "zzz": 2}, ["stages", "then_every"])
    assert str(info.value) == ("FreezePlan config has unknown keys 'then_evry' (did you mean 'then_every'?), 'zzz'; "
                               "the allowed keys are: stages, then_every")
    with pytest.raises(ValueError, match="must have the key 'stages'"):
        check.config_keys("FreezePlan", {}, ["stages"], required=["stages"])
    assert check.did_you_mean("zzz", ["stages"]) == "" and check.did_you_mean(3, ["stages"]) == ""
