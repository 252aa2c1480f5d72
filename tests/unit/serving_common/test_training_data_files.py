"""The one training-file selection (serving_common.training.data_files) that every container trains on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from serving_common.training.data_files import data_files, skip_reason


def test_bookkeeping_and_hidden_files_are_skipped_and_logged(tmp_path, caplog):
    for name in ["part-0.csv", "sub/part-1.csv", "_SUCCESS", ".part-0.csv.crc", "part-1.CRC", ".hidden",
                 "_temporary/0/part-9.csv", ".ipynb_checkpoints/a.csv", "sub/.x/y.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    log = logging.getLogger("test.data_files")
    with caplog.at_level(logging.INFO, logger="test.data_files"):
        files = data_files(tmp_path, log)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["part-0.csv", "sub/part-1.csv"]
    skipped = caplog.text
    for name in ["_SUCCESS", ".part-0.csv.crc", "part-1.CRC", ".hidden", "part-9.csv", ".ipynb_checkpoints", ".x"]:
        assert name in skipped


def test_order_is_the_tree_order_on_every_host(tmp_path):
    for name in ["b/2.csv", "a.csv", "b/1.csv", "b-c.csv", "c.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n")
    assert [p.relative_to(tmp_path).as_posix() for p in data_files(tmp_path)] == [
        "a.csv", "b/1.csv", "b/2.csv", "b-c.csv", "c.csv"]


def test_one_file_or_a_missing_path(tmp_path):
    (tmp_path / "one.csv").write_text("1\n")
    assert data_files(tmp_path / "one.csv") == [tmp_path / "one.csv"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_files(tmp_path / "nope")


@pytest.mark.parametrize(("relative", "reason"), [
    ("part-0.csv", None), ("a/b/part.csv.gz", None), ("_SUCCESS", "bookkeeping file"),
    (".hidden.csv", "hidden file"), ("x.crc", "checksum file"), ("_temporary/x.csv", "'_temporary'"),
])
def test_skip_reason(relative, reason):
    found = skip_reason(Path(relative))
    assert found is None if reason is None else reason in found
