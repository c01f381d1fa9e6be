"""Every code block of the README runs: Python blocks are executed, `hpcallbacks ...` lines too."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [line.strip() for lang, code in BLOCKS if lang == "bash" for line in code.splitlines()
            if line.strip().startswith("hpcallbacks ")]


def test_readme_has_examples():
    assert PYTHON and COMMANDS


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON[index], f"README.md[python {index}]", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs(command, tmp_path):
    args = shlex.split(command.split("#")[0])[1:]
    out = subprocess.run([sys.executable, "-m", "hpcallbacks", *args], cwd=tmp_path, capture_output=True, text=True)
    # `advise` exits 1 when it has findings, which is what the README example shows
    assert out.returncode in ((0, 1) if args[0] == "advise" else (0,)), out.stderr
    assert out.stdout
