"""hpcallbacks.search (handbook H8): the H2 table as a search space, the trial reporter, PBT's LR scale, the verb."""
from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpcallbacks import defaults as D
from hpcallbacks import schedules as S
from hpcallbacks.advice import OPTIMIZERS, ROWS
from hpcallbacks.plans import FreezePlan, fine_tune_learning_rate
from hpcallbacks.search import (
    TOY,
    TOY_SPACE,
    TUNABLE,
    Reporter,
    ScaledSchedule,
    deserialize,
    pbt_checkpoint,
    pbt_restore,
    pruned_message,
    rank_zero_decides,
    space,
    toy_train,
)

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)
PNG = b"\x89PNG\r\n\x1a\n"
TESTS = Path(__file__).resolve().parent
OWN = {"sgd": (), "sgd_momentum": ("momentum",), "nesterov": ("momentum",), "adam": ("beta_1", "beta_2", "epsilon"),
       "adamw": ("beta_1", "beta_2", "epsilon")}


# ------------------------------------------------------------------------------------ the space
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_thousand_configurations_per_optimizer_pass_the_advisor(optimizer):
    """1,000 configurations through Optuna's RandomSampler (from scratch), 1,000 plain draws (fine-tuning,
    every single recommended value searched): no finding of severity "warning"; none at all untuned."""
    s = space(optimizer)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(1000):
        trial = study.ask()
        params = s.suggest(trial)
        assert s.findings(params) == [], params
        s.validate(params)
        seen.add((params["batch_size"], params["schedule"]))
        study.tell(trial, 0.0)
    assert len(seen) == len(s["batch_size"].choices) * len(s["schedule"].choices)  # every choice drawn
    tuned = space(optimizer, fine_tuning=True, tune=OWN[optimizer])
    rng = random.Random(1)
    for _ in range(1000):
        params = tuned.sample(rng)
        findings = tuned.findings(params)
        assert not [f for f in findings if f.severity == "warning"], (params, findings)
        assert {f.row for f in findings} <= set(OWN[optimizer])  # only the tuned single values, as "info"
        built = tuned.build(params, steps_per_epoch=7, epochs=3)
        assert 0 <= built.schedule(0) <= params["learning_rate"] * (1 + 1e-9)


def test_the_ranges_are_the_table_rows():
    for optimizer, key in OPTIMIZERS.items():
        row = ROWS[key]
        lr = space(optimizer)["learning_rate"]
        assert (lr.kind, lr.low, lr.high) == ("log", row.low, row.high)
        ft = space(optimizer, fine_tuning=True)["learning_rate"]
        assert (ft.low, ft.high) == (fine_tune_learning_rate(row.low, 2), fine_tune_learning_rate(row.high, 1))
        for name in OWN[optimizer]:
            assert space(optimizer)[name].value == ROWS[name].low  # the handbook's one value, fixed
            tuned = space(optimizer, tune=[name])[name]
            assert (tuned.low, tuned.high) == TUNABLE[name][:2] and tuned.low < ROWS[name].low < tuned.high
    s = space("adam")
    assert (s["weight_decay"].low, s["weight_decay"].high) == (0.0, 5e-4)
    assert (s["dropout"].low, s["dropout"].high) == (0.2, 0.5)
    assert all(1 <= b <= 1024 for b in s["batch_size"].choices)
    assert set(s["schedule"].choices) <= set(D.FAMILIES) and s["plan"].value == "all_trainable"
    assert all(hasattr(FreezePlan, p) for p in space("adam", fine_tuning=True)["plan"].choices)
    assert "momentum" not in space("sgd").names and "beta_1" not in space("sgd_momentum").names


@pytest.mark.parametrize("kwargs, named", [
    ({"optimizer": "adm"}, "optimizer"),
    ({"fine_tuning": "yes"}, "fine_tuning"),
    ({"tune": ["beta1"]}, "tune"),
    ({"optimizer": "sgd", "tune": ["momentum"]}, "tune"),
    ({"optimizer": "adam", "tune": "momentum"}, "tune"),
    ({"batch_sizes": [64, 4096]}, "batch_sizes[1]"),
    ({"batch_sizes": []}, "batch_sizes"),
    ({"schedules": ["CosineDecay", "Cosine"]}, "schedules[1]"),
    ({"schedules": ["MultiStepDecay"]}, "schedules[0]"),  # needs its milestones: nothing to default from the run
    ({"plans": ["recommend"]}, "plans[0]"),
])
def test_bad_arguments_name_the_argument(kwargs, named):
    with pytest.raises(ValueError, match="^" + re.escape(named)):
        space(**kwargs)


def test_ray_param_space_uses_tune_domains_and_stays_in_the_rows():
    pytest.importorskip("ray.tune")
    from ray.tune.search.sample import Categorical, Float

    s = space("nesterov", tune=["momentum"])
    ps = s.to_ray()
    assert isinstance(ps["learning_rate"], Float) and isinstance(ps["schedule"], Categorical)
    assert (ps["learning_rate"].lower, ps["learning_rate"].upper) == (1e-3, 1e-2)
    assert ps["plan"] == "all_trainable" and isinstance(ps["momentum"], Float)
    draws = {k: (v.sample(size=1000, random_state=0) if hasattr(v, "sample") else [v] * 1000) for k, v in ps.items()}
    for i in range(1000):
        params = {k: v[i] for k, v in draws.items()}
        assert not [f for f in s.findings(params) if f.severity == "warning"], params


def test_build_gives_the_callbacks_objects():
    s = space("adam", fine_tuning=True, plans=["gradual", "head_then_all"])
    params = s.recipe()
    assert params["learning_rate"] == pytest.approx(3e-4) and params["plan"] == "gradual"
    params.update(schedule="OneCycle", plan="head_then_all")
    built = s.build(params, steps_per_epoch=20, epochs=4, bn="freeze_all")
    assert built.schedule == S.OneCycle(params["learning_rate"], total_steps=80)
    assert built.plan == FreezePlan.head_then_all(bn="freeze_all")
    assert (built.batch_size, built.weight_decay, built.dropout) == (128, 5e-4, 0.35)
    assert built.optimizer_values == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}
    scaled = s.build(params, steps_per_epoch=20, epochs=4, lr_scale=0.5).schedule
    assert isinstance(scaled, ScaledSchedule) and scaled(10) == pytest.approx(built.schedule(10) * 0.5)
    assert space("nesterov").build(space("nesterov").recipe(), 5, 2).optimizer_values == {
        "momentum": 0.9, "nesterov": True}
    with pytest.raises(ValueError, match=r"params\['learning_rate'\] must be log-uniform \[1e-05, 0.001\]"):
        s.build({**params, "learning_rate": 3e-3}, steps_per_epoch=20, epochs=4)
    with pytest.raises(ValueError, match="params lacks dropout"):
        s.build({k: v for k, v in params.items() if k != "dropout"}, steps_per_epoch=20, epochs=4)


# --------------------------------------------------------------------------------- the reporter
def test_an_optuna_study_prunes_bad_trials_where_their_training_stops():
    """A plain training loop (toy_train: SGD on a linear regression, the schedule of the configuration) with a
    Reporter; three good configurations, then deliberately bad ones (the LR at the bottom of the row,
    decaying tenfold, big batches): the MedianPruner prunes, and a pruned trial trained exactly up to
    the epoch at which it was pruned."""
    s = TOY_SPACE
    good = {**s.recipe(), "learning_rate": 1e-2, "batch_size": 8, "schedule": "Constant"}
    bad = {**good, "learning_rate": 1e-3, "batch_size": 64, "schedule": "ExponentialDecay"}
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    for params in [good] * 3 + [bad] * 3:
        study.enqueue_trial(params)
    trained = {}

    def objective(trial):
        reporter = Reporter(trial, monitor="val_mse")
        value = toy_train(s.suggest(trial), reporter, space=s, epochs=6, seed=trial.number)
        trained[trial.number] = (len(reporter.history), reporter.pruned_step, reporter.message)
        reporter.raise_if_pruned()
        return value

    study.optimize(objective, n_trials=6)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert [t.number for t in pruned] == [3, 4, 5]
    for t in pruned:
        epochs, step, message = trained[t.number]
        assert step == 1 and epochs == step + 1 < 6  # stopped after the epoch the pruner judged
        assert sorted(t.intermediate_values) == list(range(step + 1))
        assert message == pruned_message("TrialReporter", "val_mse", t.intermediate_values[step], step, t.number)
    assert all(trained[n][0] == 6 and trained[n][1] is None for n in (0, 1, 2))


class FakeTrial:
    number = 3

    def __init__(self, prune_at):
        self.prune_at, self.reported = prune_at, {}

    def report(self, value, step):
        self.reported[step] = value

    def should_prune(self):
        return max(self.reported) >= self.prune_at


def test_rank_zero_decides_for_every_rank():
    """Two ranks (threads): rank 0 holds the trial, rank 1 none; both stop at rank 0's word, at the same epoch."""
    box, barrier = {}, threading.Barrier(2)

    def broadcast_from(rank):
        def broadcast(obj):
            if rank == 0:
                box["obj"] = obj
            barrier.wait()
            value = box["obj"]
            barrier.wait()
            return value
        return broadcast

    stopped = {}

    def rank(r):
        reporter = Reporter(FakeTrial(prune_at=2) if r == 0 else None, "val_loss", broadcast=broadcast_from(r))
        for epoch in range(5):
            if reporter.report(1.0 + r, epoch):  # rank 1's own value and wish do not count
                break
        stopped[r] = (epoch, reporter.pruned_step)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert stopped == {0: (2, 2), 1: (2, 2)}
    assert rank_zero_decides(False) is False and rank_zero_decides(0, lambda obj: obj) is False


def test_reporter_messages_and_arguments():
    r = Reporter(FakeTrial(prune_at=0), "val_accuracy")
    assert r.report(0.5, 0) and r.pruned and r.message == (
        "TrialReporter: trial 3 pruned at epoch 0 (val_accuracy = 0.5): training stops here, the study records it "
        "as pruned")
    with pytest.raises(optuna.TrialPruned, match="trial 3 pruned at epoch 0"):
        r.raise_if_pruned()
    Reporter(FakeTrial(prune_at=9), "x").raise_if_pruned()  # not pruned: nothing
    assert Reporter(None, "x", is_main=False).report(1.0, 0) is False
    assert Reporter("ray", "x").backend == "ray"
    with pytest.raises(ValueError, match="^trial must be an Optuna trial"):
        Reporter(object(), "x")
    with pytest.raises(ValueError, match="^monitor"):
        Reporter(None, "")
    with pytest.raises(ValueError, match="^step"):
        Reporter(FakeTrial(1), "x").report(1.0, -1)
    with pytest.raises(ValueError, match=r"monitor 'val_loss' was not logged at this epoch's end \(logged: loss; no "
                                         r"validation metric at all: does the run get validation data\?\)"):
        Reporter(None, "val_loss").value_from({"loss": 1.0})
    with pytest.raises(ValueError, match=r"monitor 'val_acc' was not logged.*\(logged: loss, val_accuracy; did you "
                                         r"mean 'val_accuracy'\?\).*Pass monitor= one of the logged keys"):
        Reporter(None, "val_acc").value_from({"loss": 1.0, "val_accuracy": 0.5})
    assert Reporter(None, "val_loss").value_from({"val_loss": 2}) == 2.0


# -------------------------------------------------------------------------------------- PBT
def test_after_an_exploit_the_lr_is_the_donors_schedule_times_the_new_scale():
    s = TOY_SPACE
    donor_params = {**s.recipe(), "schedule": "CosineDecay", "lr_scale": 1.25}
    donor = s.build(donor_params, steps_per_epoch=10, epochs=10).schedule
    assert isinstance(donor, ScaledSchedule) and donor.scale == 1.25
    checkpoint = json.loads(json.dumps(pbt_checkpoint(donor, update=37, weights=[0.5])))  # through JSON, as saved
    update, schedule = pbt_restore(checkpoint, scale=0.8)
    assert update == 37 and checkpoint["weights"] == [0.5]
    base = donor.base
    for t in (37, 38, 60, 99, 150):
        assert schedule(t) == pytest.approx(base(t) * 0.8, rel=1e-15)
    assert schedule(37) != donor(37)
    assert ScaledSchedule.from_config(schedule.get_config()) == schedule
    assert deserialize(S.serialize(schedule)) == schedule
    assert deserialize(S.serialize(base)) == base
    assert "ScaledSchedule" not in S.SCHEDULES  # the core's families are unchanged
    assert schedule.rescaled(2.0)(50) == pytest.approx(base(50) * 2.0)
    low, high = s.scale_bounds(donor_params)
    assert low * donor_params["learning_rate"] == pytest.approx(1e-3) and high * donor_params["learning_rate"] == (
        pytest.approx(1e-2))
    with pytest.raises(ValueError, match="^scale"):
        ScaledSchedule(S.Constant(0.1), 0.0)
    with pytest.raises(ValueError, match="^checkpoint must be"):
        pbt_restore({"update": 3}, 1.0)


# ------------------------------------------------------------------------------- the verb
def run_cli(*args, cwd, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "hpcallbacks", "search", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


TASK_FILE = '''
import os
from pathlib import Path

from hpcallbacks.search import TOY, Task, toy_train

RUNS = Path(__file__).with_name("runs.log")


def train(params, reporter, **kwargs):
    with RUNS.open("a") as f:  # one line per run of a trial: which trial, which process
        f.write(f"{reporter.trial.number} {os.getpid()}\\n")
    return toy_train(params, reporter, **kwargs)


TASK = Task(train, monitor="val_mse", direction="minimize", optimizer="sgd_momentum",
            space_kwargs=dict(TOY.space_kwargs), epochs=3, description="toy, logged")
'''


def test_two_workers_share_one_study_through_a_journal_file(tmp_path):
    (tmp_path / "task.py").write_text(TASK_FILE)
    journal = tmp_path / "study.journal"
    out = run_cli("--task", "task.py:TASK", "--trials", "8", "--workers", "2", "--storage", str(journal),
                  "--out", "out", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2 worker processes: [4, 4] trials" in out.stdout
    runs = [tuple(map(int, line.split())) for line in (tmp_path / "runs.log").read_text().split("\n") if line]
    numbers = sorted(n for n, _ in runs)
    assert numbers == list(range(8))  # none lost, none run twice
    assert len({pid for _, pid in runs}) == 2  # both workers ran trials
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="hpcallbacks-task-sgd_momentum",
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    states = {t.number: t.state for t in study.trials}
    assert sorted(states) == list(range(8))
    assert set(states.values()) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert study.trials[0].user_attrs["recipe"] is True
    # the study resumes: two more trials to reach ten, in this process, the first eight untouched
    again = run_cli("--task", "task.py:TASK", "--trials", "10", "--storage", str(journal), "--out", "out", "--quiet",
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    runs = [int(line.split()[0]) for line in (tmp_path / "runs.log").read_text().split("\n") if line]
    assert sorted(runs) == list(range(10))


def test_search_verb_end_to_end(tmp_path):
    """``hpcallbacks search --trials 8 --epochs 2`` on the demo's digits task: the table, the best configuration
    beside the recipe's, the picture; the SQLite study in the output folder."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = run_cli("--trials", "8", "--epochs", "2", "--out", "out", "-o", "trials.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = out.stdout.split("\n\n#", 1)[1]
    rows = [line for line in table.split("\n") if line[:1].isdigit()]
    assert len(rows) == 8 and "recipe" in rows[0]
    assert "best: trial" in out.stdout and "learning_rate" in out.stdout.split("best: trial", 1)[1]
    assert (tmp_path / "trials.png").read_bytes()[:8] == PNG
    assert (tmp_path / "out" / "hpcallbacks-search.db").exists()
    assert "best: trial" in (tmp_path / "out" / "trials.txt").read_text()
    assert len(json.loads((tmp_path / "out" / "trials.json").read_text())) == 8


def test_search_verb_refuses_bad_arguments(tmp_path):
    bad = run_cli("--task", "nowhere:TASK", "--trials", "2", cwd=tmp_path)
    assert bad.returncode == 2 and "nowhere" in bad.stderr
    bad = run_cli("--optimizer", "sgd", "--tune", "momentum", "--task", "hpcallbacks.search:TOY", cwd=tmp_path)
    assert bad.returncode == 2 and "tune names 'momentum'" in bad.stderr
    bad = run_cli("--trials", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--trials must be >= 1" in bad.stderr


def load_study(spec):
    from hpcallbacks.search import open_storage

    return optuna.load_study(study_name="hpcallbacks-hang-sgd_momentum", storage=open_storage(spec, "."))


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_killed_worker_loses_no_trial(tmp_path, storage):
    """Issue 20, defect 4: ``kill -9`` of the worker during trial 1 leaves it RUNNING; the same command again finds
    it (its process is gone), marks it failed, queues its parameters again and finishes the 3 trials asked,
    saying so. Before: the journal's trial stayed RUNNING for good and the rerun finished 2 (SQLite: failed only
    after its 30 s grace period)."""
    spec = str(tmp_path / "study.journal") if storage == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    args = ["--task", f"{TESTS / '_search_tasks.py'}:HANG", "--trials", "3", "--storage", spec, "--out", "out",
            "--heartbeat", "1", "--grace", "5"]
    marker = tmp_path / "hanging"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HPCALLBACKS_TEST_HANG": str(marker)}
    worker = subprocess.Popen([sys.executable, "-m", "hpcallbacks", "search", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():  # trial 1 has started and hangs
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=60)
    State = optuna.trial.TrialState
    assert [t.state for t in load_study(spec).trials][1:] == [State.RUNNING]
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 trial(s) were left running" in again.stdout
    assert re.search(r"trial 1: left running, its worker process \S+:\d+ is gone: marked failed, queued again as "
                     r"trial 2", again.stdout), again.stdout
    trials = load_study(spec).trials
    assert trials[1].state == State.FAIL and trials[2].params == trials[1].params
    assert sum(t.state in (State.COMPLETE, State.PRUNED) for t in trials) == 3 and len(trials) == 4
    assert re.search(r"\n2\*? +(complete|pruned) .*retry of 1", again.stdout)


def test_stale_rule_for_a_journal_without_optunas_heartbeat(tmp_path):
    """The journal's rule when the worker is not on this machine: a trial whose heartbeat is older than the grace
    period is failed and queued again; one with a fresh heartbeat is left to its worker and said so."""
    import time as clock

    from hpcallbacks.search import HEARTBEAT_ATTR, open_storage, recover_stale_trials

    study = optuna.create_study(storage=open_storage(str(tmp_path / "j.log"), tmp_path))
    for number, age in enumerate((100.0, 1.0)):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        trial.set_user_attr("worker", f"another-host:{number + 1}")
        trial.set_user_attr(HEARTBEAT_ATTR, clock.time() - age)
    lines = recover_stale_trials(study, grace=30)
    assert re.fullmatch(r"trial 0: left running, no heartbeat for 10\d s \(grace period 30 s\): marked failed, "
                        r"queued again as trial 2", lines[0]), lines
    assert re.fullmatch(r"trial 1: running \(worker another-host:2, last heartbeat \d s ago\): left to its worker, "
                        r"counted as one of the trials", lines[1]), lines
    State = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [State.FAIL, State.RUNNING, State.WAITING]
    assert study.trials[2].params == study.trials[0].params
    assert recover_stale_trials(study, grace=30) == [lines[1]]  # once: nothing more to do


def test_missing_database_driver_names_the_package(tmp_path):
    """Issue 20, defect 14: ``--storage mysql://...`` without its driver was a raw ImportError (exit 1)."""
    import importlib.util

    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("MySQLdb is installed here")
    bad = run_cli("--task", "hpcallbacks.search:TOY", "--trials", "1", "--storage", "mysql://me:secret@localhost/db",
                  cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        "hpcallbacks search: error: --storage 'mysql://me:***@localhost/db' needs the database driver MySQLdb, which "
        "is not installed: pip install mysqlclient (or pass a sqlite:/// URL or a journal file)")
    assert "secret" not in bad.stderr + bad.stdout and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------ Ray Tune
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_tune_runs_the_reporter_with_asha(local_ray, tmp_path):
    from hpcallbacks.search import run_ray

    rows = run_ray(TOY, TOY_SPACE, trials=8, epochs=6, out=tmp_path, study_name="asha", seed=0, progress=False)
    assert len(rows) == 8 and rows[0].note == "recipe"
    assert all(r.state in ("complete", "pruned") for r in rows), rows
    stopped = [r for r in rows if r.state == "pruned"]
    assert stopped and all(r.epochs < 6 for r in stopped)  # ASHA ended them early, at a rung
    assert all(not [f for f in TOY_SPACE.findings(r.params) if f.severity == "warning"] for r in rows)


@pytest.mark.slow
def test_ray_pbt_continues_the_donors_schedule_at_the_new_scale(local_ray, tmp_path):
    """PBT over the LR scale: after an exploit, the trial restores the donor's checkpoint (weights and update
    count) and trains at ``donor_schedule(update) * new_scale``."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    s = TOY_SPACE
    params = {**s.recipe(), "schedule": "CosineDecay"}
    low, high = s.scale_bounds(params)
    steps_per_epoch, epochs = 10, 12

    def trainable(config):
        import tempfile

        built = s.build(config, steps_per_epoch=steps_per_epoch, epochs=epochs)
        checkpoint, update, w, restored = tune.get_checkpoint(), 0, 0.0, None
        schedule = built.schedule
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                state = json.loads((Path(folder) / "state.json").read_text())
            update, schedule = pbt_restore(state, config["lr_scale"])
            w = state["w"]
            restored = {"donor_scale": state["scale"], "donor_base_lr": state["base_lr"], "donor_update": update}
        reporter = Reporter("ray", "score")
        for epoch in range(update // steps_per_epoch, epochs):
            first = schedule(update)
            for _ in range(steps_per_epoch):  # gradient descent on (w - 3)^2
                w -= schedule(update) * 20 * (w - 3.0)
                update += 1
            with tempfile.TemporaryDirectory() as folder:
                state = pbt_checkpoint(schedule, update, w=w, base_lr=schedule.base(update))
                (Path(folder) / "state.json").write_text(json.dumps(state))
                reporter.report(-((w - 3.0) ** 2), epoch, checkpoint=tune.Checkpoint.from_directory(folder),
                                lr_scale=config["lr_scale"], first_lr=first, update=update,
                                restored=json.dumps(restored))
            restored = None

    def explore(config):  # keep learning_rate * lr_scale inside the H2 row
        config["lr_scale"] = min(max(config["lr_scale"], low), high)
        return config

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  hyperparam_mutations={"lr_scale": tune.uniform(0.5, 2.0)}, quantile_fraction=0.5,
                                  resample_probability=0.0, custom_explore_fn=explore, synch=True)
    space_ = {**params, "lr_scale": tune.grid_search([0.5, 0.7, 1.5, 2.0])}
    grid = tune.Tuner(trainable, param_space=space_,
                      tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt, reuse_actors=True),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="pbt", verbose=0,
                                                stop={"training_iteration": epochs})).fit()
    exploits = []
    for result in grid:
        assert result.error is None, result.error
        for _, row in result.metrics_dataframe.iterrows():
            restored = json.loads(row["restored"])
            if restored is not None:
                exploits.append((restored, row["first_lr"], row["lr_scale"], row["update"]))
    assert exploits, "PBT exploited no trial"
    for restored, first_lr, scale, update in exploits:
        assert update == restored["donor_update"] + steps_per_epoch  # the count continued from the donor's
        assert first_lr == pytest.approx(restored["donor_base_lr"] * scale, rel=1e-12)
        assert low * (1 - 1e-9) <= scale <= high * (1 + 1e-9)
    assert any(not math.isclose(scale, r["donor_scale"]) for r, _, scale, _ in exploits)  # a perturbed scale
