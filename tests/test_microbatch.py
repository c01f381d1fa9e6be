"""H4: the largest micro-batch that fits, keeping the effective batch (``MicroBatchFinder`` in every adapter).

The core rule (:func:`hpcallbacks.batch.fit_micro_batch`) on plain probes, then real fits in
Lightning, HF and Keras with tiny models that raise the framework's out-of-memory error when a
forward pass sees more samples than they "fit" (8; 16 for some when only the head trains): the
finder picks the largest divisor of the target that fits, sets micro-batch x accumulation, and the
run is bit-identical (weights, learning rate of every update) to one set by hand to the same
numbers. Lightning DDP on 2 CPU ranks takes the minimum over ranks (slow).
"""
from __future__ import annotations

import pytest

from hpcallbacks import batch as B

# ---------------------------------------------------------------------------------------------
# the core rule


def limit_probe(limit, seen=None):
    def fits(n):
        if seen is not None:
            seen.append(n)
        return n <= limit

    return fits


@pytest.mark.parametrize("target,world,limit,expected", [
    (64, 1, 8, (8, 8)), (48, 1, 8, (8, 6)), (64, 2, 8, (8, 4)), (64, 1, 100, (64, 1)), (64, 4, 3, (2, 8)),
    (60, 1, 7, (6, 10)), (61, 1, 60, (1, 61)), (1, 1, 1, (1, 1)),
])
def test_fit_micro_batch_is_the_largest_fitting_divisor(target, world, limit, expected):
    seen = []
    m = B.fit_micro_batch(target, world, limit_probe(limit, seen))
    assert (m.micro_batch_size, m.accumulation) == expected
    assert m.micro_batch_size * m.accumulation * m.world_size == target == m.effective_batch_size
    per = target // world
    assert all(per % n == 0 for n in seen) and len(seen) == len(set(seen))  # divisors only, none twice
    best = max(d for d in range(1, per + 1) if per % d == 0 and d <= limit)
    assert m.micro_batch_size == best and (best, True) in m.probes  # the answer was probed True
    assert m.probes == tuple((n, n <= limit) for n in seen)
    divisors = sum(per % d == 0 for d in range(1, per + 1))
    assert len(seen) <= divisors.bit_length()  # bisection: about log2 of the candidates


def test_fit_micro_batch_respects_max_micro_batch_and_never_returns_an_unprobed_size():
    assert B.fit_micro_batch(64, 1, limit_probe(8), max_micro_batch=7).micro_batch_size == 4
    assert B.fit_micro_batch(48, 1, limit_probe(8), max_micro_batch=7).micro_batch_size == 6
    assert B.fit_micro_batch(64, 1, limit_probe(8), max_micro_batch=8).micro_batch_size == 8
    # a probe that is not monotone (16 fits but 8 does not): the result is still a size that fitted
    odd = B.fit_micro_batch(64, 1, lambda n: n in (1, 2, 16))
    assert (odd.micro_batch_size, True) in odd.probes


def test_fit_micro_batch_refuses_what_cannot_work():
    with pytest.raises(ValueError, match=r"target_batch_size=1 is smaller than the world size 2: .* raise "
                                         r"target_batch_size to a multiple of 2"):
        B.fit_micro_batch(1, 2, limit_probe(8))
    with pytest.raises(ValueError, match=r"target_batch_size=63 is not a multiple of the world size 2: .* use 62 or "
                                         r"64"):
        B.fit_micro_batch(63, 2, limit_probe(8))
    with pytest.raises(ValueError, match=r"no micro-batch fits .* not even 1 sample per process \(divisors of 32 up to "
                                         r"max_micro_batch=8: \[1, 2, 4, 8\]\); reduce the model's memory"):
        B.fit_micro_batch(64, 2, limit_probe(0), max_micro_batch=8)
    with pytest.raises(ValueError, match="max_micro_batch"):
        B.fit_micro_batch(64, 1, limit_probe(8), max_micro_batch=0)
    with pytest.raises(ValueError, match=r"fits\(8\) must return True or False; got 1"):
        B.fit_micro_batch(64, 1, lambda n: 1)
    with pytest.raises(ValueError, match="must be target_batch_size"):
        B.MicroBatch(8, 4, 1, 64)


def test_memory_probe_reads_only_out_of_memory_as_does_not_fit():
    freed = []

    def step(n):
        if n > 8:
            raise MemoryError(f"{n} samples")
        if n == 3:
            raise KeyError("a bug in the step")

    fits = B.memory_probe(step, lambda e: isinstance(e, MemoryError), lambda: freed.append(True))
    assert (fits(8), fits(16), freed) == (True, False, [True])
    with pytest.raises(KeyError, match="a bug"):
        fits(3)
    with pytest.raises(KeyError):
        B.fit_micro_batch(6, 1, fits)  # divisors 1, 2, 3, 6: the bisection reaches 3 and the error surfaces


# ---------------------------------------------------------------------------------------------
# torch test models: out of memory above a batch size (the error CUDA raises, with its message)
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hpcallbacks import FreezePlan  # noqa: E402
from hpcallbacks.torch import microbatch as HTM  # noqa: E402


def out_of_memory(n, limit):
    if n > limit:
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (test model: {n} samples > "
                                     f"{limit})")


class Body(nn.Module):
    """Linear -> Dropout -> Linear; out of memory above ``limit`` samples (``head_limit`` when only the head trains)."""

    def __init__(self, limit=8, head_limit=None, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, 1)
        self.limit, self.head_limit = limit, head_limit
        self.seen = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        body_trains = any(p.requires_grad for p in self.body.parameters())
        out_of_memory(x.shape[0], self.limit if self.head_limit is None or body_trains else self.head_limit)
        return self.head(self.drop(torch.relu(self.body(x))))


def dataset(samples=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(samples, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def test_torch_probe_restores_everything_and_raises_other_errors():
    net = Body(limit=8)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    data = dataset()
    net(data.tensors[0][:4]).sum().backward()
    opt.step()  # optimizer state to keep
    net.eval()
    net.body.weight.requires_grad_(False)
    before = ({k: v.clone() for k, v in net.state_dict().items()}, {p: {k: v.clone() for k, v in s.items()}
                                                                    for p, s in opt.state.items()},
              [None if p.grad is None else p.grad.clone() for p in net.parameters()], torch.get_rng_state())
    batch = lambda n: (data.tensors[0][:n], data.tensors[1][:n])
    loss = lambda b: nn.functional.mse_loss(net(b[0]), b[1])
    m = HTM.find_micro_batch(64, 1, net, [opt], batch, loss, trainable=net.body.parameters())
    assert (m.micro_batch_size, m.accumulation) == (8, 8)
    weights, state, grads, rng = before
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())
    assert all(torch.equal(v, opt.state[p][k]) for p, s in state.items() for k, v in s.items())
    assert all((a is None and p.grad is None) or torch.equal(a, p.grad) for a, p in zip(grads, net.parameters()))
    assert torch.equal(rng, torch.get_rng_state()) and not net.training
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True]

    def broken(b):
        raise RuntimeError("shape mismatch in the user's loss")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        HTM.find_micro_batch(64, 1, net, [opt], batch, broken)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())


def test_with_batch_size_keeps_the_loader_but_its_batch_size():
    data = dataset(20)
    g = torch.Generator().manual_seed(3)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, generator=g, drop_last=True)
    new = HTM.with_batch_size(loader, 8)
    assert (new.batch_size, new.drop_last, new.sampler, len(new)) == (8, True, loader.sampler, 2)
    assert HTM.with_batch_size(loader, 4) is loader
    with pytest.raises(ValueError, match="plain torch DataLoader"):
        HTM.with_batch_size(torch.utils.data.DataLoader(data, batch_size=None), 8)


# ---------------------------------------------------------------------------------------------
# Lightning
try:
    import lightning.pytorch as L

    import hpcallbacks_lightning as HL
except ImportError:  # pragma: no cover - the Lightning tests skip
    L = HL = None
needs_lightning = pytest.mark.skipif(L is None, reason="lightning is not installed")
Module = L.LightningModule if L is not None else nn.Module
Callback = L.Callback if L is not None else object
QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, logger=False, enable_checkpointing=False)


class Net(Module):
    def __init__(self, limit=8, head_limit=None):
        super().__init__()
        self.net = Body(limit, head_limit)
        self.body, self.head = self.net.body, self.net.head

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)  # dropped during the probes
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class LRs(Callback):
    def __init__(self):
        self.records = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.records.append((trainer.global_step, optimizer.param_groups[0]["lr"]))


def lightning_fit(callbacks, batch_size, model=None, epochs=2, **kw):
    model = model if model is not None else Net()
    lrs = LRs()
    trainer = L.Trainer(max_epochs=epochs, callbacks=[*callbacks, HL.CosineDecay(), lrs], **{**QUIET, **kw})
    torch.manual_seed(1)  # the shuffling
    trainer.fit(model, torch.utils.data.DataLoader(dataset(), batch_size=batch_size, shuffle=True))
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return trainer, weights, lrs.records, model


@pytest.mark.parametrize("target,expected", [(64, (8, 8)), (48, (8, 6))])
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@needs_lightning
def test_lightning_finds_the_micro_batch_and_runs_as_if_set_by_hand(target, expected):
    finder = HL.MicroBatchFinder(target)
    trainer, weights, lrs, model = lightning_fit([finder], batch_size=target)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == expected
    assert (trainer.train_dataloader.batch_size, trainer.accumulate_grad_batches) == expected
    assert max(model.net.seen[-20:]) == 8  # training ran on micro-batches of 8
    _, by_hand, hand_lrs, _ = lightning_fit([], batch_size=expected[0], accumulate_grad_batches=expected[1])
    assert torch.equal(weights, by_hand)  # bit-identical: data order, dropout, every update
    assert lrs == hand_lrs and len(lrs) == 2 * -(-128 // target)  # the LR of every update: CosineDecay over updates
    assert finder.state_dict()["micro_batch"]["micro_batch_size"] == 8


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.filterwarnings("ignore:.*Checkpoint directory.*exists and is not empty.*")
@needs_lightning
def test_lightning_resume_keeps_the_checkpoints_micro_batch(tmp_path):
    first = HL.MicroBatchFinder(64)
    trainer = L.Trainer(max_epochs=1, callbacks=[first], **QUIET)
    trainer.fit(Net(), torch.utils.data.DataLoader(dataset(), batch_size=64))
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    model, finder = Net(), HL.MicroBatchFinder(64)
    lrs = LRs()
    trainer = L.Trainer(max_epochs=2, callbacks=[finder, lrs], **QUIET)
    trainer.fit(model, torch.utils.data.DataLoader(dataset(), batch_size=64), ckpt_path=tmp_path / "one.ckpt")
    assert finder.result == first.result and trainer.accumulate_grad_batches == 8
    assert max(model.net.seen) == 8 and [step for step, _ in lrs.records] == [2, 3]  # no probe: 16 and 32 never ran


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@needs_lightning
def test_lightning_takes_eight_when_it_fits_and_a_smaller_divisor_under_a_cap():
    finder = HL.MicroBatchFinder(8)
    lightning_fit([finder], batch_size=2, epochs=1)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == (8, 1)
    capped = HL.MicroBatchFinder(48, max_micro_batch=7)
    trainer, *_ = lightning_fit([capped], batch_size=48, epochs=1)
    assert (capped.result.micro_batch_size, trainer.accumulate_grad_batches) == (6, 8)


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@needs_lightning
def test_lightning_probes_the_widest_stage_of_a_freeze_plan():
    # only the head trains in epoch 0 (fits 16), everything from epoch 1 (fits 8): 16 would run out at the unfreeze
    class FrozenAtFitStart(Callback):  # the model as it is at fit start trains only the head
        def on_fit_start(self, trainer, pl_module):
            pl_module.body.requires_grad_(False)

    for early in ([], [FrozenAtFitStart()]):
        unfreeze = HL.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["net.body", "net.head"], log=False)
        finder = HL.MicroBatchFinder(64)
        trainer, *_ = lightning_fit([*early, finder, unfreeze], batch_size=64, model=Net(limit=8, head_limit=16))
        assert (finder.result.micro_batch_size, trainer.accumulate_grad_batches) == (8, 8)
        assert trainer.global_step == 4  # both stages trained without running out of memory
        assert all(p.requires_grad for p in trainer.lightning_module.parameters())
    # without a plan the model is probed as it is: the head alone fits 16
    finder = HL.MicroBatchFinder(64)
    lightning_fit([FrozenAtFitStart(), finder], batch_size=64, model=Net(limit=8, head_limit=16), epochs=1)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == (16, 4)


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@needs_lightning
def test_lightning_refuses_bad_input():
    with pytest.raises(ValueError, match="MicroBatchFinder: no micro-batch fits"):
        lightning_fit([HL.MicroBatchFinder(64)], batch_size=8, model=Net(limit=0))
    with pytest.raises(ValueError, match="GradientAccumulation and MicroBatchFinder both set the accumulation"):
        lightning_fit([HL.MicroBatchFinder(64), HL.GradientAccumulation(64)], batch_size=8)
    with pytest.raises(ValueError, match=r"Trainer\(accumulate_grad_batches=2\) and the MicroBatchFinder"):
        lightning_fit([HL.MicroBatchFinder(64)], batch_size=8, accumulate_grad_batches=2)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    model.training_step = lambda batch, idx: (_ for _ in ()).throw(RuntimeError("a bug, not memory"))
    with pytest.raises(RuntimeError, match="a bug, not memory"):
        lightning_fit([HL.MicroBatchFinder(64)], batch_size=8, model=model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))




# ---------------------------------------------------------------------------------------------
# HF
class HFNet(nn.Module):
    """:class:`Body` as a Trainer takes it: ``forward(x, y) -> {"loss", "logits"}``."""

    def __init__(self, limit=8, head_limit=None):
        super().__init__()
        self.net = Body(limit, head_limit)

    def forward(self, x, y=None):
        out = self.net(x)
        return {"loss": nn.functional.mse_loss(out, y), "logits": out}


def hf_fit(tmp_path, callbacks, batch_size, model=None, train=True, **kwargs):
    pytest.importorskip("transformers")
    from transformers import Trainer, TrainerCallback, TrainingArguments

    import hpcallbacks_hf as H

    class LRsHF(TrainerCallback):
        def __init__(self):
            self.records = []

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kw):
            self.records.append((state.global_step, optimizer.param_groups[0]["lr"]))

    args = TrainingArguments(**{**dict(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
        logging_strategy="no", per_device_train_batch_size=batch_size, num_train_epochs=2, learning_rate=0.1,
        seed=0, dataloader_num_workers=0), **kwargs})
    model = model if model is not None else HFNet()
    lrs = LRsHF()
    x, y = dataset().tensors
    trainer = Trainer(model=model, args=args, train_dataset=[{"x": x[i], "y": y[i]} for i in range(len(x))],
                      callbacks=[*callbacks, H.CosineDecay(), lrs])
    if train:
        trainer.train()
    return trainer, torch.cat([p.detach().flatten() for p in model.parameters()]), lrs.records, model


@pytest.mark.parametrize("target,expected", [(64, (8, 8)), (48, (8, 6))])
def test_hf_finds_the_micro_batch_and_runs_as_if_set_by_hand(tmp_path, target, expected):
    from hf_versions import hf_updates_per_epoch

    import hpcallbacks_hf as H

    finder = H.MicroBatchFinder(target)
    trainer, weights, lrs, model = hf_fit(tmp_path, [finder], batch_size=target)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == expected
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == expected
    assert max(model.net.seen[-20:]) == 8 and trainer.state.train_batch_size == 8
    _, by_hand, hand_lrs, _ = hf_fit(tmp_path, [], batch_size=expected[0], gradient_accumulation_steps=expected[1])
    assert torch.equal(weights, by_hand)  # bit-identical: data order, dropout, every update
    micro_batches = 128 // expected[0]  # HF's count of the run's updates (4.x rounds the epoch's down)
    assert lrs == hand_lrs and len(lrs) == 2 * hf_updates_per_epoch(micro_batches, expected[1])  # CosineDecay
    assert finder.state()["attributes"]["result_config"]["accumulation"] == expected[1]


def test_hf_takes_eight_when_it_fits_a_divisor_under_a_cap_and_the_widest_stage(tmp_path):
    import hpcallbacks_hf as H

    finder = H.MicroBatchFinder(8)
    hf_fit(tmp_path, [finder], batch_size=2, train=False)
    assert (finder.result.micro_batch_size, finder.result.accumulation) == (8, 1)
    capped = H.MicroBatchFinder(64, max_micro_batch=7)
    trainer, *_ = hf_fit(tmp_path, [capped], batch_size=64, train=False)
    assert (capped.result.micro_batch_size, trainer.args.gradient_accumulation_steps) == (4, 16)
    # the body is frozen when the Trainer is built; the plan trains it from epoch 1 (fits 8, the head alone 16)
    for unfreeze in ([H.StagedUnfreeze(FreezePlan.head_then_all(1), groups=["net.body", "net.head"])], []):
        model = HFNet(limit=8, head_limit=16)
        model.net.body.requires_grad_(False)
        finder = H.MicroBatchFinder(64)
        trainer, *_ = hf_fit(tmp_path, [finder, *unfreeze], batch_size=64, model=model, train=bool(unfreeze))
        assert finder.result.micro_batch_size == (8 if unfreeze else 16)  # without a plan: the model as it is
        if unfreeze:
            assert trainer.state.global_step == 4 and all(p.requires_grad for p in model.parameters())


def test_hf_refuses_bad_input(tmp_path):
    import hpcallbacks_hf as H

    with pytest.raises(ValueError, match="MicroBatchFinder: no micro-batch fits"):
        hf_fit(tmp_path, [H.MicroBatchFinder(64)], batch_size=8, model=HFNet(limit=0), train=False)
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=2\) and the MicroBatchFinder"):
        hf_fit(tmp_path, [H.MicroBatchFinder(64)], batch_size=8, gradient_accumulation_steps=2, train=False)
    with pytest.raises(ValueError, match="auto_find_batch_size would shrink"):
        hf_fit(tmp_path, [H.MicroBatchFinder(64)], batch_size=8, auto_find_batch_size=True, train=False)
    with pytest.raises(ValueError, match="MicroBatchFinder and GradientAccumulation both set the accumulation"):
        hf_fit(tmp_path, [H.MicroBatchFinder(64), H.GradientAccumulation(64)], batch_size=8, train=False)
    model = HFNet()
    before = [p.detach().clone() for p in model.parameters()]
    model.forward = lambda x, y=None: (_ for _ in ()).throw(RuntimeError("a bug, not memory"))
    with pytest.raises(RuntimeError, match="a bug, not memory"):
        hf_fit(tmp_path, [H.MicroBatchFinder(64)], batch_size=8, model=model, train=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer, *_ = hf_fit(tmp_path, [], batch_size=8, train=False)
    trainer.add_callback(H.MicroBatchFinder(64))
    with pytest.raises(ValueError, match="add_callback"):
        trainer.train()




# ---------------------------------------------------------------------------------------------
# Keras (this process' backend, TensorFlow; the torch backend in a subprocess)
def keras_model(limit=8, head_limit=None, accumulation=None, eager=True, bug=False, dropout=0.2):
    """Dense -> Dropout -> out-of-memory check -> Dense, SGD: out of memory above ``limit`` samples (``head_limit``
    while the body is frozen). On TensorFlow ``ResourceExhaustedError``: raised by the layer when the train step runs
    eagerly, else a real allocation failure in the graph (which TensorFlow retries for 10 s);
    ``torch.OutOfMemoryError`` on the torch backend. ``bug``: another error of the backend instead."""
    keras = pytest.importorskip("keras")
    from keras import ops

    backend = keras.backend.backend()

    class Memory(keras.layers.Layer):
        def __init__(self, limit, head_limit, body_trains, **kwargs):
            super().__init__(**kwargs)
            self.limit, self.head_limit, self.body_trains = limit, head_limit, body_trains

        def call(self, x):
            limit = self.limit if self.head_limit is None or self.body_trains() else self.head_limit
            if backend == "tensorflow":
                import tensorflow as tf

                if tf.executing_eagerly():
                    if bug:
                        raise tf.errors.InvalidArgumentError(None, None, "a bug, not memory")
                    if int(x.shape[0]) > limit:
                        raise tf.errors.ResourceExhaustedError(None, None, f"OOM when allocating tensor (test model: "
                                                                           f"{int(x.shape[0])} samples > {limit})")
                    return x
                n = tf.shape(x)[0]
                huge = tf.stack([tf.constant(2**40, tf.int64), tf.cast(n, tf.int64)])  # ~4 TiB per sample
                big = tf.cond(n > limit, lambda: tf.reduce_sum(tf.ones(huge)), lambda: tf.constant(0.0))
                return x + 0.0 * big
            n = ops.shape(x)[0]
            if n is None or getattr(getattr(x, "device", None), "type", None) == "meta":  # the model being built
                return x
            if bug:
                raise RuntimeError("a bug, not memory")
            out_of_memory(int(n), limit)
            return x

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    body = keras.layers.Dense(8, activation="relu", name="body")
    h = keras.layers.Dropout(dropout)(body(inputs))
    h = Memory(limit, head_limit, lambda: body.trainable, name="memory")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, gradient_accumulation_steps=accumulation),
                  loss="mse", jit_compile=False, run_eagerly=eager)
    return model


def keras_data():
    x, y = dataset().tensors
    return x.numpy(), y.numpy()


def keras_fit(model, batch_size, callbacks):
    from hpcallbacks_keras import CosineDecay

    x, y = keras_data()
    history = model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=True, verbose=0,
                        callbacks=[*callbacks, CosineDecay()])
    return [w.copy() for w in model.get_weights()], history.history


@pytest.mark.parametrize("target,expected", [(64, (8, 8)), (48, (8, 6))])
def test_keras_finds_the_micro_batch_and_runs_as_if_set_by_hand(target, expected):
    import numpy as np

    from hpcallbacks_keras import MicroBatchFinder

    model = keras_model()
    before = [w.copy() for w in model.get_weights()]
    finder = MicroBatchFinder(target)
    x, y = keras_data()
    batch_size = finder.run(model, x, y)
    assert (batch_size, finder.result.accumulation, model.optimizer.gradient_accumulation_steps) == (8, *expected[1:],
                                                                                                      expected[1])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the probes left no trace
    weights, history = keras_fit(model, batch_size, [finder])
    hand = keras_model(accumulation=expected[1])
    if __import__("keras").backend.backend() == "torch":
        # Keras' torch trainer draws the global RNG once when fit builds an unbuilt model; run() built it (as
        # LRFinder.run does), so the run set by hand is built before fit too
        from hpcallbacks_keras._finder import _build

        _build(hand, (x[:8], y[:8]))
    hand_weights, hand_history = keras_fit(hand, expected[0], [])
    assert all(np.isfinite(w).all() for w in weights) and history["loss"][-1] < history["loss"][0]
    assert all(np.array_equal(a, b) for a, b in zip(weights, hand_weights))  # bit-identical
    assert history == hand_history


@pytest.mark.parametrize("in_fit", [True, False], ids=["finder-in-fit", "finder-not-in-fit"])
def test_keras_compiled_fit_after_the_finder_accumulates_as_set_by_hand(in_fit):
    """Issue 20, defect 1: run() traces the model's train function for its probes (compiled here: graph mode on
    TensorFlow); the fit after it runs with the accumulation run() set, with or without the finder in its
    callbacks, and equals the run set by hand."""
    import numpy as np

    from hpcallbacks_keras import MicroBatchFinder, _seam

    x, y = keras_data()
    model = keras_model(limit=64, eager=False, dropout=0.0)
    finder = MicroBatchFinder(64, max_micro_batch=8)
    assert (finder.run(model, x, y), finder.result.accumulation) == (8, 8)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[finder] if in_fit else [])
    hand = keras_model(limit=64, eager=False, accumulation=8, dropout=0.0)
    _seam.symbolic_build(hand, (x[:8], y[:8]))  # built before fit, as run() built the other
    hand.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == int(hand.optimizer.iterations) == 2 * len(x) // 64
    for a, b in zip(model.get_weights(), hand.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_keras_takes_eight_when_it_fits_a_divisor_under_a_cap_and_the_widest_stage():
    from hpcallbacks_keras import MicroBatchFinder, StagedUnfreeze

    x, y = keras_data()
    assert MicroBatchFinder(8).run(keras_model(), x, y) == 8
    capped = MicroBatchFinder(48, max_micro_batch=7)
    assert (capped.run(keras_model(), x, y), capped.result.accumulation) == (6, 8)
    # compiled with every layer trainable (the optimizer holds them all), the body frozen before fit
    for unfreeze in ([StagedUnfreeze(FreezePlan.head_then_all(1), groups=["body", "head"])], []):
        model = keras_model(limit=8, head_limit=16)
        model.optimizer.build(model.trainable_variables)
        model.get_layer("body").trainable = False
        finder = MicroBatchFinder(64)
        assert finder.run(model, x, y, callbacks=unfreeze) == (8 if unfreeze else 16)
        assert not model.get_layer("body").trainable
        if unfreeze:
            keras_fit(model, finder.batch_size, [finder, *unfreeze])  # through the unfreeze, no out-of-memory
            assert model.get_layer("body").trainable and int(model.optimizer.iterations) == 2 * 128 // 64


def test_keras_refuses_bad_input():
    import numpy as np

    from hpcallbacks_keras import MicroBatchFinder

    x, y = keras_data()
    with pytest.raises(ValueError, match="MicroBatchFinder: no micro-batch fits"):
        MicroBatchFinder(64).run(keras_model(limit=0), x, y)
    with pytest.raises(ValueError, match="the probes have not run"):
        keras_fit(keras_model(), 8, [MicroBatchFinder(64)])
    model = keras_model(bug=True)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(Exception, match="a bug, not memory") as error:
        MicroBatchFinder(64).run(model, x, y)
    assert "ResourceExhausted" not in type(error.value).__name__
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.slow
def test_keras_graph_mode_real_allocation_failure():
    """TensorFlow graph mode (~15 s): the out-of-memory error of a real allocation inside the compiled train step
    (TensorFlow retries it for 10 s) is read as "does not fit"."""
    import numpy as np

    from hpcallbacks_keras import MicroBatchFinder

    model = keras_model(eager=False)
    if not model.run_eagerly and __import__("keras").backend.backend() != "tensorflow":
        pytest.skip("TensorFlow backend only")
    before = [w.copy() for w in model.get_weights()]
    finder = MicroBatchFinder(16)
    x, y = keras_data()
    assert finder.run(model, x, y) == 8 and finder.result.probes == ((4, True), (8, True), (16, False))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
