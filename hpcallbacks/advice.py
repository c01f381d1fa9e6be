"""The hyperparameter advisor (handbook H1, H2): the recommended-values table as data, and checks.

:data:`TABLE` holds the rows of the handbook's H2 table, each with its range and the source line
of the handbook it comes from. :func:`check` compares a training configuration with the table
and returns one :class:`Finding` per value outside its row (nothing for values inside);
:func:`loss_balance` checks the sizes of several loss terms and suggests weights;
:func:`format_findings` prints findings; :func:`advise_main` is the ``hpcallbacks advise`` verb.

Severity follows the importance ranking of H1: a value outside a *range* of the learning rate,
the loss weights or the batch size (the hyperparameters worth tuning) is a ``"warning"``; a
value that differs from a single recommended value, and anything about Adam's parameters,
weight decay, dropout or the network's shape ("in practice not worth many trials") is ``"info"``.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _checks as check_arg

_log = logging.getLogger("hpcallbacks")

__all__ = [
    "Row",
    "TABLE",
    "ROWS",
    "Finding",
    "LossBalance",
    "OPTIMIZERS",
    "MAX_LOSS_RATIO",
    "check",
    "loss_balance",
    "format_findings",
    "format_table",
    "advise_main",
    "HyperparameterWarning",
    "report",
    "loss_terms",
    "balance_check",
    "missing_terms_warning",
    "LossBalanceBase",
    "advisor_options",
    "AdvisorBase",
    "fine_tuning_values",
]


@dataclass(frozen=True)
class Row:
    """One row of the handbook's H2 table.

    ``low``/``high`` bound the recommended values (equal for a single recommended value; None
    for a rule relative to other values); ``importance`` is the H1 rank (1 highest);
    ``source`` is the table line of the handbook, verbatim.
    """

    key: str
    hyperparameter: str
    recommended: str
    low: float | None
    high: float | None
    importance: int
    why: str
    source: str

    @property
    def point(self) -> bool:
        """True when the row recommends a single value rather than a range."""
        return self.low is not None and self.low == self.high

    @property
    def severity(self) -> str:
        """``"warning"`` for a range or rule of H1 importance 1 or 2, else ``"info"``."""
        return "warning" if self.importance <= 2 and not self.point else "info"


_LR = "The learning rate matters most of all hyperparameters (H1); too high or too low lowers the effective capacity."
_ADAM = "Adam's parameters are rarely worth tuning (H1): the handbook recommends the defaults of the Adam paper."
_ADAM_SOURCE = "| Adam beta1, beta2, epsilon | 0.9, 0.999, 1e-8 |"

#: The H2 table of the handbook, one :class:`Row` per checked hyperparameter.
TABLE: tuple[Row, ...] = (
    Row("learning_rate_sgd", "learning rate, SGD", "[1e-2, 1e-1]", 1e-2, 1e-1, 1, _LR,
        "| learning rate, SGD | [1e-2, 1e-1] |"),
    Row("learning_rate_sgd_momentum", "learning rate, SGD with momentum", "[1e-3, 1e-2]", 1e-3, 1e-2, 1, _LR,
        "| learning rate, SGD with momentum | [1e-3, 1e-2] |"),
    Row("learning_rate_adam", "learning rate, Adam", "[1e-3, 1e-2]", 1e-3, 1e-2, 1, _LR,
        "| learning rate, Adam | [1e-3, 1e-2] |"),
    Row("learning_rate_fine_tuning", "learning rate when fine-tuning",
        "the from-scratch value lowered by 1 to 2 orders of magnitude", None, None, 1,
        "Pretrained layers already represent the data well; a from-scratch learning rate would destroy what they "
        "learned (H5).",
        "| learning rate when fine-tuning | the from-scratch value lowered by 1 to 2 orders of magnitude |"),
    Row("loss_terms", "several loss terms", "no term more than two orders of magnitude above or below another",
        None, None, 1,
        "The largest term dominates the gradient, so the others are hardly optimised; the loss weights are among the "
        "most important hyperparameters (H1).",
        "| several loss terms | their values should stay close: no term more than two orders of magnitude above or "
        "below another |"),
    Row("batch_size", "batch size", "[1, 1024]", 1, 1024, 2,
        "Larger batches need more epochs, a learning rate scaled with the batch (with warmup) and LARS to stay "
        "stable (H4; see hpcallbacks.batch).",
        "| batch size | [1, 1024] |"),
    Row("beta_1", "Adam beta1", "0.9", 0.9, 0.9, 3, _ADAM, _ADAM_SOURCE),
    Row("beta_2", "Adam beta2", "0.999", 0.999, 0.999, 3, _ADAM, _ADAM_SOURCE),
    Row("epsilon", "Adam epsilon", "1e-8", 1e-8, 1e-8, 3, _ADAM, _ADAM_SOURCE),
    Row("momentum", "momentum", "0.9", 0.9, 0.9, 2, "0.9 is the momentum the handbook recommends (H1, H2).",
        "| momentum | 0.9 |"),
    Row("weight_decay", "weight decay", "5e-4, or [0, 1e-4] (checked: [0, 5e-4])", 0.0, 5e-4, 3,
        "Weight decay regularises; more than the recommended amount shrinks the effective capacity (H1).",
        "| weight decay | 5e-4 (the note also suggests [0, 1e-4]) |"),
    Row("dropout_rate", "dropout rate", "[0.2, 0.5]", 0.2, 0.5, 3,
        "Less dropout hardly regularises; more removes too much of the layer's capacity (H1).",
        "| dropout rate | [0.2, 0.5] |"),
    Row("kernel_size", "convolution kernel sizes", "7x7, 5x5, 3x3, 1x1, 7x1 + 1x7", None, None, 3,
        "The handbook recommends these kernel shapes; larger kernels are better built from stacked small ones.",
        "| convolution kernel sizes | 7x7, 5x5, 3x3, 1x1, 7x1 + 1x7 |"),
)

#: The rows by key.
ROWS: dict[str, Row] = {row.key: row for row in TABLE}

#: Recommended kernel shapes (rows x columns) of the ``kernel_size`` row.
KERNEL_SIZES: frozenset[tuple[int, int]] = frozenset({(7, 7), (5, 5), (3, 3), (1, 1), (7, 1), (1, 7)})

#: Largest allowed ratio between two loss terms: two orders of magnitude.
MAX_LOSS_RATIO = 100.0

#: Optimizer kinds :func:`check` knows, and the learning-rate row of each.
OPTIMIZERS: dict[str, str] = {
    "sgd": "learning_rate_sgd",
    "sgd_momentum": "learning_rate_sgd_momentum",
    "nesterov": "learning_rate_sgd_momentum",
    "adam": "learning_rate_adam",
    "adamw": "learning_rate_adam",
}
_ADAM_KINDS = ("adam", "adamw")
_REL = 1e-9  # relative tolerance of range ends: 0.1 / 10 is 0.010000000000000002


class HyperparameterWarning(UserWarning):
    """A hyperparameter outside the handbook's recommendations, as the adapters' advisor callbacks warn it.

    One class for every adapter, so ``warnings.filterwarnings("ignore", category=HyperparameterWarning)``
    (or ``"error"``) works whatever the framework.
    """


@dataclass(frozen=True)
class Finding:
    """One value outside its H2 row: ``parameter = value``, ``recommended``, ``why``; ``row`` is a key of :data:`ROWS`.

    ``severity`` is ``"warning"`` or ``"info"`` (see :attr:`Row.severity`).
    """

    severity: str
    parameter: str
    value: Any
    recommended: str
    why: str
    row: str

    def __str__(self) -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        return (f"{self.severity}: {self.parameter} = {value}; recommended {self.recommended} "
                f"(H2: {ROWS[self.row].hyperparameter}). {self.why}")


def _inside(value: float, low: float, high: float) -> bool:
    return low - _REL * abs(low) <= value <= high + _REL * abs(high)


def _range_finding(parameter: str, value: float, row: Row, low: float | None = None, high: float | None = None,
                   recommended: str | None = None) -> list[Finding]:
    low = row.low if low is None else low
    high = row.high if high is None else high
    if _inside(value, low, high):  # type: ignore[arg-type]
        return []
    return [Finding(row.severity, parameter, value, recommended or row.recommended, row.why, row.key)]


def _optional(name: str, value: Any, **bounds: Any) -> float | None:
    return None if value is None else check_arg.number(name, value, **bounds)


def check(
    optimizer: str,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    momentum: float | None = None,
    beta_1: float | None = None,
    beta_2: float | None = None,
    epsilon: float | None = None,
    weight_decay: float | None = None,
    dropout_rates: Sequence[float] = (),
    fine_tuning: bool = False,
    from_scratch_learning_rate: float | None = None,
    loss_terms: Mapping[str, float] | None = None,
    kernel_sizes: Sequence[int | tuple[int, int]] = (),
) -> list[Finding]:
    """Compare a training configuration with the H2 table: one finding per value outside its row.

    ``optimizer`` is one of :data:`OPTIMIZERS` and picks the learning-rate row; ``"sgd"`` with a
    ``momentum > 0`` counts as SGD with momentum. ``momentum`` applies to SGD only and
    ``beta_1``/``beta_2``/``epsilon`` to Adam only (giving them to the other is refused). With
    ``fine_tuning``, the learning rate must be 1 to 2 orders of magnitude below
    ``from_scratch_learning_rate`` (``[lr0 / 100, lr0 / 10]``), or below the optimizer's row
    when that is not given (``[low / 100, high / 10]``). The weight-decay row is an L2
    coefficient and is not applied to ``"adamw"``, whose decoupled decay has other units (torch's
    default is 0.01). ``loss_terms`` goes through :func:`loss_balance`; ``kernel_sizes`` are ints
    (square) or ``(rows, columns)``. Values left as None are not checked.

    >>> [f.row for f in check("adam", learning_rate=0.1, batch_size=4096)]
    ['learning_rate_adam', 'batch_size']
    >>> check("sgd_momentum", learning_rate=0.005, momentum=0.9, batch_size=256)
    []
    >>> [f.row for f in check("adam", learning_rate=1e-2, fine_tuning=True)]
    ['learning_rate_fine_tuning']
    """
    kind = check_arg.choice("optimizer", optimizer, OPTIMIZERS)
    fine_tuning = check_arg.boolean("fine_tuning", fine_tuning)
    lr = _optional("learning_rate", learning_rate, low=0.0, low_open=True)
    scratch = _optional("from_scratch_learning_rate", from_scratch_learning_rate, low=0.0, low_open=True)
    batch = None if batch_size is None else check_arg.positive_int("batch_size", batch_size)
    momentum = _optional("momentum", momentum, low=0.0, high=1.0, high_open=True)
    betas = {
        "beta_1": _optional("beta_1", beta_1, low=0.0, high=1.0, high_open=True),
        "beta_2": _optional("beta_2", beta_2, low=0.0, high=1.0, high_open=True),
        "epsilon": _optional("epsilon", epsilon, low=0.0, low_open=True),
    }
    decay = _optional("weight_decay", weight_decay, low=0.0)
    dropouts = check_arg.sequence("dropout_rates", dropout_rates)
    dropouts = tuple(check_arg.number(f"dropout_rates[{i}]", d, low=0.0, high=1.0, high_open=True)
                     for i, d in enumerate(dropouts))
    kernels = _kernels(kernel_sizes)
    if kind in _ADAM_KINDS and momentum is not None:
        raise ValueError(f"momentum applies to SGD optimizers; got momentum={momentum!r} with optimizer={kind!r} "
                         f"(Adam's counterpart is beta_1)")
    for name, value in betas.items():
        if kind not in _ADAM_KINDS and value is not None:
            raise ValueError(f"{name} applies to Adam optimizers; got {name}={value!r} with optimizer={kind!r}")
    if scratch is not None and not fine_tuning:
        raise ValueError(f"from_scratch_learning_rate is used only with fine_tuning=True; got {scratch!r}")

    if kind == "sgd" and momentum:
        kind = "sgd_momentum"
    lr_row = ROWS[OPTIMIZERS[kind]]
    findings: list[Finding] = []
    if scratch is not None:
        findings += _range_finding("from_scratch_learning_rate", scratch, lr_row)
    if lr is not None:
        if fine_tuning:
            row = ROWS["learning_rate_fine_tuning"]
            low, high = (scratch / 100, scratch / 10) if scratch is not None else (lr_row.low / 100, lr_row.high / 10)
            base = f"from-scratch {scratch:g}" if scratch is not None else f"from-scratch {lr_row.recommended}"
            findings += _range_finding("learning_rate", lr, row, low, high,
                                       f"[{low:g}, {high:g}] (the {base} lowered by 1 to 2 orders of magnitude)")
        else:
            findings += _range_finding("learning_rate", lr, lr_row)
    if batch is not None:
        findings += _range_finding("batch_size", batch, ROWS["batch_size"])
    if momentum is not None:
        findings += _range_finding("momentum", momentum, ROWS["momentum"])
    for name, value in betas.items():
        if value is not None:
            findings += _range_finding(name, value, ROWS[name])
    if decay is not None and kind != "adamw":
        findings += _range_finding("weight_decay", decay, ROWS["weight_decay"])
    for i, rate in enumerate(dropouts):
        findings += _range_finding(f"dropout_rates[{i}]", rate, ROWS["dropout_rate"])
    row = ROWS["kernel_size"]
    for i, (rows, cols) in enumerate(kernels):
        if (rows, cols) not in KERNEL_SIZES:
            findings.append(Finding(row.severity, f"kernel_sizes[{i}]", f"{rows}x{cols}", row.recommended,
                                    row.why, row.key))
    if loss_terms is not None:
        findings += loss_balance(loss_terms).findings
    return findings


def _kernels(kernel_sizes: Sequence[int | tuple[int, int]]) -> list[tuple[int, int]]:
    kernels = []
    for i, k in enumerate(check_arg.sequence("kernel_sizes", kernel_sizes)):
        pair = (k, k) if not isinstance(k, (tuple, list)) else tuple(k)
        if len(pair) != 2:
            raise ValueError(f"kernel_sizes[{i}] must be an int or a (rows, columns) pair; got {k!r}")
        kernels.append(tuple(check_arg.positive_int(f"kernel_sizes[{i}]", v) for v in pair))
    return kernels  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossBalance:
    """What :func:`loss_balance` found: ``findings`` (empty when balanced) and suggested ``weights``."""

    findings: tuple[Finding, ...]
    weights: dict[str, float] = field(default_factory=dict)


def loss_balance(terms: Mapping[str, float], reference: str | None = None) -> LossBalance:
    """Check that no loss term is more than two orders of magnitude above or below another.

    ``terms`` maps each term's name to its typical size (for example its value on the first
    batches; the sign is ignored). When the largest ``|L|`` is more than :data:`MAX_LOSS_RATIO`
    times the smallest, one warning names the two and weights are suggested: 1 for the terms
    within a factor 10 of the ``reference`` term (default: the first, the main loss), and
    ``|L_ref| / |L_i|`` (bringing the term to the reference's size) for the others, so that the
    weighted terms are all within a factor 100 of each other. Balanced terms get weight 1.

    >>> loss_balance({"a": 1.0, "b": 250.0}).weights
    {'a': 1.0, 'b': 0.004}
    >>> loss_balance({"a": 1.0, "b": 50.0})
    LossBalance(findings=(), weights={'a': 1.0, 'b': 1.0})
    """
    if not isinstance(terms, Mapping) or not terms:
        raise ValueError(f"terms must be a non-empty dict of loss-term name -> typical value; got {terms!r}")
    sizes: dict[str, float] = {}
    for name, value in terms.items():
        if not isinstance(name, str):
            raise ValueError(f"terms must have str names; got {name!r}")
        size = abs(check_arg.number(f"terms[{name!r}]", value))
        if size == 0:
            raise ValueError(f"terms[{name!r}] must be a non-zero typical value of the term; got {value!r}")
        sizes[name] = size
    if reference is None:
        reference = next(iter(sizes))
    elif reference not in sizes:
        raise ValueError(f"reference must be one of the terms {list(sizes)}; got {reference!r}")
    small = min(sizes, key=sizes.__getitem__)
    big = max(sizes, key=sizes.__getitem__)
    ratio = sizes[big] / sizes[small]
    if ratio <= MAX_LOSS_RATIO * (1 + _REL):
        return LossBalance((), {name: 1.0 for name in sizes})
    ref = sizes[reference]
    band = math.sqrt(MAX_LOSS_RATIO)
    weights = {name: 1.0 if ref / band <= s <= ref * band else ref / s for name, s in sizes.items()}
    row = ROWS["loss_terms"]
    why = (f"{big!r} ({sizes[big]:g}) is {ratio:.3g} times {small!r} ({sizes[small]:g}). {row.why} "
           f"Suggested weights: {', '.join(f'{k}={w:.3g}' for k, w in weights.items())}.")
    parameter = f"loss_terms[{big!r}] / loss_terms[{small!r}]"
    finding = Finding(row.severity, parameter, ratio, f"<= {MAX_LOSS_RATIO:g} (two orders of magnitude)", why, row.key)
    return LossBalance((finding,), weights)


def loss_terms(terms: Any, reference: str | None = None) -> tuple[str, ...]:
    """The ``terms`` (and ``reference``) of an adapter's ``LossBalance``, checked: two or more distinct names.

    >>> loss_terms(["loss_a", "loss_b"], reference="loss_b")
    ('loss_a', 'loss_b')
    """
    if isinstance(terms, str) or not isinstance(terms, Sequence) or len(terms) < 2 or not all(
            isinstance(t, str) and t for t in terms) or len(set(terms)) != len(terms):
        raise ValueError(f"terms must be two or more distinct names of logged loss terms; got {terms!r}")
    if reference is not None and reference not in terms:
        raise ValueError(f"reference must be one of terms {list(terms)}; got {reference!r}")
    return tuple(terms)


def balance_check(values: Mapping[str, float], reference: str | None = None) -> LossBalance | None:
    """What an adapter's ``LossBalance`` does with the logged ``values`` of its terms.

    :func:`loss_balance` of them, or None (logged, not checked) when a term is 0 or not finite.

    >>> balance_check({"a": 1.0, "b": 0.0}) is None
    True
    """
    if any(v == 0 or not math.isfinite(v) for v in values.values()):
        _log.info("LossBalance: a term is 0 or not finite (%s); not checked", values)
        return None
    return loss_balance(values, reference)


def missing_terms_warning(terms: Sequence[str], logged: Collection[str], verb: str, fix: str) -> str | None:
    """What an adapter's ``LossBalance`` warns when some of ``terms`` are not in ``logged`` (None when all are).

    >>> missing_terms_warning(("a", "b"), {"a": 1.0}, "were not logged", "log them")
    "LossBalance: term(s) ['b'] were not logged (logged: ['a']); log them"
    """
    missing = [t for t in terms if t not in logged]
    if not missing:
        return None
    return f"LossBalance: term(s) {missing} {verb} (logged: {sorted(logged)}); {fix}"


class LossBalanceBase:
    """The framework-free part of every adapter's ``LossBalance`` callback, mixed into its class.

    :meth:`_init_balance` checks and keeps the arguments (``terms``, ``every_n_epochs``, ``strict``,
    ``reference``; ``boolean`` checks ``strict``) and starts ``weights`` at 1.0 each, ``values``
    and ``findings`` empty; :meth:`_missing` says whether the logged values lack a term (warning
    the first time); :meth:`_balance` runs :func:`balance_check` on the logged values and keeps
    what it found (the adapter reports the findings, :func:`report`).
    """

    def _init_balance(self, terms: Any, every_n_epochs: Any, strict: Any, reference: str | None,
                      boolean: Any = check_arg.boolean) -> None:
        self.terms = loss_terms(terms, reference)
        self.every_n_epochs = check_arg.positive_int("every_n_epochs", every_n_epochs)
        self.strict = boolean("strict", strict)
        self.reference = reference
        self.weights: dict[str, float] = {t: 1.0 for t in self.terms}
        self.values: dict[str, float] = {}
        self.findings: tuple[Finding, ...] = ()
        self._warned = False

    def _missing(self, logged: Collection[str], verb: str, fix: str) -> bool:
        """True when a term is not in ``logged``; the first time, a warning (:func:`missing_terms_warning`)."""
        message = missing_terms_warning(self.terms, logged, verb, fix)
        if message is not None and not self._warned:
            self._warned = True
            warnings.warn(message, stacklevel=3)
        return message is not None

    def _balance(self, values: dict[str, float]) -> LossBalance | None:
        """:func:`balance_check` of ``values``; when checked, they, the weights and findings are kept."""
        result = balance_check(values, self.reference)
        if result is not None:
            self.values, self.weights, self.findings = values, dict(result.weights), tuple(result.findings)
        return result


def advisor_options(strict: Any, fine_tuning: Any, from_scratch_learning_rate: Any,
                    boolean: Any = check_arg.boolean) -> tuple[bool, bool | None, float | None]:
    """The arguments every adapter's ``HyperparameterAdvisor`` takes, checked: ``(strict, fine_tuning,
    from_scratch_learning_rate)``. ``boolean(name, value)`` checks the flags (an adapter may keep its own message).

    >>> advisor_options(False, None, 1e-3)
    (False, None, 0.001)
    """
    strict = boolean("strict", strict)
    if fine_tuning is not None:
        boolean("fine_tuning", fine_tuning)
    if from_scratch_learning_rate is not None:
        check_arg.positive("from_scratch_learning_rate", from_scratch_learning_rate)
        if fine_tuning is False:
            raise ValueError(f"from_scratch_learning_rate is used only when fine-tuning; got "
                             f"{from_scratch_learning_rate!r} with fine_tuning=False")
    return strict, fine_tuning, from_scratch_learning_rate


class AdvisorBase:
    """The framework-free part of every adapter's ``HyperparameterAdvisor`` callback, mixed into its class.

    :meth:`_init_advisor` checks and keeps ``strict``, ``fine_tuning`` and
    ``from_scratch_learning_rate`` (:func:`advisor_options`) and starts ``findings`` and
    ``values`` empty; :meth:`_advise` runs :func:`check` on the values the adapter read and keeps
    both (the adapter reports the findings, :func:`report`).
    """

    def _init_advisor(self, strict: Any, fine_tuning: Any, from_scratch_learning_rate: Any,
                      boolean: Any = check_arg.boolean) -> None:
        self.strict, self.fine_tuning, self.from_scratch_learning_rate = advisor_options(
            strict, fine_tuning, from_scratch_learning_rate, boolean)
        self.findings: list[Finding] = []
        self.values: dict[str, Any] = {}

    def _advise(self, values: dict[str, Any]) -> list[Finding]:
        """:func:`check` of ``values`` (kept as ``.values``); the findings (kept as ``.findings``)."""
        self.values = values
        self.findings = check(**values)
        return self.findings


def fine_tuning_values(fine_tuning: bool, from_scratch_learning_rate: float | None,
                       where: str = "run") -> dict[str, Any]:
    """The ``fine_tuning`` and ``from_scratch_learning_rate`` arguments of :func:`check` an advisor passes.

    ``fine_tuning``: given, or read from the ``where`` (``"run"``, ``"fit"``): a staged unfreeze
    or discriminative LRs. Refuses a from-scratch learning rate when not fine-tuning.

    >>> fine_tuning_values(True, 0.1)
    {'fine_tuning': True, 'from_scratch_learning_rate': 0.1}
    """
    if from_scratch_learning_rate is not None and not fine_tuning:
        raise ValueError(f"HyperparameterAdvisor: from_scratch_learning_rate is used only when fine-tuning, and "
                         f"this {where} has no StagedUnfreeze / DiscriminativeLR: pass fine_tuning=True")
    return {"fine_tuning": fine_tuning, "from_scratch_learning_rate": from_scratch_learning_rate}


# --------------------------------------------------------------------------------------------
def report(who: str, findings: Sequence[Finding], strict: bool = False, emit: bool = True) -> None:
    """How an adapter's advisor callback reports ``findings``: the one rule for every framework.

    With ``strict``, any ``"warning"`` finding raises ``ValueError`` listing them all (on every
    process, so every rank stops alike). Otherwise, when ``emit`` (the main process), each warning
    is issued as a :class:`HyperparameterWarning` (``"<who>: <finding>"``) and each ``"info"``
    logged to the ``hpcallbacks`` logger.
    """
    warns = [f for f in findings if f.severity == "warning"]
    if strict and warns:
        raise ValueError(f"{who} (strict=True): " + "; ".join(str(f) for f in warns))
    if not emit:
        return
    for f in findings:
        if f.severity == "warning":
            warnings.warn(f"{who}: {f}", HyperparameterWarning, stacklevel=3)
        else:
            _log.info("%s: %s", who, f)


def format_findings(findings: Sequence[Finding]) -> str:
    """The findings one per line, warnings first; a line saying so when there are none.

    >>> print(format_findings(check("sgd", learning_rate=0.05)))
    no findings: every value given is within the handbook's recommendations (H2)
    """
    if not findings:
        return "no findings: every value given is within the handbook's recommendations (H2)"
    ordered = sorted(findings, key=lambda f: f.severity != "warning")
    return "\n".join(str(f) for f in ordered)


def format_table() -> str:
    """The H2 table as :func:`check` uses it: key, recommended value, severity, source line."""
    width = max(len(row.key) for row in TABLE)
    return "\n".join(f"{row.key:<{width}}  {row.severity:<7}  {row.source}" for row in TABLE)


def _kernel_arg(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"kernel size must look like 3 or 3x3 or 7x1; got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"kernel size must look like 3 or 3x3 or 7x1; got {text!r}")
    return (values[0], values[-1])


def _loss_arg(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if sep and name:
            return name, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"loss term must look like NAME=VALUE; got {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hpcallbacks advise",
        description="Compare hyperparameters with the handbook's recommended values (H2) and print the findings. "
                    "Exit status: 0 without warnings, 1 with warnings, 2 for invalid input.",
    )
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="optimizer kind (picks the learning-rate row)")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--momentum", type=float, help="SGD momentum")
    p.add_argument("--beta-1", type=float, help="Adam beta_1")
    p.add_argument("--beta-2", type=float, help="Adam beta_2")
    p.add_argument("--epsilon", type=float, help="Adam epsilon")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--dropout", type=float, nargs="+", default=[], metavar="RATE", help="dropout rates")
    p.add_argument("--kernel-size", type=_kernel_arg, nargs="+", default=[], metavar="RxC",
                   help="convolution kernel sizes such as 3x3 or 7x1")
    p.add_argument("--fine-tuning", action="store_true", help="the run fine-tunes a pretrained model")
    p.add_argument("--from-scratch-learning-rate", type=float, help="with --fine-tuning: the from-scratch LR")
    p.add_argument("--loss-term", type=_loss_arg, action="append", default=[], metavar="NAME=VALUE",
                   help="typical size of one loss term (repeat for each term)")
    p.add_argument("--table", action="store_true", help="print the H2 table the advisor uses and exit")
    return p


def advise_main(argv: Sequence[str]) -> int:
    """``hpcallbacks advise``: parse ``argv``, print the findings (and loss weights), return the exit status.

    0 without warnings, 1 with at least one warning, 2 for invalid values (argparse exits with
    2 itself for malformed arguments).

    >>> advise_main(["--optimizer", "adam", "--learning-rate", "0.1", "--batch-size", "4096"])  # doctest: +ELLIPSIS
    warning: learning_rate = 0.1; recommended [1e-3, 1e-2] (H2: learning rate, Adam)...
    warning: batch_size = 4096; recommended [1, 1024] (H2: batch size)...
    1
    """
    parser = _parser()
    args = parser.parse_args(list(argv))
    if args.table:
        print(format_table())
        return 0
    if args.optimizer is None:
        parser.error("--optimizer is required (or --table)")
    terms = dict(args.loss_term) if args.loss_term else None
    try:
        findings = check(
            args.optimizer, learning_rate=args.learning_rate, batch_size=args.batch_size, momentum=args.momentum,
            beta_1=args.beta_1, beta_2=args.beta_2, epsilon=args.epsilon, weight_decay=args.weight_decay,
            dropout_rates=args.dropout, fine_tuning=args.fine_tuning,
            from_scratch_learning_rate=args.from_scratch_learning_rate, loss_terms=terms,
            kernel_sizes=args.kernel_size,
        )
    except ValueError as error:
        print(f"hpcallbacks advise: error: {error}", file=sys.stderr)
        return 2
    print(format_findings(findings))
    if terms is not None and any(f.row == "loss_terms" for f in findings):
        weights = loss_balance(terms).weights
        print("suggested loss weights: " + ", ".join(f"{k}={w:.3g}" for k, w in weights.items()))
    return 1 if any(f.severity == "warning" for f in findings) else 0
