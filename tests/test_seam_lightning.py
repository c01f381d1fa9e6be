"""The seam of hpcallbacks_lightning with Lightning (``hpcallbacks_lightning/_seam.py``), touch by touch.

Each test names its touch (T1..T5, as the seam's docstring numbers them) and fails, saying which, when
a Lightning release changes what the touch relies on. They run on the installed release of both
namespaces (``lightning.pytorch`` and ``pytorch_lightning``). The last tests check, by reading the
source, that no other module of the adapter touches an internal (the rule is :func:`touches`), and
that the rule finds the seam's own touches (so it is not vacuous).
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

L = pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import hpcallbacks_lightning as HL  # noqa: E402
from hpcallbacks import run as R  # noqa: E402
from hpcallbacks._versions import installed  # noqa: E402
from hpcallbacks_lightning import _seam as seam  # noqa: E402

QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
             num_sanity_val_steps=0, logger=False, enable_checkpointing=False)
PACKAGE = Path(HL.__file__).parent
ROOT = PACKAGE.parent

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers.*")


def namespaces():
    out = [pytest.param(L, id="lightning")]
    try:
        import pytorch_lightning

        out.append(pytest.param(pytorch_lightning, id="pytorch_lightning"))
    except ImportError:  # pragma: no cover
        pass
    return out


def adapter(Lmod):
    return HL if Lmod is L else importlib.import_module("hpcallbacks_lightning.pl")


def loader(samples=16, batch_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(samples, 4, generator=g), torch.randn(samples, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def net(Lmod, automatic=True):
    class Net(Lmod.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = nn.Linear(4, 1)
            self.automatic_optimization = automatic

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            if not automatic:
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                return None
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Net()


def probe(Lmod, **hooks):
    """A plain Lightning callback running ``hooks`` (name -> function(trainer, pl_module, ...))."""
    return type("Probe", (Lmod.Callback,), {name: (lambda f: lambda self, *a: f(*a))(f) for name, f in hooks.items()})()


# ---------------------------------------------------------------------------------------------------------------
# T1 update counter
@pytest.mark.parametrize("Lmod", namespaces())
@pytest.mark.parametrize("automatic", [True, False], ids=["automatic", "manual"])
def test_T1_update_counter_is_the_tracker_behind_global_step(Lmod, automatic):
    seen = []
    box = {}

    def start(trainer, pl_module):
        box["counter"] = seam.update_counter(trainer)

    def batch_end(trainer, pl_module, outputs, batch, batch_idx):
        seen.append((box["counter"].completed, trainer.global_step))

    trainer = Lmod.Trainer(max_epochs=2, accumulate_grad_batches=2 if automatic else 1,
                           callbacks=[probe(Lmod, on_train_start=start, on_train_batch_end=batch_end)], **QUIET)
    trainer.fit(net(Lmod, automatic), loader())
    assert not isinstance(box["counter"], seam.GlobalStep), (
        "T1 update counter: the progress tracker (fit_loop.epoch_loop.*optimization.*progress...total) no longer "
        "equals trainer.global_step at train start; the per-update hooks fell back to the slower property")
    assert all(a == b for a, b in seen) and seen[-1][1] == (4 if automatic else 8), (
        f"T1 update counter: the tracker's completed diverged from trainer.global_step: {seen}")


# ---------------------------------------------------------------------------------------------------------------
# T2 DDP keyword arguments
@pytest.mark.parametrize("Lmod", namespaces())
def test_T2_ddp_kwargs_are_what_the_strategy_gives_distributed_data_parallel(Lmod):
    strategies = importlib.import_module(f"{Lmod.__name__}.strategies")
    trainer = Lmod.Trainer(accelerator="cpu", devices=2, strategy=strategies.DDPStrategy(find_unused_parameters=False),
                           logger=False, enable_progress_bar=False)
    kwargs = seam.ddp_kwargs(trainer)
    assert kwargs == {"find_unused_parameters": False}, f"T2 DDP keyword arguments: got {kwargs!r}"
    wrap = inspect.getsource(strategies.DDPStrategy._setup_model)
    assert "DistributedDataParallel(" in wrap and "**self._ddp_kwargs" in wrap, (
        "T2 DDP keyword arguments: DDPStrategy._setup_model no longer passes self._ddp_kwargs to "
        "DistributedDataParallel (StagedUnfreeze's find_unused_parameters would not reach DDP)")
    spawn = Lmod.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False)
    assert seam.ddp_kwargs(spawn) is not None, "T2 DDP keyword arguments: ddp_spawn is no longer a DDPStrategy"
    assert seam.ddp_kwargs(Lmod.Trainer(**QUIET)) is None


# ---------------------------------------------------------------------------------------------------------------
# T3 train data
@pytest.mark.parametrize("Lmod", namespaces())
def test_T3_train_source_replaced_and_reloaded_is_what_the_run_trains_on(Lmod):
    data = loader(16, 4)
    sizes, box = [], {}

    def fit_start(trainer, pl_module):
        box["source"] = seam.train_source(trainer)
        seam.load_train_data(trainer)
        box["loaded"] = trainer.train_dataloader.batch_size
        seam.set_train_source(trainer, torch.utils.data.DataLoader(data.dataset, batch_size=8))
        assert trainer.train_dataloader is None, "T3 train data: reload_train_data did not drop the loaded data"
        seam.load_train_data(trainer)

    def batch_start(trainer, pl_module, batch, batch_idx):
        sizes.append(len(batch[0]))

    trainer = Lmod.Trainer(max_epochs=1, callbacks=[probe(Lmod, on_fit_start=fit_start,
                                                          on_train_batch_start=batch_start)], **QUIET)
    trainer.fit(net(Lmod), data)
    assert box["source"] is data, "T3 train data: fit_loop._data_source.instance is not the loader given to fit()"
    assert box["loaded"] == 4, "T3 train data: setup_data() did not load the train data"
    assert sizes == [8, 8], f"T3 train data: the run did not train on the replaced loader: batches of {sizes}"


@pytest.mark.parametrize("Lmod", namespaces())
def test_T3_train_source_of_a_datamodule_or_module(Lmod):
    class Data(Lmod.LightningDataModule):
        def train_dataloader(self):
            return loader()

    class WithLoader(type(net(Lmod))):
        def train_dataloader(self):
            return loader()

    seen = []
    hook = probe(Lmod, on_fit_start=lambda trainer, pl_module: seen.append(seam.train_source(trainer)))
    data, module = Data(), WithLoader()
    Lmod.Trainer(max_epochs=1, callbacks=[hook], **QUIET).fit(net(Lmod), datamodule=data)
    Lmod.Trainer(max_epochs=1, callbacks=[hook], **QUIET).fit(module)
    assert seen == [data, module], "T3 train data: the data source is not the datamodule / module"


# ---------------------------------------------------------------------------------------------------------------
# T4 quiet logging
@pytest.mark.parametrize("Lmod", namespaces())
def test_T4_no_logging_lets_training_step_run_outside_the_loop(Lmod):
    errors, box = [], {}

    def fit_start(trainer, pl_module):
        batch = next(iter(loader()))
        try:
            pl_module.training_step(batch, 0)
        except Exception as e:  # noqa: BLE001 - what Lightning raises outside the loop
            errors.append(e)
        with seam.no_logging(pl_module):
            box["loss"] = pl_module.training_step(batch, 0)
        box["restored"] = "log" not in vars(pl_module) and pl_module.log.__func__ is Lmod.LightningModule.log

    Lmod.Trainer(max_epochs=1, callbacks=[probe(Lmod, on_fit_start=fit_start)], **QUIET).fit(net(Lmod), loader())
    assert errors, ("T4 quiet logging: LightningModule.log no longer raises outside the loop's hooks; "
                    "no_logging may be unnecessary (check what the probes' log calls do now)")
    assert isinstance(box["loss"], torch.Tensor), "T4 quiet logging: training_step still failed inside no_logging"
    assert box["restored"], "T4 quiet logging: LightningModule.log was not restored after the block"


# ---------------------------------------------------------------------------------------------------------------
# T5 foreign callbacks
class Foreign:
    """Stands for another adapter's callback (a HF TrainerCallback, a Keras Callback): no Lightning base, the
    core's guards for a Lightning loop."""


for _name, _guard in R.guard_hooks("hf").items():
    setattr(Foreign, _name, _guard)


@pytest.mark.parametrize("Lmod", namespaces())
def test_T5_a_foreign_callback_is_refused_before_training_in_every_release(Lmod):
    space = seam.namespace(Lmod.Trainer(**QUIET))
    if seam.foreign_callbacks_reach_hooks(space):
        trainer = Lmod.Trainer(max_epochs=1, callbacks=[Foreign()], **QUIET)
        with pytest.raises(TypeError, match="import it from hpcallbacks_lightning instead"):
            trainer.fit(net(Lmod), loader())
        assert trainer.global_step == 0
    else:
        with pytest.raises(ValueError, match="Expected a parent"):
            Lmod.Trainer(max_epochs=1, callbacks=[Foreign()], **QUIET)


def test_T5_flag_matches_where_lightning_checks_the_callbacks():
    """The flag is a release number: this reads Lightning's check itself, so a release that moves the fix fails."""
    connector = importlib.import_module("lightning.pytorch.trainer.connectors.callback_connector")
    check = inspect.getsource(connector._validate_callbacks_list)
    fixed = 'is_overridden("state_dict", instance=cb, parent=Callback)' in check
    assert fixed == seam.foreign_callbacks_reach_hooks("lightning"), (
        f"T5 foreign callbacks: Lightning {installed('lightning')} {'passes' if fixed else 'does not pass'} "
        "parent=Callback in _validate_callbacks_list; the seam's flag says otherwise")


# ---------------------------------------------------------------------------------------------------------------
# the public route instead of the call-stack walk: state_key and setup
def test_two_instances_get_the_contracts_error_and_checkpoints_keep_class_name_keys(tmp_path):
    """Without a walk up to Lightning's _validate_callbacks_list: Trainer() accepts two instances (their keys differ
    until setup), setup refuses them with the contract's ValueError before anything trains; a single instance's
    checkpoint key is the class name, as before, so earlier checkpoints resume."""
    trainer = L.Trainer(max_epochs=1, callbacks=[HL.GradientAccumulation(8), HL.GradientAccumulation(8)], **QUIET)
    with pytest.raises(ValueError, match="callbacks holds 2 GradientAccumulation callbacks; keep one"):
        trainer.fit(net(L), loader())
    assert trainer.global_step == 0
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = [HL.CosineDecay(), HL.GradientAccumulation(8), HL.ParamScheduler({"optimizer.momentum": 0.0}),
                 HL.ParamScheduler({"optimizer.dampening": 0.0})]
    trainer = L.Trainer(max_epochs=1, callbacks=[*callbacks, ModelCheckpoint(dirpath=tmp_path, save_last=True)],
                        **{**QUIET, "enable_checkpointing": True})
    trainer.fit(net(L), loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"]
    assert {"CosineDecay", "GradientAccumulation"} <= set(saved), sorted(saved)
    assert [cb.state_key for cb in callbacks] == ["CosineDecay", "GradientAccumulation", "ParamScheduler",
                                                  "ParamScheduler#1"]


# ---------------------------------------------------------------------------------------------------------------
# the rule: no module of the adapter but the seam touches an internal
#: Framework packages whose internals the rule guards.
FRAMEWORKS = {"lightning", "pytorch_lightning", "lightning_fabric", "lightning_utilities", "torch"}
#: Public names through which only Lightning's private classes are reached (the loops and their progress trackers).
PRIVATE_CLASSES = {"fit_loop", "validate_loop", "test_loop", "predict_loop", "epoch_loop", "optim_progress",
                   "optim_step_progress", "automatic_optimization_loop"}
#: Names that hold framework objects in the adapter's code: none of their private attributes is ours.
FRAMEWORK_OBJECTS = {"trainer", "pl_module", "strategy", "module", "opt", "optimizer", "optimizers", "loader",
                     "source", "loop", "sched", "scheduler", "config"}
CALL_STACK = {"_getframe", "currentframe", "stack", "getouterframes", "f_back", "f_locals"}


def own_private_names() -> set[str]:
    """Private names that hpcallbacks defines itself (its functions, classes, attributes), by reading its source."""
    names: set[str] = set()
    for path in [*ROOT.joinpath("hpcallbacks").rglob("*.py"), *PACKAGE.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Dict):  # class namespaces built as dicts (type(name, bases, {...}))
                names.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return {n for n in names if n.startswith("_")}


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def touches(source: str, own: set[str]) -> list[str]:
    """Every touch of a framework internal in ``source``, as ``"line: what"``. The rule:

    1. an import from a framework package (:data:`FRAMEWORKS`) through a private module or of a private name;
    2. a private attribute (``_x``, not dunder) read or written on an object that is not ``self``/``cls``: always on
       a name holding a framework object (:data:`FRAMEWORK_OBJECTS`) or reached from a framework module, else
       unless hpcallbacks defines that name itself (:func:`own_private_names`); the same for
       ``getattr``/``setattr``/``hasattr`` with a constant name;
    3. a public name that only leads to Lightning's private classes (:data:`PRIVATE_CLASSES`: the loops);
    4. a call-stack walk (``sys._getframe``, ``inspect.currentframe``/``stack``, frames' ``f_back``/``f_locals``);
    5. a method of a framework object replaced on the instance (``pl_module.log = ...``).
    """
    tree = ast.parse(source)
    def package(node: ast.Import | ast.ImportFrom) -> str:
        return ((node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]

    framework_names = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
                       if isinstance(node, (ast.Import, ast.ImportFrom)) and package(node) in FRAMEWORKS
                       for alias in node.names}
    found = []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FRAMEWORKS:
            if any(private(part) for part in node.module.split(".")) or any(private(a.name) for a in node.names):
                found.append(f"{line}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in FRAMEWORKS and any(private(p) for p in parts):
                    found.append(f"{line}: import {alias.name}")
        elif isinstance(node, ast.Attribute):
            root = _root(node.value)
            if node.attr in CALL_STACK and root in {"sys", "inspect", "frame"} | {None}:
                found.append(f"{line}: call-stack walk .{node.attr}")
            elif node.attr in PRIVATE_CLASSES:
                found.append(f"{line}: .{node.attr} (a Lightning private class)")
            elif private(node.attr) and root not in {"self", "cls", "super"} and (
                    root in FRAMEWORK_OBJECTS or root in framework_names or node.attr not in own):
                found.append(f"{line}: {root}....{node.attr}")
            elif (isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
                  and node.value.id in FRAMEWORK_OBJECTS and callable(getattr(L.LightningModule, node.attr, None))
                  and not isinstance(getattr(L.LightningModule, node.attr, None), property)):
                found.append(f"{line}: {node.value.id}.{node.attr} replaced on the instance")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in {"getattr", "setattr", "hasattr", "delattr"} and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and private(node.args[1].value)):
            root = _root(node.args[0])
            if root in FRAMEWORK_OBJECTS or node.args[1].value not in own:
                found.append(f"{line}: {node.func.id}({root}, {node.args[1].value!r})")
    return found


def test_no_module_of_the_adapter_but_the_seam_touches_an_internal():
    own = own_private_names()
    outside = {path.name: touches(path.read_text(), own) for path in sorted(PACKAGE.glob("*.py"))
               if path.name != "_seam.py"}
    assert not any(outside.values()), {name: found for name, found in outside.items() if found}


def test_the_rule_finds_the_seams_own_touches():
    found = "\n".join(touches((PACKAGE / "_seam.py").read_text(), own_private_names()))
    for touch in ("fit_loop", "epoch_loop", "_ddp_kwargs", "_data_source", "_combined_loader",
                  "pl_module.log replaced"):
        assert touch in found, f"the rule misses the seam's {touch}: {found}"
    walk = "import sys\nframe = sys._getframe(1)\nx = frame.f_locals.get('callbacks')\n"
    assert len(touches(walk, set())) == 2
