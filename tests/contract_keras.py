"""The contract table's driver for Keras (``model.fit``, tiny models, the backend of this process).

The model is a ``Sequential`` of ``Dense`` layers named as the row's groups (``body``, ``neck``,
``head``; one group: ``Dense(1, name="net")``; ``body_bn`` a ``BatchNormalization`` after
``body``), compiled with ``keras_support.RecordingSGD`` at learning rate 0.1 and
``steps_per_execution=1``: its ``update_step`` records in-graph, per update, the learning rate
each group's update used and which groups were updated (the rate a frozen group would get is the
optimizer's rate of that update times the group's factor, as ``keras_support.records_of`` counts
it; the factors are the ones the adapter applies). A plain ``keras.callbacks.Callback`` listed
after the hpcallbacks callbacks records, after each update, ``optimizer.learning_rate`` and the
BatchNorm statistics; a consumer listed before them records the keys of the epoch logs.

Resume goes the way the adapter's docstrings say: after the first fit ``save_weights``; then a
new model compiled the same way, its optimizer built, ``load_weights``, and new callback
instances in ``fit(initial_epoch=<first run's epochs>, epochs=<then.epochs>)``. Reuse: the same
callback instances with a new model.

The MirroredStrategy leg (``HPCALLBACKS_CONTRACT_STRATEGY=mirrored``, TensorFlow backend, a fresh
process: ``test_contract.test_keras_mirrored_leg``): two logical CPU devices are configured when
this module is imported (before TensorFlow initialises); each row of :data:`MIRRORED_ROWS` builds
and compiles its models inside ``MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()`` with the same
global batch, and the same row runs once more on one device (no strategy) as the outcome's
``reference``: :func:`contract.check` compares the final weights of each run (``contract.WEIGHTS_ATOL``). Under the
strategy a row's BatchNorm is ``synchronized`` (statistics over the global batch, as on one
device) and a row with accumulation also gets ``GradientAccumulation`` (Keras' own accumulation
cannot run under several replicas; the callback's can). Other rows are skipped in that leg.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import keras
import numpy as np
from contract import LR0, NAMES, Outcome, Row
from keras import ops
from keras_support import RecordingSGD

import hpcallbacks_keras as A

STRATEGY = os.environ.get("HPCALLBACKS_CONTRACT_STRATEGY") or None
if STRATEGY is not None:
    if STRATEGY != "mirrored":
        raise ValueError(f"HPCALLBACKS_CONTRACT_STRATEGY={STRATEGY!r}: only 'mirrored' is known")
    import tensorflow as tf  # two logical CPU devices, before TensorFlow initialises (importing Keras does not)

    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)

ADAPTER = "hpcallbacks_keras"
BATCH = 4
SAMPLES = 16

# The rows of the MirroredStrategy leg (one per mechanism, the leg in about a minute: every fit under the
# strategy traces its step again, once per plan stage): a schedule shown after each update, a schedule under
# accumulation, factors with a schedule, plans (factors; a stage mid-epoch; four groups; BatchNorm), plateau,
# resume and reuse. Left out: rows refused before training (no weights to compare), the range test (run
# before fit), rows whose mechanics do not depend on replicas (plan and argument sources, groups by name,
# growth arguments, single-group warnings, the framework's own controllers, logs, state kept in the weights
# file), and further rows of mechanisms already here (for time; each row of this leg takes 3-7 s).
MIRRORED_ROWS = (
    "schedule-defaults-cosine-restart",
    "schedule-counts-updates-under-accumulation",
    "discriminative-with-schedule",
    "gradual-unfreeze-with-factors",
    "update-unit-stages-mid-epoch",
    "head-then-top-half-of-four-groups",
    "bn-plan-default-keeps-frozen-statistics",
    "plateau-multiplies-schedule",
    "short-run-then-resumed-applies-the-stage",
    "reuse-schedule-recomputes-defaults",
    "fine-tune-applies-the-recipe",
    "fine-tune-resume-continues-the-recipe",
)


def left_out(row: Row) -> str | None:
    """Why ``row`` is not run in this process's leg (None: it runs)."""
    if STRATEGY is not None and row.id not in MIRRORED_ROWS:
        return "not in contract_keras.MIRRORED_ROWS (see the reason there)"
    return None


_strategies: list[Any] = []


def strategy() -> Any:
    """The leg's strategy (one per process), or None."""
    if STRATEGY is None:
        return None
    if not _strategies:
        _strategies.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _strategies[0]


def other():
    """Another adapter's module (a torch one: importable on every Keras backend)."""
    import hpcallbacks_lightning

    return hpcallbacks_lightning


def const(y_true, y_pred):
    """A metric that is always 1.0: ``ReduceOnPlateau(monitor="const")`` plateaus on it."""
    return ops.ones_like(y_pred[..., 0])


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(SAMPLES, 4)).astype("float32"), rng.normal(size=(SAMPLES, 1)).astype("float32")


def group_layers(row: Row) -> list[list[str]]:
    """The layer names of each group, bottom to top."""
    if row.groups == 1:
        return [["net"]]
    out = [[n] for n in NAMES[row.groups]]
    if row.bn:
        out[0].append("body_bn")
    return out


def build(row: Row, seed: int = 0, strat: Any = None) -> Any:
    if strat is None:
        return _build(row, seed, False)
    with strat.scope():
        return _build(row, seed, True)


def _build(row: Row, seed: int, synchronized: bool) -> Any:
    keras.utils.set_random_seed(seed)
    layers: list[Any] = [keras.Input((4,))]
    if row.groups == 1:
        layers.append(keras.layers.Dense(1, name="net"))
    else:
        names = NAMES[row.groups]
        for i, name in enumerate(names):
            top = i == len(names) - 1
            layers.append(keras.layers.Dense(1 if top else 4, activation=None if top else "relu", name=name))
            if row.bn and name == "body":
                layers.append(keras.layers.BatchNormalization(name="body_bn", **(
                    {"synchronized": True} if synchronized else {})))
    model = keras.Sequential(layers, name="net_model")
    var_group = {}
    for g, names in enumerate(group_layers(row)):
        for name in names:
            for w in model.get_layer(name).weights:
                var_group[id(w)] = g
                var_group[id(w.value)] = g
                copies = getattr(w.value, "values", None)  # a MirroredVariable's (a tuple): update_step gets one
                for v in copies if isinstance(copies, tuple) else ():
                    var_group[id(v)] = g
    capacity = row.spe * max(row.epochs, row.then.epochs if row.then else 0) + 8
    opt = RecordingSGD(learning_rate=LR0, var_group=var_group, num_groups=row.groups, capacity=capacity,
                       gradient_accumulation_steps=row.accumulation if row.accumulation > 1 else None)
    model.compile(optimizer=opt, loss="mse", metrics=[const] if row.metric else None, steps_per_execution=1)
    return model


def _optimizer(model: Any) -> Any:
    opt = model.optimizer
    while hasattr(opt, "inner_optimizer"):
        opt = opt.inner_optimizer
    return opt


def _iterations(model: Any) -> int:
    return int(ops.convert_to_numpy(model.optimizer.iterations))


class Recorder(keras.callbacks.Callback):
    """After each update: the LR the optimizer shows and the BatchNorm statistics; the factors the
    adapter applies (for the rate a frozen group would get)."""

    def __init__(self, row: Row, out: Outcome) -> None:
        super().__init__()
        self.row = row
        self.out = out
        self.factors: tuple[float, ...] | None = None

    def _bn(self) -> None:
        if self.row.bn:
            self.bn.append(float(ops.convert_to_numpy(ops.sum(self.model.get_layer("body_bn").moving_mean))))

    def on_train_begin(self, logs=None):
        self.visible: list[float] = []
        self.bn: list[float] = []
        self.out.visible.append(self.visible)
        self.out.bn.append(self.bn)
        self._bn()

    def on_epoch_begin(self, epoch, logs=None):
        engine = self.model.__dict__.get("_hpcallbacks_engine")
        fit = getattr(engine, "fit", None)
        if fit is not None and fit.factors is not None:
            self.factors = tuple(fit.factors[1])

    def on_train_batch_end(self, batch, logs=None):
        self.visible.append(float(ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self._bn()


class KeyLogger(keras.callbacks.Callback):
    """A consumer listed before the hpcallbacks callbacks (as TensorBoard or CSVLogger would be)."""

    def __init__(self, keys: set[str]) -> None:
        super().__init__()
        self.keys = keys

    def on_epoch_end(self, epoch, logs=None):
        self.keys.update(logs or {})


def _foreign(row: Row) -> list[Any]:
    if row.foreign == "schedule":
        return [keras.callbacks.LearningRateScheduler(lambda epoch, lr: LR0 * 0.5 ** epoch)]
    if row.foreign == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="const")]
    return []


def _records(row: Row, model: Any, start: int, end: int, factors: tuple[float, ...] | None):
    opt = _optimizer(model)
    lr = ops.convert_to_numpy(opt.rec_lr)
    on = ops.convert_to_numpy(opt.rec_on) > 0
    base = ops.convert_to_numpy(opt.rec_base)
    factors = factors or (1.0,) * row.groups
    out = []
    for t in range(start, end):
        lrs = tuple(float(lr[t, g]) if on[t, g] else float(base[t]) * factors[g] for g in range(row.groups))
        out.append((t, lrs, tuple(bool(b) for b in on[t])))
    return out


def _fit(row: Row, model: Any, callbacks: list, out: Outcome, epochs: int, initial_epoch: int = 0) -> None:
    recorder = Recorder(row, out)
    first = [KeyLogger(out.logged)] if row.logged else []
    caught: list = []
    out.warnings.append(caught)
    records: list = []
    out.records.append(records)
    x, y = data()
    start = _iterations(model)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            for cb in callbacks:  # Keras gives callbacks no data: the range test runs before fit, as documented
                if isinstance(cb, A.LRFinder):
                    cb.run(model, x, y, batch_size=BATCH)
            model.fit(x, y, batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch, shuffle=False, verbose=0,
                      callbacks=[*first, *callbacks, recorder, *_foreign(row)])
        finally:
            caught.extend(w)
    records.extend(_records(row, model, start, _iterations(model), recorder.factors))
    out.weights.append(model.get_weights())


def run_row(row: Row, tmp_path) -> Outcome:
    strat = strategy()
    out = _outcome(row, tmp_path, strat)
    if strat is not None and out.error is None:  # the same row on one device, for the weights
        out.reference = _outcome(row, tmp_path / "one-device", None)
    return out


def _outcome(row: Row, tmp_path, strat: Any) -> Outcome:
    out = Outcome(lr_key="learning_rate/{group}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    try:
        _run(row, tmp_path, out, strat)
    except Exception as e:  # noqa: BLE001 - the table says which errors are expected
        out.error = e
    return out


def _callbacks(row: Row, strat: Any) -> list:
    callbacks = row.callbacks(A, other)
    if strat is not None and row.accumulation > 1:
        callbacks.append(A.GradientAccumulation(BATCH * row.accumulation, batch_size=BATCH))  # fit's, global
    return callbacks


def _run(row: Row, tmp_path, out: Outcome, strat: Any = None) -> None:
    callbacks = _callbacks(row, strat)
    model = build(row, strat=strat)
    _fit(row, model, callbacks, out, row.epochs)
    if row.then is None:
        return
    if row.then.kind == "resume":
        path = str(tmp_path / "first.weights.h5")
        model.save_weights(path)
        model = build(row, strat=strat)
        model.optimizer.build(model.trainable_variables)  # Keras loads an optimizer's state into a built one
        model.load_weights(path)
        _fit(row, model, _callbacks(row, strat), out, row.then.epochs, initial_epoch=row.epochs)
    else:
        _fit(row, build(row, strat=strat), callbacks, out, row.then.epochs)
