"""Which records the feature transform may score: the one place that decides, for every path.

Every field the transform reads is optional (a missing value is imputed), so a record of the wrong shape
— ``{}``, ``{"foo": 1}``, ``{"customer": "abc"}`` where ``customer`` is an object of fields — would get
a plausible score with every field imputed. ``RecordChecker`` refuses such records before the transform
reads them, in the compiled fast path and the scikit-learn path alike (``features.FittedFeatures``), and
so for real-time requests and batch transform (``SMKIT_RECORD_ERRORS=line`` included) alike:

- a value of the wrong kind for the model's shape: an object where a value is expected, or a value
  (string, number, list) where the model reads an object of fields (``customer`` of ``customer.age``);
- more missing input fields than ``max_missing_fields`` (absent, ``null`` or blank all count as
  missing). Default: all but one, i.e. a record must carry at least one of the model's input fields —
  missing values of known fields are normal for a fraud team's orders and are imputed as trained;
- fields the model does not know, per ``unknown_fields``: ``error`` (400), ``warn`` (default: logged
  once per field name per worker, the record is scored) or ``ignore``. "Known" is every field seen in
  the training data (label, ids and dropped fields included) plus the input fields. ``warn`` is the
  default because production records routinely gain fields (a new id, a timestamp) that the model
  rightly ignores, and refusing them would stop scoring orders; a misspelt feature field still shows
  up in the log, and ``error`` is one setting away for teams that prefer refusals.

The rules are hyperparameters at training (stored in ``features.json``) and can be overridden at serving
by ``SMKIT_MAX_MISSING_FIELDS`` / ``SMKIT_UNKNOWN_FIELDS`` (``serving_common.settings``).

Speed: what depends only on a record's field names and value types (objects where values are expected, unknown
fields, where each input field lies, which input fields are absent or null) is worked out once per record
*shape* (``flatten.shape``), the second time the shape is met, and remembered (:meth:`RecordChecker.values`;
records whose keys vary, a map of ids for instance, so never pay for working out verdicts used once); per
record there remains the shape's key, gathering its values and the blank/NaN test of the input fields that
hold a string or a float.
A record whose shape is refused, or that has too many missing fields, is checked record by record by
:meth:`RecordChecker.check`, which raises the one message for it: the remembered verdicts only let good records
through faster, they never word an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from ..settings import UNKNOWN_FIELD_POLICIES
from .fast_transform import FeatureError, get_record
from .flatten import NESTED_OBJECT, Layout, flatten, shape

logger = logging.getLogger("preprocess")

__all__ = ["DEFAULT_UNKNOWN_FIELDS", "RecordChecker", "RecordRules", "fields_seen"]

DEFAULT_UNKNOWN_FIELDS = "warn"
#: Training data with more distinct field names than this records none (only input fields are known then).
MAX_KNOWN_FIELDS = 10_000
#: Distinct unknown field names a worker logs before it stops logging them.
_MAX_LOGGED = 100
_SHOWN = 5
#: Record shapes a checker remembers its verdict for; past this many distinct shapes it starts over.
MAX_SHAPES = 512
_NONE = type(None)
_UNSEEN = object()
_SEEN_ONCE = object()  # a shape met once: its plan is made the second time (unique shapes never pay for one)


@dataclass(frozen=True)
class RecordRules:
    """How strict the record check is; ``max_missing_fields`` None means all input fields but one."""

    max_missing_fields: int | None = None
    unknown_fields: str = DEFAULT_UNKNOWN_FIELDS

    def __post_init__(self) -> None:
        if self.unknown_fields not in UNKNOWN_FIELD_POLICIES:
            raise ValueError(f"unknown_fields must be one of {', '.join(UNKNOWN_FIELD_POLICIES)}, "
                             f"got {self.unknown_fields!r}")
        if self.max_missing_fields is not None and (type(self.max_missing_fields) is not int
                                                    or self.max_missing_fields < 0):
            raise ValueError(f"max_missing_fields must be an integer >= 0, got {self.max_missing_fields!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_missing_fields": self.max_missing_fields, "unknown_fields": self.unknown_fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RecordRules:
        data = data or {}
        return cls(data.get("max_missing_fields"), data.get("unknown_fields") or DEFAULT_UNKNOWN_FIELDS)

    def overridden(self, overrides: Mapping[str, Any]) -> RecordRules:
        """These rules with the serving settings' overrides applied (``Settings.record_overrides``)."""
        return replace(self, **overrides)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def is_missing(value: Any) -> bool:
    return value is None or (type(value) is str and not value.strip()) or (type(value) is float and value != value)


def fields_seen(records: Iterable[Any]) -> list[str] | None:
    """Every (flattened) field name of ``records``, sorted; None when there are more than MAX_KNOWN_FIELDS."""
    seen: set[str] = set()
    for index, record in enumerate(records):
        seen.update(name for name, value in get_record(record, index).items() if value is not NESTED_OBJECT)
        if len(seen) > MAX_KNOWN_FIELDS:
            logger.info("the training data has over %d field names: only input fields count as known",
                        MAX_KNOWN_FIELDS)
            return None
    return sorted(seen)


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}
    return "an object" if value is NESTED_OBJECT else names.get(type(value), "a number")


@dataclass(frozen=True, slots=True)
class _ShapePlan:
    """The checks' verdict on one record shape that passes them, and where its input fields lie."""

    layout: Layout
    pick: Callable[[list[Any]], tuple[Any, ...]]  # the layout's values (+ None for absent) -> the input values
    missing_at_least: int  # input fields absent or null in every record of the shape
    maybe_blank: tuple[int, ...]  # positions (in the input values) of strings: missing if blank
    maybe_nan: tuple[int, ...]  # positions of floats: missing if NaN
    unknown: list[str]  # unknown fields to log (unknown_fields=warn)


def _picker(positions: list[int]) -> Callable[[list[Any]], tuple[Any, ...]]:
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda values: tuple(values[position] for position in positions)


class RecordChecker:
    """Applies :class:`RecordRules` to records, given the model's input fields and the fields it knows."""

    def __init__(self, input_columns: Sequence[str], known_fields: Iterable[str] | None, rules: RecordRules,
                 label: str | None = None) -> None:
        self.rules = rules
        self.inputs = tuple(input_columns)
        self._input_set = frozenset(self.inputs)
        children: dict[str, list[str]] = {}
        for name in self.inputs:
            for parent in _ancestors(name):
                children.setdefault(parent, []).append(name)
        # object paths the model reads fields of (``customer`` of ``customer.age``), with those fields
        self.objects = {parent: names for parent, names in children.items() if parent not in self.inputs}
        known = {*self.inputs, *(known_fields or ()), *([label] if label else [])}
        self.known = frozenset(known | {parent for name in known for parent in _ancestors(name)})
        self.tolerated = (len(self.inputs) - 1 if rules.max_missing_fields is None
                          else min(rules.max_missing_fields, len(self.inputs)))
        self._logged: set[str] = set()
        self._plans: dict[tuple, Any] = {}  # shape -> _ShapePlan, None (record by record) or _SEEN_ONCE

    def records(self, records: Sequence[Any]) -> list[Mapping[str, Any]]:
        """``records`` flattened (as the transform reads them), each checked; FeatureError names the first
        bad record (``record <index>: ...``) and the field."""
        if isinstance(records, Mapping):
            raise FeatureError("expected a list of records, got a single object")
        flat = []
        for index, record in enumerate(records):
            record = get_record(record, index)
            self.check(record, index)
            flat.append(record)
        return flat

    def rows(self, rows: Sequence[Any]) -> None:
        """Headerless rows (``input_columns`` order): the missing-fields rule (their width and values
        are checked as they are read)."""
        width = len(self.inputs)
        for index, row in enumerate(rows):
            if isinstance(row, list | tuple) and len(row) == width:
                missing = [name for name, value in zip(self.inputs, row, strict=True) if is_missing(value)]
                if len(missing) > self.tolerated:
                    self._too_many_missing({}, index, missing, "row")

    def values(self, records: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Each record's values of the input fields (``input_columns`` order; an object's place holds
        :data:`NESTED_OBJECT`), each record checked: the same errors, and the same first one, as
        :meth:`records` (the transform reads these values where it would read the flattened records)."""
        if isinstance(records, Mapping):
            raise FeatureError("expected a list of records, got a single object")
        plans, tolerated, inputs = self._plans, self.tolerated, self.inputs
        rows = []
        for index, record in enumerate(records):
            if type(record) is dict:
                plan = plans.get(key := shape(record), _UNSEEN)
                if plan is _UNSEEN:
                    self._remember(key, _SEEN_ONCE)
                elif plan is _SEEN_ONCE:
                    plan = self._plan(record, key)
                if plan.__class__ is _ShapePlan:
                    values = plan.layout.values(record)
                    values.append(None)  # where absent input fields are picked from
                    row = plan.pick(values)
                    missing = plan.missing_at_least
                    if missing + len(plan.maybe_blank) + len(plan.maybe_nan) > tolerated:
                        missing += sum(1 for i in plan.maybe_blank if not row[i].strip())
                        missing += sum(1 for i in plan.maybe_nan if row[i] != row[i])
                    if missing <= tolerated:
                        if plan.unknown:
                            self.unknown_fields_found(index, plan.unknown)
                        rows.append(row)
                        continue
            flat = get_record(record, index)  # record by record: check() refuses it, naming the record
            self.check(flat, index)
            rows.append(tuple(map(flat.get, inputs)))
        return rows

    def _plan(self, record: dict, key: tuple) -> _ShapePlan | None:
        """The plan of ``record``'s shape, met for the second time (remembered under ``key``); None when its
        records are checked one by one: the shape has no layout, holds an object in an input field, or fails a
        check whatever its values."""
        plan = None
        layout = Layout.of(record)
        if layout is not None:
            place = {name: position for position, name in enumerate(layout.names)}
            positions = [place.get(name, len(place)) for name in self.inputs]  # len(place): the None appended
            types = [*layout.types, _NONE]
            kinds = [types[position] for position in positions]
            flat = flatten(record, mark_objects=True)  # Layout.of saw it flatten
            unknown = self._unknown_fields(flat)
            missing = kinds.count(_NONE)
            if (dict not in kinds and self._object_problem(flat) is None and missing <= self.tolerated
                    and not (unknown and self.rules.unknown_fields == "error")):
                plan = _ShapePlan(layout, _picker(positions), missing,
                                  tuple(i for i, kind in enumerate(kinds) if kind is str),
                                  tuple(i for i, kind in enumerate(kinds) if kind is float), unknown)
        self._remember(key, plan)
        return plan

    def _remember(self, key: tuple, plan: Any) -> None:
        if len(self._plans) >= MAX_SHAPES:
            self._plans.clear()
        self._plans[key] = plan

    def check(self, record: Mapping[str, Any], index: int) -> None:
        """One flattened record (see :meth:`records`)."""
        get = record.get
        # an object in an input field is refused as the transform reads it, naming the field
        missing = [name for name in self.inputs if (value := get(name)) is None  # is_missing, inlined (per record)
                   or (value.__class__ is str and not value.strip()) or (value.__class__ is float and value != value)]
        problem = self._object_problem(record)
        if problem is not None:
            raise FeatureError(f"record {index}: {problem}")
        if len(missing) > self.tolerated:
            self._too_many_missing(record, index, missing)
        unknown = self._unknown_fields(record)
        if unknown:
            self.unknown_fields_found(index, unknown)

    def _object_problem(self, record: Mapping[str, Any]) -> str | None:
        """What is wrong with a flattened record where the model reads an object's fields, if anything."""
        get = record.get
        for parent, names in self.objects.items():
            value = get(parent)
            if value is not None and value is not NESTED_OBJECT:
                return f"field {parent!r}: expected an object (with {', '.join(names[:_SHOWN])}), got {_kind(value)}"
        return None

    def _unknown_fields(self, record: Mapping[str, Any]) -> list[str]:
        """The fields of a flattened record the model does not know ([] with unknown_fields=ignore)."""
        if self.rules.unknown_fields == "ignore":
            return []
        known = self.known
        unknown = [name for name in record if name not in known]
        if unknown:  # rare: then leave out objects and what lies inside a wrong value (refused as read)
            unknown = [name for name in unknown if record[name] is not NESTED_OBJECT
                       and not any(parent in self._input_set for parent in _ancestors(name))]
        return unknown

    def _too_many_missing(self, record: Mapping[str, Any], index: int, missing: list[str],
                          unit: str = "record") -> None:
        if len(missing) == len(self.inputs) and unit == "row":
            raise FeatureError(f"row {index}: every input field is empty")
        if len(missing) == len(self.inputs):
            present = [name for name in record if record[name] is not NESTED_OBJECT][:_SHOWN]
            raise FeatureError(
                f"record {index}: none of the model's input fields is present (it reads "
                f"{', '.join(self.inputs[:_SHOWN])}{', ...' if len(self.inputs) > _SHOWN else ''}; "
                f"the record has {', '.join(map(repr, present)) if present else 'no fields'})")
        raise FeatureError(
            f"{unit} {index}: {len(missing)} of {len(self.inputs)} input fields are missing "
            f"({', '.join(map(repr, missing[:_SHOWN]))}{', ...' if len(missing) > _SHOWN else ''}); "
            f"at most {self.tolerated} may be (max_missing_fields)")

    def unknown_fields_found(self, index: int, unknown: list[str]) -> None:
        """Record ``index`` holds fields the model does not know: FeatureError under ``unknown_fields=error``,
        else one log line per new field name (``warn``)."""
        if self.rules.unknown_fields == "error":
            raise FeatureError(f"record {index}: field {unknown[0]!r} is not a field this model knows "
                               f"(unknown_fields=error)")
        new = [name for name in unknown if name not in self._logged]
        if new and len(self._logged) < _MAX_LOGGED:
            self._logged.update(new)
            logger.warning("record %d: fields this model does not know (ignored, logged once): %s%s", index,
                           ", ".join(map(repr, new[:_SHOWN])), "" if len(self._logged) < _MAX_LOGGED
                           else f"; no further unknown fields are logged (over {_MAX_LOGGED})")
