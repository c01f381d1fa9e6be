"""Frozen-stage savings: per-update time of the head-only stage vs. full fine-tuning (not a test).

    python benchmarks/bench_frozen.py [--updates 15] [--warmup 3] [--repeats 1]
                                      [--only lightning,backbone,hf,forward,keras]

ImageNet-pretrained EfficientNet-Lite0 (the demo's ``pretrained_efficientnet`` and
``layer_groups``: 8 backbone groups + a new 10-way linear head) on the demo's digits at 32x32,
batch 64, CPU. Each row times ``--updates`` updates after ``--warmup`` (median gap between
consecutive update starts):

* Lightning + hpcallbacks ``StagedUnfreeze``: ``FreezePlan.head_only()`` vs
  ``FreezePlan.all_trainable()`` (the demo's ``make_module``, Adam);
* Lightning ``BackboneFinetuning(unfreeze_backbone_at_epoch=1)``: epoch 0 (backbone frozen) vs
  epoch 1 (unfrozen), one fit;
* HF ``Trainer`` + hpcallbacks ``StagedUnfreeze``: the same network wrapped in an ``nn.Module``
  whose ``forward`` returns ``{"loss": ...}``, head-only vs all-trainable plan (HF's AdamW);
* forward only: the network in eval mode under ``torch.no_grad()``, for reference: the goal is
  that backward stops at the lowest trainable group, so the head-only stage costs little more
  than this;
* Keras (``KERAS_BACKEND``, default TF): ``keras.applications.EfficientNetB0(weights=None,
  include_top=False, pooling="avg")`` + a Dense head, random weights and random images (timing
  only: no pretrained Keras EfficientNet ships in a PyPI package here), hpcallbacks_keras
  ``StagedUnfreeze`` head-only vs all-trainable plan (groups: the base model, the head), and its
  ``predict`` loop (compiled predict function, inference mode) as the forward-only reference.

With ``--repeats`` > 1 the rows' runs alternate and each figure is the median over the repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _machine import header, table  # noqa: E402
from torch import nn  # noqa: E402

from hpcallbacks import FreezePlan  # noqa: E402
from hpcallbacks_demo import layer_groups, load_digits_images, make_module, pretrained_efficientnet  # noqa: E402

BATCH = 64  # the demo's batch size
LR = 1e-3  # the demo's naive LR (Adam)
ROWS = ("lightning", "backbone", "hf", "forward", "keras")


def _median_gap(stamps: list[float], warmup: int) -> float:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][warmup:]
    return statistics.median(gaps)


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _digits(batches: int):
    """The demo's training images, enough for ``batches`` full batches."""
    (x, y), _ = load_digits_images(0, quick=False)
    n = batches * BATCH
    assert len(x) >= n, f"the digits hold {len(x) // BATCH} batches; asked for {batches}"
    return x[:n], y[:n]


# ------------------------------------------------------------------------------------- Lightning
def _lightning_clock():
    import lightning.pytorch as pl

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.stamps: dict[int, list[float]] = {}
            self.trainable: dict[int, int] = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.stamps.setdefault(trainer.current_epoch, []).append(time.perf_counter())
            self.trainable[trainer.current_epoch] = _trainable(pl_module)

    return Clock()


def _lightning_fit(callbacks, clock, epochs: int, args) -> None:
    import logging

    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    batches = args.warmup + args.updates + 1
    x, y = _digits(batches)
    module = make_module(LR, seed=0)
    trainer = pl.Trainer(max_epochs=epochs, limit_train_batches=batches, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, callbacks=[*callbacks, clock])
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=BATCH, drop_last=True))


def lightning_staged(plan: FreezePlan, args) -> tuple[float, int]:
    from hpcallbacks_lightning import StagedUnfreeze

    clock = _lightning_clock()
    _lightning_fit([StagedUnfreeze(plan, groups=layer_groups())], clock, 1, args)
    return _median_gap(clock.stamps[0], args.warmup), clock.trainable[0]


def lightning_backbone(args) -> tuple[tuple[float, int], tuple[float, int]]:
    from lightning.pytorch.callbacks import BackboneFinetuning

    clock = _lightning_clock()
    _lightning_fit([BackboneFinetuning(unfreeze_backbone_at_epoch=1, verbose=False)], clock, 2, args)
    return tuple((_median_gap(clock.stamps[e], args.warmup), clock.trainable[e]) for e in (0, 1))  # type: ignore


# -------------------------------------------------------------------------------------------- HF
class HFNet(nn.Module):
    """The demo's network for ``transformers.Trainer``: ``forward`` returns ``{"loss", "logits"}``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = pretrained_efficientnet()
        self.backbone._fc = nn.Identity()
        self.head = nn.Linear(1280, 10)

    def forward(self, pixel_values, labels):
        logits = self.head(self.backbone(pixel_values))
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def hf_staged(plan: FreezePlan, args, out_dir: str) -> tuple[float, int]:
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    from hpcallbacks_hf import StagedUnfreeze

    hf_logging.set_verbosity_error()

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []
            self.trainable = 0

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            self.stamps.append(time.perf_counter())
            self.trainable = _trainable(model)

    steps = args.warmup + args.updates + 1
    x, y = _digits(steps)
    data = [{"pixel_values": x[i], "labels": y[i]} for i in range(len(y))]
    clock = Clock()
    targs = TrainingArguments(output_dir=out_dir, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                              logging_strategy="no", per_device_train_batch_size=BATCH, max_steps=steps,
                              learning_rate=LR, lr_scheduler_type="constant", seed=0,
                              dataloader_num_workers=0, dataloader_drop_last=True)
    trainer = Trainer(model=HFNet(), args=targs, train_dataset=data,
                      callbacks=[StagedUnfreeze(plan, groups=layer_groups()), clock])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return _median_gap(clock.stamps, args.warmup), clock.trainable


# ------------------------------------------------------------------------------------ forward only
def forward_only(args) -> float:
    net = HFNet().eval()
    x, _ = _digits(1)
    stamps = []
    with torch.no_grad():
        for _ in range(args.warmup + args.updates + 1):
            stamps.append(time.perf_counter())
            net.head(net.backbone(x))
    return _median_gap(stamps, args.warmup)


# ------------------------------------------------------------------------------------------ Keras
def keras_runs(args) -> dict[str, tuple[float, int]]:
    import keras
    import numpy as np

    from hpcallbacks_keras import StagedUnfreeze

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.stamps.append(time.perf_counter())

    def build():
        keras.utils.set_random_seed(0)
        base = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3),
                                                 pooling="avg")
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, keras.layers.Dense(10, name="head")(base(inputs)))
        return model, base

    def count(model) -> int:
        return int(sum(np.prod(w.shape) for w in model.trainable_weights))

    steps = args.warmup + args.updates + 1
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(steps * BATCH, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(len(x),))
    out: dict[str, tuple[float, int]] = {}
    for name, plan in (("head", FreezePlan.head_only()), ("all", FreezePlan.all_trainable())):
        model, base = build()
        model.compile(keras.optimizers.Adam(LR),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        clock = Clock()
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[StagedUnfreeze(plan, groups=[base, "head"]), clock])
        out[name] = (_median_gap(clock.stamps, args.warmup), count(model))
    class PredictClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def on_predict_batch_begin(self, batch, logs=None):
            self.stamps.append(time.perf_counter())

    model, _ = build()
    model.compile(keras.optimizers.Adam(LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # same jit
    clock = PredictClock()
    model.predict(x, batch_size=BATCH, verbose=0, callbacks=[clock])
    out["forward"] = (_median_gap(clock.stamps, args.warmup), 0)
    out["backend"] = keras.backend.backend()  # type: ignore[assignment]
    return out


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=15, help="timed updates per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="updates before timing")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    args = parser.parse_args()
    rows = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(ROWS)}")
    header("Frozen-stage savings: head-only stage vs. full fine-tuning, EfficientNet-Lite0, batch 64 at 32x32")
    import tempfile

    times: dict[str, list[float]] = {}
    params: dict[str, int] = {}

    def add(key: str, result: tuple[float, int]) -> None:
        times.setdefault(key, []).append(result[0])
        params[key] = result[1]

    start = time.perf_counter()
    keras_backend = None
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(args.repeats):
            if "forward" in rows:
                add("forward", (forward_only(args), 0))
            if "lightning" in rows:
                add("pl_head", lightning_staged(FreezePlan.head_only(), args))
                add("pl_all", lightning_staged(FreezePlan.all_trainable(), args))
            if "backbone" in rows:
                frozen, unfrozen = lightning_backbone(args)
                add("bb_head", frozen)
                add("bb_all", unfrozen)
            if "hf" in rows:
                add("hf_head", hf_staged(FreezePlan.head_only(), args, out_dir))
                add("hf_all", hf_staged(FreezePlan.all_trainable(), args, out_dir))
            if "keras" in rows:
                k = keras_runs(args)
                keras_backend = k.pop("backend")
                for name, result in k.items():
                    add(f"keras_{name}", result)
    med = {k: statistics.median(v) for k, v in times.items()}
    fwd = med.get("forward")
    print(f"updates timed {args.updates} after {args.warmup} warm-up, repeats {args.repeats}, "
          f"{time.perf_counter() - start:.0f} s in all; ms = median per-update time; trainable = parameters with "
          "gradients during the stage")

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "-"

    out = []
    for label, head, full, ref in (("Lightning + StagedUnfreeze", "pl_head", "pl_all", fwd),
                                   ("Lightning BackboneFinetuning", "bb_head", "bb_all", fwd),
                                   ("HF Trainer + StagedUnfreeze", "hf_head", "hf_all", fwd),
                                   (f"Keras ({keras_backend}) + StagedUnfreeze*", "keras_head", "keras_all",
                                    med.get("keras_forward"))):
        if head not in med:
            continue
        out.append([label, f"{med[head] * 1e3:.1f}", f"{med[full] * 1e3:.1f}", ratio(med[head], med[full]),
                    ratio(med[head], ref), ratio(med[full], ref), f"{params[head]:,}", f"{params[full]:,}"])
    if fwd is not None:
        out.append(["forward only (torch.no_grad, eval)", "-", "-", "-", f"{fwd * 1e3:.1f} ms", "-", "-", "-"])
    if "keras_forward" in med:
        out.append([f"forward only (Keras {keras_backend} predict)*", "-", "-", "-",
                    f"{med['keras_forward'] * 1e3:.1f} ms", "-", "-", "-"])
    print(table(["setup", "head-only ms", "full ms", "head/full", "head/forward", "full/forward",
                 "trainable head-only", "trainable full"], out))
    if "bb_head" in params and "pl_head" in params and params["bb_head"] > params["pl_head"]:
        print(f"BackboneFinetuning's frozen epoch keeps the backbone's BatchNorm weights trainable (train_bn=True): "
              f"{params['bb_head']:,} parameters with gradients vs {params['pl_head']:,} for the head-only plan, so "
              "its backward still runs through the backbone.")
    if "keras_head" in med:
        print("* Keras: EfficientNetB0, random weights and random images (timing only); its forward reference is "
              "Keras's own predict loop (compiled, inference mode) on the same model and batches.")


if __name__ == "__main__":
    main()
