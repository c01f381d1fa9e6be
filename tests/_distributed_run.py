"""Every two-process scenario of one framework in one launch, for tests/test_distributed.py.

``python tests/_distributed_run.py lightning OUT_DIR``: the Lightning scenarios, each a fit (or a
study) under ``strategy="ddp", accelerator="cpu", devices=2`` (Lightning relaunches this script for
rank 1, which runs the same scenarios in the same order).

``python -m torch.distributed.run --nproc_per_node=2 tests/_distributed_run.py hf OUT_DIR``: the HF
scenarios, each a ``Trainer`` under torchrun (gloo).

Both ranks import the frameworks and join the process group once for all scenarios (a launch per
scenario paid that four times). Each scenario writes its results into ``OUT_DIR/<scenario>/`` and
then ``ok-rank<r>``; a scenario that raises writes ``error-rank<r>.txt`` (the traceback) and ends
the launch, so the scenarios after it have neither file.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable


def _scenarios(framework: str) -> dict[str, Callable[[str], None]]:
    import _ddp_microbatch_run
    import _ddp_trial_run

    if framework == "lightning":
        import _ddp_extras_run
        import _ddp_run

        return {"unfreeze": _ddp_run.main, "extras": _ddp_extras_run.main, "microbatch": _ddp_microbatch_run.main,
                "trial": lambda out: _ddp_trial_run.main("lightning", out)}
    import _hf_ddp_extras_run
    import _hf_ddp_run

    return {"unfreeze": _hf_ddp_run.main, "extras": _hf_ddp_extras_run.main, "microbatch": _ddp_microbatch_run.hf,
            "trial": lambda out: _ddp_trial_run.main("hf", out)}


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))  # Lightning's rank 0 has neither


def main(framework: str, out: str) -> None:
    for name, run in _scenarios(framework).items():
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        try:
            run(folder)
        except BaseException:
            with open(os.path.join(folder, f"error-rank{_rank()}.txt"), "w") as f:
                f.write(traceback.format_exc())
            raise
        with open(os.path.join(folder, f"ok-rank{_rank()}"), "w"):
            pass
    if framework == "hf":
        # leave without interpreter teardown: gloo's threads sometimes abort a torchrun process there
        # ("terminate called without an active exception") after everything was written
        import torch.distributed as dist

        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
