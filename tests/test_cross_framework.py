"""One core schedule and plan, three training loops: the same LR of every group at every update.

Keras (``model.fit``), Lightning (``Trainer.fit``) and HF (``Trainer.train``) each run the scenario
through their own recorder (the adapters' conformance recorders); the three records must agree
with each other to 1e-7 relative (Keras keeps LRs in float32) and have identical trainable sets.
"""
from __future__ import annotations

import pytest

pytest.importorskip("keras")
pytest.importorskip("lightning")
pytest.importorskip("transformers")

from conformance import Scenario  # noqa: E402

from hpcallbacks import FreezePlan, LRFactors  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402

pytestmark = [  # Lightning's advice to real users, not about the adapters
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`.*"),
    pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
]

SCENARIOS = [
    Scenario("warmup-restarts-gradual", S.Warmup(S.CosineRestart(0.08, 5, t_mul=1.5, m_mul=0.9, alpha=0.05), 3),
             plan=FreezePlan.gradual(every_epochs=1, factors=LRFactors.geometric(2.6)), num_groups=3),
    Scenario("noisy-linear-cosine", S.NoisyLinearCosineDecay(0.05, 18, initial_variance=0.5, seed=3),
             plan=FreezePlan(stages=[(0, 1), (7, "all")], unit="update", factors=LRFactors.spread(1e-3, 1e-2))),
]


def records_of(framework, scenario, tmp_path):
    if framework == "keras":
        from keras_support import run_scenario

        return run_scenario(scenario)[0]
    if framework == "lightning":
        from test_lightning import run_scenario

        return run_scenario(scenario)
    from test_hf import run_scenario

    return run_scenario(scenario, tmp_path).records


@pytest.mark.parametrize("accumulation", [1, 3])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_keras_lightning_and_hf_give_the_same_learning_rates(scenario, accumulation, tmp_path):
    s = scenario if accumulation == 1 else scenario.with_accumulation(accumulation)
    runs = {fw: records_of(fw, s, tmp_path) for fw in ("keras", "lightning", "hf")}
    keras_r, lightning_r, hf_r = runs["keras"], runs["lightning"], runs["hf"]
    assert len(keras_r) == len(lightning_r) == len(hf_r) == s.total_updates
    for (t, k_lrs, k_on), (_, l_lrs, l_on), (_, h_lrs, h_on) in zip(keras_r, lightning_r, hf_r, strict=True):
        assert tuple(k_on) == tuple(l_on) == tuple(h_on), f"update {t}: trainable sets differ"
        assert tuple(l_lrs) == tuple(h_lrs), f"update {t}: Lightning {l_lrs} != HF {h_lrs}"  # both float64
        for a, b in zip(k_lrs, l_lrs, strict=True):
            assert abs(a - b) <= 1e-7 * abs(b), f"update {t}: Keras {a} != Lightning {b}"
