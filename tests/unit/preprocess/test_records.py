"""Reading training files and flattening records."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from serving_common.features.records import (
    RecordError,
    data_files,
    flatten,
    flatten_if_nested,
    read_file,
    read_training_files,
)

# -- flatten ---------------------------------------------------------------------------------------


def test_flatten_nested_objects_become_dotted_paths():
    record = {"customer": {"age": 3, "address": {"country": "DE"}}, "amount": 1.5}
    assert flatten(record) == {"customer.age": 3, "customer.address.country": "DE", "amount": 1.5}


def test_flatten_keeps_lists_and_scalars_as_values():
    record = {"tags": ["a", {"b": 1}], "n": None, "ok": True}
    assert flatten(record) == {"tags": ["a", {"b": 1}], "n": None, "ok": True}


def test_flatten_empty_nested_object_contributes_nothing():
    assert flatten({"a": {}, "b": 1}) == {"b": 1}


@pytest.mark.parametrize("record", [[1, 2], "text", 3, None])
def test_flatten_rejects_non_objects(record):
    with pytest.raises(RecordError, match="must be a JSON object"):
        flatten(record)
    assert issubclass(RecordError, ValueError)


def test_flatten_rejects_a_field_that_arises_twice():
    with pytest.raises(RecordError, match=r"'a\.b' occurs twice"):
        flatten({"a.b": 1, "a": {"b": 2}})


def test_flatten_if_nested_returns_flat_records_unchanged():
    flat = {"a": 1, "b": "x"}
    assert flatten_if_nested(flat) is flat
    assert flatten_if_nested({"a": {"b": 1}}) == {"a.b": 1}


# -- reading files ---------------------------------------------------------------------------------


def _write(path: Path, text: str, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_reads_every_format_in_path_order(tmp_path, caplog):
    _write(tmp_path / "a.jsonl", '{"id": 1, "customer": {"age": 30}}\n\n  \n{"id": 2, "tags": [1, 2]}\n')
    _write(tmp_path / "b.json", json.dumps([{"id": 3}, {"id": 4, "c": {"d": None}}]))
    _write(tmp_path / "c.csv", "id,name,customer.age\n5,x,\n6,,41\n")
    _write(tmp_path / "d.jsonl.gz", '{"id": 7}\n', compress=True)
    _write(tmp_path / "e.csv.gz", "id\n8\n", compress=True)
    _write(tmp_path / "f.json.gz", '[{"id": 9}]', compress=True)
    _write(tmp_path / "g", '  [{"id": 10}]')  # no extension: sniffed JSON array
    _write(tmp_path / "h", '{"id": 11}\n{"id": 12}\n')  # no extension: sniffed JSON lines
    _write(tmp_path / "sub" / "i.ndjson", '{"id": 13}\n')
    _write(tmp_path / "z.json", '{"id": 14}\n')  # .json holding JSON lines
    # skipped
    _write(tmp_path / ".hidden.jsonl", '{"id": -1}\n')
    _write(tmp_path / "_SUCCESS", "")
    _write(tmp_path / ".part-0.json.crc", "xx")
    _write(tmp_path / "part-0.crc", "xx")
    _write(tmp_path / "notes.txt", "hello")
    _write(tmp_path / "data.parquet", "PAR1")
    _write(tmp_path / ".ipynb_checkpoints" / "a.jsonl", '{"id": -2}\n')
    _write(tmp_path / "_temporary" / "a.jsonl", '{"id": -3}\n')

    with caplog.at_level(logging.INFO, logger="preprocess"):
        records = read_training_files(tmp_path)

    assert [int(r["id"]) for r in records] == list(range(1, 15))
    assert records[0] == {"id": 1, "customer.age": 30}
    assert records[1]["tags"] == [1, 2]
    assert records[3] == {"id": 4, "c.d": None}
    # CSV: values stay strings, an empty cell is missing
    assert records[4] == {"id": "5", "name": "x", "customer.age": None}
    assert records[5] == {"id": "6", "name": None, "customer.age": "41"}
    skipped = "\n".join(r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping"))
    for name in (".hidden.jsonl", "_SUCCESS", "part-0.crc", "notes.txt", "data.parquet", ".ipynb_checkpoints"):
        assert name in skipped
    assert "_temporary" in skipped
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("notes.txt" in r.getMessage() for r in warnings)


def test_data_files_are_sorted_for_determinism(tmp_path):
    for name in ["b/2.jsonl", "a.jsonl", "b/1.jsonl", "c.csv"]:
        _write(tmp_path / name, '{"x": 1}\n')
    assert [p.relative_to(tmp_path).as_posix() for p, _ in data_files(tmp_path)] == [
        "a.jsonl",
        "b/1.jsonl",
        "b/2.jsonl",
        "c.csv",
    ]


def test_a_single_file_can_be_given(tmp_path):
    path = _write(tmp_path / "one.jsonl", '{"x": 1}\n')
    assert read_training_files(path) == [{"x": 1}]


def test_missing_directory_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_training_files(tmp_path / "nope")


def test_empty_directory_gives_no_records_and_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert read_training_files(tmp_path) == []
    assert "no data files" in caplog.text


def test_malformed_json_line_names_file_and_line(tmp_path):
    _write(tmp_path / "bad.jsonl", '{"a": 1}\n\n{"a": oops}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl: line 3: invalid JSON"):
        read_training_files(tmp_path)


def test_json_line_that_is_not_an_object(tmp_path):
    _write(tmp_path / "bad.jsonl", '{"a": 1}\n[1, 2]\n')
    with pytest.raises(RecordError, match=r"line 2: expected a JSON object, got an array"):
        read_training_files(tmp_path)


def test_malformed_line_in_json_file_names_the_line(tmp_path):
    _write(tmp_path / "bad.json", '{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(RecordError, match=r"bad\.json: line 2: invalid JSON"):
        read_training_files(tmp_path)


def test_json_array_element_must_be_an_object(tmp_path):
    _write(tmp_path / "arr.json", '[{"a": 1}, 2]')
    with pytest.raises(RecordError, match="array element 1: expected a JSON object, got a number"):
        read_training_files(tmp_path)


def test_invalid_json_array(tmp_path):
    _write(tmp_path / "arr.json", '[{"a": 1},\n {"a": }]')
    with pytest.raises(RecordError, match=r"arr\.json: line 2: invalid JSON"):
        read_training_files(tmp_path)


def test_pretty_printed_json_objects(tmp_path):
    _write(tmp_path / "pretty.json", '{\n  "a": 1,\n  "b": {"c": 2}\n}\n{\n  "a": 3\n}\n')
    assert read_training_files(tmp_path) == [{"a": 1, "b.c": 2}, {"a": 3}]


def test_utf8_bom_and_unicode(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffcity,n\nMünchen,1\n東京,2\n".encode())
    assert read_training_files(tmp_path) == [{"city": "München", "n": "1"}, {"city": "東京", "n": "2"}]


def test_csv_quoting_short_rows_and_blank_lines(tmp_path):
    _write(tmp_path / "q.csv", 'a,b,c\n"x,y","multi\nline",3\n\n1\n')
    assert read_training_files(tmp_path) == [
        {"a": "x,y", "b": "multi\nline", "c": "3"},
        {"a": "1", "b": None, "c": None},
    ]


def test_csv_row_with_too_many_fields(tmp_path):
    _write(tmp_path / "wide.csv", "a,b\n1,2\n1,2,3\n")
    with pytest.raises(RecordError, match=r"wide\.csv: line 3: 3 fields but the header has 2"):
        read_training_files(tmp_path)


@pytest.mark.parametrize(
    ("header", "message"),
    [("a,a,b", "repeats column names \\['a'\\]"), (",a,b", "empty column name at position 0")],
)
def test_csv_bad_header(tmp_path, header, message):
    _write(tmp_path / "h.csv", header + "\n1,2,3\n")
    with pytest.raises(RecordError, match=message):
        read_training_files(tmp_path)


def test_empty_files_give_no_records(tmp_path):
    for name in ("e.jsonl", "e.json", "e.csv", "e"):
        _write(tmp_path / name, "")
    assert read_training_files(tmp_path) == []


def test_extensionless_file_that_is_not_json_is_skipped(tmp_path, caplog):
    _write(tmp_path / "README", "hello")
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert read_training_files(tmp_path) == []
    assert "README" in caplog.text


def test_corrupt_gzip_and_non_utf8(tmp_path):
    bad_gzip = tmp_path / "x.jsonl.gz"
    bad_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(RecordError, match="corrupt gzip"):
        read_file(bad_gzip)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("city\nM\xfcnchen\n".encode("latin-1"))
    with pytest.raises(RecordError, match="not UTF-8"):
        read_file(latin)


def test_read_file_refuses_unsupported_names(tmp_path):
    path = _write(tmp_path / "x.txt", "a")
    with pytest.raises(RecordError, match="unsupported extension"):
        read_file(path)
