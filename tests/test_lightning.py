"""hpcallbacks_lightning in real ``Trainer.fit`` runs (tiny models, CPU).

The shared conformance scenarios (accumulation 1 and 3), Lightning ``BackboneFinetuning``'s bugs
(each shown on the anchor, then fixed), exact resume from ``ckpt_path``, both namespaces,
bad input.
"""
from __future__ import annotations

import copy
import math
import re
import warnings

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")
from conformance import SCENARIOS, Scenario, assert_records_match  # noqa: E402
from torch import nn  # noqa: E402

import hpcallbacks_lightning as HL  # noqa: E402
from hpcallbacks import FreezePlan, LRFactors  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks._versions import at_least  # noqa: E402

#: Lightning before 2.5.3 runs one batch twice when a fit resumes mid-epoch (its "double iteration" bug, fixed by
#: Lightning PR 20775): the resumed run has one update more than the uninterrupted one, with or without hpcallbacks.
REPLAYS_A_BATCH_ON_RESUME = not at_least("lightning", "2.5.3")


def checkpoint_key(callback, Lmod=L):
    """The key a Trainer saves ``callback``'s state under: set when the Trainer's ``setup`` checks its callbacks."""
    trainer = Lmod.Trainer(callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False)
    callback.setup(trainer, None, "validate")
    return callback.state_key

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`.*"),
    pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
    pytest.mark.filterwarnings("ignore:.*`training_step` returned `None`.*"),
    pytest.mark.filterwarnings("ignore:.*Checkpoint directory.*exists and is not empty.*"),
    pytest.mark.filterwarnings("ignore:The provided params to be frozen already exist"),  # the anchor's
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`, callbacks used to create the checkpoint"),
]

FIT = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
           num_sanity_val_steps=0)
QUIET = dict(FIT, logger=False, enable_checkpointing=False)


# ---------------------------------------------------------------------------------------------
# models and data
def loader(samples: int, batch_size: int, in_features: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, in_features, generator=g)
    y = torch.randn(samples, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def make_classes(LM):
    class Stack(LM):
        """``num_groups`` dense layers in ``self.layers``: one layer group each (the conformance model)."""

        def __init__(self, num_groups=3, in_features=4, hidden=4, lr=0.123, configure=None, seed=0):
            super().__init__()
            torch.manual_seed(seed)
            dims = [in_features] + [hidden] * (num_groups - 1) + [1]
            self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False)])
            self.lr = lr
            self.configure = configure

        def forward(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = torch.tanh(x)
            return x

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", 1.0)  # a plateau on purpose

        def configure_optimizers(self):
            if self.configure is not None:
                return self.configure(self)
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    class Backbone(LM):
        """``backbone`` (with BatchNorm) + ``head``: the shape Lightning's BackboneFinetuning needs."""

        def __init__(self, configure=None, seed=0):
            super().__init__()
            torch.manual_seed(seed)
            self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
            self.head = nn.Linear(8, 1)
            self.configure = configure

        def forward(self, x):
            return self.head(self.backbone(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            params = [p for p in self.parameters() if p.requires_grad]  # as BackboneFinetuning asks
            opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
            return opt if self.configure is None else self.configure(opt)

    return Stack, Backbone


Stack, Backbone = make_classes(L.LightningModule)


class Recorder(L.Callback):
    """Per update: (update, LR of each layer group, trainable groups); checks frozen grads are None."""

    def __init__(self, modules=lambda m: list(m.layers)):
        self.modules = modules
        self.records: list = []
        self.start_state = None

    def on_train_start(self, trainer, pl_module):
        self.start_state = copy.deepcopy(trainer.optimizers[0].state_dict())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        lrs, trainable = [], []
        for module in self.modules(pl_module):
            params = list(module.parameters())
            group = next(g for g in optimizer.param_groups if any(q is params[0] for q in g["params"]))
            lrs.append(group["lr"])
            on = all(p.requires_grad for p in params)
            trainable.append(on)
            for p in params:  # frozen: no gradient was computed at all
                assert (p.grad is None) == (not on), f"update {trainer.global_step}: grad of a {'frozen' * (not on)}"
        self.records.append((trainer.global_step, tuple(lrs), tuple(trainable)))


def run_scenario(sc: Scenario, Lmod=L, H=HL, Model=None, recorder_cls=Recorder):
    rec = recorder_cls()
    callbacks = [H.LearningRateSchedule(sc.schedule)]
    if sc.plan is not None:
        callbacks.append(H.StagedUnfreeze(sc.plan))
    trainer = Lmod.Trainer(max_epochs=sc.epochs, accumulate_grad_batches=sc.accumulation,
                           callbacks=callbacks + [rec], **QUIET)
    model = (Model or Stack)(sc.num_groups, sc.in_features, sc.hidden, seed=sc.seed)
    trainer.fit(model, loader(sc.samples, sc.batch_size, sc.in_features, sc.seed))
    return rec.records


ALL = SCENARIOS + [s.with_accumulation(3) for s in SCENARIOS]


@pytest.mark.parametrize("sc", ALL, ids=[s.name for s in ALL])
def test_conformance(sc):
    assert_records_match(sc, run_scenario(sc))


def test_pytorch_lightning_namespace():
    pl = pytest.importorskip("pytorch_lightning")
    import hpcallbacks_lightning.pl as HLpl

    assert isinstance(HLpl.StagedUnfreeze(), pl.Callback) and isinstance(HL.StagedUnfreeze(), L.Callback)
    assert checkpoint_key(HLpl.StagedUnfreeze(), pl) == checkpoint_key(HL.StagedUnfreeze())  # interchangeable
    PlStack, _ = make_classes(pl.LightningModule)

    class PlRecorder(Recorder, pl.Callback):
        pass

    sc = SCENARIOS[3].with_accumulation(3)  # gradual unfreeze with factors
    assert_records_match(sc, run_scenario(sc, Lmod=pl, H=HLpl, Model=PlStack, recorder_cls=PlRecorder))


# ---------------------------------------------------------------------------------------------
# defaults from the run, plateau composition, logging
def lrs_of(callbacks, epochs=2, samples=24, batch_size=4, accumulation=1, **kw):
    rec = Recorder()
    trainer = L.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulation, callbacks=[*callbacks, rec],
                        **{**QUIET, **kw})
    trainer.fit(Stack(), loader(samples, batch_size), kw.pop("val", None))
    return [r[1][-1] for r in rec.records], trainer


def test_family_defaults_come_from_the_optimizer_and_the_run():
    # CosineRestart(): restarts after the first epoch (6 updates), from the optimizer's LR 0.123
    lrs, _ = lrs_of([HL.CosineRestart()], epochs=3)
    assert lrs == pytest.approx(S.CosineRestart(0.123, first_decay_steps=6).curve(18))
    assert lrs[6] == pytest.approx(0.123)
    # CosineDecay(): decays over the whole run (12 updates with accumulation 2 over 2 epochs)
    lrs, _ = lrs_of([HL.CosineDecay(alpha=0.1)], epochs=2, samples=48, accumulation=2)
    assert lrs == pytest.approx(S.CosineDecay(0.123, decay_steps=12, alpha=0.1).curve(12))
    lrs, _ = lrs_of([HL.OneCycle(max_lr=0.5)], epochs=2)
    assert lrs == pytest.approx(S.OneCycle(0.5, total_steps=12).curve(12))


FAMILY_ARGS = {"PiecewiseConstantDecay": {"boundaries": [3, 7], "values": [0.05, 0.02, 0.01]},
               "MultiStepDecay": {"milestones": [4, 8]}}


@pytest.mark.parametrize("name", sorted(HL.callbacks.FAMILY_MIXINS))
def test_every_family_callback_matches_the_core_rule(name):
    """``Family()`` builds hpcallbacks.defaults' schedule from the run (LR 0.123, 6 updates per epoch, 12 in all),
    the same as the other adapters: e.g. ExponentialDecay() ends 10x lower, Cyclic keeps step_size_up=2000."""
    from hpcallbacks import defaults as D

    given = FAMILY_ARGS.get(name, {})
    lrs, _ = lrs_of([getattr(HL, name)(**given)], epochs=2, samples=48, accumulation=2)
    core = D.build(name, given, D.RunFacts(learning_rate=0.123, steps_per_epoch=6, total_steps=12))
    assert lrs == pytest.approx(core.curve(12), rel=1e-12, abs=1e-15)
    if name == "ExponentialDecay":
        assert core == S.ExponentialDecay(0.123, decay_steps=12, decay_rate=0.1)
    if name == "Cyclic":
        assert core.step_size_up == 2000


def test_reduce_on_plateau_multiplies_the_schedule():
    plateau = HL.ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=1)
    rec = Recorder()
    trainer = L.Trainer(max_epochs=4, callbacks=[HL.CosineRestart(0.1, first_decay_steps=4), plateau, rec], **QUIET)
    trainer.fit(Stack(), loader(24, 4), loader(8, 4))
    core = S.ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=1)
    factors = []
    for _ in range(4):
        factors.append(core.current_factor)
        core.update(1.0)
    expected = [S.CosineRestart(0.1, 4)(t) * factors[t // 6] for t in range(24)]
    assert [r[1][-1] for r in rec.records] == pytest.approx(expected)
    assert factors[-1] < 1


def test_reduce_on_plateau_alone_reduces_the_optimizer_lr():
    rec = Recorder()
    trainer = L.Trainer(max_epochs=3, callbacks=[HL.ReduceOnPlateau(factor=0.1, patience=0), rec], **QUIET)
    trainer.fit(Stack(), loader(8, 4), loader(8, 4))
    assert [r[1][-1] for r in rec.records] == pytest.approx([0.123, 0.123, 0.123, 0.123, 0.0123, 0.0123])


def test_group_lrs_and_trainable_count_are_logged_with_group_names(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    monitor = LearningRateMonitor(logging_interval="step")
    plan = FreezePlan.gradual(factors=LRFactors.geometric(2.0))
    trainer = L.Trainer(max_epochs=3, log_every_n_steps=1, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                        callbacks=[HL.CosineRestart(), HL.StagedUnfreeze(plan), monitor], **FIT)
    trainer.fit(Stack(), loader(24, 4))
    assert {"lr/layers.0", "lr/layers.1", "lr/layers.2", "trainable_groups", "lr"} <= set(trainer.logged_metrics)
    assert float(trainer.logged_metrics["trainable_groups"]) == 3.0
    assert set(monitor.lrs) == {"lr-SGD/layers.0", "lr-SGD/layers.1", "lr-SGD/layers.2"}  # named, not pgN


# ---------------------------------------------------------------------------------------------
# Lightning BackboneFinetuning's bugs: each shown on the anchor, then gone with hpcallbacks
def linear_params(model):
    """The backbone's Linear weights (its BatchNorm weights train under BackboneFinetuning's train_bn=True)."""
    return [p for i in (0, 3) for p in model.backbone[i].parameters()]


def backbone_params(model):
    return [p.detach().clone() for p in linear_params(model)]


def changed(before, model):
    return any(not torch.equal(a, b) for a, b in zip(before, linear_params(model), strict=True))


def _fit(model, callbacks, epochs, ckpt=None, **kw):
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, **{**QUIET, **kw})
    trainer.fit(model, loader(16, 4), ckpt_path=ckpt)
    return trainer


@pytest.mark.parametrize("ours", [False, True], ids=["BackboneFinetuning", "StagedUnfreeze"])
def test_resume_after_unfreeze_keeps_training_the_backbone(tmp_path, ours):
    from lightning.pytorch.callbacks import BackboneFinetuning

    def callback():
        if ours:
            return HL.StagedUnfreeze(FreezePlan.head_then_all(head_epochs=1), groups=["backbone", "head"])
        return BackboneFinetuning(unfreeze_backbone_at_epoch=1)

    trainer = _fit(Backbone(), [callback()], epochs=2)
    path = tmp_path / "after-unfreeze.ckpt"
    trainer.save_checkpoint(path)
    model = Backbone()
    before = None

    class Snapshot(L.Callback):
        def on_train_start(self, trainer, pl_module):
            nonlocal before
            before = backbone_params(pl_module)

    _fit(model, [callback(), Snapshot()], epochs=3, ckpt=str(path))
    if ours:
        assert changed(before, model) and all(p.requires_grad for p in linear_params(model))
    else:  # the bug (Lightning #21901): requires_grad is not restored, the backbone silently stops training
        assert not changed(before, model) and not any(p.requires_grad for p in linear_params(model))


def _lambda(opt):
    return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)}


def _one_cycle(opt):
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=12)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _plateau(opt):
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0, min_lr=[0.0])
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train_loss"}}


# The anchor's failure by torch release: from 2.10 torch zips a scheduler's lists with the param groups strictly
# (LambdaLR: ValueError); before, LambdaLR silently leaves the added group unscheduled and ReduceLROnPlateau
# indexes past its min_lrs (IndexError). None: the anchor trains without an error (and without the schedule).
_STRICT_ZIP = at_least("torch", "2.10")
SCHEDULERS = {"LambdaLR": (_lambda, ValueError if _STRICT_ZIP else None), "OneCycleLR": (_one_cycle, KeyError),
              "ReduceLROnPlateau": (_plateau, RuntimeError if _STRICT_ZIP else IndexError)}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_torch_lr_schedulers_survive_the_unfreeze(name):
    from lightning.pytorch.callbacks import BackboneFinetuning

    configure, error = SCHEDULERS[name]
    if error is None:  # the anchor: the scheduler never learns of the added backbone group
        anchor = _fit(Backbone(configure), [BackboneFinetuning(unfreeze_backbone_at_epoch=1)], epochs=3)
        scheduled = anchor.lr_scheduler_configs[0].scheduler.base_lrs
        assert len(anchor.optimizers[0].param_groups) == 2 and len(scheduled) == 1
    else:
        with pytest.raises(error):  # the anchor: a param group added mid-run breaks the scheduler
            _fit(Backbone(configure), [BackboneFinetuning(unfreeze_backbone_at_epoch=1)], epochs=3)
    rec = Recorder(modules=lambda m: [m.backbone, m.head])
    model = Backbone(configure)
    plan = FreezePlan.head_then_all(head_epochs=1, factors=LRFactors.explicit([0.1, 1.0]))
    trainer = _fit(model, [HL.StagedUnfreeze(plan, groups=["backbone", "head"]), rec], epochs=3)
    assert [r[2] for r in rec.records] == [(False, True)] * 4 + [(True, True)] * 8
    for _, (backbone_lr, head_lr), _ in rec.records:  # the scheduler runs, the factor composes with it
        assert backbone_lr == pytest.approx(0.1 * head_lr)
    assert len({r[1][1] for r in rec.records}) > 1  # the scheduler did change the LR
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is trainer.optimizers[0]


def test_initial_lr_of_the_unfrozen_backbone_is_what_was_asked():
    """BackboneFinetuning's ``initial_denom_lr`` has no effect (it passes an explicit ``lr`` to
    ``unfreeze_and_add_param_group``, which then ignores the denominator); with hpcallbacks the
    backbone's LR after the unfreeze is the plan's factor x the schedule, whatever was asked."""
    from lightning.pytorch.callbacks import BackboneFinetuning

    def backbone_lr_after_unfreeze(callback):
        rec = Recorder(modules=lambda m: [m.backbone, m.head])
        _fit(Backbone(), [callback, rec], epochs=2)
        return rec.records[-1][1][0]

    anchor = [backbone_lr_after_unfreeze(BackboneFinetuning(unfreeze_backbone_at_epoch=1, initial_denom_lr=d))
              for d in (10.0, 1000.0)]
    assert anchor[0] == anchor[1]  # the bug: a 100x different denominator, the same LR
    ours = [backbone_lr_after_unfreeze(HL.StagedUnfreeze(
        FreezePlan.head_then_all(head_epochs=1, factors=LRFactors.explicit([1 / d, 1.0])), groups=["backbone", "head"]))
        for d in (10.0, 1000.0)]
    assert ours == pytest.approx([0.1 / 10.0, 0.1 / 1000.0])  # the optimizer's LR 0.1 x the asked factor


@pytest.mark.parametrize("ours", [False, True], ids=["BackboneFinetuning", "StagedUnfreeze"])
def test_frozen_batch_norm_statistics_are_untouched(ours):
    from lightning.pytorch.callbacks import BackboneFinetuning

    model = Backbone()
    bn = model.backbone[1]
    mean = bn.running_mean.clone()
    if ours:
        callback = HL.StagedUnfreeze(FreezePlan.head_only(), groups=["backbone", "head"], bn="freeze_stats")
    else:
        callback = BackboneFinetuning(unfreeze_backbone_at_epoch=5, train_bn=False)
    head = model.head.weight.detach().clone()
    _fit(model, [callback], epochs=1)
    assert not torch.equal(head, model.head.weight)
    if ours:
        assert torch.equal(bn.running_mean, mean) and not bn.weight.requires_grad
    else:  # the bug: "frozen" BatchNorm (train_bn=False) still updates its statistics
        assert not torch.equal(bn.running_mean, mean)


def test_swapped_norm_parameters_train():
    # plain torch: a GroupNorm swapped in after the optimizer exists never trains
    model = Backbone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.backbone[1] = nn.GroupNorm(2, 8)
    gn_before = model.backbone[1].weight.detach().clone()
    loss = model(torch.randn(4, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    assert torch.equal(model.backbone[1].weight, gn_before)
    # SwapNorm acts in setup, before configure_optimizers: the new layer trains
    model = Backbone()
    seen = {}

    class Check(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["gn"] = pl_module.backbone[1]
            seen["before"] = pl_module.backbone[1].weight.detach().clone()

    _fit(model, [HL.SwapNorm(to="group", groups=4, reuse_params=False), Check()], epochs=1)
    assert isinstance(seen["gn"], nn.GroupNorm) and seen["gn"].num_groups == 4
    assert not torch.equal(seen["gn"].weight, seen["before"])


def test_freeze_batch_norm_callback():
    model = Backbone()
    bn = model.backbone[1]
    mean = bn.running_mean.clone()
    _fit(model, [HL.FreezeBatchNorm(freeze_affine=True)], epochs=1)
    assert torch.equal(bn.running_mean, mean) and not bn.weight.requires_grad
    assert not torch.equal(model.backbone[0].weight, Backbone().backbone[0].weight)


def test_freeze_batch_norm_layers_skip_and_staged_plans():
    # layers= (as in HF and Keras): only the BatchNorm layers inside those modules
    model = Backbone()
    frozen = HL.FreezeBatchNorm(layers=["backbone"])
    _fit(model, [frozen], epochs=1)
    assert frozen.layers == [model.backbone[1]]
    for callback, message in ((HL.FreezeBatchNorm(layers=["head"]), "no BatchNorm layer to freeze"),
                              (HL.FreezeBatchNorm(skip="backbone"), "no BatchNorm layer to freeze"),
                              (HL.FreezeBatchNorm(layers=["nope"]), "nope")):
        with pytest.raises(ValueError, match=message):
            _fit(Backbone(), [callback], epochs=1)
    with pytest.raises(ValueError, match="layers must be"):
        HL.FreezeBatchNorm(layers="backbone")
    # a StagedUnfreeze stage that trains the BatchNorm's group does not release it
    model = Backbone()
    bn = model.backbone[1]
    mean, weight = bn.running_mean.clone(), bn.weight.detach().clone()
    _fit(model, [HL.StagedUnfreeze(FreezePlan.head_then_all(head_epochs=1), groups=["backbone", "head"]),
                 HL.FreezeBatchNorm()], epochs=2)
    assert torch.equal(bn.running_mean, mean)
    assert not torch.equal(bn.weight, weight)  # freeze_affine=False: gamma trains with its group
    model = Backbone()
    bn = model.backbone[1]
    weight = bn.weight.detach().clone()
    _fit(model, [HL.FreezeBatchNorm(freeze_affine=True),
                 HL.StagedUnfreeze(FreezePlan.head_then_all(head_epochs=1), groups=["backbone", "head"])], epochs=2)
    assert torch.equal(bn.weight, weight) and not bn.weight.requires_grad


def test_discriminative_lr_composes_with_a_torch_scheduler():
    def step_lr(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 3, 0.5),
                                                   "interval": "step"}}

    rec = Recorder()
    trainer = L.Trainer(max_epochs=1, callbacks=[HL.DiscriminativeLR(LRFactors.geometric(2.0)), rec], **QUIET)
    trainer.fit(Stack(configure=step_lr), loader(24, 4))
    expected = [tuple(0.2 * 0.5 ** (t // 3) * f for f in (0.25, 0.5, 1.0)) for t in range(6)]
    assert [r[1] for r in rec.records] == [pytest.approx(e) for e in expected]
    assert all(r[2] == (True, True, True) for r in rec.records)


# ---------------------------------------------------------------------------------------------
# resume: stop at a chosen update, fit(ckpt_path=...) -> identical LRs and trainable sets
def test_resume_mid_epoch_and_at_epoch_end_is_exact(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    sc = Scenario("resume", S.CosineRestart(0.1, first_decay_steps=5),
                  plan=FreezePlan.gradual(every_epochs=1, factors=LRFactors.geometric(2.0)))

    def callbacks():
        return [HL.CosineRestart(0.1, first_decay_steps=5), HL.StagedUnfreeze(sc.plan)]

    rec = Recorder()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = L.Trainer(max_epochs=3, callbacks=[*callbacks(), rec, ckpt], **{**FIT, "logger": False})
    model = Stack()
    trainer.fit(model, loader(24, 4))
    full = rec.records
    assert_records_match(sc, full)
    final = [p.detach().clone() for p in model.parameters()]
    for step in (4, 6, 8, 12):  # mid-epoch (frozen), epoch end = unfreeze boundary, mid-epoch after it, 2nd end
        path = tmp_path / f"step={step}.ckpt"
        resumed = Recorder()
        model = Stack(seed=1)
        trainer = L.Trainer(max_epochs=3, callbacks=[*callbacks(), resumed], **QUIET)
        trainer.fit(model, loader(24, 4), ckpt_path=str(path))
        if REPLAYS_A_BATCH_ON_RESUME:  # Lightning's own extra update at the end: the updates before it still match
            assert len(resumed.records) == len(full) - step + 1, f"resume at update {step}"
            resumed.records = resumed.records[:len(full) - step]
        assert resumed.records == full[step:], f"resume at update {step}"
        saved = torch.load(path, weights_only=True)["optimizer_states"][0]
        assert [g["name"] for g in resumed.start_state["param_groups"]] == [g["name"] for g in saved["param_groups"]]
        for key, state in saved["state"].items():  # momentum of the already-unfrozen groups is back
            assert torch.equal(resumed.start_state["state"][key]["momentum_buffer"], state["momentum_buffer"])
        if step % 6 == 0 and not REPLAYS_A_BATCH_ON_RESUME:  # epoch end: the same data order, the same weights
            for a, b in zip(final, model.parameters(), strict=True):
                torch.testing.assert_close(a, b.detach())


def test_resume_recomputes_the_lengths_derived_from_the_run(tmp_path):
    """The contract: the first run's LR is kept, lengths derived from the run are this run's, and a warning
    gives the LR before and after (here the resumed data is longer: 9 updates per epoch instead of 6)."""
    from hpcallbacks.run import RunWarning

    plan = FreezePlan(stages=[(0, 1), (0.5, 2), (1.5, "all")])

    def callbacks():
        return [HL.CosineRestart(), HL.StagedUnfreeze(plan)]

    trainer = L.Trainer(max_epochs=1, callbacks=callbacks(), **QUIET)
    with pytest.warns(RunWarning, match="stage 2 at update 9"):  # the first run stops before the last stage
        trainer.fit(Stack(), loader(24, 4))
    path = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(path)
    rec = Recorder()
    trainer = L.Trainer(max_epochs=2, callbacks=[*callbacks(), rec], **QUIET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Stack(), loader(36, 4), ckpt_path=str(path))  # 9 updates per epoch now
    notes = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    assert len(notes) == 2, notes
    assert re.search(r"CosineRestart: this run has 18 updates \(9 per epoch\).*first_decay_steps 6.0 -> 9.0.*"
                     r"update 6 is 0.03075 instead of 0.123", notes[0]), notes
    assert re.search(r"StagedUnfreeze: this run has 9 updates per epoch.*stages now start at updates 0, 5, 14",
                     notes[1]), notes
    assert [r[0] for r in rec.records] == list(range(6, 15))
    assert [r[1][-1] for r in rec.records] == pytest.approx(S.CosineRestart(0.123, 9).curve(9, start=6))
    assert [sum(r[2]) for r in rec.records] == [2] * 8 + [3]  # the plan's epochs are 9 updates long now
    with pytest.raises(ValueError, match="groups .* differ from the model's"):
        L.Trainer(max_epochs=2, callbacks=[HL.StagedUnfreeze(groups=[["layers.0", "layers.1"], "layers.2"])],
                  **QUIET).fit(Stack(), loader(24, 4), ckpt_path=str(path))


# ---------------------------------------------------------------------------------------------
# bad input: ValueError naming what to change
def _fit_stack(callbacks, epochs=1, configure=None, **kw):
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, **{**QUIET, **kw})
    trainer.fit(Stack(configure=configure), loader(8, 4))


def _with_scheduler(self):
    opt = torch.optim.SGD(self.parameters(), lr=0.1)
    return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)}


@pytest.mark.parametrize("callbacks, configure, message", [
    (lambda: [HL.StagedUnfreeze(groups=["layers.0", "nope"])], None, "groups[1]='nope' matches no module"),
    (lambda: [HL.StagedUnfreeze(FreezePlan.head_only(head_groups=5))], None, "top 5 groups but the model has only 3"),
    (lambda: [HL.CosineRestart()], _with_scheduler, "return only the optimizer from configure_optimizers"),
    (lambda: [HL.CosineRestart(), HL.CosineDecay()], None, "keep one"),
    (lambda: [HL.CosineRestart(), HL.ReduceOnPlateau(schedule=0.1)], None, "drop schedule="),
    (lambda: [HL.StagedUnfreeze(FreezePlan.gradual(factors=LRFactors.geometric(2.0))),
              HL.DiscriminativeLR(LRFactors.geometric(3.0))], None, "keep one"),
    (lambda: [HL.DiscriminativeLR([1.0, 2.0])], None, "factors has 2 entries but the model has 3 groups"),
])
def test_bad_fit_configurations_raise_at_fit_start(callbacks, configure, message):
    with pytest.raises(ValueError) as e:
        _fit_stack(callbacks(), epochs=2, configure=configure)
    assert message in str(e.value)


@pytest.mark.parametrize("make, message", [
    (lambda: HL.StagedUnfreeze(bn="eval"), "bn must be one of"),
    (lambda: HL.StagedUnfreeze(plan="gradual"), "plan must be a hpcallbacks.FreezePlan"),
    (lambda: HL.StagedUnfreeze(groups="layers"), "groups must be None, a non-empty list"),
    (lambda: HL.PiecewiseConstantDecay(), "PiecewiseConstantDecay needs boundaries, values"),
    (lambda: HL.ExponentialDecay(decay_rate=0), "decay_rate must be"),
    (lambda: HL.CosineRestart(t_mul=0.5), "t_mul must be"),
    (lambda: HL.CosineRestart(initial_learning_rate=-1), "initial_learning_rate must be"),
    (lambda: HL.CosineRestart(nonsense=1), "unexpected keyword argument 'nonsense'"),
    (lambda: HL.LearningRateSchedule("cosine"), "schedule must be a hpcallbacks schedule"),
    (lambda: HL.ReduceOnPlateau(factor=2.0), "factor must be"),
    (lambda: HL.DiscriminativeLR("big"), "factors must be an LRFactors"),
    (lambda: HL.SwapNorm(to="layer"), "to must be one of"),
])
def test_bad_arguments_raise_when_built(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)


def test_discriminative_lr_reads_factors_by_the_core_rule():
    assert HL.DiscriminativeLR(0.5).factors == LRFactors.layer_decay(0.5)  # (0, 1): layer-wise decay
    assert HL.DiscriminativeLR(2.6).factors == LRFactors.geometric(2.6)
    assert HL.DiscriminativeLR([1, 2]).factors == LRFactors.explicit([1, 2])


def test_signatures_read_like_the_core():
    import inspect

    params = inspect.signature(HL.CosineRestart).parameters
    assert list(params)[:5] == ["initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha"]
    assert params["initial_learning_rate"].default is None and params["t_mul"].default == 2.0
    assert repr(HL.CosineRestart(0.1)) .startswith("CosineRestart(initial_learning_rate=0.1")
    assert not math.isnan(HL.CosineRestart().arguments["t_mul"])


# ---------------------------------------------------------------------------------------------
