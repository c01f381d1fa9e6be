"""FreezePlan, LRFactors and the H5 recommendation: properties, cells, bad input, pictures."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcallbacks import FreezePlan, LRFactors, Stage, fine_tune_learning_rate
from hpcallbacks import schedules as S
from hpcallbacks.plans import DEFAULT_LARGE_DATASET

factors = st.one_of(
    st.just(LRFactors.uniform()),
    st.builds(LRFactors.geometric, st.floats(1.0, 10.0)),
    st.builds(LRFactors.layer_decay, st.floats(0.05, 1.0)),
    st.builds(lambda lo, r: LRFactors.spread(lo, lo * r), st.floats(1e-6, 1.0), st.floats(1.0, 1e3)),
)

plans = st.one_of(
    st.builds(FreezePlan.head_only, head_groups=st.integers(1, 2), factors=factors),
    st.builds(FreezePlan.head_then_all, head_epochs=st.floats(0.1, 5), factors=factors),
    st.builds(FreezePlan.gradual, every_epochs=st.floats(0.1, 3), groups_per_stage=st.integers(1, 3), factors=factors),
    st.builds(FreezePlan.head_then_top_fraction, head_epochs=st.floats(0.1, 5), fraction=st.floats(0.01, 1.0),
              factors=factors),
    st.builds(FreezePlan.all_trainable, factors=factors),
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(plans, st.integers(2, 40), st.integers(1, 200))
def test_plans_unfreeze_top_down_and_hit_each_boundary_once(plan, num_groups, steps_per_epoch):
    r = plan.resolve(num_groups, steps_per_epoch)
    assert r.starts[0] == 0 and list(r.starts) == sorted(set(r.starts))
    for mask in r.masks:
        # never a trainable group below a frozen one (count-from-top stages)
        first = mask.index(True)
        assert all(mask[first:]), mask
    for a, b in zip(r.masks, r.masks[1:]):
        assert all(y or not x for x, y in zip(a, b)), "a stage froze a group again"
        assert a != b
    # walking the updates crosses each boundary exactly once
    changes = [t for t in range(1, r.starts[-1] + 2) if r.stage_at(t) != r.stage_at(t - 1)]
    assert changes == list(r.starts[1:])
    assert all(f > 0 for f in r.factors) and r.factors[-1] == 1.0
    again = FreezePlan.from_config(json.loads(json.dumps(plan.get_config())))
    assert again.resolve(num_groups, steps_per_epoch) == r


def test_gradual_is_ulmfit():
    r = FreezePlan.gradual(every_epochs=1, factors=LRFactors.geometric(2.6)).resolve(4, steps_per_epoch=5)
    assert r.starts == (0, 5, 10, 15)
    assert r.masks[0] == (False, False, False, True) and r.masks[-1] == (True,) * 4
    assert r.factors == pytest.approx((2.6**-3, 2.6**-2, 2.6**-1, 1.0))


def test_factor_families_are_each_expressible():
    assert LRFactors.layer_decay(0.5).resolve(3) == (0.25, 0.5, 1.0)  # timm: decay ** depth
    assert LRFactors.geometric(2.0).resolve(3) == (0.25, 0.5, 1.0)  # ULMFiT: / 2.6 per group
    lo, hi = 1e-5, 1e-3  # fastai slice(lo, hi): bottom at lo, top at hi, log-even between
    lrs = [hi * f for f in LRFactors.spread(lo, hi).resolve(3)]
    assert lrs == pytest.approx([1e-5, 1e-4, 1e-3])
    assert LRFactors.explicit([1, 2, 4]).resolve(3) == (0.25, 0.5, 1.0)


def test_explicit_stages_by_update_and_by_index():
    plan = FreezePlan(stages=[(0, [2]), (3, [0, 2])], unit="update")
    r = plan.resolve(3)
    assert r.trainable_at(2) == (False, False, True) and r.trainable_at(3) == (True, False, True)


def test_fine_tune_learning_rate_is_one_to_two_orders_below():
    assert fine_tune_learning_rate(0.1, orders=2) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="orders"):
        fine_tune_learning_rate(0.1, orders=3)


# ----------------------------------------------------------------------------- H5 table
def test_recommend_small_similar_trains_only_the_head():
    rec = FreezePlan.recommend(500, similar=True)
    assert rec.cell == "small/similar" and rec.pretrained
    assert rec.plan.resolve(6, 10).masks == ((False,) * 5 + (True,),)


def test_recommend_small_different_is_head_then_top_half():
    rec = FreezePlan.recommend(1797, similar=False)
    r = rec.plan.resolve(6, 10)
    assert rec.cell == "small/different"
    assert r.masks == ((False,) * 5 + (True,), (False,) * 3 + (True,) * 3)


def test_recommend_large_similar_unfreezes_all_with_a_small_lr():
    rec = FreezePlan.recommend(50_000, similar=True)
    assert rec.cell == "large/similar" and rec.lr_scale == 0.1
    r = rec.plan.resolve(4, 10)
    assert r.masks == ((True,) * 4,) and r.factors[0] < r.factors[-1]


def test_recommend_large_different_trains_from_scratch():
    rec = FreezePlan.recommend(50_000, similar=False)
    assert rec.cell == "large/different" and not rec.pretrained
    assert "scratch" in rec.explanation


def test_recommend_threshold_is_the_users_to_set():
    assert FreezePlan.recommend(DEFAULT_LARGE_DATASET, similar=True).cell == "large/similar"
    assert FreezePlan.recommend(DEFAULT_LARGE_DATASET, similar=True, large_threshold=10**6).cell == "small/similar"


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make,argument", [
    (lambda: FreezePlan(stages=[]), "stages"),
    (lambda: FreezePlan(stages=[(1, 1)]), "start"),
    (lambda: FreezePlan(stages=[(0, 1), (0, 2)]), "stage starts"),
    (lambda: FreezePlan(stages=[(0, 2), (2, 1)]).resolve(3, 1), "freeze groups again"),
    (lambda: FreezePlan(stages=[(-1, 1)]), "start"),
    (lambda: FreezePlan(stages=[(0, 0)]), "trainable"),
    (lambda: FreezePlan(stages=[(0, 1.5)]), "trainable"),
    (lambda: FreezePlan(stages=[(0, [])]), "trainable"),
    (lambda: FreezePlan(unit="batch"), "unit"),
    (lambda: FreezePlan(bn="frozen"), "bn"),
    (lambda: FreezePlan(factors=2.6), "factors"),
    (lambda: FreezePlan.gradual(every_epochs=0), "every_epochs"),
    (lambda: FreezePlan.gradual(groups_per_stage=0), "groups_per_stage"),
    (lambda: FreezePlan.head_then_all(head_epochs=-1), "head_epochs"),
    (lambda: FreezePlan.head_only(head_groups=0), "head_groups"),
    (lambda: FreezePlan.head_then_top_fraction(fraction=0.0), "fraction"),
    (lambda: FreezePlan.head_then_top_fraction(fraction=1.5), "fraction"),
    (lambda: FreezePlan.recommend(-5, similar=True), "num_samples"),
    (lambda: FreezePlan.recommend(100, similar="yes"), "similar"),
    (lambda: FreezePlan.recommend(100, similar=True, large_threshold=0), "large_threshold"),
    (lambda: FreezePlan.head_only().resolve(0, 10), "num_groups"),
    (lambda: FreezePlan.head_only().resolve(3), "steps_per_epoch"),
    (lambda: FreezePlan.head_only(head_groups=4).resolve(3, 10), "top 4 groups"),
    (lambda: FreezePlan(stages=[(0, [5])]).resolve(3, 10), "group index 5"),
    (lambda: LRFactors.geometric(0.5), "decay"),
    (lambda: LRFactors.layer_decay(0), "layer_decay"),
    (lambda: LRFactors.spread(1e-2, 1e-3), "lo"),
    (lambda: LRFactors.explicit([1, -1]), "factors"),
    (lambda: LRFactors.explicit([1, 2]).resolve(3), "factors"),
    (lambda: Stage(start=float("nan"), trainable=1), "start"),
])
def test_bad_input_names_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


# ---------------------------------------------------------------------------- pictures
def test_plan_picture_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from hpcallbacks.plot import plot_plan, plot_schedule

    out = plot_plan(S.CosineRestart(0.01, 50), FreezePlan.gradual(factors=LRFactors.geometric()), 5, 50, 6,
                    tmp_path / "plan.png", group_names=[f"block{i}" for i in range(4)] + ["head"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    out = plot_schedule(S.OneCycle(0.1, 300), 300, tmp_path / "lr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_factors_parse_is_the_one_reading_of_factors():
    from hpcallbacks.plans import LRFactors as F

    assert F.parse(2.6) == F.geometric(2.6) and F.parse(1) == F.geometric(1.0)
    assert F.parse(0.75) == F.layer_decay(0.75)
    assert F.parse([1.0, 2.0]) == F.explicit([1.0, 2.0]) and F.parse((3, 1)) == F.explicit((3, 1))
    spread = F.spread(1e-5, 1e-3)
    assert F.parse(spread) is spread and F.parse(spread.get_config()) == spread
    for bad in (0, -1.0, float("nan"), float("inf"), True, "fast", None, {1, 2}):
        with pytest.raises(ValueError, match="factors"):
            F.parse(bad)
    with pytest.raises(ValueError, match=r"factors\[1\]"):
        F.parse([1.0, 0.0])


# ------------------------------------------------------------------------------- configs
PLANS_FOR_CONFIG = [
    FreezePlan.gradual(every_epochs=2, groups_per_stage=2, factors=LRFactors.geometric(2.6)),
    FreezePlan(stages=[(0, [2]), (3, [0, 2])], unit="update", bn="train", factors=LRFactors.explicit([1, 2, 4])),
    FreezePlan.head_then_top_fraction(head_epochs=1.5, fraction=0.25, factors=LRFactors.spread(1e-5, 1e-3)),
    FreezePlan.all_trainable(factors=LRFactors.layer_decay(0.75), bn="freeze_all"),
    FreezePlan(),
]


@pytest.mark.parametrize("plan", PLANS_FOR_CONFIG, ids=range(len(PLANS_FOR_CONFIG)))
def test_config_round_trip_is_identical(plan):
    config = plan.get_config()
    again = FreezePlan.from_config(json.loads(json.dumps(config)))
    assert again == plan and again.get_config() == config
    assert FreezePlan.from_config(config) == plan
    assert LRFactors.from_config(plan.factors.get_config()) == plan.factors


def test_a_misspelt_config_key_is_refused_not_ignored():
    # the task's example: "then_evry" used to turn a gradual plan into head-only silently
    with pytest.raises(ValueError) as info:
        FreezePlan.from_config({"stages": [[0, 1]], "then_evry": 1})
    message = str(info.value)
    assert "'then_evry'" in message and "did you mean 'then_every'?" in message, message
    for key in ("stages", "unit", "bn", "factors", "then_every", "then_add"):
        assert key in message, message
    with pytest.raises(ValueError, match="did you mean 'kind'"):
        LRFactors.from_config({"knid": "geometric", "value": 2.6})
    with pytest.raises(ValueError, match=r"did you mean 'value'"):
        FreezePlan.from_config({"stages": [[0, 1]], "factors": {"kind": "geometric", "valeu": 2.6}})
    with pytest.raises(ValueError, match=r"unknown keys 'bogus', 'then_ad' \(did you mean 'then_add'\?\)"):
        FreezePlan.from_config({"stages": [[0, 1]], "bogus": 1, "then_ad": 2})


@pytest.mark.parametrize("config", [None, [[0, 1]], "gradual", 3])
def test_a_config_that_is_no_dict_is_refused(config):
    with pytest.raises(ValueError, match="config must be a dict"):
        FreezePlan.from_config(config)
    with pytest.raises(ValueError, match="config must be a dict"):
        LRFactors.from_config(config)


def test_a_config_without_stages_or_with_bad_stages_is_refused():
    with pytest.raises(ValueError, match="'stages'"):
        FreezePlan.from_config({"unit": "epoch"})
    with pytest.raises(ValueError, match=r"stages\[0\] must be a \[start, trainable\] pair"):
        FreezePlan.from_config({"stages": [[0, 1, 2]]})
    with pytest.raises(ValueError, match="stages"):
        FreezePlan.from_config({"stages": []})


def test_constructors_name_a_misspelt_argument():
    from hpcallbacks import ArgumentError

    with pytest.raises(ArgumentError, match="did you mean 'then_every'"):
        FreezePlan(stages=[(0, 1)], then_evry=1)
    with pytest.raises(ValueError, match="did you mean 'trainable'"):
        Stage(0, trainabel=1)
    with pytest.raises(TypeError, match="did you mean 'kind'"):
        LRFactors(knid="geometric")
