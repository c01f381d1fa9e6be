"""TrialReporter under Lightning DDP and HF torchrun: scenarios of tests/test_distributed.py (2 CPU ranks).

``main("lightning", OUT_DIR)`` (``strategy="ddp"``, ``devices=2``) or ``main("hf", OUT_DIR)`` (under torchrun),
run by tests/_distributed_run.py.
Every rank runs the same Optuna study of 2 trials (in memory, its own ``RandomSampler(seed=rank)``, so the
ranks draw different values) with a pruner that prunes every trial at step 1. Each trial shares rank 0's
draw (:func:`hpcallbacks.search.shared_params`) and trains 4 epochs with ``TrialReporter``; rank 0's trial
is pruned after epoch 1, and rank 1 must stop there too (or it would hang in its next collective). Each rank
writes ``OUT_DIR/rank<r>.json``: per trial the values it drew, the values it trained with (and its optimizer's
learning rate), the epochs it trained and the step at which it was pruned; and the states of its study's trials.
"""
from __future__ import annotations

import json
import os
import warnings

import optuna
import torch
from torch import nn

from hpcallbacks.search import shared_params

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS = 4


class Prunes(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return max(trial.intermediate_values, default=-1) >= 1


def dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def lightning_trial(trial, record):
    import lightning.pytorch as L

    import hpcallbacks_lightning as HL

    class Net(L.LightningModule):
        def __init__(self, params):
            super().__init__()
            torch.manual_seed(0)
            self.net, self.params = nn.Linear(4, 1), params

        def setup(self, stage):  # inside fit: the process group exists
            self.params = shared_params(self.params, lambda obj: self.trainer.strategy.broadcast(obj, src=0))

        def training_step(self, batch, batch_idx):
            return nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.params["lr"])

    class Epochs(L.Callback):
        count = 0

        def on_train_epoch_end(self, trainer, pl_module):
            self.count += 1

    sampled = {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}
    reporter, epochs = HL.TrialReporter(trial, monitor="val_loss"), Epochs()
    trainer = L.Trainer(max_epochs=EPOCHS, strategy="ddp", accelerator="cpu", devices=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[reporter, epochs])
    model = Net(sampled)
    x, y = dataset()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer.fit(model, loader, loader)
    record.append({"sampled": sampled, "params": model.params, "epochs": epochs.count,
                   "lr_used": trainer.optimizers[0].param_groups[0]["lr"], "pruned_step": reporter.pruned_step})
    reporter.raise_if_pruned()  # rank 0: the study records the prune; the other ranks hold no trial
    return trainer.callback_metrics["val_loss"].item()


def hf_trial(trial, record, out):
    from transformers import Trainer, TrainingArguments

    from hpcallbacks_hf import TrialReporter
    from hpcallbacks_hf.extras import broadcast_from_rank0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(4, 1)

        def forward(self, x, y=None):
            return {"loss": nn.functional.mse_loss(self.net(x), y)}

    sampled = {"learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)}
    args = TrainingArguments(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                             logging_strategy="no", per_device_train_batch_size=4, per_device_eval_batch_size=4,
                             num_train_epochs=EPOCHS, eval_strategy="epoch", lr_scheduler_type="constant",
                             optim="sgd", seed=0, dataloader_num_workers=0, label_names=["y"])
    assert torch.distributed.is_initialized() and args.world_size == 2  # TrainingArguments set up the group
    params = shared_params(sampled, broadcast_from_rank0)  # every rank: rank 0's draw
    args.learning_rate = params["learning_rate"]
    x, y = dataset()
    data = [{"x": x[i], "y": y[i]} for i in range(len(x))]
    reporter = TrialReporter(trial)
    trainer = Trainer(model=Net(), args=args, train_dataset=data, eval_dataset=data, callbacks=[reporter])
    trainer.train()
    record.append({"sampled": sampled, "params": params, "epochs": round(trainer.state.epoch),
                   "lr_used": trainer.optimizer.param_groups[0]["lr"], "pruned_step": reporter.pruned_step})
    reporter.raise_if_pruned()
    return reporter.reporter.history[-1][1]


def main(kind: str, out: str) -> None:
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))  # Lightning's rank 0 has neither yet
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rank), pruner=Prunes())
    record: list = []
    if kind == "lightning":
        study.optimize(lambda trial: lightning_trial(trial, record), n_trials=2)
    else:
        study.optimize(lambda trial: hf_trial(trial, record, out), n_trials=2)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"trials": record, "states": [t.state.name for t in study.trials]}, f)
