"""hpcallbacks.torch.snapshot and .params without a trainer: undo trial updates, resolve scheduled values."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hpcallbacks import ParamSchedule  # noqa: E402
from hpcallbacks import finder as F  # noqa: E402
from hpcallbacks import schedules as S  # noqa: E402
from hpcallbacks.torch import Snapshot, check_disjoint, range_test, resolve_param_target  # noqa: E402


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.2), nn.Linear(4, 1))


def test_snapshot_restores_weights_buffers_optimizer_and_rng_bit_identically():
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    x = torch.randn(8, 3)
    model(x).sum().backward()
    opt.step()  # some Adam state to keep
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [opt.state[p]["exp_avg"].clone() for p in model.parameters()]
    lr = opt.param_groups[0]["lr"]
    snap = Snapshot(model, [opt])
    expected_draw = torch.rand(3)
    torch.set_rng_state(snap.rng["torch"])
    result = range_test(F.RangeTest(F.lr_range(1e-4, 1.0, 20), min_steps=1), opt, lambda: model(x).pow(2).mean())
    opt.param_groups[0]["extra"] = 1.0
    snap.restore()
    assert len(result.losses) >= 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert all(torch.equal(m, opt.state[p]["exp_avg"]) for m, p in zip(moments, model.parameters()))
    assert opt.param_groups[0]["lr"] is lr and torch.equal(lr, torch.tensor(0.01))  # the same tensor, refilled
    assert "extra" not in opt.param_groups[0]
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.rand(3), expected_draw)


def test_range_test_uses_each_groups_factor_and_accumulates():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr_factor": 0.5}, {"params": [model.bias]}], lr=1.0)
    seen, calls = [], []

    def loss():
        calls.append(1)
        seen.append([g["lr"] for g in opt.param_groups])
        return model(torch.ones(1, 2)).sum() * 0 + 1.0

    result = range_test(F.RangeTest(F.lr_range(1e-3, 1e-1, 3)), opt, loss, accumulation=2)
    assert len(calls) == 6 and result.losses == (1.0, 1.0, 1.0)
    assert seen[0] == [pytest.approx(5e-4), pytest.approx(1e-3)] and seen[4] == [pytest.approx(5e-2),
                                                                                  pytest.approx(1e-1)]


def test_param_targets_resolve_set_and_refuse():
    model = net()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    momentum = resolve_param_target("momentum", model, [sgd])
    drop = resolve_param_target("model.2", model, [sgd], owner="model")
    every = resolve_param_target("dropout", model, [sgd])
    momentum.set(0.8)
    drop.set(0.4)
    assert sgd.param_groups[0]["momentum"] == 0.8 and model[2].p == 0.4 and every.attrs == [(model[2], "p")]
    with pytest.raises(ValueError, match="'optimizer.momentum' and 'momentum' set the same value"):
        check_disjoint(["momentum", "optimizer.momentum"], [momentum, resolve_param_target("optimizer.momentum",
                                                                                          model, [sgd])])
    with pytest.raises(ValueError, match=r"'momentum' must stay in \[0, 1\]"):
        momentum.check_schedule(ParamSchedule("momentum", S.Constant(1.5)), 0, 10)
    with pytest.raises(ValueError, match="names optimizer 2 but the Trainer has 1"):
        resolve_param_target("optimizer.2.momentum", model, [sgd], optimizers_from="the Trainer has")
    with pytest.raises(ValueError, match="'model.nope': 'nope' of the model is no attribute"):
        resolve_param_target("model.nope", model, [sgd], owner="model")
    with pytest.raises(ValueError, match="is a learning rate"):
        resolve_param_target("optimizer.lr", model, [sgd])


def test_batches_cycle_and_close():
    from hpcallbacks.torch import Batches

    def gen():
        yield from range(3)

    class Loader:
        def __iter__(self):
            return gen()

    batches = Batches(Loader())
    assert [batches.next() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0] and batches.count == 7
    it = batches.it
    batches.close()
    assert batches.it is None and next(it, "closed") == "closed"
    Batches([1, 2]).close()  # a list iterator has no close: nothing to do


def test_set_base_lr_sets_every_groups_lr_times_its_factor():
    from hpcallbacks.torch import set_base_lr

    model = net()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr_factor": 0.5, "base_lr": 1.0, "initial_lr": 1.0},
                           {"params": model[3].parameters(), "lr": torch.tensor(0.3)}], lr=0.1)
    set_base_lr(opt, 0.02)
    first, second = opt.param_groups
    assert (first["lr"], first["initial_lr"], first["base_lr"]) == (0.01, 0.01, 0.02)
    assert isinstance(second["lr"], torch.Tensor) and float(second["lr"]) == pytest.approx(0.02)
    assert "initial_lr" not in second and "base_lr" not in second


def test_param_schedules_resolved_checked_and_set_together():
    from hpcallbacks.torch import check_param_schedules, resolve_param_targets, set_params

    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedules = (ParamSchedule("momentum", S.Constant(0.8)), ParamSchedule("module.2.p", S.Constant(0.3)))
    targets = resolve_param_targets(schedules, model, [opt], owner="model")
    check_param_schedules(schedules, targets, 0, 100)
    assert set_params(schedules, targets, 5) == [0.8, 0.3]
    assert opt.param_groups[0]["momentum"] == 0.8 and model[2].p == 0.3
    with pytest.raises(ValueError, match="'optimizer.momentum' and 'momentum' set the same value"):
        resolve_param_targets((schedules[0], ParamSchedule("optimizer.momentum", S.Constant(0.9))), model, [opt])
    with pytest.raises(ValueError, match="X: 'momentum' must stay in"):
        check_param_schedules((ParamSchedule("momentum", S.Constant(1.5)),), targets[:1], 0, 10, who="X")


def test_optimizer_values_are_what_the_advisor_reads():
    from hpcallbacks.torch import as_float, optimizer_kind, optimizer_values

    model = net()
    adam = torch.optim.AdamW([{"params": model[0].parameters(), "weight_decay": 0.0},
                              {"params": model[3].parameters(), "weight_decay": 0.05}], lr=1e-3, eps=1e-7)
    assert optimizer_values(adam, optimizer_kind(adam)) == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                                                            "weight_decay": 0.05}
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert optimizer_values(sgd, optimizer_kind(sgd)) == {"momentum": 0.9, "weight_decay": 0.0}
    assert as_float(torch.tensor(0.5)) == 0.5 and as_float(2) == 2.0
