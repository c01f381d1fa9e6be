"""The core's GAN schedules (handbook H7) applied to torch tensors, without host-device syncs.

Each helper takes the core value (:class:`hpcallbacks.InstanceNoise`, :class:`hpcallbacks.LabelSmoothing`,
:class:`hpcallbacks.LabelFlip`) and the discriminator's update count ``step`` (a Python int the
caller keeps on the host): the numbers come from the core rule on the host, only the
elementwise arithmetic runs on the device. Nothing reads a tensor's value back.

* :func:`add_instance_noise` — ``x + N(0, std(step)^2)`` (torch's RNG, the core's std);
* :func:`smooth_labels` — ``y * real_t + (1 - y) * fake_t``;
* :func:`flip_labels` — ``1 - y`` for the samples the core's ``flip_uniform(seed, step, index)``
  picks: the decisions are computed on the host from ``(seed, step, index)`` (the batch size
  is the tensor's shape, host metadata), so every framework and a resumed run flip the same
  samples;
* :func:`gan_targets` — flip, then smooth (the core's order).

:class:`InstanceNoiseValues`, :class:`LabelSmoothingValues`, :class:`LabelFlipValues`: what the
torch adapters' GAN callbacks share (the values at the callback's current update ``step`` and
the tensor calls); each adapter adds how ``step``, the micro-batch and the rank are counted.
"""
from __future__ import annotations

from typing import Any

import torch

from hpcallbacks.gan import InstanceNoise, LabelFlip, LabelSmoothing, flip_uniform

__all__ = ["add_instance_noise", "smooth_labels", "flip_mask", "flip_labels", "gan_targets", "GanValues",
           "InstanceNoiseValues", "LabelSmoothingValues", "LabelFlipValues"]


def _check(value: object, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a hpcallbacks.{kind.__name__}; got {value!r}")


def add_instance_noise(x: torch.Tensor, noise: InstanceNoise | float, step: int = 0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` plus Gaussian noise of standard deviation ``noise.std(step)`` (a number: that std).

    Returns ``x`` itself when the std is 0 (annealed away: no RNG draw, no extra kernel).
    """
    std = noise.std(step) if isinstance(noise, InstanceNoise) else float(noise)
    if std < 0:
        raise ValueError(f"noise std must be >= 0; got {std!r}")
    if std == 0.0:
        return x
    if generator is None:
        return x + torch.randn_like(x) * std
    return x + torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * std


def smooth_labels(labels: torch.Tensor, smoothing: LabelSmoothing, step: int) -> torch.Tensor:
    """``labels * real_t + (1 - labels) * fake_t`` with the core's targets at ``step`` (labels in [0, 1])."""
    _check(smoothing, LabelSmoothing, "smoothing")
    real, fake = smoothing.real_target(step), smoothing.fake_target(step)
    if real == 1.0 and fake == 0.0:
        return labels
    return labels * (real - fake) + fake


def flip_mask(flip: LabelFlip, step: int, n: int, device: torch.device | str | None = None,
              offset: int = 0) -> torch.Tensor | None:
    """The bool mask of the ``n`` samples flipped at ``step`` (sample ``i`` has core index ``offset + i``).

    ``None`` when nothing can flip (probability 0). Computed on the host and copied to
    ``device``: the same decisions as ``flip.flips(step, offset + n)[offset:]``.
    """
    _check(flip, LabelFlip, "flip")
    p = flip.probability(step)
    if p <= 0.0 or n == 0:
        return None
    if offset == 0:
        decisions = flip.flips(step, n)
    else:
        decisions = [flip_uniform(flip.seed, step, offset + i) < p for i in range(n)]
    return torch.tensor(decisions, dtype=torch.bool, device=device)


def flip_labels(labels: torch.Tensor, flip: LabelFlip, step: int, offset: int = 0) -> torch.Tensor:
    """``labels`` with the samples the core picks at ``step`` replaced by ``1 - y`` (first dim = samples)."""
    n = labels.shape[0] if labels.ndim else 1
    mask = flip_mask(flip, step, n, labels.device, offset)
    if mask is None:
        return labels
    if labels.ndim > 1:
        mask = mask.reshape((n,) + (1,) * (labels.ndim - 1))
    return torch.where(mask, 1.0 - labels, labels)


def gan_targets(labels: torch.Tensor, step: int, smoothing: LabelSmoothing | None = None,
                flip: LabelFlip | None = None, offset: int = 0) -> torch.Tensor:
    """The discriminator's targets: flipped (``flip``), then smoothed (``smoothing``), as in the core."""
    out = labels
    if flip is not None:
        out = flip_labels(out, flip, step, offset)
    if smoothing is not None:
        out = smooth_labels(out, smoothing, step)
    return out


class GanValues:
    """The update count ``step`` a GAN callback's values are for, and where its micro-batch's samples start.

    The adapter keeps ``step`` (the discriminator update), ``_micro`` (the micro-batch's place in
    its update), ``_rank`` and ``_world`` current, and starts counting in ``_init_count(optimizer)``
    (``optimizer``: the index of the discriminator's optimizer, or None); sample ``i`` of an
    ``n``-sample micro-batch has index ``(_micro * _world + _rank) * n + i``.
    """

    #: What the adapter logs, if anything: (log name, attribute holding the current value).
    _LOG: tuple[str, str] | None = None
    step: int = 0
    _micro: int = 0
    _rank: int = 0
    _world: int = 1

    def _init_count(self, optimizer: int | None) -> None:  # pragma: no cover - each adapter's own
        raise NotImplementedError

    def _offset(self, n: int) -> int:
        return (self._micro * self._world + self._rank) * n


class InstanceNoiseValues(GanValues):
    """Instance noise on the discriminator's inputs (handbook H7), a core :class:`hpcallbacks.InstanceNoise`.

    ``schedule``: any core schedule or a number (the std), or an ``hpcallbacks.InstanceNoise``.
    ``.std`` is the standard deviation at the current update, ``.apply(x)`` returns
    ``x + N(0, std^2)`` (``x`` itself once the std is 0)."""

    _LOG = ("instance_noise_std", "std")

    def _init_values(self, schedule: Any) -> None:
        self.noise = schedule if isinstance(schedule, InstanceNoise) else InstanceNoise(schedule)

    @property
    def std(self) -> float:
        """The noise standard deviation at the current update."""
        return self.noise.std(self.step)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` plus the current update's instance noise."""
        return add_instance_noise(x, self.noise, self.step, generator)


class LabelSmoothingValues(GanValues):
    """Discriminator label smoothing (handbook H7) by a core :class:`hpcallbacks.LabelSmoothing`.

    ``real`` (default 0.9), ``fake`` (0.0: one-sided; 0.1: two-sided), ``schedule`` (the strength
    over training, or None for full strength), as the core's; or pass an ``hpcallbacks.LabelSmoothing``
    as ``real``. ``.targets(labels)`` (= ``.apply``) returns ``labels * real_t + (1 - labels) * fake_t``
    for a float label tensor; ``.real_target`` / ``.fake_target`` are the current numbers. With a
    ``LabelFlip`` too, flip first: ``smoothing.targets(flip.targets(labels))``."""

    def __init__(self, real: Any = 0.9, fake: float = 0.0, schedule: Any = None, optimizer: int | None = None) -> None:
        self.smoothing = real if isinstance(real, LabelSmoothing) else LabelSmoothing(real, fake, schedule)
        self._init_count(optimizer)

    @property
    def real_target(self) -> float:
        return self.smoothing.real_target(self.step)

    @property
    def fake_target(self) -> float:
        return self.smoothing.fake_target(self.step)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The smoothed targets of ``labels`` (1.0 real, 0.0 fake) at the current update."""
        return smooth_labels(labels, self.smoothing, self.step)

    apply = targets


class LabelFlipValues(GanValues):
    """Flip discriminator labels (handbook H7) by a core :class:`hpcallbacks.LabelFlip`.

    ``schedule``: the flip probability (a number or any core schedule), ``seed``; or an
    ``hpcallbacks.LabelFlip``. ``.targets(labels)`` (= ``.apply``) returns ``labels`` with the
    samples the core picks at the current update (``flip_uniform(seed, step, index) < p``, computed
    on the host) replaced by ``1 - y``."""

    _LOG = ("label_flip_probability", "probability")

    def _init_values(self, schedule: Any, seed: int) -> None:
        self.flip = schedule if isinstance(schedule, LabelFlip) else LabelFlip(schedule, seed)

    @property
    def probability(self) -> float:
        return self.flip.probability(self.step)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` with this update's flips applied."""
        n = labels.shape[0] if labels.ndim else 1
        return flip_labels(labels, self.flip, self.step, offset=self._offset(n))

    apply = targets
