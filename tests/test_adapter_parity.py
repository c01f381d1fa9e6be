"""The design's rule "same callback names, same arguments in every adapter", checked by signature.

Lightning's and HF's callbacks of the batch-size, hyperparameter, GAN, advisor and range-test
families, ``ReduceOnPlateau`` and ``DiscriminativeLR`` take the same parameters, in the same
order, with the same kinds and defaults. (Imports both frameworks: the cost is shared with the
other adapter tests of the suite.)
"""
from __future__ import annotations

import inspect

import pytest

pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")

import hpcallbacks_hf as HF  # noqa: E402
import hpcallbacks_lightning as HL  # noqa: E402

SAME = ["GradientAccumulation", "ScaleLearningRate", "BatchRamp", "ParamScheduler", "InstanceNoise", "LabelSmoothing",
        "LabelFlip", "HyperparameterAdvisor", "LossBalance", "LRFinder", "ReduceOnPlateau", "DiscriminativeLR"]


def parameters(cls, drop=()):
    return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values() if p.name not in drop]


@pytest.mark.parametrize("name", SAME)
def test_same_arguments_in_lightning_and_hf(name):
    # ReduceOnPlateau's keyword-only log= switches Lightning's own "lr" logging; HF logs the LR itself
    drop = ("log",) if name == "ReduceOnPlateau" else ()
    assert parameters(getattr(HF, name)) == parameters(getattr(HL, name), drop)


def test_one_warning_class_for_every_adapter():
    from hpcallbacks.advice import HyperparameterWarning
    from hpcallbacks_lightning._extras import HyperparameterWarning as FromLightning

    assert HF.HyperparameterWarning is HyperparameterWarning is FromLightning
