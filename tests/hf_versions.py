"""What the HF tests need from the installed transformers release (the floor 4.47.1 and the newest 5.x).

* ``TrainingArguments(train_sampling_strategy=...)`` exists from transformers 5 on (checked: absent in
  4.47.1, present in 5.25.0); before it the Trainer always shuffles. :func:`training_arguments` takes
  the argument on every release, and :func:`in_order` makes a Trainer class honour it on 4.x, so a
  test keeps its exact data order (and its assertions) on both.
* the updates ``max_steps`` counts per epoch when the accumulation does not divide the epoch's micro-batches:
  rounded up on 5.25.0, down on 4.47.1 (which then ends the run before the last epoch's last update, though
  its epochs do make the last, shorter update): :func:`hf_updates_per_epoch`.
* HF's own ``learning_rate`` log: the rate of the update just made on 5.25.0, of the next update on
  4.47.1 (``get_last_lr()`` after ``lr_scheduler.step()``): :data:`LOGS_NEXT_LR`.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainingArguments

from hpcallbacks._versions import at_least

SAMPLING_ARGUMENT = "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
TRANSFORMERS_4 = not at_least("transformers", "5.0")
LOGS_NEXT_LR = TRANSFORMERS_4
_ORDER = "hpcallbacks_test_sampling"


def training_arguments(**kwargs: Any) -> TrainingArguments:
    """``TrainingArguments(**kwargs)``; on a release without ``train_sampling_strategy`` the value is kept
    on the arguments for :func:`in_order` (``"random"`` is what those releases do anyway)."""
    strategy = kwargs.pop("train_sampling_strategy", None) if not SAMPLING_ARGUMENT else None
    args = TrainingArguments(**kwargs)
    if strategy is not None:
        setattr(args, _ORDER, strategy)
    return args


def in_order(cls: type = Trainer) -> type:
    """``cls`` itself where ``train_sampling_strategy`` exists; else a subclass whose train sampler is
    sequential when the arguments ask for ``"sequential"``."""
    if SAMPLING_ARGUMENT:
        return cls

    class InOrder(cls):  # type: ignore[misc, valid-type]
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            if getattr(self.args, _ORDER, None) == "sequential":
                return SequentialSampler(self.train_dataset)
            return super()._get_train_sampler(*args, **kwargs)

    InOrder.__name__ = InOrder.__qualname__ = cls.__name__
    return InOrder


def hf_updates_per_epoch(micro_batches: int, accumulation: int) -> int:
    """The updates per epoch ``Trainer.train()`` counts into ``max_steps`` (see the module docstring)."""
    if TRANSFORMERS_4:
        return max(micro_batches // accumulation, 1)
    return max(-(-micro_batches // accumulation), 1)
