"""``ParamScheduler``: any numeric hyperparameter of the model or optimizer on a core schedule."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from hpcallbacks import schedules as S
from hpcallbacks.params import ParamSchedule

from ._engine import Engine, Param
from .callbacks import HPCallback

__all__ = ["ParamScheduler"]

#: Optimizer hyperparameters a bare name refers to, with the range their values must stay in.
OPTIMIZER_KEYS: dict[str, tuple[float, float | None]] = {
    "momentum": (0.0, 1.0), "beta_1": (0.0, 1.0), "beta_2": (0.0, 1.0), "epsilon": (0.0, None),
    "weight_decay": (0.0, None), "rho": (0.0, 1.0), "trust_coefficient": (0.0, None),
}


def _step_into(obj: Any, part: str, name: str) -> Any:
    if part.isdigit() and hasattr(obj, "layers"):
        layers = obj.layers
        if int(part) >= len(layers):
            raise ValueError(f"ParamScheduler: {name!r}: {type(obj).__name__} has {len(layers)} layers, "
                             f"no index {part}")
        return layers[int(part)]
    if hasattr(obj, part):
        return getattr(obj, part)
    if hasattr(obj, "get_layer"):
        try:
            return obj.get_layer(part)
        except ValueError:
            pass
    raise ValueError(f"ParamScheduler: {name!r}: {type(obj).__name__} has no attribute or layer {part!r}")


def resolve_target(model: Any, optimizer: Any, name: str) -> tuple[Any, str, bool]:
    """``(object, attribute, is_optimizer)`` for a ParamScheduler name."""
    parts = name.split(".")
    if parts[0] == "optimizer" and len(parts) > 1:
        obj, path, is_opt = optimizer, parts[1:], True
    elif len(parts) == 1 and parts[0] in OPTIMIZER_KEYS and hasattr(optimizer, parts[0]):
        obj, path, is_opt = optimizer, parts, True
    else:
        obj, path, is_opt = model, (parts[1:] if parts[0] == "model" and len(parts) > 1 else parts), False
    for part in path[:-1]:
        obj = _step_into(obj, part, name)
    attr = path[-1]
    if attr in ("learning_rate", "_learning_rate", "lr"):
        raise ValueError(f"ParamScheduler: {name!r} is the learning rate: use an LR callback (LearningRateSchedule, "
                         "CosineRestart, ...)")
    if not hasattr(obj, attr):
        raise ValueError(f"ParamScheduler: {name!r}: {type(obj).__name__} has no attribute {attr!r}")
    return obj, attr, is_opt


class ParamScheduler(HPCallback):
    """Any numeric hyperparameter on a core schedule, set for every optimizer update.

    ``ParamScheduler({"momentum": Cyclic(0.85, 0.95, 100), "model.noise.stddev_var": ...})`` or
    ``ParamScheduler(ParamSchedule("beta_1", ...), ...)`` (:class:`hpcallbacks.ParamSchedule`; both
    forms mix). The value for update ``t`` (``optimizer.iterations``) is ``schedule(t)``. Names:

    * ``"optimizer.<attr>"`` or a bare ``momentum``, ``beta_1``, ``beta_2``, ``epsilon``,
      ``weight_decay``, ``rho``, ``trust_coefficient``: an optimizer hyperparameter, used by that
      update's step (the learning rate is refused: use an LR callback). On TensorFlow a variable
      stands in for the float while fit runs (in-graph, no re-trace; the float comes back, at its
      last value, at the end of fit); on torch the float is set before each update. A
      hyperparameter compiled at 0 (``momentum=0``: no momentum slots) cannot be scheduled;
    * ``"model.<path>"`` or any other dotted path: an attribute of the model (digits index
      ``layers``; names find layers with ``get_layer``), read by the forward pass: a
      ``keras.Variable`` there (a GAN model's ``label_smoothing``, a noise level) is assigned
      in-graph before each update's first micro-batch, any backend, no re-trace. A plain Python
      number there is set from the host on torch; on TensorFlow it is baked into the traced step,
      so it is refused (``ValueError``: hold it in a ``keras.Variable``).

    Values are checked over the run when fit starts (momentum and betas in [0, 1), epsilon and
    weight decay >= 0). Logs ``param/<name>``. Stateless: the values are a function of
    ``optimizer.iterations``, which checkpoints restore.
    """

    def __init__(self, *schedules: Mapping[str, Any] | ParamSchedule) -> None:
        super().__init__()
        params: list[ParamSchedule] = []
        for i, item in enumerate(schedules):
            if isinstance(item, ParamSchedule):
                params.append(item)
            elif isinstance(item, Mapping):
                for key, value in item.items():
                    try:
                        params.append(ParamSchedule(key, value))
                    except ValueError as e:
                        raise ValueError(f"ParamScheduler: {e}") from None
            else:
                raise ValueError(f"ParamScheduler: schedules[{i}] must be a dict name -> schedule or a "
                                 f"ParamSchedule; got {item!r}")
        if not params:
            raise ValueError("ParamScheduler: give at least one hyperparameter, e.g. {'momentum': Cyclic(0.85, 0.95)}")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"ParamScheduler: a name appears twice: {names}")
        self.schedules = tuple(params)

    def prepare(self, engine: Engine) -> None:
        opt = engine.optimizer
        graph = keras.backend.backend() != "torch"
        steps = engine.steps_per_epoch("ParamScheduler", required=False)
        total = steps * engine.epochs() if steps else 10_000
        for ps in self.schedules:
            obj, attr, is_opt = resolve_target(self.model, opt, ps.name)
            current = getattr(obj, attr)
            if isinstance(current, keras.Variable):
                kind = "variable"
                if keras.backend.backend() == "jax" and not is_opt and not any(
                        v is current for v in self.model.non_trainable_variables):
                    raise ValueError(
                        f"ParamScheduler: {ps.name!r}: on JAX the train step reads the model's variables as its "
                        "state; schedule a non-trainable keras.Variable the model tracks (an attribute of the model "
                        "or of one of its layers, created with trainable=False)")
            elif isinstance(current, (int, float)) and not isinstance(current, bool):
                if is_opt and attr in ("momentum", "rho") and float(current) == 0:
                    raise ValueError(f"ParamScheduler: {ps.name!r}: the optimizer was compiled with {attr}=0, so it "
                                     f"has no {attr} state to schedule; compile it with {attr} > 0")
                if graph and not is_opt:
                    raise ValueError(
                        f"ParamScheduler: {ps.name!r} is a Python number that {keras.backend.backend()} bakes into "
                        f"the traced train step; hold it in a keras.Variable (e.g. self.{attr} = "
                        f"keras.Variable({current!r}, trainable=False)) and read that in call/train_step")
                kind = "hyper" if graph else "float"
            else:
                raise ValueError(f"ParamScheduler: {ps.name!r} holds {type(current).__name__}, not a number or a "
                                 "keras.Variable")
            self._check_range(ps, attr if is_opt else "", total)
            engine.add_param(self, Param(name=ps.name, fn=ps.schedule, obj=obj, attr=attr, kind=kind,
                                         forward=not is_opt))

    @staticmethod
    def _check_range(ps: ParamSchedule, key: str, total: int) -> None:
        low, high = OPTIMIZER_KEYS.get(key, (None, None))
        if low is None:
            return
        stride = max(1, total // 10_000)
        for t in range(0, max(total, 1), stride):
            v = ps.schedule(t)
            if v < low or (high is not None and v >= high):
                allowed = f"[{low:g}, {high:g})" if high is not None else f">= {low:g}"
                raise ValueError(f"ParamScheduler: {ps.name!r} must stay in {allowed}; its schedule gives {v!r} at "
                                 f"update {t}")

    def get_config(self) -> dict[str, Any]:
        return {"schedules": [{p.name: S.serialize(p.schedule)} for p in self.schedules]}
