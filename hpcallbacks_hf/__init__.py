"""hpcallbacks for HuggingFace ``transformers.Trainer``: schedules, staged unfreezing, per-layer LRs.

Pass the callbacks to ``Trainer(callbacks=[...])``::

    from hpcallbacks import FreezePlan
    from hpcallbacks_hf import CosineRestart, DiscriminativeLR, StagedUnfreeze

    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[StagedUnfreeze(FreezePlan.gradual(every_epochs=1)),
                                 DiscriminativeLR(0.75), CosineRestart()])

The learning-rate rule (see :mod:`hpcallbacks_hf.callbacks`): an hpcallbacks schedule replaces
HF's schedule; without one, group LR = HF schedule x group factor. LRs and stages advance once
per optimizer update that was performed (after gradient accumulation, not on a skipped update),
and survive ``trainer.train(resume_from_checkpoint=...)`` whatever
``restore_callback_states_from_checkpoint`` is.

The decisions around the numbers (which callback or HF scheduler owns the learning rate and
which conflicts are refused, run-derived defaults on resume, reuse, the warnings of valid but
suspicious set-ups) are the run contract of :mod:`hpcallbacks.run`, the same in every adapter.
The same callback names and arguments exist in ``hpcallbacks_keras`` and
``hpcallbacks_lightning``. Batch-size rules, scheduled hyperparameters, GAN schedules, the
advisor and the LR range test are in :mod:`hpcallbacks_hf.extras`.
"""
from __future__ import annotations

from . import _seam

_seam.check_importable()  # transformers 4.x beside Keras 3 needs USE_TF=0: say so here, not three errors deep

from . import callbacks as _callbacks  # noqa: E402 - after the check above
from . import extras as _extras  # noqa: E402
from .callbacks import *  # noqa: E402, F403 - the names in its __all__
from .extras import *  # noqa: E402, F403 - the names in its __all__

__all__ = sorted({*_callbacks.__all__, *_extras.__all__})
