"""The feature spec: which (flattened) fields are numeric, which categorical, which is the label.

``FeatureSpec.input_columns`` (numeric fields, then categorical fields) is the column order of
headerless CSV input at serving time, so it is part of the model's contract and is saved with it.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

import numpy as np

from .records import flatten_if_nested

logger = logging.getLogger("preprocess")

__all__ = ["CATEGORICAL_ENCODINGS", "NUMERIC_IMPUTE", "FeatureSpec", "SpecError", "infer_spec"]

NUMERIC_IMPUTE = ("mean", "median", "constant0")
CATEGORICAL_ENCODINGS = ("onehot", "ordinal")
_OPTIONS = ("numeric_impute", "scale", "categorical_encoding", "max_categories", "min_frequency")


class SpecError(ValueError):
    """The feature spec is invalid or does not fit the data."""


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SpecError(f"{what} must be a list of field names, got {value!r}")
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise SpecError(f"{what}: field names must be non-empty strings, got {name!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SpecError(f"{what} lists {duplicates} more than once")
    return names


@dataclass
class FeatureSpec:
    """Feature fields and how they are encoded.

    ``numeric_impute``: mean | median | constant0 (missing numbers become 0).
    ``scale``: standardise numeric features (zero mean, unit variance).
    ``categorical_encoding``: onehot | ordinal. Missing categorical values are a category of their own
    ("__missing__"); unknown categories are all zeros (onehot) or -1 (ordinal), or the infrequent
    category when rare categories are grouped (onehot).
    ``max_categories`` / ``min_frequency``: group rare categories into one "infrequent" category
    (``min_frequency`` is a count, or a fraction of the training records when a float in (0, 1)).
    """

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    label: str | None = None
    numeric_impute: str = "median"
    scale: bool = True
    categorical_encoding: str = "onehot"
    max_categories: int | None = None
    min_frequency: int | float | None = None

    def __post_init__(self) -> None:
        self.numeric = _names(self.numeric, "numeric")
        self.categorical = _names(self.categorical, "categorical")
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise SpecError(f"fields {both} are listed as both numeric and categorical")
        if not self.numeric and not self.categorical:
            raise SpecError("the spec has no feature fields (numeric and categorical are both empty)")
        if self.label is not None:
            if not isinstance(self.label, str) or not self.label:
                raise SpecError(f"label must be a non-empty field name or None, got {self.label!r}")
            if self.label in self.numeric or self.label in self.categorical:
                raise SpecError(f"the label {self.label!r} cannot also be a feature")
        if self.numeric_impute not in NUMERIC_IMPUTE:
            raise SpecError(f"numeric_impute must be one of {NUMERIC_IMPUTE}, got {self.numeric_impute!r}")
        if not isinstance(self.scale, bool):
            raise SpecError(f"scale must be true or false, got {self.scale!r}")
        if self.categorical_encoding not in CATEGORICAL_ENCODINGS:
            raise SpecError(
                f"categorical_encoding must be one of {CATEGORICAL_ENCODINGS}, got {self.categorical_encoding!r}"
            )
        if self.max_categories is not None and (
            isinstance(self.max_categories, bool)
            or not isinstance(self.max_categories, numbers.Integral)
            or self.max_categories < 1
        ):
            raise SpecError(f"max_categories must be an integer >= 1 or None, got {self.max_categories!r}")
        if self.max_categories is not None:
            self.max_categories = int(self.max_categories)
        mf = self.min_frequency
        if mf is not None:
            if isinstance(mf, numbers.Integral) and not isinstance(mf, bool) and mf >= 1:
                self.min_frequency = int(mf)
            elif isinstance(mf, numbers.Real) and not isinstance(mf, (bool, numbers.Integral)) and 0 < mf < 1:
                self.min_frequency = float(mf)
            else:
                raise SpecError(
                    f"min_frequency must be an integer >= 1 (a count) or a float in (0, 1) (a fraction), got {mf!r}"
                )

    @property
    def input_columns(self) -> list[str]:
        """Numeric then categorical fields: the column order of headerless CSV rows."""
        return [*self.numeric, *self.categorical]

    @property
    def numeric_indices(self) -> list[int]:
        """Positions of the numeric fields in :attr:`input_columns`."""
        return list(range(len(self.numeric)))

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical fields in :attr:`input_columns`."""
        return list(range(len(self.numeric), len(self.numeric) + len(self.categorical)))

    def column_indices(self, names: Iterable[str]) -> list[int]:
        """Positions of ``names`` in :attr:`input_columns`: how a transformer selects its columns (it is
        fitted on a 2-D array in that column order, not on a DataFrame)."""
        names = [names] if isinstance(names, str) else list(names)
        columns = self.input_columns
        unknown = [name for name in names if name not in columns]
        if unknown:
            raise SpecError(f"fields {unknown} are not input columns of the spec ({columns})")
        return [columns.index(name) for name in names]

    @property
    def options(self) -> dict[str, Any]:
        """The encoding options (everything but the field lists and the label)."""
        return {name: getattr(self, name) for name in _OPTIONS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``from_dict(to_dict())`` round-trips."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Build from a dict (e.g. JSON); unknown keys are an error, not silently ignored."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a feature spec must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown feature spec keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


# --------------------------------------------------------------------------------------------------
# inference

_NULL, _NUMBER, _BOOL, _STRING, _CONTAINER = "null", "number", "bool", "string", "container"


def _value_kind(value: Any) -> str:
    """How a value can be read: null, number (incl. numeric strings), bool, string or container."""
    if value is None:
        return _NULL
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _NULL
        try:
            number = float(text)
        except ValueError:
            return _STRING
        if math.isnan(number):
            return _NULL  # "NaN" / "nan" marks a missing value
        return _NUMBER if math.isfinite(number) else _STRING
    if isinstance(value, (bool, np.bool_)):
        return _BOOL
    if isinstance(value, (numbers.Real, Decimal)):
        return _NULL if value != value else _NUMBER
    if isinstance(value, (list, tuple, dict, set)):
        return _CONTAINER
    return _STRING


def infer_spec(
    records: Iterable[Mapping[str, Any]],
    label: str | None = None,
    drop: Sequence[str] = (),
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    **options: Any,
) -> FeatureSpec:
    """A :class:`FeatureSpec` for ``records`` (flattened or nested).

    Fields not given in ``numeric`` / ``categorical`` are inferred: numeric when every non-null value is
    a number (booleans are categorical) or a string holding a finite number (CSV data), categorical
    otherwise; fields holding lists or objects, and fields that are always null, are left out with a
    warning. When only one list is given it is authoritative for its kind and the remaining fields are
    candidates for the other kind. Inferred fields are sorted by name; given lists keep their order.
    ``options`` are the encoding options of :class:`FeatureSpec`.
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise SpecError(f"unknown spec options {unknown}; known options are {list(_OPTIONS)}")
    drop_set = set(_names(drop, "drop"))
    given_numeric = None if numeric is None else _names(numeric, "numeric")
    given_categorical = None if categorical is None else _names(categorical, "categorical")

    kinds: dict[str, set[str]] = {}
    n_records = 0
    for record in records:
        if not isinstance(record, Mapping):
            raise SpecError(f"record {n_records} is not a JSON object but {type(record).__name__}")
        for name, value in flatten_if_nested(record).items():
            kinds.setdefault(name, set()).add(_value_kind(value))
        n_records += 1
    if n_records == 0:
        raise SpecError("cannot build a feature spec from no records")

    given = [*(given_numeric or []), *(given_categorical or [])]
    absent = [name for name in given if name not in kinds]
    if absent:
        raise SpecError(f"fields {absent} do not appear in any of the {n_records} records")
    both = sorted(set(given_numeric or []) & set(given_categorical or []))
    if both:
        raise SpecError(f"fields {both} are listed as both numeric and categorical")
    if label is not None:
        if label not in kinds:
            raise SpecError(f"the label {label!r} does not appear in any of the {n_records} records")
        if label in given:
            raise SpecError(f"the label {label!r} cannot also be a feature")
    not_numeric = [name for name in given_numeric or [] if kinds[name] & {_STRING, _CONTAINER}]
    if not_numeric:
        raise SpecError(f"fields {not_numeric} are listed as numeric but hold values that are not numbers")
    containers = [name for name in given_categorical or [] if _CONTAINER in kinds[name]]
    if containers:
        raise SpecError(f"fields {containers} are listed as categorical but hold lists or objects")
    dropped_given = sorted(drop_set & set(given))
    if dropped_given:
        raise SpecError(f"fields {dropped_given} are both dropped and listed as features")
    never_seen = sorted(drop_set - set(kinds))
    if never_seen:
        logger.warning("drop lists fields that are not in the data: %s", never_seen)

    inferred_numeric: list[str] = []
    inferred_categorical: list[str] = []
    for name in sorted(set(kinds) - drop_set - set(given) - {label}):
        seen = kinds[name] - {_NULL}
        if _CONTAINER in seen:
            logger.warning("dropping field %r: it holds lists or objects, which are not features", name)
        elif not seen:
            logger.warning("dropping field %r: it has no non-null value", name)
        elif seen == {_NUMBER}:
            inferred_numeric.append(name)
        else:
            inferred_categorical.append(name)

    if given_numeric is None and given_categorical is None:
        numeric_fields, categorical_fields = inferred_numeric, inferred_categorical
    elif given_categorical is None:  # numeric given: every other usable field is a category
        numeric_fields = given_numeric or []
        categorical_fields = sorted(inferred_numeric + inferred_categorical)
        if inferred_numeric:
            logger.warning("fields %s look numeric but are not in numeric=; treated as categorical", inferred_numeric)
    elif given_numeric is None:  # categorical given: the other fields that hold numbers are numeric
        numeric_fields, categorical_fields = inferred_numeric, given_categorical
        if inferred_categorical:
            logger.warning("leaving out fields %s: not numeric and not in categorical=", inferred_categorical)
    else:
        numeric_fields, categorical_fields = given_numeric, given_categorical
    if not numeric_fields and not categorical_fields:
        raise SpecError("no feature fields: every field is the label, dropped, or unusable")
    spec = FeatureSpec(numeric=numeric_fields, categorical=categorical_fields, label=label, **options)
    logger.info("feature spec: numeric=%s categorical=%s label=%r", spec.numeric, spec.categorical, label)
    return spec
