"""Lightning DDP scenario of tests/test_distributed.py (run by tests/_distributed_run.py, 2 CPU ranks).

``main(OUT_DIR)``: one fit under ``strategy="ddp", accelerator="cpu",
devices=2`` with ``GradientAccumulation(16)`` (per-device batch 4 x 2 ranks -> 2 micro-batches),
``LRFinder`` (its test runs through DDP, restores the weights) and ``LabelFlip``; each rank writes
``OUT_DIR/rank<r>.json``: the accumulation, the finder's suggestion and whether the weights were
restored, the flips of its half of the batch, the weights at the end (identical ranks).
"""
from __future__ import annotations

import json
import os
import warnings

import lightning.pytorch as L
import torch
from torch import nn

import hpcallbacks_lightning as HL

warnings.filterwarnings("ignore")


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.flips = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        flip = HL.LabelFlip.of(self.trainer)
        self.flips.append(flip.targets(torch.ones(x.shape[0])).tolist())
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Snapshot(L.Callback):
    def __init__(self) -> None:
        self.params = None

    def on_train_start(self, trainer, pl_module):
        self.params = [p.detach().clone() for p in pl_module.parameters()]
        pl_module.flips = []  # drop what the range test's training_step calls recorded


def main(out: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    before, after = Snapshot(), Snapshot()
    finder = HL.LRFinder(min_lr=1e-4, max_lr=10.0, num_steps=40)
    trainer = L.Trainer(max_epochs=1, strategy="ddp", accelerator="cpu", devices=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[before, finder, after, HL.GradientAccumulation(16), HL.LabelFlip(0.5, seed=3)])
    model = Net()
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    result = {"accumulate": trainer.accumulate_grad_batches, "world": trainer.world_size,
              "suggestion": finder.suggestion, "steps": len(finder.result.losses),
              "restored": all(torch.equal(a, b) for a, b in zip(before.params, after.params)),
              "flips": model.flips, "weights": weights, "global_step": trainer.global_step}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(result, f)
