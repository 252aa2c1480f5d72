"""Hyperparameters: SageMaker's string values (JSON-quoted by the SDK) converted, checked and defaulted."""

from __future__ import annotations

import re

import pytest

from serving_common.training.hyperparameters import REQUIRED, Hyperparameter, HyperparameterError, describe, parse

DECLARED = (
    Hyperparameter("num_round", int, REQUIRED, "boosting rounds", minimum=1),
    Hyperparameter("eta", float, 0.3, "learning rate", minimum=0, maximum=1),
    Hyperparameter("objective", str, "reg:squarederror", "loss", choices=("reg:squarederror", "binary:logistic")),
    Hyperparameter("verbose", bool, False, "print more"),
    Hyperparameter("columns", list, [], "feature columns"),
    Hyperparameter("name", str, None, "a free text"),
)


def test_values_and_defaults():
    values = parse(DECLARED, {"num_round": "10", "eta": "0.1"})
    assert values == {"num_round": 10, "eta": 0.1, "objective": "reg:squarederror", "verbose": False,
                      "columns": [], "name": None}
    assert type(values["num_round"]) is int and type(values["eta"]) is float


def test_json_quoted_values_from_the_sdk():
    values = parse(DECLARED, {"num_round": "5", "eta": '"0.25"', "objective": '"binary:logistic"',
                              "verbose": "true", "columns": '["a", "b"]', "name": '"abc"'})
    assert values["num_round"] == 5
    assert values["eta"] == 0.25
    assert values["objective"] == "binary:logistic"
    assert values["verbose"] is True
    assert values["columns"] == ["a", "b"]
    assert values["name"] == "abc"


@pytest.mark.parametrize(("raw", "expected"), [
    ("5", 5), ('"5"', 5), ("5.0", 5), ("1e3", 1000), (" 7 ", 7), ("-3", -3),
    ("12345678901234567891", 12345678901234567891), ('"9007199254740993"', 9007199254740993),
])
def test_int(raw, expected):
    value = Hyperparameter("n", int).convert(raw)
    assert value == expected and type(value) is int


@pytest.mark.parametrize("raw", ["5.5", "five", "", "inf", "nan", '"1.5"', "[1, 2]"])
def test_bad_int(raw):
    with pytest.raises(HyperparameterError) as caught:
        Hyperparameter("num_round", int).convert(raw)
    assert "num_round" in str(caught.value)
    assert "not a valid int" in str(caught.value)


@pytest.mark.parametrize(("raw", "expected"), [
    ("0.1", 0.1), ('"0.1"', 0.1), ("1e-3", 0.001), ("3", 3.0), ("-2.5", -2.5),
])
def test_float(raw, expected):
    value = Hyperparameter("x", float).convert(raw)
    assert value == expected and type(value) is float


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-inf", '"nan"', "abc", ""])
def test_non_finite_or_bad_float(raw):
    with pytest.raises(HyperparameterError, match=r"x=.* is not a valid float"):
        Hyperparameter("x", float).convert(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("True", True), ('"true"', True), ("1", True), ("yes", True), ("YES", True),
    ("false", False), ("False", False), ('"False"', False), ("0", False), ("no", False),
])
def test_bool(raw, expected):
    assert Hyperparameter("flag", bool).convert(raw) is expected


@pytest.mark.parametrize("raw", ["2", "maybe", "", "on"])
def test_bad_bool(raw):
    with pytest.raises(HyperparameterError, match=r"flag=.* is not a valid bool"):
        Hyperparameter("flag", bool).convert(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("a,b,c", ["a", "b", "c"]), (" a , b ,, ", ["a", "b"]), ('["x", "y"]', ["x", "y"]), ("[1, 2]", ["1", "2"]),
    ('"a,b"', ["a", "b"]), ("", []), ("single", ["single"]),
])
def test_list(raw, expected):
    assert Hyperparameter("cols", list).convert(raw) == expected


def test_str_keeps_plain_text_and_unquotes_json():
    hp = Hyperparameter("s", str)
    assert hp.convert("plain text") == "plain text"
    assert hp.convert('"quoted"') == "quoted"
    assert hp.convert("5") == "5"
    assert hp.convert("{not json") == "{not json"


def test_choices():
    hp = DECLARED[2]
    assert hp.convert('"binary:logistic"') == "binary:logistic"
    with pytest.raises(HyperparameterError) as caught:
        hp.convert("multi:softmax")
    assert "objective" in str(caught.value)
    assert "reg:squarederror, binary:logistic" in str(caught.value)


def test_minimum_and_maximum():
    eta = DECLARED[1]
    assert eta.convert("0") == 0.0 and eta.convert("1") == 1.0
    with pytest.raises(HyperparameterError, match=re.escape("eta=1.5 must be <= 1")):
        eta.convert("1.5")
    with pytest.raises(HyperparameterError, match=re.escape("eta=-0.1 must be >= 0")):
        eta.convert("-0.1")
    with pytest.raises(HyperparameterError, match="num_round=0 must be >= 1"):
        parse(DECLARED, {"num_round": "0"})


def test_unknown_name_lists_the_accepted_ones():
    with pytest.raises(HyperparameterError) as caught:
        parse(DECLARED, {"num_round": "1", "max_dept": "5"})
    message = str(caught.value)
    assert "'max_dept'" in message
    assert "columns, eta, name, num_round, objective, verbose" in message


def test_reserved_names_are_accepted_and_not_passed_on():
    raw = {"num_round": "1", "sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://b/k"',
           "sagemaker_container_log_level": "20", "_tuning_objective_metric": '"validation:auc"',
           "sagemaker_estimator_class_name": '"Estimator"'}
    values = parse(DECLARED, raw)
    assert set(values) == {hp.name for hp in DECLARED}


def test_required_missing():
    with pytest.raises(HyperparameterError) as caught:
        parse(DECLARED, {"eta": "0.1"})
    assert "num_round is required" in str(caught.value)
    assert "boosting rounds" in str(caught.value)


def test_errors_are_value_errors():
    assert issubclass(HyperparameterError, ValueError)


def test_describe_is_a_markdown_table():
    lines = describe(DECLARED).split("\n")
    assert lines[0] == "| name | type | default | help |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| `num_round` | int | required | boosting rounds |"
    assert lines[3] == "| `eta` | float | 0.3 | learning rate |"
    assert len(lines) == 2 + len(DECLARED)
