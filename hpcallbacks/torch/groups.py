"""Layer groups of an ``nn.Module``: the ordered units, bottom (input side) to top, that plans freeze.

:func:`discover_groups` finds them: the blocks of a transformer-style model, or the top-level
children, or the names / regexes / modules the user gives. Every parameter of the model lands
in exactly one group.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["LayerGroup", "discover_groups", "BLOCK_LIST_NAMES"]

#: Names of the containers whose children are treated as blocks (one group each) when
#: ``groups=None``: BERT ``encoder.layer``, GPT-2 ``h``, T5 ``block``, the generic ``layers`` /
#: ``blocks`` (a leading underscore is ignored, so EfficientNet's ``_blocks`` counts).
BLOCK_LIST_NAMES: tuple[str, ...] = ("layer", "layers", "h", "block", "blocks")


@dataclass(frozen=True, eq=False)
class LayerGroup:
    """One layer group: a name, the outermost modules it covers and the parameters it owns.

    ``params`` are unique across the groups returned by :func:`discover_groups`; ``modules`` are
    the outermost modules of the group (BatchNorm layers inside them belong to the group).
    """

    name: str
    modules: tuple[nn.Module, ...]
    params: tuple[nn.Parameter, ...]

    def __repr__(self) -> str:
        count = sum(p.numel() for p in self.params)
        return f"LayerGroup({self.name!r}, modules={len(self.modules)}, params={len(self.params)} ({count:,} values))"

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


def _is_block_list(name: str, module: nn.Module) -> bool:
    last = name.rsplit(".", 1)[-1].lstrip("_")
    if last not in BLOCK_LIST_NAMES or not isinstance(module, (nn.ModuleList, nn.Sequential)):
        return False
    children = [c for c in module.children() if any(True for _ in c.parameters())]
    return len(children) >= 2


def _within(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _own_params(module: nn.Module) -> list[nn.Parameter]:
    return [p for _, p in module.named_parameters(recurse=False)]


class _Builder:
    """Collects groups in order; a parameter joins the first group that claims it."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.modules: list[list[nn.Module]] = []
        self.params: list[list[nn.Parameter]] = []
        self.seen: set[int] = set()

    def new(self, name: str) -> int:
        self.names.append(name)
        self.modules.append([])
        self.params.append([])
        return len(self.names) - 1

    def add_params(self, index: int, params: Iterable[nn.Parameter]) -> None:
        for p in params:
            if id(p) not in self.seen:
                self.seen.add(id(p))
                self.params[index].append(p)

    def build(self) -> list[LayerGroup]:
        out = []
        for name, modules, params in zip(self.names, self.modules, self.params, strict=True):
            if params or modules:
                out.append(LayerGroup(name, tuple(modules), tuple(params)))
        return [g for g in out if g.params]


def _side_name(modules: Sequence[tuple[str, nn.Module]]) -> str:
    embed = any("embed" in n.lower() or isinstance(m, nn.Embedding) for n, m in modules)
    return "embeddings" if embed else "stem"


def _transformer_groups(model: nn.Module, lists: list[tuple[str, nn.Module]]) -> list[LayerGroup]:
    blocks: list[tuple[str, nn.Module]] = []
    for list_name, container in lists:
        for child_name, child in container.named_children():
            blocks.append((f"{list_name}.{child_name}", child))
    index = {n: i for i, (n, _) in enumerate(blocks)}
    ancestors: set[str] = set()
    for n in index:
        parts = n.split(".")
        ancestors.update(".".join(parts[:i]) for i in range(len(parts)))
    last = len(blocks) - 1
    # side[i]: modules / parameters met after block i (-1: before the first block)
    side_modules: dict[int, list[tuple[str, nn.Module]]] = {}
    side_params: dict[int, list[nn.Parameter]] = {}
    current = -1
    taken = ""  # the last module taken whole (a block or a side module); its descendants follow it
    for name, module in model.named_modules(remove_duplicate=True):
        if taken and _within(name, taken):
            continue
        if name in index:
            current = index[name]
            taken = name
            continue
        if name in ancestors:  # a container of blocks: only its direct parameters are placed here
            side_params.setdefault(current, []).extend(_own_params(module))
            continue
        side_modules.setdefault(current, []).append((name, module))
        taken = name
    builder = _Builder()

    def add_side(g: int, i: int) -> None:
        builder.add_params(g, side_params.get(i, []))
        for _, m in side_modules.get(i, []):
            builder.modules[g].append(m)
            builder.add_params(g, m.parameters())

    if side_modules.get(-1) or side_params.get(-1):
        add_side(builder.new(_side_name(side_modules.get(-1, []))), -1)
    for i, (n, block) in enumerate(blocks):
        g = builder.new(n)
        builder.modules[g].append(block)
        builder.add_params(g, block.parameters())
        if i != last:
            add_side(g, i)
    if side_modules.get(last) or side_params.get(last):
        add_side(builder.new("head"), last)
    return builder.build()


def _children_groups(model: nn.Module) -> list[LayerGroup]:
    builder = _Builder()
    root = _own_params(model)
    if root:
        g = builder.new("root")
        builder.add_params(g, root)
    pending: list[nn.Module] = []  # parameter-less children (a BatchNorm without affine) wait for a group
    last = -1
    for name, child in model.named_children():
        before = len(builder.seen)
        params = [p for p in child.parameters() if id(p) not in builder.seen]
        if not params:
            if last >= 0:
                builder.modules[last].append(child)
            else:
                pending.append(child)
            continue
        last = builder.new(name)
        builder.modules[last].extend(pending)
        pending.clear()
        builder.modules[last].append(child)
        builder.add_params(last, params)
        assert len(builder.seen) > before
    return builder.build()


def _compile(entry: str) -> re.Pattern[str] | None:
    try:
        return re.compile(entry)
    except re.error:
        return None


def _match_modules(model: nn.Module, entry: Any, where: str) -> list[tuple[str, nn.Module]]:
    named = list(model.named_modules(remove_duplicate=True))
    if isinstance(entry, nn.Module):
        for name, module in named:
            if module is entry:
                return [(name, module)]
        raise ValueError(f"{where} is a module that is not part of the model ({type(entry).__name__}); "
                         "pass a submodule of the model or its name")
    if isinstance(entry, str):
        if not entry:
            raise ValueError(f"{where} must be a module name or regular expression; got ''")
        exact = [(n, m) for n, m in named if n == entry]
        if exact:
            return exact
        pattern = _compile(entry)
        found = [(n, m) for n, m in named if n and pattern is not None and pattern.fullmatch(n)]
        # keep the outermost matches: a match inside another match adds nothing
        outer: list[tuple[str, nn.Module]] = []
        for n, m in found:
            if not any(_within(n, o) for o, _ in outer):
                outer.append((n, m))
        if not outer:
            sample = ", ".join(repr(n) for n, _ in named[1:9])
            raise ValueError(
                f"{where}={entry!r} matches no module name of the model (names are those of "
                f"model.named_modules(), e.g. {sample}); fix the name or the regular expression"
            )
        return outer
    raise ValueError(f"{where} must be a module name, a regular expression, an nn.Module or a list of those; "
                     f"got {entry!r} ({type(entry).__name__})")


def _module_label(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules(remove_duplicate=True):
        if m is module:
            return name or type(module).__name__
    return type(module).__name__


def _explicit_groups(model: nn.Module, groups: Sequence[Any], rest: str) -> list[LayerGroup]:
    if isinstance(groups, (str, nn.Module)) or not isinstance(groups, (list, tuple)):
        raise ValueError(f"groups must be a list (bottom to top) of names, regexes, modules or lists of those; "
                         f"got {groups!r}")
    if not groups:
        raise ValueError("groups must name at least one group; got []")
    owner: dict[int, tuple[int, str]] = {}
    names: list[str] = []
    modules: list[list[nn.Module]] = []
    params: list[list[nn.Parameter]] = []
    for i, entry in enumerate(groups):
        items = entry if isinstance(entry, (list, tuple)) else [entry]
        if not items:
            raise ValueError(f"groups[{i}] is an empty list; every group needs at least one module")
        matched: list[tuple[str, nn.Module]] = []
        for j, item in enumerate(items):
            where = f"groups[{i}]" if items is not entry else f"groups[{i}][{j}]"
            matched.extend(_match_modules(model, item, where))
        labels = [item if isinstance(item, str) else _module_label(model, item) for item in items]
        label = labels[0] if len(labels) == 1 else "+".join(labels[:3]) + ("+..." if len(labels) > 3 else "")
        names.append(label)
        modules.append([m for _, m in matched])
        group_params: list[nn.Parameter] = []
        for n, m in matched:
            for pn, p in m.named_parameters():
                full = f"{n}.{pn}" if n else pn
                if id(p) in owner and owner[id(p)][0] != i:
                    raise ValueError(
                        f"parameter {full!r} is in groups[{owner[id(p)][0]}] and groups[{i}] ({names[i]!r}): "
                        "every parameter must be in exactly one group; make the groups disjoint")
                if id(p) not in owner:
                    owner[id(p)] = (i, full)
                    group_params.append(p)
        if not group_params:
            raise ValueError(f"groups[{i}] ({names[i]!r}) owns no parameters; give modules with parameters")
        params.append(group_params)
    unmatched = [(n, p) for n, p in model.named_parameters() if id(p) not in owner]
    if unmatched:
        if rest == "error":
            shown = ", ".join(repr(n) for n, _ in unmatched[:8])
            more = f" and {len(unmatched) - 8} more" if len(unmatched) > 8 else ""
            raise ValueError(
                f"groups leaves parameters {shown}{more} in no group: add their modules to a group, or pass "
                "rest='bottom' (they form a bottom group 'rest') or rest='top'")
        extra = [p for _, p in unmatched]
        if rest == "bottom":
            names.insert(0, "rest")
            modules.insert(0, [])
            params.insert(0, extra)
        else:
            names.append("rest")
            modules.append([])
            params.append(extra)
    seen_names: dict[str, int] = {}
    unique = []
    for n in names:
        if n in seen_names:
            seen_names[n] += 1
            unique.append(f"{n}#{seen_names[n]}")
        else:
            seen_names[n] = 0
            unique.append(n)
    return [LayerGroup(n, tuple(m), tuple(p)) for n, m, p in zip(unique, modules, params, strict=True)]


def discover_groups(model: nn.Module, groups: Sequence[Any] | None = None, rest: str = "error") -> list[LayerGroup]:
    """The layer groups of ``model``, bottom (input side) to top.

    ``groups=None``:

    * a transformer-style model (one or more containers named as in :data:`BLOCK_LIST_NAMES`
      holding at least two blocks with parameters — BERT ``encoder.layer``, GPT-2 ``h``, a
      generic ``layers`` ``ModuleList``): a bottom group of everything before the first block
      (``"embeddings"``, or ``"stem"`` when nothing there is an embedding), one group per
      block (named by its path, e.g. ``"bert.encoder.layer.3"``), and a top group ``"head"`` of
      everything after the last block (final norm, pooler, classifier). Modules between two
      block containers (an encoder's final norm) join the block before them.
    * otherwise the top-level children that own parameters, in registration order; parameters
      registered directly on ``model`` form a bottom group ``"root"``; parameter-less children
      (a BatchNorm without affine weights) join the group before them.

    ``groups`` given: a list, bottom to top, of module names, regular expressions (matched in
    full against the names of ``model.named_modules()``; all matches form one group), modules,
    or lists of those (one group each). A name that matches nothing, overlapping groups and
    (with ``rest="error"``, the default) parameters in no group raise ``ValueError`` naming
    them; ``rest="bottom"`` / ``"top"`` puts the unmatched parameters into an extra group
    ``"rest"`` at that end instead.

    Tied parameters belong to the group that reaches them first.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch nn.Module; got {type(model).__name__}")
    if rest not in ("error", "bottom", "top"):
        raise ValueError(f"rest must be one of 'error', 'bottom', 'top'; got {rest!r}")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"model ({type(model).__name__}) has no parameters to group")
    if groups is not None:
        return _explicit_groups(model, groups, rest)
    lists: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules(remove_duplicate=True):
        if any(_within(name, n) for n, _ in lists):
            continue
        if name and _is_block_list(name, module):
            lists.append((name, module))
    if lists:
        return _transformer_groups(model, lists)
    return _children_groups(model)
