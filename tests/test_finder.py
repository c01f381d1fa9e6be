"""The core learning-rate range test (hpcallbacks.finder): ramp, smoothing, stop rule, suggestion."""
from __future__ import annotations

import math

import pytest

from hpcallbacks import finder as F


def test_exponential_ramp_has_equal_ratios_and_exact_ends():
    r = F.lr_range(1e-6, 1.0, num_steps=7)
    lrs = r.learning_rates
    assert lrs[0] == 1e-6 and lrs[-1] == 1.0 and len(lrs) == 7
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([10.0] * 6)
    assert r(100) == 1.0  # held after the end
    assert F.LRRange.from_config(r.get_config()) == r


def test_linear_ramp():
    r = F.lr_range(0.1, 1.0, num_steps=10, mode="linear")
    assert r.curve(10) == pytest.approx([0.1 * (k + 1) for k in range(10)])


@pytest.mark.parametrize("kwargs, message", [
    ({"min_lr": 0}, "min_lr must be"),
    ({"min_lr": 1.0, "max_lr": 0.5}, "max_lr must be"),
    ({"num_steps": 1}, "num_steps must be"),
    ({"mode": "log"}, "mode must be one of"),
])
def test_bad_ranges_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.lr_range(**kwargs)


def test_smoothing_is_debiased():
    assert F.smooth([2.0] * 5, beta=0.98) == pytest.approx([2.0] * 5)
    assert F.smooth([1.0, 3.0], beta=0.0) == [1.0, 3.0]
    with pytest.raises(ValueError, match="beta must be"):
        F.smooth([1.0], beta=1.0)


def test_stop_rule():
    assert F.diverged(4.1, 1.0) and not F.diverged(3.9, 1.0)
    assert F.diverged(math.inf, 1.0) and F.diverged(math.nan, 1.0)
    assert F.diverged(-0.5, -2.0, divergence=1.5) and not F.diverged(-1.5, -2.0, divergence=1.5)
    with pytest.raises(ValueError, match="divergence must be"):
        F.diverged(1.0, 1.0, divergence=1.0)


def curve(lrs):
    """A range-test-like loss: flat, falls fastest at lr = 1e-3 (on a log axis), bottoms out near 5e-3, explodes."""
    return [1.0 / (1.0 + (lr / 1e-3) ** 2) + (lr / 0.05) ** 2 for lr in lrs]


def test_suggestions_on_a_bowl():
    lrs = F.lr_range(1e-6, 10.0, num_steps=71).learning_rates
    losses = curve(lrs)
    steep = F.suggest(lrs, losses, beta=0.0)
    assert steep.learning_rate == pytest.approx(1e-3, rel=1e-9)
    low = F.suggest(lrs, losses, method="min_loss", beta=0.0)
    best = min(range(len(lrs)), key=losses.__getitem__)
    assert low.learning_rate == pytest.approx(lrs[best] / 10) and 3e-3 < lrs[best] < 1e-2
    smoothed = F.suggest(lrs, losses)  # smoothing delays the curve: later, still below the minimum
    assert 1e-3 <= smoothed.learning_rate < lrs[best]


@pytest.mark.parametrize("lrs, losses, message", [
    ([1e-3, 1e-2], [1.0, 0.5], "at least 3 points"),
    ([1e-3, 1e-2, 1e-1], [1.0, 0.5], "same length"),
    ([1e-3, 1e-3, 1e-1], [1.0, 0.5, 0.4], "must increase"),
    ([1e-3, 1e-2, 1e-1], [1.0, math.nan, math.nan], "finite"),
])
def test_bad_curves_are_refused(lrs, losses, message):
    with pytest.raises(ValueError, match=message):
        F.suggest(lrs, losses)
    with pytest.raises(ValueError, match="method must be one of"):
        F.suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5, 0.4], method="valley")


def test_a_short_test_skips_less():
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    s = F.suggest(lrs, [1.0, 0.9, 0.2, 0.1], beta=0.0)  # default skips (10, 5) do not fit in 4 points
    assert s.index in (1, 2)


def test_range_test_on_gradient_descent_of_a_quadratic():
    """f(w) = a w^2 / 2 converges for lr < 2 / a and diverges above: the test stops past it and suggests below."""
    a = 4.0
    test = F.RangeTest(F.lr_range(1e-4, 10.0, num_steps=100), beta=0.9)
    w, steps = 1.0, 0
    for t in range(test.num_steps):
        w -= test.lr(t) * a * w
        steps += 1
        if test.record(0.5 * a * w * w):
            break
    result = test.result()
    assert result.stopped_early and steps < 100 and test.lr(steps - 1) > 2 / a
    assert 1e-3 < result.suggestion.learning_rate < 2 / a
    assert len(result.losses) == len(result.learning_rates) == steps
    assert F.RangeResult.from_config(result.get_config()) == result


def test_range_test_stops_on_a_non_finite_loss_and_reports_why_it_cannot_suggest():
    test = F.RangeTest(F.lr_range(1e-3, 1.0, num_steps=10))
    assert not test.record(1.0)
    assert test.record(math.nan)
    result = test.result()
    assert result.suggestion is None and "at least 3 points" in result.error
    with pytest.raises(ValueError, match="range must be an LRRange"):
        F.RangeTest(range=0.1)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    lrs = F.lr_range(1e-6, 10.0, num_steps=40).learning_rates
    losses = curve(lrs)
    result = F.RangeResult(tuple(lrs), tuple(losses), F.suggest(lrs, losses))
    path = F.plot_range_test(result, tmp_path / "range.png")
    assert path.exists() and path.stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# a test cut short: the rule every adapter's LRFinder warns by
def assert_warned_once_cut_short(caught, result, points=13, planned=30, at="0.0117"):
    """What each adapter's test of a range test cut short by a nan loss (apply=True) checks, with ``caught``
    the warnings of the run (tests/test_lightning_extras.py, tests/test_hf_extras.py, tests/keras_cases.py)."""
    from hpcallbacks.advice import HyperparameterWarning

    ours = [str(w.message) for w in caught if issubclass(w.category, HyperparameterWarning)]
    assert ours == [F.partial_curve_warning(result, applied=True)]  # once, the core's text
    assert ours[0].startswith(f"LRFinder: the range test stopped after {points} of {planned} points (the loss became "
                              f"nan at lr={at})")
    assert result.cut_short and result.stop_reason == "not_finite" and result.num_points == points


def run_test(losses, num_steps=30, **kwargs):
    test = F.RangeTest(F.lr_range(1e-4, 1.0, num_steps=num_steps), **kwargs)
    for loss in losses:
        if test.record(loss):
            break
    return test.result()


def test_min_points_is_what_the_rule_wants_unshrunk():
    assert F.min_points() == 18 and F.min_points("steepest", 2, 1) == 6 and F.min_points("min_loss", 10, 5) == 3
    with pytest.raises(ValueError, match="method must be one of"):
        F.min_points("valley")


def test_the_classic_divergence_stop_is_the_normal_end_and_not_cut_short():
    losses = [1.0 - 0.03 * k for k in range(25)] + [50.0]  # falls, then blows up after enough points
    result = run_test(losses, beta=0.0)
    assert result.stopped_early and result.stop_reason == "diverged" and result.num_points == 26
    assert result.planned_steps == 30 and result.needed_points == 18
    assert not result.cut_short and result.suggestion is not None
    assert F.partial_curve_warning(result) is None


def test_a_nan_loss_cuts_the_test_short_and_the_warning_says_where_and_what_to_change():
    result = run_test([1.0, 0.9, 0.7, 0.5, 0.4, math.nan], beta=0.0, skip_start=1, skip_end=1)
    assert result.stopped_early and result.stop_reason == "not_finite" and result.cut_short
    assert result.num_points == 6 and result.planned_steps == 30 and result.suggestion is not None
    message = F.partial_curve_warning(result)
    lr = result.learning_rates[-1]
    assert message.startswith(f"LRFinder: the range test stopped after 6 of 30 points (the loss became nan at "
                              f"lr={lr:.3g}); the suggestion {result.suggestion.learning_rate:.3g} is from a "
                              f"partial curve: lower max_lr to {lr / 10:.3g} or below")
    assert "raise num_steps" in message and "applied" not in message
    assert "is applied all the same" in F.partial_curve_warning(result, applied=True)
    late = run_test([1.0 - 0.03 * k for k in range(25)] + [math.inf], beta=0.0)  # a nan/inf warns however late
    assert late.cut_short and "the loss became inf" in F.partial_curve_warning(late)


def test_a_divergence_before_the_rule_has_its_points_is_cut_short():
    losses = [1.0, 0.8, 0.6, 0.5, 0.4, 40.0]
    result = run_test(losses, beta=0.0)  # steepest, skips 10 + 5: wants 18 points
    assert result.stop_reason == "diverged" and result.num_points == 6 and result.cut_short
    message = F.partial_curve_warning(result)
    assert "stopped after 6 of 30 points (the smoothed loss diverged at lr=" in message
    assert "'steepest' rule's 18 points" in message and "lower skip_start / skip_end" in message
    assert not run_test(losses, beta=0.0, method="min_loss").cut_short  # min_loss wants 3 points
    assert not run_test(losses, beta=0.0, skip_start=1, skip_end=1).cut_short  # wants 5


def test_a_test_that_ran_all_its_points_is_never_cut_short():
    result = run_test([1.0, 0.9, 0.5, 0.3, 0.2, 0.15], num_steps=6, beta=0.0)
    assert not result.stopped_early and result.stop_reason is None and not result.cut_short
    assert F.partial_curve_warning(result) is None


def test_no_suggestion_means_no_partial_curve_warning():
    result = run_test([1.0, math.nan])
    assert result.cut_short and result.suggestion is None and F.partial_curve_warning(result) is None


def test_the_result_keeps_the_stop_through_its_config_and_reads_older_configs():
    result = run_test([1.0, 0.9, 0.7, 0.5, 0.4, math.nan], beta=0.0)
    again = F.RangeResult.from_config(result.get_config())
    assert again.stop_reason == "not_finite" and again.planned_steps == 30 and again.needed_points == 18
    assert again.cut_short
    old = {k: v for k, v in result.get_config().items() if k not in ("planned_steps", "stop_reason", "needed_points")}
    older = F.RangeResult.from_config(old)  # saved before the fields existed: the reason is read off the losses
    assert older.stop_reason == "not_finite" and older.planned_steps is None and older.cut_short
    assert "stopped after 6 points" in F.partial_curve_warning(older)


class Finder(F.FinderBase):
    def __init__(self, apply=False):
        self._init_finder(1e-4, 1.0, 30, "exponential", "steepest", 0.0, 4.0, 10, 5, None)
        self.apply = apply


def test_finder_base_warns_a_cut_short_test_once_and_still_applies_it():
    from hpcallbacks.advice import HyperparameterWarning

    finder = Finder(apply=True)
    test = finder._new_test()
    for loss in [1.0, 0.9, 0.7, 0.5, 0.4, math.nan]:
        if test.record(loss):
            break
    with pytest.warns(HyperparameterWarning, match="stopped after 6 of 30 points") as caught:
        lr = finder._finish(test.result())
    assert len(caught) == 1 and lr == finder.suggestion is not None and finder.result.cut_short
    assert finder.get_config() == {"min_lr": 1e-4, "max_lr": 1.0, "num_steps": 30, "mode": "exponential",
                                   "beta": 0.0, "divergence": 4.0, "method": "steepest", "skip_start": 10,
                                   "skip_end": 5, "plot": None, "apply": True}


def test_finder_base_is_quiet_on_a_classic_stop_and_warns_when_there_is_no_suggestion():
    finder = Finder()
    test = finder._new_test()
    for loss in [1.0 - 0.03 * k for k in range(25)] + [50.0]:
        if test.record(loss):
            break
    assert finder._finish(test.result()) is None and finder.suggestion is not None  # apply=False: nothing to apply
    with pytest.warns(UserWarning, match="LRFinder: no suggestion"):
        assert Finder(apply=True)._finish(run_test([math.nan])) is None
    with pytest.raises(ValueError, match="plot must be None or a file path"):
        Finder()._init_finder(1e-4, 1.0, 30, "exponential", "steepest", 0.0, 4.0, 10, 5, 3)
