"""transformers' own tests of ``auto_find_batch_size`` and ``hyperparameter_search``, ported onto ``MicroBatchFinder``
and ``GradientAccumulation`` (issue 20), and the search defect they found (defect 3).

Peers: huggingface/transformers ``tests/trainer/test_trainer.py`` (``TrainerAutoBatchSizeTest``) and the
hyperparameter-search tests (``TrainerHyperParameterOptunaIntegrationTest``,
``TrainerHyperParameterMultiObjectOptunaIntegrationTest``). Each test's docstring names its peer and says
where hpcallbacks differs on purpose: HF's ``auto_find_batch_size`` shrinks the batch per device (x 0.9
per out-of-memory error) and keeps the accumulation, so the effective batch changes; ``MicroBatchFinder``
keeps the effective batch (micro-batch x accumulation x world size = the target, exactly).

The model runs "out of memory" (``torch.OutOfMemoryError``) above 8 samples per forward pass
(``tests/test_microbatch.py``'s ``HFNet``); CPU, seconds.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
optuna = pytest.importorskip("optuna")

from test_microbatch import HFNet, dataset  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import hpcallbacks_hf as H  # noqa: E402


def samples(n=128):
    x, y = dataset(n).tensors
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def arguments(tmp_path, **kwargs):
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
                logging_strategy="no", per_device_train_batch_size=64, num_train_epochs=1, learning_rate=0.01,
                seed=0, dataloader_num_workers=0, label_names=["y"])
    base.update(kwargs)
    return TrainingArguments(**base)


class Runs(TrainerCallback):
    """Per train(): (batch per device, accumulation, updates planned, updates done, largest forward pass in it)."""

    def __init__(self):
        self.runs = []
        self._start = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._start = len(model.net.seen)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.runs.append((args.per_device_train_batch_size, args.gradient_accumulation_steps, state.max_steps,
                          state.global_step, max(model.net.seen[self._start:])))


# -- TrainerAutoBatchSizeTest ----------------------------------------------------------------------------------
def test_port_auto_batch_size_finder(tmp_path):
    """Peer: ``TrainerAutoBatchSizeTest.test_auto_batch_size_finder`` (a batch far too large fails without the
    finder, trains with it). Differs on purpose: HF shrinks the per-device batch and the run then has a smaller
    effective batch; MicroBatchFinder(64) trains 8 x 8 = 64 samples per update, the updates of the batch asked."""
    with pytest.raises(torch.OutOfMemoryError):
        Trainer(model=HFNet(), args=arguments(tmp_path), train_dataset=samples()).train()
    runs = Runs()
    trainer = Trainer(model=HFNet(), args=arguments(tmp_path), train_dataset=samples(),
                      callbacks=[H.MicroBatchFinder(64), runs])
    trainer.train()
    assert runs.runs == [(8, 8, 2, 2, 8)]  # 128 samples, 64 per update: 2 updates of 8 micro-batches of 8


def test_port_auto_batch_size_with_resume_from_checkpoint(tmp_path):
    """Peer: ``TrainerAutoBatchSizeTest.test_auto_batch_size_with_resume_from_checkpoint`` (a new Trainer
    resuming the checkpoint trains at the batch the first run found). Here the resumed Trainer holds the finder
    again: it probes at the same micro-batch and accumulation, and the resumed run ends with the uninterrupted
    run's weights. Differs on purpose: HF takes the checkpoint's ``train_batch_size`` (transformers 5.x only
    under ``auto_find_batch_size``); a resumed run without the finder trains at the batch its arguments give."""

    def run(out, resume=None):
        model, runs = HFNet(), Runs()
        trainer = Trainer(model=model, args=arguments(out, num_train_epochs=2, save_strategy="steps", save_steps=1),
                          train_dataset=samples(), callbacks=[H.MicroBatchFinder(64), runs])
        trainer.train(resume_from_checkpoint=resume)
        return trainer, runs.runs, torch.cat([p.detach().flatten() for p in model.parameters()])

    first, first_runs, full = run(tmp_path / "full")
    assert first_runs == [(8, 8, 4, 4, 8)] and first.state.train_batch_size == 8
    resumed, resumed_runs, weights = run(tmp_path / "resumed", str(tmp_path / "full" / "checkpoint-2"))
    assert resumed_runs == [(8, 8, 4, 4, 8)] and resumed.state.train_batch_size == 8
    torch.testing.assert_close(weights, full, rtol=1e-6, atol=1e-7)


def test_resume_where_another_micro_batch_fits(tmp_path):
    """The same port, resumed where only 4 samples fit (other hardware): transformers 5.x trains at the new
    micro-batch, 4 x 16 = 64 samples per update; transformers 4.x trains at the checkpoint's 8 whatever the
    arguments say, which with this run's accumulation of 16 would be 128 samples per update: refused before
    the first update."""
    from hf_versions import TRANSFORMERS_4

    args = dict(num_train_epochs=2, save_strategy="steps", save_steps=1)
    Trainer(model=HFNet(), args=arguments(tmp_path / "full", **args), train_dataset=samples(),
            callbacks=[H.MicroBatchFinder(64)]).train()
    runs, finder = Runs(), H.MicroBatchFinder(64)
    trainer = Trainer(model=HFNet(limit=4), args=arguments(tmp_path / "resumed", **args), train_dataset=samples(),
                      callbacks=[finder, runs])
    if TRANSFORMERS_4:
        with pytest.raises(ValueError, match=r"found 4 x 16 micro-batches .* trains at 8 samples per micro-batch "
                                             r"\(the checkpoint's"):
            trainer.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
        return
    trainer.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert runs.runs == [(4, 16, 4, 4, 4)]  # (HF's state.train_batch_size stays the checkpoint's 8 on 5.25.0)


# -- TrainerHyperParameterOptunaIntegrationTest ------------------------------------------------------------------
def search(tmp_path, callback, space, n_trials=None, **kwargs):
    """HF's peer scenario: model_init suggesting the model's parameters, evaluation and a checkpoint every epoch,
    load_best_model_at_end; the space holds the batch per device (GridSampler: each value once)."""
    runs = Runs()

    def model_init(trial):
        seed = trial.suggest_int("seed", 0, 3) if trial is not None else 0
        net = HFNet()
        torch.manual_seed(seed)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.1)
        return net

    args = arguments(tmp_path, num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch",
                     load_best_model_at_end=True, per_device_train_batch_size=8, per_device_eval_batch_size=8,
                     **kwargs)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=samples(64), eval_dataset=samples(16),
                      callbacks=[callback, runs])
    grid = {"per_device_train_batch_size": space, "seed": [1]}
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", space)},
        backend="optuna", n_trials=n_trials or len(space), direction="minimize",
        sampler=optuna.samplers.GridSampler(grid))
    return best, sorted(runs.runs)


@pytest.mark.parametrize("make", [lambda: H.GradientAccumulation(16), lambda: H.MicroBatchFinder(16)],
                         ids=["GradientAccumulation", "MicroBatchFinder"])
def test_port_hyperparameter_search_keeps_the_effective_batch(tmp_path, make):
    """Peer: ``TrainerHyperParameterOptunaIntegrationTest.test_hyperparameter_search`` (model_init from the trial,
    eval and save every epoch, load_best_model_at_end), with ``per_device_train_batch_size`` in the space: every
    trial trains 16 samples per update (64 samples, 2 epochs: 8 updates), its batch per device x the
    accumulation. Issue 20 defect 3: MicroBatchFinder's trials ran at 4 x 2 and 2 x 2 (8 and 4 samples per
    update) instead of 16, without a word."""
    best, runs = search(tmp_path, make(), [2, 4, 8])
    assert best is not None
    assert runs == [(2, 8, 8, 8, 8), (4, 4, 8, 8, 8), (8, 2, 8, 8, 8)], runs  # evaluation: 8 per pass


def test_micro_batch_finder_refuses_a_trial_batch_that_cannot_reach_the_target(tmp_path):
    """Issue 20 defect 3, the refusals: a trial's batch per device that does not divide the target, or is above the
    largest micro-batch that fits (8 here), is refused before that trial trains (as GradientAccumulation refuses an
    inexact target), naming the values to search over."""
    with pytest.raises(ValueError, match=r"per_device_train_batch_size=16 is above the largest micro-batch that "
                                         r"fits, 8.*search over \[1, 2, 4, 8\]"):
        search(tmp_path / "a", H.MicroBatchFinder(16), [16])
    with pytest.raises(ValueError, match=r"per_device_train_batch_size=3 does not divide target_batch_size / world "
                                         r"size = 16"):
        search(tmp_path / "b", H.MicroBatchFinder(16), [3])


def test_port_multi_objective_hyperparameter_search_keeps_the_effective_batch(tmp_path):
    """Peer: ``TrainerHyperParameterMultiObjectOptunaIntegrationTest.test_hyperparameter_search`` (two directions,
    a compute_objective returning two values), with GradientAccumulation and the batch per device in the space:
    each trial keeps 16 samples per update."""
    runs = Runs()
    trainer = Trainer(model_init=lambda trial: HFNet(), train_dataset=samples(64), eval_dataset=samples(16),
                      args=arguments(tmp_path, num_train_epochs=1, eval_strategy="epoch",
                                     per_device_train_batch_size=8, per_device_eval_batch_size=8),
                      callbacks=[H.GradientAccumulation(16), runs])
    space = {"per_device_train_batch_size": [4, 8]}
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", space["per_device_train_batch_size"])},
        backend="optuna", n_trials=2, direction=["minimize", "maximize"], sampler=optuna.samplers.GridSampler(space),
        compute_objective=lambda metrics: (metrics["eval_loss"], -metrics["eval_loss"]))
    assert best  # the Pareto front
    assert sorted(runs.runs) == [(4, 4, 4, 4, 8), (8, 2, 4, 4, 8)], runs.runs
