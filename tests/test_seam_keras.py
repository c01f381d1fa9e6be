"""The Keras seam (``hpcallbacks_keras/_seam.py``): each touch of a Keras internal tested on the installed
release, and no other module of the adapter touching one.

Each test names the touch it checks, so a Keras release that changes what the adapter relies on fails
here by name (not somewhere in a training run). :func:`touches` is the rule the adapter keeps outside
the seam (its docstring says it precisely); ``python tests/test_seam_keras.py [git-revision]`` prints the
count per module.
"""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

from hpcallbacks._versions import installed  # noqa: E402
from hpcallbacks_keras import _seam  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hpcallbacks_keras"
KERAS = installed("keras")
BACKEND = keras.backend.backend()


def _model(units: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, name="a"), keras.layers.Dense(1, name="b")])
    return model


def _data(n: int = 16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def _built_optimizer(opt=None):
    model = _model()
    opt = opt or keras.optimizers.SGD(0.1)
    opt.build(model.trainable_variables)
    return model, opt


# -- the rule: no touch of an internal outside the seam ---------------------------------------------------
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")
_ACCESSORS = {"getattr", "hasattr", "setattr", "delattr", "__setattr__", "__delattr__", "__getattribute__"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _framework_names() -> set[str]:
    """Every private name a Keras object of the kinds the adapter handles has (class and built instance)."""
    model, opt = _built_optimizer(keras.optimizers.AdamW(0.1))
    model.compile(opt, "mse")
    objects = [model, opt, keras.optimizers.SGD(0.1), keras.layers.BatchNormalization(), keras.callbacks.Callback(),
               keras.callbacks.CallbackList([]), model.weights[0], keras.optimizers.LossScaleOptimizer(opt)]
    names: set[str] = set()
    for obj in objects:
        names.update(n for n in dir(obj) if _private(n))
        names.update(n for n in getattr(obj, "__dict__", {}) if _private(n))
    return names


def _own_names(sources: dict[str, str]) -> set[str]:
    """The private names hpcallbacks itself defines: functions, classes, assigned attributes and module names."""
    own: set[str] = set()
    for path in [*ROOT.joinpath("hpcallbacks").rglob("*.py")]:
        sources.setdefault(str(path), path.read_text())
    for text in sources.values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.alias):
                own.add((node.asname or node.name).split(".")[-1])
    return {n for n in own if _private(n)}


def _constants(sources: dict[str, str]) -> set[str]:
    return {n.value for text in sources.values() for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def touches(sources: dict[str, str]) -> dict[str, list[str]]:
    """The touches of framework internals in each module source (``{module: ["line: what", ...]}``).

    A touch is, in the module's AST:

    1. an import of ``keras.src`` (or anything under it), of ``tensorflow.python``, or of a module of
       keras / tensorflow / jax / torch with a private component (``jax._src``, ``torch._dynamo``);
    2. the attribute ``keras.src``, or ``_getframe`` on anything (``sys._getframe``);
    3. an attribute access ``obj._name`` (load, store or delete; ``_name`` private: one leading
       underscore, not a dunder) where ``_name`` is a private name some Keras object has (a built
       ``Sequential`` with its ``AdamW``, ``SGD``, ``BatchNormalization``, ``Callback``,
       ``CallbackList``, a ``Variable``, a ``LossScaleOptimizer``: their ``dir()`` and instance
       dicts) or one hpcallbacks does not define itself (so ``self._engine`` of our own classes is
       not a touch, ``layer._trainable`` or ``cb._model`` is); names starting ``_hpcallbacks`` are
       hpcallbacks' own (the attributes it adds to Keras objects);
    4. the same names as string constants (or module-level string constants) given to
       ``getattr`` / ``hasattr`` / ``setattr`` / ``delattr`` / ``object.__setattr__`` /
       ``object.__delattr__``, or read through ``obj.__dict__`` (``.get``, ``.pop``, ``[...]``).
    """
    framework = {n for n in _framework_names() if not n.startswith("_hpcallbacks")}  # ours, on Keras' classes
    own = (_own_names(dict(sources)) | {n for n in _constants(sources) if n.startswith("_hpcallbacks")}) - framework
    out: dict[str, list[str]] = {}
    for module, text in sources.items():
        tree = ast.parse(text)
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     for t in n.targets if isinstance(t, ast.Name)}
        found: list[str] = []

        def touched(name: str) -> bool:
            return _private(name) and name not in own

        def string(node: ast.AST) -> str | None:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            if isinstance(node, ast.Name):
                return constants.get(node.id)
            return None

        for node in ast.walk(tree):
            where = getattr(node, "lineno", 0)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    parts = name.split(".")
                    if parts[0] in FRAMEWORKS and (name.startswith(("keras.src", "tensorflow.python"))
                                                   or any(_private(p) for p in parts)):
                        found.append(f"{where}: import {name}")
            elif isinstance(node, ast.Attribute):
                if node.attr == "_getframe" or (node.attr == "src" and isinstance(node.value, ast.Name)
                                                and node.value.id == "keras"):
                    found.append(f"{where}: .{node.attr}")
                elif touched(node.attr):
                    found.append(f"{where}: ._{node.attr.lstrip('_')}")
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                via_dict = (isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault")
                            and isinstance(func.value, ast.Attribute) and func.value.attr == "__dict__")
                if name in _ACCESSORS or via_dict:
                    for arg in node.args[:2] if name in ("__setattr__", "__delattr__") else node.args[:2]:
                        value = string(arg)
                        if value is not None and touched(value):
                            found.append(f"{where}: {name or '__dict__'}({value!r})")
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "__dict__":
                value = string(node.slice)
                if value is not None and touched(value):
                    found.append(f"{where}: __dict__[{value!r}]")
        out[module] = sorted(set(found), key=lambda s: int(s.split(":")[0]))
    return out


def adapter_sources(revision: str | None = None) -> dict[str, str]:
    """The adapter's modules (working tree, or a git revision's)."""
    if revision is None:
        return {p.name: p.read_text() for p in sorted(PACKAGE.glob("*.py"))}
    listing = subprocess.run(["git", "ls-tree", "--name-only", revision, "hpcallbacks_keras/"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    return {Path(p).name: subprocess.run(["git", "show", f"{revision}:{p}"], cwd=ROOT, capture_output=True,
                                         text=True, check=True).stdout for p in listing if p.endswith(".py")}


def test_no_module_but_the_seam_touches_keras_internals():
    found = touches(adapter_sources())
    outside = {m: t for m, t in found.items() if t and m != "_seam.py"}
    assert not outside, f"framework internals outside hpcallbacks_keras/_seam.py: {outside}"
    assert found["_seam.py"], "the rule finds nothing in the seam itself: it cannot be working"


def test_the_rule_finds_each_kind_of_touch():
    probe = ("import sys\nfrom keras.src.saving import saving_lib\nimport jax._src\n"
             "def f(opt, layer, cb, model):\n"
             "    sys._getframe(1)\n    opt._learning_rate.assign(1)\n    layer._trainable = False\n"
             "    getattr(cb, '_model', None)\n    model.__dict__.get('_jax_state')\n    keras.src.ops\n"
             "    object.__setattr__(opt, '_backend_update_step', None)\n    self._engine = None\n")
    found = touches({"probe.py": probe})["probe.py"]
    assert [int(t.split(":")[0]) for t in found] == [2, 3, 5, 6, 7, 8, 9, 10, 11], found


# -- version flags ------------------------------------------------------------------------------------------
def test_flag_KERAS_GE_3_10_iterations_counted_after_backend_apply_gradients():
    model, opt = _built_optimizer()
    seen = []
    original = opt._backend_apply_gradients

    def spy(grads, variables):
        original(grads, variables)
        seen.append(int(ops.convert_to_numpy(opt._iterations)))

    object.__setattr__(opt, "_backend_apply_gradients", spy)
    opt.apply([ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    assert seen == [0 if _seam.KERAS_GE_3_10 else 1], (
        f"KERAS_GE_3_10 ({_seam.KERAS_GE_3_10}) on keras {KERAS}: _iterations after _backend_apply_gradients is {seen}")


def test_flag_KERAS_GE_3_11_multi_optimizer():
    assert hasattr(keras.optimizers, "MultiOptimizer") == _seam.KERAS_GE_3_11, (
        f"KERAS_GE_3_11 ({_seam.KERAS_GE_3_11}) does not say whether keras {KERAS} has MultiOptimizer")
    assert not _seam.is_multi_optimizer(keras.optimizers.SGD(0.1))


def test_flag_KERAS_GE_3_12_jax_trainer_records_state_shardings():
    pytest.importorskip("jax")
    from keras.src.backend.jax.trainer import JAXTrainer

    assert hasattr(JAXTrainer, "_record_training_state_sharding_spec") == (not _seam.KERAS_GE_3_12), (
        f"KERAS_GE_3_12 ({_seam.KERAS_GE_3_12}) does not say whether keras {KERAS}'s JAX trainer records the state "
        "shardings at fit start (jax_trainable_set_changed)")


# -- saving ----------------------------------------------------------------------------------------------------
def test_SavedState_round_trips_through_save_weights_with_the_optimizer_state(tmp_path):
    from hpcallbacks_keras import CosineDecay
    from hpcallbacks_keras._engine import run_state

    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[CosineDecay()])
    state = run_state(model.optimizer).values()
    assert state["learning_rate"] == 0.01 and state["schedule"], state
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = _model()
    again.compile(keras.optimizers.Adam(0.01), "mse")
    again.optimizer.build(again.trainable_variables)
    again.load_weights(path)
    assert run_state(again.optimizer).values() == state, "SavedState: the run state did not load"
    assert int(ops.convert_to_numpy(again.optimizer.iterations)) == 4, "SavedState: the optimizer state did not load"
    for a, b in zip(model.optimizer.variables, again.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_SavedState_round_trips_through_model_save(tmp_path):
    from hpcallbacks_keras import CosineDecay
    from hpcallbacks_keras._engine import run_state

    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[CosineDecay()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert run_state(loaded.optimizer).values() == run_state(model.optimizer).values()
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 4


def test_install_model_property():
    assert isinstance(inspect.getattr_static(keras.Model, "_hpcallbacks_state"), property)


# -- the callbacks of a fit ------------------------------------------------------------------------------------
class _Finder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.found = {}

    def set_model(self, model):
        super().set_model(model)
        self.found["set_model"] = _seam.callback_list_of(self)
        self.found["model"] = _seam.callback_model(self)

    def set_params(self, params):
        super().set_params(params)
        self.found["set_params"] = _seam.callback_list_of(self)

    def on_train_begin(self, logs=None):
        self.found["on_train_begin"] = _seam.callback_list_of(self)


def test_callback_list_of_finds_the_list_fit_builds_and_one_passed_to_fit():
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    finder = _Finder()
    assert _seam.callback_model(finder) is None, "callback_model: Callback._model is not None before set_model"
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[finder])
    for hook in ("set_model", "set_params", "on_train_begin"):
        found = finder.found[hook]
        assert isinstance(found, keras.callbacks.CallbackList) and finder in found.callbacks, (
            f"callback_list_of: not found from {hook}")
    assert finder.found["model"] is model, "callback_model: Callback._model is not the fit's model"
    own = keras.callbacks.CallbackList([finder := _Finder()], model=model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=own)
    assert finder.found["on_train_begin"] is own, "callback_list_of: a CallbackList passed to fit is not found"


# -- optimizers -------------------------------------------------------------------------------------------------
def test_lr_object_and_set_lr_object():
    _, opt = _built_optimizer()
    assert isinstance(_seam.lr_object(opt), keras.Variable), "lr_object: _learning_rate is not a Variable"
    assert float(ops.convert_to_numpy(_seam.lr_object(opt))) == pytest.approx(0.1)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    opt = keras.optimizers.SGD(schedule)
    assert _seam.lr_object(opt) is schedule, "lr_object: a schedule object is not held as _learning_rate"
    other = keras.optimizers.schedules.ExponentialDecay(0.2, 10, 0.5)
    _seam.set_lr_object(opt, other)
    assert float(ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(0.2), "set_lr_object: not used by Keras"


def test_micro_iterations_and_accumulators():
    x, y = _data()
    model = _model()
    opt = keras.optimizers.SGD(0.1, gradient_accumulation_steps=2)
    model.compile(opt, "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert isinstance(_seam.micro_iterations(opt), keras.Variable), "micro_iterations: _iterations is not a Variable"
    assert int(ops.convert_to_numpy(_seam.micro_iterations(opt))) == 4, "micro_iterations: not the micro-batch count"
    assert int(ops.convert_to_numpy(opt.iterations)) == 2
    acc = _seam.accumulators(opt)
    assert [tuple(a.shape) for a in acc] == [tuple(v.shape) for v in model.trainable_variables], (
        "accumulators: _accumulated_gradients is not one per trainable variable")


def test_create_accumulators():
    model, opt = _built_optimizer()
    assert _seam.accumulators(opt) == []
    _seam.create_accumulators(opt)
    assert [tuple(a.shape) for a in _seam.accumulators(opt)] == [tuple(v.shape) for v in model.trainable_variables]


def test_trainable_variables_of_holds_variable_and_variable_index():
    model, opt = _built_optimizer()
    built = _seam.trainable_variables_of(opt)
    assert [id(v) for v in built] == [id(v) for v in model.trainable_variables], "trainable_variables_of"
    assert all(_seam.holds_variable(opt, v) for v in built), "holds_variable: _var_key / _trainable_variables_indices"
    assert not _seam.holds_variable(opt, keras.Variable(np.zeros(2)))
    assert [_seam.variable_index(opt, v) for v in built] == list(range(len(built))), "variable_index"


def test_clip_weight_decay_and_update_step():
    model, opt = _built_optimizer(keras.optimizers.AdamW(0.1, weight_decay=0.5, clipnorm=1.0))
    grads = [ops.ones_like(v) * 100.0 for v in model.trainable_variables]
    clipped = _seam.clip_gradients(opt, grads)
    assert all(float(ops.convert_to_numpy(ops.norm(ops.reshape(g, (-1,))))) <= 1.0 + 1e-5 for g in clipped), (
        "clip_gradients: _clip_gradients does not clip by clipnorm")
    kernel = model.trainable_variables[0]
    before = ops.convert_to_numpy(kernel).copy()
    _seam.apply_weight_decay(opt, [kernel])
    np.testing.assert_allclose(ops.convert_to_numpy(kernel), before * (1 - 0.1 * 0.5), rtol=1e-5,
                               err_msg="apply_weight_decay: _apply_weight_decay is not lr * weight_decay")
    model, opt = _built_optimizer()
    kernel = model.trainable_variables[0]
    before = ops.convert_to_numpy(kernel).copy()
    _seam.backend_update_step(opt, [ops.ones_like(kernel)], [kernel], opt.learning_rate)
    np.testing.assert_allclose(ops.convert_to_numpy(kernel), before - 0.1, rtol=1e-5,
                               err_msg="backend_update_step: _backend_update_step is not one SGD step")


SIGNATURES = {"apply_gradients": ["grads", "trainable_variables"],
              "update_step": ["grads", "trainable_variables", "learning_rate"],
              "weight_decay": ["variables"],
              "stateless_apply": ["optimizer_variables", "grads", "trainable_variables"]}


@pytest.mark.parametrize("role", sorted(SIGNATURES))
def test_PATCHED_methods_have_the_signatures_the_wrappers_take(role):
    _, opt = _built_optimizer()
    method = _seam.optimizer_methods(opt)[role]
    assert list(inspect.signature(method).parameters) == SIGNATURES[role], (
        f"PATCHED[{role!r}]: {_seam.PATCHED[role]} has signature {inspect.signature(method)}")


def _count(calls, original, *args):
    calls.append(1)
    return original(*args)


def test_wrap_optimizer_is_what_fit_calls_and_unwrap_removes_it():
    import functools

    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    opt = model.optimizer
    opt.build(model.trainable_variables)
    calls: list = []
    role = "stateless_apply" if BACKEND == "jax" else "update_step"
    original = _seam.optimizer_methods(opt)[role]
    _seam.wrap_optimizer(opt, **{role: functools.partial(_count, calls, original)})
    assert _seam.optimizer_wrapped(opt, role, (_count,))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(calls) >= 1, f"wrap_optimizer: fit did not call the instance-level {_seam.PATCHED[role]}"
    _seam.unwrap_optimizer(opt, (_count,))
    assert _seam.PATCHED[role] not in opt.__dict__


# -- layers and models ------------------------------------------------------------------------------------------
def test_flatten_layers_own_weights_and_trainable_flag():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(1, name="top")])
    names = [layer.name for layer in _seam.flatten_layers(outer, include_self=False)
             if not isinstance(layer, keras.layers.InputLayer)]
    assert names == ["inner", "inner_dense", "top"], f"flatten_layers: {names}"
    assert [layer.name for layer in _seam.flatten_layers(outer, include_self=False, recursive=False)
            if not isinstance(layer, keras.layers.InputLayer)] == ["inner", "top"], "flatten_layers(recursive=False)"
    dense = outer.get_layer("top")
    assert [w.path for w in _seam.own_weights(dense)] == [w.path for w in dense.weights], "own_weights of a layer"
    assert _seam.own_weights(inner) == [], "own_weights of a container: its sublayers' weights are not its own"
    _seam.set_layer_trainable_flag(inner, False)
    assert _seam.layer_trainable_flag(inner) is False and inner.trainable is False, "layer_trainable_flag: _trainable"
    assert inner.get_layer("inner_dense").trainable, "set_layer_trainable_flag must not walk the sublayers"
    _seam.set_layer_trainable_flag(inner, True)


def test_is_functional():
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    assert _seam.is_functional(functional), "is_functional: a Functional model has no _nodes_by_depth"
    assert not _seam.is_functional(Sub())


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute strategies are TensorFlow's")
def test_strategy_of():
    import tensorflow as tf

    assert _seam.strategy_of(_model()) is None, "strategy_of: a model built outside a strategy has one"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model()
    assert _seam.strategy_of(model) is strategy, "strategy_of: _distribute_strategy is not the scope's strategy"


def test_symbolic_build_builds_the_optimizer_and_metrics():
    x, y = _data()
    model = keras.Sequential([keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mae"])
    _seam.symbolic_build(model, (x[:4], y[:4]))
    assert model.built and model.optimizer.built, "symbolic_build: _symbolic_build did not build the optimizer"
    assert model.metrics_variables, "symbolic_build: the compiled metrics have no variables"


def test_jax_state_held():
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    held = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            held.append(_seam.jax_state_held(self._model))

    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Probe()])
    assert held and all(h == (BACKEND == "jax") for h in held), f"jax_state_held: _jax_state during fit: {held}"
    assert not _seam.jax_state_held(model)


# -- data and global state ---------------------------------------------------------------------------------------
def test_data_adapter_and_is_array_adapter():
    x, y = _data()
    adapter = _seam.data_adapter(x, y, None, 4)
    assert _seam.is_array_adapter(adapter), f"is_array_adapter: arrays give {type(adapter).__name__}"
    batches = list(adapter.get_numpy_iterator())
    assert len(batches) == 4 and batches[0][0].shape == (4, 4), "data_adapter: not fit's batches"
    generator = _seam.data_adapter((b for b in [(x[:4], y[:4])]), None, None, None)
    assert not _seam.is_array_adapter(generator)


def test_fit_data_reads_fits_arrays_from_the_stack():
    x, y = _data(20)
    seen = []

    class Probe(keras.callbacks.Callback):
        def set_params(self, params):
            super().set_params(params)
            seen.append(_seam.fit_data())

        def on_train_begin(self, logs=None):
            seen.append(_seam.fit_data())

    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen == [(20, 4), (20, 4)], f"fit_data: fit's epoch_iterator.data_adapter gives {seen}"
    assert _seam.fit_data() == (None, None)


def test_fit_validates_reads_fits_validation_data_from_the_stack():
    x, y = _data(20)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(_seam.fit_validates())

    model = _model()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    for kwargs in ({}, {"validation_data": (x, y)}, {"validation_split": 0.25}):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Probe()], **kwargs)
    assert seen == [False, True, True], f"fit_validates: fit's validation_data local gives {seen}"
    assert _seam.fit_validates() is None


def test_global_seed_state():
    keras.random.uniform((2,))  # draws from the global SeedGenerator (created when first needed)
    state = _seam.global_seed_state()
    assert isinstance(state, keras.Variable), "global_seed_state: global_state's 'global_seed_generator' has no state"
    before = ops.convert_to_numpy(state).copy()
    keras.random.uniform((2,))
    assert not np.array_equal(before, ops.convert_to_numpy(state)), "global_seed_state: not the state dropout advances"


if __name__ == "__main__":  # python tests/test_seam_keras.py [revision]: the touches per module
    revision = sys.argv[1] if len(sys.argv) > 1 else None
    result = touches(adapter_sources(revision))
    for module, found in result.items():
        print(f"{module}: {len(found)}")
        for item in found:
            print(f"    {item}")
    print("total:", sum(map(len, result.values())), "outside _seam.py:",
          sum(len(v) for m, v in result.items() if m != "_seam.py"))
