"""The three forms of a run's results: text for people, JSON and JUnit XML for CI."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from typing import Any

from smkit_contract.rules import LEVEL_TITLES, SAGEMAKER, Result, Results, Status


def _indent(text: str, prefix: str = "        ") -> str:
    return textwrap.indent(text, prefix)


def text(results: Results, levels: tuple[str, ...], explain: bool = False) -> str:
    """One line per rule, level by level; a FAIL (every rule with ``explain``) also says what SageMaker
    does and how to fix it."""
    width = max((len(rule_id) for rule_id in results.items), default=10)
    lines = [f"smkit-contract {results.image}"]
    for level in levels:
        lines += ["", f"{LEVEL_TITLES[level]} (level \"{level}\")"]
        for result in results.of_level(level):
            rule = result.rule
            lines.append(f"  {result.status.value}  {rule.id.ljust(width)}  {rule.title}")
            if result.detail and (result.status is not Status.PASS or explain):
                lines.append(_indent(result.detail))
            if result.status is Status.FAIL or explain:
                lines.append(_indent(f"{'SageMaker' if level == SAGEMAKER else 'why'}: {rule.sagemaker}"))
                lines.append(_indent(f"fix: {rule.fix}"))
    lines.append("")
    for level in levels:
        counts = {status: sum(r.status is status for r in results.of_level(level)) for status in Status}
        verdict = "FAIL" if counts[Status.FAIL] else "PASS"
        lines.append(f"{level}: {counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
                     f"{counts[Status.SKIP]} skipped -> {verdict}")
    return "\n".join(lines)


def _result_dict(result: Result) -> dict[str, Any]:
    rule = result.rule
    return {"id": rule.id, "level": rule.level, "status": result.status.value, "title": rule.title,
            "detail": result.detail, "sagemaker": rule.sagemaker, "fix": rule.fix}


def to_json(results: Results, levels: tuple[str, ...]) -> str:
    document = {
        "image": results.image,
        "levels": {level: {"passed": not results.failures(level), "failed": results.failures(level)}
                   for level in levels},
        "results": [_result_dict(r) for level in levels for r in results.of_level(level)],
    }
    return json.dumps(document, indent=2)


def to_junit(results: Results, levels: tuple[str, ...]) -> str:
    """JUnit XML: one testsuite per level, one testcase per rule (classname ``<level>.<area>``)."""
    suites = ET.Element("testsuites", name=f"smkit-contract {results.image}")
    for level in levels:
        items = results.of_level(level)
        suite = ET.SubElement(suites, "testsuite", name=f"smkit-contract.{level}", tests=str(len(items)),
                              failures=str(sum(r.status is Status.FAIL for r in items)), errors="0",
                              skipped=str(sum(r.status is Status.SKIP for r in items)))
        for result in items:
            rule = result.rule
            case = ET.SubElement(suite, "testcase", classname=f"{level}.{rule.id.split('.')[0]}", name=rule.id)
            if result.status is Status.FAIL:
                failure = ET.SubElement(case, "failure", message=rule.title)
                failure.text = f"{result.detail}\nSageMaker: {rule.sagemaker}\nfix: {rule.fix}"
            elif result.status is Status.SKIP:
                ET.SubElement(case, "skipped", message=result.detail)
            elif result.detail:
                ET.SubElement(case, "system-out").text = result.detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
