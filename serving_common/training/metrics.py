"""Training metrics on stdout in XGBoost's convention, and the regexes an Estimator needs to read them.

A line is ``[<step>]<TAB><name>:<value><TAB><name>:<value>...`` (CloudWatch shows TAB as ``#011``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping

_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def format_metrics(step: int, values: Mapping[str, float]) -> str:
    return f"[{step}]" + "".join(f"\t{name}:{value:.6g}" for name, value in values.items())


def log_metrics(step: int, values: Mapping[str, float]) -> None:
    print(format_metrics(step, values), file=sys.stdout, flush=True)


def metric_regex(name: str) -> str:
    """Matches the metric in the raw line (TAB) and as CloudWatch renders it (#011)."""
    escaped = re.escape(name).replace("\\-", "-")  # a hyphen needs no escape outside [...]
    return rf".*\[[0-9]+\].*(?:\t|#011){escaped}:({_NUMBER}).*"


def metric_definitions(names: Iterable[str]) -> list[dict[str, str]]:
    """Paste into ``Estimator(metric_definitions=...)``."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in names]
