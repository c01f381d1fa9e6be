"""hpcallbacks.params: any named hyperparameter driven by any core schedule."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcallbacks.params import ParamSchedule
from hpcallbacks.schedules import Constant, CosineDecay, Cyclic, Join, OneCycle, PiecewiseConstantDecay


@given(st.integers(0, 10_000))
def test_value_is_the_schedule(step):
    schedule = CosineDecay(5e-4, decay_steps=5000)
    p = ParamSchedule("weight_decay", schedule)
    assert p.value(step) == p(step) == schedule(step)


def test_named_hyperparameters():
    momentum = ParamSchedule("momentum", Cyclic(0.85, 0.95, step_size_up=10))
    assert momentum.curve(3, start=9) == pytest.approx([0.94, 0.95, 0.94])
    dropout = ParamSchedule("dropout", PiecewiseConstantDecay([100], [0.5, 0.2]))
    assert (dropout.value(0), dropout.value(101)) == (0.5, 0.2)
    assert ParamSchedule("beta_1", 0.9).value(123) == 0.9
    assert ParamSchedule("model.head.dropout", Constant(0.3)).name == "model.head.dropout"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(name="", schedule=0.9), "name"),
        (dict(name="1st", schedule=0.9), "name"),
        (dict(name="beta 1", schedule=0.9), "name"),
        (dict(name=None, schedule=0.9), "name"),
        (dict(name="momentum", schedule="cosine"), "schedule"),
        (dict(name="momentum", schedule=True), "schedule"),
    ],
)
def test_bad_input_is_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ParamSchedule(**kwargs)


def test_bad_step_is_refused():
    with pytest.raises(ValueError, match="step"):
        ParamSchedule("momentum", 0.9).value(-1)


@pytest.mark.parametrize(
    "value",
    [
        ParamSchedule("momentum", OneCycle(0.95, total_steps=100)),
        ParamSchedule("weight_decay", 5e-4),
        ParamSchedule("noise", Join([Constant(0.1), CosineDecay(0.1, 50)], boundaries=[10])),
    ],
)
def test_config_round_trip(value):
    config = json.loads(json.dumps(value.get_config()))
    assert ParamSchedule.from_config(config) == value
