"""The Sphinx extension of the hpcallbacks documentation: pages generated from the code at build time.

* ``api/``: one reference page per public module (its docstring, a table of every name in its
  ``__all__``, and an entry for each name the module is the home of), and ``api/compare/``: one
  page per callback name with the Keras, Lightning and HF versions side by side.
* ``_generated/``: the behaviour contract's table (``tests/contract.py``), the schedule families
  with their curves (``hpcallbacks.schedules.SCHEDULES``, drawn by ``hpcallbacks.plot``), the plan
  picture of the demo's recipe and the search picture of ``hpcallbacks search --trials 8``.

Each public object is documented once, at its *home*: the public module that defines it (or, for
a name defined in a private module, the most specific public module that exports it). Every other
public module that exports it links there. A cross-reference to any public spelling of an object
(``hpcallbacks.FreezePlan``, ``FreezePlan`` inside :mod:`hpcallbacks.plans`) resolves to its home by
the object's identity, so a renamed or removed name has no target and breaks the build.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
API = DOCS / "api"
GEN = DOCS / "_generated"

#: The public modules, in the reference's order, with one line each for the reference's index.
MODULES: dict[str, str] = {
    "hpcallbacks": "the core package: every public name of the core in one namespace",
    "hpcallbacks.schedules": "learning-rate schedules, pure functions of the optimizer-update count",
    "hpcallbacks.plans": "fine-tuning plans: staged unfreezing, per-group LR factors, BatchNorm policy",
    "hpcallbacks.recipe": "the handbook's whole fine-tuning recipe, computed from what the user knows",
    "hpcallbacks.batch": "batch-size rules: LR scaling, accumulation, batch ramp, LARS, the micro-batch search",
    "hpcallbacks.norms": "norm-swap plans (BatchNorm to GroupNorm, frozen or synchronised)",
    "hpcallbacks.gan": "GAN schedules: instance noise, label smoothing, label flips",
    "hpcallbacks.params": "any named hyperparameter driven by a schedule",
    "hpcallbacks.advice": "the handbook's H2 table as checks, and loss-term balance",
    "hpcallbacks.finder": "the learning-rate range test",
    "hpcallbacks.plot": "pictures of schedules and plans",
    "hpcallbacks.run": "the run contract: every decision and message around the numbers",
    "hpcallbacks.defaults": "the defaults a callback derives from the run",
    "hpcallbacks.search": "hyperparameter search (H8): the H2 table as a search space, reporters, PBT",
    "hpcallbacks.torch": "torch mechanics shared by the Lightning and HF adapters",
    "hpcallbacks_keras": "the Keras 3 adapter (TensorFlow, torch, JAX backends)",
    "hpcallbacks_keras.callbacks": "Keras: LR schedules, plateau, plans",
    "hpcallbacks_keras.extras": "Keras: batch size, scheduled hyperparameters, GAN, advisor, finders, search",
    "hpcallbacks_lightning": "the PyTorch Lightning adapter (``lightning.pytorch``)",
    "hpcallbacks_lightning.callbacks": "Lightning: LR schedules, plateau, plans",
    "hpcallbacks_lightning.extras": "Lightning: batch size, scheduled hyperparameters, GAN, advisor, finders, search",
    "hpcallbacks_lightning.pl": "the same Lightning callbacks on ``pytorch_lightning.Callback``",
    "hpcallbacks_hf": "the HuggingFace ``transformers.Trainer`` adapter",
    "hpcallbacks_hf.callbacks": "HF: LR schedules, plateau, plans",
    "hpcallbacks_hf.extras": "HF: batch size, scheduled hyperparameters, GAN, advisor, finders, search",
}

#: Importable modules without a reference page, and why (every other module must be in MODULES).
INTERNAL: dict[str, str] = {
    "hpcallbacks.cli": "the command line; documented in the command-line guide",
    "hpcallbacks.torch.": "implementation modules of hpcallbacks.torch, which exports their public names",
}

#: The adapters, for the side-by-side pages.
ADAPTERS = (("Keras", "hpcallbacks_keras"), ("Lightning", "hpcallbacks_lightning"), ("HF", "hpcallbacks_hf"))

#: External packages whose names the reference mentions in signatures and docstrings. They are not
#: documented here (the build is offline: no intersphinx inventories); every other target must resolve.
EXTERNAL = ("torch", "keras", "tensorflow", "tf", "lightning", "pytorch_lightning", "transformers", "accelerate",
            "optuna", "ray", "numpy", "np", "jax", "matplotlib", "sklearn", "collections", "typing", "types",
            "pathlib", "random", "argparse", "dataclasses", "enum", "os", "re", "abc", "contextlib", "functools",
            "numbers", "logging", "warnings", "inspect", "json", "sqlite3", "subprocess", "_io")

#: The conf.py setting that follows: references to those packages are not checked (only theirs).
NITPICK_IGNORE_REGEX = [(r"py:.*", rf"({'|'.join(EXTERNAL)})(\..*)?")]

#: Framework base classes: an adapter class's member that overrides one of their hooks is framework API,
#: not listed in the reference (the class's docstring says which events it uses).
_FRAMEWORK_BASES = ("keras.callbacks:Callback", "lightning.pytorch:Callback", "pytorch_lightning:Callback",
                    "transformers:TrainerCallback")


# --------------------------------------------------------------------------------------------- inventory
@dataclass(frozen=True)
class Entry:
    module: str  # the public module whose namespace has the name
    name: str
    obj: Any
    home: str  # the documented full name

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


def _import(name: str) -> Any:
    return importlib.import_module(name)


def public_names(module: Any) -> list[str]:
    """The module's ``__all__``, or (without one) the classes and functions it defines, not ``_``-named."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [n for n, o in vars(module).items() if not n.startswith("_")
            and (inspect.isclass(o) or inspect.isfunction(o)) and getattr(o, "__module__", None) == module.__name__]


def _identified(obj: Any) -> bool:
    """Objects whose identity names them (not small values that can coincide)."""
    return not isinstance(obj, (int, float, str, bytes, bool, type(None), tuple, frozenset))


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return "data"


_INVENTORY: list[Entry] | None = None


def inventory() -> list[Entry]:
    """Every (public module, name) pair with the full name of the object's documented home."""
    global _INVENTORY
    if _INVENTORY is not None:
        return _INVENTORY
    mods = {m: _import(m) for m in MODULES}
    pairs = [(m, n, getattr(mods[m], n)) for m in MODULES for n in public_names(mods[m])]
    order = list(MODULES)

    def home(m: str, n: str, o: Any) -> str:
        same = [(m2, n2) for m2, n2, o2 in pairs if o2 is o and (n2 == n or _identified(o))]
        defining = getattr(o, "__module__", None) if _kind(o) != "data" else None
        for m2, n2 in same:
            if m2 == defining:
                return f"{m2}.{n2}"
        m2, n2 = max(same, key=lambda p: (p[0].count("."), -order.index(p[0])))
        return f"{m2}.{n2}"

    _INVENTORY = [Entry(m, n, o, home(m, n, o)) for m, n, o in pairs]
    return _INVENTORY


def homes() -> dict[str, Entry]:
    """Documented full name -> its entry (one per documented object)."""
    return {e.home: e for e in inventory() if e.full == e.home}


def unclassified_modules() -> list[str]:
    """Importable hpcallbacks modules that neither have a page nor an INTERNAL reason (should be none)."""
    out = []
    for top in ("hpcallbacks", "hpcallbacks_keras", "hpcallbacks_lightning", "hpcallbacks_hf"):
        package = _import(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            name = info.name
            if any(part.startswith("_") for part in name.split(".")):
                continue
            if name in MODULES or any(name == k or (k.endswith(".") and name.startswith(k)) for k in INTERNAL):
                continue
            out.append(name)
    return out


def summary(obj: Any) -> str:
    """The first sentence of the object's docstring (a whole first paragraph when a sentence ends inside code)."""
    doc = inspect.getdoc(obj) if _kind(obj) != "data" else None
    if not doc:
        return ""
    para = " ".join(doc.split("\n\n")[0].split())
    para = re.sub(r":[a-z:]+:`~?([^`<]*?)(?: <[^>]*>)?`", r"``\1``", para)  # roles -> code: no module context here
    for m in re.finditer(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s+[A-Z`(*]|$)", para):  # not "et al. 2016"
        if para[: m.start()].count("``") % 2 == 0:
            return para[: m.end()]
    return para


# --------------------------------------------------------------------------------------------- reference
def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _write(path: Path, text: str) -> None:
    """Write only when the text changed (Sphinx then re-reads only what changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _framework_bases() -> list[type]:
    out = []
    for spec in _FRAMEWORK_BASES:
        module, _, attr = spec.partition(":")
        try:
            out.append(getattr(importlib.import_module(module), attr))
        except ImportError:
            continue
    return out


def class_members(cls: type) -> list[str]:
    """The members of an adapter class the reference lists: public, with a docstring, defined by hpcallbacks
    (the class or one of its bases, mixins included) and not an override of a framework hook."""
    bases = _framework_bases()
    out = []
    for name in dir(cls):
        if name.startswith("_") or any(hasattr(b, name) for b in bases):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not owner.__module__.startswith("hpcallbacks"):
            continue
        attr = vars(owner)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if (inspect.isfunction(attr) or isinstance(attr, property)) and inspect.getdoc(attr):
            out.append(name)
    return out


def _entry_rst(e: Entry) -> str:
    kind = _kind(e.obj)
    if kind in ("class", "exception"):
        if e.module.startswith("hpcallbacks_"):  # mixins and bases hold the user-facing members
            members = class_members(e.obj)
            opts = [f"   :members: {', '.join(members)}" if members else "   :no-members:"]
        else:
            opts = ["   :members:"]
        opts.append("   :show-inheritance:")
        return f".. auto{kind}:: {e.name}\n" + "\n".join(opts) + "\n"
    if kind == "function":
        return f".. autofunction:: {e.name}\n"
    shown = repr(e.obj)
    opt = "" if len(shown) <= 70 else "   :no-value:\n"
    return f".. autodata:: {e.name}\n{opt}"


def module_page(module: str) -> str:
    entries = [e for e in inventory() if e.module == module]
    out = [f".. _api-{module}:\n", _title(f"``{module}``"), f".. automodule:: {module}\n"]
    out.append(f".. rubric:: Public names ({len(entries)})\n")
    out.append(".. list-table::\n   :widths: 30 70\n   :class: hp-names\n")
    for e in sorted(entries, key=lambda e: e.name.lower()):
        note = summary(e.obj)
        if e.home != e.full:
            home_module = e.home.rpartition(".")[0]
            note = f"from :mod:`{home_module}`" + (f": {note}" if note else "")
        out.append(f"   * - :py:obj:`{e.name} <{e.home}>`\n     - {note or ' '}")
    out.append("")
    own = [e for e in entries if e.home == e.full]
    if own:
        out.append(f".. currentmodule:: {module}\n")
        for e in own:
            out.append(_entry_rst(e))
    return "\n".join(out) + "\n"


def compare_names() -> list[str]:
    """Callback names of the adapters (a class in at least one adapter), sorted."""
    names: set[str] = set()
    for _, pkg in ADAPTERS:
        for e in inventory():
            if e.module == pkg and inspect.isclass(e.obj) and not issubclass(e.obj, Warning) \
                    and e.home.startswith("hpcallbacks_"):
                names.add(e.name)
    return sorted(names)


def _adapter_entry(pkg: str, name: str) -> Entry | None:
    for e in inventory():
        if e.module == pkg and e.name == name:
            return e
    return None


def _core_entry(name: str) -> Entry | None:
    for module in ("hpcallbacks", "hpcallbacks.torch"):
        for e in inventory():
            if e.module == module and e.name == name:
                return e
    return None


def _signature_rows(objs: list[Any]) -> list[tuple[str, list[str]]]:
    params: dict[str, list[str]] = {}
    for i, obj in enumerate(objs):
        if obj is None:
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                label = ("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name
            else:
                label = p.name
            cell = "required" if p.default is p.empty else f"``{p.default!r}``"
            if p.kind == p.KEYWORD_ONLY:
                cell += " (keyword)"
            params.setdefault(label, ["—"] * len(objs))[i] = cell
    return [(k, v) for k, v in params.items()]


def compare_page(name: str) -> str:
    entries = [(label, _adapter_entry(pkg, name)) for label, pkg in ADAPTERS]
    core = _core_entry(name)
    out = [":orphan:\n", f".. _compare-{name}:\n", _title(f"``{name}`` in the three adapters")]
    present = [f":py:obj:`{label} <{e.home}>`" for label, e in entries if e]
    missing = [label for label, e in entries if not e]
    out.append(f"In {', '.join(present)}" + (f"; not in {', '.join(missing)}" if missing else "") + ".")
    if core is not None:
        out.append(f" The core's counterpart: :py:obj:`{core.home}`.")
    out.append("\n")
    rows = _signature_rows([e.obj if e else None for _, e in entries])
    if rows:
        out.append(".. list-table:: Arguments (default, or *required*; — where the adapter has no such argument)\n"
                   "   :header-rows: 1\n   :widths: 25 25 25 25\n")
        out.append("   * - argument\n" + "".join(f"     - {label}\n" for label, _ in ADAPTERS))
        for arg, cells in rows:
            out.append(f"   * - ``{arg}``\n" + "".join(f"     - {c}\n" for c in cells))
        out.append("")
    for label, e in entries:
        if e is None:
            continue
        module, _, attr = e.home.rpartition(".")
        out.append(_title(f"{label}: ``{e.module}.{name}``", "-"))
        out.append(f".. currentmodule:: {module}\n")
        out.append(f".. auto{_kind(e.obj)}:: {attr}\n   :no-index:\n")
    return "\n".join(out) + "\n"


def compare_index() -> str:
    out = [".. _compare:\n", _title("The same callback in each framework"),
           "Each adapter exports the same callback names with the same arguments and the same numbers, so moving "
           "a training script between frameworks is a change of import. This table links each name's three "
           "versions; a name's page puts their arguments and docstrings side by side.\n",
           ".. list-table::\n   :header-rows: 1\n   :widths: 24 19 19 19 19\n",
           "   * - callback\n" + "".join(f"     - {label}\n" for label, _ in ADAPTERS) + "     - core\n"]
    for name in compare_names():
        cells = []
        for _, pkg in ADAPTERS:
            e = _adapter_entry(pkg, name)
            cells.append(f":py:obj:`{pkg} <{e.home}>`" if e else "—")
        core = _core_entry(name)
        cells.append(f":py:obj:`{core.module} <{core.home}>`" if core else "—")
        out.append(f"   * - :doc:`{name} <{name}>`\n" + "".join(f"     - {c}\n" for c in cells))
    return "\n".join(out)


def api_index() -> str:
    inv = inventory()
    out = [".. _api:\n", _title("API reference"),
           f"Every public name: each public module's ``__all__`` ({len(inv)} names in {len(MODULES)} modules; "
           f"{len(homes())} objects, each documented once, at its home module, and linked from every module "
           "that exports it). :doc:`compare/index` puts each callback's Keras, Lightning and HF versions side by "
           "side.\n",
           ".. list-table::\n   :header-rows: 1\n   :widths: 35 10 55\n",
           "   * - module\n     - names\n     - what it holds\n"]
    for module, blurb in MODULES.items():
        n = sum(1 for e in inv if e.module == module)
        out.append(f"   * - :doc:`{module}`\n     - {n}\n     - {blurb}\n")
    out.append("\n.. toctree::\n   :hidden:\n\n" + "".join(f"   {m}\n" for m in MODULES) + "   compare/index\n")
    return "\n".join(out)


def generate_reference() -> None:
    names = {"index.rst"}
    _write(API / "index.rst", api_index())
    for module in MODULES:
        _write(API / f"{module}.rst", module_page(module))
        names.add(f"{module}.rst")
    _write(API / "compare" / "index.rst", compare_index())
    for name in compare_names():
        _write(API / "compare" / f"{name}.rst", compare_page(name))
        names.add(f"compare/{name}.rst")
    for path in API.rglob("*.rst"):  # a page of a name that is gone
        if str(path.relative_to(API)) not in names | {"compare/index.rst"}:
            path.unlink()


# --------------------------------------------------------------------------------------------- the contract
def _load_contract() -> Any:
    spec = importlib.util.spec_from_file_location("_hpdocs_contract", ROOT / "tests" / "contract.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _callback_sources() -> dict[str, str]:
    """Row id -> the source of its callbacks (the lambda's body), read from tests/contract.py."""
    source = (ROOT / "tests" / "contract.py").read_text()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Row" and node.args:
            row_id = ast.literal_eval(node.args[0])
            fn = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "callbacks")
            text = ast.get_source_segment(source, fn.body) or ""
            text = " ".join(text.split())
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            out[row_id] = text.replace("o().", "<another adapter>.").replace("A.", "")
    return out


def _checked(row: Any) -> list[str]:
    out = []
    if row.lr is not None:
        out.append("LR of every group at every update")
    if row.trainable is not None:
        out.append("trainable groups at every update")
    if row.visible:
        out.append("the LR the optimizer shows is the next update's")
    if row.bn_frozen_moves is not None:
        out.append("frozen BatchNorm statistics " + ("move" if row.bn_frozen_moves else "stay"))
    if row.raises:
        out.append(f"raises ``{row.raises[0].__name__}`` matching ``{row.raises[1]}``")
    for run, cls, pattern in row.warns:
        out.append(f"warns ``{cls.__name__}`` once in run {run + 1} matching ``{pattern}``")
    if row.logged:
        out.append("per-group logs reach a consumer listed before the callbacks")
    return out


def _setup(row: Any) -> list[str]:
    out = [f"{len(row.names)} group{'s' if len(row.names) > 1 else ''} ({', '.join(row.names)})"
           + (" + BatchNorm" if row.bn else ""), f"{row.epochs} epoch{'s' if row.epochs > 1 else ''}"]
    if row.accumulation > 1:
        out.append(f"accumulation {row.accumulation}")
    if row.metric:
        out.append("logs a constant metric")
    if row.foreign:
        out.append(f"the framework's own {row.foreign}")
    if row.then:
        out.append(f"then {row.then.kind}d to {row.then.epochs} epochs" if row.then.kind == "resume"
                   else f"then the same callbacks reused for {row.then.epochs} epochs")
    return out


def _cell(items: list[str]) -> str:
    return "\n".join(f"       - {i}" for i in items) if items else "       —"


def generate_contract() -> None:
    contract = _load_contract()
    sources = _callback_sources()
    assert set(sources) == set(contract.IDS), "tests/contract.py: every Row must be found in its source"
    out = [f"The {len(contract.ROWS)} rows of ``tests/contract.py``, generated from it when the documentation is "
           "built. "
           f"Each row is a run of {contract.SPE} updates per epoch at learning rate {contract.LR0}; "
           "``tests/test_contract.py`` runs every row on Keras (TensorFlow, torch and JAX backends), Lightning and "
           "HF, and checks what the last column says against the core's own numbers. *points*: the numbered points of "
           "the project's behaviour-contract issue that the row covers. In *callbacks*, a name without a prefix is the "
           "adapter's callback of that name, ``S`` is :mod:`hpcallbacks.schedules`.\n",
           ".. list-table::\n   :header-rows: 1\n   :widths: 22 6 28 18 26\n   :class: hp-contract\n",
           "   * - row\n     - points\n     - callbacks\n     - run\n     - checked"]
    for row in contract.ROWS:
        points = ", ".join(str(p) for p in row.points) or "—"
        out.append(f"   * - ``{row.id}``\n     - {points}\n     - ``{sources[row.id]}``\n"
                   f"     -\n{_cell(_setup(row))}\n     -\n{_cell(_checked(row))}")
    _write(GEN / "contract_table.rst", "\n".join(out) + "\n")


# --------------------------------------------------------------------------------------------- schedules
#: How each family is drawn: the arguments given on top of ``hpcallbacks plot NAME``'s defaults
#: (rates 1e-3, lengths: the steps drawn). Families that need a structure get one here.
def _examples(steps: int) -> dict[str, Any]:
    from hpcallbacks import schedules as S

    return {
        "PiecewiseConstantDecay": S.PiecewiseConstantDecay([100, 250], [1e-3, 5e-4, 1e-4]),
        "MultiStepDecay": S.MultiStepDecay(1e-3, milestones=[100, 250], gamma=0.5),
        "StepDecay": S.StepDecay(1e-3, step_size=100, gamma=0.5),
        "Warmup": S.Warmup(S.CosineDecay(1e-3, steps - 50), warmup_steps=50),
        "Join": S.Join([S.Constant(1e-3), S.CosineDecay(1e-3, steps - 150)], boundaries=[150]),
        "CosineRestart": S.CosineRestart(1e-3, first_decay_steps=50),
        "Cyclic": S.Cyclic(1e-4, 1e-3, step_size_up=50),
        "ExponentialDecay": S.ExponentialDecay(1e-3, decay_steps=100, decay_rate=0.5),
        "InverseTimeDecay": S.InverseTimeDecay(1e-3, decay_steps=50, decay_rate=1.0),
        "InverseSqrt": S.InverseSqrt(1e-3, warmup_steps=50),
        "WarmupStableDecay": S.WarmupStableDecay(1e-3, warmup_steps=50, stable_steps=200, decay_steps=150),
    }


def generate_schedules(steps: int = 400) -> None:
    from hpcallbacks import schedules as S
    from hpcallbacks.cli import _schedule
    from hpcallbacks.plot import plot_schedule

    examples = _examples(steps)
    out = [f"The {len(S.SCHEDULES)} families of ``hpcallbacks.schedules.SCHEDULES``, each drawn over {steps} "
           "updates by :func:`hpcallbacks.plot.plot_schedule` when the documentation is built.\n",
           ".. list-table::\n   :header-rows: 1\n   :widths: 40 60\n   :class: hp-schedules\n",
           "   * - family\n     - curve"]
    (GEN / "schedules").mkdir(parents=True, exist_ok=True)
    for name in sorted(S.SCHEDULES):
        cls = S.SCHEDULES[name]
        try:
            schedule = examples.get(name) or _schedule(name, None, steps)
        except (TypeError, ValueError) as error:
            raise RuntimeError(f"docs: cannot draw the schedule family {name}; give it an example in "
                               f"docs/_ext/hpdocs.py _examples ({error})") from error
        png = plot_schedule(schedule, steps, GEN / "schedules" / f"{name}.png", title=name)
        out.append(f"   * - :py:class:`~hpcallbacks.schedules.{name}`\n\n       {summary(cls)}\n\n"
                   f"       ``{_short_repr(schedule)}``\n     - .. image:: /_generated/schedules/{png.name}\n"
                   f"          :alt: {name} over {steps} updates\n          :width: 100%")
    _write(GEN / "schedules_table.rst", "\n".join(out) + "\n")


def _short_repr(schedule: Any) -> str:
    text = repr(schedule)
    return textwrap.shorten(text, 160, placeholder=" ...)") if len(text) > 160 else text


# --------------------------------------------------------------------------------------------- pictures
def page_command(page: str, verb: str) -> list[str]:
    """The arguments of the first ``hpcallbacks VERB ...`` line of a guide (what the page shows is what runs)."""
    for line in (DOCS / "guides" / page).read_text().splitlines():
        if line.strip().startswith(f"hpcallbacks {verb} "):
            return shlex.split(line.split("#")[0])[1:]
    raise RuntimeError(f"docs: guides/{page} has no `hpcallbacks {verb} ...` line to draw its picture from")


def _with_option(args: list[str], option: str, value: str | None) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == option:
            skip = value is not None
            continue
        out.append(a)
    return out + ([option, value] if value is not None else [option])


def generate_plan_picture() -> None:
    """The plan picture of guides/plans.md: its ``hpcallbacks plot-plan`` line, run with ``-o`` here."""
    from hpcallbacks.cli import main

    args = _with_option(page_command("plans.md", "plot-plan"), "-o", str(GEN / "plan.png"))
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        if main(args) != 0:
            raise RuntimeError(f"docs: hpcallbacks {' '.join(args)} failed")


def start_search() -> subprocess.Popen:
    """The search of guides/search.md (its ``hpcallbacks search`` line, into ``_generated/search``, quietly)
    in a subprocess, beside the other work (the digits MLP: about 10 s)."""
    out = GEN / "search"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*"):
        if stale.is_file():
            stale.unlink()
    args = _with_option(_with_option(page_command("search.md", "search"), "--out", str(out)), "--quiet", None)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "hpcallbacks", *args], cwd=out, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # the checkout being documented


def finish_search(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=600)
    if proc.returncode != 0 or not (GEN / "search" / "search.png").exists():
        raise RuntimeError(f"docs: {' '.join(proc.args)} failed ({proc.returncode}):\n{output}")


# --------------------------------------------------------------------------------------------- cross-references
def _resolve_path(path: str) -> Any:
    """The object a dotted path names (module, then attributes), or raise LookupError."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            try:
                obj = inspect.getattr_static(obj, attr) if inspect.isclass(obj) else getattr(obj, attr)
            except AttributeError:
                raise LookupError(path) from None
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
        return obj
    raise LookupError(path)


_BY_ID: dict[int, str] | None = None


def _documented_by_id(env: Any) -> dict[int, str]:
    """id(object) -> its documented full name, for every object the Python domain holds."""
    global _BY_ID
    if _BY_ID is None:
        _BY_ID = {}
        for name, entry in env.get_domain("py").objects.items():
            if entry.aliased or not name.startswith("hpcallbacks"):
                continue
            try:
                obj = _resolve_path(name)
            except LookupError:
                continue
            if _identified(obj):
                _BY_ID.setdefault(id(obj), name)
    return _BY_ID


def _scopes(module: str | None, cls: str | None, source: str | None) -> list[str]:
    """The namespaces a reference written in that context reads, innermost first: the documented object and
    its parents (``source``: the real path autodoc reports), the current class and module, their packages, and
    the modules and classes of a class's bases (a mixin's docstring uses its own module's names)."""
    scopes: list[str] = []

    def chain(path: str) -> None:
        parts = path.split(".")
        scopes.extend(".".join(parts[:i]) for i in range(len(parts), 0, -1))

    if source:
        chain(source)
    if module:
        chain(f"{module}.{cls}" if cls else module)
    for scope in list(scopes):
        try:
            obj = _resolve_path(scope)
        except LookupError:
            continue
        if inspect.isclass(obj):
            for k in obj.__mro__[1:]:
                if k.__module__.startswith("hpcallbacks"):
                    scopes += [f"{k.__module__}.{k.__qualname__}", k.__module__]
    return list(dict.fromkeys(s for s in scopes if s.startswith("hpcallbacks")))


def _candidates(target: str, module: str | None, cls: str | None, source: str | None = None) -> list[str]:
    """Where a reference written in that context can point, innermost scope first."""
    target = target.lstrip(".~")
    return [f"{scope}.{target}" for scope in _scopes(module, cls, source)] + [target]


_SOURCES: dict[type, str] = {}


def _class_source(cls: type) -> str:
    if cls not in _SOURCES:
        try:
            _SOURCES[cls] = inspect.getsource(cls)
        except (OSError, TypeError):
            _SOURCES[cls] = ""
    return _SOURCES[cls]


def _instance_attribute(path: str) -> bool:
    """``Class.name`` where ``name`` is an instance attribute: an annotated field (a dataclass's), or one the
    class's methods set (``self.name = ...``)."""
    owner, _, attr = path.rpartition(".")
    try:
        cls = _resolve_path(owner)
    except LookupError:
        return False
    if not inspect.isclass(cls):
        return False
    ours = [k for k in cls.__mro__ if k.__module__.startswith("hpcallbacks")]
    return any(attr in vars(k).get("__annotations__", {}) for k in ours) or any(  # a field, or set in a method
        re.search(rf"self\.{re.escape(attr)}\s*[:=]", _class_source(k)) for k in ours)


def _page_module(module: str) -> str | None:
    """The module page that documents ``module``'s names: its own, or the nearest parent's."""
    while module:
        if module in MODULES:
            return module
        module = module.rpartition(".")[0]
    return None


def canonical(target: str, module: str | None = None, cls: str | None = None, env: Any = None,
              source: str | None = None) -> tuple[str, Any]:
    """What ``target`` names in that context: ``("obj", documented name)`` or ``("mod", page module)``;
    ``("text", None)`` for a real hpcallbacks object without an entry of its own (a private helper);
    ``("missing", None)`` when it names nothing (a renamed or removed name)."""
    key = (target, module, cls, source)
    if key not in _CANONICAL:
        _CANONICAL[key] = _canonical(target, module, cls, env, source)
    return _CANONICAL[key]


_CANONICAL: dict[tuple, tuple[str, Any]] = {}


def _canonical(target: str, module: str | None, cls: str | None, env: Any, source: str | None) -> tuple[str, Any]:
    head = target.lstrip(".~").split(".")[0]
    if head in EXTERNAL or (head == target and hasattr(builtins, head)):
        return "missing", None  # another project's name, or a builtin: Sphinx's own rules decide
    by_id = _documented_by_id(env)
    objects = env.get_domain("py").objects
    found = False
    failed = []
    for path in _candidates(target, module, cls, source):
        if not path.startswith("hpcallbacks"):
            continue
        try:
            obj = _resolve_path(path)
        except LookupError:
            failed.append(path)
            continue
        found = True
        if inspect.ismodule(obj):
            page = _page_module(obj.__name__)
            return ("mod", page) if page and page != target else ("text", None)
        name = by_id.get(id(obj)) if _identified(obj) else (path if path in objects else None)
        if name:
            return "obj", name
    if not found and not any(_instance_attribute(path) for path in failed if path.count(".") >= 2):
        return "missing", None
    return "text", None


def _source(node: Any) -> str | None:
    """The real dotted path of the object whose docstring holds ``node`` (autodoc's "docstring of X")."""
    _, sep, path = str(node.source or "").partition(":docstring of ")
    return path.strip() or None if sep else None


def _relative_references() -> type:
    from sphinx import addnodes
    from sphinx.transforms.post_transforms import SphinxPostTransform

    class RelativeReferences(SphinxPostTransform):
        """``:mod:`.callbacks``` inside ``hpcallbacks_lightning.extras`` means the sibling module, as a relative
        import would: resolved against the documented object's scopes before Sphinx's own resolver (priority
        10) searches every module for a name ending in ``.callbacks`` (each adapter has one)."""

        default_priority = 5

        def run(self, **kwargs: Any) -> None:
            for node in self.document.findall(addnodes.pending_xref):
                if node.get("refdomain") != "py" or not node.get("refspecific"):
                    continue
                kind, name = canonical(node["reftarget"], node.get("py:module"), node.get("py:class"), self.env,
                                       _source(node))
                if kind in ("obj", "mod"):
                    node["reftarget"], node["refspecific"] = name, False
                    node["reftype"] = "mod" if kind == "mod" else "obj"

    return RelativeReferences


def on_missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference by the object it names (see the module docstring). A real but private
    hpcallbacks object is shown as text; a name that imports nothing stays missing: a warning, an error
    under ``-W``."""
    if node.get("refdomain") != "py":
        return None
    kind, name = canonical(node["reftarget"], node.get("py:module"), node.get("py:class"), env, _source(node))
    if kind == "text":
        return contnode
    if kind == "missing" or name == node["reftarget"]:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, "mod" if kind == "mod" else "obj",
                                             name, node, contnode)


def on_process_bases(app: Any, name: str, obj: Any, options: Any, bases: list) -> None:
    """Show documented or external bases; an undocumented hpcallbacks base (a mixin, ``LightningCallback``,
    ``_Family``) is replaced by its own bases."""
    documented = {id(e.obj) for e in inventory()}

    def public(classes: Any) -> list:
        out: list = []
        for b in classes:
            module = getattr(b, "__module__", "")
            if b is object:
                continue
            if not module.startswith("hpcallbacks") or id(b) in documented:
                out.append(b)
            else:
                out.extend(public(b.__bases__))
        return out

    kept = list(dict.fromkeys(public(bases)))
    bases[:] = kept or [object]


def on_process_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """A docstring's plain-text table after ``::`` that is not indented (it reads well in ``help()``) is
    shown as the literal block it announces: its lines, up to the next blank line, are indented."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and i + 2 < len(lines) and not lines[i + 1].strip():
            base = len(line) - len(line.lstrip())
            j = i + 2
            if lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) <= base:
                while j < len(lines) and lines[j].strip():
                    lines[j] = "    " + lines[j]
                    j += 1
            i = j
        i += 1


def on_process_signature(app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None,
                         return_annotation: str | None) -> tuple[str | None, str | None] | None:
    """A dataclass field's ``default_factory`` shows as ``<factory>``, which no signature parser reads."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


# --------------------------------------------------------------------------------------------- links in guides
def _link_table() -> dict[str, tuple[str, str]]:
    """Inline code in a guide -> (kind, target): a name the reference documents becomes a link."""
    table: dict[str, tuple[str, str]] = {}
    short: dict[str, set[str]] = {}
    for e in inventory():
        table[e.full] = ("py", e.home)
        short.setdefault(e.name, set()).add(e.home)
    compare = set(compare_names())
    for name, targets in short.items():
        if name in compare:
            table[name] = ("doc", f"/api/compare/{name}")
        elif len(targets) == 1:
            table[name] = ("py", next(iter(targets)))
    for module in MODULES:
        table[module] = ("mod", module)
    return table


_LITERAL = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)(\(\))?$")


def link_literals(app: Any, doctree: Any) -> None:
    """In the Markdown guides, inline code that is exactly a public name (``FreezePlan``,
    ``FreezePlan.gradual``, ``hpcallbacks.search``, ``StagedUnfreeze``) links to its entry; a callback name
    the adapters share links to its side-by-side page."""
    from docutils import nodes
    from sphinx import addnodes

    env = app.env
    if not env.doc2path(env.docname).suffix == ".md":
        return
    table = _link_table()
    for lit in list(doctree.findall(nodes.literal)):
        if isinstance(lit.parent, (nodes.reference, addnodes.pending_xref)):
            continue
        m = _LITERAL.match(lit.astext())
        if not m:
            continue
        text = m.group(1)
        hit = table.get(text)
        if hit is None and "." in text:  # FreezePlan.gradual: a documented class's member
            head, _, rest = text.partition(".")
            base = table.get(head)
            if base and base[0] == "py":
                hit = ("py", f"{base[1]}.{rest}")
        if hit is None:
            continue
        kind, target = hit
        ref = addnodes.pending_xref("", refdomain="std" if kind == "doc" else "py",
                                    reftype="doc" if kind == "doc" else ("mod" if kind == "mod" else "obj"),
                                    reftarget=target, refexplicit=True, refwarn=True, refdoc=env.docname)
        lit.replace_self(ref)
        ref += lit


# --------------------------------------------------------------------------------------------- checks
def check_coverage(app: Any, env: Any) -> None:
    """Every public name has a reference entry: its home is an object of the Python domain."""
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    objects = env.get_domain("py").objects
    missing = sorted({e.home for e in inventory() if e.home not in objects})
    for name in missing:
        logger.warning(f"hpdocs: public name {name} has no reference entry")
    for module in unclassified_modules():
        logger.warning(f"hpdocs: module {module} has no reference page: add it to MODULES or INTERNAL "
                       "in docs/_ext/hpdocs.py")
    app.config.hpdocs_counts = (len(inventory()), len(homes()))


_SEARCH: subprocess.Popen | None = None


def on_builder_inited(app: Any) -> None:
    global _SEARCH
    started = time.perf_counter()
    GEN.mkdir(parents=True, exist_ok=True)
    _SEARCH = start_search() if os.environ.get("HPDOCS_SEARCH", "1") != "0" else None
    times = {}
    for step in (inventory, generate_reference, generate_contract, generate_schedules, generate_plan_picture):
        t = time.perf_counter()
        step()
        times[step.__name__] = time.perf_counter() - t
    if _SEARCH is None and not (GEN / "search" / "search.png").exists():
        raise RuntimeError("docs: HPDOCS_SEARCH=0 needs a search picture from an earlier build")
    print(f"hpdocs: generated pages in {time.perf_counter() - started:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + "); the search runs beside the reading")


def wait_for_search(*args: Any) -> None:
    """The search page needs the study's table and picture: wait for it when that page is read (the pages
    before it are read meanwhile), or before anything is written."""
    global _SEARCH
    if args and len(args) == 3 and args[1] != "guides/search":  # source-read of another page
        return
    if _SEARCH is not None:
        t = time.perf_counter()
        finish_search(_SEARCH)
        _SEARCH = None
        print(f"hpdocs: waited {time.perf_counter() - t:.1f} s for the search")


def on_build_finished(app: Any, exception: Any) -> None:
    if exception is None:
        total, objects = getattr(app.config, "hpdocs_counts", (0, 0))
        print(f"hpdocs: reference covers {total} public names ({objects} objects)")


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("hpdocs_counts", (0, 0), "")
    app.connect("builder-inited", on_builder_inited)
    app.connect("source-read", wait_for_search)
    app.connect("env-updated", wait_for_search)
    app.connect("missing-reference", on_missing_reference)
    app.add_post_transform(_relative_references())
    app.connect("autodoc-process-bases", on_process_bases)
    app.connect("autodoc-process-docstring", on_process_docstring)
    app.connect("autodoc-process-signature", on_process_signature)
    app.connect("doctree-read", link_literals)
    app.connect("env-check-consistency", check_coverage)
    app.connect("build-finished", on_build_finished)
    return {"version": "1", "parallel_read_safe": False, "env_version": 1}
