"""The order in which ``make test``'s two worker processes get the test files: slowest first.

pytest-xdist (``--dist loadfile --no-loadscope-reorder``) hands whole files to the workers in
collection order, the next file to whichever worker is free. Started longest first, the two
workers end within about one short file of each other; by default xdist orders files by their
number of tests, which puts the few long subprocess tests (the other Keras backends, the demo)
last, with one worker idle while the other runs them. ``SECONDS`` are the files' measured test
times on the 2-core CI machine (``pytest --durations=0``, summed per file); a file not listed
counts as 0 and keeps its place. A stale figure only changes the order, never a result.
"""
from __future__ import annotations

SECONDS = {
    "test_keras.py": 157, "test_contract.py": 150, "test_keras_backends.py": 143, "test_demo.py": 99,
    "test_microbatch.py": 92, "test_hf.py": 87, "test_schedules.py": 56, "test_hf_extras.py": 44,
    "test_schedules_reference.py": 40, "test_search.py": 37, "test_distributed.py": 35,
    "test_keras_distributed.py": 23, "test_readme.py": 19, "test_trial_reporter.py": 11, "test_cross_framework.py": 8,
    "test_lightning.py": 6, "test_lightning_extras.py": 3,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -SECONDS.get(item.path.name, 0))  # stable: each file's own order is kept
