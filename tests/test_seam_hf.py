"""The seam of hpcallbacks_hf with transformers, accelerate and torch (``hpcallbacks_hf/_seam.py``).

* one test per touch (``test_touch_<name>``): it fails, naming the touch, when a release changes
  what the touch relies on (an attribute renamed, an event sent from elsewhere, a rule HF changed);
* an AST check that no other module of ``hpcallbacks_hf`` touches framework internals (the rule
  is :func:`internal_touches`' docstring).

Real transformers objects throughout (tiny models, CPU). Runs on the floor (transformers 4.47.1,
accelerate 1.0.1, with ``USE_TF=0``) and the newest (transformers 5.25.0, accelerate 1.16.0).
"""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_hf import arguments as hf_arguments  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainerState  # noqa: E402

import hpcallbacks_hf as H  # noqa: E402
from hpcallbacks._versions import at_least, installed  # noqa: E402
from hpcallbacks_hf import _seam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hpcallbacks_hf"


# -- a tiny real Trainer -------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x, y=None):
        out = self.head(torch.relu(self.body(x)))
        return {"loss": nn.functional.mse_loss(out, y), "logits": out}


def data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return [{"x": x[i], "y": x[i, :1] * 2} for i in range(n)]


def arguments(tmp_path, **kwargs):
    return hf_arguments(tmp_path, **{"num_train_epochs": 1, "learning_rate": 0.1, **kwargs})


class Seen(TrainerCallback):
    """What the seam returns, and the optimizer HF hands the callbacks, at the events the adapter uses."""

    def __init__(self):
        self.trainers = {}
        self.optimizers = []

    def on_init_end(self, args, state, control, **kwargs):
        self.trainers["on_init_end"] = _seam.calling_trainer()

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainers["on_train_begin"] = _seam.calling_trainer()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.optimizers.append(kwargs.get("optimizer"))


def trained(tmp_path, callbacks, **kwargs):
    trainer = Trainer(model=Net(), args=arguments(tmp_path, **kwargs), train_dataset=data(), callbacks=callbacks,
                      optimizers=(None, None))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    seen = Seen()
    trainer = trained(tmp_path_factory.mktemp("seam"), [seen], max_steps=2)
    return trainer, seen


# -- the version flags ----------------------------------------------------------------------------------
def test_version_flag_is_the_installed_release():
    assert _seam.TRANSFORMERS_5 == (int(transformers.__version__.split(".")[0]) >= 5)
    assert _seam.TRANSFORMERS_5 == at_least("transformers", "5.0")


# -- one test per touch ----------------------------------------------------------------------------------
def test_every_touch_has_a_test():
    """Each name the seam exports is exercised by a ``test_touch_*`` below (the flags by the test above)."""
    tree = ast.parse(Path(__file__).read_text())
    tested = {node.attr for fn in tree.body if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_touch_")
              for node in ast.walk(fn) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "_seam"}
    missing = set(_seam.__all__) - tested - {"TRANSFORMERS_5", "TRANSFORMERS_VERSION"}
    assert not missing, f"seam touches without a test_touch_*: {sorted(missing)}"


def test_touch_calling_trainer(run):
    trainer, seen = run
    for event in ("on_init_end", "on_train_begin"):
        assert seen.trainers.get(event) is trainer, (
            f"touch calling_trainer: the Trainer is no longer on the call stack of {event} (the walk found "
            f"{seen.trainers.get(event)!r}); find another route to the Trainer")
    assert _seam.calling_trainer() is None  # outside a Trainer: nothing


def test_touch_callback_list_and_set_callback_list(tmp_path):
    order = []

    class Named(TrainerCallback):
        def __init__(self, name):
            self.name = name

        def on_train_begin(self, args, state, control, **kwargs):
            order.append(self.name)

    a, b = Named("a"), Named("b")
    trainer = Trainer(model=Net(), args=arguments(tmp_path, max_steps=1), train_dataset=data(), callbacks=[a, b])
    listed = _seam.callback_list(trainer)
    assert a in listed and b in listed and listed.index(a) < listed.index(b), (
        "touch callback_list: trainer.callback_handler.callbacks no longer lists the callbacks in order")
    _seam.set_callback_list(trainer, [cb for cb in listed if cb is not a] + [a])
    trainer.train()
    assert order == ["b", "a"], ("touch set_callback_list: assigning callback_handler.callbacks no longer sets the "
                                 f"order HF calls the callbacks in (called {order})")


def test_touch_exportable_state():
    callback = H.GradientAccumulation(8)
    assert isinstance(callback, _seam.ExportableState)
    state = TrainerState(stateful_callbacks=[callback])
    assert state.stateful_callbacks.get("GradientAccumulation", {}).get("args") == callback.get_config(), (
        "touch ExportableState: TrainerState no longer stores an ExportableState callback's state() by class name")


def test_touch_batch_norm_base():
    for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm):
        assert issubclass(cls, _seam.BatchNormBase), f"touch BatchNormBase: {cls.__name__} is no torch _BatchNorm"
    assert not issubclass(nn.GroupNorm, _seam.BatchNormBase)


def test_touch_train_batch_size(tmp_path):
    seen = {}

    class AtInitEnd(TrainerCallback):
        def on_init_end(self, args, state, control, **kwargs):
            trainer = _seam.calling_trainer()
            seen["set"] = "_train_batch_size" in vars(trainer)
            seen["batch"] = _seam.train_batch_size(trainer)

    trainer = Trainer(model=Net(), args=arguments(tmp_path), train_dataset=data(), callbacks=[AtInitEnd()])
    assert seen["set"] == _seam._BATCH_BEFORE_INIT_END, (
        "touch train_batch_size: Trainer.__init__ sets _train_batch_size on the other side of on_init_end now")
    assert seen["batch"] == 4 and _seam.train_batch_size(trainer) == 4
    _seam.set_train_batch_size(trainer, 2)
    batch = next(iter(trainer.get_train_dataloader()))
    assert len(batch["x"]) == 2, ("touch set_train_batch_size: get_train_dataloader() no longer reads "
                                  "Trainer._train_batch_size")


def test_touch_training_batch_size(tmp_path):
    """A run resumed with another per-device batch than its checkpoint's: the seam's batch at on_train_begin is
    the one the model then sees (4.47.1 trains at the checkpoint's, 5.25.0 at the arguments')."""
    seen = {}

    class Sizes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["seam"] = _seam.training_batch_size(_seam.calling_trainer())


    class Counting(Net):
        def forward(self, x, y=None):
            seen.setdefault("batches", []).append(len(x))
            return super().forward(x, y)

    Trainer(model=Counting(), args=arguments(tmp_path / "a", max_steps=2, save_strategy="steps", save_steps=1),
            train_dataset=data()).train()
    seen.clear()
    resumed = Trainer(model=Counting(), args=arguments(tmp_path / "b", max_steps=3, per_device_train_batch_size=2),
                      train_dataset=data(), callbacks=[Sizes()])
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))
    assert seen["seam"] == max(seen["batches"]) == (2 if _seam.TRANSFORMERS_5 else 4), (
        f"touch training_batch_size: Trainer._train_batch_size at on_train_begin is {seen['seam']}, the model sees "
        f"{seen['batches']}")


def test_touch_forget_prepared_loader(tmp_path):
    trainer = Trainer(model=Net(), args=arguments(tmp_path), train_dataset=data())
    loader = trainer.get_train_dataloader()
    assert loader in trainer.accelerator._dataloaders, (
        "touch forget_prepared_loader: accelerate's Accelerator._dataloaders no longer holds prepared loaders")
    _seam.forget_prepared_loader(trainer, loader)
    assert loader not in trainer.accelerator._dataloaders


def test_touch_after_trial_values(tmp_path):
    optuna = pytest.importorskip("optuna")
    seen = []

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen.append(("train", args.per_device_train_batch_size, state.max_steps))

    trainer = Trainer(model_init=lambda trial: Net(), args=arguments(tmp_path, label_names=["y"]),
                      train_dataset=data(), eval_dataset=data(4), callbacks=[Record()])
    _seam.after_trial_values(trainer, lambda: seen.append(("redo", trainer.args.per_device_train_batch_size, None)))
    trainer.train()  # a plain train(): no redo
    assert [s[0] for s in seen] == ["train"], "touch after_trial_values: redo ran outside a search"
    seen.clear()
    space = {"per_device_train_batch_size": [2]}
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"per_device_train_batch_size": trial.suggest_categorical(
            "per_device_train_batch_size", space["per_device_train_batch_size"])},
        backend="optuna", n_trials=1, direction="minimize", sampler=optuna.samplers.GridSampler(space))
    assert seen == [("redo", 2, None), ("train", 2, 8)], (
        "touch after_trial_values: Trainer._hp_search_setup no longer ends with create_accelerator_and_postprocess() "
        f"after setting the trial's values, before train() counts the updates (seen {seen})")


def test_touch_set_last_lr_and_scheduler_lists():
    p = nn.Parameter(torch.zeros(1))
    sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([p], lr=1.0), lambda t: 1.0)
    _seam.set_last_lr(sched, [0.25])
    assert sched.get_last_lr() == [0.25], "touch set_last_lr: torch's get_last_lr() no longer returns _last_lr"
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([p], lr=1.0))
    _seam.set_last_lr(plateau, [0.5])
    assert plateau.get_last_lr() == [0.5]
    cyclic = torch.optim.lr_scheduler.CyclicLR(torch.optim.SGD([p], lr=1.0, momentum=0.9), 0.1, 1.0)
    held = set()
    for s in (sched, plateau, cyclic):
        held |= {name for name in _seam.SCHEDULER_GROUP_LISTS if isinstance(getattr(s, name, None), list)}
    assert held == set(_seam.SCHEDULER_GROUP_LISTS), (
        f"touch SCHEDULER_GROUP_LISTS: torch schedulers no longer keep {set(_seam.SCHEDULER_GROUP_LISTS) - held}")


def test_touch_scheduler_parts():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    lr = torch.optim.lr_scheduler
    first, second = lr.LinearLR(opt, 0.5, 1.0, total_iters=2), lr.StepLR(opt, 2)
    sequential = lr.SequentialLR(opt, [first, second], milestones=[2])
    assert _seam.scheduler_parts(sequential) == [sequential, first, second], (
        "touch scheduler_parts: SequentialLR no longer keeps its schedulers in _schedulers")
    chained = lr.ChainedScheduler([lr.StepLR(opt, 2), lr.StepLR(opt, 3)])
    assert len(_seam.scheduler_parts(chained)) == 3
    assert _seam.scheduler_parts(first) == [first] and _seam.scheduler_parts(None) == []


def test_touch_inner_optimizer_step_was_skipped_and_may_skip(run):
    from accelerate.optimizer import AcceleratedOptimizer

    trainer, seen = run
    optimizer = seen.optimizers[0]
    assert type(optimizer) is AcceleratedOptimizer, f"the Trainer's optimizer is a {type(optimizer).__name__}"
    assert isinstance(_seam.inner_optimizer(optimizer), torch.optim.AdamW), (
        "touch inner_optimizer: AcceleratedOptimizer.optimizer is no longer the torch optimizer")
    assert _seam.step_was_skipped(optimizer) is False and type(optimizer).step_was_skipped.fget is not None, (
        "touch step_was_skipped: AcceleratedOptimizer.step_was_skipped is gone")
    assert optimizer.scaler is None and _seam.may_skip(optimizer) is False, (
        "touch may_skip: AcceleratedOptimizer.scaler is not None without mixed precision")
    assert _seam.may_skip(_seam.inner_optimizer(optimizer)) is True  # any other optimizer may skip


@pytest.mark.parametrize("name, warmup, kind", [("constant", 0, "constant"), ("linear", 0, "linear"),
                                                 ("linear", 3, "linear"), ("cosine", 0, "_get_cosine")])
def test_touch_hf_lambda_kind(name, warmup, kind):
    from transformers import get_scheduler

    sched = get_scheduler(name, torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), num_warmup_steps=warmup,
                          num_training_steps=10)
    got, got_warmup = _seam.hf_lambda_kind(sched.lr_lambdas[0])
    assert got is not None and got.startswith(kind) and got_warmup == warmup, (
        f"touch hf_lambda_kind: get_scheduler({name!r}) no longer builds a partial of transformers.optimization's "
        f"private lambdas (read as {got!r}, warmup {got_warmup})")
    assert _seam.hf_lambda_kind(lambda t: 1.0) == (None, 0.0)


def test_touch_is_layerwise_optimizer(run):
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    dummy = LayerWiseDummyOptimizer(optimizer_dict={})
    assert _seam.is_layerwise_optimizer(dummy), "touch is_layerwise_optimizer: LayerWiseDummyOptimizer moved"
    assert not _seam.is_layerwise_optimizer(_seam.inner_optimizer(run[1].optimizers[0]))


def test_touch_ddp_finds_unused(tmp_path):
    import inspect

    from transformers import BertConfig, BertModel

    source = inspect.getsource(Trainer)
    rule = ("self.model.is_activation_checkpointing or self.args.activation_checkpointing" if _seam.TRANSFORMERS_5
            else "not model.is_gradient_checkpointing")
    assert rule in source, f"touch ddp_finds_unused: the Trainer no longer decides find_unused_parameters by {rule!r}"
    bert = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=8))
    args = arguments(tmp_path)
    assert _seam.ddp_finds_unused(bert, args) is True
    if _seam.TRANSFORMERS_5:
        bert.activation_checkpointing_enable()
    else:
        bert.gradient_checkpointing_enable()
    assert _seam.ddp_finds_unused(bert, args) is False
    assert _seam.ddp_finds_unused(Net(), args) is True
    assert _seam.ddp_finds_unused(bert, arguments(tmp_path, ddp_find_unused_parameters=True)) is True


def test_touch_check_importable():
    """transformers 4.x beside Keras 3 and TensorFlow, without USE_TF=0: ``import hpcallbacks_hf`` says what to do
    (transformers' own ``from transformers import Trainer`` fails there, three errors deep: checked by hand on
    4.47.1, not here, as it imports TensorFlow for 40 s); elsewhere both import."""
    _seam.check_importable()  # this process: the floor leg runs with USE_TF=0; the newest has transformers 5
    env = {k: v for k, v in os.environ.items() if k != "USE_TF"}
    code = ("import importlib\n"
            "try:\n    import hpcallbacks_hf\n    print('IMPORTED')\n"
            "except ImportError as e:\n    print('REFUSED', e)\n"
            "try:\n    from transformers import Trainer\n    print('TRAINER')\n"
            "except Exception as e:\n    print('NO-TRAINER', type(e).__name__)\n")
    refusing = (not _seam.TRANSFORMERS_5 and (installed("keras") or (0,)) >= (3,)
                and importlib.util.find_spec("tensorflow") is not None and installed("tf-keras") is None)
    if refusing:  # (that transformers' own import of Trainer then fails was checked by hand: 40 s of TensorFlow)
        code = code.split("try:\n    from transformers")[0]
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    if refusing:
        assert "REFUSED" in out and "USE_TF=0" in out, f"touch check_importable: {out!r}"
    else:
        assert "IMPORTED" in out and "TRAINER" in out, f"touch check_importable refused where Trainer imports: {out!r}"


# -- no other module touches internals ---------------------------------------------------------------------
#: Framework attributes and names with public spelling whose use is a touch all the same (they are the
#: seam's: accelerate's wrapper, the Trainer's callback handler and search internals, version-dependent names).
SEAM_ONLY_NAMES = frozenset({
    "step_was_skipped", "scaler", "callback_handler", "create_accelerator_and_postprocess", "hp_search_backend",
    "is_gradient_checkpointing", "is_activation_checkpointing", "activation_checkpointing",
    "CallbackHandler", "ExportableState", "LayerWiseDummyOptimizer", "AcceleratedOptimizer",
})
FRAME_NAMES = frozenset({"_getframe", "f_locals", "f_back", "f_globals", "currentframe"})
FRAMEWORKS = ("torch", "transformers", "accelerate")
#: Framework modules a module outside the seam may import from (their public API).
PUBLIC_MODULES = frozenset({"torch", "torch.nn", "torch.optim", "torch.optim.lr_scheduler", "torch.distributed",
                            "transformers", "transformers.utils"})


def _ours() -> set[str]:
    """Private names hpcallbacks defines itself (in ``hpcallbacks`` and ``hpcallbacks_hf``): functions,
    classes, module-level and class-level names, ``self._x`` attributes, its own modules."""
    names: set[str] = set()
    for path in [*(ROOT / "hpcallbacks").rglob("*.py"), *PACKAGE.glob("*.py")]:
        names.add(path.stem)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def _private(name: str, ours: set[str]) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and not name.startswith("_hpcallbacks") and name not in ours)


def internal_touches(source: str, ours: set[str]) -> list[tuple[int, str]]:
    """The touches of framework internals in one module's source, as ``(line, what)``.

    A touch is any of:

    1. a call-stack walk: an attribute or name ``_getframe``, ``f_locals``, ``f_back``, ``f_globals``,
       ``currentframe`` (``sys._getframe``, ``inspect.currentframe``);
    2. an import from torch, transformers or accelerate outside :data:`PUBLIC_MODULES`, or of a name
       starting with ``_`` (``torch.nn.modules.batchnorm._BatchNorm``, ``transformers.trainer_callback``,
       ``accelerate.optimizer``);
    3. an attribute ``x._name`` (one leading underscore, not a dunder) or a ``getattr`` / ``setattr`` /
       ``hasattr`` / ``delattr`` of the literal ``"_name"``, where ``_name`` is not hpcallbacks' own: not
       defined anywhere in ``hpcallbacks`` or ``hpcallbacks_hf`` (:func:`_ours`) and not ``_hpcallbacks*``
       (the marks hpcallbacks puts on framework objects);
    4. a name of :data:`SEAM_ONLY_NAMES` as an attribute, a name or a string literal;
    5. a string literal that is an identifier with one leading underscore, not hpcallbacks' own (a private
       name looked up or compared by hand: ``"_get_constant_lambda"``).

    Not a touch: the seam's own functions and names (``_seam.x``, ``from ._seam import x``).
    """
    found: list[tuple[int, str]] = []
    tree = ast.parse(source)
    from_seam = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "_seam" and node_level(node) for a in node.names}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "_seam":
            continue  # the seam's own functions
        if isinstance(node, ast.Attribute):
            if node.attr in FRAME_NAMES:
                found.append((line, f"call-stack walk .{node.attr}"))
            elif _private(node.attr, ours):
                found.append((line, f"private attribute .{node.attr}"))
            elif node.attr in SEAM_ONLY_NAMES:
                found.append((line, f"seam-only attribute .{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in SEAM_ONLY_NAMES and node.id not in from_seam:
            found.append((line, f"seam-only name {node.id}"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if node_level(node) or module.split(".")[0] not in FRAMEWORKS:
                    continue
                if module not in PUBLIC_MODULES or any(p.startswith("_") for p in module.split(".")):
                    found.append((line, f"import from framework module {module}"))
                if isinstance(node, ast.ImportFrom):
                    found += [(line, f"import of private name {a.name}") for a in node.names if _private(a.name, set())]
                    found += [(line, f"import of seam-only name {a.name}") for a in node.names
                              if a.name in SEAM_ONLY_NAMES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier() \
                and (node.value in SEAM_ONLY_NAMES or _private(node.value, ours)):
            found.append((line, f"string {node.value!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            name = node.args[1].value
            if _private(name, ours) or name in SEAM_ONLY_NAMES or name in FRAME_NAMES:
                found.append((line, f"{node.func.id}(..., {name!r})"))
    return sorted(set(found))


def node_level(node: ast.AST) -> int:
    return int(getattr(node, "level", 0) or 0)


def test_the_rule_finds_what_it_names():
    """The rule is not vacuous: each kind of touch is found (and what is ours is not)."""
    ours = _ours()
    source = ("import sys\nfrom torch.nn.modules.batchnorm import _BatchNorm\nfrom transformers.trainer_callback "
              "import CallbackHandler\nfrom accelerate.optimizer import AcceleratedOptimizer\n"
              "f = sys._getframe(1).f_back\ntrainer._train_batch_size = 2\nsched._last_lr = []\n"
              "getattr(trainer, '_trial', None)\nopt.step_was_skipped\ntrainer.callback_handler.callbacks\n"
              "self._run\nE._RECORDS\nfn._hpcallbacks_source = 1\nobj.__class__\n"
              "name == '_get_constant_lambda'\nkind in ('LayerWiseDummyOptimizer',)\nmark = '_hpcallbacks_x'\n")
    lines = {line for line, _ in internal_touches(source, ours)}
    assert lines == {2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16}, internal_touches(source, ours)
    for name in ("_train_batch_size", "_last_lr", "_trial", "_dataloaders", "_BatchNorm"):
        assert name not in ours, f"{name} is defined in hpcallbacks, so the rule would not see it touched"


def test_no_module_but_the_seam_touches_framework_internals():
    ours = _ours()
    touches = {path.name: internal_touches(path.read_text(), ours) for path in sorted(PACKAGE.glob("*.py"))
               if path.name != "_seam.py"}
    left = {name: found for name, found in touches.items() if found}
    assert not left, f"framework internals outside hpcallbacks_hf/_seam.py: {left}"
