"""The contract table's driver for HuggingFace ``transformers.Trainer`` (``Trainer.train``, CPU, tiny models).

The model is a plain ``torch.nn.Module`` whose top-level children are the row's layer groups;
``forward(x, y)`` returns ``{"loss": mse, "pred": output}``. The recorder is a ``TrainerCallback``
listed after the hpcallbacks callbacks: at ``on_pre_optimizer_step`` it reads each layer group's
``param_group["lr"]`` and ``requires_grad``; at ``on_step_end`` (after HF's
``lr_scheduler.step()``), the LR the optimizer shows and the BatchNorm statistics. A row with a
metric evaluates at every epoch end and ``compute_metrics`` gives ``{"const": 1.0}`` (HF logs it
as ``eval_const``). A row with ``logged`` lists a consumer before the hpcallbacks callbacks that
records the keys of every ``on_log`` (``logging_steps=1``), as a ``report_to`` integration is.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from contract import LR0, NAMES, SPE, Outcome, Row
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

import hpcallbacks_hf as A
from hpcallbacks_hf._engine import inner_optimizer

ADAPTER = "hpcallbacks_hf"


def other():
    import hpcallbacks_lightning

    return hpcallbacks_lightning


class Net(nn.Module):
    def __init__(self, row: Row, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        if row.groups == 1:
            self.net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
            self.order = ["net"]
            self.group_names = [["net"]]
        else:
            names = list(NAMES[row.groups])
            for i, name in enumerate(names):
                setattr(self, name, nn.Linear(4, 1 if i == len(names) - 1 else 4))
            self.order = names
            self.group_names = [[n] for n in names]
            if row.bn:
                self.body_bn = nn.BatchNorm1d(4)
                self.order = ["body", "body_bn", *names[1:]]
                self.group_names[0].append("body_bn")

    def forward(self, x, y):
        h = x
        for i, name in enumerate(self.order):
            h = getattr(self, name)(h)
            if i < len(self.order) - 1 and not name.endswith("bn") and name != "net":
                h = torch.relu(h)
        return {"loss": nn.functional.mse_loss(h, y), "pred": h}

    def groups(self) -> list[list[nn.Parameter]]:
        return [[p for n in names for p in getattr(self, n).parameters()] for names in self.group_names]


def data(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(16)]


def _lr_of(optimizer: Any, param: nn.Parameter) -> float:
    group = next(g for g in inner_optimizer(optimizer).param_groups if any(q is param for q in g["params"]))
    value = group["lr"]
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class Recorder(TrainerCallback):
    def __init__(self, out: Outcome, model: Net, row: Row) -> None:
        self.out, self.model, self.row = out, model, row

    def on_train_begin(self, args, state, control, **kwargs):
        self.records, self.visible, self.bn = [], [], []
        self.out.records.append(self.records)
        self.out.visible.append(self.visible)
        self.out.bn.append(self.bn)
        if self.row.bn:
            self.bn.append(float(self.model.body_bn.running_mean.sum()))

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        groups = self.model.groups()
        lrs = tuple(_lr_of(optimizer, params[0]) for params in groups)
        on = tuple(any(p.requires_grad for p in params) for params in groups)
        self.records.append((state.global_step, lrs, on))

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.visible.append(_lr_of(optimizer, self.model.groups()[-1][0]))
        if self.row.bn:
            self.bn.append(float(self.model.body_bn.running_mean.sum()))


class KeyConsumer(TrainerCallback):
    """A consumer of the training logs listed before the hpcallbacks callbacks (as HF lists ``report_to``)."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.keys.update(logs or {})


def run_row(row: Row, tmp_path) -> Outcome:
    out = Outcome(lr_key="lr/{group}")
    try:
        _run(row, Path(tmp_path), out)
    except Exception as e:  # noqa: BLE001 - the table says which errors are expected
        out.error = e
    return out


def _arguments(row: Row, tmp_path: Path, epochs: int, save: bool) -> TrainingArguments:
    lr_type = "reduce_lr_on_plateau" if row.foreign == "plateau" else "constant"
    return TrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], disable_tqdm=True, seed=0,
        dataloader_num_workers=0, optim="sgd", learning_rate=LR0, lr_scheduler_type=lr_type,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, gradient_accumulation_steps=row.accumulation,
        num_train_epochs=epochs, save_strategy="epoch" if save else "no",
        eval_strategy="epoch" if row.metric else "no", label_names=["y"],
        logging_strategy="steps" if row.logged else "no", logging_steps=1)


def _train(row: Row, callbacks: list, epochs: int, out: Outcome, tmp_path: Path, resume: str | None = None,
           save: bool = False) -> None:
    caught: list = []
    out.warnings.append(caught)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            model = Net(row)
            first = [KeyConsumer(out.logged)] if row.logged else []
            optimizers: tuple[Any, Any] = (None, None)
            if row.foreign == "schedule":
                opt = torch.optim.SGD(model.parameters(), lr=LR0)
                optimizers = (opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** (t // SPE)))
            trainer = Trainer(model=model, args=_arguments(row, tmp_path, epochs, save), train_dataset=data(),
                              eval_dataset=data(1) if row.metric else None,
                              compute_metrics=(lambda p: {"const": 1.0}) if row.metric else None,
                              callbacks=[*first, *callbacks, Recorder(out, model, row)], optimizers=optimizers)
            trainer.train(resume_from_checkpoint=resume)
        finally:
            caught.extend(w)


def _last_checkpoint(tmp_path: Path) -> str:
    found = sorted((tmp_path / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(found[-1])


def _run(row: Row, tmp_path: Path, out: Outcome) -> None:
    callbacks = row.callbacks(A, other)
    resume = row.then is not None and row.then.kind == "resume"
    _train(row, callbacks, row.epochs, out, tmp_path, save=resume)
    if row.then is None:
        return
    if resume:
        _train(row, row.callbacks(A, other), row.then.epochs, out, tmp_path, resume=_last_checkpoint(tmp_path))
    else:
        _train(row, callbacks, row.then.epochs, out, tmp_path)
