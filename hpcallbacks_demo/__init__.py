"""``hpcallbacks demo``: the handbook's fine-tuning recipe against the naive way, on real weights.

Three runs at the same epochs and seed, a table (accuracy, epochs, wall time), the advisor's
findings on the naive run, and PNGs (the recipe's plan picture, the validation curves):

* ``--framework lightning`` (default, :mod:`.lightning`): ImageNet EfficientNet-Lite0 on
  scikit-learn's digits: (a) naive, (b) Lightning ``BackboneFinetuning``, (c) the recipe.
* ``--framework hf`` (:mod:`.hf`): all-MiniLM-L6-v2 with ``transformers.Trainer`` on the VADER
  lexicon's word sentiment: (a) full fine-tuning at HF's defaults, (b) the encoder frozen by hand,
  (c) the recipe.
* ``--framework keras`` (:mod:`.keras`): a small Keras CNN pretrained inside the demo on digits
  0-4, fine-tuned on a few digits 5-9: (a) naive, (b) the Keras guide's two phases, (c) the recipe.

``--quick`` is a one-minute variant, ``--out DIR`` the output folder, ``--runs`` a subset.
The frameworks are imported inside functions: ``import hpcallbacks`` stays pure.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .common import RunResult, finish, format_table, plot_curves, run_all
from .lightning import LABELS, layer_groups, load_digits_images, make_module, pretrained_efficientnet, recipe, run_one

__all__ = ["main", "RunResult", "format_table", "plot_curves", "run_all", "FRAMEWORKS",
           # the Lightning demo's parts, as before the other frameworks came
           "LABELS", "layer_groups", "load_digits_images", "make_module", "pretrained_efficientnet", "recipe",
           "run_one"]

FRAMEWORKS = {"lightning": "lightning", "hf": "hf", "keras": "keras"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpcallbacks demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--framework", choices=tuple(FRAMEWORKS), default="lightning",
                   help="the adapter to run: lightning (EfficientNet-Lite0, digits), hf (MiniLM, VADER words), "
                        "keras (a small CNN pretrained on digits 0-4, fine-tuned on 5-9)")
    p.add_argument("--quick", action="store_true", help="a one-minute variant (fewer examples and epochs)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default: lightning 6, hf 4, keras 20; --quick: 2, 2, 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="hpcallbacks-demo", help="folder for the PNGs and results.json")
    p.add_argument("--runs", default=None,
                   help="comma-separated subset of the three runs (lightning: naive,backbone,recipe; "
                        "hf: naive,frozen,recipe; keras: naive,two_phase,recipe)")
    return p


def runner(framework: str):
    """The runner module of ``framework`` (see :mod:`hpcallbacks_demo.common`)."""
    return importlib.import_module(f".{FRAMEWORKS[framework]}", __name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    module = runner(args.framework)
    names = list(module.LABELS) if args.runs is None else [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in names if r not in module.LABELS]
    if unknown or not names:
        print(f"hpcallbacks demo: error: --runs must name runs among {', '.join(module.LABELS)} for "
              f"--framework {args.framework}; got {unknown or names}", file=sys.stderr)
        return 2
    epochs = args.epochs or module.EPOCHS[1 if args.quick else 0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        results, pictures = module.run(args, out, names, epochs)
    except ModuleNotFoundError as error:
        print(f"hpcallbacks demo: error: {error.name} is not installed; --framework {args.framework} needs "
              f"pip install 'hpcallbacks[{module.EXTRA}]'", file=sys.stderr)
        return 2
    finish(results, module.LABELS, out, module.CURVE_TITLE, pictures)
    if args.quick:
        print("(--quick: fewer examples and epochs, to see it run; compare the runs on the default run)")
    return 0
