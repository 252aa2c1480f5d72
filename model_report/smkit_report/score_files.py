"""Reading labels and scores from CSV files (header optional, one column or a named one)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from smkit_report.comparison import ReportInputError


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_column(path: Path, column: str | None = None) -> np.ndarray:
    """One numeric column of a CSV file (header optional): the only column, or the one named ``column``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise ReportInputError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise ReportInputError(f"{path} is empty")
    header = None if all(_is_number(cell) for cell in rows[0]) else [cell.strip() for cell in rows[0]]
    body = rows[1:] if header else rows
    width = len(rows[0])
    if column is None:
        if width != 1:
            names = ", ".join(header) if header else f"{width} unnamed columns"
            raise ReportInputError(f"{path} has {width} columns ({names}): say which one to use")
        index = 0
    elif header and column in header:
        index = header.index(column)
    elif column.isdigit() and int(column) < width:
        index = int(column)
    else:
        raise ReportInputError(f"{path} has no column {column!r}"
                               + (f" (columns: {', '.join(header)})" if header else " and no header row"))
    try:
        return np.array([float(row[index]) for row in body], dtype=float)
    except (ValueError, IndexError) as exc:
        raise ReportInputError(f"{path}: column {index} is not all numbers ({exc})") from None
