"""Results bookkeeping and the three report forms."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from smkit_contract import report
from smkit_contract.rules import RULES, SAGEMAKER, SMKIT, Results, Status


def _results() -> Results:
    results = Results("team/model:1")
    results.passed("serve.ping-ready")
    results.failed("serve.sigterm", "still running 30 s after SIGTERM")
    results.skipped("multi-model.api", "no multi-models label")
    results.failed("smkit.error-body", "415: got text/plain")
    return results


def test_fail_beats_pass_beats_skip_and_the_first_detail_stays():
    results = Results("image")
    results.skipped("invocations.accept", "not yet")
    results.passed("invocations.accept")
    assert results.items["invocations.accept"].status is Status.PASS
    results.failed("invocations.accept", "first failure")
    results.passed("invocations.accept")
    results.failed("invocations.accept", "second failure")
    assert results.items["invocations.accept"].status is Status.FAIL
    assert results.items["invocations.accept"].detail == "first failure"


def test_check_records_by_the_condition_and_returns_it():
    results = Results("image")
    assert results.check("serve.bind-to-port", True, "unused") is True
    assert results.check("serve.bind-to-port-label", False, "label missing") is False
    assert results.failures(SAGEMAKER) == ["serve.bind-to-port-label"]


def test_results_come_in_catalogue_order_per_level():
    results = _results()
    order = list(RULES)
    ids = [r.rule.id for r in results.of_level(SAGEMAKER)]
    assert ids == sorted(ids, key=order.index)
    assert [r.rule.id for r in results.of_level(SMKIT)] == ["smkit.error-body"]


def test_text_says_what_sagemaker_does_and_the_fix_for_a_failure_only():
    text = report.text(_results(), (SAGEMAKER, SMKIT))
    sigterm = RULES["serve.sigterm"]
    assert "FAIL  serve.sigterm" in text and "still running 30 s after SIGTERM" in text
    assert f"SageMaker: {sigterm.sagemaker}" in text and f"fix: {sigterm.fix}" in text
    assert f"fix: {RULES['serve.ping-ready'].fix}" not in text
    assert "SKIP  multi-model.api" in text and "no multi-models label" in text
    assert "sagemaker: 1 passed, 1 failed, 1 skipped -> FAIL" in text
    assert "smkit: 0 passed, 1 failed, 0 skipped -> FAIL" in text
    assert f"fix: {RULES['serve.ping-ready'].fix}" in report.text(_results(), (SAGEMAKER,), explain=True)


def test_text_of_one_level_leaves_the_other_out():
    text = report.text(_results(), (SAGEMAKER,))
    assert "smkit.error-body" not in text and "smkit conventions" not in text


def test_json_report():
    document = json.loads(report.to_json(_results(), (SAGEMAKER, SMKIT)))
    assert document["image"] == "team/model:1"
    assert document["levels"] == {SAGEMAKER: {"passed": False, "failed": ["serve.sigterm"]},
                                  SMKIT: {"passed": False, "failed": ["smkit.error-body"]}}
    sigterm = next(r for r in document["results"] if r["id"] == "serve.sigterm")
    assert sigterm["status"] == "FAIL" and sigterm["level"] == SAGEMAKER
    assert sigterm["fix"] == RULES["serve.sigterm"].fix
    assert len(document["results"]) == 4


def test_junit_report_has_a_suite_per_level_and_a_case_per_rule():
    root = ET.fromstring(report.to_junit(_results(), (SAGEMAKER, SMKIT)))
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    sagemaker = suites["smkit-contract.sagemaker"]
    assert (sagemaker.get("tests"), sagemaker.get("failures"), sagemaker.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in sagemaker.iter("testcase")}
    assert cases["serve.sigterm"].get("classname") == "sagemaker.serve"
    failure = cases["serve.sigterm"].find("failure")
    assert failure is not None and "still running" in failure.text and "fix:" in failure.text
    assert cases["multi-model.api"].find("skipped").get("message") == "no multi-models label"
    assert cases["serve.ping-ready"].find("failure") is None
    assert suites["smkit-contract.smkit"].get("failures") == "1"


def test_every_rule_is_documented():
    docs = (Path(__file__).resolve().parents[3] / "docs" / "contract-kit.md").read_text()
    assert [rule for rule in RULES if f"| `{rule}` |" not in docs] == []
