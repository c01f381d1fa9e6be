"""HF torchrun scenario of tests/test_distributed.py (run by tests/_distributed_run.py, 2 CPU ranks, gloo).

``main(OUT_DIR)``: a small
regression trained with ``GradientAccumulation(16)`` (4 per device x 2 ranks x 2 micro-batches),
``LRFinder(num_steps=20)`` and ``LabelFlip(0.5, seed=3)`` (its targets of a vector of ones taken in
``compute_loss``). Each rank writes ``OUT_DIR/rank<r>.json``: the accumulation, world size and
updates, the finder's suggestion, whether the weights after the test equal those before, a
fingerprint of the final weights, and the flipped targets of every micro-batch.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
import torch.distributed as dist
from hf_versions import in_order, training_arguments
from torch import nn
from transformers import Trainer, TrainerCallback

import hpcallbacks_hf as H

warnings.filterwarnings("ignore")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = nn.Linear(4, 8), nn.Linear(8, 1)

    def forward(self, x, y=None):
        return {"loss": nn.functional.mse_loss(self.head(torch.relu(self.body(x))), y)}


class Flips(Trainer):
    flips: list

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.flips.append(H.LabelFlip.of(self).targets(torch.ones(inputs["x"].shape[0])).tolist())
        return model(**inputs)["loss"]


class Before(TrainerCallback):
    def __init__(self) -> None:
        self.seen: list = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.seen.append([p.detach().clone() for p in model.parameters()])


class After(Before):
    pass


def main(out: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(1, keepdim=True)
    data = [{"x": x[i], "y": y[i]} for i in range(64)]
    args = training_arguments(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                              logging_strategy="no", per_device_train_batch_size=4, num_train_epochs=1,
                              learning_rate=0.01, seed=0, average_tokens_across_devices=False,
                              train_sampling_strategy="sequential")
    before, after = Before(), After()
    finder = H.LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=20)
    trainer = in_order(Flips)(model=Net(), args=args, train_dataset=data,
                              callbacks=[before, H.GradientAccumulation(16), finder, after, H.LabelFlip(0.5, seed=3)])
    trainer.flips = []
    trainer.train()
    rank = dist.get_rank()
    final = torch.cat([p.detach().flatten() for p in trainer.model.parameters()]).tolist()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"accumulate": trainer.args.gradient_accumulation_steps, "world": dist.get_world_size(),
                   "global_step": trainer.state.global_step, "suggestion": finder.suggestion,
                   "restored": all(torch.equal(p, q) for p, q in zip(before.seen[0], after.seen[0], strict=True)),
                   "weights": final, "flips": trainer.flips}, f)
