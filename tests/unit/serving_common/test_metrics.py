"""Metric lines in XGBoost's convention and the regexes SageMaker uses to read them back."""

from __future__ import annotations

import re

import pytest

from serving_common.training.metrics import format_metrics, log_metrics, metric_definitions, metric_regex


def test_format():
    assert format_metrics(3, {"train-auc": 0.91}) == "[3]\ttrain-auc:0.91"
    assert format_metrics(0, {"train-rmse": 1.5, "validation-rmse": 2.25}) == \
        "[0]\ttrain-rmse:1.5\tvalidation-rmse:2.25"


def test_format_keeps_six_significant_digits():
    assert format_metrics(1, {"loss": 0.123456789}) == "[1]\tloss:0.123457"
    assert format_metrics(1, {"loss": 1234567.0}) == "[1]\tloss:1.23457e+06"


def test_log_metrics_prints_a_line_on_stdout(capsys):
    log_metrics(7, {"train-auc": 0.5})
    assert capsys.readouterr().out == "[7]\ttrain-auc:0.5\n"


@pytest.mark.parametrize("separator", ["\t", "#011"])
@pytest.mark.parametrize(("name", "value"), [("train-auc", 0.91), ("validation-rmse", 1.2345e-07),
                                             ("validation-mlogloss", -0.5), ("loss", 1234567.0)])
def test_regex_matches_tab_and_cloudwatch_forms(separator, name, value):
    line = format_metrics(12, {"train-error": 0.1, name: value, "z": 3}).replace("\t", separator)
    match = re.match(metric_regex(name), line)
    assert match is not None, line
    assert float(match.group(1)) == pytest.approx(value, rel=1e-5)


def test_regex_in_a_cloudwatch_log_line_with_a_prefix():
    line = "2024-05-01T10:00:00.000Z [42]#011train-auc:0.93#011validation-auc:0.88"
    assert re.match(metric_regex("validation-auc"), line).group(1) == "0.88"
    assert re.match(metric_regex("train-auc"), line).group(1) == "0.93"


def test_regex_does_not_match_a_longer_name_or_a_line_without_a_step():
    assert re.match(metric_regex("auc"), "[1]\ttrain-auc:0.9") is None
    assert re.match(metric_regex("train-auc"), "train-auc:0.9") is None
    assert re.match(metric_regex("a.c"), "[1]\tabc:0.9") is None  # names are literal, not patterns


def test_metric_definitions():
    definitions = metric_definitions(["train-auc", "validation-auc"])
    assert [d["Name"] for d in definitions] == ["train-auc", "validation-auc"]
    assert definitions[1]["Regex"] == metric_regex("validation-auc")
    assert re.match(definitions[1]["Regex"], "[5]#011train-auc:0.7#011validation-auc:0.65").group(1) == "0.65"
