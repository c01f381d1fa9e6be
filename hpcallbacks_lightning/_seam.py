"""The seam of :mod:`hpcallbacks_lightning` with Lightning: every touch of Lightning's internals, in one file.

The rest of the adapter uses Lightning's public API (``Trainer``, ``Callback`` hooks, ``Strategy``
methods, ``LightningModule`` attributes) and the functions here. When Lightning releases, this is
the file to read. Each touch names the releases it was checked on and has a test in
``tests/test_seam_lightning.py`` that fails, naming the touch, when a release changes what the touch
relies on; ``tests/test_seam_lightning.py`` also checks (AST) that no other module of the adapter
touches an internal. Release differences are flags computed once at import from the installed
versions (:mod:`hpcallbacks._versions`), one line each, never ``try/except AttributeError``.

Both namespaces (``lightning.pytorch`` and ``pytorch_lightning``) hold the same classes; a touch
reads the object it is given, whichever namespace built it.

The touches:

* **T1 update counter** (:func:`update_counter`): the optimizer-step progress tracker behind
  ``trainer.global_step``, read once per update by the LR callbacks (a plain attribute instead of
  three properties).
* **T2 DDP keyword arguments** (:func:`ddp_kwargs`): the dict a DDP strategy passes to
  ``DistributedDataParallel``; ``StagedUnfreeze`` switches ``find_unused_parameters`` on before the
  model is wrapped (no public setter exists after the strategy is built).
* **T3 train data** (:func:`load_train_data`, :func:`reload_train_data`, :func:`train_source`,
  :func:`set_train_source`): the fit loop's data source and its loading, as Lightning's own
  ``BatchSizeFinder`` uses them, for ``MicroBatchFinder`` (a new batch size) and for reading the
  per-device batch size before the fit loop loads the data.
* **T4 quiet logging** (:func:`no_logging`): ``self.log`` / ``self.log_dict`` of the module shadowed on
  the instance while ``LRFinder`` and ``MicroBatchFinder`` run ``training_step`` outside the loop
  (Lightning refuses ``log`` there).
* **T5 foreign callbacks** (:func:`foreign_callbacks_reach_hooks`): from which release a callback that
  is not a Lightning ``Callback`` (another adapter's) reaches its first hook, where hpcallbacks
  says which import to use; before it Lightning's ``Trainer()`` refuses it with its own
  ``ValueError('Expected a parent')`` (``_validate_callbacks_list`` called ``is_overridden`` without
  ``parent=``; fixed in Lightning 2.6.0, PR 21192). No route exists before that release: the
  object is refused at once, with Lightning's message.

Not touches (public API, listed so that the count is honest): ``trainer.accumulate_grad_batches``,
``limit_train_batches`` and ``should_stop`` written as Lightning's own callbacks and tuner write
them; ``trainer.strategy.training_step`` / ``batch_to_device`` / ``reduce`` / ``broadcast``;
``trainer.precision_plugin.train_step_context()``; the ``state_key`` property and ``setup`` hook
(the public route by which two instances of one class get the contract's ``ValueError``, see
:mod:`.callbacks`).
"""
from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from hpcallbacks._versions import at_least

__all__ = ["update_counter", "ddp_kwargs", "load_train_data", "reload_train_data", "train_source",
           "set_train_source", "no_logging", "foreign_callbacks_reach_hooks", "namespace"]

# -- version flags: computed once, one line each (releases compared as tuples) ---------------------------
_LIGHTNING_GREATER_EQUAL_2_6 = at_least("lightning", "2.6")
_PYTORCH_LIGHTNING_GREATER_EQUAL_2_6 = at_least("pytorch-lightning", "2.6")

#: The distribution of each namespace, for messages and flags.
DISTRIBUTIONS = {"lightning": "lightning", "pytorch_lightning": "pytorch-lightning"}


def namespace(obj: Any) -> str:
    """``"lightning"`` or ``"pytorch_lightning"``: the package whose class built ``obj`` (a Trainer, a module)."""
    return "pytorch_lightning" if type(obj).__module__.startswith("pytorch_lightning") else "lightning"


def _package(obj: Any, module: str) -> Any:
    """The public module ``module`` (e.g. ``"strategies"``) of ``obj``'s namespace."""
    root = "pytorch_lightning" if namespace(obj) == "pytorch_lightning" else "lightning.pytorch"
    return importlib.import_module(f"{root}.{module}")


# -- T1 update counter ----------------------------------------------------------------------------------
class GlobalStep:
    """``trainer.global_step`` behind a ``completed`` attribute: what :func:`update_counter` falls back to."""

    __slots__ = ("trainer",)

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    @property
    def completed(self) -> int:
        return int(self.trainer.global_step)


def update_counter(trainer: Any) -> Any:
    """An object whose ``completed`` is ``trainer.global_step``, cheap to read in per-update hooks.

    ``trainer.global_step`` goes through three properties (1-3 us a read, several reads per update);
    behind them is the optimizer-step progress tracker, whose ``completed`` is a plain int updated in
    place (also when a checkpoint's loop state is loaded). Taken at train start and compared with
    ``global_step`` there: a tracker that disagrees (a release that counts elsewhere) gives way to
    :class:`GlobalStep`, the public property (slower, same numbers).

    Touch T1, checked on Lightning 2.4.0 and 2.6.6 (``lightning`` and ``pytorch_lightning``):
    ``_TrainingEpochLoop.global_step`` returns ``automatic_optimization.optim_progress.optimizer_steps``
    (``= optimizer.step.total.completed``) with automatic optimization, else
    ``manual_optimization.optim_step_progress.total.completed``.
    """
    loop = trainer.fit_loop.epoch_loop
    module = trainer.lightning_module
    if module is None or module.automatic_optimization:
        tracker = loop.automatic_optimization.optim_progress.optimizer.step.total
    else:
        tracker = loop.manual_optimization.optim_step_progress.total
    if isinstance(tracker.completed, int) and tracker.completed == trainer.global_step:
        return tracker
    return GlobalStep(trainer)


# -- T2 DDP keyword arguments ---------------------------------------------------------------------------
def ddp_kwargs(trainer: Any) -> dict[str, Any] | None:
    """The keyword arguments the Trainer's DDP strategy gives ``DistributedDataParallel`` (None without DDP).

    Changing the dict before the model is wrapped (in ``setup``) changes the wrapping.

    Touch T2, checked on Lightning 2.4.0 and 2.6.6 (both namespaces): ``DDPStrategy.__init__`` keeps
    its ``**kwargs`` as ``self._ddp_kwargs`` and ``_setup_model`` passes them to
    ``DistributedDataParallel(..., **self._ddp_kwargs)`` in ``setup`` (after the callbacks' ``setup``);
    ``"ddp_spawn"`` and ``"ddp_fork"`` are ``DDPStrategy`` with another start method.
    """
    if int(getattr(trainer, "world_size", 1)) <= 1:
        return None
    if not isinstance(trainer.strategy, _package(trainer, "strategies").DDPStrategy):
        return None
    return trainer.strategy._ddp_kwargs


# -- T3 train data --------------------------------------------------------------------------------------
def load_train_data(trainer: Any) -> None:
    """Load the train data as the fit loop does (nothing when loaded); ``trainer.train_dataloader`` is then set.

    Touch T3, checked on Lightning 2.4.0 and 2.6.6 (both namespaces): ``_FitLoop.setup_data()`` returns
    at once when its ``_combined_loader`` is set (and no reload is due), else requests the loader from
    ``_data_source``, processes it (distributed sampler) and sets ``_combined_loader``;
    ``trainer.train_dataloader`` is ``_combined_loader.iterables``. ``trainer.estimated_stepping_batches``
    calls it the same way.
    """
    trainer.fit_loop.setup_data()


def reload_train_data(trainer: Any) -> None:
    """Make the next :func:`load_train_data` (the fit loop's own included) request the loader anew.

    Touch T3 (see :func:`load_train_data`): ``_combined_loader = None``, as Lightning's
    ``tuner.batch_size_scaling._reset_dataloaders`` does.
    """
    trainer.fit_loop._combined_loader = None


def train_source(trainer: Any) -> Any:
    """Where the fit loop requests its train data: the ``DataLoader`` (or collection) passed to ``fit()``,
    or the LightningModule / LightningDataModule whose ``train_dataloader()`` it calls.

    Touch T3, checked on Lightning 2.4.0 and 2.6.6 (both namespaces): ``_FitLoop._data_source`` is a
    ``_DataLoaderSource`` whose ``instance`` is that object (set by ``fit()`` before any hook).
    """
    return trainer.fit_loop._data_source.instance


def set_train_source(trainer: Any, loader: Any) -> None:
    """Replace a ``DataLoader`` passed to ``fit()`` (e.g. by one with another batch size); reloads the data.

    Touch T3 (see :func:`train_source`).
    """
    trainer.fit_loop._data_source.instance = loader
    reload_train_data(trainer)


# -- T4 quiet logging -----------------------------------------------------------------------------------
@contextlib.contextmanager
def no_logging(pl_module: Any) -> Iterator[None]:
    """``self.log`` and ``self.log_dict`` of ``pl_module`` do nothing inside the block.

    Touch T4, checked on Lightning 2.4.0 and 2.6.6 (both namespaces): ``LightningModule.log`` raises
    outside the loop's hooks (no result collection), and is reached through instance attribute lookup,
    so an instance attribute shadows it; deleting the attribute restores the method.
    """
    pl_module.log = pl_module.log_dict = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del pl_module.log, pl_module.log_dict


# -- T5 foreign callbacks -------------------------------------------------------------------------------
def foreign_callbacks_reach_hooks(space: str = "lightning") -> bool:
    """Whether a callback that is not a Lightning ``Callback`` reaches its first hook (``setup``) in this
    release of ``space``'s Trainer, where hpcallbacks' message says which import to use.

    Touch T5 (a version flag, no attribute read), checked on Lightning 2.4.0 (False: ``Trainer()``
    raises ``ValueError('Expected a parent')`` from ``_validate_callbacks_list``) and 2.6.6 (True).
    """
    return _PYTORCH_LIGHTNING_GREATER_EQUAL_2_6 if space == "pytorch_lightning" else _LIGHTNING_GREATER_EQUAL_2_6
