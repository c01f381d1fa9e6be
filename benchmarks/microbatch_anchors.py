"""H4 anchors: what each batch-size finder chooses on a model that runs out of memory above 8 samples (not a test).

    python benchmarks/microbatch_anchors.py [--samples 512]

The recipe: 64 samples per optimizer update, written as a batch of 32 with 2 accumulation steps
(HF, Lightning's own finder) or as ``MicroBatchFinder(64)`` (hpcallbacks). The model (Linear ->
ReLU -> Linear, CPU) raises ``torch.OutOfMemoryError("CUDA out of memory. ...")`` when a forward
pass sees more than 8 samples, as a GPU would; every finder recognises that error. Measured for
real, one short fit each:

* HF ``TrainingArguments(auto_find_batch_size=True, per_device_train_batch_size=32,
  gradient_accumulation_steps=2)``: accelerate's ``find_executable_batch_size`` retries the
  training loop with the batch x 0.9 after each out-of-memory error;
* Lightning ``BatchSizeFinder(mode="power")`` and ``(mode="binsearch")`` (defaults: ``init_val=2``,
  ``margin=0.05``) with ``Trainer(accumulate_grad_batches=2)``, the batch size a ``batch_size``
  attribute of the module: 32 (the recipe as written) and 2 (= ``init_val``). Starting from 32,
  Lightning 2.6 runs its first trial on the loader it built before setting ``init_val`` (32
  samples: out of memory), so it halves ``init_val`` to 1;
* hpcallbacks ``MicroBatchFinder(64)`` in HF and Lightning (``hpcallbacks.batch.fit_micro_batch``).

Columns: the micro-batch per forward pass, the accumulation, the effective batch (micro x
accumulation: the recipe wants 64), the optimizer updates per epoch over ``--samples`` samples
(the recipe: samples / 64; more updates stretch every schedule counted in updates), every batch
size the model's forward saw in order of first appearance (the trials, then training, with the
epoch's last partial batch) and how many of those sizes ran out of memory.
"""
from __future__ import annotations

import argparse
import logging
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import tempfile  # noqa: E402

import torch  # noqa: E402
from _machine import header, table  # noqa: E402
from torch import nn  # noqa: E402

LIMIT = 8
RECIPE = 64


class Body(nn.Module):
    """Linear -> ReLU -> Linear; out of memory above ``LIMIT`` samples per forward. ``tried``: the sizes seen."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.tried: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if not self.tried or self.tried[-1] != n:
            self.tried.append(n)
        if n > LIMIT:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (anchor model: {n} samples "
                                         f"> {LIMIT})")
        return self.net(x)


def data(samples: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 4, generator=g)
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def tried(body: Body) -> tuple[str, int]:
    sizes = list(dict.fromkeys(body.tried))  # in order, once each
    return " ".join(map(str, sizes)), sum(n > LIMIT for n in sizes)


# -- HF --------------------------------------------------------------------------------------------------
def hf(samples: int, hpcallbacks: bool) -> list[object]:
    from transformers import PrinterCallback, Trainer, TrainingArguments

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = Body()

        def forward(self, x, y=None):
            out = self.body(x)
            return {"loss": nn.functional.mse_loss(out, y)}

    model = Model()
    x, y = data(samples).tensors
    callbacks = []
    if hpcallbacks:
        from hpcallbacks_hf import MicroBatchFinder

        callbacks = [MicroBatchFinder(RECIPE)]
        batch, acc = RECIPE, 1
    else:
        batch, acc = RECIPE // 2, 2
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                                 logging_strategy="no", per_device_train_batch_size=batch,
                                 gradient_accumulation_steps=acc, auto_find_batch_size=not hpcallbacks,
                                 num_train_epochs=1, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=[{"x": x[i], "y": y[i]} for i in range(samples)],
                          callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)  # its metrics line
        trainer.train()
    micro, acc = trainer.state.train_batch_size, trainer.args.gradient_accumulation_steps
    name = "HF + hpcallbacks MicroBatchFinder(64)" if hpcallbacks else "HF auto_find_batch_size (32 x 2)"
    return [name, micro, acc, micro * acc, trainer.state.max_steps, *tried(model.body)]


# -- Lightning -------------------------------------------------------------------------------------------
def lightning(samples: int, mode: str | None, start: int = RECIPE // 2) -> list[object]:
    import lightning.pytorch as L

    class Module(L.LightningModule):
        def __init__(self, batch_size: int) -> None:
            super().__init__()
            self.body = Body()
            self.batch_size = batch_size

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.body(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(data(samples), batch_size=self.batch_size)

    quiet = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False)
    with tempfile.TemporaryDirectory() as out:
        if mode is None:
            import hpcallbacks_lightning as HL

            module = Module(RECIPE)
            trainer = L.Trainer(callbacks=[HL.MicroBatchFinder(RECIPE)], default_root_dir=out, **quiet)
            name = "Lightning + hpcallbacks MicroBatchFinder(64)"
        else:
            from lightning.pytorch.callbacks import BatchSizeFinder

            module = Module(start)
            trainer = L.Trainer(callbacks=[BatchSizeFinder(mode=mode)], accumulate_grad_batches=2,
                                default_root_dir=out, **quiet)
            name = f"Lightning BatchSizeFinder({mode!r}) ({start} x 2)"
        trainer.fit(module)
    micro, acc = module.batch_size, int(trainer.accumulate_grad_batches)
    return [name, micro, acc, micro * acc, trainer.global_step, *tried(module.body)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=512, help="training samples (one epoch)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    header("H4 anchors: the micro-batch each finder chooses (model out of memory above 8 samples, recipe 64)")
    rows = [hf(args.samples, False), lightning(args.samples, "power"), lightning(args.samples, "binsearch"),
            lightning(args.samples, "power", start=2), lightning(args.samples, "binsearch", start=2),
            hf(args.samples, True), lightning(args.samples, None)]
    print(f"recipe: {RECIPE} samples per update -> {-(-args.samples // RECIPE)} updates per epoch of {args.samples}")
    print(table(["finder", "micro", "accum", "effective", "updates/epoch", "forward sizes", "out of memory"], rows))


if __name__ == "__main__":
    main()
