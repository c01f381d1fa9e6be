"""The contract table (tests/contract.py), every row through every adapter.

Lightning and HF run in this process; Keras runs here on the backend of this process (TensorFlow)
and once more on the torch and on the JAX backend, each in a subprocess (``KERAS_BACKEND=torch``,
``KERAS_BACKEND=jax``), as the other Keras tests do.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from contract import IDS, ROWS, check

HERE = Path(__file__).parent

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
    pytest.mark.filterwarnings("ignore:.*Checkpoint directory.*exists and is not empty.*"),
]


def _driver(framework: str):
    if framework == "lightning":
        pytest.importorskip("lightning.pytorch")
        import contract_lightning as driver
    elif framework == "hf":
        pytest.importorskip("transformers")
        import contract_hf as driver
    else:
        pytest.importorskip("keras")
        import contract_keras as driver
    return driver


FRAMEWORKS = [f for f in os.environ.get("HPCALLBACKS_CONTRACT", "lightning,hf,keras").split(",") if f]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_row(framework, row, tmp_path):
    driver = _driver(framework)
    check(row, driver.run_row(row, tmp_path), driver.ADAPTER)


def test_every_point_of_the_contract_issue_has_a_row():
    covered = {p for row in ROWS for p in row.points}
    assert covered >= set(range(1, 17)), sorted(set(range(1, 17)) - covered)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "keras" not in FRAMEWORKS,
                    reason="the main process runs the TensorFlow leg; this test starts the other backends' legs")
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_backend_leg(backend):
    pytest.importorskip("keras")
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               HPCALLBACKS_CONTRACT="keras")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_contract.py"),
               "-k", "test_row"]
    proc = subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
