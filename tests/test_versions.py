"""The supported version window is the tested one (issue 19).

* ``pyproject.toml``'s lower bounds are exactly the releases ``make test-floor`` installs (the
  Makefile's ``FLOOR_SET``), and its upper end is what ``make test`` installs (``TEST_SET``);
* the README's "Tested with" table names both sets;
* inside each CI leg (``HPCALLBACKS_LEG=floor|newest``, set by the Makefile), the installed
  releases are that leg's pins: a leg that silently resolved something else fails here.
"""
from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

from hpcallbacks._versions import release

ROOT = Path(__file__).resolve().parent.parent
# pyproject's names of the frameworks whose floor the window sets, and the PyPI name the Makefile pins
FRAMEWORKS = {"keras": "keras", "lightning": "lightning", "pytorch-lightning": "pytorch-lightning",
              "transformers": "transformers", "accelerate": "accelerate", "torch": "torch",
              "tensorflow-cpu": "tensorflow-cpu"}


def _same(a: str, b: str) -> bool:
    """Equal releases, trailing zeros aside: ``3.8`` is ``3.8.0``."""
    x, y = list(release(a)), list(release(b))
    while x and x[-1] == 0:
        x.pop()
    while y and y[-1] == 0:
        y.pop()
    return x == y


def _make_variable(name: str) -> dict[str, str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", text, re.M)
    assert line, f"Makefile has no {name}"
    return dict(re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"]*)", line.group(1)))


def _floors() -> dict[str, set[str]]:
    """Every ``name>=version`` bound of pyproject's optional dependencies, by name."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    bounds: dict[str, set[str]] = {}
    for name, version in re.findall(r'"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?>=([0-9][^",;\s]*)', section):
        bounds.setdefault(name, set()).add(version)
    return bounds


FLOOR = {**_make_variable("FLOOR_SET"), **_make_variable("TORCH_FLOOR")}
NEWEST = {**_make_variable("TEST_SET"), **_make_variable("TORCH")}


def test_pyproject_floors_are_the_tested_floors():
    bounds = _floors()
    for name in FRAMEWORKS:
        if name not in bounds:
            continue
        assert all(_same(b, FLOOR[name]) for b in bounds[name]), (
            f"pyproject.toml declares {name}>={sorted(bounds[name])}, but make test-floor tests {name}=={FLOOR[name]}")
    assert {"keras", "lightning", "transformers", "accelerate", "torch"} <= set(bounds)


def test_floor_is_not_above_newest():
    for name in set(FLOOR) & set(NEWEST):
        assert release(FLOOR[name]) <= release(NEWEST[name]), name


def test_readme_names_both_legs():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("Tested with", 1)[1][:3000] if "Tested with" in readme else ""
    for name in ("keras", "lightning", "transformers", "accelerate", "torch", "tensorflow-cpu"):
        for version in {FLOOR.get(name), NEWEST.get(name)} - {None}:
            assert version in table, f"README's Tested with table lacks {name} {version}"


LEG = os.environ.get("HPCALLBACKS_LEG")


@pytest.mark.skipif(LEG not in ("floor", "newest"), reason="HPCALLBACKS_LEG is set by make test / make test-floor")
def test_installed_releases_are_the_legs_pins():
    pins = FLOOR if LEG == "floor" else NEWEST
    for name, version in pins.items():
        installed = metadata.version(name)
        assert release(installed) == release(version), f"{LEG} leg: {name} {installed} installed, {version} pinned"
