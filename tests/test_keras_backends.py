"""The Keras tests once more on Keras' torch backend and on its JAX backend: one subprocess each.

The main test process runs Keras on TensorFlow. Keras fixes its backend when it is first
imported, so each other backend gets one fresh process (``KERAS_BACKEND=torch`` / ``jax``) that
runs, with its imports paid once:

* ``tests/keras_cases.py``: the backend-agnostic Keras tests (the README's Keras example among
  them). On JAX the accumulation conformance cases are left out: ``run_scenario`` compiles them
  with ``jit_compile=False`` there, which runs op by op (about 30 s each); the contract's JAX leg
  runs accumulation under jit;
* the contract table's rows on the Keras adapter (``tests/test_contract.py``, ``HPCALLBACKS_CONTRACT=keras``);
* on torch, the micro-batch finder's Keras cases (``torch.OutOfMemoryError`` is the failure there).

On JAX, compiled programs are kept in a per-run compilation cache (many rows compile the same
tiny programs).
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from conformance import SCENARIOS  # noqa: E402

HERE = Path(__file__).parent

ARGS = {
    "torch": ["tests/keras_cases.py", "tests/test_contract.py", "tests/test_microbatch.py",
              "-k", "not test_microbatch or (keras and not graph_mode and not torch_backend)"],
    "jax": ["tests/keras_cases.py", "tests/test_contract.py",
            *[f"--deselect=tests/keras_cases.py::test_conformance[{s.name}-3]" for s in SCENARIOS]],
}


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the main process runs the TensorFlow leg")
def _seam_jax_cache_safe() -> bool:
    """JAX's persistent compilation cache speeds the JAX leg up; on jax releases the Keras seam does not
    call safe with it (``hpcallbacks_keras._seam.JAX_CACHE_SAFE``: the floor's 0.4.38) the leg runs
    without it, as the adapter warns users to."""
    from hpcallbacks._versions import at_least
    from hpcallbacks_keras._seam import JAX_CACHE_SAFE_FROM

    return at_least("jax", JAX_CACHE_SAFE_FROM)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_tests_on_another_backend(backend, tmp_path):
    pytest.importorskip(backend, reason=f"{backend} is not installed in this environment, so Keras' {backend} backend "
                        "cannot run here (this leg runs where it is installed)")
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               HPCALLBACKS_CONTRACT="keras")
    if backend == "jax" and _seam_jax_cache_safe():
        env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               *ARGS[backend]]
    proc = subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    # what ran: every contract row, none skipped, and the Keras cases (the few skips they declare for a backend aside)
    ran: dict[str, int] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        if case.find("skipped") is None:
            ran[module] = ran.get(module, 0) + 1
        elif module == "test_contract" and case.get("name", "").startswith("test_row"):
            pytest.fail(f"a contract row was skipped on {backend}: {case.get('name')}")
    from contract import ROWS

    assert ran.get("test_contract", 0) >= len(ROWS) and ran.get("keras_cases", 0) > 50, ran
    if backend == "torch":
        assert ran.get("test_microbatch", 0) >= 4, ran
