"""Two CPU ranks: Lightning ``strategy="ddp"`` and HF under ``torchrun --nproc_per_node=2`` (gloo).

Each framework is launched once for all its scenarios (``tests/_distributed_run.py``: staged
unfreezing, the extras, the micro-batch finder, the trial reporter), in a module-scoped fixture; each
test reads its scenario's per-rank results. A launch per scenario paid the imports and the process
group of both ranks eight times (about 13-20 s each, both cores busy).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcallbacks import gan as G

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Launch:
    out: Path
    done: subprocess.CompletedProcess

    def scenario(self, name: str) -> Path:
        """The scenario's folder once both ranks finished it; else fail with what the launch said."""
        folder = self.out / name
        if all((folder / f"ok-rank{r}").exists() for r in (0, 1)):
            return folder
        errors = "".join(p.read_text() for p in sorted(folder.glob("error-rank*.txt")))
        pytest.fail(f"scenario {name!r} did not finish on both ranks (exit {self.done.returncode}):\n"
                    f"{errors or self.done.stderr[-3000:]}")

    def ranks(self, name: str) -> list[dict]:
        folder = self.scenario(name)
        return [json.loads((folder / f"rank{r}.json").read_text()) for r in (0, 1)]


def launch(framework: str, out: Path) -> Launch:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    script = [str(HERE / "_distributed_run.py"), framework, str(out)]
    if framework == "hf":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                   *script]
    else:
        command = [sys.executable, *script]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return Launch(out, done)


@pytest.fixture(scope="module")
def lightning_ddp(tmp_path_factory):
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("optuna")
    return launch("lightning", tmp_path_factory.mktemp("lightning-ddp"))


@pytest.fixture(scope="module")
def hf_torchrun(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("optuna")
    return launch("hf", tmp_path_factory.mktemp("hf-torchrun"))


# -- staged unfreezing --------------------------------------------------------------------------------
def test_lightning_ddp_ranks_stay_identical_through_unfreeze_and_norm_swap(lightning_ddp):
    """BackboneFinetuning's ranks diverge after the unfreeze (a parameter frozen when DDP wrapped the model
    is never all-reduced); with SwapNorm + StagedUnfreeze the weights are identical on both ranks at every
    update, frozen parameters get no gradient, and only rank 0 writes logs."""
    folder = lightning_ddp.scenario("unfreeze")

    def load(run):
        return [json.loads((folder / f"{run}-rank{r}.json").read_text()) for r in (0, 1)]

    for rank in load("anchor"):  # the anchor: ranks silently diverge once the backbone trains
        assert not rank["end_same"] and not all(row[1] for row in rank["rows"])
    for rank in load("ours"):
        assert all(same for _, same, _ in rank["rows"]) and rank["end_same"]
        assert [row[2] for row in rank["rows"]] == [[False, False, True]] * 4 + [[True, True, True]] * 8
        assert rank["frozen_grads"] == 0 and rank["norms"] == ["GroupNorm"] and rank["find_unused"]
    logs = sorted(p.relative_to(folder) for p in (folder / "logs").rglob("metrics.csv"))
    assert len(logs) == 1  # rank 0 only
    assert "lr/backbone" in (folder / logs[0]).read_text().splitlines()[0]


def test_lightning_ddp_fine_tune_keeps_ranks_identical(lightning_ddp):
    """FineTune under DDP: the recipe's head stage, then every group; the ranks hold the same weights at every
    update, frozen parameters get no gradient, DDP looks for unused parameters (frozen groups)."""
    folder = lightning_ddp.scenario("unfreeze")
    for rank in (json.loads((folder / f"finetune-rank{r}.json").read_text()) for r in (0, 1)):
        assert all(same for _, same, _ in rank["rows"]) and rank["end_same"]
        assert [row[2] for row in rank["rows"]] == [[False, False, True]] * 4 + [[True, True, True]] * 8
        assert rank["frozen_grads"] == 0 and rank["find_unused"]


def test_hf_torchrun_staged_unfreeze_keeps_ranks_identical(hf_torchrun):
    """A tiny BERT whose encoder the user froze, gradual unfreezing + CosineRestart: the ranks hold the same
    weights at every update, frozen parameters get no gradient, a layer stays bit-identical until its stage."""
    ranks = hf_torchrun.ranks("unfreeze")
    assert ranks[0]["world"] == 2
    assert ranks[0]["rows"] == ranks[1]["rows"]
    rows = ranks[0]["rows"]
    assert [r["update"] for r in rows] == list(range(12))  # 32 samples / 4 per rank / 2 ranks = 4 updates per epoch
    assert all(r["same"] for r in rows)  # weights identical across ranks at the start of every update
    assert not any(r["frozen_grad"] for r in rows)
    counts = [r["trainable"] for r in rows]
    assert counts[0] < counts[4] < counts[8] and len(set(counts[:4])) == len(set(counts[4:8])) == 1
    assert not any(r["layer0_moved"] for r in rows[:9]) and rows[-1]["layer0_moved"]  # bit-identical until its stage


def test_hf_torchrun_fine_tune_keeps_ranks_identical(hf_torchrun):
    """FineTune under torchrun: the same weights on both ranks at every update, no gradient on frozen parameters,
    the head's epoch (4 updates) then every group, each group at its factor of the recipe's schedule."""
    folder = hf_torchrun.scenario("unfreeze")
    ranks = [json.loads((folder / f"finetune-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rows"] == ranks[1]["rows"]
    rows = ranks[0]["rows"]
    assert [r["update"] for r in rows] == list(range(12)) and all(r["same"] for r in rows)
    assert not any(r["frozen_grad"] for r in rows)
    counts = [r["trainable"] for r in rows]
    assert len(set(counts[:4])) == len(set(counts[4:])) == 1 and counts[0] < counts[4]
    assert len(rows[5]["lrs"]) > 1  # per-group factors


# -- extras: accumulation, range test, label flips ----------------------------------------------------
@pytest.mark.parametrize("framework", ["lightning", "hf"])
def test_accumulation_range_test_and_flips(framework, request):
    """GradientAccumulation counts both ranks (16 = 4 x 2 ranks x 2), the range test runs through DDP (the
    same suggestion on both ranks, weights restored, ranks identical at the end), LabelFlip numbers the
    samples of the whole update across ranks and micro-batches."""
    ranks = request.getfixturevalue({"lightning": "lightning_ddp", "hf": "hf_torchrun"}[framework]).ranks("extras")
    for r in ranks:
        assert (r["accumulate"], r["world"], r["global_step"]) == (2, 2, 4) and r["restored"]
    assert ranks[0]["suggestion"] == ranks[1]["suggestion"] and ranks[0]["suggestion"] > 0
    assert ranks[0]["weights"] == ranks[1]["weights"]
    core = G.LabelFlip(0.5, seed=3)
    for update in range(4):  # micro-batch m of rank r holds samples (m * 2 + r) * 4 .. + 3 of the update
        whole = core.targets(update, [1.0] * 16)
        for m in range(2):
            for r in range(2):
                assert ranks[r]["flips"][2 * update + m] == whole[(m * 2 + r) * 4:(m * 2 + r + 1) * 4]


# -- the micro-batch finder ------------------------------------------------------------------------------
def test_lightning_ddp_microbatch_takes_the_minimum_over_ranks(lightning_ddp):
    """Target 64 = 8 per rank x accumulation 4 x 2 ranks; when rank 1 fits only 4, both ranks take 4 x 8."""
    ranks = lightning_ddp.ranks("microbatch")
    for r in ranks:
        assert (r["micro_batch_size"], r["accumulation"], r["world"], r["batch_size"]) == (8, 4, 2, 8)
        assert (r["uneven"], r["global_step"]) == ([4, 8], 4) and r["restored"]
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_hf_torchrun_microbatch_takes_the_minimum_over_ranks(hf_torchrun):
    """64 = 8 per rank x 4 x 2 ranks; with rank 1 fitting only 4, 4 x 8."""
    for r in hf_torchrun.ranks("microbatch"):  # micro-batch, accumulation, updates, world size, per-device batch
        assert r == {"even": [8, 4, 4, 2, 8], "uneven": [4, 8, 4, 2, 4]}


# -- the trial reporter -----------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", ["lightning", "hf"])
def test_trial_ranks_share_params_and_stop_together(framework, request):
    """Every rank trains with rank 0's draw (``shared_params``), and a pruner that prunes at step 1 stops both
    ranks after the same epoch (the other rank would hang in its next collective)."""
    zero, one = request.getfixturevalue({"lightning": "lightning_ddp", "hf": "hf_torchrun"}[framework]).ranks("trial")
    assert len(zero["trials"]) == len(one["trials"]) == 2
    for mine, other in zip(zero["trials"], one["trials"]):
        assert mine["params"] == other["params"] == mine["sampled"]  # rank 0's draw, on both ranks
        assert mine["sampled"] != other["sampled"]  # rank 1 drew something else itself
        assert mine["lr_used"] == other["lr_used"] == next(iter(mine["sampled"].values()))  # the optimizers' LR
        assert mine["epochs"] == other["epochs"] == 2  # both stopped after epoch 1 (the forced prune)
        assert mine["pruned_step"] == other["pruned_step"] == 1
    assert zero["states"] == ["PRUNED", "PRUNED"]
