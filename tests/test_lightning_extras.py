"""hpcallbacks_lightning's batch-size, hyperparameter, GAN, advisor and range-test callbacks in real fits.

Each callback does what its docstring says, with the core rule as the reference: GradientAccumulation,
ScaleLearningRate, BatchRamp, ParamScheduler, InstanceNoise / LabelSmoothing / LabelFlip (in a
manual-optimization GAN), HyperparameterAdvisor, LossBalance, LRFinder; bad input -> ValueError.
"""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")
from test_finder import assert_warned_once_cut_short  # noqa: E402
from torch import nn  # noqa: E402

import hpcallbacks_lightning as HL  # noqa: E402
from hpcallbacks import FreezePlan, ParamSchedule  # noqa: E402
from hpcallbacks import batch as B  # noqa: E402
from hpcallbacks import defaults as D  # noqa: E402
from hpcallbacks import gan as G  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks_lightning.extras import HyperparameterWarning  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
    pytest.mark.filterwarnings("ignore:.*Checkpoint directory.*exists and is not empty.*"),
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"),
]

QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, logger=False, enable_checkpointing=False)


def loader(samples, batch_size, seed=0, in_features=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, in_features, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(samples, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


class Net(L.LightningModule):
    """Linear -> Dropout -> Linear, MSE; ``optimizer(params)`` builds the optimizer (SGD lr 0.123, momentum 0.9)."""

    def __init__(self, optimizer=None, dropout=0.3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(4, 8)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8, 1)
        self.make_optimizer = optimizer or (lambda params: torch.optim.SGD(params, lr=0.123, momentum=0.9))
        self.noise_level = 0.0

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.body(x))))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


class Probe(L.Callback):
    """Per optimizer update: ``fn(trainer, pl_module, optimizer)``."""

    def __init__(self, fn=lambda trainer, module, opt: opt.param_groups[0]["lr"]):
        self.fn = fn
        self.records = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.records.append(self.fn(trainer, pl_module, optimizer))


def fit(callbacks, model=None, epochs=1, samples=48, batch_size=4, ckpt=None, **kw):
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, **{**QUIET, **kw})
    trainer.fit(model if model is not None else Net(), loader(samples, batch_size), ckpt_path=ckpt)
    return trainer


# ---------------------------------------------------------------------------------------------
# batch size (H4)
def test_gradient_accumulation_reaches_the_target_and_the_schedule_counts_updates():
    probe = Probe(lambda t, m, o: (t.global_step, t.accumulate_grad_batches, o.param_groups[0]["lr"]))
    trainer = fit([HL.CosineDecay(), HL.GradientAccumulation(12), probe], epochs=2)
    assert trainer.accumulate_grad_batches == 3  # 12 samples per update = 3 micro-batches of 4
    assert [r[0] for r in probe.records] == list(range(8))  # 12 batches per epoch -> 4 updates per epoch
    core = D.build("CosineDecay", {}, D.RunFacts(learning_rate=0.123, steps_per_epoch=4, total_steps=8))
    assert [r[2] for r in probe.records] == pytest.approx(core.curve(8))  # the LR advances once per update
    assert HL.GradientAccumulation(12).state_dict() == {"accumulation": None}
    assert trainer.callbacks[1].state_dict()["accumulation"]["steps"] == 3


def test_gradient_accumulation_refuses_or_reports_an_inexact_target():
    with pytest.raises(ValueError, match=r"must be a multiple of .* = 4 .* got 10 \(nearest reachable: 8 or 12"):
        fit([HL.GradientAccumulation(10)])
    with pytest.warns(UserWarning, match="target_batch_size=10 is not reachable .* effective batch of 8"):
        trainer = fit([HL.GradientAccumulation(10, exact=False)])
    assert trainer.accumulate_grad_batches == 2
    with pytest.raises(ValueError, match=r"Trainer\(accumulate_grad_batches=2\) and the GradientAccumulation"):
        fit([HL.GradientAccumulation(12)], accumulate_grad_batches=2)


def test_scale_learning_rate_alone_is_the_core_rule_with_warmup():
    probe = Probe()
    fit([HL.ScaleLearningRate(base_batch_size=2, warmup_epochs=1), probe], epochs=2, batch_size=8)  # 6 upd/epoch
    lr = B.scale_learning_rate(0.123, 2, 8)  # x4
    core = B.scaling_warmup(S.Constant(lr), 2, 8, steps_per_epoch=6, warmup_epochs=1)
    assert probe.records == pytest.approx(core.curve(12))
    assert probe.records[0] == pytest.approx(0.123) and probe.records[6:] == pytest.approx([lr] * 6)


def test_scale_learning_rate_multiplies_a_schedule_and_sees_the_accumulation():
    probe = Probe()
    fit([HL.CosineRestart(), HL.GradientAccumulation(8), HL.ScaleLearningRate(base_batch_size=32, rule="sqrt",
                                                                               warmup_epochs=0), probe], epochs=2)
    k = B.scale_learning_rate(1.0, 32, 8, rule="sqrt")  # 0.5: a smaller batch, no warmup
    assert probe.records == pytest.approx([S.CosineRestart(0.123, 6)(t) * k for t in range(12)])


def test_batch_ramp_grows_the_batch_at_epoch_starts_and_keeps_the_noise_scale(tmp_path):
    ramp = B.BatchRamp(S.PiecewiseConstantDecay([11, 23], [0.1, 0.05, 0.025]), base_batch_size=4, max_batch_size=12,
                       per_device_batch_size=4)
    probe = Probe(lambda t, m, o: (t.current_epoch, t.accumulate_grad_batches, o.param_groups[0]["lr"]))
    callback = HL.BatchRamp(ramp)
    fit([callback, probe], epochs=3)
    # epoch 0: t=0, B=4 (12 updates) -> t=12: lr 0.05 -> B=8, 6 updates -> t=24: lr 0.025 -> B=16 capped at 12
    assert [(e, a) for e, a, _ in probe.records] == [(0, 1)] * 12 + [(1, 2)] * 6 + [(2, 3)] * 4
    lrs = [lr for *_, lr in probe.records]
    assert lrs == pytest.approx([0.1] * 18 + [0.075] * 4)  # beyond the cap the LR decays: 0.025 * 12 / 4
    assert lrs[0] == ramp.learning_rate(0) and lrs[12] == ramp.learning_rate(12) and lrs[18] == ramp.learning_rate(24)
    assert callback.samples == 12 * 4 + 6 * 8 + 4 * 12
    # resume after epoch 1: the same accumulation and LRs for the rest of the run
    path = tmp_path / "ramp.ckpt"
    first = fit([HL.BatchRamp(ramp)], epochs=2)
    first.save_checkpoint(path)
    resumed = Probe(probe.fn)
    fit([HL.BatchRamp(ramp), resumed], epochs=3, ckpt=str(path))
    assert resumed.records == probe.records[18:]


def test_batch_ramp_must_match_the_run():
    ramp = B.BatchRamp(S.Constant(0.1), base_batch_size=16, max_batch_size=64, per_device_batch_size=8)
    with pytest.raises(ValueError, match=r"per_device_batch_size=4, world_size=1"):
        fit([HL.BatchRamp(ramp)])
    ok = B.BatchRamp(S.Constant(0.1), base_batch_size=4, max_batch_size=8)
    with pytest.raises(ValueError, match="GradientAccumulation and BatchRamp"):
        fit([HL.BatchRamp(ok), HL.GradientAccumulation(8)])
    with pytest.raises(ValueError, match="ScaleLearningRate and BatchRamp"):
        fit([HL.BatchRamp(ok), HL.ScaleLearningRate(4)])


# ---------------------------------------------------------------------------------------------
# any hyperparameter on a schedule
def test_param_scheduler_sets_momentum_dropout_and_an_attribute_per_update():
    momentum = S.Cyclic(0.85, 0.95, step_size_up=3)
    drop = S.PolynomialDecay(0.5, decay_steps=6, end_learning_rate=0.1)
    noise = S.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.5)
    probe = Probe(lambda t, m, o: (t.global_step, o.param_groups[0]["momentum"], m.drop.p, m.noise_level))
    fit([HL.ParamScheduler({"optimizer.momentum": momentum, "module.drop": drop},
                           ParamSchedule("noise_level", noise)), probe], accumulate_grad_batches=2)
    assert [r[0] for r in probe.records] == list(range(6))
    for t, m, p, n in probe.records:
        assert (m, p, n) == (momentum(t), drop(t), noise(t))  # exactly the schedule, per update


def test_param_scheduler_on_adam_betas_and_weight_decay_groups():
    def adam(params):
        params = list(params)
        return torch.optim.Adam([{"params": [p for p in params if p.ndim > 1], "weight_decay": 1e-4},
                                 {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=1e-3)

    beta = S.Cyclic(0.85, 0.95, step_size_up=4)
    decay = S.PolynomialDecay(1e-4, decay_steps=12, end_learning_rate=0.0)
    probe = Probe(lambda t, m, o: [(g["betas"], g["weight_decay"]) for g in o.param_groups])
    fit([HL.ParamScheduler({"momentum": beta, "weight_decay": decay, "beta_2": 0.99}), probe], model=Net(adam))
    for t, ((b0, wd0), (b1, wd1)) in enumerate(probe.records):
        assert b0 == b1 == (beta(t), 0.99)  # "momentum" of Adam is beta_1
        assert wd0 == decay(t) and wd1 == 0.0  # the no-decay group stays without decay


@pytest.mark.parametrize("schedules, message", [
    ({"module.nope": 0.1}, "'module.nope': 'nope' of the LightningModule is no attribute"),
    ({"module.body.weight": 0.1}, "a Parameter, not a number"),
    ({"optimizer.lr": 0.1}, "is a learning rate"),
    ({"optimizer.betas_3": 0.1}, "no param group of SGD has 'betas_3'"),
    ({"optimizer.1.momentum": 0.9}, "names optimizer 1 but configure_optimizers returned 1"),
    ({"momentum": S.Constant(1.5)}, "'momentum' must stay in \\[0, 1\\]"),
    ({"module.drop": S.PolynomialDecay(1.2, 10, 0.0)}, "'module.drop' must stay in \\[0, 1\\]"),
    ({"momentum": 0.9, "optimizer.momentum": 0.8}, "set the same value"),
])
def test_param_scheduler_bad_targets_raise_at_fit_start(schedules, message):
    with pytest.raises(ValueError, match=message):
        fit([HL.ParamScheduler(schedules)])


# ---------------------------------------------------------------------------------------------
# GAN (H7): a manual-optimization module with two optimizers
class GAN(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        torch.manual_seed(0)
        self.generator = nn.Linear(2, 4)
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        noise = HL.InstanceNoise.of(self.trainer)
        smooth, flip = HL.LabelSmoothing.of(self.trainer), HL.LabelFlip.of(self.trainer)
        n = real.shape[0]
        fake = self.generator(torch.randn(n, 2))
        labels = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)])
        targets = smooth.targets(flip.targets(labels))
        logits = self.discriminator(noise.apply(torch.cat([real, fake.detach()])))
        loss_d = nn.functional.binary_cross_entropy_with_logits(logits, targets)
        self.seen.append((self.trainer.global_step, noise.step, noise.std, flip.step, targets.squeeze(1).tolist()))
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        loss_g = nn.functional.binary_cross_entropy_with_logits(self.discriminator(fake), torch.ones(n, 1))
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()

    def configure_optimizers(self):
        return [torch.optim.Adam(self.generator.parameters(), 1e-4), torch.optim.Adam(self.discriminator.parameters(),
                                                                                      1e-4)]


def gan_callbacks(optimizer=None):
    return [HL.InstanceNoise(S.PolynomialDecay(0.5, decay_steps=4, end_learning_rate=0.0), optimizer=optimizer),
            HL.LabelSmoothing(0.9, optimizer=optimizer), HL.LabelFlip(0.3, seed=5, optimizer=optimizer)]


def gan_fit(callbacks, epochs=1, ckpt=None):
    model = GAN()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(24, 4)), batch_size=4)
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, **QUIET)
    trainer.fit(model, data, ckpt_path=ckpt)
    return trainer, model


def test_gan_schedules_count_discriminator_updates_in_a_two_optimizer_module(tmp_path):
    trainer, model = gan_fit(gan_callbacks(), epochs=2)
    noise = G.InstanceNoise(S.PolynomialDecay(0.5, decay_steps=4, end_learning_rate=0.0))
    smooth, flip = G.LabelSmoothing(0.9), G.LabelFlip(0.3, seed=5)
    assert trainer.global_step == 24  # Lightning counts both optimizers' steps ...
    assert [s[1] for s in model.seen] == list(range(12))  # ... the schedules count one update per batch
    assert [s[0] for s in model.seen] == [2 * t for t in range(12)]
    for _, t, std, _, targets in model.seen:
        assert std == noise.std(t)
        assert targets == pytest.approx(smooth.targets(t, flip.targets(t, [1.0] * 4 + [0.0] * 4)))
    assert any(s[4][:4] != [0.9] * 4 for s in model.seen)  # some labels were flipped
    # resume after epoch 1 continues the count
    path = tmp_path / "gan.ckpt"
    first, _ = gan_fit(gan_callbacks())
    first.save_checkpoint(path)
    _, resumed = gan_fit(gan_callbacks(), epochs=2, ckpt=str(path))
    assert [s[1] for s in resumed.seen] == list(range(6, 12))
    # optimizer=1 counts the discriminator's steps (it advances after each D step)
    _, model = gan_fit(gan_callbacks(optimizer=1))
    assert [s[1] for s in model.seen] == list(range(6))


def test_label_flips_number_the_samples_of_the_whole_update():
    """With accumulation, the micro-batches of one update are parts of one batch: they flip different samples."""
    class Flips(Net):
        def training_step(self, batch, batch_idx):
            flip = HL.LabelFlip.of(self.trainer)
            self.seen.append((self.trainer.global_step, flip.targets(torch.ones(4)).tolist()))
            return super().training_step(batch, batch_idx)

    model = Flips()
    model.seen = []
    fit([HL.LabelFlip(0.5, seed=2)], model=model, samples=24, accumulate_grad_batches=3)
    core = G.LabelFlip(0.5, seed=2)
    for update in range(2):
        parts = [targets for step, targets in model.seen if step == update]
        assert sum(parts, []) == core.targets(update, [1.0] * 12)


def test_gan_callback_lookup_and_bad_input():
    with pytest.raises(ValueError, match="no InstanceNoise callback"):
        HL.InstanceNoise.of(L.Trainer(**QUIET))
    with pytest.raises(ValueError, match="real must be"):
        HL.LabelSmoothing(real=0.4)
    with pytest.raises(ValueError, match="seed must be"):
        HL.LabelFlip(0.1, seed=-1)
    with pytest.raises(ValueError, match="optimizer=2 but configure_optimizers returned 2"):
        gan_fit([HL.InstanceNoise(0.1, optimizer=2), HL.LabelSmoothing(), HL.LabelFlip(0.1)])


# ---------------------------------------------------------------------------------------------
# the advisor (H2)
def advise(callback, model, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HyperparameterWarning)
        fit([*kw.pop("extra", []), callback], model=model, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, HyperparameterWarning)]


def adam(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


def test_advisor_warns_on_adam_lr_0_1_and_is_silent_in_range():
    advisor = HL.HyperparameterAdvisor()
    found = advise(advisor, Net(adam(0.1)))
    assert len(found) == 1 and "learning_rate = 0.1; recommended [1e-3, 1e-2]" in found[0]
    assert advisor.values["optimizer"] == "adam" and advisor.values["batch_size"] == 4
    assert advisor.values["dropout_rates"] == [0.3] and advisor.values["beta_1"] == 0.9
    quiet = HL.HyperparameterAdvisor()
    assert advise(quiet, Net(adam(1e-3))) == [] and quiet.findings == []
    # SGD momentum 0.9 at 0.123 is out of [1e-3, 1e-2]; the effective batch includes the accumulation
    sgd = HL.HyperparameterAdvisor()
    found = advise(sgd, Net(), extra=[HL.GradientAccumulation(2048)], samples=2048, batch_size=512)
    assert sgd.values["batch_size"] == 2048 and {f.row for f in sgd.findings} >= {"learning_rate_sgd_momentum",
                                                                                 "batch_size"}
    assert len(found) == 2
    # the schedule's peak LR is what is checked
    peak = HL.HyperparameterAdvisor()
    assert advise(peak, Net(adam(1e-3)), extra=[HL.OneCycle(max_lr=0.5)]) and peak.values["learning_rate"] > 0.4


def test_advisor_fine_tuning_and_strict():
    tuned = HL.HyperparameterAdvisor()  # a StagedUnfreeze makes it a fine-tuning run: 1e-2 is too high then
    unfreeze = HL.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["body", "head"])
    found = advise(tuned, Net(adam(1e-2)), extra=[unfreeze], epochs=2)
    assert tuned.values["fine_tuning"] and [f.row for f in tuned.findings] == ["learning_rate_fine_tuning"]
    assert len(found) == 1 and "lowered by 1 to 2 orders of magnitude" in found[0]
    with pytest.raises(ValueError, match="strict=True.*learning_rate = 0.1"):
        fit([HL.HyperparameterAdvisor(strict=True)], model=Net(adam(0.1)))
    with pytest.raises(ValueError, match="from_scratch_learning_rate is used only when fine-tuning"):
        HL.HyperparameterAdvisor(fine_tuning=False, from_scratch_learning_rate=0.1)
    with pytest.raises(ValueError, match="pass fine_tuning=True"):
        fit([HL.HyperparameterAdvisor(from_scratch_learning_rate=0.1)], model=Net(adam(1e-3)))


class TwoLosses(Net):
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss_a = nn.functional.mse_loss(self(x), y)
        loss_b = 1e4 * (1.0 + self.head.weight.pow(2).sum())
        self.log("loss_a", loss_a, on_step=False, on_epoch=True)
        self.log("loss_b", loss_b, on_step=False, on_epoch=True)
        return loss_a + 1e-6 * loss_b


def test_loss_balance_reports_imbalance_and_suggests_weights():
    balance = HL.LossBalance(terms=("loss_a", "loss_b"))
    with pytest.warns(HyperparameterWarning, match="'loss_b' .* is .* times 'loss_a'"):
        fit([balance], model=TwoLosses(adam(1e-3)), epochs=2)
    assert balance.weights["loss_a"] == 1.0 and balance.weights["loss_b"] < 0.01
    assert balance.weights["loss_b"] == pytest.approx(balance.values["loss_a"] / balance.values["loss_b"])
    assert balance.state_dict()["weights"] == balance.weights
    with pytest.raises(ValueError, match="strict=True"):
        fit([HL.LossBalance(("loss_a", "loss_b"), strict=True)], model=TwoLosses(adam(1e-3)))
    with pytest.warns(UserWarning, match=r"term\(s\) \['loss_c'\] were not logged"):
        fit([HL.LossBalance(("loss_a", "loss_c"))], model=TwoLosses(adam(1e-3)))


# ---------------------------------------------------------------------------------------------
# the range test
class Snapshot(L.Callback):
    def __init__(self):
        self.params = None

    def on_train_start(self, trainer, pl_module):
        self.params = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_lr_finder_restores_weights_bit_identically_and_suggests_in_range(tmp_path):
    before, after = Snapshot(), Snapshot()
    finder = HL.LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=60, plot=tmp_path / "range.png")
    model = Net(lambda p: torch.optim.SGD(p, lr=0.01), dropout=0.0)
    fit([before, finder, after], model=model, samples=64, batch_size=64, max_steps=1)  # full-batch: a smooth curve
    assert all(torch.equal(before.params[k], after.params[k]) for k in before.params)  # bit-identical
    result = finder.result
    assert result.stopped_early and len(result.losses) < 60  # SGD on the regression diverges at large LRs
    diverged_at = result.learning_rates[-1]
    assert 1e-2 < finder.suggestion < diverged_at / 2  # on the steep part of the curve (about 0.14 here)
    assert min(result.losses) < result.losses[0] / 10
    assert (tmp_path / "range.png").stat().st_size > 1000
    assert finder.state_dict()["result"]["suggestion"]["learning_rate"] == finder.suggestion

    def final(callbacks):
        m = Net(lambda p: torch.optim.SGD(p, lr=0.01))  # dropout on: the RNG is restored too
        fit(callbacks, model=m, samples=64, batch_size=8, epochs=2)
        return [p.detach().clone() for p in m.parameters()]

    plain, tested = final([]), final([HL.LRFinder(num_steps=20)])
    assert all(torch.equal(a, b) for a, b in zip(plain, tested))  # the run goes on as if no test had happened


def test_lr_finder_apply_sets_the_runs_lr_and_a_resumed_run_keeps_the_result(tmp_path):
    probe = Probe()
    finder = HL.LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=60, apply=True)
    trainer = fit([HL.CosineDecay(), finder, probe], model=Net(lambda p: torch.optim.SGD(p, lr=0.01)),
                  samples=64, batch_size=8, epochs=2)
    s = finder.suggestion
    assert probe.records == pytest.approx(S.CosineDecay(s, decay_steps=16).curve(16))  # decays from the suggestion
    path = tmp_path / "after.ckpt"
    trainer.save_checkpoint(path)
    again = HL.LRFinder(num_steps=60, apply=True)
    from hpcallbacks.run import RunWarning

    with pytest.warns(RunWarning, match="decay_steps 16.0 -> 24.0"):  # a longer run: CosineDecay() decays over it
        fit([HL.CosineDecay(), again], model=Net(lambda p: torch.optim.SGD(p, lr=0.01)), samples=64, batch_size=8,
            epochs=3, ckpt=str(path))
    assert again.suggestion == s  # from the checkpoint, no second test


class NanAbove(Net):
    """Net whose loss becomes nan once the optimizer's learning rate passes ``lr`` (a range test cut short)."""

    def __init__(self, lr):
        super().__init__(lambda p: torch.optim.SGD(p, lr=0.001), dropout=0.0)
        self.nan_above = lr

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.trainer.optimizers[0].param_groups[0]["lr"] > self.nan_above else loss


def test_lr_finder_warns_once_when_a_nan_loss_cuts_the_test_short_and_still_applies_it():
    finder = HL.LRFinder(min_lr=1e-4, max_lr=10.0, num_steps=30, apply=True)  # lr > 1e-2 from point 13 on
    with pytest.warns(HyperparameterWarning) as caught:
        trainer = fit([finder], model=NanAbove(1e-2), samples=64, batch_size=64, max_steps=1)
    assert_warned_once_cut_short(caught, finder.result)  # after 13 of 30 points
    assert finder.suggestion <= 1e-2 and trainer.optimizers[0].param_groups[0]["lr"] == finder.suggestion  # applied


@pytest.mark.parametrize("make, message", [
    (lambda: HL.GradientAccumulation(0), "target_batch_size must be"),
    (lambda: HL.GradientAccumulation(8, exact="yes"), "exact must be True or False"),
    (lambda: HL.ScaleLearningRate(0), "base_batch_size must be"),
    (lambda: HL.ScaleLearningRate(256, rule="log"), "rule must be one of"),
    (lambda: HL.ScaleLearningRate(256, warmup_epochs=-1), "warmup_epochs must be"),
    (lambda: HL.BatchRamp(S.Constant(0.1)), "ramp must be a hpcallbacks.batch.BatchRamp"),
    (lambda: HL.ParamScheduler(), "schedules must name at least one"),
    (lambda: HL.ParamScheduler({"1momentum": 0.9}), "name must be a hyperparameter name"),
    (lambda: HL.ParamScheduler(["momentum"]), r"schedules\[0\] must be a dict"),
    (lambda: HL.InstanceNoise("big"), "schedule must be a hpcallbacks schedule"),
    (lambda: HL.HyperparameterAdvisor(strict=1), "strict must be True or False"),
    (lambda: HL.LossBalance(terms=("loss",)), "terms must be two or more"),
    (lambda: HL.LossBalance(every_n_epochs=0), "every_n_epochs must be"),
    (lambda: HL.LossBalance(reference="loss_c"), "reference must be one of"),
    (lambda: HL.LRFinder(min_lr=1.0, max_lr=0.1), "max_lr must be"),
    (lambda: HL.LRFinder(num_steps=1), "num_steps must be"),
    (lambda: HL.LRFinder(method="valley"), "method must be one of"),
    (lambda: HL.LRFinder(divergence=1.0), "divergence must be"),
    (lambda: HL.LRFinder(apply="yes"), "apply must be True or False"),
])
def test_bad_arguments_raise_when_built(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_manual_optimization_is_refused_where_accumulation_is_needed():
    for callback in (HL.GradientAccumulation(8), HL.LRFinder()):
        with pytest.raises(ValueError, match="needs automatic optimization"):
            gan_fit([callback, *gan_callbacks()])




def test_both_namespaces():
    pl = pytest.importorskip("pytorch_lightning")
    import hpcallbacks_lightning.pl as HLpl

    for name in ("GradientAccumulation", "ScaleLearningRate", "BatchRamp", "ParamScheduler", "InstanceNoise",
                 "LabelSmoothing", "LabelFlip", "HyperparameterAdvisor", "LossBalance", "LRFinder"):
        assert issubclass(getattr(HLpl, name), pl.Callback) and issubclass(getattr(HL, name), L.Callback)
    from test_lightning import checkpoint_key

    assert checkpoint_key(HLpl.GradientAccumulation(8), pl) == checkpoint_key(HL.GradientAccumulation(8))
