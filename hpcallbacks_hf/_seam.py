"""The seam of ``hpcallbacks_hf`` with transformers, accelerate and torch: every touch of their internals.

The rest of the adapter calls these functions and the frameworks' public API only
(``tests/test_seam_hf.py`` checks it, and tests each touch by name). A maintainer facing a new
release reads this file: each touch says what it relies on and the releases it was checked on.
Where releases differ, a flag computed once at import (:mod:`hpcallbacks._versions`, one line
each) picks the branch; no ``try/except AttributeError`` around behaviour.

Checked on: transformers 4.47.1 with accelerate 1.0.1 (the floor) and transformers 5.25.0 with
accelerate 1.16.0 (the newest), torch 2.13.0 for both.

Touches (each has a ``test_touch_<name>`` in ``tests/test_seam_hf.py``):

``calling_trainer``       a call-stack walk to the ``Trainer`` sending the current event
``callback_list``         ``trainer.callback_handler.callbacks`` (``CallbackHandler`` is not exported)
``set_callback_list``     assigns ``CallbackHandler.callbacks`` (the order HF calls them in)
``ExportableState``       ``transformers.trainer_callback.ExportableState`` (not exported at the top)
``BatchNormBase``         torch's private ``torch.nn.modules.batchnorm._BatchNorm``
``train_batch_size`` / ``training_batch_size`` / ``set_train_batch_size``  ``Trainer._train_batch_size``
``forget_prepared_loader``  accelerate's ``Accelerator._dataloaders``
``after_trial_values``    wraps ``Trainer.create_accelerator_and_postprocess`` and reads
                          ``Trainer.hp_search_backend`` / ``Trainer._trial``
``set_last_lr`` / ``SCHEDULER_GROUP_LISTS``  torch ``LRScheduler._last_lr``
``scheduler_parts``       torch ``SequentialLR._schedulers`` / ``ChainedScheduler._schedulers``
``inner_optimizer``       the ``.optimizer`` chain of accelerate's ``AcceleratedOptimizer``
``step_was_skipped`` / ``may_skip``  ``AcceleratedOptimizer.step_was_skipped`` and ``.scaler``
``hf_lambda_kind``        the private LR-lambda functions of ``transformers.optimization``
``is_layerwise_optimizer``  ``transformers.trainer_pt_utils.LayerWiseDummyOptimizer``
``ddp_finds_unused``      how the Trainer decides DDP's ``find_unused_parameters`` (differs: 4.x / 5.x)
``check_importable``      transformers 4.x beside Keras 3 without ``USE_TF=0`` (4.x only)
"""
from __future__ import annotations

import sys
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import utils as _hf_utils
from transformers.trainer_callback import ExportableState as _ExportableState

from hpcallbacks._versions import at_least, installed

#: transformers 5.x (checked 5.25.0) rather than 4.x (checked 4.47.1): where the touches below differ.
TRANSFORMERS_5 = at_least("transformers", "5.0")
#: The installed transformers release, for messages.
TRANSFORMERS_VERSION = ".".join(map(str, installed("transformers") or ()))

__all__ = [
    "TRANSFORMERS_5", "TRANSFORMERS_VERSION", "BatchNormBase", "ExportableState", "SCHEDULER_GROUP_LISTS",
    "after_trial_values",
    "callback_list", "calling_trainer", "check_importable", "ddp_finds_unused", "forget_prepared_loader",
    "hf_lambda_kind", "inner_optimizer", "is_layerwise_optimizer", "may_skip", "scheduler_parts",
    "set_callback_list", "set_last_lr", "set_train_batch_size", "step_was_skipped", "train_batch_size",
    "training_batch_size",
]


# -- import-time: transformers 4.x refuses to import its Trainer beside Keras 3 -------------------------
def check_importable() -> None:
    """Refuse ``import hpcallbacks_hf`` with a clear message where ``from transformers import Trainer`` cannot work.

    transformers 4.x (checked 4.47.1) imports TensorFlow when it finds it, and its
    ``modeling_tf_utils`` raises beside Keras 3 unless ``tf-keras`` is installed; the error comes
    wrapped three times ("Failed to import transformers.trainer ..."). ``USE_TF=0`` in the
    environment turns TensorFlow off for transformers. transformers 5.x has no TensorFlow code.
    Reads ``transformers.utils.is_tf_available()`` (public) and the installed releases: imports nothing.
    """
    if TRANSFORMERS_5 or not _hf_utils.is_tf_available():
        return
    keras = installed("keras")
    if keras is None or keras < (3,) or installed("tf-keras") is not None:
        return
    raise ImportError(
        f"transformers {TRANSFORMERS_VERSION} cannot import its Trainer beside Keras 3 (keras "
        f"{'.'.join(map(str, keras))}) while it uses TensorFlow: set the environment variable USE_TF=0 before "
        "Python starts (transformers then uses torch only), or install tf-keras, or transformers>=5")


# -- the Trainer and its callback handler ------------------------------------------------------------
def calling_trainer() -> Any:
    """The ``transformers.Trainer`` sending the current event, or None (no Trainer on the call stack).

    No event gives the callbacks the Trainer (``on_init_end`` is sent from ``Trainer.__init__``,
    ``on_train_begin`` from ``Trainer._inner_training_loop``, both with the Trainer as the
    frame's ``self``). A walk up the call stack (``sys._getframe``, ``f_locals["self"]``), at most
    32 frames; used at ``on_init_end`` and ``on_train_begin`` only, never per update.
    Checked on transformers 4.47.1 and 5.25.0 (CPython 3.11).
    """
    from transformers import Trainer

    frame = sys._getframe(1)
    for _ in range(32):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


def callback_list(trainer: Any) -> list[Any]:
    """The Trainer's callbacks in the order HF calls them: ``trainer.callback_handler.callbacks``.

    ``CallbackHandler`` is not exported by transformers (``transformers.trainer_callback``);
    ``Trainer.callback_handler`` and its ``callbacks`` list are checked on 4.47.1 and 5.25.0.
    """
    return list(trainer.callback_handler.callbacks)


def set_callback_list(trainer: Any, callbacks: list[Any]) -> None:
    """Make ``callbacks`` the list (and order) HF calls: a new list is assigned, so an event in progress
    goes on over the old one. ``CallbackHandler.call_event`` iterates ``self.callbacks`` (4.47.1, 5.25.0)."""
    trainer.callback_handler.callbacks = list(callbacks)


#: ``transformers.trainer_callback.ExportableState`` (the stateful-callback protocol, 4.41+; not
#: exported from ``transformers``): ``state()`` and ``from_state``. Checked on 4.47.1 and 5.25.0.
ExportableState = _ExportableState

#: torch's BatchNorm base class (``_BatchNorm``: BatchNorm1d/2d/3d, SyncBatchNorm; private name). torch 2.13.
BatchNormBase = _BatchNorm


#: Whether ``Trainer.__init__`` sets ``_train_batch_size`` before it sends ``on_init_end`` (5.25.0) or
#: right after (4.47.1, from ``args.train_batch_size``).
_BATCH_BEFORE_INIT_END = TRANSFORMERS_5


def train_batch_size(trainer: Any) -> int:
    """The batch of the train dataloader ``get_train_dataloader()`` builds, as it stands at ``on_init_end``:
    ``Trainer._train_batch_size`` on 5.25.0; on 4.47.1 ``args.train_batch_size`` (``__init__`` copies it
    into ``_train_batch_size`` right after ``on_init_end``). ``train()`` sets it from the arguments
    again (after the trial's values on 4.47.1, inside ``_hp_search_setup`` on 5.25.0)."""
    if _BATCH_BEFORE_INIT_END:
        return int(trainer._train_batch_size)
    return int(trainer.args.train_batch_size)


def training_batch_size(trainer: Any) -> int:
    """The batch per process ``train()`` trains at, from its first event on: ``Trainer._train_batch_size``,
    which ``train()`` sets before the training loop (4.47.1 from the checkpoint's ``train_batch_size`` on
    resume, always; 5.25.0 only under ``auto_find_batch_size``). ``state.train_batch_size`` cannot say it:
    a resumed run's state is the checkpoint's. Checked on 4.47.1 and 5.25.0."""
    return int(trainer._train_batch_size)


def set_train_batch_size(trainer: Any, size: int) -> None:
    """Set ``Trainer._train_batch_size``, which ``get_train_dataloader()`` reads (see :func:`train_batch_size`).
    Checked on 4.47.1 and 5.25.0."""
    trainer._train_batch_size = size


def forget_prepared_loader(trainer: Any, loader: Any) -> None:
    """Drop a dataloader from ``trainer.accelerator._dataloaders`` (the list ``Accelerator.prepare``
    appends every prepared dataloader to), so a probe's loader does not stay referenced.
    Checked on accelerate 1.0.1 and 1.16.0."""
    prepared = trainer.accelerator._dataloaders
    if loader in prepared:
        prepared.remove(loader)


def after_trial_values(trainer: Any, redo: Any) -> None:
    """Call ``redo()`` each time ``Trainer.hyperparameter_search`` has set a trial's values on ``trainer.args``.

    HF applies a trial's values (``per_device_train_batch_size`` among them) inside ``train()``
    (``Trainer._hp_search_setup``), after ``on_init_end`` and before it computes the updates per
    epoch, the total updates and the LR schedule from ``gradient_accumulation_steps``, with no
    callback event in between. The last thing ``_hp_search_setup`` does is
    ``self.create_accelerator_and_postprocess()``: the trainer's own method is wrapped (an
    instance attribute) to run ``redo()`` first, only for a search's trial (``hp_search_backend``
    set by ``hyperparameter_search``, ``_trial`` by ``_hp_search_setup``). On 4.47.1 ``train()``
    sets ``_train_batch_size`` from ``args`` right after; on 5.25.0 ``_hp_search_setup`` sets it
    just before. Checked on 4.47.1 and 5.25.0.
    """
    original = trainer.create_accelerator_and_postprocess

    def create_accelerator_and_postprocess() -> None:
        if trainer.hp_search_backend is not None and getattr(trainer, "_trial", None) is not None:
            redo()
        original()

    trainer.create_accelerator_and_postprocess = create_accelerator_and_postprocess


# -- torch LR schedulers ------------------------------------------------------------------------------
#: The per-param-group lists of torch LR schedulers, reordered with the param groups; ``_last_lr``
#: (what ``get_last_lr()`` returns, and HF 4.x logs) is private. torch 2.13.
SCHEDULER_GROUP_LISTS = ("base_lrs", "_last_lr", "min_lrs", "max_lrs", "lr_lambdas", "base_momentums",
                         "max_momentums")


def set_last_lr(scheduler: Any, values: list[float]) -> None:
    """Set ``scheduler._last_lr`` (``get_last_lr()``) after the LRs were written by hand; a scheduler
    without one (not a torch ``LRScheduler``) is left alone. torch 2.13 (``LRScheduler`` and
    ``ReduceLROnPlateau`` both keep ``_last_lr``)."""
    if scheduler is not None and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = values


def scheduler_parts(scheduler: Any) -> list[Any]:
    """``scheduler`` and the schedulers it runs (``SequentialLR`` / ``ChainedScheduler`` keep them in the
    private ``_schedulers``); ``[]`` for None. torch 2.13."""
    if scheduler is None:
        return []
    return [scheduler, *(getattr(scheduler, "_schedulers", None) or ())]


# -- accelerate's optimizer wrapper -------------------------------------------------------------------
def inner_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (and similar wrappers): the
    ``.optimizer`` chain. Checked on accelerate 1.0.1 and 1.16.0."""
    seen = 0
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer) and seen < 8:
        optimizer = optimizer.optimizer
        seen += 1
    return optimizer


def step_was_skipped(optimizer: Any) -> bool:
    """Whether the optimizer step just taken was skipped: ``AcceleratedOptimizer.step_was_skipped`` (a
    mixed-precision overflow); False for an optimizer without it. Checked on accelerate 1.0.1 and 1.16.0."""
    return bool(getattr(optimizer, "step_was_skipped", False))


def may_skip(optimizer: Any) -> bool:
    """Whether the Trainer's optimizer can skip a step (so :func:`step_was_skipped` must be read after
    each one): with a mixed-precision gradient scaler (``AcceleratedOptimizer.scaler``), or any optimizer
    other than accelerate's own wrapper (DeepSpeed's, a user's). accelerate's ``AcceleratedOptimizer``
    without a scaler always steps. Checked on accelerate 1.0.1 and 1.16.0."""
    from accelerate.optimizer import AcceleratedOptimizer

    return not (type(optimizer) is AcceleratedOptimizer and optimizer.scaler is None)


# -- transformers' own schedules and optimizers --------------------------------------------------------
#: The private LR-lambda functions of ``transformers.optimization`` that ``get_scheduler`` wraps in
#: ``functools.partial`` (names checked on 4.47.1 and 5.25.0).
_CONSTANT_LAMBDA = "_get_constant_lambda"
_LINEAR_LAMBDA = "_get_linear_schedule_with_warmup_lr_lambda"


def hf_lambda_kind(fn: Any) -> tuple[str | None, float]:
    """``(name, warmup)`` of a transformers ``get_scheduler`` LR lambda, ``(None, 0)`` for any other.

    ``get_scheduler`` builds a ``LambdaLR`` of ``functools.partial(<private function of
    transformers.optimization>, num_warmup_steps=..., ...)``: the function's module and name say
    which schedule it is (``"constant"``, ``"linear"``, else the function's name).
    Checked on transformers 4.47.1 and 5.25.0.
    """
    fn = getattr(fn, "_hpcallbacks_source", fn)
    func = getattr(fn, "func", fn)
    module = getattr(func, "__module__", "") or ""
    if not module.startswith("transformers.optimization"):
        return None, 0.0
    name = getattr(func, "__name__", "")
    keywords = getattr(fn, "keywords", {}) or {}
    warmup = float(keywords.get("num_warmup_steps", 0) or 0)
    if name == _CONSTANT_LAMBDA:
        return "constant", warmup
    if name.startswith(_LINEAR_LAMBDA):
        return "linear", warmup
    return name, warmup


def is_layerwise_optimizer(optimizer: Any) -> bool:
    """Whether the Trainer's optimizer is the stand-in of ``optim='*_layerwise'``
    (``transformers.trainer_pt_utils.LayerWiseDummyOptimizer``). Checked on 4.47.1 and 5.25.0."""
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    return isinstance(optimizer, LayerWiseDummyOptimizer)


# -- what the Trainer decides, where releases differ ----------------------------------------------------
def ddp_finds_unused(model: Any, args: Any) -> bool:
    """The ``find_unused_parameters`` the Trainer gives DDP (``Trainer._wrap_model`` on 4.47.1,
    ``create_accelerator_and_postprocess`` on 5.25.0): ``args.ddp_find_unused_parameters`` when set; else,
    for a ``PreTrainedModel``, not when activation checkpointing is on (4.x: ``model.is_gradient_checkpointing``;
    5.x: ``model.is_activation_checkpointing or args.activation_checkpointing``); else True."""
    from transformers import PreTrainedModel

    if args.ddp_find_unused_parameters is not None:
        return bool(args.ddp_find_unused_parameters)
    if not isinstance(model, PreTrainedModel):
        return True
    if TRANSFORMERS_5:
        return not (model.is_activation_checkpointing or args.activation_checkpointing)
    return not model.is_gradient_checkpointing

