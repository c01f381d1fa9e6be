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
