"""HF torchrun scenario of tests/test_distributed.py (run by tests/_distributed_run.py, 2 CPU ranks, gloo).

``main(OUT_DIR)``: a tiny BERT
(built from a config) whose encoder the user froze before building the Trainer, fine-tuned with
``StagedUnfreeze(FreezePlan.gradual(every_epochs=1, groups_per_stage=2))`` + ``CosineRestart()``.
At the start of every update each rank all-gathers a fingerprint of its weights and records
whether both ranks hold the same ones, which parameters are trainable, whether a frozen
parameter had a gradient before the optimizer step and the LR of each param group; each rank
writes ``OUT_DIR/rank<r>.json``.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
import torch.distributed as dist
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from hpcallbacks import FreezePlan
from hpcallbacks_hf import CosineRestart, StagedUnfreeze

warnings.filterwarnings("ignore")


def fingerprint(model: torch.nn.Module) -> torch.Tensor:
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
    return torch.stack([flat.sum(), (flat * weights).sum(), flat.abs().max()])


class Watch(TrainerCallback):
    def __init__(self, model) -> None:
        self.model = model
        self.rows: list[dict] = []
        self.start = [p.detach().clone() for p in model.bert.encoder.layer[0].parameters()]

    def on_step_begin(self, args, state, control, **kwargs):
        mine = fingerprint(self.model)
        everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, mine)
        self.rows.append({"update": state.global_step, "same": all(torch.equal(mine, o) for o in everyone),
                          "trainable": sum(p.requires_grad for p in self.model.parameters())})

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        row = self.rows[-1]
        row["frozen_grad"] = any(p.grad is not None for p in self.model.parameters() if not p.requires_grad)
        row["lrs"] = sorted({round(float(g["lr"]), 12) for g in optimizer.param_groups})
        row["layer0_moved"] = any(not torch.equal(p, q) for p, q in
                                  zip(self.model.bert.encoder.layer[0].parameters(), self.start, strict=True))


def main(out: str) -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)
    for p in model.bert.parameters():  # the user's own freezing, before the Trainer exists
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (32, 6), generator=g)
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(6, dtype=torch.long),
             "labels": (ids[i, 0] > 20).long()} for i in range(32)]
    args = TrainingArguments(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                             logging_strategy="no", per_device_train_batch_size=4, num_train_epochs=3,
                             learning_rate=0.05, seed=0, average_tokens_across_devices=False)
    watch = Watch(model)
    plan = FreezePlan.gradual(every_epochs=1, groups_per_stage=2)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[StagedUnfreeze(plan), CosineRestart(), watch])
    trainer.train()
    rank = dist.get_rank() if dist.is_initialized() else 0
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rows": watch.rows, "world": dist.get_world_size()}, f)
    # FineTune (issue 22) on a fresh model the user froze the same way: the head's epoch, then every group
    from hpcallbacks_hf import FineTune

    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    for p in model.bert.parameters():
        p.requires_grad_(False)
    watch = Watch(model)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[FineTune(), watch]).train()
    with open(os.path.join(out, f"finetune-rank{rank}.json"), "w") as f:
        json.dump({"rows": watch.rows, "world": dist.get_world_size()}, f)
