"""Norm-layer swaps (handbook H4, H6): GroupNorm, frozen BatchNorm or synchronised BatchNorm.

Small batches make BatchNorm statistics inaccurate. The remedies of the handbook, as a plan the
adapters apply to the model's BatchNorm layers before training:

* ``to="group"`` — replace BatchNorm by GroupNorm (Wu & He 2018), with :func:`group_norm_groups`
  groups for C channels;
* ``to="frozen"`` — a pretrained BatchNorm with its statistics and affine parameters fixed
  (detectron2's ``FrozenBatchNorm2d``);
* ``to="sync"`` — synchronised BatchNorm: statistics over the whole global batch (several GPUs).

The adapters discover the layers (name, channels); :meth:`NormSwap.decide` says, per layer,
whether to swap and with how many groups.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import _checks as check
from ._values import Value

__all__ = ["group_norm_groups", "NormSwap", "NormDecision", "PREFERRED_GROUPS"]

#: Group counts tried by :func:`group_norm_groups`, largest first (Wu & He 2018 use 32).
PREFERRED_GROUPS: tuple[int, ...] = (32, 16, 8, 4, 2, 1)


def _preferred(preferred: Iterable[int]) -> tuple[int, ...]:
    values = check.sequence("preferred", preferred, min_len=1)
    return tuple(check.positive_int(f"preferred[{i}]", g) for i, g in enumerate(values))


def group_norm_groups(channels: int, preferred: Sequence[int] = PREFERRED_GROUPS) -> int:
    """The GroupNorm group count for ``channels``: the largest of ``preferred`` that divides it.

    GroupNorm needs ``channels % groups == 0``, so ``min(32, channels)`` is wrong (72 channels
    are not divisible into 32 groups). Refuses when no preferred count divides ``channels``
    (include 1 in ``preferred`` to always succeed).

    >>> group_norm_groups(64), group_norm_groups(72), group_norm_groups(24), group_norm_groups(3)
    (32, 8, 8, 1)
    """
    channels = check.positive_int("channels", channels)
    dividing = [g for g in _preferred(preferred) if channels % g == 0]
    if not dividing:
        raise ValueError(
            f"preferred must contain a divisor of channels={channels}; got {list(preferred)!r} (add 1 to always match)"
        )
    return max(dividing)


@dataclass(frozen=True)
class NormDecision:
    """What :meth:`NormSwap.decide` says for one layer: ``swap`` to ``to`` with ``groups`` groups."""

    name: str
    channels: int
    swap: bool
    to: str
    groups: int | None
    reason: str


_TARGETS = ("group", "frozen", "sync")


@dataclass(frozen=True)
class NormSwap(Value):
    """The plan of a norm swap: which BatchNorm layers become ``to``, and with what settings.

    * ``to``: ``"group"`` (GroupNorm), ``"frozen"`` (fixed statistics and affine parameters) or
      ``"sync"`` (synchronised BatchNorm).
    * ``skip``: layers left alone. An entry matches a layer name when it is the name, a dotted
      prefix of it (``"backbone.layer1"`` skips ``"backbone.layer1.0.bn1"``) or a regular
      expression matching the whole name (``r".*downsample.*"``); a single string is one entry.
    * ``groups`` (``to="group"`` only): a fixed group count, refused for a layer whose channels
      it does not divide; ``None`` picks :func:`group_norm_groups` per layer.
    * ``eps``: the new layer's epsilon; ``None`` keeps the replaced layer's own.

    >>> swap = NormSwap("group", skip=["head"])
    >>> d = swap.decide("backbone.bn1", 72)
    >>> d.swap, d.groups
    (True, 8)
    >>> swap.decide("head.bn", 64).swap
    False
    """

    to: str = "group"
    skip: Sequence[str] = ()
    groups: int | None = None
    eps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "to", check.choice("to", self.to, _TARGETS))
        skip = (self.skip,) if isinstance(self.skip, str) else check.sequence("skip", self.skip)
        for i, entry in enumerate(skip):
            if not isinstance(entry, str) or not entry:
                raise ValueError(f"skip[{i}] must be a layer name, prefix or regular expression; got {entry!r}")
            try:
                re.compile(entry)
            except re.error as error:
                raise ValueError(f"skip[{i}] must be a valid regular expression; got {entry!r} ({error})") from None
        object.__setattr__(self, "skip", skip)
        if self.groups is not None:
            if self.to != "group":
                raise ValueError(f"groups applies only to to='group'; got groups={self.groups!r} with to={self.to!r}")
            object.__setattr__(self, "groups", check.positive_int("groups", self.groups))
        if self.eps is not None:
            object.__setattr__(self, "eps", check.positive("eps", self.eps))

    def skips(self, name: str) -> str | None:
        """The ``skip`` entry that matches ``name``, or None."""
        for entry in self.skip:
            if name == entry or name.startswith(entry + ".") or re.fullmatch(entry, name):
                return entry
        return None

    def decide(self, name: str, channels: int) -> NormDecision:
        """Whether the norm layer ``name`` with ``channels`` channels is swapped, and how."""
        if not isinstance(name, str):
            raise ValueError(f"name must be a layer name (str); got {name!r}")
        channels = check.positive_int("channels", channels)
        entry = self.skips(name)
        if entry is not None:
            return NormDecision(name, channels, False, self.to, None, f"skipped: matches skip entry {entry!r}")
        if self.to != "group":
            return NormDecision(name, channels, True, self.to, None, f"swapped to {self.to}")
        if self.groups is None:
            groups = group_norm_groups(channels)
            why = f"GroupNorm with {groups} groups: the largest of {PREFERRED_GROUPS} dividing {channels}"
            return NormDecision(name, channels, True, "group", groups, why)
        if channels % self.groups:
            raise ValueError(
                f"groups must divide the channels of every swapped layer; got groups={self.groups} for layer "
                f"{name!r} with {channels} channels (use groups=None, or skip the layer)"
            )
        return NormDecision(name, channels, True, "group", self.groups, f"GroupNorm with {self.groups} groups")

    def plan(self, layers: Iterable[tuple[str, int]]) -> list[NormDecision]:
        """:meth:`decide` for every ``(name, channels)`` pair, in order."""
        return [self.decide(name, channels) for name, channels in layers]
