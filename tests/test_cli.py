"""The command line, run as a user would (a subprocess per verb family, cheap: no framework)."""
from __future__ import annotations

import subprocess
import sys

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hpcallbacks", *args], capture_output=True, text=True, cwd=cwd)


def test_list_names_every_schedule():
    from hpcallbacks.schedules import SCHEDULES

    out = run("list")
    assert out.returncode == 0
    assert all(name in out.stdout for name in SCHEDULES)


def test_plot_writes_a_png_and_prints_values(tmp_path):
    out = run("plot", "CosineRestart", "--set", "initial_learning_rate=0.001", "--set", "first_decay_steps=100",
              "--steps", "500", "-o", str(tmp_path / "lr.png"))
    assert out.returncode == 0, out.stderr
    assert "update       0: 0.001" in out.stdout
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG


def test_plot_plan_and_bad_arguments(tmp_path):
    out = run("plot-plan", "--plan", "recommend", "--plan-set", "num_samples=1797", "--plan-set", "similar=false",
              "--factors", "geometric:2.6", "--set", "initial_learning_rate=0.01", "--set", "first_decay_steps=50",
              "-o", str(tmp_path / "plan.png"))
    assert out.returncode == 0, out.stderr
    assert "small/different" in out.stdout and (tmp_path / "plan.png").read_bytes()[:8] == PNG
    bad = run("plot", "CosineRestart", "--set", "initial_learning_rate=0.1", "--set", "first_decay_steps=-3")
    assert bad.returncode == 2 and "first_decay_steps" in bad.stderr
    bad = run("plot", "Cosine")
    assert bad.returncode == 2 and "CosineRestart" in bad.stderr


def test_advise_reports_out_of_range_values():
    out = run("advise", "--optimizer", "adam", "--learning-rate", "0.1", "--batch-size", "4096")
    assert out.returncode == 1
    assert "learning_rate = 0.1" in out.stdout and "batch_size = 4096" in out.stdout
    ok = run("advise", "--optimizer", "adam", "--learning-rate", "0.003", "--batch-size", "64")
    assert ok.returncode == 0, ok.stdout


def test_demo_verb_runs_the_demo_package(tmp_path):
    # `hpcallbacks demo` lives in hpcallbacks_demo (it imports the adapters); the verb finds it by name
    out = run("demo", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: hpcallbacks demo") and "--framework" in out.stdout
    bad = run("demo", "--framework", "keras", "--runs", "frozen", cwd=tmp_path)
    assert bad.returncode == 2 and "naive, two_phase, recipe" in bad.stderr


def test_a_count_flag_below_one_is_named():
    """Issue 20, defect 13: ``plot --steps 0`` said "step ... >= 0; got -1" (the last update drawn), not the flag."""
    bad = run("plot", "CosineRestart", "--steps", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "hpcallbacks plot: error: --steps must be >= 1; got 0"
    bad = run("plot-plan", "--steps-per-epoch", "0")
    assert bad.returncode == 2 and "--steps-per-epoch must be >= 1; got 0" in bad.stderr
