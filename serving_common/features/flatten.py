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
its values (:func:`has_objects`). Records of one *shape* (:func:`shape`: the same keys and value types, nested
objects alike) flatten to the same names in the same places: :class:`Layout` works those places out once per
shape (checked against :func:`flatten`), so a batch of records of one shape is flattened once, not per record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NESTED_OBJECT", "DuplicateField", "Layout", "NestedObject", "flatten", "has_objects", "is_object",
           "shape"]


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


# --------------------------------------------------------------------------------------------------
# shapes: flattening worked out once for every record of the same keys and value types

# The value types a Layout knows (what JSON decodes to; dict: an object, flattened). A record holding any other
# value type or a key that is not a str gets no layout: it is flattened by flatten(), record by record.
_JSON_TYPES = frozenset({str, int, float, bool, type(None), list, dict})


def shape(record: dict) -> tuple:
    """A key equal for two records (plain dicts) exactly when they have the same keys (by value and
    type) in the same order and the same value types, recursively inside their ``dict`` values: records of
    one shape flatten to the same names, each taken from the same place (:class:`Layout`)."""
    values = record.values()
    types = tuple(map(type, values))
    key = (tuple(record), tuple(map(type, record)), types)
    if dict in types:
        return (*key, *[shape(value) for value in values if type(value) is dict])
    return key


class Layout:
    """Where each flattened field of the records of one :func:`shape` lies.

    :meth:`values` lists a record's values in the order of :attr:`names` (an object's own place holds the
    ``dict``; :func:`flatten` puts :data:`NESTED_OBJECT` there): every value of the record itself, then
    those of each ``dict`` found, in order. :attr:`types` are the values' types, the same for every record of
    the shape.
    """

    __slots__ = ("expand", "names", "types")

    def __init__(self, names: tuple[str, ...], types: tuple[type, ...], expand: tuple[int, ...]) -> None:
        self.names = names
        self.types = types
        self.expand = expand  # positions (in values()) of the dicts whose values are appended, in order

    @classmethod
    def of(cls, record: dict) -> Layout | None:
        """The layout of ``record``'s shape; None when it has none (a key that is not a str, a value type
        outside JSON's, a name arising twice: :func:`flatten` decides those record by record)."""
        if type(record) is not dict:
            return None
        names: list[str] = []
        values: list[Any] = []
        expand: list[int] = []

        def add(mapping: dict, prefix: str) -> bool:
            for key, value in mapping.items():
                if type(key) is not str or type(value) not in _JSON_TYPES:
                    return False
                names.append(prefix + key)
                values.append(value)
            return True

        if not add(record, ""):
            return None
        position = 0
        while position < len(values):
            if type(values[position]) is dict:
                expand.append(position)
                if not add(values[position], names[position] + "."):
                    return None
            position += 1
        layout = cls(tuple(names), tuple(map(type, values)), tuple(expand))
        if len(set(names)) != len(names):
            return None
        # the one flattening decides: the layout must place every field of flatten()'s record exactly there
        try:
            flat = flatten(record, mark_objects=True)
        except DuplicateField:
            return None
        gathered = layout.values(record)
        if len(flat) != len(names) or any(
                flat.get(name, _ABSENT) is not (NESTED_OBJECT if type(value) is dict else value)
                for name, value in zip(names, gathered, strict=True)):
            return None  # never expected: then flatten() alone serves this shape
        return layout

    def values(self, record: dict) -> list[Any]:
        """``record``'s values in the order of :attr:`names` (``record`` has this layout's shape)."""
        values = [*record.values()]
        for position in self.expand:
            values.extend(values[position].values())
        return values


_ABSENT = object()
