"""`hpcallbacks demo --quick` runs to completion: the table, the plan picture, the curves."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("lightning")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_demo_writes_the_table_and_pictures(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hpcallbacks", "demo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for label in ("(a) naive full fine-tune", "(b) Lightning BackboneFinetuning", "(c) hpcallbacks recipe"):
        assert label in out.stdout
    assert "small/different" in out.stdout and "advisor on (a)" in out.stdout
    for name in ("plan.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in results] == ["naive", "backbone", "recipe"]
    assert all(len(r["curve"]) == 2 and 0.0 <= r["accuracy"] <= 1.0 for r in results)
