"""What every framework's ``hpcallbacks demo`` shares: arguments, the run loop, the table, the curves.

A framework's runner (:mod:`.lightning`, :mod:`.keras`, :mod:`.hf`) is a module with

* ``LABELS``: run name -> table label, in the order the runs go (``(a)``, ``(b)``, ``(c)``);
* ``EPOCHS``: ``(default, quick)`` epochs per run;
* ``CURVE_TITLE``: the title of the validation-curve picture;
* ``EXTRA``: the pyproject extra that installs what it imports (named when an import fails);
* ``run(args, out, names, epochs) -> (results, pictures)``: prints its header (model, data,
  recipe, advisor), writes its plan picture into ``out``, runs ``names`` through :func:`run_all`
  and returns the :class:`RunResult` list and the pictures it wrote; :func:`finish` then draws
  the curves, prints the table and writes ``results.json``.

The frameworks are imported inside functions only: ``import hpcallbacks`` stays pure.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


def restart_at_unfreeze(learning_rate: float, steps_per_epoch: int, epochs: int, head_epochs: int = 1):
    """Cosine with one warm restart (H3, SGDR), at the end of the head-only stage: one cosine over
    the head's epochs, a second over the rest of the run, each ending at ``0.05 * learning_rate``."""
    from hpcallbacks import schedules as S

    head = max(1, head_epochs * steps_per_epoch)
    rest = max(1, (epochs - head_epochs) * steps_per_epoch)
    return S.CosineRestart(learning_rate, first_decay_steps=head, t_mul=rest / head, alpha=0.05)


@dataclass
class RunResult:
    name: str
    accuracy: float
    best_accuracy: float
    epochs: int
    seconds: float
    curve: list[float] = field(default_factory=list)


def run_all(names: Sequence[str], labels: Mapping[str, str], one: Callable[[str], RunResult]) -> list[RunResult]:
    """Run ``one(name)`` for each name, printing its label before and its curve after."""
    results = []
    for name in names:
        print(f"\n{labels[name]} ...", flush=True)
        results.append(one(name))
        print(f"  validation accuracy per epoch: {[round(a, 3) for a in results[-1].curve]}", flush=True)
    return results


def format_table(results: Sequence[RunResult], labels: Mapping[str, str]) -> str:
    lines = [f"{'run':<36} {'val acc':>8} {'best':>8} {'epochs':>7} {'wall s':>8}"]
    for r in results:
        lines.append(f"{labels[r.name]:<36} {r.accuracy:>8.3f} {r.best_accuracy:>8.3f} {r.epochs:>7d} "
                     f"{r.seconds:>8.1f}")
    return "\n".join(lines)


def plot_curves(results: Sequence[RunResult], path: Path, labels: Mapping[str, str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for r in results:
        ax.plot(range(1, len(r.curve) + 1), r.curve, marker="o", label=f"{labels[r.name]} ({r.accuracy:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def print_findings(findings, run: str) -> None:
    """The advisor's findings (handbook H2) on one run's settings."""
    from hpcallbacks.advice import format_findings

    print(f"\nadvisor on {run}:")
    print(format_findings(findings) or "  no findings")


def finish(results: Sequence[RunResult], labels: Mapping[str, str], out: Path, title: str,
           pictures: Sequence[Path] = ()) -> None:
    """The curves picture, the table, ``results.json`` and the list of what was written."""
    curves_png = plot_curves(results, out / "curves.png", labels, title)
    print("\n" + format_table(results, labels))
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(f"\nwrote {', '.join(str(p) for p in [*pictures, curves_png, out / 'results.json'])}")
