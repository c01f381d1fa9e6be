"""``hpcallbacks demo --framework keras``: a small Keras CNN pretrained on digits 0-4, fine-tuned on 5-9.

No Keras model with real pretrained weights ships offline (``keras.applications`` downloads its
weights; ``weights=None`` is untrained), so the demo makes its own pretrained network, honestly
small: a 3-block CNN (Conv-BatchNorm-ReLU x 3, global pooling, a 64-unit dense layer; 28k
parameters) trained from scratch inside the demo on scikit-learn's digits 0-4 (all 901 images,
8x8, 12 epochs). That network, with a new 5-way head, is then fine-tuned on a *small* set of
digits 5-9 (25 images per class, 125 in all), validated on 400 other images of 5-9, for 20 epochs
(``--quick``: 4 pretraining epochs, 6 fine-tuning epochs).

Three runs from the same pretrained weights, same new head, epochs, batch 16 and seed:

(a) naive: every weight trainable, Adam at its default 1e-3 throughout (BatchNorm in training mode);
(b) the Keras transfer-learning guide (keras.io/guides/transfer_learning): the base called with
    ``training=False`` (BatchNorm in inference mode), ``base.trainable = False``, the head trained
    with Adam 1e-3 for half the epochs; then ``base.trainable = True``, recompiled with Adam 1e-5,
    trained for the other half;
(c) hpcallbacks: ``FineTune(groups=GROUPS)`` with its defaults (the recipe of
    :mod:`hpcallbacks.recipe`): "small/different", the head for one epoch, then all 5 layer
    groups (conv1+bn1, conv2+bn2, conv3+bn3, fc, head) at per-group factors from 1 down to 1/100,
    every BatchNorm layer frozen (H4), a cosine with a warm restart at the unfreeze and H2's Adam
    rate 3.16e-3 for the head, in one ``fit``.

*Different*, although the images are alike: the pretraining task (tell 0-4 apart) shares no class
with the new one, and a 28k-parameter network trained on five classes keeps top features for
those five only. ``similar=True`` ("train only the new output layer") was tried first: it
reached 0.57 validation accuracy at the default budget where naive full fine-tuning reached 0.92
— H5's small/similar advice presumes a broad pretrained feature extractor.

It runs on the Keras backend in ``KERAS_BACKEND`` (default TensorFlow).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hpcallbacks.advice import check as check_hyperparameters
from hpcallbacks.recipe import Recipe

from .common import RunResult, print_findings, run_all

BATCH_SIZE = 16
NAIVE_LR = 1e-3  # Adam's default, for every weight
GUIDE_LRS = (1e-3, 1e-5)  # the Keras guide: the head with Adam(), then everything with Adam(1e-5)
PRETRAIN_EPOCHS = (12, 4)  # per --quick
PER_CLASS = 25  # fine-tuning images per class of 5-9
VALIDATION = 400
GROUPS = [["conv1", "bn1"], ["conv2", "bn2"], ["conv3", "bn3"], ["fc"], ["head"]]

EXTRA = "demo-keras"  # the pyproject extra that installs what this runner imports
LABELS = {
    "naive": "(a) naive full fine-tune",
    "two_phase": "(b) Keras guide: head, then all",
    "recipe": "(c) hpcallbacks recipe",
}
EPOCHS = (20, 6)
CURVE_TITLE = "Keras CNN pretrained here on digits 0-4, fine-tuned on 125 images of 5-9"


# ------------------------------------------------------------------------------ data, model
def load_digits_split(seed: int, per_class: int, validation: int = VALIDATION):
    """Digits 0-4 (all: pretraining) and a stratified split of 5-9 by ``seed``: ``per_class`` images
    per class to fine-tune on and ``validation`` others; labels of 5-9 as 0-4. Images (n, 8, 8, 1) in [0, 1]."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    low, high = y < 5, y >= 5
    x_high, y_high = x[high], y[high] - 5
    idx_train, idx_val = train_test_split(np.arange(len(y_high)), train_size=5 * per_class, test_size=validation,
                                          random_state=seed, stratify=y_high)
    return (x[low], y[low]), (x_high[idx_train], y_high[idx_train]), (x_high[idx_val], y_high[idx_val])


def build_base(seed: int):
    """The CNN without its head: conv1/bn1, conv2/bn2 (then 2x2 pooling), conv3/bn3, global pooling, fc."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1"), layers.BatchNormalization(name="bn1"),
        layers.ReLU(),
        layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv2"), layers.BatchNormalization(name="bn2"),
        layers.ReLU(), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv3"), layers.BatchNormalization(name="bn3"),
        layers.ReLU(), layers.GlobalAveragePooling2D(),
        layers.Dense(64, activation="relu", name="fc"),
    ], name="base")


def pretrain(data, seed: int, epochs: int) -> tuple[list[Any], float, float]:
    """Train the CNN from scratch on digits 0-4; its base's weights, training accuracy and seconds."""
    import keras

    x, y = data
    base = build_base(seed)
    model = keras.Sequential([base, keras.layers.Dense(5, name="head0")])
    model.compile(keras.optimizers.Adam(NAIVE_LR), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True)
    return base.get_weights(), float(history.history["accuracy"][-1]), time.perf_counter() - start


def fine_tune_model(weights: list[Any], seed: int, guide: bool = False):
    """The pretrained base with a new 5-way head (initialised from ``seed``, the same in every run).
    ``guide``: the Keras guide's ``base(inputs, training=False)``."""
    import keras

    base = build_base(seed)
    base.set_weights(weights)
    keras.utils.set_random_seed(seed + 1)
    head = keras.layers.Dense(5, name="head")
    if guide:
        inputs = keras.Input((8, 8, 1))
        return keras.Model(inputs, head(base(inputs, training=False))), base
    return keras.Sequential([base, head]), base


def recipe(num_samples: int, steps_per_epoch: int, epochs: int) -> Recipe:
    """What run (c)'s ``FineTune`` computes at fit start from this run's facts (for the header and the picture)."""
    return Recipe(num_samples, len(GROUPS), epochs, steps_per_epoch, optimizer="adam", batch_size=BATCH_SIZE)


# ---------------------------------------------------------------------------------- runs
def run_one(name: str, weights: list[Any], data, epochs: int, seed: int, progress: bool) -> RunResult:
    import keras

    (x, y), (x_val, y_val) = data
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fit = dict(batch_size=BATCH_SIZE, validation_data=(x_val, y_val), verbose=1 if progress else 0, shuffle=True)
    curve: list[float] = []
    start = time.perf_counter()
    if name == "two_phase":
        model, base = fine_tune_model(weights, seed, guide=True)
        first = max(1, epochs // 2)
        for trainable, lr, count in ((False, GUIDE_LRS[0], first), (True, GUIDE_LRS[1], epochs - first)):
            if count <= 0:
                continue
            base.trainable = trainable
            model.compile(keras.optimizers.Adam(lr), loss, metrics=["accuracy"])
            curve += model.fit(x, y, epochs=count, **fit).history["val_accuracy"]
    else:
        model, _ = fine_tune_model(weights, seed)
        callbacks: list[Any] = []
        lr = NAIVE_LR
        if name == "recipe":
            from hpcallbacks_keras import FineTune

            callbacks = [FineTune(groups=GROUPS)]
        model.compile(keras.optimizers.Adam(lr), loss, metrics=["accuracy"])
        curve = list(model.fit(x, y, epochs=epochs, callbacks=callbacks, **fit).history["val_accuracy"])
    seconds = time.perf_counter() - start
    curve = [float(a) for a in curve]
    return RunResult(name, curve[-1], max(curve), len(curve), seconds, curve)


def run(args: Any, out: Path, names: list[str], epochs: int) -> tuple[list[RunResult], list[Path]]:
    import keras

    quick = 1 if args.quick else 0
    pretraining, train, val = load_digits_split(args.seed, PER_CLASS)
    steps_per_epoch = -(-len(train[1]) // BATCH_SIZE)
    rec = recipe(len(train[1]), steps_per_epoch, epochs)
    print(f"Keras {keras.__version__} ({keras.backend.backend()} backend), CNN of 28k parameters pretrained here on "
          f"sklearn digits 0-4 ({len(pretraining[1])} images, {PRETRAIN_EPOCHS[quick]} epochs), fine-tuned on "
          f"{len(train[1])} images of 5-9 ({PER_CLASS} per class) / {len(val[1])} validation, {epochs} epochs "
          f"of {steps_per_epoch} updates, batch {BATCH_SIZE}, seed {args.seed}")
    weights, accuracy, seconds = pretrain(pretraining, args.seed, PRETRAIN_EPOCHS[quick])
    print(f"pretrained on 0-4: training accuracy {accuracy:.3f} ({seconds:.1f} s)")
    print(f"recipe: {rec}")
    group_names = ["+".join(g) for g in GROUPS]
    plan_png = rec.plot(out / "plan.png", group_names=group_names,
                        title="(c) hpcallbacks FineTune() (Keras): LR per layer group and freeze timeline")
    print_findings(check_hyperparameters("adam", learning_rate=NAIVE_LR, batch_size=BATCH_SIZE, fine_tuning=True,
                                         from_scratch_learning_rate=NAIVE_LR), "(a), the naive run")
    progress = sys.stderr.isatty()
    results = run_all(names, LABELS, lambda name: run_one(name, weights, (train, val), epochs, args.seed, progress))
    return results, [plan_png]
