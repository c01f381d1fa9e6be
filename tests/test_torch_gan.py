"""hpcallbacks.torch GAN helpers: the core's noise / smoothing / flip numbers on tensors."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hpcallbacks import gan as G  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks.torch import add_instance_noise, flip_labels, flip_mask, gan_targets, smooth_labels  # noqa: E402


def test_instance_noise_has_the_core_std_and_vanishes_at_zero():
    noise = G.InstanceNoise(S.PolynomialDecay(0.5, decay_steps=10, end_learning_rate=0.0))
    x = torch.zeros(20000)
    g = torch.Generator().manual_seed(0)
    noisy = add_instance_noise(x, noise, step=5, generator=g)
    assert float(noisy.std()) == pytest.approx(noise.std(5), rel=0.03)
    assert add_instance_noise(x, noise, step=10) is x  # annealed away: no draw at all
    torch.manual_seed(1)
    a = add_instance_noise(x, 0.3)
    torch.manual_seed(1)
    assert torch.equal(a, x + torch.randn_like(x) * 0.3)  # torch's RNG, so torch.manual_seed reproduces it
    with pytest.raises(ValueError, match="std must be >= 0"):
        add_instance_noise(x, -1.0)


def test_smoothing_matches_the_core():
    labels = [1.0, 0.0, 1.0, 0.25]
    for smoothing in (G.LabelSmoothing(0.9), G.LabelSmoothing(0.8, 0.1, schedule=S.PolynomialDecay(1.0, 10, 0.0))):
        for step in (0, 4, 12):
            got = smooth_labels(torch.tensor(labels, dtype=torch.float64), smoothing, step)
            assert got.tolist() == pytest.approx(smoothing.targets(step, labels), abs=1e-15)
    with pytest.raises(ValueError, match="smoothing must be a hpcallbacks.LabelSmoothing"):
        smooth_labels(torch.ones(2), 0.9, 0)


def test_flips_reproduce_the_core_decisions_exactly():
    flip = G.LabelFlip(0.3, seed=7)
    labels = [1.0] * 32 + [0.0] * 32
    for step in (0, 1, 99):
        got = flip_labels(torch.tensor(labels), flip, step)
        assert got.tolist() == flip.targets(step, labels)
        column = flip_labels(torch.tensor(labels).unsqueeze(1), flip, step)  # (n, 1) targets of a BCE loss
        assert column.squeeze(1).tolist() == flip.targets(step, labels)
    # an offset continues the core's indices (a second rank's half of the global batch)
    mask = flip_mask(flip, 3, 32, offset=32)
    assert mask.tolist() == flip.flips(3, 64)[32:]
    assert flip_mask(G.LabelFlip(0.0), 3, 8) is None
    assert 0.15 < sum(flip.flips(0, 1000)) / 1000 < 0.45


def test_gan_targets_flip_then_smooth():
    flip, smoothing = G.LabelFlip(0.5, seed=3), G.LabelSmoothing(0.9, 0.1)
    labels = [1.0, 0.0] * 8
    got = gan_targets(torch.tensor(labels, dtype=torch.float64), 4, smoothing, flip)
    assert got.tolist() == pytest.approx(smoothing.targets(4, flip.targets(4, labels)), abs=1e-15)


def test_the_values_the_torch_adapters_gan_callbacks_share():
    from hpcallbacks.torch.gan import InstanceNoiseValues, LabelFlipValues, LabelSmoothingValues

    class Counted:
        def _init_count(self, optimizer):
            self.optimizer, self.step = optimizer, 0

    class Noise(Counted, InstanceNoiseValues):
        def __init__(self, schedule):
            self._init_values(schedule)
            self._init_count(None)

    class Smoothing(Counted, LabelSmoothingValues):
        pass

    class Flip(Counted, LabelFlipValues):
        def __init__(self, schedule, seed=0):
            self._init_values(schedule, seed)
            self._init_count(None)

    noise = Noise(S.PolynomialDecay(0.5, decay_steps=10, end_learning_rate=0.0))
    noise.step = 5
    assert noise.std == noise.noise.std(5) and noise._LOG == ("instance_noise_std", "std")
    noise.step = 10
    x = torch.ones(4)
    assert noise.apply(x) is x
    smoothing = Smoothing(0.9, 0.1, optimizer=0)
    assert smoothing.optimizer == 0 and (smoothing.real_target, smoothing.fake_target) == (0.9, 0.1)
    assert torch.allclose(smoothing.apply(torch.tensor([1.0, 0.0])), torch.tensor([0.9, 0.1]))
    assert Smoothing(G.LabelSmoothing(0.8)).smoothing == G.LabelSmoothing(0.8)
    flip = Flip(0.5, seed=3)
    flip.step, flip._micro, flip._world, flip._rank = 2, 1, 2, 1  # samples start at (1 * 2 + 1) * n
    labels = torch.ones(8)
    assert torch.equal(flip.targets(labels), flip_labels(labels, flip.flip, 2, offset=24))
    assert flip.probability == 0.5 and flip._LOG == ("label_flip_probability", "probability")
