"""hpcallbacks.norms: GroupNorm group counts and the norm-swap plan."""
from __future__ import annotations

import json

import pytest

from hpcallbacks.norms import PREFERRED_GROUPS, NormDecision, NormSwap, group_norm_groups


def test_groups_divide_channels_for_every_c():
    for c in range(1, 4097):
        g = group_norm_groups(c)
        assert c % g == 0
        assert g == max(p for p in PREFERRED_GROUPS if c % p == 0)


@pytest.mark.parametrize("channels, groups", [(72, 8), (64, 32), (96, 32), (48, 16), (24, 8), (6, 2), (3, 1), (1, 1)])
def test_known_group_counts(channels, groups):
    assert group_norm_groups(channels) == groups


def test_custom_preferred_counts():
    assert group_norm_groups(72, preferred=(36, 24, 8)) == 36
    assert group_norm_groups(72, preferred=[8, 24]) == 24  # the largest, whatever the order


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        ((0,), {}, "channels"),
        ((2.5,), {}, "channels"),
        ((72,), dict(preferred=()), "preferred"),
        ((72,), dict(preferred=(32, 0)), r"preferred\[1\]"),
        ((7,), dict(preferred=(32, 16)), "preferred"),  # nothing divides 7
    ],
)
def test_group_norm_groups_refuses(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        group_norm_groups(*args, **kwargs)


def test_group_swap_decisions_and_skips():
    swap = NormSwap("group", skip=["head", r".*downsample.*", "stem.bn"])
    layers = [("stem.bn", 64), ("layer1.0.bn1", 72), ("layer1.0.downsample.1", 256), ("head", 10),
              ("head.bn", 10), ("header.bn", 24)]
    decisions = swap.plan(layers)
    assert [d.swap for d in decisions] == [False, True, False, False, False, True]
    assert decisions[1] == NormDecision("layer1.0.bn1", 72, True, "group", 8, decisions[1].reason)
    assert decisions[5].groups == 8  # "head" is a prefix of "header.bn" only as text: not skipped
    assert "skip" in decisions[0].reason


def test_a_single_skip_string_is_one_entry():
    assert NormSwap(skip="head").skip == ("head",)
    assert not NormSwap(skip="head").decide("head.bn", 8).swap


def test_fixed_groups_refused_where_they_do_not_divide():
    swap = NormSwap("group", groups=16)
    assert swap.decide("bn", 64).groups == 16
    with pytest.raises(ValueError, match="groups"):
        swap.decide("bn", 72)


@pytest.mark.parametrize("to", ["frozen", "sync"])
def test_frozen_and_sync_swaps(to):
    d = NormSwap(to, skip=["bn0"]).decide("bn1", 72)
    assert (d.swap, d.to, d.groups) == (True, to, None)
    assert not NormSwap(to, skip=["bn0"]).decide("bn0", 72).swap


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(to="layer"), "to"),
        (dict(skip=[""]), r"skip\[0\]"),
        (dict(skip=[3]), r"skip\[0\]"),
        (dict(skip=["bn[0"]), r"skip\[0\]"),
        (dict(groups=0), "groups"),
        (dict(to="frozen", groups=8), "groups"),
        (dict(eps=0.0), "eps"),
    ],
)
def test_norm_swap_refuses(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NormSwap(**kwargs)


def test_decide_refuses_bad_layers():
    with pytest.raises(ValueError, match="channels"):
        NormSwap().decide("bn", 0)
    with pytest.raises(ValueError, match="name"):
        NormSwap().decide(3, 8)


@pytest.mark.parametrize(
    "value", [NormSwap(), NormSwap("group", skip=("head", ".*fc.*"), groups=8, eps=1e-3), NormSwap("sync")]
)
def test_config_round_trip(value):
    config = json.loads(json.dumps(value.get_config()))
    assert NormSwap.from_config(config) == value
