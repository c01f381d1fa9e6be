"""The design's rule "same callback names, same arguments in every adapter", checked by signature.

Moving a training script between Keras, Lightning and HF is a change of import: the three
adapters export the same callback classes (:data:`ADAPTER_ONLY` lists the few that are not
callbacks a script names, each with its reason), and every shared class takes the same
parameters, in the same order, with the same kinds and defaults. The only differences allowed
are trailing keyword-only parameters that one adapter needs because of its framework, listed
with their reason in :data:`EXTRAS`. (Imports Keras, Lightning and Transformers in one
process: the cost is shared with the other adapter tests of the suite.)
"""
from __future__ import annotations

import inspect
import re
import sys

import pytest

pytest.importorskip("keras")
pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")

import hpcallbacks_hf as HF  # noqa: E402
import hpcallbacks_keras as HK  # noqa: E402
import hpcallbacks_lightning as HL  # noqa: E402

ADAPTERS = {"keras": HK, "lightning": HL, "hf": HF}

#: Exported classes that are not in every adapter: name -> (the adapters exporting it, why).
ADAPTER_ONLY = {
    # the base class of the adapter's callbacks, not a callback a script names; Lightning's callbacks
    # are built from mixins on the namespace's own Callback (lightning.pytorch or pytorch_lightning)
    "HPCallback": ({"keras", "hf"}, "base class"),
    # a Keras layer (BatchNorm held in inference mode, built by swap_norms(to="frozen")); the torch
    # equivalent is hpcallbacks.torch.FrozenBatchNorm2d, shared by Lightning and HF
    "FrozenBatchNormalization": ({"keras"}, "Keras layer; torch: hpcallbacks.torch.FrozenBatchNorm2d"),
    # a Keras optimizer; the torch equivalent is hpcallbacks.torch.LARS (same numbers)
    "LARS": ({"keras"}, "Keras optimizer; torch: hpcallbacks.torch.LARS"),
    # a layer group of a Keras model (discover_groups / resolve_groups); the torch equivalent is
    # hpcallbacks.torch.LayerGroup (hpcallbacks.torch.discover_groups)
    "Group": ({"keras"}, "Keras layer group; torch: hpcallbacks.torch.LayerGroup"),
    # wraps a Keras LearningRateSchedule object so it counts optimizer updates, not micro-batches,
    # under gradient_accumulation_steps (GradientAccumulation installs it); no torch equivalent
    # exists or is needed: torch LR schedulers step once per optimizer update in Lightning and HF
    "UpdateCountSchedule": ({"keras"}, "Keras schedule-object fix; none needed in torch"),
}

_LOG = ("Lightning only: switches the callback's own logging to the Trainer's loggers; Keras writes the "
        "values into fit's epoch logs and HF's schedules into its log dict")
_LOG_BOTH = "Lightning and HF: switches the value's logging to the trainer's loggers; Keras writes fit's epoch logs"
_KERAS_GAN = ("Keras only: the values are read in-graph from a table sized before the epoch, and Keras tells "
              "callbacks only the batches per epoch, not the discriminator updates per batch")

_KERAS_BATCH = ("Keras only: fit's batch_size (global across a tf.distribute strategy's replicas), which Keras "
                "does not tell callbacks; the torch adapters read the per-device batch of their dataloaders "
                "(per_device_batch_size=, kept in Keras deprecated)")

#: Adapter-only trailing keyword-only parameters: adapter -> class -> {parameter: why}.
EXTRAS: dict[str, dict[str, dict[str, str]]] = {
    "keras": {
        "ReduceOnPlateau": {"verbose": "Keras only: prints each reduction, as Keras' ReduceLROnPlateau(verbose=1)"},
        "HyperparameterAdvisor": {"batch_size": _KERAS_BATCH,
                                  "per_device_batch_size": "Keras: deprecated for batch_size= (per replica)"},
        "GradientAccumulation": {"batch_size": _KERAS_BATCH},
        "ScaleLearningRate": {"batch_size": _KERAS_BATCH},
        "InstanceNoise": {"updates_per_batch": _KERAS_GAN},
        "LabelSmoothing": {"updates_per_batch": _KERAS_GAN},
        "LabelFlip": {"updates_per_batch": _KERAS_GAN,
                      "max_batch_size": "Keras only: the core's flip decisions are made on the host and "
                                        "tabulated for this many samples per update"},
    },
    "lightning": {
        **{name: {"log": _LOG} for name in ["LearningRateSchedule", *HF.FAMILIES, "ReduceOnPlateau",
                                             "StagedUnfreeze", "FineTune"]},
        **{name: {"log": _LOG_BOTH} for name in ["ScaleLearningRate", "BatchRamp", "ParamScheduler",
                                                  "InstanceNoise", "LabelFlip"]},
    },
    "hf": {name: {"log": _LOG_BOTH} for name in ["ScaleLearningRate", "BatchRamp", "ParamScheduler",
                                                  "InstanceNoise", "LabelFlip"]},
}


def exported_classes(module) -> set[str]:
    return {name for name in module.__all__ if inspect.isclass(getattr(module, name))}


SHARED = sorted(set.intersection(*(exported_classes(m) for m in ADAPTERS.values())))


def test_every_adapter_exports_the_same_classes():
    for adapter, module in ADAPTERS.items():
        expected = set(SHARED) | {name for name, (where, _) in ADAPTER_ONLY.items() if adapter in where}
        assert exported_classes(module) == expected, adapter
    assert len(SHARED) >= 33  # the callbacks (schedules, plans, batch, GAN, advisor, finder) and the warning


def parameters(adapter: str, name: str) -> list[tuple[str, object, object]]:
    extras = EXTRAS.get(adapter, {}).get(name, {})
    params = list(inspect.signature(getattr(ADAPTERS[adapter], name)).parameters.values())
    kept = [p for p in params if p.name not in extras]
    tail = params[len(kept):]
    # the extras are the trailing parameters and keyword-only: a script written for another adapter
    # never passes them and calls this one the same way
    assert sorted(p.name for p in tail) == sorted(extras), (adapter, name, [p.name for p in tail], sorted(extras))
    assert all(p.kind == p.KEYWORD_ONLY for p in tail), (adapter, name, [(p.name, p.kind) for p in tail])
    return [(p.name, p.kind, p.default) for p in kept]


@pytest.mark.parametrize("name", [n for n in SHARED if n != "HyperparameterWarning"])
def test_same_arguments_in_every_adapter(name):
    keras, lightning, hf = (parameters(adapter, name) for adapter in ADAPTERS)
    assert keras == lightning, "keras vs lightning"
    assert hf == lightning, "hf vs lightning"


def test_extras_are_real_and_keras_ones_documented():
    for adapter, classes in EXTRAS.items():
        for name, extras in classes.items():
            cls = getattr(ADAPTERS[adapter], name)
            assert set(extras) <= set(inspect.signature(cls).parameters), (adapter, name)  # no stale entry
            assert all(reason for reason in extras.values())
            if adapter == "keras":
                assert all(f"``{p}``" in (cls.__doc__ or "") for p in extras), name


def test_one_warning_class_for_every_adapter():
    from hpcallbacks.advice import HyperparameterWarning
    from hpcallbacks_lightning.extras import HyperparameterWarning as FromLightning

    assert HF.HyperparameterWarning is HK.HyperparameterWarning is HL.HyperparameterWarning is HyperparameterWarning
    assert FromLightning is HyperparameterWarning


def test_the_adapters_list_the_same_public_modules():
    """One layout: each adapter package has the same public modules (the rest is private, ``_name``).

    ``hpcallbacks_lightning.pl`` is not a module of callbacks but the same callbacks again on the
    ``pytorch_lightning`` namespace (Lightning ships under two package names)."""
    import pkgutil

    public = {name: sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
              for name, pkg in ADAPTERS.items()}
    public["lightning"].remove("pl")
    assert public["keras"] == public["lightning"] == public["hf"] == ["callbacks", "extras"], public


def test_public_classes_are_class_statements_in_the_callbacks_and_extras_modules():
    """What ``help()``, IDEs and static tools need: every exported class is written as ``class Name(...)``
    in the adapter's ``callbacks`` or ``extras`` module (or a private module of the adapter), not made
    by ``type()``; and the package exports exactly what those two modules export, so a new callback
    is added in one file per adapter (its module's ``__all__``)."""
    import importlib

    for adapter, package in ADAPTERS.items():
        modules = [importlib.import_module(f"{package.__name__}.{m}") for m in ("callbacks", "extras")]
        exported = set().union(*(m.__all__ for m in modules))
        if adapter == "keras":
            exported |= {"Group", "discover_groups", "resolve_groups"}  # Keras' layer groups (no torch modules)
        assert set(package.__all__) == exported, adapter
        for name in exported_classes(package):
            cls = getattr(package, name)
            if cls.__module__.startswith("hpcallbacks."):
                continue  # the core's HyperparameterWarning, shared by every adapter
            assert cls.__module__.startswith(package.__name__), (adapter, name, cls.__module__)
            source = inspect.getsource(sys.modules[cls.__module__])
            assert re.search(rf"^class {name}\b", source, re.M), (adapter, name, cls.__module__)
