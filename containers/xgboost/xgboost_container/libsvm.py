"""LIBSVM text (``label index:value ...`` per line) -> a sparse matrix: one parser for training and serving."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse


class LibsvmError(ValueError):
    """Not LIBSVM. ``line``: 1-based over the text's lines (for files); ``row``: 0-based over the data rows
    (for requests, numbered like every other request error); both None when no single line is at fault."""

    def __init__(self, problem: str, line: int | None = None, row: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.line, self.row = problem, line, row


@dataclass
class Libsvm:
    matrix: scipy.sparse.csr_matrix
    labels: np.ndarray | None  # one per row; None when no line had a label


def parse(text: str, labels: bool) -> Libsvm:
    """Parse ``text``; blank lines and ``#`` comments are skipped.

    ``labels=True`` (training data): every line starts with its label. ``labels=False`` (a request): lines
    hold features only, and a leading label, as training files have, is accepted and ignored.
    """
    found, indptr, indices, values = [], [0], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        try:
            if labels:
                found.append(float(parts[0]))
                parts = parts[1:]
            elif ":" not in parts[0]:
                parts = parts[1:]
            for item in parts:
                index, value = item.split(":", 1)
                indices.append(int(index))
                values.append(float(value))
        except ValueError:
            shape = "label index:value ..." if labels else "index:value ..."
            raise LibsvmError(f"not LIBSVM ({shape!r})", line=number, row=len(indptr) - 1) from None
        indptr.append(len(indices))
    if indices and min(indices) < 0:
        raise LibsvmError("negative feature index")
    data = np.array(values, dtype=np.float64)
    if np.isinf(data).any():
        raise LibsvmError("LIBSVM values must be finite")
    width = max(indices) + 1 if indices else 0
    matrix = scipy.sparse.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, width))
    return Libsvm(matrix, np.array(found, dtype=np.float64) if labels else None)
