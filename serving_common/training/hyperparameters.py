"""Hyperparameters declared per container with type, default, range and help; validated before any work."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REQUIRED = object()
# Keys the SDK, tuning jobs and debugger add on their own: accepted, never fatal, never passed on.
RESERVED_PREFIXES = ("sagemaker_", "_")


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, missing, or has an invalid value."""


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    type: type = str  # int, float, str, bool or list (comma-separated strings)
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: why the image refuses this name (a name users know, e.g. from SageMaker's own algorithm, that this
    #: image does not implement): a job that sets it fails saying "not supported by this image: <why>".
    unsupported: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def convert(self, raw: str) -> Any:
        """Convert SageMaker's string value (possibly JSON-encoded by the SDK) and check its range."""
        if self.unsupported is not None:
            raise HyperparameterError(f"hyperparameter {self.name} is not supported by this image: {self.unsupported}")
        text = _unquote(raw)
        try:
            value = _CONVERTERS[self.type](text)
        except (ValueError, TypeError):
            raise HyperparameterError(
                f"hyperparameter {self.name}={raw!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise HyperparameterError(
                f"hyperparameter {self.name}={value!r} must be one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise HyperparameterError(f"hyperparameter {self.name}={value} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise HyperparameterError(f"hyperparameter {self.name}={value} must be <= {self.maximum}")
        return value


def _unquote(raw: str) -> str:
    # The SageMaker SDK JSON-encodes values ('"gbtree"', '5'); plain strings arrive as they are.
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw.strip()
    if isinstance(decoded, str):
        return decoded.strip()
    if isinstance(decoded, list):
        return ",".join(str(item) for item in decoded)
    return raw.strip()


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


def _int(text: str) -> int:
    try:
        return int(text)  # exact, however large; float() below would round past 2**53
    except ValueError:
        pass
    number = float(text)  # "5.0", "1e3"
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


_CONVERTERS = {int: _int, float: _float, str: str, bool: _bool, list: _list}


def parse(declared: Sequence[Hyperparameter], raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed values of every declared hyperparameter (defaults filled in); errors name the culprit."""
    by_name = {hp.name: hp for hp in declared}
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name in by_name:
            values[name] = by_name[name].convert(text)
        elif name.startswith(RESERVED_PREFIXES):
            log.info("ignoring reserved hyperparameter %s", name)
        else:
            raise HyperparameterError(
                f"unknown hyperparameter {name!r}; this container accepts: "
                f"{', '.join(sorted(n for n, hp in by_name.items() if hp.unsupported is None))}")
    for hp in declared:
        if hp.unsupported is not None:
            continue
        if hp.name not in values:
            if hp.required:
                raise HyperparameterError(f"hyperparameter {hp.name} is required ({hp.help})")
            values[hp.name] = hp.default
    return values


def describe(declared: Sequence[Hyperparameter]) -> str:
    """A Markdown table of the declared hyperparameters (for the README and ``--help``)."""
    lines = ["| name | type | default | help |", "|---|---|---|---|"]
    for hp in declared:
        if hp.unsupported is not None:
            lines.append(f"| `{hp.name}` | - | - | not supported by this image: {hp.unsupported} |")
            continue
        default = "required" if hp.required else repr(hp.default)
        lines.append(f"| `{hp.name}` | {hp.type.__name__} | {default} | {hp.help} |")
    return "\n".join(lines)
