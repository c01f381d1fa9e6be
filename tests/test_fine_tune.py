"""The fine-tuning recipe (hpcallbacks.recipe) and FineTune's facts in each adapter (issue 22).

The choices, not the accuracy: each cell of H5's table, the reach rule, the per-group factors, the
H2 learning rate per optimizer, the H4 BatchNorm policy, the schedule around each unfreeze, the
configuration round trip. The contract rows (tests/contract.py, ``fine-tune-*``) run FineTune's
learning rates, stages, refusals and resume in every adapter; here each adapter's tiny fit checks
that the facts come from the framework (the data set's length, the optimizer's H2 row).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hpcallbacks import FreezePlan
from hpcallbacks import schedules as S
from hpcallbacks.recipe import ALPHA, FROM_SCRATCH_LR, H2_RANGES, RANGE_TEST, Recipe, optimizer_kind


def recipe(**kw) -> Recipe:
    args = {"num_samples": 500, "num_groups": 6, "epochs": 10, "steps_per_epoch": 20, **kw}
    return Recipe(**args)


# -- H5: the table and the reach rule ---------------------------------------------------------------
def test_small_similar_trains_only_the_head():
    r = recipe(similar=True)
    assert r.cell == "small/similar"
    assert r.resolved().masks == ((False,) * 5 + (True,),)


def test_small_different_trains_the_head_then_every_group_the_bottom_half_slowly():
    # the reach rule: H5's top half becomes "every group, the bottom half at 1/10 to 1/100 of the head"
    for epochs, spe in ((10, 20), (2, 5)):
        r = recipe(epochs=epochs, steps_per_epoch=spe)
        assert r.cell == "small/different"
        assert r.resolved().starts == (0, spe)
        assert r.resolved().masks == ((False,) * 5 + (True,), (True,) * 6)
        bottom_half = r.factors[:3]
        assert all(0.01 - 1e-12 <= f <= 0.1 + 1e-12 for f in bottom_half)
        assert any(s == "H5 reach rule" and "every group trains" in t for s, t in r.reasons)


def test_large_similar_unfreezes_all_and_large_different_trains_from_scratch():
    r = recipe(num_samples=50_000, similar=True)
    assert r.cell == "large/similar" and r.pretrained and r.resolved().masks == ((True,) * 6,)
    scratch = recipe(num_samples=50_000)
    assert scratch.cell == "large/different" and not scratch.pretrained
    assert scratch.factors == (1.0,) * 6 and scratch.bn == "train"


def test_single_group_trains_from_the_start():
    r = recipe(num_groups=1)
    assert r.resolved().masks == ((True,),) and r.factors == (1.0,)


# -- H2 / H5 way 1: factors; H2: the learning rate -----------------------------------------------------
def test_factors_spread_two_orders_below_the_head():
    r = recipe(num_groups=5)
    assert r.factors[-1] == 1.0 and r.factors[0] == pytest.approx(0.01)
    ratios = [b / a for a, b in zip(r.factors, r.factors[1:])]
    assert ratios == pytest.approx([100 ** 0.25] * 4)


@pytest.mark.parametrize("name, momentum, nesterov, kind", [
    ("Adam", 0.0, False, "adam"), ("AdamW", 0.0, False, "adamw"), ("SGD", 0.0, False, "sgd"),
    ("SGD", 0.9, False, "sgd_momentum"), ("SGD", 0.9, True, "nesterov")])
def test_learning_rate_is_the_middle_of_h2_for_the_optimizer(name, momentum, nesterov, kind):
    assert optimizer_kind(name, momentum, nesterov) == kind
    assert recipe(optimizer=kind).head_learning_rate == FROM_SCRATCH_LR[kind]
    low, high = H2_RANGES[kind]
    assert FROM_SCRATCH_LR[kind] == pytest.approx(math.sqrt(low * high))  # the middle of H2's range in log space
    assert H2_RANGES["adam"] == (1e-3, 1e-2) and H2_RANGES["sgd"] == (1e-2, 1e-1)


def test_range_test_waits_for_the_suggestion():
    r = recipe(learning_rate=RANGE_TEST)
    assert r.head_learning_rate is None
    with pytest.raises(ValueError, match="learning_rate must be given"):
        r.schedule()
    assert r.schedule(0.02)(20) == pytest.approx(0.002)  # the second stage warms up from lr / 10
    assert r.with_learning_rate(0.02).head_learning_rate == 0.02


# -- H4: BatchNorm ------------------------------------------------------------------------------------
def test_a_pretrained_body_keeps_its_batch_norm_at_any_batch_size():
    small = recipe(batch_size=16)
    assert small.bn == small.plan.bn == "freeze_all"
    assert any(s == "H4" and "batches of 16 (< 32)" in t for s, t in small.reasons)
    assert recipe(batch_size=64).bn == recipe(batch_size=None).bn == "freeze_all"
    assert recipe(num_samples=50_000, batch_size=16).bn == "train"  # from scratch
    assert not any(s == "H4" for s, _ in recipe(batch_norm=False).reasons)


# -- H3: the schedule around each unfreeze -------------------------------------------------------------
def test_schedule_restarts_at_each_unfreeze_with_a_warmup():
    r = recipe(epochs=10, steps_per_epoch=20, learning_rate=0.01)
    s = r.schedule()
    assert isinstance(s, S.Join) and s.boundaries == (20.0,)
    assert s(0) == pytest.approx(0.001) and s(2) == pytest.approx(0.01)  # 10% warmup of the head's 20 updates
    assert s(19) < s(20) < s(38) == pytest.approx(0.01)  # restart at update 20, warmup over 18 updates
    assert s(199) == pytest.approx(0.01 * ALPHA, rel=0.05)


def test_a_head_stage_filling_the_run_is_one_cosine():
    r = recipe(epochs=1, steps_per_epoch=20)
    assert isinstance(r.schedule(), S.CosineDecay)
    assert any("fills the whole run" in t for _, t in r.reasons)


# -- text, configuration, bad input, picture ------------------------------------------------------------
def test_str_explains_each_choice_with_its_section():
    text = str(recipe(batch_size=8))
    for section in ("[H5]", "[H5 reach rule]", "[H2, H5 way 1]", "[H4]", "[H2]", "[H3]"):
        assert section in text


def test_config_round_trip_and_unknown_keys_refused():
    r = recipe(similar=True, optimizer="sgd", learning_rate=0.05, batch_size=8, head_epochs=2.0)
    config = json.loads(json.dumps(r.get_config()))
    again = Recipe.from_config(config)
    assert again == r and again.plan == r.plan and again.factors == r.factors
    with pytest.raises(ValueError, match=r"unknown key 'simlar' \(did you mean 'similar'\?\)"):
        Recipe.from_config({**config, "simlar": True})


@pytest.mark.parametrize("kw, name", [({"num_samples": -1}, "num_samples"), ({"num_groups": 0}, "num_groups"),
                                      ({"optimizer": "adagrad"}, "optimizer"), ({"learning_rate": "fast"},
                                                                                "learning_rate"),
                                      ({"learning_rate": 0.0}, "learning_rate"), ({"batch_size": 0}, "batch_size"),
                                      ({"similar": "yes"}, "similar")])
def test_bad_input_names_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        recipe(**kw)


def test_plan_picture(tmp_path):
    pytest.importorskip("matplotlib")
    path = recipe().plot(tmp_path / "plan.png", group_names=[f"g{i}" for i in range(6)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipe_plan_is_a_freeze_plan_the_adapters_resolve():
    r = recipe()
    assert isinstance(r.plan, FreezePlan) and r.plan.factors.resolve(6) == pytest.approx(r.factors)


# -- FineTune reads the facts from each framework ---------------------------------------------------------
X = np.random.default_rng(0).normal(size=(48, 4)).astype("float32")
Y = (X[:, 0] > 0).astype("int64")


def test_lightning_fine_tune_reads_the_dataset_and_optimizer():
    pl = pytest.importorskip("lightning.pytorch")
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from hpcallbacks_lightning import FineTune

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.body, self.neck, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.head(torch.relu(self.neck(torch.relu(self.body(x)))))

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)

    cb = FineTune(groups=["body", "neck", "head"])
    data = DataLoader(TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=8)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb])
    trainer.fit(Net(), data)
    r = cb.recipe
    assert (r.num_samples, r.num_groups, r.epochs, r.steps_per_epoch, r.optimizer, r.batch_size) == (
        48, 3, 2, 6, "sgd_momentum", 8)
    assert r.head_learning_rate == pytest.approx(math.sqrt(1e-3 * 1e-2))  # H2's rule, not the optimizer's 0.5


def test_hf_fine_tune_reads_the_dataset_and_optimizer(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from torch import nn
    from transformers import Trainer, TrainingArguments

    from hpcallbacks_hf import FineTune

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x, labels=None):
            out = self.head(torch.relu(self.body(x)))
            return {"loss": nn.functional.cross_entropy(out, labels), "logits": out}

    rows = [{"x": torch.tensor(X[i]), "labels": int(Y[i])} for i in range(48)]
    cb = FineTune(groups=["body", "head"])
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=16, num_train_epochs=2, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True)
    Trainer(model=Net(), args=args, train_dataset=rows, callbacks=[cb]).train()
    r = cb.recipe
    assert (r.num_samples, r.num_groups, r.epochs, r.steps_per_epoch, r.optimizer, r.batch_size) == (
        48, 2, 2, 3, "adamw", 16)


def test_keras_fine_tune_reads_the_arrays_and_optimizer():
    keras = pytest.importorskip("keras")

    from hpcallbacks_keras import FineTune

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(2, name="head")])
    model.compile(keras.optimizers.Adam(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = FineTune(groups=[["body", "bn"], "head"])
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[cb])
    r = cb.recipe
    assert (r.num_samples, r.num_groups, r.epochs, r.steps_per_epoch, r.optimizer, r.batch_size, r.bn) == (
        48, 2, 2, 6, "adam", 8, "freeze_all")
    assert float(model.optimizer.learning_rate) == pytest.approx(FROM_SCRATCH_LR["adam"] * ALPHA, rel=1e-4)
    with pytest.raises(ValueError, match="pass num_samples="):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
        model.fit(ds, epochs=1, verbose=0, shuffle=False, callbacks=[FineTune(groups=[["body", "bn"], "head"])])


# -- beside the other callbacks: the range test's rate, gradient accumulation --------------------------------
def _lightning_net():
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body, self.head = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Net()


def test_lightning_fine_tune_takes_the_range_test_rate_and_accumulates():
    pl = pytest.importorskip("lightning.pytorch")
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpcallbacks_lightning import FineTune, GradientAccumulation, LRFinder

    data = DataLoader(TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=8)
    finder = LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=20, skip_start=2, skip_end=2, apply=True)
    cb = FineTune(learning_rate="range_test", groups=["body", "head"])
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[finder, cb, GradientAccumulation(16)])
    trainer.fit(_lightning_net(), data)
    assert finder.suggestion is not None and cb.recipe.head_learning_rate is None
    peak = max(cb.schedule(t) for t in range(cb.recipe.total_steps))
    assert peak == pytest.approx(finder.suggestion)  # the head's peak is the range test's suggestion
    assert trainer.accumulate_grad_batches == 2 and cb.recipe.steps_per_epoch == 3  # 6 batches / 2


def test_keras_fine_tune_takes_the_range_test_rate_and_accumulates():
    keras = pytest.importorskip("keras")

    from hpcallbacks_keras import FineTune, GradientAccumulation, LRFinder

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
                              keras.layers.Dense(2, name="head")])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    finder = LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=20, skip_start=2, skip_end=2, apply=True)
    finder.run(model, X, Y, batch_size=8)
    cb = FineTune(learning_rate="range_test")
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[finder, cb, GradientAccumulation(16)])
    assert finder.suggestion is not None
    peak = max(cb.resolved_schedule(t) for t in range(cb.recipe.total_steps))
    assert peak == pytest.approx(finder.suggestion, rel=1e-6)
    assert cb.recipe.steps_per_epoch == 3  # 6 batches, 2 per update


def test_hf_fine_tune_takes_the_range_test_rate_and_accumulates(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from torch import nn
    from transformers import Trainer, TrainingArguments

    from hpcallbacks_hf import FineTune, GradientAccumulation, LRFinder

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body, self.head = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x, labels=None):
            out = self.head(torch.relu(self.body(x)))
            return {"loss": nn.functional.cross_entropy(out, labels), "logits": out}

    rows = [{"x": torch.tensor(X[i]), "labels": int(Y[i])} for i in range(48)]
    finder = LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=20, skip_start=2, skip_end=2, apply=True)
    cb = FineTune(learning_rate="range_test", groups=["body", "head"])
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=8, num_train_epochs=2, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=Net(), args=args, train_dataset=rows, callbacks=[finder, cb, GradientAccumulation(16)])
    trainer.train()
    assert finder.suggestion is not None and cb.recipe.steps_per_epoch == 3  # 6 batches, 2 per update
    peak = max(cb.build_schedule(cb._run.ctx)(t) for t in range(cb.recipe.total_steps))
    assert peak == pytest.approx(finder.suggestion, rel=1e-6)


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.filterwarnings("ignore:.*single layer group.*")
def test_lightning_fine_tune_beside_the_micro_batch_finder():
    L = pytest.importorskip("lightning.pytorch")
    import torch
    from test_microbatch import QUIET, Net, dataset

    import hpcallbacks_lightning as HL

    finder, cb = HL.MicroBatchFinder(64), HL.FineTune()
    trainer = L.Trainer(max_epochs=2, callbacks=[finder, cb], **QUIET)
    trainer.fit(Net(), torch.utils.data.DataLoader(dataset(), batch_size=64, shuffle=True))
    assert (finder.result.micro_batch_size, trainer.accumulate_grad_batches) == (8, 8)
    r = cb.recipe  # the recipe counts updates of the found micro-batches: 128 samples / 64 per update
    assert (r.num_samples, r.steps_per_epoch, r.batch_size) == (128, 2, 8)


def test_keras_fine_tune_beside_the_trial_reporter():
    """The recipe and the pruning reporter in one fit: every epoch reported, the recipe's stages applied."""
    keras = pytest.importorskip("keras")
    optuna = pytest.importorskip("optuna")

    from hpcallbacks_keras import FineTune, TrialReporter

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="body"),
                              keras.layers.Dense(2, name="head")])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trial = optuna.create_study().ask()
    cb, reporter = FineTune(), TrialReporter(trial, monitor="val_loss")
    history = model.fit(X, Y, batch_size=8, epochs=3, verbose=0, validation_data=(X, Y), callbacks=[cb, reporter])
    assert sorted(trial.study.trials[0].intermediate_values) == [0, 1, 2] and not reporter.pruned
    assert history.history["trainable_groups"] == [1.0, 2.0, 2.0]  # the head's epoch, then every group


def test_lightning_fine_tune_beside_the_trial_reporter():
    pl = pytest.importorskip("lightning.pytorch")
    optuna = pytest.importorskip("optuna")
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from hpcallbacks_lightning import FineTune, TrialReporter

    net = _lightning_net()

    def validation_step(batch, batch_idx=0):
        net.log("val_loss", nn.functional.cross_entropy(net(batch[0]), batch[1]))

    net.validation_step = validation_step
    data = DataLoader(TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=8)
    trial = optuna.create_study().ask()
    cb, reporter = FineTune(groups=["body", "head"]), TrialReporter(trial, monitor="val_loss")
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[cb, reporter])
    trainer.fit(net, data, data)
    assert sorted(trial.study.trials[0].intermediate_values) == [0, 1, 2] and not reporter.pruned
    assert cb.recipe is not None and all(p.requires_grad for p in net.parameters())  # every group after the head's
