"""The contract table (tests/contract.py), every row through every adapter.

Lightning and HF run in this process; Keras runs here on the backend of this process (TensorFlow)
and once more on the torch and on the JAX backend, each in a subprocess with the other Keras tests
(``tests/test_keras_backends.py`` runs this file there with ``HPCALLBACKS_CONTRACT=keras``); and once more under
``tf.distribute.MirroredStrategy`` on two logical CPUs (``HPCALLBACKS_CONTRACT_STRATEGY=mirrored``,
a subprocess: the devices are configured before TensorFlow initialises), the rows of
``contract_keras.MIRRORED_ROWS``, each also against the same row on one device (final weights).
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
    reason = getattr(driver, "left_out", lambda row: None)(row)
    if reason:
        pytest.skip(reason)
    check(row, driver.run_row(row, tmp_path), driver.ADAPTER)


def test_every_point_of_the_contract_issue_has_a_row():
    covered = {p for row in ROWS for p in row.points}
    assert covered >= set(range(1, 17)), sorted(set(range(1, 17)) - covered)


TF_LEG = (os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" and "keras" in FRAMEWORKS
          and not os.environ.get("HPCALLBACKS_CONTRACT_STRATEGY"))


@pytest.mark.skipif(not TF_LEG, reason="the main process runs the TensorFlow leg; this test starts the mirrored leg")
def test_keras_mirrored_leg():
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               HPCALLBACKS_CONTRACT="keras", HPCALLBACKS_CONTRACT_STRATEGY="mirrored")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_contract.py"),
               "-k", "test_row"]
    proc = subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    import contract_keras

    assert f"{len(contract_keras.MIRRORED_ROWS)} passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout
