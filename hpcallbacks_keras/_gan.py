"""GAN helpers (handbook H7) for a custom ``train_step``: instance noise, label smoothing, label flips.

Each helper is a Keras callback (pass it to ``fit``, so it can prepare its numbers) whose methods
you call inside your ``train_step``; they read, in-graph, the value of the core schedule
(:mod:`hpcallbacks.gan`) at the discriminator's update count ``t`` =
``model.<optimizer>.iterations`` (``optimizer="d_optimizer"`` names the attribute holding the
discriminator's optimizer; default ``"optimizer"``)::

    noise = InstanceNoise(PolynomialDecay(0.1, decay_steps=5000, end_learning_rate=0.0),
                          optimizer="d_optimizer")
    flip = LabelFlip(0.05, optimizer="d_optimizer")
    smooth = LabelSmoothing(real=0.9, optimizer="d_optimizer")

    class GAN(keras.Model):
        def train_step(self, real):
            ...
            logits = self.discriminator(noise.apply(images))
            targets = smooth.targets(flip.targets(labels))   # flip first, then smooth
            ...

    gan.fit(data, callbacks=[noise, flip, smooth])

The numbers come from a table refilled from the host at most once per epoch (one read of the
update count per epoch); ``steps_per_execution`` and XLA are fine. Flip decisions are the core's
``flip_uniform(seed, step, index)``: the same labels flip in every framework and after a resume.

The arguments are the Lightning and HF helpers' (``optimizer`` names the model attribute here,
an index into ``configure_optimizers``' list there), plus keyword-only ones at the end that
only Keras needs, because the values are read in-graph from a table sized before the epoch:

* ``updates_per_batch`` (every helper here): how many discriminator updates one ``train_step`` makes
  (default 1). The table must cover an epoch's updates and Keras tells callbacks only the
  batches per epoch; the torch adapters count updates on the host and need no such size.
* ``max_batch_size`` (``LabelFlip``): the samples per update whose flip decisions are tabulated
  (the core's decisions are made on the host; the torch adapters make them per batch).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from hpcallbacks import _checks as check
from hpcallbacks import gan as G

from ._engine import _to_int, inner_optimizer, variable_scope
from .callbacks import keras_only

__all__ = ["InstanceNoise", "LabelSmoothing", "LabelFlip"]


class _GanSchedule(keras.callbacks.Callback):
    """A window of per-update values, read in-graph at the discriminator's update count."""

    columns = 1

    def __init__(self, optimizer: str | None = None, updates_per_batch: int = 1) -> None:
        super().__init__()
        if optimizer is not None and (not isinstance(optimizer, str) or not optimizer):
            raise ValueError(f"optimizer must be the name of the model attribute holding the discriminator's "
                             f"optimizer (e.g. 'd_optimizer'), or None for model.optimizer; got {optimizer!r}")
        self.optimizer_name = optimizer or "optimizer"
        self.updates_per_batch = check.positive_int("updates_per_batch", updates_per_batch)
        self.table: Any = None
        self.offset: Any = None
        self.window = 0
        self.window_start = 0

    # the numbers per update: an array of shape (n, columns)
    def values(self, steps: range) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _optimizer(self) -> Any:
        opt = getattr(self.model, self.optimizer_name, None)
        if opt is None or not hasattr(opt, "iterations"):
            raise ValueError(f"{type(self).__name__}: the model has no optimizer in attribute "
                             f"{self.optimizer_name!r}; pass optimizer= the attribute holding the discriminator's "
                             "optimizer")
        return inner_optimizer(opt)

    def on_train_begin(self, logs: dict | None = None) -> None:
        opt = self._optimizer()
        steps = (self.params or {}).get("steps") or 1000
        spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
        window = (int(steps) + spe + 2) * self.updates_per_batch
        if self.table is None or window > self.window:
            self.window = max(64, window)
            with variable_scope(self.model):
                self.table = keras.Variable(np.zeros((self.window, self.columns), "float32"), trainable=False,
                                            dtype="float32", name=f"hpcallbacks_{type(self).__name__.lower()}",
                                            aggregation="only_first_replica")
                self.offset = keras.Variable(0, trainable=False, dtype="int32", name="hpcallbacks_gan_offset",
                                             aggregation="only_first_replica")
        self._fill(_to_int(opt.iterations))
        self._opt = opt

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch:  # one read of the update count per epoch; the window holds an epoch
            self._fill(_to_int(self._opt.iterations))

    def _fill(self, start: int) -> None:
        values = np.asarray(self.values(range(start, start + self.window)), dtype=np.float64)
        self.table.assign(values.reshape(self.window, self.columns).astype("float32"))
        self.offset.assign(start)
        self.window_start = start

    def _row(self) -> Any:
        if self.table is None:
            raise ValueError(f"{type(self).__name__}: pass this callback to fit(callbacks=[...]) so it can prepare "
                             "its values before train_step uses them")
        step = ops.cast(self._opt.iterations, "int32")
        index = ops.clip(step - self.offset, 0, self.window - 1)
        return ops.take(self.table, index, axis=0)


@keras_only
class InstanceNoise(_GanSchedule):
    """Gaussian instance noise on the discriminator's inputs, std from a core
    :class:`hpcallbacks.InstanceNoise` schedule (any schedule, or a number). ``std()`` is the
    current standard deviation (in-graph); ``apply(x, generator=None)`` returns
    ``x + N(0, std^2)``. The noise is drawn from ``generator`` (a ``keras.random.SeedGenerator``,
    as the torch adapters' ``apply(x, generator=None)`` takes a ``torch.Generator``), else from the
    callback's own ``SeedGenerator``, seeded when the callback is built from Keras' global seed
    (``keras.utils.set_random_seed``, as torch's noise follows ``torch.manual_seed``). On the JAX
    backend pass a generator the model tracks (made in the model's ``__init__``), so its state
    advances in the stateless train step. ``updates_per_batch``: see the module docstring."""

    def __init__(self, schedule: Any, optimizer: str | None = None, *, updates_per_batch: int = 1) -> None:
        super().__init__(optimizer, updates_per_batch)
        self.noise = G.InstanceNoise(schedule)
        self.seed_generator = keras.random.SeedGenerator()

    def values(self, steps: range) -> np.ndarray:
        return np.array([self.noise.std(t) for t in steps])

    def std(self) -> Any:
        return self._row()[0]

    def apply(self, x: Any, generator: Any = None) -> Any:
        """``x`` plus the current update's instance noise (in-graph)."""
        if generator is not None and not isinstance(generator, keras.random.SeedGenerator):
            raise ValueError(f"InstanceNoise.apply: generator must be a keras.random.SeedGenerator or None; got "
                             f"{generator!r}")
        noise = keras.random.normal(ops.shape(x), seed=generator or self.seed_generator, dtype=x.dtype)
        return x + noise * ops.cast(self.std(), x.dtype)


@keras_only
class LabelSmoothing(_GanSchedule):
    """Discriminator label smoothing by a core :class:`hpcallbacks.LabelSmoothing` (``real``,
    ``fake``, optional strength ``schedule``). ``targets(labels)`` (1.0 real, 0.0 fake, soft
    labels in between) is ``labels * real_t + (1 - labels) * fake_t``, in-graph.
    ``updates_per_batch``: see the module docstring."""

    columns = 2

    def __init__(self, real: float = 0.9, fake: float = 0.0, schedule: Any = None, optimizer: str | None = None,
                 *, updates_per_batch: int = 1) -> None:
        super().__init__(optimizer, updates_per_batch)
        self.smoothing = G.LabelSmoothing(real=real, fake=fake, schedule=schedule)

    def values(self, steps: range) -> np.ndarray:
        return np.array([[self.smoothing.real_target(t), self.smoothing.fake_target(t)] for t in steps])

    def targets(self, labels: Any) -> Any:
        row = ops.cast(self._row(), labels.dtype)
        return labels * row[0] + (1.0 - labels) * row[1]


@keras_only
class LabelFlip(_GanSchedule):
    """Flip discriminator labels (``y -> 1 - y``) with the probability of a core
    :class:`hpcallbacks.LabelFlip` (any schedule, or a number). Sample ``i`` of the batch at update
    ``t`` flips when ``flip_uniform(seed, t, i) < p(t)``: the core's decisions exactly (made on the
    host for ``max_batch_size`` samples per update and tabulated, so no batch may be larger).
    ``targets(labels)`` returns the labels with the flips applied (first axis =
    batch). ``max_batch_size`` and ``updates_per_batch``: see the module docstring."""

    def __init__(self, schedule: Any, seed: int = 0, optimizer: str | None = None, *, max_batch_size: int = 256,
                 updates_per_batch: int = 1) -> None:
        super().__init__(optimizer, updates_per_batch)
        self.flip = G.LabelFlip(schedule, seed=seed)
        self.max_batch_size = check.positive_int("max_batch_size", max_batch_size)
        self.columns = 1 + self.max_batch_size

    def values(self, steps: range) -> np.ndarray:
        out = np.empty((len(steps), self.columns))
        for row, t in enumerate(steps):
            p = self.flip.probability(t)
            out[row, 0] = p
            out[row, 1:] = [G.flip_uniform(self.flip.seed, t, i) < p for i in range(self.max_batch_size)]
        return out

    def probability(self) -> Any:
        return self._row()[0]

    def flips(self, n: Any) -> Any:
        """Which of the first ``n`` samples flip at this update (decided on the host, by the core)."""
        return ops.greater(self._row()[1:][:n], 0.5)

    def targets(self, labels: Any) -> Any:
        n = ops.shape(labels)[0]
        flipped = self.flips(n)
        flipped = ops.reshape(flipped, (-1,) + (1,) * (len(labels.shape) - 1))
        return ops.where(flipped, 1.0 - labels, labels)
