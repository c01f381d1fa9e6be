"""The peers' own pruning tests, ported onto hpcallbacks' ``TrialReporter`` (issue 20).

Sources (public): optuna-integration ``tests/pytorch_lightning/test_pytorch_lightning.py``
(``PyTorchLightningPruningCallback``), ``tests/keras/test_keras.py`` (``KerasPruningCallback``),
``tests/tfkeras/test_tfkeras.py`` (``TFKerasPruningCallback``), and transformers
``tests/trainer/test_trainer.py`` (since moved to ``tests/trainer/test_trainer_hyperparameter.py``:
``hyperparameter_search`` with Optuna,
single- and multi-objective). Each test names the peer test it ports; where hpcallbacks differs on purpose, its
docstring says how (the README's "Differences from optuna-integration" lists them):

* The peers raise ``optuna.TrialPruned`` inside the framework's loop; ``TrialReporter`` stops the loop
  cleanly (``should_stop`` / ``stop_training`` / ``should_training_stop``) and the objective calls
  ``reporter.raise_if_pruned()`` after ``fit``: the trial ends PRUNED either way.
* A monitor that is not logged: the peers warn and the trial can never be pruned; ``TrialReporter``
  raises a ``ValueError`` naming the monitor and the logged keys.
* ``KerasPruningCallback(interval=...)``: ``TrialReporter`` reports every epoch; how often to prune is
  the pruner's ``interval_steps``.
* DDP: optuna-integration accepts only an RDB storage under any DDP strategy and refuses in-memory
  storage inside the spawned processes (a ``ProcessRaisedException``); ``TrialReporter`` accepts any
  storage under ``strategy="ddp"`` (the objective's process is rank 0) and, under ``ddp_spawn``,
  refuses an in-memory study with a ``ValueError`` in the objective's process, before any process starts.
* tf.keras: in Keras 3, ``tf.keras`` is Keras on the TensorFlow backend; the Keras ports run on the
  backend the suite runs (TensorFlow by default; ``tests/test_keras_backends.py`` runs the others).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)
from optuna.testing.pruners import DeterministicPruner  # noqa: E402

TESTS = Path(__file__).resolve().parent
COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


# -- optuna-integration: PyTorchLightningPruningCallback ----------------------------------------------------------
def lightning_model():
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning.pytorch")

    class Model(L.LightningModule):
        """optuna-integration's Model: accuracy of a 4 -> 8 linear classifier on three zero samples."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self._model = torch.nn.Sequential(torch.nn.Linear(4, 8))
            self.validation_step_outputs = []

        def forward(self, data):
            return self._model(data)

        def training_step(self, batch, batch_nb):
            data, target = batch
            return {"loss": torch.nn.functional.nll_loss(self.forward(data), target)}

        def validation_step(self, batch, batch_nb):
            data, target = batch
            pred = self.forward(data).argmax(dim=1, keepdim=True)
            accuracy = pred.eq(target.view_as(pred)).double().mean()
            self.validation_step_outputs.append(accuracy)
            return accuracy

        def on_validation_epoch_end(self):
            if not len(self.validation_step_outputs):
                return
            self.log("accuracy", sum(self.validation_step_outputs) / len(self.validation_step_outputs))
            self.validation_step_outputs.clear()

        def configure_optimizers(self):
            return torch.optim.SGD(self._model.parameters(), lr=1e-2)

        def train_dataloader(self):
            return self._generate_dummy_dataset()

        def val_dataloader(self):
            return self._generate_dummy_dataset()

        def _generate_dummy_dataset(self):
            data = torch.utils.data.TensorDataset(torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64))
            return torch.utils.data.DataLoader(data, batch_size=1)

    return L, Model


def test_pytorch_lightning_pruning_callback():
    """Port of ``test_pytorch_lightning_pruning_callback``: a pruner that always prunes ends the trial PRUNED
    (after epoch 0: training stopped there), one that never prunes lets it COMPLETE with the objective's value.
    Differs: the objective calls ``reporter.raise_if_pruned()`` after ``fit`` (the peer raises inside ``fit``)."""
    L, Model = lightning_model()
    import hpcallbacks_lightning as HL

    epochs = []

    def objective(trial):
        reporter = HL.TrialReporter(trial, monitor="accuracy")
        trainer = L.Trainer(max_epochs=2, accelerator="cpu", enable_checkpointing=False, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[reporter])
        trainer.fit(Model())
        epochs.append(trainer.current_epoch)
        assert trial.study.trials[-1].intermediate_values == {  # the values reported are the metric logged
            step: pytest.approx(trainer.callback_metrics["accuracy"].item()) for step, _ in reporter.reporter.history}
        reporter.raise_if_pruned()
        return 1.0

    study = optuna.create_study(pruner=DeterministicPruner(True))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == PRUNED and sorted(study.trials[0].intermediate_values) == [0]
    study = optuna.create_study(pruner=DeterministicPruner(False))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == COMPLETE and study.trials[0].value == 1.0
    assert sorted(study.trials[0].intermediate_values) == [0, 1]
    assert epochs == [1, 2]  # stopped after epoch 0; all 2 epochs


def test_pytorch_lightning_pruning_callback_monitor_is_invalid():
    """Port of ``test_pytorch_lightning_pruning_callback_monitor_is_invalid``. Differs: a ValueError naming the
    monitor and the logged keys at the first validation end (the peer warns, and its trial can never be pruned)."""
    L, Model = lightning_model()
    import hpcallbacks_lightning as HL

    trial = optuna.create_study(pruner=DeterministicPruner(True)).ask()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", enable_checkpointing=False, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[HL.TrialReporter(trial, "InvalidMonitor")])
    with pytest.raises(ValueError, match=r"monitor 'InvalidMonitor' was not logged at this epoch's end "
                                         r"\(logged: accuracy"):
        trainer.fit(Model())


@pytest.fixture(scope="module")
def spawn_run(tmp_path_factory):
    """tests/_spawn_trial_run.py: the two ddp_spawn scenarios in one subprocess (one launch of 2 ranks)."""
    pytest.importorskip("lightning.pytorch")
    out = tmp_path_factory.mktemp("spawn")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(TESTS / "_spawn_trial_run.py"), str(out)], capture_output=True,
                          text=True, timeout=420, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_pytorch_lightning_pruning_callback_ddp_monitor(spawn_run):
    """Port of ``test_pytorch_lightning_pruning_callback_ddp_monitor`` (``ddp_spawn``, 2 CPU ranks, SQLite): rank 0
    logs 0.3 and rank 1 0.6 with ``sync_dist``; the trial is PRUNED at epoch 0 with the mean, 0.45, though the
    fit ran in processes of its own. Differs: only the pruned half and only SQLite (a launch costs ~20 s; the
    unpruned path is the single-process test above, a journal storage is as shared as SQLite)."""
    pruned = spawn_run["pruned"]
    assert pruned["state"] == "PRUNED"
    assert list(pruned["intermediate_values"]) == ["0"]
    assert math.isclose(pruned["intermediate_values"]["0"], 0.45, rel_tol=1e-6)
    assert math.isclose(pruned["value"], 0.45, rel_tol=1e-6)
    seen = pruned["seen"][0]  # the objective's process, after fit: it knows
    assert seen["pruned"] and seen["pruned_step"] == 0 and "trial 0 pruned at epoch 0" in seen["message"]


@pytest.mark.slow
def test_pytorch_lightning_pruning_callback_ddp_unsupported_storage(spawn_run):
    """Port of ``test_pytorch_lightning_pruning_callback_ddp_unsupported_storage``. Differs: a ValueError in the
    objective's process, before any rank starts, saying what to use (the peer's ValueError is raised inside the
    spawned rank and reaches the objective as torch's ProcessRaisedException)."""
    refused = spawn_run["unsupported"]
    assert refused["type"] == "ValueError" and not refused["ran_past_fit"] and refused["states"] == ["FAIL"]
    assert "in memory (InMemoryStorage)" in refused["error"] and "strategy='ddp'" in refused["error"]
    assert "storage='sqlite:///study.db'" in refused["error"]


# -- optuna-integration: KerasPruningCallback and TFKerasPruningCallback ------------------------------------------
def keras_classifier():
    keras = pytest.importorskip("keras")
    import numpy as np

    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return model, np.zeros((16, 20), np.float32), np.zeros((16,), np.int32)


@pytest.mark.parametrize("epochs", [1, 2])
def test_keras_pruning_callback(epochs):
    """Port of ``test_keras_pruning_callback`` (the cases ``interval <= epochs``) and ``test_tfkeras_pruning_callback``:
    PRUNED with an always-pruning pruner (fit stops after epoch 0), COMPLETE with 1.0 otherwise; the values
    reported are the epochs' logged accuracy. Differs: no ``interval=`` argument (``interval=2, epochs=1`` is not
    ported): ``TrialReporter`` reports every epoch and the pruner's ``interval_steps`` says when to prune."""
    import hpcallbacks_keras as HK

    trained = []

    def objective(trial):
        model, x, y = keras_classifier()
        reporter = HK.TrialReporter(trial, "accuracy")
        history = model.fit(x, y, batch_size=8, epochs=epochs, callbacks=[reporter], verbose=0)
        trained.append(len(history.history["loss"]))
        assert trial.study.trials[-1].intermediate_values == dict(enumerate(history.history["accuracy"]))
        reporter.raise_if_pruned()
        return 1.0

    study = optuna.create_study(pruner=DeterministicPruner(True))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == PRUNED
    study = optuna.create_study(pruner=DeterministicPruner(False))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == COMPLETE and study.trials[0].value == 1.0
    assert trained == [1, epochs]


def test_keras_pruning_callback_observation_isnan():
    """Port of ``test_keras_pruning_callback_observation_isnan`` / ``test_tfkeras_pruning_callback_observation_isnan``:
    a NaN observation is reported and pruned like any value. Differs: each prune stops the model
    (``model.stop_training``) and ``raise_if_pruned`` raises TrialPruned, rather than the hook raising."""
    import hpcallbacks_keras as HK

    model, _, _ = keras_classifier()
    study = optuna.create_study(pruner=DeterministicPruner(True))
    trial = study.ask()
    reporter = HK.TrialReporter(trial, "loss")
    reporter.set_model(model)
    reporter.on_train_begin()
    reporter.on_epoch_end(0, {"loss": 1.0})
    assert model.stop_training and reporter.pruned_step == 0
    with pytest.raises(optuna.TrialPruned):
        reporter.raise_if_pruned()
    model.stop_training = False
    reporter.on_train_begin()
    reporter.on_epoch_end(1, {"loss": float("nan")})
    assert model.stop_training and reporter.pruned_step == 1
    with pytest.raises(optuna.TrialPruned):
        reporter.raise_if_pruned()
    assert math.isnan(study.trials[0].intermediate_values[1])


def test_keras_pruning_callback_monitor_is_invalid():
    """Port of ``test_keras_pruning_callback_monitor_is_invalid`` and
    ``test_tfkeras_pruning_callback_monitor_is_invalid``. Differs: a ValueError naming the monitor and the logged
    keys (the peers warn)."""
    import hpcallbacks_keras as HK

    model, _, _ = keras_classifier()
    reporter = HK.TrialReporter(optuna.create_study(pruner=DeterministicPruner(True)).ask(), "InvalidMonitor")
    reporter.set_model(model)
    reporter.on_train_begin()
    with pytest.raises(ValueError, match=r"monitor 'InvalidMonitor' was not logged at this epoch's end \(logged: "
                                         r"loss\)"):
        reporter.on_epoch_end(0, {"loss": 1.0})


# -- transformers: hyperparameter_search with Optuna ----------------------------------------------------------
def hf_regression(tmp_path, **kwargs):
    """transformers' regression trainer in small: ``y = 2x + 3 + noise`` (64 samples), a model ``a * x + b``
    whose loss is the MSE, evaluated each epoch with an "almost accuracy" (``|prediction - label| <= 0.25``)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import numpy as np

    class RegressionModel(torch.nn.Module):
        def __init__(self, a=0.0, b=0.0):
            super().__init__()
            self.a, self.b = torch.nn.Parameter(torch.tensor(float(a))), torch.nn.Parameter(torch.tensor(float(b)))

        def forward(self, x, y=None):
            prediction = self.a * x + self.b
            return {"loss": torch.nn.functional.mse_loss(prediction, y), "logits": prediction}

    rng = np.random.default_rng(42)
    x = rng.normal(size=64).astype(np.float32)
    y = (2.0 * x + 3.0 + rng.normal(scale=0.1, size=64)).astype(np.float32)
    data = [{"x": torch.tensor(x[i]), "y": torch.tensor(y[i])} for i in range(64)]

    def almost_accuracy(prediction):
        return {"accuracy": float((np.abs(prediction.predictions - prediction.label_ids) <= 0.25).mean())}

    args = transformers.TrainingArguments(**{
        "output_dir": str(tmp_path), "use_cpu": True, "report_to": [], "save_strategy": "no", "disable_tqdm": True,
        "logging_strategy": "no", "eval_strategy": "epoch", "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64, "learning_rate": 0.1, "num_train_epochs": 4, "seed": 0,
        "dataloader_num_workers": 0, "label_names": ["y"], **kwargs})
    return transformers, RegressionModel, data, almost_accuracy, args


def test_hf_hyperparameter_search_single_objective(tmp_path):
    """Port of ``TrainerHyperParameterOptunaIntegrationTest.test_hyperparameter_search``: 4 trials over ``a, b`` in
    [-4, 4], 4 epochs evaluated each epoch, HF's pruner (``MedianPruner``). Differs: the objective is the user's
    (``TrialReporter`` needs the trial when the Trainer is built; inside ``hyperparameter_search`` HF reports and
    prunes itself). Each trial's reports are its logged ``eval_loss``, one per evaluation; every trial ends
    COMPLETE or PRUNED, a pruned one with fewer evaluations."""
    transformers, RegressionModel, data, _, args = hf_regression(tmp_path)
    import hpcallbacks_hf as H

    logged = []

    def objective(trial):
        model = RegressionModel(trial.suggest_int("a", -4, 4), trial.suggest_int("b", -4, 4))
        reporter = H.TrialReporter(trial)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                       callbacks=[reporter])
        trainer.train()
        logged.append([entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry])
        reporter.raise_if_pruned()
        return logged[-1][-1]

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    study.optimize(objective, n_trials=4)
    for trial, losses in zip(study.trials, logged):
        assert trial.state in (COMPLETE, PRUNED)
        assert trial.intermediate_values == pytest.approx(dict(enumerate(losses)))
        assert len(losses) == 4 or trial.state == PRUNED  # a pruned trial stopped at its last report


def test_hf_hyperparameter_search_multi_objective(tmp_path):
    """Port of ``TrainerHyperParameterMultiObjectOptunaIntegrationTest.test_hyperparameter_search``: a study of
    ``["minimize", "maximize"]`` (eval_loss, accuracy). As HF's own search does, nothing is reported (Optuna prunes
    single-objective studies only) and every trial trains all its epochs; the reporter warns once, when built."""
    transformers, RegressionModel, data, almost_accuracy, args = hf_regression(tmp_path, num_train_epochs=2)
    import hpcallbacks_hf as H

    epochs = []

    def objective(trial):
        model = RegressionModel(trial.suggest_int("a", -4, 4), trial.suggest_int("b", -4, 4))
        with pytest.warns(UserWarning, match="multi-objective.*nothing is reported"):
            reporter = H.TrialReporter(trial)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                       compute_metrics=almost_accuracy, callbacks=[reporter])
        trainer.train()
        epochs.append(round(trainer.state.epoch))
        reporter.raise_if_pruned()
        metrics = trainer.evaluate()
        return metrics["eval_loss"], metrics["eval_accuracy"]

    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [COMPLETE] * 2 and epochs == [2, 2]
    assert all(t.intermediate_values == {} and len(t.values) == 2 for t in study.trials)
    assert study.best_trials  # the Pareto front, as hyperparameter_search returns it
