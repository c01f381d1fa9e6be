"""Defaults that win, shown: naive vs fastai's ``fine_tune`` vs ``FineTune()`` on the demos' three tasks (not a test).

    python benchmarks/fine_tune.py [--seeds 0 1 2] [--tasks digits words cnn] [--runs naive fastai finetune]

Per task and seed, the same data, model, initial head, epochs and batch as ``hpcallbacks demo``:

* **digits** (Lightning): ImageNet EfficientNet-Lite0 on sklearn digits (1,437 train / 360
  validation images at 32x32), 6 epochs, batch 64, Adam;
* **words** (HF ``Trainer``): all-MiniLM-L6-v2 on VADER word sentiment (384 train / 768
  validation tokens), 4 epochs, batch 32, AdamW;
* **cnn** (Keras): a 28k-parameter CNN pretrained here on digits 0-4, fine-tuned on 125 images of
  5-9 (400 validation), 20 epochs, batch 16, Adam.

Three runs each:

* (a) **naive**: every weight trainable at the framework's defaults (Adam's 1e-3 constant in
  Lightning and Keras; HF's AdamW 5e-5 with linear decay);
* (b) **fastai**: fastai's ``learn.fine_tune(epochs - 1)`` rebuilt from hpcallbacks parts: the
  head alone for 1 epoch under one-cycle at ``base_lr = 2e-3`` (``pct_start=0.99``), then every
  group at ``slice(lr / 100, lr)`` with ``lr = base_lr / 2`` under one-cycle (``pct_start=0.3``,
  ``div_factor=5``); BatchNorm layers train (fastai's ``train_bn=True``); ``StagedUnfreeze`` +
  ``LearningRateSchedule``;
* (c) **finetune**: ``FineTune()`` with its defaults (only the layer groups given, as the demos
  give them).

Prints each run's final validation accuracy, then a table of mean +- sd per task and run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LABELS = {"naive": "(a) naive, framework defaults", "fastai": "(b) fastai fine_tune, rebuilt",
          "finetune": "(c) FineTune() defaults"}
TASKS = {"digits": "EfficientNet-Lite0 / digits (Lightning)", "words": "MiniLM / VADER words (HF)",
         "cnn": "small CNN 0-4 -> 5-9 (Keras)"}
FASTAI_LR = 2e-3  # fastai's fine_tune base_lr


def fastai_parts(steps_per_epoch: int, epochs: int):
    """(plan, schedule) of fastai's ``fine_tune``: 1 frozen epoch, then all groups at slice(lr/100, lr)."""
    from hpcallbacks import schedules as S
    from hpcallbacks.plans import FreezePlan, LRFactors

    plan = FreezePlan.head_then_all(head_epochs=1, factors=LRFactors.spread(1e-2, 1.0), bn="train")
    first = S.OneCycle(FASTAI_LR, total_steps=max(2, steps_per_epoch), pct_start=0.99 if steps_per_epoch > 2 else 0.5)
    rest = S.OneCycle(FASTAI_LR / 2, total_steps=max(2, (epochs - 1) * steps_per_epoch), pct_start=0.3, div_factor=5.0)
    return plan, S.Join([first, rest], boundaries=[steps_per_epoch])


# -- digits, Lightning --------------------------------------------------------------------------
def run_digits(name: str, seed: int, epochs: int = 6) -> float:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpcallbacks_demo import lightning as demo

    data = demo.load_digits_images(seed, quick=False)
    (x_train, y_train), (x_val, y_val) = data
    demo._quiet_lightning()
    pl.seed_everything(seed, verbose=False)
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=demo.BATCH_SIZE, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
    module = demo.make_module(demo.NAIVE_LR, seed)
    callbacks: list[Any] = []
    if name == "fastai":
        from hpcallbacks_lightning import LearningRateSchedule, StagedUnfreeze

        plan, schedule = fastai_parts(len(train), epochs)
        callbacks = [StagedUnfreeze(plan, groups=demo.layer_groups()), LearningRateSchedule(schedule)]
    elif name == "finetune":
        from hpcallbacks_lightning import FineTune

        callbacks = [FineTune(groups=demo.layer_groups())]
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
                         callbacks=callbacks)
    trainer.fit(module, train, val)
    return module.val_curve[-1]


# -- words, HF -----------------------------------------------------------------------------------
def run_words(name: str, seed: int, epochs: int = 4) -> float:
    import numpy as np
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from hpcallbacks_demo import hf as demo

    demo._quiet(False)
    tokenizer = AutoTokenizer.from_pretrained(demo.model_path())
    train_rows, val_rows = (demo.tokenize(tokenizer, rows) for rows in demo.load_vader(seed, *demo.SIZES[False]))
    model = demo.load_model(seed)
    curve: list[float] = []

    class Curve(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            curve.append(float(metrics["eval_accuracy"]))

    callbacks: list[Any] = [Curve()]
    settings: dict[str, Any] = {}
    if name == "fastai":
        from hpcallbacks_hf import LearningRateSchedule, StagedUnfreeze

        plan, schedule = fastai_parts(-(-len(train_rows) // demo.BATCH_SIZE), epochs)
        callbacks += [StagedUnfreeze(plan), LearningRateSchedule(schedule)]
    elif name == "finetune":
        from hpcallbacks_hf import FineTune

        callbacks.append(FineTune())
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(tmp, per_device_train_batch_size=demo.BATCH_SIZE, per_device_eval_batch_size=256,
                                 num_train_epochs=epochs, eval_strategy="epoch", save_strategy="no",
                                 logging_strategy="no", report_to=[], use_cpu=True, seed=seed,
                                 dataloader_num_workers=0, disable_tqdm=True, **settings)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks,
                          compute_metrics=lambda p: {"accuracy": float(np.mean(p.predictions.argmax(-1)
                                                                               == p.label_ids))})
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return curve[-1]


# -- small CNN, Keras ----------------------------------------------------------------------------
_WEIGHTS: dict[int, Any] = {}


def run_cnn(name: str, seed: int, epochs: int = 20) -> float:
    import keras

    from hpcallbacks_demo import keras as demo

    pretraining, (x, y), (x_val, y_val) = demo.load_digits_split(seed, demo.PER_CLASS)
    if seed not in _WEIGHTS:
        _WEIGHTS[seed] = demo.pretrain(pretraining, seed, demo.PRETRAIN_EPOCHS[0])[0]
    model, _ = demo.fine_tune_model(_WEIGHTS[seed], seed)
    callbacks: list[Any] = []
    lr = demo.NAIVE_LR
    if name == "fastai":
        from hpcallbacks_keras import LearningRateSchedule, StagedUnfreeze

        plan, schedule = fastai_parts(-(-len(y) // demo.BATCH_SIZE), epochs)
        callbacks = [StagedUnfreeze(plan, groups=demo.GROUPS), LearningRateSchedule(schedule)]
    elif name == "finetune":
        from hpcallbacks_keras import FineTune

        callbacks = [FineTune(groups=demo.GROUPS)]
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=demo.BATCH_SIZE, epochs=epochs, validation_data=(x_val, y_val), verbose=0,
                        shuffle=True, callbacks=callbacks)
    return float(history.history["val_accuracy"][-1])


RUNNERS = {"digits": run_digits, "words": run_words, "cnn": run_cnn}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--runs", nargs="+", default=list(LABELS), choices=list(LABELS))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    acc: dict[tuple[str, str], list[float]] = {}
    start = time.perf_counter()
    for task in args.tasks:
        for seed in args.seeds:
            for name in args.runs:
                t0 = time.perf_counter()
                a = RUNNERS[task](name, seed)
                acc.setdefault((task, name), []).append(a)
                print(f"{task:<7} seed {seed} {LABELS[name]:<32} acc {a:.3f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
    wall = time.perf_counter() - start
    print(f"\nseeds {' '.join(map(str, args.seeds))}: {wall:.0f} s wall in all")
    print(f"| task | {' | '.join(LABELS[n] for n in args.runs)} |")
    print(f"| --- | {' | '.join('---' for _ in args.runs)} |")
    for task in args.tasks:
        cells = []
        for name in args.runs:
            values = acc[(task, name)]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} +- {sd:.3f}")
        print(f"| {TASKS[task]} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
