"""The peers' micro-batch tests ported onto ``MicroBatchFinder`` and the torch out-of-memory rule (issue 20, 8 and 9).

Ported from Lightning's ``tests/tests_pytorch/tuner/test_scale_batch_size.py`` (``BatchSizeFinder`` /
``Tuner.scale_batch_size``) and accelerate's ``tests/test_memory_utils.py`` (``find_executable_batch_size``,
``should_reduce_batch_size``). Each test's docstring names the peer test it ports. Where hpcallbacks
differs on purpose the docstring says so; the difference common to all: the peers change the batch
(Lightning's power/binsearch scaling, accelerate's 0.9x back-off) and so the recipe, while
``MicroBatchFinder`` keeps the effective batch (micro-batch x accumulation x world size = the target)
and searches the divisors of the target. Scenarios that need a GPU (amp, ``release_memory``), the
``validate``/``test``/``predict`` methods of the Tuner, and the decorator's calling conventions do not
apply and are not ported.

The models run out of memory above a batch size: the error a real allocation failure raises on CPU
(``RuntimeError: ... DefaultCPUAllocator: can't allocate memory ...``), or CUDA's message as a
``RuntimeError`` (accelerate's fake), never a mock of the framework.
"""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hpcallbacks.run import RunWarning  # noqa: E402
from hpcallbacks.torch import microbatch as HTM  # noqa: E402

CPU_OOM = ("[enforce fail at alloc_cpu.cpp:116] . DefaultCPUAllocator: can't allocate memory: you tried to allocate "
           "{} bytes. Error code 12 (Cannot allocate memory)")


def cpu_out_of_memory(n, limit):
    if n > limit:
        raise RuntimeError(CPU_OOM.format(n * 2**30))


# ---------------------------------------------------------------------------------------------------------------
# the out-of-memory rule (accelerate's should_reduce_batch_size; issue 20, defect 8)
@pytest.mark.parametrize("message", [
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)",
    "CPU out of memory.",  # accelerate's raise_fake_out_of_memory on CPU
    "XPU out of memory.",
    "MPS backend out of memory (MPS allocated: 9.00 GB, other allocations: 1.00 GB, max allowed: 9.07 GB)",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input.",
    CPU_OOM.format(8589934592),
    "FATAL ERROR :: MODULE:PT_DEVMEM Allocation failed",
])
def test_the_messages_accelerate_reads_as_out_of_memory_do_not_fit(message):
    """Ports accelerate's ``should_reduce_batch_size`` cases (used by ``test_memory_implicit``/``explicit``):
    a ``RuntimeError`` with one of its messages is "does not fit"; defect 8: a real CPU allocation failure
    was re-raised before."""
    assert HTM.is_out_of_memory(RuntimeError(message))
    assert HTM.is_out_of_memory(torch.cuda.OutOfMemoryError(message))  # torch.OutOfMemoryError from torch 2.5


@pytest.mark.parametrize("error", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x8)"),
    RuntimeError("CUDA out of memory.", "a second argument"),  # accelerate reads one-argument errors only
    ValueError("CUDA out of memory."),
    MemoryError("Python ran out of memory"),
    KeyError("out of memory."),
])
def test_every_other_error_is_not_out_of_memory(error):
    """Ports accelerate's ``test_any_other_error``: only ``RuntimeError``s with one argument holding an
    out-of-memory message count; everything else is raised by the probe."""
    assert not HTM.is_out_of_memory(error)


class Linear(nn.Module):
    def __init__(self, fails):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(3, 1)
        self.fails = fails
        self.seen = []

    def forward(self, x):
        self.seen.append(len(x))
        self.fails(len(x))
        return self.layer(x)


def find(target, fails, **kw):
    model = Linear(fails)
    x, y = torch.randn(256, 3), torch.randn(256, 1)
    result = HTM.find_micro_batch(target, 1, model, [torch.optim.SGD(model.parameters(), lr=0.1)],
                                  lambda n: (x[:n], y[:n]), lambda b: nn.functional.mse_loss(model(b[0]), b[1]), **kw)
    return result, model


def test_memory_implicit_fake_out_of_memory_keeps_the_batch():
    """Ports accelerate's ``test_memory_implicit`` / ``test_memory_explicit`` / ``test_default_back_off_is_unchanged``:
    the step raises ``RuntimeError("CPU out of memory.")`` above 8 samples. accelerate walks 128, 115, 103, ... 9, 8
    and trains at 8 (a 16x smaller batch); hpcallbacks (on purpose) probes divisors of 128 by bisection and keeps
    the batch: 8 samples x 16 accumulated = 128 per update."""
    def fails(n):
        if n > 8:
            raise RuntimeError("CPU out of memory.")

    result, model = find(128, fails)
    assert (result.micro_batch_size, result.accumulation) == (8, 16)
    assert [n for n, _ in result.probes] == [8, 32, 16]
    assert len(result.probes) < 23  # accelerate's 23 tries from 128 down to 8


def test_real_cpu_allocation_failure_does_not_fit():
    """Defect 8: the error a real CPU allocation failure raises (a ``RuntimeError``, not ``torch.OutOfMemoryError``)
    means "does not fit"; before, the probe re-raised it."""
    result, _ = find(64, lambda n: cpu_out_of_memory(n, 16))
    assert (result.micro_batch_size, result.accumulation) == (16, 4)


def test_start_zero_is_refused_when_built():
    """Ports accelerate's ``test_start_zero`` (``starting_batch_size=0`` -> "No executable batch size found"): a
    target of 0 is refused when the callback is built, naming the argument."""
    pytest.importorskip("lightning.pytorch")
    from hpcallbacks_lightning import MicroBatchFinder

    with pytest.raises(ValueError, match="target_batch_size"):
        MicroBatchFinder(0)
    with pytest.raises(ValueError, match="max_micro_batch"):
        MicroBatchFinder(64, max_micro_batch=0)


def test_approach_zero_nothing_fits():
    """Ports accelerate's ``test_approach_zero`` (every size out of memory -> "reached zero"): no divisor fits, not
    even 1 sample, is a ``ValueError`` saying what to change."""
    def fails(n):
        raise RuntimeError("CPU out of memory.")

    with pytest.raises(ValueError, match="no micro-batch fits .* not even 1 sample"):
        find(16, fails)


def test_any_other_error_is_raised_and_the_model_restored():
    """Ports accelerate's ``test_any_other_error`` (a ``ValueError`` in the loop propagates): any error that is not
    out of memory is raised, and the weights are back."""
    def fails(n):
        raise ValueError("Oops, we had an error!")

    model = Linear(fails)
    before = model.layer.weight.detach().clone()
    with pytest.raises(ValueError, match="Oops, we had an error!"):
        HTM.find_micro_batch(16, 1, model, [], lambda n: torch.randn(n, 3), lambda b: model(b).sum())
    assert torch.equal(before, model.layer.weight)


# ---------------------------------------------------------------------------------------------------------------
# Lightning: BatchSizeFinder's scenarios on MicroBatchFinder
L = pytest.importorskip("lightning.pytorch")
import hpcallbacks_lightning as HL  # noqa: E402

QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, logger=False, enable_checkpointing=False)
pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers.*")


def dataset(samples=64):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(samples, 32, generator=g), torch.randn(samples, 2, generator=g))


class BatchSizeModel(L.LightningModule):
    """Lightning's ``BatchSizeModel`` (a ``BoringModel`` with ``batch_size`` and its own data loaders), with a
    memory limit: a step on more than ``limit`` samples fails as a CPU allocation failure does."""

    def __init__(self, batch_size=None, limit=16, samples=64):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(32, 2)
        if batch_size is not None:
            self.batch_size = batch_size
        self.limit, self.samples = limit, samples
        self.trained_on: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        cpu_out_of_memory(len(x), self.limit)
        return nn.functional.mse_loss(self.layer(x), y)

    def on_train_batch_start(self, batch, batch_idx):  # the loop's batches only (the probes call training_step)
        self.trained_on.append(len(batch[0]))

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(dataset(self.samples), batch_size=getattr(self, "batch_size", 1))

    def val_dataloader(self):
        return torch.utils.data.DataLoader(dataset(self.samples), batch_size=getattr(self, "batch_size", 1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class BatchSizeDataModule(L.LightningDataModule):
    def __init__(self, batch_size=None, samples=64):
        super().__init__()
        if batch_size is not None:
            self.batch_size = batch_size
        self.samples = samples

    def train_dataloader(self):
        return torch.utils.data.DataLoader(dataset(self.samples), batch_size=getattr(self, "batch_size", 1))


def fit(model, *callbacks, datamodule=None, epochs=1, **kw):
    trainer = L.Trainer(max_epochs=epochs, callbacks=list(callbacks), **{**QUIET, **kw})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=datamodule)
    return trainer, [w for w in caught if issubclass(w.category, RunWarning)]


@pytest.mark.parametrize(("model_bs", "dm_bs"), [(2, -1), (2, 2), (None, 2), (16, 16)])
def test_scale_batch_size_method_with_model_or_datamodule(model_bs, dm_bs):
    """Ports Lightning's ``test_scale_batch_size_method_with_model_or_datamodule``: every holder of ``batch_size``
    (module, datamodule) is set to the micro-batch and the train loader uses it; defect 9: with both, the
    datamodule's alone was set. Differs on purpose: the batch is the target's largest fitting divisor (16 of 64,
    accumulated 4 times), and holding it twice warns (Lightning warns only for module + module.hparams). The
    ``(2, None)`` case (a datamodule whose loader ignores the module's attribute) is
    :func:`test_a_loader_that_ignores_the_batch_size_is_refused`."""
    model = BatchSizeModel(model_bs)
    datamodule = BatchSizeDataModule(dm_bs) if dm_bs != -1 else None
    trainer, notices = fit(model, HL.MicroBatchFinder(64), datamodule=datamodule, limit_val_batches=0)
    if model_bs is not None:
        assert model.batch_size == 16
    if datamodule is not None and dm_bs is not None:
        assert datamodule.batch_size == 16
    assert trainer.train_dataloader.batch_size == 16 and trainer.accumulate_grad_batches == 4
    assert set(model.trained_on) == {16}
    holders = (model_bs is not None) + (dm_bs not in (-1, None))
    assert len(notices) == (holders > 1), [str(w.message) for w in notices]
    if holders > 1:
        assert "LightningModule.batch_size, LightningDataModule.batch_size" in str(notices[0].message)


@pytest.mark.parametrize("use_hparams", [True, False])
def test_auto_scale_batch_size_set_model_attribute(use_hparams):
    """Ports Lightning's ``test_auto_scale_batch_size_set_model_attribute``: the micro-batch is written to the
    module's ``hparams["batch_size"]`` (``save_hyperparameters``) or to its attribute, whichever it has."""
    class HparamsModel(BatchSizeModel):
        def __init__(self, batch_size):
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset(), batch_size=self.hparams.batch_size)

    model = HparamsModel(batch_size=2) if use_hparams else BatchSizeModel(batch_size=2)
    trainer, _ = fit(model, HL.MicroBatchFinder(32), limit_val_batches=0)
    after = model.hparams.batch_size if use_hparams else model.batch_size
    assert after == 16 and trainer.train_dataloader.batch_size == 16
    assert after <= len(trainer.train_dataloader.dataset)


@pytest.mark.parametrize("use_hparams", [True, False])
def test_auto_scale_batch_size_set_datamodule_attribute(use_hparams):
    """Ports Lightning's ``test_auto_scale_batch_size_set_datamodule_attribute`` (the datamodule's ``hparams`` or
    attribute). The module holds no ``batch_size`` here: with both, see the duplicate warning above."""
    class HparamsDataModule(BatchSizeDataModule):
        def __init__(self, batch_size):
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset(), batch_size=self.hparams.batch_size)

    datamodule = HparamsDataModule(batch_size=2) if use_hparams else BatchSizeDataModule(batch_size=2)
    trainer, _ = fit(BatchSizeModel(), HL.MicroBatchFinder(32), datamodule=datamodule, limit_val_batches=0)
    after = datamodule.hparams.batch_size if use_hparams else datamodule.batch_size
    assert trainer.datamodule is datamodule
    assert after == 16 and trainer.train_dataloader.batch_size == 16


def test_auto_scale_batch_size_duplicate_attribute_warning():
    """Ports Lightning's ``test_auto_scale_batch_size_duplicate_attribute_warning`` (``model.batch_size`` and
    ``model.hparams.batch_size``): a ``RunWarning`` names both; both are set."""
    class TestModel(BatchSizeModel):
        def __init__(self, batch_size=1):
            super().__init__(batch_size=1)
            self.save_hyperparameters()

    model = TestModel()
    with pytest.warns(RunWarning, match=r"2 objects hold batch_size \(LightningModule.batch_size, "
                                        r"LightningModule.hparams\['batch_size'\]\)"):
        L.Trainer(max_epochs=1, limit_val_batches=0, callbacks=[HL.MicroBatchFinder(32)], **QUIET).fit(model)
    assert model.batch_size == model.hparams["batch_size"] == 16


def test_trainer_reset_correctly():
    """Ports Lightning's ``test_trainer_reset_correctly`` (``fit``): after the search the Trainer's limits,
    ``max_steps``, callbacks and ``global_step`` are as before, and so are the weights (bit for bit)."""
    model = BatchSizeModel(batch_size=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    class Look(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update({a: getattr(trainer, a) for a in ATTRIBUTES},
                        weights={k: v.clone() for k, v in pl_module.state_dict().items()})

    trainer = L.Trainer(max_epochs=1, max_steps=3, limit_train_batches=0.5, limit_val_batches=0.25,
                        callbacks=[HL.MicroBatchFinder(32), Look()], **QUIET)
    expected = {a: getattr(trainer, a) for a in ATTRIBUTES}
    trainer.fit(model)
    assert {a: seen[a] for a in ATTRIBUTES} == {**expected, "global_step": 0}
    assert all(torch.equal(before[k], seen["weights"][k]) for k in before)


ATTRIBUTES = ["callbacks", "global_step", "max_steps", "limit_train_batches", "limit_val_batches",
              "limit_test_batches", "limit_predict_batches"]


def test_error_on_dataloader_passed_to_fit_is_accepted_here():
    """Ports Lightning's ``test_error_on_dataloader_passed_to_fit`` (with ``limit_train_batches=0.2``,
    ``limit_val_batches=0.1``). Differs on purpose: Lightning refuses a loader passed to ``fit()``; hpcallbacks
    rebuilds it with the micro-batch. Defect 9: the probe at 32 (4 batches x 0.2 < 1) tripped Lightning's limit
    check; probes never apply the run's limits, the run does (1 of its 8 batches of 16)."""
    model = BatchSizeModel(limit=16, samples=128)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=0.2, limit_val_batches=0.1,
                        callbacks=[HL.MicroBatchFinder(64)], **QUIET)
    loader = torch.utils.data.DataLoader(dataset(128), batch_size=64)
    trainer.fit(model, loader, torch.utils.data.DataLoader(dataset(128), batch_size=8))
    assert [n for n, _ in trainer.callbacks[0].result.probes] == [8, 32, 16]  # 128 / 32 = 4 batches: 0.2 x 4 < 1
    assert trainer.train_dataloader.batch_size == 16 and trainer.limit_train_batches == 0.2
    assert trainer.num_training_batches == 1 and model.trained_on == [16]


def test_a_loader_that_ignores_the_batch_size_is_refused():
    """Defect 9 (and Lightning's ``(2, None)`` case of ``test_scale_batch_size_method_with_model_or_datamodule``,
    where the datamodule's loader ignores the module's ``batch_size``): the finder checks the batches it gets and
    refuses, before anything trains, a ``train_dataloader()`` that does not use the batch size it sets (it trained
    1-sample updates while the log said 16 x 1)."""
    model = BatchSizeModel(batch_size=2)
    with pytest.raises(ValueError, match=r"set the train batch size to \d+ \(LightningModule.batch_size\), but the "
                                         r"train dataloader gives batches of 1"):
        fit(model, HL.MicroBatchFinder(16), datamodule=BatchSizeDataModule(None), limit_val_batches=0)
    assert model.trained_on == []


@pytest.mark.filterwarnings("ignore:.*Checkpoint directory.*exists and is not empty.*")
def test_a_resumed_run_checks_the_loader_too(tmp_path):
    """Defect 9 on resume: a resumed run does not probe (it keeps the checkpoint's micro-batch) but still refuses
    a loader that ignores it, before the first update."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, callbacks=[
        HL.MicroBatchFinder(32), ModelCheckpoint(dirpath=tmp_path, save_last=True)], **{**QUIET,
                                                                                        "enable_checkpointing": True})
    trainer.fit(BatchSizeModel(batch_size=2))

    class Fixed(BatchSizeModel):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(dataset(), batch_size=2)

    model = Fixed(batch_size=2)
    trainer = L.Trainer(max_epochs=2, limit_val_batches=0, callbacks=[
        HL.MicroBatchFinder(32), ModelCheckpoint(dirpath=tmp_path, save_last=True)], **{**QUIET,
                                                                                        "enable_checkpointing": True})
    with pytest.raises(ValueError, match="gives batches of 2"):
        trainer.fit(model, ckpt_path=str(tmp_path / "last.ckpt"))
    assert model.trained_on == []


def test_dataloader_batch_size_updated_on_failure():
    """Ports Lightning's ``test_dataloader_batch_size_updated_on_failure`` (``training_step`` fails above 100 samples,
    ``is_oom_error`` patched to read it as out of memory; binsearch from 500 ends at 100). Here the step raises
    what a real CPU allocation failure raises (no patch: defect 8), target 500: the largest divisor that fits is
    100, accumulated 5 times, and the train loader's batch size is updated."""
    model = BatchSizeModel(batch_size=16, limit=100, samples=1000)
    trainer, _ = fit(model, HL.MicroBatchFinder(500), limit_val_batches=0)
    assert model.batch_size == 100 and trainer.train_dataloader.batch_size == 100
    assert trainer.accumulate_grad_batches == 5 and trainer.global_step == 2


def test_batch_size_finder_callback_fit():
    """Ports Lightning's ``test_batch_size_finder_callback`` (``fit``): after the search the run trains every epoch on
    the found batch; here ``global_step`` counts updates of the target (64 samples / (16 x 4) = 1 per epoch)."""
    model = BatchSizeModel(batch_size=2)
    trainer, _ = fit(model, HL.MicroBatchFinder(64), epochs=2, limit_val_batches=0)
    assert model.batch_size == 16 and trainer.current_epoch == 2
    assert trainer.global_step == 2 and model.trained_on == [16] * 8


def test_batch_size_finder_callback_val_batches():
    """Ports Lightning's ``test_batch_size_finder_callback_val_batches``: the search does not limit the validation
    batches of the run. (The module's ``val_dataloader`` reads the same ``batch_size``: it validates at the
    micro-batch, as with Lightning's finder.)"""
    model = BatchSizeModel(batch_size=16)
    trainer, _ = fit(model, HL.MicroBatchFinder(64))
    assert trainer.num_val_batches[0] == len(trainer.val_dataloaders) == 4


def test_scale_batch_size_no_trials_when_the_target_fits():
    """Ports Lightning's ``test_scale_batch_size_no_trials`` (``max_trials=0`` keeps the batch): a target that fits
    whole is kept with no accumulation. Differs: there is no trial count, the bisection always probes (here 2, 4
    and 8, the divisors of 8 above its middle)."""
    model = BatchSizeModel(batch_size=8, limit=64)
    finder = HL.MicroBatchFinder(8)
    trainer, _ = fit(model, finder, limit_val_batches=0)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == (8, 1)
    assert [n for n, _ in finder.result.probes] == [2, 4, 8]
    assert model.batch_size == 8 and trainer.accumulate_grad_batches == 1


def test_batch_size_finder_with_distributed_strategies_is_accepted_here():
    """Ports Lightning's ``test_batch_size_finder_with_distributed_strategies`` (Lightning refuses ``ddp``). Differs on
    purpose: ``MicroBatchFinder`` runs under DDP, every decision the minimum over the ranks
    (``tests/test_distributed.py::test_lightning_ddp_microbatch_takes_the_minimum_over_ranks``); here only that
    building a DDP Trainer with it raises nothing."""
    L.Trainer(devices=2, strategy="ddp", accelerator="cpu", callbacks=[HL.MicroBatchFinder(64)], logger=False,
              enable_progress_bar=False)
