"""Tasks for `hpcallbacks search` in tests (``--task tests/_search_tasks.py:HANG``).

``HANG``: the toy task (:func:`hpcallbacks.search.toy_train`, milliseconds a trial), except that with the
environment variable ``HPCALLBACKS_TEST_HANG`` set to a file path, the trial trained with seed 1 (trial 1
of ``--seed 0``) writes that file and then sleeps: a worker stuck inside a trial, for the test to kill.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from hpcallbacks.search import TOY, Task, toy_train


def hang_train(params, reporter, *, space, epochs=5, seed=0):
    marker = os.environ.get("HPCALLBACKS_TEST_HANG")
    if marker and seed == 1:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(600)
    return toy_train(params, reporter, space=space, epochs=epochs, seed=seed)


HANG = Task(hang_train, monitor=TOY.monitor, direction=TOY.direction, optimizer=TOY.optimizer,
            space_kwargs=TOY.space_kwargs, description="the toy task; trial 1 hangs when asked (tests)")
