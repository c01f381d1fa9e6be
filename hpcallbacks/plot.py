"""Pictures of plans: what a user looks at before spending GPU hours (matplotlib, optional).

* :func:`plot_schedule` — one schedule's learning rate per update.
* :func:`plot_plan` — a schedule + a freeze plan: the LR of every layer group over training
  (zero while the group is frozen) above the frozen/trainable timeline of the groups.

matplotlib is imported only when a picture is drawn (``pip install hpcallbacks[plot]``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .plans import FreezePlan
from .schedules import Schedule


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("drawing needs matplotlib: pip install 'hpcallbacks[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_schedule(schedule: Schedule, steps: int, path: str | Path, title: str | None = None) -> Path:
    """Draw ``schedule`` over ``steps`` updates into the PNG ``path``; returns the path."""
    plt = _pyplot()
    values = schedule.curve(steps)
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(range(steps), values, lw=1.6)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("learning rate")
    ax.set_title(title or repr(schedule), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_plan(
    schedule: Schedule,
    plan: FreezePlan,
    num_groups: int,
    steps_per_epoch: int,
    epochs: int,
    path: str | Path,
    group_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw the LR of every group and the freeze timeline of ``plan`` into the PNG ``path``.

    Group ``g`` trains at ``schedule(t) * factor[g]`` while the plan says it is trainable.
    """
    plt = _pyplot()
    resolved = plan.resolve(num_groups, steps_per_epoch)
    total = steps_per_epoch * epochs
    names = list(group_names) if group_names else [f"group {g}" for g in range(num_groups)]
    if len(names) != num_groups:
        raise ValueError(f"group_names must have num_groups = {num_groups} names; got {len(names)}")
    base = schedule.curve(total)
    fig, (ax_lr, ax_tl) = plt.subplots(2, 1, figsize=(8, 3.2 + 0.28 * num_groups), dpi=110, sharex=True,
                                       gridspec_kw={"height_ratios": [2.2, max(1.0, 0.35 * num_groups)]})
    cmap = plt.get_cmap("viridis")
    for g in reversed(range(num_groups)):
        lrs = [resolved.lr(g, b) if resolved.trainable_at(t)[g] else 0.0 for t, b in enumerate(base)]
        ax_lr.plot(range(total), lrs, lw=1.3, color=cmap(g / max(1, num_groups - 1)), drawstyle="steps-post",
                   label=f"{names[g]} (x{resolved.factors[g]:.3g})")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    ax_lr.legend(fontsize=7, loc="upper right", ncol=2 if num_groups > 6 else 1)
    ax_lr.set_title(title or f"{schedule!r}\nbn={plan.bn}", fontsize=7)
    for g in range(num_groups):
        for i, start in enumerate(resolved.starts):
            if start >= total:
                break
            end = resolved.starts[i + 1] if i + 1 < len(resolved.starts) else total
            trainable = resolved.masks[i][g]
            ax_tl.broken_barh([(start, min(end, total) - start)], (g - 0.4, 0.8),
                              color="tab:green" if trainable else "lightgray")
    for start in resolved.starts[1:]:
        if start < total:
            ax_lr.axvline(start, color="k", lw=0.6, ls="--")
            ax_tl.axvline(start, color="k", lw=0.6, ls="--")
    ax_tl.set_yticks(range(num_groups), names, fontsize=7)
    ax_tl.set_xlabel(f"optimizer update ({steps_per_epoch} per epoch; green = trainable, grey = frozen)")
    ax_tl.set_xlim(0, total)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
