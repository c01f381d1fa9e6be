"""hpcallbacks_hf's batch-size, hyperparameter, GAN, advisor and range-test callbacks in real ``Trainer.train()`` runs.

The same cases and numbers as ``tests/test_lightning_extras.py`` where the frameworks allow (the
same model, data, optimizer and core references): GradientAccumulation, ScaleLearningRate,
BatchRamp, ParamScheduler, InstanceNoise / LabelSmoothing / LabelFlip (in a custom
``compute_loss``), HyperparameterAdvisor, LossBalance, LRFinder; bad input -> ValueError naming the
argument. Tiny models on CPU, one process.
"""
from __future__ import annotations

import inspect
import os
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hf_versions import in_order, training_arguments  # noqa: E402
from test_finder import assert_warned_once_cut_short  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import hpcallbacks_hf as H  # noqa: E402
from hpcallbacks import FreezePlan, LRFactors, ParamSchedule  # noqa: E402
from hpcallbacks import batch as B  # noqa: E402
from hpcallbacks import defaults as D  # noqa: E402
from hpcallbacks import finder as F  # noqa: E402
from hpcallbacks import gan as G  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks.advice import HyperparameterWarning  # noqa: E402
from hpcallbacks_hf._engine import inner_optimizer  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# -- the Lightning tests' model and data, as a Trainer takes them ---------------------------------------------
def data(samples, seed=0):
    """The x, y of test_lightning_extras.loader, as a list of dicts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(samples, 1, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(samples)]


class Net(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear, MSE (test_lightning_extras.Net)."""

    def __init__(self, dropout=0.3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(4, 8)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8, 1)
        self.noise_level = 0.0

    def forward(self, x, y=None):
        out = self.head(self.drop(torch.relu(self.body(x))))
        return {"loss": nn.functional.mse_loss(out, y), "logits": out}


def sgd(model, lr=0.123):
    """The Lightning tests' optimizer: SGD lr 0.123, momentum 0.9."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def arguments(tmp_path, **kwargs) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                logging_strategy="no", per_device_train_batch_size=4, num_train_epochs=1, learning_rate=0.123,
                lr_scheduler_type="constant", seed=0, dataloader_num_workers=0, train_sampling_strategy="sequential")
    base.update(kwargs)
    return training_arguments(**base)  # train_sampling_strategy on transformers 4.x too (tests/hf_versions.py)


class Probe(TrainerCallback):
    """Per optimizer update: ``fn(args, state, optimizer)`` (default: the first param group's LR)."""

    def __init__(self, fn=lambda args, state, opt: opt.param_groups[0]["lr"]):
        self.fn = fn
        self.records = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.records.append(self.fn(args, state, inner_optimizer(optimizer)))


def trainer(tmp_path, callbacks, model=None, samples=48, optimizer=None, trainer_class=Trainer, **kwargs):
    model = model if model is not None else Net()
    if optimizer == "sgd":
        optimizer = sgd(model)
    return in_order(trainer_class)(model=model, args=arguments(tmp_path, **kwargs), train_dataset=data(samples),
                         callbacks=callbacks, optimizers=(optimizer, None))


def fit(tmp_path, callbacks, model=None, samples=48, optimizer="sgd", resume=None, **kwargs):
    t = trainer(tmp_path, callbacks, model, samples, optimizer, **kwargs)
    t.train(resume_from_checkpoint=resume)
    return t


def hf_reference_lrs(name, lr, steps):
    """The per-update LRs of ``transformers.get_scheduler`` on a one-parameter optimizer."""
    from transformers import get_scheduler

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = get_scheduler(name, opt, num_warmup_steps=0, num_training_steps=steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# ---------------------------------------------------------------------------------------------
# batch size (H4)
def test_gradient_accumulation_reaches_the_target_and_the_schedules_count_updates(tmp_path):
    probe = Probe(lambda args, state, opt: (state.global_step, args.gradient_accumulation_steps,
                                            opt.param_groups[0]["lr"]))
    accumulation = H.GradientAccumulation(12)
    t = fit(tmp_path, [H.CosineDecay(), accumulation, probe], num_train_epochs=2)
    assert t.args.gradient_accumulation_steps == 3 and t.state.max_steps == 8  # 12 batches per epoch -> 4 updates
    assert [r[0] for r in probe.records] == list(range(8)) and {r[1] for r in probe.records} == {3}
    core = D.build("CosineDecay", {}, D.RunFacts(learning_rate=0.123, steps_per_epoch=4, total_steps=8))
    assert [r[2] for r in probe.records] == pytest.approx(core.curve(8))  # the LR advances once per update
    assert accumulation.state()["attributes"]["accumulation_config"]["steps"] == 3
    # HF's own schedule follows the new update count too
    probe = Probe()
    fit(tmp_path, [H.GradientAccumulation(12), probe], num_train_epochs=2, lr_scheduler_type="linear")
    assert probe.records == pytest.approx(hf_reference_lrs("linear", 0.123, 8))


def test_gradient_accumulation_refuses_or_reports_an_inexact_target(tmp_path):
    with pytest.raises(ValueError, match=r"must be a multiple of .* = 4 .* got 10 \(nearest reachable: 8 or 12"):
        trainer(tmp_path, [H.GradientAccumulation(10)])
    with pytest.warns(UserWarning, match="target_batch_size=10 is not reachable .* effective batch of 8"):
        t = trainer(tmp_path, [H.GradientAccumulation(10, exact=False)])
    assert t.args.gradient_accumulation_steps == 2
    with pytest.raises(ValueError, match=r"TrainingArguments\(gradient_accumulation_steps=2\) and the "
                                         "GradientAccumulation"):
        trainer(tmp_path, [H.GradientAccumulation(12)], gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="per_device_batch_size=8 but the Trainer's batch per process is 4"):
        trainer(tmp_path, [H.GradientAccumulation(16, per_device_batch_size=8)])
    late = trainer(tmp_path, [])
    late.add_callback(H.GradientAccumulation(8))
    with pytest.raises(ValueError, match=r"pass it in Trainer\(callbacks=\[...\]\)"):
        late.train()
    again = trainer(tmp_path, [H.GradientAccumulation(8)])
    assert Trainer(model=Net(), args=again.args, train_dataset=data(8), callbacks=[H.GradientAccumulation(8)]
                   ).args.gradient_accumulation_steps == 2  # the same arguments object serves another Trainer


def test_scale_learning_rate_alone_is_the_core_rule_with_warmup(tmp_path):
    probe = Probe()  # lr_scheduler_type="constant": the numbers of Lightning's ScaleLearningRate alone
    fit(tmp_path, [H.ScaleLearningRate(base_batch_size=2, warmup_epochs=1), probe], num_train_epochs=2,
        per_device_train_batch_size=8)  # 6 updates per epoch
    lr = B.scale_learning_rate(0.123, 2, 8)  # x4
    core = B.scaling_warmup(S.Constant(lr), 2, 8, steps_per_epoch=6, warmup_epochs=1)
    assert probe.records == pytest.approx(core.curve(12))
    assert probe.records[0] == pytest.approx(0.123) and probe.records[6:] == pytest.approx([lr] * 6)


@pytest.mark.parametrize("restore", [False, True], ids=["restore-off", "restore-on"])
def test_scale_learning_rate_survives_resume(tmp_path, restore):
    def run(out, resume=None, base=2):
        probe = Probe()
        fit(out, [H.ScaleLearningRate(base_batch_size=base, warmup_epochs=1), H.CosineDecay(), probe],
            num_train_epochs=2, per_device_train_batch_size=8, save_strategy="steps", save_steps=3, resume=resume,
            restore_callback_states_from_checkpoint=restore)
        return probe.records

    full = run(tmp_path / "full")
    assert run(tmp_path / "resumed", str(tmp_path / "full" / "checkpoint-3")) == pytest.approx(full[3:], rel=1e-12)
    if restore:
        return
    plateau = Trainer(model=Net(), train_dataset=data(8), eval_dataset=data(8), callbacks=[H.ScaleLearningRate(2)],
                      args=arguments(tmp_path, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="epoch"))
    with pytest.raises(ValueError, match="ScaleLearningRate multiplies .* use the ReduceOnPlateau callback"):
        plateau.train()


def test_scale_learning_rate_multiplies_a_schedule_and_sees_the_accumulation(tmp_path):
    probe = Probe()
    fit(tmp_path, [H.CosineRestart(), H.GradientAccumulation(8), H.ScaleLearningRate(base_batch_size=32, rule="sqrt",
                                                                                     warmup_epochs=0), probe],
        num_train_epochs=2)
    k = B.scale_learning_rate(1.0, 32, 8, rule="sqrt")  # 0.5: a smaller batch, no warmup
    assert probe.records == pytest.approx([S.CosineRestart(0.123, 6)(t) * k for t in range(12)])


RAMP = B.BatchRamp(S.PiecewiseConstantDecay([11, 23], [0.1, 0.05, 0.025]), base_batch_size=4, max_batch_size=12,
                   per_device_batch_size=4)


def ramp_probe():
    return Probe(lambda args, state, opt: (int(state.epoch), args.gradient_accumulation_steps,
                                           opt.param_groups[0]["lr"]))


def test_batch_ramp_grows_the_batch_at_epoch_starts_and_keeps_the_noise_scale(tmp_path):
    probe, callback = ramp_probe(), H.BatchRamp(RAMP)
    fit(tmp_path, [callback, probe], num_train_epochs=3, save_strategy="steps", save_steps=6)
    # epoch 0: t=0, B=4 (12 updates) -> t=12: lr 0.05 -> B=8, 6 updates -> t=24: lr 0.025 -> B=16 capped at 12
    assert [(e, a) for e, a, _ in probe.records] == [(0, 1)] * 12 + [(1, 2)] * 6 + [(2, 3)] * 4
    lrs = [lr for *_, lr in probe.records]
    assert lrs == pytest.approx([0.1] * 18 + [0.075] * 4)  # beyond the cap the LR decays: 0.025 * 12 / 4
    assert lrs[0] == RAMP.learning_rate(0) and lrs[12] == RAMP.learning_rate(12) and lrs[18] == RAMP.learning_rate(24)
    assert callback.samples == 12 * 4 + 6 * 8 + 4 * 12
    # resume from the checkpoint at the end of epoch 0 (before the batch grew): the same accumulation and LRs
    for restore in (False, True):
        resumed = ramp_probe()
        fit(tmp_path / f"again{restore}", [H.BatchRamp(RAMP), resumed], num_train_epochs=3,
            resume=str(tmp_path / "checkpoint-12"), restore_callback_states_from_checkpoint=restore)
        assert resumed.records == probe.records[12:]
    # after the growth HF would resume at the wrong place: refused, naming what to do
    with pytest.raises(ValueError, match="written after the batch grew to 8.*resume from a checkpoint written before"):
        fit(tmp_path / "late", [H.BatchRamp(RAMP)], num_train_epochs=3, resume=str(tmp_path / "checkpoint-18"))


def test_batch_ramp_must_match_the_run(tmp_path):
    ramp = B.BatchRamp(S.Constant(0.1), base_batch_size=16, max_batch_size=64, per_device_batch_size=8)
    with pytest.raises(ValueError, match=r"per_device_batch_size=4, world_size=1"):
        trainer(tmp_path, [H.BatchRamp(ramp)])
    ok = B.BatchRamp(S.Constant(0.1), base_batch_size=4, max_batch_size=8)
    with pytest.raises(ValueError, match="BatchRamp and GradientAccumulation both set the accumulation"):
        trainer(tmp_path, [H.BatchRamp(ok), H.GradientAccumulation(8)])
    with pytest.raises(ValueError, match="ScaleLearningRate and BatchRamp"):
        fit(tmp_path, [H.BatchRamp(ok), H.ScaleLearningRate(4)])
    with pytest.raises(ValueError, match="num_train_epochs, not max_steps=5"):
        trainer(tmp_path, [H.BatchRamp(ok)], max_steps=5)
    with pytest.raises(ValueError, match=r"callbacks holds 2 learning-rate schedules \(BatchRamp, CosineRestart\)"):
        fit(tmp_path, [H.BatchRamp(ok), H.CosineRestart()])


# ---------------------------------------------------------------------------------------------
# any hyperparameter on a schedule
def test_param_scheduler_sets_momentum_dropout_and_an_attribute_per_update(tmp_path):
    momentum = S.Cyclic(0.85, 0.95, step_size_up=3)
    drop = S.PolynomialDecay(0.5, decay_steps=6, end_learning_rate=0.1)
    noise = S.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.5)
    model = Net()
    probe = Probe(lambda args, state, opt: (state.global_step, opt.param_groups[0]["momentum"], model.drop.p,
                                            model.noise_level))
    t = fit(tmp_path, [H.ParamScheduler({"optimizer.momentum": momentum, "model.drop": drop},
                                        ParamSchedule("noise_level", noise)), probe], model=model,
            gradient_accumulation_steps=2, logging_strategy="steps", logging_steps=2)
    assert [r[0] for r in probe.records] == list(range(6))
    for step, m, p, n in probe.records:
        assert (m, p, n) == (momentum(step), drop(step), noise(step))  # exactly the schedule, per update
    rows = [h for h in t.state.log_history if "loss" in h]
    assert [r["param/optimizer.momentum"] for r in rows] == [momentum(1), momentum(3), momentum(5)]


def test_param_scheduler_on_adamw_betas_and_the_decay_groups_hf_builds(tmp_path):
    beta = S.Cyclic(0.85, 0.95, step_size_up=4)
    decay = S.PolynomialDecay(1e-4, decay_steps=12, end_learning_rate=0.0)
    probe = Probe(lambda args, state, opt: [(g["betas"], g["weight_decay"]) for g in opt.param_groups])
    fit(tmp_path, [H.ParamScheduler({"momentum": beta, "weight_decay": decay, "beta_2": 0.99}), probe],
        optimizer=None, learning_rate=1e-3, weight_decay=1e-4)  # the Trainer's AdamW: a decay and a no-decay group
    assert len(probe.records) == 12
    for step, ((b0, wd0), (b1, wd1)) in enumerate(probe.records):
        assert b0 == b1 == (beta(step), 0.99)  # "momentum" of AdamW is beta_1
        assert wd0 == decay(step) and wd1 == 0.0  # HF's no-decay group (biases) stays without decay


def test_param_scheduler_reaches_the_groups_discriminative_lr_makes(tmp_path):
    momentum = S.Cyclic(0.85, 0.95, step_size_up=3)
    probe = Probe(lambda args, state, opt: (len(opt.param_groups), {g["momentum"] for g in opt.param_groups}))
    fit(tmp_path, [H.ParamScheduler({"momentum": momentum}), H.DiscriminativeLR(0.5, groups=["body", "head"]), probe])
    assert all(n == 2 and values == {momentum(t)} for t, (n, values) in enumerate(probe.records))


@pytest.mark.parametrize("schedules, message", [
    ({"model.nope": 0.1}, "'model.nope': 'nope' of the model is no attribute"),
    ({"model.body.weight": 0.1}, "a Parameter, not a number"),
    ({"optimizer.lr": 0.1}, "is a learning rate"),
    ({"optimizer.betas_3": 0.1}, "no param group of SGD has 'betas_3'"),
    ({"optimizer.1.momentum": 0.9}, "names optimizer 1 but the Trainer has 1"),
    ({"momentum": S.Constant(1.5)}, "'momentum' must stay in \\[0, 1\\]"),
    ({"model.drop": S.PolynomialDecay(1.2, 10, 0.0)}, "'model.drop' must stay in \\[0, 1\\]"),
    ({"momentum": 0.9, "optimizer.momentum": 0.8}, "set the same value"),
])
def test_param_scheduler_bad_targets_raise_at_train_begin(tmp_path, schedules, message):
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        fit(tmp_path, [H.ParamScheduler(schedules)], model=model)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


# ---------------------------------------------------------------------------------------------
# GAN (H7): the schedules used from a custom compute_loss
class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = nn.Linear(2, 4)
        self.discriminator = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))

    def forward(self, x, y=None):
        return {"loss": self.discriminator(x).mean()}


class GanTrainer(Trainer):
    """A discriminator update per optimizer update: real and generated samples, scheduled targets."""

    seen: list

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real = inputs["x"]
        n = real.shape[0]
        noise = H.InstanceNoise.of(self)
        smooth, flip = H.LabelSmoothing.of(self), H.LabelFlip.of(self)
        fake = model.generator(torch.randn(n, 2))
        labels = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)])
        targets = smooth.targets(flip.targets(labels))
        logits = model.discriminator(noise.apply(torch.cat([real, fake.detach()])))
        self.seen.append((self.state.global_step, noise.step, noise.std, targets.squeeze(1).tolist()))
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def gan_callbacks(optimizer=None):
    return [H.InstanceNoise(S.PolynomialDecay(0.5, decay_steps=4, end_learning_rate=0.0), optimizer=optimizer),
            H.LabelSmoothing(0.9, optimizer=optimizer), H.LabelFlip(0.3, seed=5, optimizer=optimizer)]


def gan_fit(tmp_path, callbacks, samples=24, **kwargs):
    t = trainer(tmp_path, callbacks, model=Discriminator(), samples=samples, optimizer=None, trainer_class=GanTrainer,
                learning_rate=1e-4, **kwargs)
    t.seen = []
    t.train()
    return t


def test_gan_schedules_count_updates_in_a_custom_compute_loss(tmp_path):
    t = gan_fit(tmp_path, gan_callbacks(optimizer=0), num_train_epochs=2, logging_strategy="steps", logging_steps=4)
    noise = G.InstanceNoise(S.PolynomialDecay(0.5, decay_steps=4, end_learning_rate=0.0))
    smooth, flip = G.LabelSmoothing(0.9), G.LabelFlip(0.3, seed=5)
    assert [s[1] for s in t.seen] == [s[0] for s in t.seen] == list(range(12))  # one per update
    for _, step, std, targets in t.seen:
        assert std == noise.std(step)
        assert targets == pytest.approx(smooth.targets(step, flip.targets(step, [1.0] * 4 + [0.0] * 4)))
    assert any(s[3][:4] != [0.9] * 4 for s in t.seen)  # some labels were flipped
    rows = [h for h in t.state.log_history if "loss" in h]
    assert [r["instance_noise_std"] for r in rows] == [noise.std(3), noise.std(7), noise.std(11)]  # the last update's
    assert all(r["label_flip_probability"] == 0.3 for r in rows)


def test_label_flips_number_the_samples_of_the_whole_update(tmp_path):
    """With accumulation, the micro-batches of one update are parts of one batch: they flip different samples."""
    t = gan_fit(tmp_path, gan_callbacks(), gradient_accumulation_steps=3)
    core = G.LabelFlip(0.3, seed=5)
    smooth = G.LabelSmoothing(0.9)
    for update in range(2):
        parts = [targets for step, _, _, targets in t.seen if step == update]  # 4 real + 4 fake labels each
        assert len(parts) == 3
        whole = smooth.targets(update, core.targets(update, ([1.0] * 4 + [0.0] * 4) * 3))
        assert sum(parts, []) == pytest.approx(whole)


def test_gan_callback_lookup_and_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no InstanceNoise callback"):
        H.InstanceNoise.of(trainer(tmp_path, []))
    with pytest.raises(ValueError, match="real must be"):
        H.LabelSmoothing(real=0.4)
    with pytest.raises(ValueError, match="seed must be"):
        H.LabelFlip(0.1, seed=-1)
    with pytest.raises(ValueError, match="optimizer must be None or 0: the HF Trainer steps one optimizer"):
        H.InstanceNoise(0.1, optimizer=1)


# ---------------------------------------------------------------------------------------------
# the advisor (H2)
def advise(tmp_path, callback, model=None, optimizer=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HyperparameterWarning)
        fit(tmp_path, [*kw.pop("extra", []), callback], model=model, optimizer=optimizer, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, HyperparameterWarning)]


def test_advisor_warns_on_adamw_lr_0_1_and_is_silent_in_range(tmp_path):
    advisor = H.HyperparameterAdvisor()  # the Trainer's own AdamW, from TrainingArguments
    found = advise(tmp_path, advisor, learning_rate=0.1, max_steps=1)
    assert len(found) == 1 and "learning_rate = 0.1; recommended [1e-3, 1e-2]" in found[0]
    assert advisor.values["optimizer"] == "adamw" and advisor.values["batch_size"] == 4
    assert advisor.values["dropout_rates"] == [0.3] and advisor.values["beta_1"] == 0.9
    assert advisor.values["epsilon"] == 1e-8 and advisor.values["weight_decay"] == 0.0
    quiet = H.HyperparameterAdvisor()
    assert advise(tmp_path, quiet, learning_rate=1e-3, max_steps=1) == [] and quiet.findings == []
    # SGD momentum 0.9 at 0.123 is out of [1e-3, 1e-2]; the effective batch includes the accumulation
    model = Net()
    sgd_advisor = H.HyperparameterAdvisor()
    found = advise(tmp_path, sgd_advisor, model=model, optimizer=sgd(model), extra=[H.GradientAccumulation(2048)],
                   samples=2048, per_device_train_batch_size=512)
    assert sgd_advisor.values["batch_size"] == 2048
    assert {f.row for f in sgd_advisor.findings} >= {"learning_rate_sgd_momentum", "batch_size"} and len(found) == 2
    # the schedule's peak LR is what is checked
    peak = H.HyperparameterAdvisor()
    assert advise(tmp_path, peak, learning_rate=1e-3, extra=[H.OneCycle(max_lr=0.5)])
    assert peak.values["learning_rate"] > 0.4


def test_advisor_fine_tuning_strict_and_a_berts_dropout(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    tuned = H.HyperparameterAdvisor()  # a StagedUnfreeze makes it a fine-tuning run: 1e-2 is too high then
    unfreeze = H.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["body", "head"])
    found = advise(tmp_path, tuned, learning_rate=1e-2, extra=[unfreeze], num_train_epochs=2)
    assert tuned.values["fine_tuning"] and [f.row for f in tuned.findings] == ["learning_rate_fine_tuning"]
    assert len(found) == 1 and "lowered by 1 to 2 orders of magnitude" in found[0]
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="strict=True.*learning_rate = 0.1"):
        fit(tmp_path, [H.HyperparameterAdvisor(strict=True)], model=model, optimizer=None, learning_rate=0.1)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # before any update
    with pytest.raises(ValueError, match="from_scratch_learning_rate is used only when fine-tuning"):
        H.HyperparameterAdvisor(fine_tuning=False, from_scratch_learning_rate=0.1)
    with pytest.raises(ValueError, match="pass fine_tuning=True"):
        fit(tmp_path, [H.HyperparameterAdvisor(from_scratch_learning_rate=0.1)], optimizer=None, learning_rate=1e-3)
    # a transformer's dropout comes from its config (hidden_dropout_prob 0.1: outside [0.2, 0.5], an info)
    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=16,
                                                    max_position_embeddings=16, num_labels=2))
    advisor = H.HyperparameterAdvisor()
    tokens = [{"input_ids": torch.arange(1, 7), "labels": torch.tensor(i % 2)} for i in range(8)]
    Trainer(model=bert, args=arguments(tmp_path, learning_rate=1e-3, max_steps=1), train_dataset=tokens,
            callbacks=[advisor]).train()
    assert 0.1 in advisor.values["dropout_rates"] and "dropout_rates[0]" in {f.parameter for f in advisor.findings}
    assert all(f.severity == "info" for f in advisor.findings)


class TwoLosses(Trainer):
    """Logs two loss terms of very different sizes from compute_loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_a = model(**inputs)["loss"]
        loss_b = 1e4 * (1.0 + model.head.weight.pow(2).sum())
        if self.model.training:
            self.log({"loss_a": loss_a.item(), "loss_b": loss_b.item()})
        weights = H.LossBalance.of(self).weights if any(isinstance(c, H.LossBalance)
                                                        for c in self.callback_handler.callbacks) else {}
        return loss_a + 1e-6 * weights.get("loss_b", 1.0) * loss_b


def balance_fit(tmp_path, callback, **kwargs):
    t = trainer(tmp_path, [callback], optimizer=None, trainer_class=TwoLosses, learning_rate=1e-3, samples=16,
                **kwargs)
    t.train()
    return t


def test_loss_balance_reports_imbalance_and_suggests_weights(tmp_path):
    balance = H.LossBalance(terms=("loss_a", "loss_b"))
    with pytest.warns(HyperparameterWarning, match="'loss_b' .* is .* times 'loss_a'"):
        balance_fit(tmp_path, balance, num_train_epochs=2)
    assert balance.weights["loss_a"] == 1.0 and balance.weights["loss_b"] < 0.01
    assert balance.weights["loss_b"] == pytest.approx(balance.values["loss_a"] / balance.values["loss_b"])
    assert balance.state()["attributes"]["weights"] == balance.weights
    with pytest.raises(ValueError, match="strict=True"):
        balance_fit(tmp_path, H.LossBalance(("loss_a", "loss_b"), strict=True))
    with pytest.warns(UserWarning, match=r"term\(s\) \['loss_c'\] were not logged"):
        balance_fit(tmp_path, H.LossBalance(("loss_a", "loss_c")))


# ---------------------------------------------------------------------------------------------
# the range test
class Snapshot(TrainerCallback):
    def __init__(self):
        self.params = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.params = {k: v.detach().clone() for k, v in model.state_dict().items()}


def reference_range_test(model, samples, num_steps):
    """The core's RangeTest in a plain torch loop: full-batch SGD lr 0.01 updates at the test's LRs."""
    batch = data(samples)
    x, y = torch.stack([b["x"] for b in batch]), torch.stack([b["y"] for b in batch])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    test = F.RangeTest(F.lr_range(1e-5, 10.0, num_steps))
    for t in range(num_steps):
        opt.param_groups[0]["lr"] = test.lr(t)
        opt.zero_grad()
        loss = model(x, y)["loss"]
        loss.backward()
        opt.step()
        if test.record(float(loss.detach())):
            break
    return test.result()


def test_lr_finder_restores_weights_bit_identically_and_suggests_in_range(tmp_path):
    before, after = Snapshot(), Snapshot()
    finder = H.LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=60, plot=tmp_path / "range.png")
    model = Net(dropout=0.0)
    fit(tmp_path, [before, finder, after], model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        samples=64, per_device_train_batch_size=64, max_steps=1)  # full batch: a smooth curve
    assert all(torch.equal(before.params[k], after.params[k]) for k in before.params)  # bit-identical
    result = finder.result
    assert result.stopped_early and len(result.losses) < 60  # SGD on the regression diverges at large LRs
    assert 1e-2 < finder.suggestion < result.learning_rates[-1] / 2  # on the steep part of the curve
    assert min(result.losses) < result.losses[0] / 10
    assert (tmp_path / "range.png").stat().st_size > 1000
    reference = reference_range_test(Net(dropout=0.0), 64, 60)
    assert result.losses == pytest.approx(reference.losses, rel=1e-5) and finder.suggestion == pytest.approx(
        reference.suggestion.learning_rate, rel=1e-6)
    assert finder.state()["attributes"]["result_config"]["suggestion"]["learning_rate"] == finder.suggestion

    def final(callbacks):
        m = Net()  # dropout on: the RNG is restored too
        fit(tmp_path, callbacks, model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), samples=64,
            per_device_train_batch_size=8, num_train_epochs=2, train_sampling_strategy="random")
        return [p.detach().clone() for p in m.parameters()]

    plain, tested = final([]), final([H.LRFinder(num_steps=20)])
    assert all(torch.equal(a, b) for a, b in zip(plain, tested))  # the run goes on as if no test had happened


class Forwards(TrainerCallback):
    """Counts the model's forward calls during on_train_begin (the range test's)."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))


@pytest.mark.parametrize("restore", [False, True], ids=["restore-off", "restore-on"])
def test_lr_finder_apply_sets_the_runs_lr_and_a_resumed_run_keeps_the_result(tmp_path, restore):
    probe = Probe()
    finder = H.LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=60, apply=True)
    model = Net()
    fit(tmp_path, [H.CosineDecay(), finder, probe], model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        samples=64, per_device_train_batch_size=8, num_train_epochs=2, save_strategy="steps", save_steps=8)
    s = finder.suggestion
    assert probe.records == pytest.approx(S.CosineDecay(s, decay_steps=16).curve(16))  # decays from the suggestion
    model = Net()
    again, forwards, resumed = H.LRFinder(num_steps=60, apply=True), Forwards(model), Probe()
    t = fit(tmp_path / "resumed", [H.CosineDecay(), again, resumed], model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01), samples=64, per_device_train_batch_size=8,
            num_train_epochs=2, resume=str(tmp_path / "checkpoint-8"), restore_callback_states_from_checkpoint=restore)
    found = next(c for c in t.callback_handler.callbacks if isinstance(c, H.LRFinder))  # restore-on: a new one
    assert found.suggestion == s and forwards.calls == 8  # from the checkpoint: no second test, 8 updates of 1 batch
    assert resumed.records == pytest.approx(probe.records[8:])


def test_lr_finder_apply_with_hfs_own_schedule(tmp_path):
    probe = Probe()
    finder = H.LRFinder(min_lr=1e-5, max_lr=10.0, num_steps=30, apply=True)
    model = Net()
    fit(tmp_path, [finder, probe], model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), samples=64,
        per_device_train_batch_size=8, lr_scheduler_type="linear")
    assert probe.records == pytest.approx(hf_reference_lrs("linear", finder.suggestion, 8))


class NanAbove(Net):
    """Net whose loss becomes nan once ``opt``'s learning rate passes ``lr`` (a range test cut short)."""

    def __init__(self, lr):
        super().__init__(dropout=0.0)
        self.nan_above, self.opt = lr, None

    def forward(self, x, y=None):
        out = super().forward(x, y)
        if self.opt.param_groups[0]["lr"] > self.nan_above:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_lr_finder_warns_once_when_a_nan_loss_cuts_the_test_short_and_still_applies_it(tmp_path):
    finder = H.LRFinder(min_lr=1e-4, max_lr=10.0, num_steps=30, apply=True)  # lr > 1e-2 from point 13 on
    model = NanAbove(1e-2)
    model.opt = torch.optim.SGD(model.parameters(), lr=0.001)
    with pytest.warns(HyperparameterWarning) as caught:
        t = fit(tmp_path, [finder], model=model, optimizer=model.opt, samples=64, per_device_train_batch_size=64,
                max_steps=1)
    assert_warned_once_cut_short(caught, finder.result)  # after 13 of 30 points
    assert finder.suggestion <= 1e-2
    assert inner_optimizer(t.optimizer).param_groups[0]["lr"] == pytest.approx(finder.suggestion)  # applied


# ---------------------------------------------------------------------------------------------
# the arguments: the same as Lightning's, refused alike
@pytest.mark.parametrize("make, message", [
    (lambda: H.GradientAccumulation(0), "target_batch_size must be"),
    (lambda: H.GradientAccumulation(8, exact="yes"), "exact must be True or False"),
    (lambda: H.ScaleLearningRate(0), "base_batch_size must be"),
    (lambda: H.ScaleLearningRate(256, rule="log"), "rule must be one of"),
    (lambda: H.ScaleLearningRate(256, warmup_epochs=-1), "warmup_epochs must be"),
    (lambda: H.BatchRamp(S.Constant(0.1)), "ramp must be a hpcallbacks.batch.BatchRamp"),
    (lambda: H.ParamScheduler(), "schedules must name at least one"),
    (lambda: H.ParamScheduler({"1momentum": 0.9}), "name must be a hyperparameter name"),
    (lambda: H.ParamScheduler(["momentum"]), r"schedules\[0\] must be a dict"),
    (lambda: H.InstanceNoise("big"), "schedule must be a hpcallbacks schedule"),
    (lambda: H.HyperparameterAdvisor(strict=1), "strict must be True or False"),
    (lambda: H.LossBalance(terms=("loss",)), "terms must be two or more"),
    (lambda: H.LossBalance(every_n_epochs=0), "every_n_epochs must be"),
    (lambda: H.LossBalance(reference="loss_c"), "reference must be one of"),
    (lambda: H.LRFinder(min_lr=1.0, max_lr=0.1), "max_lr must be"),
    (lambda: H.LRFinder(num_steps=1), "num_steps must be"),
    (lambda: H.LRFinder(method="valley"), "method must be one of"),
    (lambda: H.LRFinder(divergence=1.0), "divergence must be"),
    (lambda: H.LRFinder(apply="yes"), "apply must be True or False"),
    (lambda: H.DiscriminativeLR("fast"), "factors must be"),
    (lambda: H.DiscriminativeLR(0), "factors must be"),
])
def test_bad_arguments_raise_when_built(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_reduce_on_plateau_and_discriminative_lr_take_lightnings_arguments():
    params = list(inspect.signature(H.ReduceOnPlateau).parameters.values())
    assert [p.name for p in params] == ["schedule", "monitor", "factor", "patience", "mode", "min_delta", "cooldown",
                                        "min_lr", "convention", "threshold_mode"]
    assert params[1].default == "val_loss"
    assert H.ReduceOnPlateau(S.Constant(0.1), "val_acc").machine.monitor == "val_acc"  # positional as in Lightning
    assert H.DiscriminativeLR(0.5).factors == LRFactors.layer_decay(0.5)
    assert H.DiscriminativeLR(2.6).factors == LRFactors.geometric(2.6)
    assert H.DiscriminativeLR([1, 2]).factors == LRFactors.explicit([1, 2])
    assert H.DiscriminativeLR(LRFactors.spread(1e-5, 1e-3)).factors == LRFactors.spread(1e-5, 1e-3)


def test_exported_states_rebuild_the_callbacks():
    """HF's restore_callback_states_from_checkpoint rebuilds a callback as type(cb)(**state()["args"])."""
    for callback in (H.GradientAccumulation(12, exact=False), H.ScaleLearningRate(64, "sqrt", 2),
                     H.BatchRamp(RAMP, log=False), H.LossBalance(("a", "b"), 2, True, "b"),
                     H.LRFinder(1e-4, 1.0, 30, "linear", "min_loss", plot="x.png", apply=True)):
        state = callback.state()
        rebuilt = type(callback)(**state["args"])
        assert rebuilt.state() == state


# ---------------------------------------------------------------------------------------------
