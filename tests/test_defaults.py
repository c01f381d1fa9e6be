"""The one rule for callback defaults that every adapter applies."""
from __future__ import annotations

import pytest

from hpcallbacks import defaults as D
from hpcallbacks import schedules as S

RUN = D.RunFacts(learning_rate=0.1, steps_per_epoch=50, total_steps=500)


def test_every_schedule_family_has_a_rule():
    assert set(D.FAMILIES) == set(S.SCHEDULES) - {"Join"}


@pytest.mark.parametrize("family", sorted(set(D.FAMILIES) - {"PiecewiseConstantDecay", "MultiStepDecay"}))
def test_no_argument_builds_from_the_run(family):
    s = D.build(family, {}, RUN)
    assert isinstance(s, S.SCHEDULES[family])
    assert 0.0 <= s(0) <= 0.1 * (1 + 1e-3) + 1e-12  # LinearCosineDecay adds beta


def test_the_defaults_mean_what_the_docs_say():
    assert D.build("CosineRestart", {}, RUN) == S.CosineRestart(0.1, 50)
    assert D.build("CosineDecay", {"warmup_steps": 100, "warmup_target": 0.2}, RUN).decay_steps == 400
    assert D.build("ExponentialDecay", {}, RUN)(500) == pytest.approx(0.01)
    assert D.build("InverseTimeDecay", {}, RUN)(100) == pytest.approx(0.1 / 3)
    assert D.build("OneCycle", {"max_lr": 1.0}, RUN) == S.OneCycle(1.0, 500)
    assert D.build("Cyclic", {"max_lr": 1.0}, RUN).base_lr == 0.1
    wsd = D.build("WarmupStableDecay", {}, RUN)
    assert (wsd.warmup_steps, wsd.stable_steps, wsd.decay_steps) == (50, 400, 50)
    assert D.build("Warmup", {"schedule": S.Constant(1.0)}, RUN)(50) == 1.0


def test_missing_run_facts_and_bad_arguments_are_refused():
    unknown = D.RunFacts(0.1, None, None)
    with pytest.raises(ValueError, match="first_decay_steps"):
        D.build("CosineRestart", {}, unknown)
    with pytest.raises(ValueError, match="total_steps"):
        D.build("OneCycle", {}, unknown)
    with pytest.raises(ValueError, match="boundaries"):
        D.build("PiecewiseConstantDecay", {}, RUN)
    with pytest.raises(ValueError, match="t_mul"):
        D.check("CosineRestart", {"t_mul": 0.5})
    with pytest.raises(ValueError, match="unknown argument"):
        D.check("CosineRestart", {"first_decay_step": 5})
    with pytest.raises(ValueError, match="family"):
        D.build("Cosine", {}, RUN)
    assert "updates per epoch" in D.describe("CosineRestart")
