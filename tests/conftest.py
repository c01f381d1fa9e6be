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

import gc

from hpcallbacks._versions import at_least

SECONDS = {
    "test_keras.py": 122, "test_keras_backends.py": 119, "test_contract.py": 100, "test_demo.py": 90,
    "test_microbatch.py": 53, "test_hf.py": 42, "test_search.py": 32, "test_schedules.py": 31,
    "test_distributed.py": 27, "test_microbatch_ports.py": 19, "test_keras_distributed.py": 19,
    "test_pruning_ports.py": 19, "test_hf_ports.py": 18, "test_hf_extras.py": 15, "test_seam_hf.py": 12,
    "test_trial_reporter.py": 9, "test_cross_framework.py": 6, "test_schedules_reference.py": 5,
    "test_fine_tune.py": 4, "test_seam_keras.py": 4, "test_docs.py": 3, "test_lightning.py": 3, "test_readme.py": 3,
    "test_cli.py": 3, "test_lightning_extras.py": 1,
}


def pytest_configure(config):
    """Warnings of older releases that the frameworks raise themselves, ignored by message only on those
    releases (the floor leg, ``make test-floor``); every other warning stays an error (pyproject)."""
    if not at_least("torch", "2.6"):
        # torch 2.4-2.5 warn at every torch.load without weights_only (transformers 4.x loads its checkpoints so)
        config.addinivalue_line("filterwarnings", "ignore:You are using `torch.load` with `weights_only=False`"
                                ":FutureWarning")
        # torch 2.4's SequentialLR steps its own schedulers with step(0) at each milestone
        config.addinivalue_line("filterwarnings", r"ignore:The epoch parameter in `scheduler.step\(\)` was not "
                                "necessary:UserWarning:torch.optim.lr_scheduler")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -SECONDS.get(item.path.name, 0))  # stable: each file's own order is kept


def pytest_collection_finish(session):
    """Every test module is imported, and with them the frameworks (about 800,000 objects): move them out
    of the garbage collector's way (``gc.freeze``). A full collection then scans only what the tests made
    since: HF's ``Trainer.train()`` runs one at every start (``accelerate``'s ``free_memory``), which took
    about 0.35 s with the frameworks loaded, and Python's own oldest-generation passes walk fewer objects.
    Objects made by the tests are collected as before (the tests that check models are freed still see it)."""
    gc.collect()
    gc.freeze()
