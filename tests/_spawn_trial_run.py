"""TrialReporter under Lightning's ``ddp_spawn`` (2 CPU ranks, gloo): a port of optuna-integration's
``test_pytorch_lightning_pruning_callback_ddp_monitor`` and ``..._ddp_unsupported_storage``.

``python tests/_spawn_trial_run.py OUT_DIR`` runs, in this order, and writes ``OUT_DIR/result.json``:

1. ``unsupported``: an in-memory study: ``trainer.fit`` must refuse before any process starts (the
   ValueError's text is recorded, and whether the objective ran past ``fit``).
2. ``pruned``: a SQLite study whose pruner prunes every trial (optuna's ``DeterministicPruner(True)``):
   rank 0 logs accuracy 0.3 and rank 1 0.6 with ``sync_dist=True`` (0.45 reported at epoch 0), the
   trial must be recorded PRUNED with ``intermediate_values == {0: 0.45}``, though the fit ran in
   processes of its own: the objective's process learns of the prune from the storage.

The LightningModule is defined at the top level: ``ddp_spawn`` pickles the Trainer for its ranks.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import lightning.pytorch as L
import optuna
import torch
from torch import nn

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)


class Prunes(optuna.pruners.BasePruner):
    """optuna.testing.pruners.DeterministicPruner(True): every report prunes."""

    def prune(self, study, trial):
        return True


class ModelDDP(L.LightningModule):
    """optuna-integration's ModelDDP: a different accuracy per rank, averaged by sync_dist."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 8)

    def training_step(self, batch, batch_idx):
        return nn.functional.nll_loss(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        accuracy = torch.tensor(0.3 if self.global_rank == 0 else 0.6)
        self.log("accuracy", accuracy, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-2)

    def _loader(self):
        data = torch.utils.data.TensorDataset(torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64))
        return torch.utils.data.DataLoader(data, batch_size=1)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()


def objective(trial, ran):
    from hpcallbacks_lightning import TrialReporter

    reporter = TrialReporter(trial, monitor="accuracy")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[reporter])
    trainer.fit(ModelDDP())
    ran.append({"pruned": reporter.pruned, "pruned_step": reporter.pruned_step, "message": reporter.message})
    reporter.raise_if_pruned()
    return 1.0


def main(out: str) -> None:
    result: dict = {}
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), pruner=Prunes())
    ran: list = []
    try:
        study.optimize(lambda t: objective(t, ran), n_trials=1)
        result["unsupported"] = {"error": None}
    except ValueError as error:
        result["unsupported"] = {"error": str(error), "type": type(error).__name__}
    result["unsupported"]["ran_past_fit"] = bool(ran)
    result["unsupported"]["states"] = [t.state.name for t in study.trials]

    storage = f"sqlite:///{os.path.join(out, 'study.db')}"
    study = optuna.create_study(storage=storage, pruner=Prunes())
    ran = []
    study.optimize(lambda t: objective(t, ran), n_trials=1)
    trial = study.trials[0]
    result["pruned"] = {"state": trial.state.name, "intermediate_values": trial.intermediate_values,
                        "value": trial.value, "seen": ran}
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
