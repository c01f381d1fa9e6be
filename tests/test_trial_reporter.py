"""TrialReporter (handbook H8): the monitored metric to an Optuna trial, a clean stop when pruned.

Per adapter, a real Optuna study (in-memory storage) on a tiny model: two good trials, then a bad
one (a loss offset: its validation loss is far above the others') that ``MedianPruner`` prunes at
its first check (step 1, ``n_warmup_steps=1``): its training stops right there, after 2 of 4
epochs, and the study records it as pruned. (The distributed runs, Lightning DDP and HF torchrun,
where every rank trains with rank 0's draw and a prune stops both ranks, are in
tests/test_distributed.py.) Last, ``Trainer.hyperparameter_search`` with ``GradientAccumulation(8)`` and the per-device
batch in the search space: every trial keeps the effective batch of 8.
"""
from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import pytest

from hpcallbacks.search import Reporter, TrialReporterBase, shared_params

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS = 4
#: The study: two good trials (no offset), then a bad one; the pruner's first check is at step 1.
OFFSETS = (0.0, 0.0, 5.0)
ROOT = Path(__file__).resolve().parents[1]


def study_with_bad_trial() -> optuna.Study:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for offset in OFFSETS:
        study.enqueue_trial({"offset": offset})
    return study


def check_study(study: optuna.Study, epochs_trained: list[int]) -> None:
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.PRUNED], states
    assert epochs_trained == [EPOCHS, EPOCHS, 2]  # the pruned trial stopped after its epoch 1
    assert sorted(study.trials[0].intermediate_values) == list(range(EPOCHS))
    assert sorted(study.trials[2].intermediate_values) == [0, 1]  # reported at epochs 0 and 1, pruned at 1


class Prunes(optuna.pruners.BasePruner):
    """Prunes every trial at step 1 (and never before)."""

    def prune(self, study, trial):
        return max(trial.intermediate_values, default=-1) >= 1


# -- the core ---------------------------------------------------------------------------------------------------
def test_shared_params_is_rank_zeros_dict():
    assert shared_params({"lr": 0.1}) == {"lr": 0.1}
    assert shared_params({"lr": 0.2}, broadcast=lambda obj: {"lr": 0.1}) == {"lr": 0.1}  # rank 1 gets rank 0's
    sent = []
    assert shared_params({"lr": 0.1}, broadcast=lambda obj: sent.append(obj) or obj) == {"lr": 0.1}
    assert sent == [{"lr": 0.1}]
    with pytest.raises(ValueError, match="params must be the dict"):
        shared_params(None)
    with pytest.raises(ValueError, match="broadcast must be a callable"):
        shared_params({}, broadcast=3)


def test_base_follows_rank_zero_and_refuses_a_monitor_never_logged():
    class Trial:
        number = 0

        def __init__(self):
            self.values = {}

        def report(self, value, step):
            self.values[step] = value

        def should_prune(self):
            return 1 in self.values

    base = TrialReporterBase()
    base._init_reporter(Trial(), None)
    assert base.monitor == "val_loss" and isinstance(base.reporter, Reporter)
    base._start(is_main=False, broadcast=lambda obj: True)  # rank 1: rank 0 says stop
    assert base._report({"val_loss": 1.0}, 0) and base.pruned and base.pruned_step == 0
    assert base.trial.values == {}  # rank 1 never reports to a trial
    base._start(is_main=True)
    with pytest.raises(ValueError, match=r"monitor 'val_loss' was not logged at this epoch's end \(logged: loss; no "
                                         r"validation metric at all"):
        base._report({"loss": 1.0}, 0)
    assert base.trial.values == {}  # nothing reported
    assert not base._report({"val_loss": 2.0}, 0) and base._report({"val_loss": 1.0}, 1)
    assert "pruned at epoch 1" in base.message
    with pytest.raises(optuna.TrialPruned):
        base.raise_if_pruned()
    with pytest.raises(ValueError, match="trial must be an Optuna trial"):
        TrialReporterBase()._init_reporter(object(), None)


# -- Lightning --------------------------------------------------------------------------------------------------
def lightning_loaders(torch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))
    return torch.utils.data.DataLoader(data, batch_size=16), torch.utils.data.DataLoader(data, batch_size=32)


def test_lightning_study_prunes_the_bad_trial_at_its_epoch():
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    import hpcallbacks_lightning as HL

    class Net(L.LightningModule):
        def __init__(self, offset):
            super().__init__()
            torch.manual_seed(0)
            self.net, self.offset = torch.nn.Linear(4, 1), offset

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]) + self.offset)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Epochs(L.Callback):
        count = 0

        def on_train_epoch_end(self, trainer, pl_module):
            self.count += 1

    trained = []

    def objective(trial):
        reporter, epochs = HL.TrialReporter(trial, monitor="val_loss"), Epochs()
        trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            callbacks=[reporter, epochs])
        trainer.fit(Net(trial.suggest_float("offset", 0.0, 10.0)), *lightning_loaders(torch))
        trained.append(epochs.count)
        assert reporter.pruned == (epochs.count < EPOCHS)
        reporter.raise_if_pruned()
        return trainer.callback_metrics["val_loss"].item()

    study = study_with_bad_trial()
    study.optimize(objective, n_trials=len(OFFSETS))
    check_study(study, trained)


def test_lightning_reports_to_ray_tune(monkeypatch):
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    tune = pytest.importorskip("ray.tune")
    import hpcallbacks_lightning as HL

    reports = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    reporter = HL.TrialReporter("ray")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[reporter])
    trainer.fit(Net(), *lightning_loaders(torch))
    assert [sorted(r) for r in reports] == [["step", "val_loss"]] * 2  # not the sanity check's
    assert [r["step"] for r in reports] == [0, 1] and not reporter.pruned
    reporter.raise_if_pruned()  # Ray's scheduler stops a trial itself: nothing to raise


# -- Keras ------------------------------------------------------------------------------------------------------
def test_keras_study_prunes_the_bad_trial_at_its_epoch():
    keras = pytest.importorskip("keras")
    import numpy as np

    import hpcallbacks_keras as HK

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    trained = []

    def objective(trial):
        offset = trial.suggest_float("offset", 0.0, 10.0)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.05), loss=lambda t, p: keras.ops.mean((t - p) ** 2) + offset)
        reporter = HK.TrialReporter(trial, monitor="val_loss")
        history = model.fit(x, y, batch_size=16, epochs=EPOCHS, validation_data=(x, y), callbacks=[reporter],
                            verbose=0)
        trained.append(len(history.history["loss"]))
        reporter.raise_if_pruned()
        return history.history["val_loss"][-1]

    study = study_with_bad_trial()
    study.optimize(objective, n_trials=len(OFFSETS))
    check_study(study, trained)


# -- HF ---------------------------------------------------------------------------------------------------------
def hf_parts():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    class Net(torch.nn.Module):
        def __init__(self, offset=0.0):
            super().__init__()
            torch.manual_seed(0)
            self.net, self.offset = torch.nn.Linear(4, 1), offset

        def forward(self, x, y=None):
            return {"loss": torch.nn.functional.mse_loss(self.net(x), y) + self.offset}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    data = [{"x": x[i], "y": y[i]} for i in range(16)]
    return transformers, Net, data


def hf_arguments(transformers, tmp_path, **kwargs):
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                logging_strategy="no", per_device_train_batch_size=8, num_train_epochs=EPOCHS, learning_rate=0.05,
                lr_scheduler_type="constant", optim="sgd", seed=0, dataloader_num_workers=0,
                eval_strategy="epoch", per_device_eval_batch_size=16, label_names=["y"])
    return transformers.TrainingArguments(**{**base, **kwargs})


def test_hf_study_prunes_the_bad_trial_at_its_evaluation(tmp_path):
    transformers, Net, data = hf_parts()
    import hpcallbacks_hf as H

    trained = []

    def objective(trial):
        reporter = H.TrialReporter(trial)
        trainer = transformers.Trainer(model=Net(trial.suggest_float("offset", 0.0, 10.0)),
                                       args=hf_arguments(transformers, tmp_path), train_dataset=data,
                                       eval_dataset=data, callbacks=[reporter])
        trainer.train()
        trained.append(round(trainer.state.epoch))
        reporter.raise_if_pruned()
        return trainer.evaluate()["eval_loss"]  # not reported: outside train()

    study = study_with_bad_trial()
    study.optimize(objective, n_trials=len(OFFSETS))
    check_study(study, trained)


def test_hf_search_keeps_the_effective_batch_of_gradient_accumulation(tmp_path):
    transformers, Net, data = hf_parts()
    import hpcallbacks_hf as H

    runs = []

    class Record(transformers.TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            runs.append((args.per_device_train_batch_size, args.gradient_accumulation_steps, state.max_steps,
                         state.global_step))

    trainer = transformers.Trainer(model_init=lambda trial: Net(), train_dataset=data, eval_dataset=data,
                                   args=hf_arguments(transformers, tmp_path, num_train_epochs=1),
                                   callbacks=[H.GradientAccumulation(8), Record()])
    space = {"per_device_train_batch_size": [2, 4]}
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", space["per_device_train_batch_size"])},
        backend="optuna", n_trials=2, direction="minimize", sampler=optuna.samplers.GridSampler(space))
    assert best is not None
    # 16 samples, effective batch 8: 2 updates of 4 x 2 or 2 x 4 micro-batches, in both trials
    assert sorted(runs) == [(2, 4, 2, 2), (4, 2, 2, 2)], runs


# -- a monitor that is never logged (issue 20, defect 5) ----------------------------------------------------------
def lightning_net(L, torch, log="val_loss"):
    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log(log, torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Net


def lightning_fit(L, torch, callbacks, loaders=None, **kwargs):
    """A 3-epoch fit of the tiny Net; returns (trainer, number of training steps run)."""
    steps = []

    class Steps(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps.append(batch_idx)

    trainer = L.Trainer(**{"max_epochs": 3, "accelerator": "cpu", "logger": False, "enable_checkpointing": False,
                           "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                           **kwargs}, callbacks=[*callbacks, Steps()])
    try:
        trainer.fit(lightning_net(L, torch)(), *(lightning_loaders(torch) if loaders is None else loaders))
    finally:
        trainer.steps_run = len(steps)
    return trainer


def test_keras_monitor_never_logged_raises_at_the_first_epoch_end():
    """A typo in the monitor: the first epoch end raises, naming the monitor and the keys logged (it used to warn,
    and the trial ended COMPLETE without one report: it could never be pruned)."""
    keras = pytest.importorskip("keras")
    import numpy as np

    import hpcallbacks_keras as HK

    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    epochs = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs.append(epoch)

    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=r"monitor 'val_los' was not logged at this epoch's end \(logged: .*"
                                         r"did you mean 'val_loss'\?\)"):
        model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=3, verbose=0,
                  callbacks=[Epochs(), HK.TrialReporter(trial, monitor="val_los")])
    assert epochs == [0]
    # a fit that will validate nothing is refused at its start, before an epoch trains
    epochs.clear()
    with pytest.raises(ValueError, match=r"monitor 'val_loss' can never be reported: this run evaluates nothing "
                                         r"\(fit got no validation_data and no validation_split\)"):
        model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[Epochs(), HK.TrialReporter(trial)])
    assert epochs == [] and trial.study.trials[0].intermediate_values == {}
    # validation_split makes validation data inside fit: accepted, reported
    reporter = HK.TrialReporter(trial)
    model.fit(x, x[:, :1], validation_split=0.25, epochs=1, verbose=0, callbacks=[reporter])
    assert list(trial.study.trials[0].intermediate_values) == [0]


def test_lightning_monitor_never_logged_raises_at_the_first_validation_end():
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    import hpcallbacks_lightning as HL

    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=r"monitor 'val_los' was not logged at this epoch's end \(logged: val_loss; "
                                         r"did you mean 'val_loss'\?\)"):
        lightning_fit(L, torch, [HL.TrialReporter(trial, monitor="val_los")])
    assert trial.study.trials[0].intermediate_values == {}


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
@pytest.mark.parametrize("how", ["no validation loader", "limit_val_batches=0"])
def test_lightning_run_without_validation_is_refused_at_fit_start(how):
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    import hpcallbacks_lightning as HL

    train, val = lightning_loaders(torch)
    loaders, kwargs = ((train,), {}) if how == "no validation loader" else ((train, val), {"limit_val_batches": 0})
    trial = optuna.create_study().ask()
    reporter = HL.TrialReporter(trial)
    with pytest.raises(ValueError, match=r"monitor 'val_loss' can never be reported: this run evaluates nothing "
                                         + (r"\(no validation loop" if how == "no validation loader"
                                            else r"\(limit_val_batches=0\)")):
        lightning_fit(L, torch, [reporter], loaders, **kwargs)
    # refused before the first training step
    assert reporter.reporter.history == [] and trial.study.trials[0].intermediate_values == {}


def test_lightning_run_that_never_validated_warns_at_its_end():
    """Validation every 2 epochs in a 1-epoch run: nothing can tell at fit start; the end of the run warns."""
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    import hpcallbacks_lightning as HL

    with pytest.warns(UserWarning, match="monitor 'val_loss' was never reported in this run"):
        trainer = lightning_fit(L, torch, [HL.TrialReporter(optuna.create_study().ask())], max_epochs=1,
                                check_val_every_n_epoch=2)
    assert trainer.steps_run == 2


def test_hf_monitor_never_logged_raises_at_the_first_evaluation(tmp_path):
    transformers, Net, data = hf_parts()
    import hpcallbacks_hf as H

    trial = optuna.create_study().ask()
    trainer = transformers.Trainer(model=Net(), args=hf_arguments(transformers, tmp_path), train_dataset=data,
                                   eval_dataset=data, callbacks=[H.TrialReporter(trial, monitor="loss")])
    with pytest.raises(ValueError, match=r"monitor 'loss' was not logged at this evaluation's end \(logged: .*"
                                         r"eval_loss"):
        trainer.train()
    assert trainer.state.global_step == 2  # 16 samples, batches of 8: the first evaluation, after epoch 0
    assert trial.study.trials[0].intermediate_values == {}


def test_hf_eval_strategy_no_is_refused_at_train_begin(tmp_path):
    transformers, Net, data = hf_parts()
    import hpcallbacks_hf as H

    trainer = transformers.Trainer(model=Net(), args=hf_arguments(transformers, tmp_path, eval_strategy="no"),
                                   train_dataset=data, callbacks=[H.TrialReporter(optuna.create_study().ask())])
    with pytest.raises(ValueError, match=r"monitor 'eval_loss' can never be reported: this run evaluates nothing "
                                         r'\(eval_strategy="no"\)'):
        trainer.train()
    assert trainer.state.global_step == 0


# -- a multi-objective study (issue 20, defect 7) -----------------------------------------------------------------
def test_multi_objective_study_gets_no_report_and_trains_to_the_end():
    """Optuna prunes single-objective studies only: the reporter warns when built, reports nothing (as HF's own
    hyperparameter_search), and every trial trains all its epochs (it raised NotImplementedError at epoch 0)."""
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")
    import hpcallbacks_lightning as HL

    study = optuna.create_study(directions=["minimize", "maximize"], pruner=Prunes())
    trained = []

    def objective(trial):
        trial.suggest_float("x", 0.0, 1.0)
        with pytest.warns(UserWarning, match="multi-objective.*nothing is reported and training is never stopped"):
            reporter = HL.TrialReporter(trial)
        trainer = lightning_fit(L, torch, [reporter], max_epochs=2)
        trained.append(trainer.steps_run)
        reporter.raise_if_pruned()
        loss = trainer.callback_metrics["val_loss"].item()
        return loss, -loss

    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert trained == [4, 4] and all(t.intermediate_values == {} and len(t.values) == 2 for t in study.trials)


# -- the fit in another process than the objective's (issue 20, defect 6; Lightning's run: tests/test_pruning_ports.py)
def _child(base, blob, queue):
    """What a rank 0 in a process of its own does: the reporter (pickled as ddp_spawn sends it, or the forked copy)
    starts and reports epochs 0 and 1."""
    try:
        base = pickle.loads(blob) if blob is not None else base
        base._start(is_main=True)
        queue.put(("ok", [base._report({"val_loss": 1.0}, 0), base._report({"val_loss": 0.5}, 1)]))
    except Exception as error:  # the refusal, sent back
        queue.put((type(error).__name__, str(error)))


def in_other_process(base, pickled=False):
    """Run :func:`_child` in a forked process; ``pickled``: the reporter goes pickled (a SQLite storage then opens
    its own connection there, as in a spawned rank), else as fork copies it."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    blob = pickle.dumps(base) if pickled else None
    process = context.Process(target=_child, args=(None if pickled else base, blob, queue))
    process.start()
    result = queue.get(timeout=120)
    process.join(timeout=60)
    return result


def test_a_fit_in_another_process_refuses_an_in_memory_study():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), pruner=Prunes())
    base = TrialReporterBase()
    base._init_reporter(study.ask(), None)
    message = r"runs in another process than the objective's.*in memory \(InMemoryStorage\).*strategy='ddp'.*sqlite"
    with pytest.raises(ValueError, match=message):
        pickle.dumps(base)  # what ddp_spawn does to send the callbacks to its ranks: refused before any start
    kind, text = in_other_process(base)  # started in a forked process (ddp_fork): refused there
    assert kind == "ValueError" and "a copy of it goes to the new process" in text
    assert study.trials[0].intermediate_values == {}


def test_a_prune_in_another_process_reaches_the_objective_through_the_storage(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", pruner=Prunes())
    seen = []

    def objective(trial):
        base = TrialReporterBase()
        base._init_reporter(trial, None)
        seen.append(in_other_process(base, pickled=True))
        assert base.pruned and base.pruned_step == 1 and "trial 0 pruned at epoch 1" in base.message
        base.raise_if_pruned()
        return 0.0

    study.optimize(objective, n_trials=1)
    assert seen == [("ok", [False, True])]
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert study.trials[0].intermediate_values == {0: 1.0, 1: 0.5} and study.trials[0].value == 0.5
