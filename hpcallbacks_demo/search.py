"""The task of ``hpcallbacks search``: a small MLP on scikit-learn's digits, in plain torch.

Cheap enough for a study on two CPU cores: 1,797 8x8 images, a 64-128-64-10 MLP with dropout,
a few epochs per trial (about a tenth of a second each). Each trial builds its configuration with
:meth:`hpcallbacks.search.SearchSpace.build` and trains with the hpcallbacks torch mechanics the
adapters use: the layer groups (:func:`~hpcallbacks.torch.discover_groups`), one param group per
layer group with its LR factor (:func:`~hpcallbacks.torch.regroup_optimizer`), the schedule's LR
set before every update (:func:`~hpcallbacks.torch.set_group_lrs`) and the freeze plan's stages
(:func:`~hpcallbacks.torch.apply_trainable`). After each epoch the validation accuracy goes to the
:class:`~hpcallbacks.search.Reporter`, which stops the trial when the pruner says so.

With ``--fine-tuning`` the MLP is first trained on the digits 0-4 (once per process, the same
weights for every trial) and then fine-tuned, with a new head, on 300 images of the digits 5-9
(20 epochs by default: the fine-tuning learning rates are small): the freeze plans of the space
(head first, gradual...) then mean something.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from hpcallbacks.search import Reporter, SearchSpace, Task

BATCH_SIZES = (16, 32, 64, 128, 256)  # the H2 row's powers of two that give >= 5 updates per epoch here
RECIPE = {"learning_rate": 3e-3, "batch_size": 64}  # the demo's own Adam recipe (RECIPE_LR, BATCH_SIZE)
FINE_TUNE_EXAMPLES = 300


def _digits():
    """scikit-learn's digits as (x float32 in [0, 1], n x 64; y int64) tensors, read from the CSV the package
    ships (importing ``sklearn.datasets`` costs more than a trial)."""
    import gzip
    import importlib.util

    import numpy as np
    import torch

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits task reads scikit-learn's bundled digits", name="sklearn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return torch.from_numpy(table[:, :-1] / 16.0), torch.from_numpy(table[:, -1].astype(np.int64))


def _split(y, take: float | int, seed: int = 0):
    """Indices (first, rest), stratified by class: ``take`` a fraction or a count of the examples in ``first``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    first, rest = [], []
    classes = sorted(set(y.tolist()))
    for c in classes:
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = round(len(idx) * take) if isinstance(take, float) else round(take / len(classes))
        first.append(idx[:k])
        rest.append(idx[k:])
    return torch.cat(first), torch.cat(rest)


@functools.lru_cache(maxsize=2)
def _data(fine_tuning: bool):
    """((x_train, y_train), (x_val, y_val)): all ten digits 80/20, or (fine-tuning) 300 of the digits 5-9 for
    training and the rest of them for validation, labelled 0-4; both stratified."""
    x, y = _digits()
    if fine_tuning:
        keep = y >= 5
        x, y = x[keep], y[keep] - 5
        train, val = _split(y, FINE_TUNE_EXAMPLES)
    else:
        val, train = _split(y, 0.2)
    return (x[train], y[train]), (x[val], y[val])


def make_model(dropout: float, classes: int = 10):
    """The MLP, as three layer groups bottom to top: ``hidden1``, ``hidden2``, ``head``."""
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden1 = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(dropout))
            self.hidden2 = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Dropout(dropout))
            self.head = nn.Linear(64, classes)

        def forward(self, x):
            return self.head(self.hidden2(self.hidden1(x)))

    return MLP()


@functools.lru_cache(maxsize=1)
def _pretrained_state():
    """The MLP trained on the digits 0-4 (Adam 3e-3, 8 epochs, seed 0): the "pretrained" body."""
    import torch

    x, y = _digits()
    keep = y < 5
    x, y = x[keep], y[keep]
    torch.manual_seed(0)
    model = make_model(0.2, classes=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for i in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}


def _optimizer(params: Any, built: Any):
    import torch

    values = built.optimizer_values
    if built.optimizer in ("adam", "adamw"):
        cls = torch.optim.AdamW if built.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=built.learning_rate, betas=(values["beta_1"], values["beta_2"]), eps=values["epsilon"],
                   weight_decay=built.weight_decay)
    return torch.optim.SGD(params, lr=built.learning_rate, momentum=values.get("momentum", 0.0),
                           nesterov=values.get("nesterov", False), weight_decay=built.weight_decay)


def train(params: dict[str, Any], reporter: Reporter, *, space: SearchSpace, epochs: int = 5, seed: int = 0) -> float:
    """Train one configuration for ``epochs`` epochs (fewer when pruned); the last validation accuracy."""
    import torch

    from hpcallbacks.torch import apply_trainable, discover_groups, regroup_optimizer, set_group_lrs

    torch.set_num_threads(1)
    (x_train, y_train), (x_val, y_val) = _data(space.fine_tuning)
    batch = int(params["batch_size"])
    steps_per_epoch = -(-len(y_train) // batch)
    built = space.build(params, steps_per_epoch=steps_per_epoch, epochs=epochs)
    torch.manual_seed(seed)
    model = make_model(built.dropout, classes=5 if space.fine_tuning else 10)
    if space.fine_tuning:
        model.load_state_dict(_pretrained_state(), strict=False)  # a new head on the pretrained body
    groups = discover_groups(model)
    resolved = built.plan.resolve(len(groups), steps_per_epoch)
    optimizer = _optimizer(model.parameters(), built)
    regroup_optimizer(optimizer, groups, resolved.factors)
    generator = torch.Generator().manual_seed(seed)
    update, stage, accuracy = 0, -1, 0.0
    for epoch in range(epochs):
        model.train()
        for index in torch.randperm(len(y_train), generator=generator).split(batch):
            if resolved.stage_at(update) != stage:
                stage = resolved.stage_at(update)
                apply_trainable(groups, resolved.masks[stage], resolved.bn)
            set_group_lrs(optimizer, built.schedule(update))
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x_train[index]), y_train[index]).backward()
            optimizer.step()
            update += 1
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
        if reporter.report(accuracy, epoch):
            break
    return accuracy


#: ``hpcallbacks search`` (the default ``--task hpcallbacks_demo.search:DIGITS``).
DIGITS = Task(train, monitor="val_accuracy", direction="maximize", optimizer="adam",
              space_kwargs={"batch_sizes": BATCH_SIZES}, recipe=RECIPE, epochs=5, fine_tuning_epochs=20,
              description="a 64-128-64-10 MLP on sklearn digits (plain torch, hpcallbacks.torch)")
