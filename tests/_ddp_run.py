"""Lightning DDP scenario of tests/test_distributed.py (run by tests/_distributed_run.py, 2 CPU ranks).

``main(OUT_DIR)`` fits the same backbone + head model three times under
``strategy="ddp", accelerator="cpu", devices=2``: with Lightning's ``BackboneFinetuning`` (the
anchor), with hpcallbacks (``SwapNorm`` + ``StagedUnfreeze`` + ``CosineRestart``) and with ``FineTune``.
At the start of every update each rank all-gathers its flattened weights and records whether both ranks
hold the same ones, which groups are trainable and whether a frozen parameter had a gradient;
each rank writes ``OUT_DIR/<run>-rank<r>.json``.
"""
from __future__ import annotations

import json
import os
import warnings

import lightning.pytorch as L
import torch
from torch import nn

import hpcallbacks_lightning as HL
from hpcallbacks import FreezePlan

warnings.filterwarnings("ignore")


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1, momentum=0.9)


class Check(L.Callback):
    def __init__(self, out: str, run: str) -> None:
        self.path = os.path.join(out, run)
        self.rows: list = []
        self.frozen_grads = 0

    def _groups(self, pl_module):
        return [list(pl_module.backbone[0].parameters()), list(pl_module.backbone[3].parameters()),
                list(pl_module.head.parameters())]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        flat = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        same = bool(torch.equal(gathered[0], gathered[1]))
        trainable = [all(p.requires_grad for p in g) for g in self._groups(pl_module)]
        self.rows.append([trainer.global_step, same, trainable])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        for group in self._groups(pl_module):
            for p in group:
                if not p.requires_grad and p.grad is not None:
                    self.frozen_grads += 1

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        result = {"rows": self.rows, "frozen_grads": self.frozen_grads, "rank": trainer.global_rank,
                  "end_same": bool(torch.equal(gathered[0], gathered[1])),
                  "norms": [type(m).__name__ for m in pl_module.modules() if "Norm" in type(m).__name__],
                  "find_unused": bool(getattr(trainer.strategy, "_ddp_kwargs", {}).get("find_unused_parameters"))}
        with open(f"{self.path}-rank{trainer.global_rank}.json", "w") as f:
            json.dump(result, f)
        trainer.strategy.barrier()


def main(out: str) -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g))
    common = dict(max_epochs=3, strategy="ddp", accelerator="cpu", devices=2, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    from lightning.pytorch.callbacks import BackboneFinetuning

    anchor = L.Trainer(callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=1), Check(out, "anchor")],
                       logger=False, **common)
    anchor.fit(Net(), torch.utils.data.DataLoader(data, batch_size=4))
    from lightning.pytorch.loggers import CSVLogger

    ours = L.Trainer(callbacks=[HL.SwapNorm(to="group", groups=2), HL.CosineRestart(),
                                HL.StagedUnfreeze(FreezePlan.head_then_all(head_epochs=1), groups=["backbone", "head"]),
                                Check(out, "ours")],
                     logger=CSVLogger(out, name="logs"), log_every_n_steps=1, **common)
    ours.fit(Net(), torch.utils.data.DataLoader(data, batch_size=4))
    # FineTune (issue 22): the recipe (head, then every group; BatchNorm frozen) under DDP, no SwapNorm
    recipe = L.Trainer(callbacks=[HL.FineTune(groups=["backbone", "head"]), Check(out, "finetune")], logger=False,
                       **common)
    recipe.fit(Net(), torch.utils.data.DataLoader(data, batch_size=4))
