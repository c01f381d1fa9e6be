"""hpcallbacks.torch: layer groups, optimizer regrouping, LR setting, freezing with BN policies, norm swaps, LARS."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hpcallbacks.batch import lars_trust_ratio  # noqa: E402
from hpcallbacks.torch import (  # noqa: E402
    LARS,
    FrozenBatchNorm2d,
    LayerGroup,
    apply_trainable,
    discover_groups,
    is_kept_eval,
    param_group_index,
    regroup_lr_scheduler,
    regroup_optimizer,
    set_group_lrs,
    swap_norms,
)


# ---------------------------------------------------------------------------------------------
# models shaped like the real ones (named as in transformers), tiny
class Block(nn.Module):
    def __init__(self, d: int = 4) -> None:
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)


class BertLike(nn.Module):
    """bert.embeddings, bert.encoder.layer[i], bert.pooler, classifier."""

    def __init__(self, layers: int = 3) -> None:
        super().__init__()
        self.bert = nn.Module()
        self.bert.embeddings = nn.Module()
        self.bert.embeddings.word_embeddings = nn.Embedding(10, 4)
        self.bert.embeddings.LayerNorm = nn.LayerNorm(4)
        self.bert.encoder = nn.Module()
        self.bert.encoder.layer = nn.ModuleList([Block() for _ in range(layers)])
        self.bert.pooler = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 2)


class GPT2Like(nn.Module):
    """transformer.wte/wpe, transformer.h[i], transformer.ln_f, lm_head tied to wte."""

    def __init__(self) -> None:
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(10, 4)
        self.transformer.wpe = nn.Embedding(8, 4)
        self.transformer.drop = nn.Dropout(0.1)
        self.transformer.h = nn.ModuleList([Block(), Block()])
        self.transformer.ln_f = nn.LayerNorm(4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.transformer.wte.weight


def conv_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.BatchNorm2d(8, affine=False), nn.Flatten(), nn.Linear(8, 2))


def assert_partition(model: nn.Module, groups: list[LayerGroup]) -> None:
    ids = [id(p) for g in groups for p in g.params]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no group"


# ---------------------------------------------------------------------------------------------
def test_bert_like_groups_embeddings_blocks_head():
    model = BertLike()
    groups = discover_groups(model)
    assert [g.name for g in groups] == ["embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1",
                                        "bert.encoder.layer.2", "head"]
    assert groups[0].modules == (model.bert.embeddings,)
    assert groups[-1].modules == (model.bert.pooler, model.classifier)
    assert_partition(model, groups)


def test_gpt2_like_groups_tied_head_belongs_to_embeddings():
    model = GPT2Like()
    groups = discover_groups(model)
    assert [g.name for g in groups] == ["embeddings", "transformer.h.0", "transformer.h.1", "head"]
    assert any(p is model.lm_head.weight for p in groups[0].params)  # tied: first reached in the embeddings
    assert groups[-1].modules[0] is model.transformer.ln_f
    assert_partition(model, groups)


def test_root_parameters_and_stem_name():
    class ViTLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cls_token = nn.Parameter(torch.zeros(4))
            self.patch = nn.Linear(4, 4)
            self.blocks = nn.Sequential(Block(), Block())
            self.norm = nn.LayerNorm(4)

    model = ViTLike()
    groups = discover_groups(model)
    assert [g.name for g in groups] == ["stem", "blocks.0", "blocks.1", "head"]
    assert groups[0].params[0] is model.cls_token
    assert_partition(model, groups)


def test_top_level_children_without_blocks():
    model = conv_net()
    groups = discover_groups(model)
    assert [g.name for g in groups] == ["0", "1", "3", "6"]
    # parameter-less children join the group before them: ReLU after the BN, the affine-free BN after conv 3
    assert isinstance(groups[2].modules[1], nn.BatchNorm2d)
    assert_partition(model, groups)


def test_explicit_groups_names_regexes_modules_lists():
    model = BertLike()
    groups = discover_groups(model, ["bert.embeddings", r"bert\.encoder\.layer\.[01]",
                                     ["bert.encoder.layer.2", model.bert.pooler], model.classifier])
    assert [g.name for g in groups] == ["bert.embeddings", r"bert\.encoder\.layer\.[01]",
                                        "bert.encoder.layer.2+bert.pooler", "classifier"]
    assert len(groups[1].modules) == 2
    assert_partition(model, groups)


def test_explicit_groups_rest_rule():
    model = BertLike()
    groups = discover_groups(model, ["bert.pooler", "classifier"], rest="bottom")
    assert [g.name for g in groups] == ["rest", "bert.pooler", "classifier"]
    assert_partition(model, groups)
    assert discover_groups(model, ["bert.embeddings"], rest="top")[-1].name == "rest"


@pytest.mark.parametrize("groups, rest, message", [
    (["bert.embeddings", "nope"], "error", "groups[1]='nope' matches no module name"),
    (["bert.embeddings", "classifier"], "error", "'bert.encoder.layer.0.attn.weight'"),
    (["bert", "classifier", "bert.pooler"], "error", "is in groups[0] and groups[2]"),
    ("bert", "error", "groups must be a list"),
    ([], "error", "at least one group"),
    ([[]], "error", "groups[0] is an empty list"),
    ([nn.Linear(1, 1)], "bottom", "not part of the model"),
    ([3], "error", "groups[0] must be a module name"),
    (None, "sideways", "rest must be one of"),
])
def test_bad_groups_name_what_to_change(groups, rest, message):
    with pytest.raises(ValueError) as e:
        discover_groups(BertLike(), groups, rest=rest)
    assert message in str(e.value)


# ---------------------------------------------------------------------------------------------
def _step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    model(torch.randn(5, 4)).pow(2).sum().backward()
    opt.step()


def mlp() -> nn.Module:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1)])

        def forward(self, x):
            for layer in self.layers:
                x = torch.tanh(layer(x))
            return x

    torch.manual_seed(0)
    return M()


def test_regroup_adds_frozen_params_names_factors_keeps_state():
    model = mlp()
    for p in model.layers[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    _step(model, opt)
    buffers = {id(p): opt.state[p]["momentum_buffer"] for p in model.layers[2].parameters()}
    groups = discover_groups(model)
    regroup_optimizer(opt, groups, [0.25, 0.5, 1.0])
    assert [g["name"] for g in opt.param_groups] == ["layers.0", "layers.1", "layers.2"]
    assert [g["lr"] for g in opt.param_groups] == [0.025, 0.05, 0.1]
    assert [g["lr_factor"] for g in opt.param_groups] == [0.25, 0.5, 1.0]
    assert all(g["base_lr"] == 0.1 and g["momentum"] == 0.9 for g in opt.param_groups)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    for p in model.layers[2].parameters():
        assert opt.state[p]["momentum_buffer"] is buffers[id(p)]
    with pytest.raises(ValueError, match="already regrouped"):
        regroup_optimizer(opt, groups, [1.0, 1.0, 1.0])


def test_regroup_two_hyperparameter_groups_and_params_outside_groups():
    model = mlp()
    extra = nn.Parameter(torch.zeros(3))  # e.g. a loss weight: in the optimizer, in no layer group
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.layers[1:].parameters() if p.ndim <= 1]  # layers.0.bias left out
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay + [extra], "weight_decay": 0.0, "name": "nd"}], lr=1e-3)
    groups = discover_groups(model)
    regroup_optimizer(opt, groups, [0.5, 0.5, 1.0])
    names = [g["name"] for g in opt.param_groups]
    assert names == ["layers.0/pg0", "layers.0/nd", "layers.1/pg0", "layers.1/nd", "layers.2/pg0", "layers.2/nd",
                     "nd"]
    # the bias the optimizer did not hold joined the no-decay group
    assert opt.param_groups[param_group_index(opt, model.layers[0].bias)]["weight_decay"] == 0.0
    assert opt.param_groups[-1]["params"] == [extra] and opt.param_groups[-1]["lr_factor"] == 1.0


def test_regroup_bad_input():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    groups = discover_groups(model)
    with pytest.raises(ValueError, match="one entry per group"):
        regroup_optimizer(opt, groups, [1.0])
    with pytest.raises(ValueError, match="positive"):
        regroup_optimizer(opt, groups, [1.0, 0.0, 1.0])


def test_set_group_lrs_uses_factors_and_floats():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    regroup_optimizer(opt, discover_groups(model), [0.25, 0.5, 1.0])
    set_group_lrs(opt, 0.4)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2, 0.4]
    assert all(type(g["lr"]) is float for g in opt.param_groups)
    tensor_lr = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    set_group_lrs(tensor_lr, 0.5)
    assert float(tensor_lr.param_groups[0]["lr"]) == 0.5


def _make_scheduler(kind: str, opt: torch.optim.Optimizer):
    S = torch.optim.lr_scheduler
    if kind == "LambdaLR":
        return S.LambdaLR(opt, lambda step: 0.5**step)
    if kind == "OneCycleLR":
        return S.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    if kind == "CyclicLR":
        return S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2)
    if kind == "ReduceLROnPlateau":
        return S.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    if kind == "SequentialLR":
        return S.SequentialLR(opt, [S.LinearLR(opt, 0.5, total_iters=2), S.ExponentialLR(opt, 0.9)], milestones=[2])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["LambdaLR", "OneCycleLR", "CyclicLR", "ReduceLROnPlateau", "SequentialLR"])
def test_lr_schedulers_built_before_the_regroup_keep_running_with_factors(kind):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    plain = torch.optim.SGD(mlp().parameters(), lr=0.1, momentum=0.9)
    scheduler = _make_scheduler(kind, opt)
    reference = _make_scheduler(kind, plain)
    regroup_optimizer(opt, discover_groups(model), [0.25, 0.5, 1.0])
    regroup_lr_scheduler(scheduler, opt)
    regroup_lr_scheduler(scheduler, opt)  # idempotent
    for _ in range(5):
        opt.step()
        plain.step()
        args = (1.0,) if kind == "ReduceLROnPlateau" else ()
        scheduler.step(*args)
        reference.step(*args)
        expected = plain.param_groups[0]["lr"]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.25 * expected, 0.5 * expected, expected])


# ---------------------------------------------------------------------------------------------
def bn_net() -> tuple[nn.Module, list[LayerGroup]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 6), nn.BatchNorm1d(6),
                          nn.Linear(6, 1))
    groups = discover_groups(model, [["0", "1"], ["3", "4"], "5"])
    return model, groups


def test_freeze_stats_keeps_frozen_bn_in_eval_through_train_calls():
    model, groups = bn_net()
    apply_trainable(groups, [False, True, True], bn="freeze_stats")
    model.train()
    bottom_bn, top_bn = model[1], model[4]
    before = bottom_bn.running_mean.clone()
    out = model(torch.randn(8, 4))
    assert not bottom_bn.training and is_kept_eval(bottom_bn)
    assert torch.equal(bottom_bn.running_mean, before)  # statistics untouched
    assert top_bn.training and not torch.equal(top_bn.running_mean, torch.zeros(6))
    out.sum().backward()
    assert all(p.grad is None for g in groups[:1] for p in g.params)
    assert all(p.grad is not None for g in groups[1:] for p in g.params)
    # unfreezing releases the layer
    apply_trainable(groups, [True, True, True], bn="freeze_stats")
    assert bottom_bn.training and not is_kept_eval(bottom_bn)
    model(torch.randn(8, 4))
    assert not torch.equal(bottom_bn.running_mean, before)


def test_backward_stops_at_the_lowest_trainable_group():
    model, groups = bn_net()
    apply_trainable(groups, [False, False, True])
    hidden = model[:5](torch.randn(8, 4))
    assert not hidden.requires_grad  # no graph below the head: nothing computed for frozen groups


def test_freeze_all_and_train_policies():
    model, groups = bn_net()
    apply_trainable(groups, [False, True, True], bn="freeze_all")
    model.train()
    model(torch.randn(8, 4))
    for bn in (model[1], model[4]):
        assert not bn.training and not bn.weight.requires_grad
        assert torch.equal(bn.running_mean, torch.zeros(6))
    assert model[3].weight.requires_grad
    model, groups = bn_net()
    apply_trainable(groups, [False, True, True], bn="train")
    model.train()
    model(torch.randn(8, 4))
    assert model[1].training and not torch.equal(model[1].running_mean, torch.zeros(6))
    assert not model[1].weight.requires_grad
    with pytest.raises(ValueError, match="bn must be one of"):
        apply_trainable(groups, [True] * 3, bn="eval")
    with pytest.raises(ValueError, match="mask has 2 entries"):
        apply_trainable(groups, [True] * 2)


def test_freezing_drops_stale_gradients():
    model, groups = bn_net()
    model(torch.randn(8, 4)).sum().backward()
    apply_trainable(groups, [False, True, True])
    assert all(p.grad is None for p in groups[0].params)


# ---------------------------------------------------------------------------------------------
def test_swap_to_group_norm_reuses_parameters_and_picks_divisor_groups():
    model = nn.Sequential(nn.Conv2d(3, 72, 1), nn.BatchNorm2d(72), nn.Conv2d(72, 8, 1), nn.BatchNorm2d(8))
    weight = model[1].weight
    swap_norms(model, to="group", skip=["3"])
    assert isinstance(model[1], nn.GroupNorm) and model[1].num_groups == 8  # 72 channels: 8 groups, not 32
    assert model[1].weight is weight  # an optimizer built before still trains it
    assert isinstance(model[3], nn.BatchNorm2d)  # skipped
    copy = nn.Sequential(nn.BatchNorm2d(16))
    old = copy[0].weight
    swap_norms(copy, to="group", reuse_params=False, groups=4)
    assert copy[0].weight is not old and torch.equal(copy[0].weight, old) and copy[0].num_groups == 4


def test_swap_to_frozen_matches_eval_batch_norm():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    bn.train()
    for _ in range(3):
        bn(torch.randn(6, 4, 5, 5) * 3 + 1)
    with torch.no_grad():
        bn.weight.mul_(2.0)
        bn.bias.add_(0.5)
    bn.eval()
    x = torch.randn(2, 4, 5, 5)
    expected = bn(x)
    frozen = swap_norms(bn, to="frozen")
    assert isinstance(frozen, FrozenBatchNorm2d) and not list(frozen.parameters())
    torch.testing.assert_close(frozen(x), expected)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    swap_norms(net, to="frozen")
    assert net(torch.randn(2, 3)).shape == (2, 4)


def test_swap_to_sync_uses_torch_converter_and_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    weight = model[1].weight
    swap_norms(model, to="sync", skip=[model[2]])
    assert isinstance(model[1], nn.SyncBatchNorm) and model[1].weight is weight
    assert type(model[2]) is nn.BatchNorm2d
    with pytest.raises(ValueError, match="to must be one of"):
        swap_norms(model, to="layer")


# ---------------------------------------------------------------------------------------------
def _lars_reference(w, g, buf, lr, momentum, wd, tc, eps, clip, exclude):
    if exclude:
        d = g.clone()
    else:
        ratio = lars_trust_ratio(float(w.norm()), float(g.norm()), tc, wd, eps, clip=clip, lr=lr if clip else None)
        d = (g + wd * w) * ratio
    buf = d.clone() if buf is None else momentum * buf + d
    return w - lr * buf, buf


@pytest.mark.parametrize("clip", [False, True])
def test_lars_matches_the_core_trust_ratio(clip):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3))
    b = nn.Parameter(torch.randn(5))
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=1e-3, trust_coefficient=0.02, clip=clip)
    ref_w, ref_b, buf_w, buf_b = w.detach().clone(), b.detach().clone(), None, None
    for _ in range(3):
        gw, gb = torch.randn(5, 3), torch.randn(5)
        w.grad, b.grad = gw.clone(), gb.clone()
        ref_w, buf_w = _lars_reference(ref_w, gw, buf_w, 0.5, 0.9, 1e-3, 0.02, 1e-8, clip, exclude=False)
        ref_b, buf_b = _lars_reference(ref_b, gb, buf_b, 0.5, 0.9, 1e-3, 0.02, 1e-8, clip, exclude=True)
        opt.step()
        torch.testing.assert_close(w.detach(), ref_w)
        torch.testing.assert_close(b.detach(), ref_b)  # bias: excluded, plain momentum SGD


def test_lars_zero_weights_keep_the_global_rate_and_bad_input():
    w = nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.ones(3, 3)
    LARS([w], lr=0.1, momentum=0.0).step()
    torch.testing.assert_close(w.detach(), torch.full((3, 3), -0.1))
    for kwargs, name in [({"lr": -1}, "lr"), ({"momentum": 1.0}, "momentum"), ({"trust_coefficient": 0}, "trust"),
                         ({"weight_decay": -1}, "weight_decay"), ({"nesterov": True, "momentum": 0.0}, "nesterov")]:
        with pytest.raises(ValueError, match=name):
            LARS([w], **kwargs)
