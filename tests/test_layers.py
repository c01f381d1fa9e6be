"""The layers import downwards only (README, first block): plans <- mechanics <- wiring <- demo.

* PLANS, ``hpcallbacks/`` except ``hpcallbacks/torch/``: no adapter, no demo, not the mechanics, and no
  framework when imported (a framework inside a function is allowed; matplotlib in ``plot`` is lazy too).
* MECHANICS, ``hpcallbacks/torch/``: torch, never a trainer (Lightning, transformers, Keras), an adapter or
  the demo.
* WIRING, each adapter: never another adapter or the demo.

Read from the source with :mod:`ast` (every ``import`` statement, at any depth), so an import that only
runs on some code path is caught as well; ``hpcallbacks demo`` reaches the demo by name at call time.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "hpcallbacks"
MECHANICS = CORE / "torch"
ADAPTERS = ("hpcallbacks_keras", "hpcallbacks_lightning", "hpcallbacks_hf")
DEMO = "hpcallbacks_demo"
FRAMEWORKS = ("torch", "keras", "tensorflow", "lightning", "pytorch_lightning", "transformers")
TRAINERS = ("keras", "tensorflow", "lightning", "pytorch_lightning", "transformers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(absolute module name, runs on import, line)`` for every import statement of ``path``.

    ``from pkg import name`` yields ``pkg`` and ``pkg.name`` (``name`` may be a submodule); relative
    imports are resolved against the file's package. "Runs on import" is false inside a function
    body or an ``if TYPE_CHECKING:`` block.
    """
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, on_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, on_import, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base_parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(base_parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                found.append((base, on_import, child.lineno))
                found.extend((f"{base}.{alias.name}", on_import, child.lineno) for alias in child.names
                             if alias.name != "*")
            inside = on_import
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inside = False
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), on_import)
                continue
            visit(child, inside)

    visit(ast.parse(path.read_text(), filename=str(path)), True)
    return found


def _names(package: str | Path, *, exclude: Path | None = None) -> dict[str, list[tuple[str, bool, int]]]:
    folder = ROOT / package
    files = sorted(p for p in folder.rglob("*.py") if exclude is None or exclude not in p.parents)
    assert files, f"no Python files under {folder}"
    return {str(p.relative_to(ROOT)): imports(p) for p in files}


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _offending(table, roots: tuple[str, ...], *, on_import_only: bool = False) -> list[str]:
    return sorted({f"{file}:{line} imports {name}" for file, found in table.items() for name, on_import, line in found
                   if _within(name, roots) and (on_import or not on_import_only)})


def test_the_reader_sees_relative_lazy_and_module_level_imports():
    # the checks below would pass vacuously if the reader missed these
    cli = imports(CORE / "cli.py")
    assert any(n == "hpcallbacks.schedules" and t for n, t, _ in cli)  # from . import schedules as S
    assert any(n == "hpcallbacks.plot" and not t for n, t, _ in cli)  # inside cmd_plot
    freeze = imports(MECHANICS / "freeze.py")
    assert any(n == "torch" and t for n, t, _ in freeze)
    assert any(n == "hpcallbacks.torch.groups" and t for n, t, _ in freeze)
    lightning_demo = imports(ROOT / DEMO / "lightning.py")
    assert any(n == "hpcallbacks_lightning" and not t for n, t, _ in lightning_demo)


def test_nothing_under_hpcallbacks_imports_an_adapter_or_the_demo():
    assert _offending(_names("hpcallbacks"), (*ADAPTERS, DEMO)) == []


def test_the_plans_import_no_framework_when_imported():
    assert _offending(_names("hpcallbacks", exclude=MECHANICS), FRAMEWORKS, on_import_only=True) == []


def test_the_plans_never_import_the_mechanics():
    assert _offending(_names("hpcallbacks", exclude=MECHANICS), ("hpcallbacks.torch",)) == []


def test_the_mechanics_import_no_trainer_adapter_or_demo():
    assert _offending(_names(MECHANICS), (*TRAINERS, *ADAPTERS, DEMO)) == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_adapter_imports_no_other_adapter_nor_the_demo(adapter):
    others = tuple(a for a in ADAPTERS if a != adapter)
    assert _offending(_names(adapter), (*others, DEMO)) == []


def test_importing_every_plan_module_loads_no_framework():
    """The same at run time: every module of the core imported, and no framework nor adapter loaded."""
    modules = sorted(_module_name(p) for p in CORE.rglob("*.py")
                     if MECHANICS not in p.parents and p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {(*FRAMEWORKS, *ADAPTERS, DEMO)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
