"""The ``hpcallbacks`` command line: ``list``, ``plot``, ``plot-plan``, ``advise``, ``demo``, ``search``."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import schedules as S
from .plans import FreezePlan, LRFactors

PLANS = ("all_trainable", "head_only", "head_then_all", "gradual", "head_then_top_fraction", "recommend")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(pairs: Sequence[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ValueError(f"{flag} must be NAME=VALUE; got {pair!r}")
        key, text = pair.split("=", 1)
        out[key.strip()] = _value(text)
    return out


# What a required argument defaults to on the command line: a rate, or the length drawn.
_RATE_ARGS = ("initial_learning_rate", "max_lr", "value", "base_lr")
_LENGTH_ARGS = ("decay_steps", "first_decay_steps", "total_steps", "step_size", "step_size_up")


def _schedule(name: str, pairs: Sequence[str] | None, steps: int = 1000) -> S.Schedule:
    """Build schedule ``name`` from ``--set`` pairs; missing rates default to 1e-3 and missing
    lengths to ``steps`` (the cycle of a restart schedule: one epoch)."""
    if name not in S.SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(sorted(S.SCHEDULES))}; got {name!r}")
    kwargs = _settings(pairs, "--set")
    import dataclasses

    for f in dataclasses.fields(S.SCHEDULES[name]):
        if f.default is dataclasses.MISSING and f.name not in kwargs:
            if f.name in _RATE_ARGS:
                kwargs[f.name] = 1e-3 if f.name != "max_lr" else 1e-2
            elif f.name in _LENGTH_ARGS:
                kwargs[f.name] = steps
    try:
        return S.SCHEDULES[name](**kwargs)
    except TypeError as error:  # missing or unknown argument
        raise ValueError(f"{name}: {error} (pass arguments with --set NAME=VALUE)") from None


def _factors(text: str | None) -> LRFactors:
    if not text:
        return LRFactors.uniform()
    kind, _, arg = text.partition(":")
    if kind == "geometric":
        return LRFactors.geometric(float(arg or 2.6))
    if kind == "layer_decay":
        return LRFactors.layer_decay(float(arg or 0.75))
    if kind == "spread":
        lo, hi = (float(v) for v in arg.split(","))
        return LRFactors.spread(lo, hi)
    if kind == "uniform":
        return LRFactors.uniform()
    raise ValueError(f"--factors must be geometric[:D], layer_decay[:D], spread:LO,HI or uniform; got {text!r}")


def _print_values(schedule: S.Schedule, steps: int) -> None:
    marks = sorted({0, 1, steps // 4, steps // 2, (3 * steps) // 4, steps - 1})
    print(repr(schedule))
    for t in marks:
        print(f"  update {t:>7}: {schedule(t):.6g}")


def cmd_list(_: argparse.Namespace) -> int:
    for name in sorted(S.SCHEDULES):
        doc = (S.SCHEDULES[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<24} {doc}")
    return 0


def _at_least_one(args: argparse.Namespace, *names: str) -> None:
    """A count flag below 1 is refused naming the flag (not the schedule argument it turns into)."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {value}")


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_schedule

    _at_least_one(args, "steps")
    schedule = _schedule(args.name, args.set, args.steps)
    _print_values(schedule, args.steps)
    path = plot_schedule(schedule, args.steps, args.output)
    print(f"wrote {path}")
    return 0


def cmd_plot_plan(args: argparse.Namespace) -> int:
    from .plot import plot_plan

    _at_least_one(args, "steps_per_epoch", "epochs", "groups")
    length = args.steps_per_epoch * (1 if args.schedule == "CosineRestart" else args.epochs)
    schedule = _schedule(args.schedule, args.set, length)
    kwargs = _settings(args.plan_set, "--plan-set")
    kwargs["factors"] = _factors(args.factors)
    kwargs["bn"] = args.bn
    constructor = getattr(FreezePlan, args.plan)
    result = constructor(**kwargs)
    plan = result.plan if args.plan == "recommend" else result
    if args.plan == "recommend":
        print(result)
    path = plot_plan(schedule, plan, args.groups, args.steps_per_epoch, args.epochs, args.output)
    resolved = plan.resolve(args.groups, args.steps_per_epoch)
    for start, mask in zip(resolved.starts, resolved.masks):
        print(f"  from update {start:>6}: trainable groups {[g for g, m in enumerate(mask) if m]}")
    print(f"wrote {path}")
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from .advice import advise_main

    return advise_main(args.rest)


def cmd_search(args: argparse.Namespace) -> int:
    from .search import search_main

    return search_main(args.rest)


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo is its own top-level package (it imports the adapters; nothing under hpcallbacks/ may),
    # found by name when the verb runs.
    return importlib.import_module("hpcallbacks_demo").main(args.rest)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpcallbacks", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="name the schedules").set_defaults(func=cmd_list)

    plot = sub.add_parser("plot", help="draw one schedule to a PNG and print a few values")
    plot.add_argument("name", help="a schedule class, e.g. CosineRestart (see `hpcallbacks list`)")
    plot.add_argument("--set", action="append", metavar="NAME=VALUE", help="a constructor argument (JSON value)")
    plot.add_argument("--steps", type=int, default=1000)
    plot.add_argument("-o", "--output", default="lr.png")
    plot.set_defaults(func=cmd_plot)

    pp = sub.add_parser("plot-plan", help="draw per-group LRs and the freeze timeline of a plan")
    pp.add_argument("--schedule", default="CosineRestart")
    pp.add_argument("--set", action="append", metavar="NAME=VALUE", help="a schedule argument")
    pp.add_argument("--plan", choices=PLANS, default="gradual")
    pp.add_argument("--plan-set", action="append", metavar="NAME=VALUE", help="a plan constructor argument")
    pp.add_argument("--factors", help="geometric[:2.6] | layer_decay[:0.75] | spread:LO,HI | uniform")
    pp.add_argument("--bn", default="freeze_stats")
    pp.add_argument("--groups", type=int, default=5)
    pp.add_argument("--steps-per-epoch", type=int, default=50)
    pp.add_argument("--epochs", type=int, default=6)
    pp.add_argument("-o", "--output", default="plan.png")
    pp.set_defaults(func=cmd_plot_plan)

    adv = sub.add_parser("advise", help="check hyperparameters against the handbook's H2 table", add_help=False)
    adv.add_argument("rest", nargs=argparse.REMAINDER)
    adv.set_defaults(func=cmd_advise)

    demo = sub.add_parser("demo", help="fine-tune a real pretrained network: recipe vs naive", add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    demo.set_defaults(func=cmd_demo)

    search = sub.add_parser("search", help="search the handbook's H2 ranges with Optuna or Ray Tune", add_help=False)
    search.add_argument("rest", nargs=argparse.REMAINDER)
    search.set_defaults(func=cmd_search)
    return p


PASS_THROUGH = {"advise": cmd_advise, "demo": cmd_demo, "search": cmd_search}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:  # these verbs parse their own flags
        return PASS_THROUGH[argv[0]](argparse.Namespace(command=argv[0], rest=argv[1:]))
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"hpcallbacks {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
