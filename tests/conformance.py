"""Cross-framework conformance scenarios: one format, one expected trace from the core.

A scenario is a tiny regression problem, a stack of ``num_groups`` dense layers (each layer one
layer group, bottom to top), a core schedule and optionally a freeze plan. Each adapter's test
runs the scenario in its real training loop and records, for every optimizer update, the
learning rate each group's parameters were updated with and which groups were trainable. The
record must equal :meth:`Scenario.expected`, which asks only the core.

Record of one update: ``(update, lrs, trainable)`` with ``lrs`` a tuple of floats (one per group,
bottom to top; the LR the group *would* use, also while frozen) and ``trainable`` a tuple of
bools.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from hpcallbacks import FreezePlan, LRFactors, Schedule
from hpcallbacks import schedules as S

Record = tuple[int, tuple[float, ...], tuple[bool, ...]]


@dataclass(frozen=True)
class Scenario:
    name: str
    schedule: Schedule
    plan: FreezePlan | None = None
    num_groups: int = 3
    samples: int = 24
    batch_size: int = 4
    epochs: int = 3
    accumulation: int = 1
    in_features: int = 4
    hidden: int = 4
    seed: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer updates per epoch (micro-batches / accumulation, rounded down)."""
        return self.micro_batches_per_epoch // self.accumulation

    @property
    def total_updates(self) -> int:
        return self.steps_per_epoch * self.epochs

    def resolved(self):
        plan = self.plan or FreezePlan.all_trainable()
        return plan.resolve(self.num_groups, self.steps_per_epoch)

    def expected(self) -> list[Record]:
        r = self.resolved()
        out = []
        for t in range(self.total_updates):
            base = self.schedule(t)
            out.append((t, tuple(r.lr(g, base) for g in range(self.num_groups)), r.trainable_at(t)))
        return out

    def with_accumulation(self, k: int) -> Scenario:
        from dataclasses import replace
        return replace(self, name=f"{self.name}-acc{k}", accumulation=k, samples=self.samples * k)


def assert_records_match(scenario: Scenario, records: list[Record], rel: float = 1e-6) -> None:
    """Compare an adapter's records with the core's expectation, update by update."""
    expected = scenario.expected()
    assert len(records) == len(expected), (
        f"{scenario.name}: recorded {len(records)} updates, expected {len(expected)}")
    for (t, lrs, trainable), (et, elrs, etrainable) in zip(records, expected):
        assert t == et, f"{scenario.name}: update index {t} != {et}"
        assert tuple(trainable) == tuple(etrainable), (
            f"{scenario.name}: update {t}: trainable {trainable} != plan {etrainable}")
        for g, (a, b) in enumerate(zip(lrs, elrs)):
            assert abs(a - b) <= rel * max(abs(b), 1e-12), (
                f"{scenario.name}: update {t}, group {g}: lr {a!r} != core {b!r}")


# The shared scenarios. Every adapter runs all of them (plus the accumulation variants).
SCENARIOS: list[Scenario] = [
    Scenario("cosine-restart", S.CosineRestart(0.1, first_decay_steps=5, t_mul=2.0, alpha=0.1)),
    Scenario("warmup-cosine", S.Warmup(S.CosineDecay(0.05, decay_steps=20), warmup_steps=4)),
    Scenario("piecewise", S.PiecewiseConstantDecay([5, 11], [0.1, 0.05, 0.01])),
    Scenario("gradual-unfreeze", S.ExponentialDecay(0.1, decay_steps=6, decay_rate=0.5),
             plan=FreezePlan.gradual(every_epochs=1, factors=LRFactors.geometric(2.6))),
    Scenario("head-then-top-half", S.OneCycle(max_lr=0.1, total_steps=18),
             plan=FreezePlan.head_then_top_fraction(head_epochs=1, fraction=0.5), num_groups=4),
    Scenario("mid-epoch-stages", S.Constant(0.05),
             plan=FreezePlan(stages=[(0, 1), (4, 2), (9, "all")], unit="update",
                             factors=LRFactors.layer_decay(0.5))),
]
