"""The one record flattening, at training and at serving: nested JSON objects become dotted field names.

``{"customer": {"age": 3}}`` -> ``{"customer.age": 3}``, so that a field has one name whether it came from
nested JSON or from a CSV column called ``customer.age``. The edge cases, the same everywhere (pinned by
tests/unit/preprocess/test_flatten.py):

- lists, and every value that is not an object, are kept as they are (objects inside lists too);
- an empty object contributes no field;
- a name that arises twice is an error, whether it names a value or an object
  (``{"a.b": 1, "a": {"b": 2}}``, ``{"a.b": {"c": 1}, "a": {"b": {"d": 2}}}``);
- a key that is not a string (from a Python caller) is named by ``str(key)``;
- ``mark_objects=True`` (serving and the record checks) maps the path of every object to
  :data:`NESTED_OBJECT`, which no feature accepts: a feature field that holds an object is an error there,
  never silently missing.

Stdlib only and imported on every request: the common record, with no object inside, costs one pass over
its values (:func:`has_objects`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DuplicateField(ValueError):
    """One field name arises twice in a record; callers add where (record, file, line)."""


class NestedObject:
    """Stands, in a flattened record, for an object found at a path (so a feature field holding an
    object is an error rather than silently missing)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<object>"


NESTED_OBJECT = NestedObject()

# Value types that are certainly not mappings: skips the (slow) abstract Mapping isinstance check
# (NestedObject: a flattened record, checked by validation before the transform reads it).
_PLAIN = frozenset({str, int, float, bool, type(None), list, NestedObject})


def is_object(value: Any) -> bool:
    """Whether ``value`` is a JSON object (a mapping)."""
    kind = type(value)
    return kind is dict or (kind not in _PLAIN and isinstance(value, Mapping))


def has_objects(record: Mapping) -> bool:
    """Whether one of the record's values is an object (else the record is flat already)."""
    for value in record.values():
        if is_object(value):
            return True
    return False


def flatten(record: Mapping, *, mark_objects: bool = False) -> dict[str, Any]:
    """``record`` with its nested objects flattened into dotted names (see the module's rules).

    DuplicateField when one name arises twice.
    """
    out: dict[str, Any] = {}
    _flatten_into(out, record, "")
    if mark_objects:
        return out
    return {name: value for name, value in out.items() if value is not NESTED_OBJECT}


def _flatten_into(out: dict[str, Any], mapping: Mapping, prefix: str) -> None:
    for key, value in mapping.items():
        name = prefix + (key if type(key) is str else str(key))
        if name in out:
            raise DuplicateField(f"field {name!r} occurs twice (as a dotted name and nested)")
        if is_object(value):
            out[name] = NESTED_OBJECT
            _flatten_into(out, value, name + ".")
        else:
            out[name] = value
