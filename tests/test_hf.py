"""hpcallbacks_hf through a real ``transformers.Trainer.train()`` on CPU: tiny models, seconds.

* the shared conformance scenarios (``tests/conformance.py``), gradient accumulation 1 and 3;
* one test per bug of issue 6's "Why" list: the naive callback fails, hpcallbacks passes;
* frozen parameters have ``.grad is None`` at ``on_pre_optimizer_step``;
* resume from a checkpoint gives the same LRs and trainable sets as the uninterrupted run,
  with ``restore_callback_states_from_checkpoint`` False and True;
* bad input is a ``ValueError`` at ``on_train_begin`` naming what to change.
"""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conformance import SCENARIOS, Scenario, assert_records_match  # noqa: E402
from hf_versions import LOGS_NEXT_LR  # noqa: E402
from torch import nn  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import hpcallbacks as hp  # noqa: E402
from hpcallbacks import FreezePlan, LRFactors  # noqa: E402
from hpcallbacks._versions import at_least  # noqa: E402
from hpcallbacks_hf import (  # noqa: E402
    CosineDecay,
    CosineRestart,
    DiscriminativeLR,
    FreezeBatchNorm,
    LearningRateSchedule,
    ReduceOnPlateau,
    StagedUnfreeze,
    SwapNorm,
)
from hpcallbacks_hf._engine import inner_optimizer  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# -- tiny models and data -----------------------------------------------------------------------------
class Stack(nn.Module):
    """The conformance model: ``num_groups`` dense layers (one layer group each) and an MSE loss."""

    def __init__(self, num_groups: int = 3, features: int = 4, hidden: int = 4, bn: bool = False) -> None:
        super().__init__()
        dims = [features] + [hidden] * (num_groups - 1) + [features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norm = nn.BatchNorm1d(hidden) if bn else None

    def forward(self, x, y):
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i == 0 and self.norm is not None:
                h = self.norm(h)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return {"loss": ((h - y) ** 2).mean()}


def regression(samples: int, features: int = 4, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    y = torch.roll(x, 1, dims=1) * 0.5
    return [{"x": x[i], "y": y[i]} for i in range(samples)]


def arguments(tmp_path, **kwargs) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                logging_strategy="no", per_device_train_batch_size=4, num_train_epochs=3, learning_rate=0.05,
                seed=0, dataloader_num_workers=0)
    base.update(kwargs)
    return TrainingArguments(**base)


class Recorder(TrainerCallback):
    """Per optimizer update: ``(update, lr of each layer, trainable of each layer)`` and frozen grads."""

    def __init__(self, layers) -> None:
        self.layers = list(layers)
        self.records: list = []
        self.frozen_grads: list = []
        self.grads_of_trainable: list = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        groups = inner_optimizer(optimizer).param_groups
        lrs, trainable = [], []
        for layer in self.layers:
            params = list(layer.parameters())
            group = next(g for g in groups if any(q is params[0] for q in g["params"]))
            lrs.append(float(group["lr"]))
            trains = params[0].requires_grad
            trainable.append(trains)
            for p in params:
                if not p.requires_grad:
                    self.frozen_grads.append(p.grad)
                else:
                    self.grads_of_trainable.append(p.grad is not None)
        self.records.append((state.global_step, tuple(lrs), tuple(trainable)))


def scenario_callbacks(scenario: Scenario) -> list:
    callbacks: list = [LearningRateSchedule(scenario.schedule)]
    if scenario.plan is not None:
        callbacks.append(StagedUnfreeze(scenario.plan))
    return callbacks


def run_scenario(scenario: Scenario, tmp_path) -> Recorder:
    torch.manual_seed(scenario.seed)
    model = Stack(scenario.num_groups, scenario.in_features, scenario.hidden)
    recorder = Recorder(model.layers)
    args = arguments(tmp_path, per_device_train_batch_size=scenario.batch_size, num_train_epochs=scenario.epochs,
                     gradient_accumulation_steps=scenario.accumulation)
    trainer = Trainer(model=model, args=args, train_dataset=regression(scenario.samples, scenario.in_features),
                      callbacks=scenario_callbacks(scenario) + [recorder])
    trainer.train()
    return recorder


# -- conformance -------------------------------------------------------------------------------------
ALL = [s for base in SCENARIOS for s in (base, base.with_accumulation(3))]


@pytest.mark.parametrize("scenario", ALL, ids=[s.name for s in ALL])
def test_conformance(scenario, tmp_path):
    recorder = run_scenario(scenario, tmp_path)
    assert_records_match(scenario, recorder.records)
    assert all(g is None for g in recorder.frozen_grads)
    assert all(recorder.grads_of_trainable)


# -- a tiny BERT built from a config (no download) ----------------------------------------------------
def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def token_data(samples: int = 24, length: int = 6, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (samples, length), generator=g)
    labels = (ids[:, 0] > 20).long()
    return [{"input_ids": ids[i], "attention_mask": torch.ones(length, dtype=torch.long), "labels": labels[i]}
            for i in range(samples)]


def freeze_encoder(model: BertForSequenceClassification) -> None:
    """What users do before building the Trainer: train only the classifier head."""
    for p in model.bert.parameters():
        p.requires_grad_(False)


def bert_layers(model: BertForSequenceClassification) -> list[nn.Module]:
    return [model.bert.embeddings, *model.bert.encoder.layer, model.classifier]


class Snapshots(TrainerCallback):
    """Copies of the watched parameters at the end of every epoch, and grads seen per update."""

    def __init__(self, named: dict[str, nn.Parameter]) -> None:
        self.named = named
        self.epochs: list[dict[str, torch.Tensor]] = []
        self.grad_seen: dict[str, list[bool]] = {k: [] for k in named}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = {k: p.detach().clone() for k, p in self.named.items()}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for k, p in self.named.items():
            self.grad_seen[k].append(p.grad is not None)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epochs.append({k: p.detach().clone() for k, p in self.named.items()})


def test_groups_discovered_on_bert():
    from hpcallbacks.torch import discover_groups

    names = [g.name for g in discover_groups(tiny_bert())]
    assert names == ["embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.encoder.layer.2", "head"]


# -- the bugs of issue 6, "Why" ---------------------------------------------------------------------------
class NaiveUnfreeze(TrainerCallback):
    """The obvious attempt: set requires_grad=True at an epoch, optionally add a param group."""

    def __init__(self, params, at_epoch: int = 1, add_group: bool = False) -> None:
        self.params, self.at_epoch, self.add_group = list(params), at_epoch, add_group

    def on_epoch_begin(self, args, state, control, optimizer=None, **kwargs):
        if round(state.epoch or 0) == self.at_epoch:
            for p in self.params:
                p.requires_grad_(True)
            if self.add_group:
                optimizer.add_param_group({"params": self.params})


def test_bug_frozen_before_trainer_naive_never_updates(tmp_path):
    model = tiny_bert()
    freeze_encoder(model)
    watched = {"layer0": model.bert.encoder.layer[0].attention.self.query.weight}
    snaps = Snapshots(watched)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=2), train_dataset=token_data(),
                      callbacks=[NaiveUnfreeze(model.bert.parameters()), snaps])
    trainer.train()
    # the naive unfreeze computes gradients in epoch 2 (wasted backward, counted in clipping) ...
    assert any(snaps.grad_seen["layer0"][6:])
    # ... but the Trainer's optimizer never held those parameters: they never move
    assert torch.equal(snaps.epochs[-1]["layer0"], snaps.start["layer0"])


def test_bug_frozen_before_trainer_hpcallbacks_updates(tmp_path):
    model = tiny_bert()
    freeze_encoder(model)
    watched = {"layer0": model.bert.encoder.layer[0].attention.self.query.weight,
               "embed": model.bert.embeddings.word_embeddings.weight}
    snaps = Snapshots(watched)
    plan = FreezePlan.head_then_all(head_epochs=1)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=2), train_dataset=token_data(),
                      callbacks=[StagedUnfreeze(plan), snaps])
    trainer.train()
    assert not any(snaps.grad_seen["layer0"][:6])  # frozen stage: no gradient at all
    for key in watched:
        assert torch.equal(snaps.epochs[0][key], snaps.start[key])  # bit-identical until their stage
        assert not torch.equal(snaps.epochs[1][key], snaps.epochs[0][key])  # then trained


def test_bug_adding_param_group_crashes_linear_schedule(tmp_path):
    """The anchor: a param group added mid-run breaks HF's linear ``LambdaLR``. torch >= 2.10 zips the
    scheduler's lists with the groups strictly and raises; older torch (the floor leg's 2.4) silently
    leaves the added group out of the schedule: its LR stays where it was added while the rest decays."""
    model = tiny_bert()
    freeze_encoder(model)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=2), train_dataset=token_data(),
                      callbacks=[NaiveUnfreeze(model.bert.parameters(), add_group=True)])
    if at_least("torch", "2.10"):
        with pytest.raises(ValueError, match="zip"):
            trainer.train()
        return
    trainer.train()
    groups = inner_optimizer(trainer.optimizer).param_groups
    added, scheduled = groups[-1], groups[:-1]  # HF's decay / no-decay groups, then the added one
    assert added["lr"] == trainer.args.learning_rate and all(g["lr"] < added["lr"] for g in scheduled)


class GroupCount(TrainerCallback):
    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.counts.append(len(optimizer.param_groups))


def test_bug_adding_param_group_hpcallbacks_keeps_one_structure(tmp_path):
    model = tiny_bert()
    freeze_encoder(model)
    counts = GroupCount()
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=3), train_dataset=token_data(),
                      callbacks=[StagedUnfreeze(FreezePlan.gradual(every_epochs=1, groups_per_stage=2)), counts])
    trainer.train()  # the default linear LambdaLR keeps stepping: no group is ever added
    # a plan without factors keeps the Trainer's own param groups (decay / no decay): nothing to scale
    assert len(set(counts.counts)) == 1 and counts.counts[0] == 2


def layer_lrs(optimizer, layers) -> list[float]:
    groups = inner_optimizer(optimizer).param_groups
    out = []
    for layer in layers:
        first = next(layer.parameters())
        out.append(float(next(g for g in groups if any(q is first for q in g["params"]))["lr"]))
    return out


class LayerLRs(TrainerCallback):
    def __init__(self, layers) -> None:
        self.layers, self.rows = layers, []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.rows.append((state.global_step, layer_lrs(optimizer, self.layers)))


def hf_reference_lrs(name: str | None, lr: float, steps: int, make=None, **kwargs) -> list[float]:
    """The per-update LRs of ``transformers.get_scheduler`` (or ``make(optimizer, steps)``) on a one-parameter SGD."""
    from transformers import get_scheduler

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt, steps) if make is not None else get_scheduler(name, opt, num_training_steps=steps, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_bug_no_layerwise_lr_with_plain_trainer(tmp_path):
    model = tiny_bert()
    rows = LayerLRs(bert_layers(model))
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=token_data(),
                      callbacks=[rows])
    trainer.train()
    # HF's two param groups (decay / no decay) each span every layer: one LR for all layers
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    for _, lrs in rows.rows:
        assert len(set(lrs)) == 1


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_discriminative_lr_composes_with_hf_schedule(tmp_path, kind):
    model = tiny_bert()
    rows = LayerLRs(bert_layers(model))
    args = arguments(tmp_path, num_train_epochs=2, lr_scheduler_type=kind, warmup_steps=3)
    trainer = Trainer(model=model, args=args, train_dataset=token_data(), callbacks=[DiscriminativeLR(0.5), rows])
    trainer.train()
    steps = trainer.state.max_steps
    reference = hf_reference_lrs(kind, 0.05, steps, num_warmup_steps=3)
    factors = LRFactors.layer_decay(0.5).resolve(5)  # embeddings, 3 blocks, head
    watched_groups = [0, 1, 2, 3, 4]  # the classifier is in the head group
    assert len(rows.rows) == steps
    for t, lrs in rows.rows:
        for g, lr in zip(watched_groups, lrs, strict=True):
            assert lr == pytest.approx(reference[t] * factors[g], rel=1e-9, abs=1e-15)


class NaiveFreezeBN(TrainerCallback):
    """The obvious attempt: requires_grad=False and .eval() on the pretrained part at train begin."""

    def __init__(self, modules) -> None:
        self.modules = modules

    def on_train_begin(self, args, state, control, **kwargs):
        for m in self.modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def test_bug_model_train_moves_frozen_batchnorm_stats(tmp_path):
    torch.manual_seed(0)
    model = Stack(3, bn=True)
    before = model.norm.running_mean.clone()
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24),
                      callbacks=[NaiveFreezeBN([model.layers[0], model.norm])])
    trainer.train()
    assert not torch.equal(model.norm.running_mean, before)  # HF's model.train() undid the eval()


@pytest.mark.parametrize("how", ["staged", "freeze_bn"])
def test_batchnorm_of_frozen_groups_keeps_stats(tmp_path, how):
    torch.manual_seed(0)
    model = Stack(3, bn=True)
    before = (model.norm.running_mean.clone(), model.norm.running_var.clone(), model.norm.weight.detach().clone())
    if how == "staged":
        callbacks = [StagedUnfreeze(FreezePlan.head_only(2), groups=[["layers.0", "norm"], "layers.1", "layers.2"])]
    else:
        callbacks = [FreezeBatchNorm(freeze_affine=True)]
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24),
                      callbacks=callbacks)
    trainer.train()
    assert torch.equal(model.norm.running_mean, before[0]) and torch.equal(model.norm.running_var, before[1])
    assert torch.equal(model.norm.weight, before[2])
    assert not torch.equal(model.layers[2].weight, torch.zeros_like(model.layers[2].weight))


class NaiveSwap(TrainerCallback):
    """The obvious attempt: swap BatchNorm for GroupNorm when training begins."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model.norm = nn.GroupNorm(2, model.norm.num_features)


def test_bug_norm_swap_at_train_begin_never_trains(tmp_path):
    torch.manual_seed(0)
    model = Stack(3, bn=True)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24),
                      callbacks=[NaiveSwap()])
    trainer.train()
    assert isinstance(model.norm, nn.GroupNorm)
    assert torch.equal(model.norm.weight, torch.ones_like(model.norm.weight))  # never in the optimizer


def test_swap_norm_before_optimizer_trains(tmp_path):
    torch.manual_seed(0)
    model = Stack(3, bn=True)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24),
                      callbacks=[SwapNorm(to="group", groups=2)])
    assert isinstance(model.norm, nn.GroupNorm)  # swapped at on_init_end, before the optimizer exists
    trainer.train()
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert id(model.norm.weight) in held
    assert not torch.equal(model.norm.weight, torch.ones_like(model.norm.weight))


def test_swap_norm_added_late_refuses(tmp_path):
    model = Stack(3, bn=True)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24))
    trainer.add_callback(SwapNorm())
    with pytest.raises(ValueError, match="Trainer\\(callbacks="):
        trainer.train()


# -- run defaults, logging, skipped updates ------------------------------------------------------------
def test_family_callback_defaults_from_the_run(tmp_path):
    torch.manual_seed(0)
    model = Stack(3)
    recorder = Recorder(model.layers)
    args = arguments(tmp_path, num_train_epochs=3, learning_rate=0.02, gradient_accumulation_steps=2)
    trainer = Trainer(model=model, args=args, train_dataset=regression(48), callbacks=[CosineRestart(), recorder])
    trainer.train()
    spe = 48 // 4 // 2
    expected = hp.CosineRestart(0.02, first_decay_steps=spe)
    assert [r[0] for r in recorder.records] == list(range(3 * spe))
    for t, lrs, _ in recorder.records:
        assert lrs == pytest.approx((expected(t),) * 3, rel=1e-12)


def test_log_has_named_group_lrs_and_trainable_count(tmp_path):
    torch.manual_seed(0)
    model = Stack(3)
    plan = FreezePlan(stages=[(0, 1), (2, 2), (4, "all")], unit="update", factors=LRFactors.layer_decay(0.5))
    args = arguments(tmp_path, num_train_epochs=1, logging_strategy="steps", logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=regression(24),
                      callbacks=[StagedUnfreeze(plan), CosineDecay(initial_learning_rate=0.1)])
    trainer.train()
    rows = [h for h in trainer.state.log_history if "learning_rate" in h]
    assert len(rows) == 6
    schedule = hp.CosineDecay(0.1, decay_steps=6)
    for row in rows:
        t = row["step"] - 1  # the update the row reports
        # HF logs param group 0, the top group (transformers 4.x: its next update's, tests/hf_versions.py)
        assert row["learning_rate"] == pytest.approx(schedule(t + LOGS_NEXT_LR))
        assert row["lr/layers.2"] == pytest.approx(schedule(t))
        assert row["lr/layers.1"] == pytest.approx(schedule(t) * 0.5)
        assert row["lr/layers.0"] == pytest.approx(schedule(t) * 0.25)
        assert row["trainable_groups"] == {0: 1, 1: 1, 2: 2, 3: 2}.get(t, 3)


class LogKeys(TrainerCallback):
    """Records the keys of every training log it receives."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.keys.update(logs)


def test_report_to_integrations_and_earlier_callbacks_see_group_lrs(tmp_path, monkeypatch):
    """HF lists the ``report_to`` integrations before the user's callbacks; they get ``lr/<group>`` too."""
    import transformers.trainer as hf_trainer
    from transformers import DefaultFlowCallback, PrinterCallback

    integration = LogKeys()  # in the place HF gives the report_to integrations (TensorBoard, W&B, ...)
    monkeypatch.setattr(hf_trainer, "get_reporting_integration_callbacks", lambda report_to: [integration])
    torch.manual_seed(0)
    model = Stack(3)
    first, last = LogKeys(), LogKeys()
    plan, schedule = StagedUnfreeze(FreezePlan([(0, 1), (2, "all")], unit="update")), CosineRestart()
    args = arguments(tmp_path, num_train_epochs=1, logging_strategy="steps", logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=regression(24), callbacks=[first, plan, schedule, last])
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert kinds == [DefaultFlowCallback, StagedUnfreeze, CosineRestart, LogKeys, LogKeys, LogKeys, PrinterCallback]
    trainer.train()
    want = {"lr/layers.0", "lr/layers.1", "lr/layers.2", "trainable_groups"}
    for consumer in (integration, first, last):
        assert want <= consumer.keys, sorted(consumer.keys)


def test_every_callback_refuses_a_wrong_keyword_and_another_framework():
    import hpcallbacks_hf as H
    from hpcallbacks import ArgumentError

    classes = [getattr(H, n) for n in H.__all__ if isinstance(getattr(H, n), type)
               and issubclass(getattr(H, n), TrainerCallback)]
    assert len(classes) > 25
    for cls in classes:
        with pytest.raises(ArgumentError, match=r"unexpected keyword argument 'zzz'"):
            cls(zzz=1)
    for cb in (CosineRestart(), StagedUnfreeze(), SwapNorm(), H.LabelSmoothing(), H.HyperparameterAdvisor()):
        name = type(cb).__name__
        with pytest.raises(TypeError, match=f"import it from hpcallbacks_lightning instead: .* import {name}"):
            cb.setup(None, None, "fit")  # Lightning's first hook
        with pytest.raises(TypeError, match=f"import it from hpcallbacks_keras instead: .* import {name}"):
            cb.set_model(None)  # Keras's first hook
        cb.on_exception(None, None, ValueError())  # Lightning reporting the error: quiet


class SkipUpdates(TrainerCallback):
    """Simulates a mixed-precision overflow (accelerate's flag) at chosen updates, on CPU.

    Accelerate sets the flag inside ``optimizer.step()``, before any ``on_optimizer_step``: the
    simulation sets it just before the step (the hpcallbacks callbacks run first at every event).
    Without a gradient scaler accelerate's optimizer never skips, and hpcallbacks does not read the
    flag then: the simulation gives the Trainer's optimizer a subclass, as an optimizer that can skip.
    """

    def __init__(self, at: set[int]) -> None:
        self.at = at

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        optimizer.__class__ = type("MaySkip", (type(optimizer),), {})

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        optimizer._is_overflow = state.global_step in self.at

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        optimizer._is_overflow = False


def test_lr_and_stage_do_not_advance_on_skipped_updates(tmp_path):
    torch.manual_seed(0)
    model = Stack(3)
    recorder = Recorder(model.layers)
    plan = FreezePlan(stages=[(0, 1), (3, "all")], unit="update")
    schedule = hp.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    skipped = {1, 2}
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(24),
                      callbacks=[SkipUpdates(skipped), LearningRateSchedule(schedule), StagedUnfreeze(plan),
                                 recorder])
    trainer.train()
    done = [0, 1, 1, 1, 2, 3]  # performed updates before each of the 6 steps (steps 1 and 2 skipped)
    for (step, lrs, trainable), t in zip(recorder.records, done, strict=True):
        assert lrs == pytest.approx((schedule(t),) * 3)
        assert trainable == plan.resolve(3).trainable_at(t), step


# -- resume ----------------------------------------------------------------------------------------------
RESUME_PLAN = FreezePlan(stages=[(0, 1), (1, 2), (2, "all")], factors=LRFactors.geometric(2.0))


def resume_run(tmp_path, resume_from=None, restore=False):
    """4 dense groups, the user freezes all but the head before building the Trainer; 18 updates."""
    torch.manual_seed(0)
    model = Stack(4)
    for layer in model.layers[:-1]:
        for p in layer.parameters():
            p.requires_grad_(False)
    recorder = Recorder(model.layers)
    args = arguments(tmp_path, num_train_epochs=3, save_strategy="steps", save_steps=2,
                     restore_callback_states_from_checkpoint=restore)
    trainer = Trainer(model=model, args=args, train_dataset=regression(24),
                      callbacks=[StagedUnfreeze(RESUME_PLAN), CosineRestart(initial_learning_rate=0.05), recorder])
    trainer.train(resume_from_checkpoint=resume_from)
    return model, recorder, trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    model, recorder, _ = resume_run(out)
    return out, [p.detach().clone() for p in model.parameters()], recorder.records


@pytest.mark.parametrize("restore", [False, True], ids=["restore-off", "restore-on"])
@pytest.mark.parametrize("at", [4, 8])
def test_resume_gives_the_same_lrs_trainable_sets_and_weights(uninterrupted, tmp_path, at, restore):
    out, final, records = uninterrupted
    assert [r[2] for r in records][::6] == [(False, False, False, True), (False, False, True, True), (True,) * 4]
    model, recorder, _ = resume_run(tmp_path, resume_from=str(out / f"checkpoint-{at}"), restore=restore)
    assert [r[0] for r in recorder.records] == list(range(at, 18))
    for got, want in zip(recorder.records, records[at:], strict=True):
        assert got[0] == want[0] and got[2] == want[2]
        assert got[1] == pytest.approx(want[1], rel=1e-12)
    # the optimizer state (Adam moments) came back too: the weights end where the uninterrupted run's did
    for p, q in zip(model.parameters(), final, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=1e-5, atol=1e-6)


def plateau_run(tmp_path, resume_from=None, restore=False):
    torch.manual_seed(0)
    model = Stack(3)
    recorder = Recorder(model.layers)
    args = arguments(tmp_path, num_train_epochs=3, save_strategy="steps", save_steps=4, eval_strategy="steps",
                     eval_steps=3, restore_callback_states_from_checkpoint=restore, label_names=["y"])
    plateau = ReduceOnPlateau(factor=0.5, patience=1, min_delta=1e9)  # every evaluation after the first reduces
    trainer = Trainer(model=model, args=args, train_dataset=regression(24), eval_dataset=regression(8, seed=1),
                      callbacks=[plateau, DiscriminativeLR(0.5), recorder])
    trainer.train(resume_from_checkpoint=resume_from)
    return recorder, plateau


@pytest.mark.parametrize("restore", [False, True], ids=["restore-off", "restore-on"])
def test_plateau_state_survives_resume(tmp_path, restore):
    full, plateau = plateau_run(tmp_path / "full")
    assert plateau.machine.reductions == 5  # evaluations at 3, 6, ..., 18; the first one sets the best value
    reference = hf_reference_lrs("linear", 0.05, 18, num_warmup_steps=0)
    for t, lrs, _ in full.records:
        reductions = max(0, (t - 3) // 3)
        assert lrs == pytest.approx(tuple(reference[t] * 0.5**reductions * f for f in (0.25, 0.5, 1.0)))
    resumed, _ = plateau_run(tmp_path / "resumed", str(tmp_path / "full" / "checkpoint-8"), restore)
    assert resumed.records == full.records[8:]


class NaiveCounter(TrainerCallback):
    """A stateful callback as users write them: its count is lost on resume."""

    def __init__(self) -> None:
        self.evaluations = 0

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations += 1


def test_bug_naive_callback_state_lost_on_resume(tmp_path):
    def run(out, resume=None):
        counter = NaiveCounter()
        args = arguments(out, num_train_epochs=2, save_strategy="steps", save_steps=6, eval_strategy="steps",
                         eval_steps=3)
        Trainer(model=Stack(3), args=args, train_dataset=regression(24), eval_dataset=regression(8),
                callbacks=[counter]).train(resume_from_checkpoint=resume)
        return counter.evaluations

    assert run(tmp_path / "a") == 4
    assert run(tmp_path / "b", str(tmp_path / "a" / "checkpoint-6")) == 2  # the 2 before the checkpoint are gone


# -- bad input: ValueError at on_train_begin, naming what to change ---------------------------------------------
def refused(tmp_path, callbacks, match, model=None, optimizers=(None, None), **kwargs):
    model = model or Stack(3)
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1, **kwargs), train_dataset=regression(24),
                      eval_dataset=regression(8), callbacks=callbacks, optimizers=optimizers)  # no error yet
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_groups_matching_nothing(tmp_path):
    refused(tmp_path, [StagedUnfreeze(groups=["nope", "layers.1", "layers.2"])], r"groups=.*'nope'.*matches no module")


def test_plan_with_more_groups_than_the_model(tmp_path):
    plan = FreezePlan(stages=[(0, 5)], unit="update")
    refused(tmp_path, [StagedUnfreeze(plan)], r"3 layer groups .*top 5 groups .*pass groups=")


def test_explicit_factors_of_the_wrong_length(tmp_path):
    refused(tmp_path, [DiscriminativeLR([1.0, 2.0])], r"DiscriminativeLR\(factors=...\): the model has 3 layer groups")


def test_different_groups_for_two_callbacks(tmp_path):
    refused(tmp_path, [StagedUnfreeze(groups=["layers.0", "layers.1", "layers.2"]),
                       DiscriminativeLR(0.5, groups=[["layers.0", "layers.1"], "layers.2"])],
            r"StagedUnfreeze\(groups=...\) and DiscriminativeLR\(groups=...\) differ; give groups to one of them")


@pytest.mark.parametrize("settings", [
    dict(lr_scheduler_type="cosine"),
    dict(warmup_steps=2),
    dict(lr_scheduler_type="linear", lr_scheduler_kwargs={"last_epoch": -1}),
], ids=["cosine", "warmup", "kwargs"])
def test_conflicting_hf_schedule(tmp_path, settings):
    refused(tmp_path, [CosineRestart()], r"conflicting schedulers: CosineRestart .*lr_scheduler_type='constant'",
            **settings)


def test_conflicting_schedules(tmp_path):
    refused(tmp_path, [CosineRestart(), LearningRateSchedule(0.1)],
            r"callbacks holds 2 learning-rate schedules \(CosineRestart, LearningRateSchedule\); keep one")


def test_conflicting_plateaus(tmp_path):
    refused(tmp_path, [ReduceOnPlateau()], "ReduceOnPlateau and lr_scheduler_type='reduce_lr_on_plateau'",
            lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="epoch")


def test_schedule_with_a_user_lambdalr(tmp_path):
    model = Stack(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.9**t)
    refused(tmp_path, [LearningRateSchedule(0.1)], r"Trainer\(optimizers=...\)", model=model, optimizers=(opt, sched))


def test_plateau_without_evaluation(tmp_path):
    refused(tmp_path, [ReduceOnPlateau()], "eval_strategy='epoch'")


def test_arguments_refused_when_built():
    with pytest.raises(ValueError, match="alpha"):
        CosineRestart(alpha=2.0)
    with pytest.raises(ValueError, match="bn must be"):
        StagedUnfreeze(bn="frozen")
    with pytest.raises(ValueError, match="groups must"):
        StagedUnfreeze(groups="layers.0")
    with pytest.raises(ValueError, match="factors"):
        DiscriminativeLR("fast")
    from hpcallbacks_hf import ExponentialDecay, PiecewiseConstantDecay

    with pytest.raises(ValueError, match="boundaries"):
        PiecewiseConstantDecay()
    assert repr(ExponentialDecay(decay_rate=0.5)) == "ExponentialDecay(decay_rate=0.5, staircase=False)"


# -- more compositions ------------------------------------------------------------------------------------
def test_second_train_call_on_the_same_trainer(tmp_path):
    torch.manual_seed(0)
    model = Stack(3)
    first, second = Recorder(model.layers), Recorder(model.layers)
    plan = FreezePlan(stages=[(0, 1), (1, "all")], factors=LRFactors.layer_decay(0.5))
    trainer = Trainer(model=model, args=arguments(tmp_path, num_train_epochs=2), train_dataset=regression(24),
                      callbacks=[StagedUnfreeze(plan), first])
    trainer.train()
    trainer.pop_callback(first)
    trainer.add_callback(second)
    trainer.train()  # HF keeps the regrouped optimizer and builds a new LambdaLR on it
    assert second.records == first.records
    assert second.records[0][2] == (False, False, True)


def test_factors_compose_with_hf_reduce_lr_on_plateau(tmp_path):
    torch.manual_seed(0)
    model = Stack(3)
    rows = LayerLRs(model.layers)
    args = arguments(tmp_path, num_train_epochs=4, lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="epoch",
                     label_names=["y"], lr_scheduler_kwargs={"patience": 0, "factor": 0.5, "threshold": 1e9})
    trainer = Trainer(model=model, args=args, train_dataset=regression(24), eval_dataset=regression(8, seed=1),
                      callbacks=[DiscriminativeLR(0.5), rows])
    trainer.train()
    for t, lrs in rows.rows:
        base = 0.05 * 0.5 ** (t // 6)  # HF's plateau (threshold 1e9: nothing improves) halves it at every epoch end
        assert lrs == pytest.approx([base * 0.25, base * 0.5, base])



# -- a user's torch scheduler beside per-group factors (issue 20, defect 11) ----------------------------------
def _sequential(opt, total):
    lr = torch.optim.lr_scheduler
    return lr.SequentialLR(opt, [lr.LinearLR(opt, 0.1, 1.0, total_iters=3), lr.StepLR(opt, 2, 0.5)], milestones=[3])


TORCH_SCHEDULERS = {
    "OneCycleLR": lambda opt, total: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total),
    "SequentialLR": _sequential,
    "StepLR": lambda opt, total: torch.optim.lr_scheduler.StepLR(opt, 3, 0.5),
}


def torch_reference_lrs(make, lr: float, total: int) -> list[float]:
    """The per-update LRs of a torch scheduler on a one-parameter SGD (what it gives the top group)."""
    return hf_reference_lrs(None, lr, total, make=make)


def user_scheduler_run(tmp_path, name, callbacks, resume_from=None, **kwargs):
    """3 dense groups, SGD lr 0.1 and the user's torch scheduler through Trainer(optimizers=...); 18 updates."""
    torch.manual_seed(0)
    model = Stack(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recorder = Recorder(model.layers)
    trainer = Trainer(model=model, args=arguments(tmp_path, **kwargs), train_dataset=regression(24),
                      callbacks=[*callbacks, recorder], optimizers=(opt, TORCH_SCHEDULERS[name](opt, 18)))
    trainer.train(resume_from_checkpoint=resume_from)
    return model, recorder


@pytest.mark.parametrize("name", list(TORCH_SCHEDULERS))
def test_factors_compose_with_a_users_torch_scheduler(tmp_path, name):
    """A OneCycleLR, SequentialLR or StepLR passed in ``optimizers=`` runs, and the layer factors multiply it
    (as Lightning composes with a scheduler from configure_optimizers: test_lightning's
    test_discriminative_lr_composes_with_a_torch_scheduler). It was refused ("cannot give per-group
    learning rates under an LR scheduler of type ...")."""
    _, rec = user_scheduler_run(tmp_path, name, [DiscriminativeLR(LRFactors.geometric(2.0))])
    reference = torch_reference_lrs(TORCH_SCHEDULERS[name], 0.1, 18)
    assert len(set(reference)) > 2  # the scheduler does change the LR
    assert [r[1] for r in rec.records] == [pytest.approx((lr * 0.25, lr * 0.5, lr)) for lr in reference]


@pytest.mark.parametrize("name", ["OneCycleLR", "SequentialLR"])
def test_staged_unfreeze_with_a_users_torch_scheduler_resumes_exactly(tmp_path, name):
    """StagedUnfreeze and the plan's factors over the user's scheduler, and a resume from update 7 gives the
    uninterrupted run's LRs and trainable sets (the scheduler's per-group state comes back in its order)."""
    plan = FreezePlan(stages=[(0, 1), (6, "all")], unit="update", factors=LRFactors.geometric(2.0))
    model, full = user_scheduler_run(tmp_path / "full", name, [StagedUnfreeze(plan)], save_strategy="steps",
                                     save_steps=7)
    reference = torch_reference_lrs(TORCH_SCHEDULERS[name], 0.1, 18)
    assert [r[1] for r in full.records] == [pytest.approx((lr * 0.25, lr * 0.5, lr)) for lr in reference]
    assert [r[2] for r in full.records] == [(False, False, True)] * 6 + [(True, True, True)] * 12
    resumed_model, resumed = user_scheduler_run(tmp_path / "resumed", name, [StagedUnfreeze(plan)],
                                                resume_from=str(tmp_path / "full" / "checkpoint-7"))
    assert [r[0] for r in resumed.records] == list(range(7, 18))
    for got, want in zip(resumed.records, full.records[7:], strict=True):
        assert got[2] == want[2] and got[1] == pytest.approx(want[1], rel=1e-12)
    for p, q in zip(resumed_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_a_users_torch_scheduler_beside_an_hpcallbacks_lr_rule_is_refused(tmp_path):
    """What Lightning refuses too (the contract's rule, hpcallbacks.run.compose): a schedule callback or a
    modifier multiplying the LR beside a scheduler that sets it itself."""
    model = Stack(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)
    refused(tmp_path, [CosineRestart(), DiscriminativeLR(2.0)], r"conflicting schedulers: CosineRestart .*StepLR",
            model=model, optimizers=(opt, sched))


# -- distributed: torchrun, 2 CPU ranks (gloo) -------------------------------------------------------------


def test_finished_runs_do_not_keep_models_alive(tmp_path):
    import gc
    import weakref

    def train_once():
        model = Stack(3)
        Trainer(model=model, args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(8),
                callbacks=[StagedUnfreeze(FreezePlan([(0, 1), (1, "all")], unit="update")), CosineRestart()]).train()
        return weakref.ref(model)

    first = train_once()
    train_once()  # the next run's registration purges the registry entries of dead states
    gc.collect()
    assert first() is None


FAMILY_ARGS = {"PiecewiseConstantDecay": {"boundaries": [3, 7], "values": [0.05, 0.02, 0.01]},
               "MultiStepDecay": {"milestones": [4, 8]}}


@pytest.mark.parametrize("name", sorted(__import__("hpcallbacks_hf").FAMILIES))
def test_every_family_callback_matches_the_core_rule(tmp_path, name):
    from hpcallbacks import defaults
    from hpcallbacks_hf import FAMILIES

    torch.manual_seed(0)
    model = Stack(3)
    recorder = Recorder(model.layers)
    given = FAMILY_ARGS.get(name, {})
    args = arguments(tmp_path, num_train_epochs=2, learning_rate=0.03, gradient_accumulation_steps=2)
    trainer = Trainer(model=model, args=args, train_dataset=regression(48),
                      callbacks=[FAMILIES[name](**given), recorder])
    trainer.train()
    core = defaults.build(name, given, defaults.RunFacts(learning_rate=0.03, steps_per_epoch=6, total_steps=12))
    assert len(recorder.records) == 12
    for t, lrs, _ in recorder.records:
        assert lrs == pytest.approx((core(t),) * 3, rel=1e-12, abs=1e-15)


def test_the_update_count_reads_step_was_skipped_only_where_a_step_can_be_skipped(tmp_path):
    """accelerate's optimizer skips a step only with a mixed-precision gradient scaler; without one the
    driver's step end has nothing to read (one comparison per update). Any other optimizer is asked."""
    from hpcallbacks_hf._engine import may_skip

    trainer = Trainer(model=Stack(2), args=arguments(tmp_path, num_train_epochs=1), train_dataset=regression(8),
                      callbacks=[CosineRestart()])
    trainer.train()
    optimizer = trainer.optimizer
    assert type(optimizer).__name__ == "AcceleratedOptimizer" and optimizer.scaler is None
    assert not may_skip(optimizer)
    assert may_skip(optimizer.optimizer)  # a torch optimizer that is not accelerate's: asked after every step
    optimizer.scaler = torch.amp.GradScaler("cpu")
    assert may_skip(optimizer)
