"""The contract table's driver for PyTorch Lightning (``Trainer.fit``, CPU, tiny models).

The recorder is a plain ``lightning.pytorch.Callback`` listed after the hpcallbacks callbacks: at
``on_before_optimizer_step`` it reads each layer group's ``param_group["lr"]`` and
``requires_grad``; after the update, the LR the optimizer shows and the BatchNorm statistics.
"""
from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as L
import torch
from contract import LR0, NAMES, Outcome, Row
from lightning.pytorch.loggers import Logger
from torch import nn

import hpcallbacks_lightning as A

ADAPTER = "hpcallbacks_lightning"
QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, log_every_n_steps=1)


def left_out(row: Row) -> str | None:
    """Rows this Lightning release cannot hold, and why (the contract runs every other row)."""
    from hpcallbacks_lightning import _seam

    if row.id == "callback-of-another-adapter-refused" and not _seam.foreign_callbacks_reach_hooks("lightning"):
        return ("Lightning < 2.6 refuses any callback that is not a Lightning Callback in Trainer() with its own "
                "ValueError('Expected a parent') before hpcallbacks code runs (no route); "
                "tests/test_seam_lightning.py checks that refusal")
    return None


def other():
    import hpcallbacks_hf

    return hpcallbacks_hf


class Net(L.LightningModule):
    def __init__(self, row: Row, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.row = row
        if row.groups == 1:
            self.net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
            self.order = ["net"]
        else:
            names = list(NAMES[row.groups])
            for i, name in enumerate(names):
                setattr(self, name, nn.Linear(4, 1 if i == len(names) - 1 else 4))
            self.order = names
            if row.bn:
                self.body_bn = nn.BatchNorm1d(4)
                self.order = ["body", "body_bn", *names[1:]]

    def forward(self, x):
        for i, name in enumerate(self.order):
            x = getattr(self, name)(x)
            if i < len(self.order) - 1 and not name.endswith("bn") and name != "net":
                x = torch.relu(x)
        return x

    def training_step(self, batch, _):
        x, y = batch
        if self.row.metric:
            self.log("const", 1.0, on_step=True, on_epoch=False, batch_size=len(x))
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=LR0)
        if self.row.foreign == "schedule":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.row.foreign == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "const"}}
        return opt

    def groups(self) -> list[list[nn.Parameter]]:
        if self.row.groups == 1:
            return [list(self.net.parameters())]
        names = list(NAMES[self.row.groups])
        out = [list(getattr(self, n).parameters()) for n in names]
        if self.row.bn:
            out[0] += list(self.body_bn.parameters())
        return out


class Recorder(L.Callback):
    def __init__(self, out: Outcome) -> None:
        self.out = out

    def on_train_start(self, trainer, pl_module):
        self.records, self.visible, self.bn = [], [], []
        self.out.records.append(self.records)
        self.out.visible.append(self.visible)
        self.out.bn.append(self.bn)
        if pl_module.row.bn:
            self.bn.append(float(pl_module.body_bn.running_mean.sum()))
        self.step = trainer.global_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        where = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        lrs, on = [], []
        for params in pl_module.groups():
            lrs.append(float(where[id(params[0])]["lr"]))
            on.append(any(p.requires_grad for p in params))
        self.records.append((trainer.global_step, tuple(lrs), tuple(on)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            return
        self.step = trainer.global_step
        opt = trainer.optimizers[0]
        head = pl_module.groups()[-1][0]
        self.visible.append(float(next(g["lr"] for g in opt.param_groups if any(p is head for p in g["params"]))))
        if pl_module.row.bn:
            self.bn.append(float(pl_module.body_bn.running_mean.sum()))


class KeyLogger(Logger):
    def __init__(self, keys: set[str]) -> None:
        super().__init__()
        self.keys = keys

    @property
    def name(self):
        return "keys"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.keys.update(metrics)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def loader(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def run_row(row: Row, tmp_path) -> Outcome:
    out = Outcome(lr_key="lr/{group}")
    try:
        _run(row, tmp_path, out)
    except Exception as e:  # noqa: BLE001 - the table says which errors are expected
        out.error = e
    return out


def _fit(row: Row, callbacks: list, epochs: int, out: Outcome, tmp_path, ckpt: str | None = None,
         save: bool = False):
    recorder = Recorder(out)
    extra: list = []
    kw: dict[str, Any] = dict(logger=False, enable_checkpointing=False)
    if save:
        from lightning.pytorch.callbacks import ModelCheckpoint

        extra.append(ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0))
        kw["enable_checkpointing"] = True
    if row.logged:
        kw["logger"] = KeyLogger(out.logged)
    trainer = L.Trainer(max_epochs=epochs, accumulate_grad_batches=row.accumulation,
                        callbacks=[*callbacks, recorder, *extra], default_root_dir=tmp_path, **{**QUIET, **kw})
    caught: list = []
    out.warnings.append(caught)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            trainer.fit(Net(row), loader(), ckpt_path=ckpt)
        finally:
            caught.extend(w)
    return trainer


def _run(row: Row, tmp_path, out: Outcome) -> None:
    callbacks = row.callbacks(A, other)
    resume = row.then is not None and row.then.kind == "resume"
    _fit(row, callbacks, row.epochs, out, tmp_path, save=resume)
    if row.then is None:
        return
    if resume:
        _fit(row, row.callbacks(A, other), row.then.epochs, out, tmp_path, ckpt=str(tmp_path / "last.ckpt"))
    else:
        _fit(row, callbacks, row.then.epochs, out, tmp_path)
