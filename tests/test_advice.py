"""hpcallbacks.advice: the H2 table, check(), loss_balance(), the advise verb."""
from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcallbacks.advice import (
    MAX_LOSS_RATIO,
    ROWS,
    TABLE,
    Finding,
    advise_main,
    check,
    format_findings,
    format_table,
    loss_balance,
)

# One case per H2 row: (row, optimizer, in-range arguments, out-of-range arguments).
ROW_CASES = [
    ("learning_rate_sgd", "sgd", dict(learning_rate=0.05), dict(learning_rate=0.5)),
    ("learning_rate_sgd_momentum", "sgd_momentum", dict(learning_rate=5e-3), dict(learning_rate=0.05)),
    ("learning_rate_adam", "adam", dict(learning_rate=3e-3), dict(learning_rate=0.1)),
    ("learning_rate_fine_tuning", "sgd", dict(learning_rate=1e-3, fine_tuning=True, from_scratch_learning_rate=0.05),
     dict(learning_rate=0.05, fine_tuning=True, from_scratch_learning_rate=0.05)),
    ("loss_terms", "adam", dict(loss_terms={"a": 1.0, "b": 50.0}), dict(loss_terms={"a": 1.0, "b": 250.0})),
    ("batch_size", "adam", dict(batch_size=1024), dict(batch_size=4096)),
    ("beta_1", "adam", dict(beta_1=0.9), dict(beta_1=0.5)),
    ("beta_2", "adam", dict(beta_2=0.999), dict(beta_2=0.98)),
    ("epsilon", "adam", dict(epsilon=1e-8), dict(epsilon=1e-7)),
    ("momentum", "sgd_momentum", dict(momentum=0.9), dict(momentum=0.99)),
    ("weight_decay", "sgd", dict(weight_decay=5e-4), dict(weight_decay=1e-2)),
    ("dropout_rate", "adam", dict(dropout_rates=[0.2, 0.5]), dict(dropout_rates=[0.3, 0.7])),
    ("kernel_size", "sgd", dict(kernel_sizes=[3, (7, 1), (1, 7)]), dict(kernel_sizes=[3, (11, 11)])),
]


def test_every_row_has_a_case_and_a_source_line():
    assert sorted(case[0] for case in ROW_CASES) == sorted(ROWS)
    for row in TABLE:
        assert row.source.startswith("| ") and row.source.endswith(" |")
        assert row.severity in ("warning", "info")


@pytest.mark.parametrize("row, optimizer, inside, outside", ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_h2_row(row, optimizer, inside, outside):
    assert check(optimizer, **inside) == []
    findings = check(optimizer, **outside)
    assert len(findings) == 1, findings
    finding = findings[0]
    assert finding.row == row and finding.severity == ROWS[row].severity
    assert ROWS[row].hyperparameter in str(finding)


def test_h1_importance_sets_the_severity():
    assert check("adam", learning_rate=1.0)[0].severity == "warning"
    assert check("adam", beta_1=0.5)[0].severity == "info"
    assert check("adam", dropout_rates=[0.9])[0].severity == "info"


def test_range_ends_are_inside():
    assert check("sgd", learning_rate=1e-2) == check("sgd", learning_rate=1e-1) == []
    assert check("adam", batch_size=1) == []
    assert check("sgd", weight_decay=0.0) == check("sgd", weight_decay=1e-4) == []


def test_sgd_with_momentum_uses_the_momentum_row():
    assert [f.row for f in check("sgd", learning_rate=0.05, momentum=0.9)] == ["learning_rate_sgd_momentum"]
    assert check("sgd", learning_rate=0.05, momentum=0.0)[0].row == "momentum"  # plain SGD LR is fine
    assert check("nesterov", learning_rate=5e-3, momentum=0.9) == []


def test_fine_tuning_rules():
    # 1 to 2 orders of magnitude below the from-scratch value
    assert check("adam", learning_rate=1e-4, fine_tuning=True, from_scratch_learning_rate=1e-3) == []
    assert check("adam", learning_rate=1e-5, fine_tuning=True, from_scratch_learning_rate=1e-3) == []
    for lr in (1e-3, 5e-4, 5e-6):
        f = check("adam", learning_rate=lr, fine_tuning=True, from_scratch_learning_rate=1e-3)
        assert [x.row for x in f] == ["learning_rate_fine_tuning"], lr
    # without the from-scratch value: below the optimizer's row
    assert check("adam", learning_rate=1e-4, fine_tuning=True) == []
    assert check("adam", learning_rate=3e-3, fine_tuning=True)[0].row == "learning_rate_fine_tuning"
    # the from-scratch value itself is checked against its row
    f = check("adam", learning_rate=1e-3, fine_tuning=True, from_scratch_learning_rate=0.1)
    assert [(x.parameter, x.row) for x in f] == [("from_scratch_learning_rate", "learning_rate_adam")]


def test_adamw_weight_decay_is_not_an_l2_coefficient():
    assert check("adamw", weight_decay=0.01) == []
    assert check("adam", weight_decay=0.01)[0].row == "weight_decay"


def test_one_finding_per_out_of_range_value():
    findings = check("adam", learning_rate=0.1, batch_size=4096, beta_1=0.5, beta_2=0.999,
                     dropout_rates=[0.1, 0.3, 0.9], weight_decay=1e-3)
    assert [f.parameter for f in findings] == [
        "learning_rate", "batch_size", "beta_1", "weight_decay", "dropout_rates[0]", "dropout_rates[2]"]
    assert findings[0] == Finding("warning", "learning_rate", 0.1, "[1e-3, 1e-2]", ROWS["learning_rate_adam"].why,
                                  "learning_rate_adam")


# -- loss balance -------------------------------------------------------------------------------
def test_loss_balance_cases():
    flagged = loss_balance({"a": 1.0, "b": 250.0})
    assert len(flagged.findings) == 1 and flagged.findings[0].row == "loss_terms"
    assert flagged.findings[0].value == pytest.approx(250.0)
    assert flagged.weights == pytest.approx({"a": 1.0, "b": 0.004})
    fine = loss_balance({"a": 1.0, "b": 50.0})
    assert fine.findings == () and fine.weights == {"a": 1.0, "b": 1.0}
    assert loss_balance({"a": 1.0, "b": 100.0}).findings == ()  # exactly two orders: still close
    assert loss_balance({"only": 3.0}).findings == ()


def test_loss_balance_reference_and_signs():
    b = loss_balance({"ce": 2.0, "kl": 0.01, "l1": 5.0, "gp": -300.0})
    assert b.weights == pytest.approx({"ce": 1.0, "kl": 200.0, "l1": 1.0, "gp": 2.0 / 300.0})
    b = loss_balance({"ce": 2.0, "kl": 0.01}, reference="kl")
    assert b.weights == pytest.approx({"ce": 0.005, "kl": 1.0})


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(1e-6, 1e6), min_size=1, max_size=6))
def test_suggested_weights_balance_the_terms(terms):
    b = loss_balance(terms)
    weighted = [abs(v) * b.weights[k] for k, v in terms.items()]
    assert max(weighted) / min(weighted) <= MAX_LOSS_RATIO * (1 + 1e-9)
    assert all(w > 0 for w in b.weights.values())
    assert bool(b.findings) == (max(terms.values()) / min(terms.values()) > MAX_LOSS_RATIO * (1 + 1e-9))


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=32.5), "batch_size"),
        (dict(optimizer="sgd", momentum=1.0), "momentum"),
        (dict(momentum=0.9), "momentum"),  # momentum with adam
        (dict(optimizer="sgd", beta_1=0.9), "beta_1"),
        (dict(optimizer="sgd", epsilon=1e-8), "epsilon"),
        (dict(beta_2=1.0), "beta_2"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(dropout_rates=0.5), "dropout_rates"),
        (dict(dropout_rates=[0.3, 1.0]), r"dropout_rates\[1\]"),
        (dict(fine_tuning="yes"), "fine_tuning"),
        (dict(from_scratch_learning_rate=1e-3), "from_scratch_learning_rate"),
        (dict(fine_tuning=True, from_scratch_learning_rate=-1.0), "from_scratch_learning_rate"),
        (dict(loss_terms={}), "terms"),
        (dict(kernel_sizes=[(3, 3, 3)]), r"kernel_sizes\[0\]"),
        (dict(kernel_sizes=[0]), r"kernel_sizes\[0\]"),
    ],
)
def test_check_refuses(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check(**({"optimizer": "adam"} | kwargs))


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        (([],), {}, "terms"),
        (({},), {}, "terms"),
        (({"a": 0.0},), {}, r"terms\['a'\]"),
        (({"a": float("inf")},), {}, r"terms\['a'\]"),
        (({"a": "big"},), {}, r"terms\['a'\]"),
        (({1: 1.0},), {}, "terms"),
        (({"a": 1.0},), dict(reference="b"), "reference"),
    ],
)
def test_loss_balance_refuses(args, kwargs, name):
    with pytest.raises(ValueError, match=name):
        loss_balance(*args, **kwargs)


# -- printing and the CLI verb ----------------------------------------------------------------
def test_format_findings():
    assert "no findings" in format_findings([])
    text = format_findings(check("adam", learning_rate=0.1, beta_1=0.5, batch_size=4096))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("warning: learning_rate = 0.1")
    assert lines[-1].startswith("info: beta_1 = 0.5")
    assert all(row.source in format_table() for row in TABLE)


def test_advise_main(capsys):
    argv = ["--optimizer", "adam", "--learning-rate", "0.1", "--batch-size", "4096", "--dropout", "0.1", "0.3",
            "--loss-term", "ce=1", "--loss-term", "l1=250", "--kernel-size", "3x3", "7x1", "11"]
    assert advise_main(argv) == 1
    out = capsys.readouterr().out
    for text in ("learning_rate = 0.1", "batch_size = 4096", "dropout_rates[0] = 0.1", "kernel_sizes[2] = 11x11",
                 "suggested loss weights: ce=1, l1=0.004"):
        assert text in out
    assert advise_main(["--optimizer", "sgd", "--learning-rate", "0.05"]) == 0
    assert "no findings" in capsys.readouterr().out
    assert advise_main(["--optimizer", "adam", "--beta-1", "0.5"]) == 0  # info only
    assert advise_main(["--optimizer", "adam", "--learning-rate", "1e-4", "--fine-tuning",
                        "--from-scratch-learning-rate", "1e-3"]) == 0
    assert advise_main(["--table"]) == 0
    assert "| batch size | [1, 1024] |" in capsys.readouterr().out


def test_advise_main_bad_input(capsys):
    assert advise_main(["--optimizer", "adam", "--momentum", "0.9"]) == 2
    assert "momentum" in capsys.readouterr().err
    assert advise_main(["--optimizer", "adam", "--learning-rate", "nan"]) == 2
    for argv in (["--learning-rate", "0.1"], ["--optimizer", "lion"], ["--optimizer", "adam", "--loss-term", "x"],
                 ["--optimizer", "adam", "--kernel-size", "3by3"]):
        with pytest.raises(SystemExit) as exit_info:
            advise_main(argv)
        assert exit_info.value.code == 2


def test_core_imports_no_framework():
    import subprocess

    modules = "hpcallbacks.advice, hpcallbacks.batch, hpcallbacks.norms, hpcallbacks.gan, hpcallbacks.params"
    code = (f"import sys, {modules}; "
            "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------
# what the adapters' LossBalance / HyperparameterAdvisor callbacks share
def test_loss_terms_and_the_balance_check_the_adapters_run():
    from hpcallbacks.advice import balance_check, loss_terms, missing_terms_warning

    assert loss_terms(["a", "b"], "b") == ("a", "b")
    for terms, reference, message in [("ab", None, "terms must be two or more"), (("a",), None, "two or more"),
                                      (("a", "a"), None, "distinct"), (("a", "b"), "c", "reference must be one of")]:
        with pytest.raises(ValueError, match=message):
            loss_terms(terms, reference)
    assert balance_check({"a": 1.0, "b": 0.0}) is None and balance_check({"a": float("nan"), "b": 1.0}) is None
    assert balance_check({"a": 1.0, "b": 250.0}) == loss_balance({"a": 1.0, "b": 250.0})
    assert missing_terms_warning(("a", "b"), {"a": 1, "c": 2}, "were not logged", "log them") == (
        "LossBalance: term(s) ['b'] were not logged (logged: ['a', 'c']); log them")
    assert missing_terms_warning(("a", "b"), ["b", "a"], "were not logged", "log them") is None


def test_loss_balance_base_keeps_what_it_found_and_warns_a_missing_term_once():
    from hpcallbacks.advice import LossBalanceBase

    class Balance(LossBalanceBase):
        pass

    b = Balance()
    b._init_balance(("a", "b"), 2, False, None)
    assert (b.terms, b.every_n_epochs, b.strict, b.weights, b.values) == (("a", "b"), 2, False, {"a": 1.0, "b": 1.0},
                                                                          {})
    with pytest.warns(UserWarning, match=r"term\(s\) \['b'\] are not in the logs"):
        assert b._missing({"a": 1.0}, "are not in the logs", "pass terms=")
    assert b._missing({"a": 1.0}, "are not in the logs", "pass terms=")  # once: no second warning (errors here)
    assert not b._missing({"a": 1.0, "b": 2.0}, "are not in the logs", "pass terms=")
    assert b._balance({"a": 1.0, "b": 0.0}) is None and b.values == {}
    result = b._balance({"a": 1.0, "b": 250.0})
    assert result.findings and b.values == {"a": 1.0, "b": 250.0} and b.weights == result.weights
    with pytest.raises(ValueError, match="strict must be True or False"):
        Balance()._init_balance(("a", "b"), 1, "yes", None)


def test_advisor_options_and_fine_tuning_values():
    from hpcallbacks.advice import AdvisorBase, advisor_options, fine_tuning_values

    assert advisor_options(True, None, None) == (True, None, None)
    with pytest.raises(ValueError, match="from_scratch_learning_rate is used only when fine-tuning; got 0.1"):
        advisor_options(False, False, 0.1)
    with pytest.raises(ValueError, match="fine_tuning must be True or False"):
        advisor_options(False, "yes", None)

    def own(name, value):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: own message")
        return value

    with pytest.raises(ValueError, match="strict: own message"):
        advisor_options(1, None, None, boolean=own)
    assert fine_tuning_values(False, None) == {"fine_tuning": False, "from_scratch_learning_rate": None}
    with pytest.raises(ValueError, match="this fit has no StagedUnfreeze"):
        fine_tuning_values(False, 0.1, where="fit")

    class Advisor(AdvisorBase):
        pass

    a = Advisor()
    a._init_advisor(False, None, None)
    assert a.findings == [] and a.values == {}
    findings = a._advise({"optimizer": "sgd", "learning_rate": 0.5})
    assert findings == check("sgd", learning_rate=0.5) and a.findings is findings and a.values["learning_rate"] == 0.5
