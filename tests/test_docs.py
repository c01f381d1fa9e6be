"""The documentation is checked like code.

* Every Python block of the guides (``docs/**/*.md``) runs, and every ``hpcallbacks ...`` line of
  their ``bash`` blocks; a block identical to one of the README's runs once, in test_readme.py.
* Every public name has a reference entry: the generator of ``docs/api/`` (``docs/_ext/hpdocs.py``)
  gives each name of each public module's ``__all__`` a home that its page documents, and every
  module of the packages has a page or a reason not to. ``make docs`` checks the built reference
  the same way (a missing entry is a build error).
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"```(\w+)\n(.*?)```", flags=re.S)
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"_build", "_generated", "api"} & set(p.relative_to(DOCS).parts))
README_BLOCKS = {code for _, code in FENCE.findall((ROOT / "README.md").read_text())}


def _blocks(lang: str) -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for i, (found, code) in enumerate(FENCE.findall(page.read_text())):
            if found == lang and code not in README_BLOCKS:
                out.append((f"{page.relative_to(DOCS)}[{i}]", code))
    return out


PYTHON = _blocks("python")
COMMANDS = [(where, line.strip()) for where, code in _blocks("bash") for line in code.splitlines()
            if line.strip().startswith("hpcallbacks ")]


def test_guides_have_examples():
    assert PAGES and PYTHON and COMMANDS


@pytest.mark.parametrize("where,code", PYTHON, ids=[w for w, _ in PYTHON])
def test_python_block_runs(where, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/{where}", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("where,command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_runs(where, command, tmp_path):
    args = shlex.split(command.split("#")[0])[1:]
    out = subprocess.run([sys.executable, "-m", "hpcallbacks", *args], cwd=tmp_path, capture_output=True, text=True)
    # `advise` exits 1 when it has findings, which is what the examples show
    assert out.returncode in ((0, 1) if args[0] == "advise" else (0,)), out.stderr
    assert out.stdout


@pytest.fixture(scope="module")
def hpdocs():
    spec = importlib.util.spec_from_file_location("hpdocs", DOCS / "_ext" / "hpdocs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_module_has_a_page_or_a_reason(hpdocs):
    assert hpdocs.unclassified_modules() == []


def test_every_public_name_has_a_reference_entry(hpdocs):
    inventory = hpdocs.inventory()
    pages = {module: hpdocs.module_page(module) for module in hpdocs.MODULES}
    for module in hpdocs.MODULES:
        names = hpdocs.public_names(importlib.import_module(module))
        assert names, module
        assert {e.name for e in inventory if e.module == module} == set(names), module
    for e in inventory:
        home_module, _, home_name = e.home.rpartition(".")
        assert e.obj is getattr(importlib.import_module(home_module), home_name), e.full
        kind = {"class": "class", "exception": "exception", "function": "function"}.get(hpdocs._kind(e.obj), "data")
        assert re.search(rf"^\.\. auto{kind}:: {re.escape(home_name)}$", pages[home_module], re.M), e.home
        # and the module that exports it lists it, linked to that entry
        assert f":py:obj:`{e.name} <{e.home}>`" in pages[e.module], e.full


def test_compare_pages_cover_the_adapters_callbacks(hpdocs):
    names = hpdocs.compare_names()
    for shared in ("StagedUnfreeze", "CosineRestart", "MicroBatchFinder", "TrialReporter"):
        assert shared in names
        page = hpdocs.compare_page(shared)
        for _, package in hpdocs.ADAPTERS:
            assert f"{package}." in page, (shared, package)


def test_contract_table_has_every_row(hpdocs, tmp_path, monkeypatch):
    monkeypatch.setattr(hpdocs, "GEN", tmp_path)
    hpdocs.generate_contract()
    table = (tmp_path / "contract_table.rst").read_text()
    contract = hpdocs._load_contract()
    for row in contract.ROWS:
        assert f"``{row.id}``" in table


def test_a_renamed_name_breaks_the_build(hpdocs, tmp_path):
    """The reference's rule for cross-references (docs/_ext/hpdocs.py): any public spelling of an object
    resolves to its entry; a name that imports nothing is a warning, which ``make docs`` (-W) makes an error."""
    pytest.importorskip("sphinx", reason="Sphinx is installed by make docs")
    from sphinx.cmd.build import build_main

    (tmp_path / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "import hpdocs\n"
        "extensions = ['sphinx.ext.autodoc']\n"
        "nitpicky = True\n"
        "nitpick_ignore_regex = hpdocs.NITPICK_IGNORE_REGEX\n"
        "def setup(app):\n"
        "    app.connect('missing-reference', hpdocs.on_missing_reference)\n")
    page = tmp_path / "index.rst"
    body = "T\n=\n\n.. autoclass:: hpcallbacks.plans.FreezePlan\n\n{}\n"
    page.write_text(body.format(":class:`hpcallbacks.FreezePlan` and :class:`FreezePlan <hpcallbacks.FreezePlan>`"))
    out = tmp_path / "out"
    assert build_main(["-q", "-b", "html", "-n", "-W", "-E", str(tmp_path), str(out)]) == 0
    assert 'href="#hpcallbacks.plans.FreezePlan"' in (out / "index.html").read_text()
    page.write_text(body.format(":class:`hpcallbacks.FreezePlann`"))
    assert build_main(["-q", "-b", "html", "-n", "-W", "-E", str(tmp_path), str(out)]) != 0


def test_readme_links_into_the_docs_resolve():
    """The README's relative links (into docs/, the pictures) name files that exist."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)#\s]+)(?:#[^)]*)?\)", readme)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
