"""The micro-batch finder's scenarios of tests/test_distributed.py (run by tests/_distributed_run.py, 2 CPU ranks).

``main(OUT_DIR)`` (Lightning): a fit under
``strategy="ddp", accelerator="cpu", devices=2`` with ``MicroBatchFinder(64)`` on a model that runs
out of memory above 8 samples per forward (-> 8 per rank x 4 micro-batches x 2 ranks), then one
where rank 1 runs out above 4 (-> both ranks 4 x 8). Each rank writes ``OUT_DIR/rank<r>.json``.

``hf(OUT_DIR)`` (under torchrun): the same two runs with HF's ``Trainer`` (gloo).
"""
from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")


def fit(limits):
    import lightning.pytorch as L

    import hpcallbacks_lightning as HL

    class Net(L.LightningModule):
        def __init__(self, limits=(8, 8)) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
            self.limits = limits

        def training_step(self, batch, batch_idx):
            x, y = batch
            limit = self.limits[self.global_rank]
            if x.shape[0] > limit:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (test model: {x.shape[0]} samples > {limit})")
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def on_train_start(self):
            self.at_start = [p.detach().clone() for p in self.parameters()]  # after the probes

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    finder = HL.MicroBatchFinder(64)
    trainer = L.Trainer(max_epochs=1, strategy="ddp", accelerator="cpu", devices=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[finder])
    model = Net(limits)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=64))
    return trainer, finder, model, all(torch.equal(a, b) for a, b in zip(before, model.at_start))


def hf(out: str) -> None:
    import torch.distributed as dist
    from transformers import Trainer, TrainingArguments

    import hpcallbacks_hf as H

    class Model(nn.Module):
        def __init__(self, limit: int) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net, self.limit = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), limit

        def forward(self, x, y=None):
            if x.shape[0] > self.limit:
                raise torch.cuda.OutOfMemoryError(
                    f"CUDA out of memory (test model: {x.shape[0]} samples > {self.limit})")
            return {"loss": nn.functional.mse_loss(self.net(x), y)}

    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    rows = [{"x": x[i], "y": x[i].sum(0, keepdim=True)} for i in range(256)]
    result = {}
    for name, limits in (("even", (8, 8)), ("uneven", (8, 4))):
        args = TrainingArguments(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                                 logging_strategy="no", per_device_train_batch_size=64, num_train_epochs=1, seed=0)
        finder = H.MicroBatchFinder(64)
        trainer = Trainer(model=Model(limits[dist.get_rank()]), args=args, train_dataset=rows, callbacks=[finder])
        trainer.train()
        result[name] = [finder.result.micro_batch_size, finder.result.accumulation, trainer.state.global_step,
                        args.world_size, args.per_device_train_batch_size]
    with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump(result, f)


def main(out: str) -> None:
    trainer, finder, model, restored = fit((8, 8))
    _, uneven, _, _ = fit((8, 4))
    result = {"micro_batch_size": finder.result.micro_batch_size, "accumulation": finder.result.accumulation,
              "world": trainer.world_size, "batch_size": trainer.train_dataloader.batch_size,
              "uneven": [uneven.result.micro_batch_size, uneven.result.accumulation],
              "restored": restored, "global_step": trainer.global_step,
              "weights": torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(result, f)
