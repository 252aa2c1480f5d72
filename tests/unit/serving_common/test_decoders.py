"""Request bodies -> Python data: JSON, JSON Lines, CSV, NPY, and the 400s for bad payloads."""

from __future__ import annotations

import io

import numpy as np
import pytest

from serving_common import decoders
from serving_common.content_types import parse
from serving_common.errors import BadRequest, UnsupportedMediaType


def decode(body: bytes, header: str):
    return decoders.decode(body, parse(header))


def bad_request(body: bytes, header: str) -> str:
    with pytest.raises(BadRequest) as caught:
        decode(body, header)
    assert caught.value.status == 400
    return caught.value.message


def test_json():
    assert decode(b'{"instances": [[1, 2.5], [3, -4e-3]]}', "application/json") == \
        {"instances": [[1, 2.5], [3, -0.004]]}


def test_json_with_charset_parameter():
    assert decode(b'[1, "x"]', "application/json; charset=utf-8") == [1, "x"]


@pytest.mark.parametrize("header", ["application/json", "text/csv", "application/jsonlines", "application/x-npy"])
@pytest.mark.parametrize("body", [b"", b"   ", b"\n\r\n\t"])
def test_empty_body_is_400(header, body):
    assert "empty" in bad_request(body, header)


@pytest.mark.parametrize("body", [b"NaN", b"[1, NaN]", b"[Infinity]", b"[-Infinity]", b'{"x": nan}', b"[1e400]"])
def test_non_finite_json_literals_are_400(body):
    assert "invalid JSON" in bad_request(body, "application/json")


def test_malformed_json_is_400():
    assert "invalid JSON" in bad_request(b'{"a": [1, 2}', "application/json")


def test_invalid_utf8_json_is_400_naming_utf8():
    message = bad_request(b'{"name": "caf\xe9"}', "application/json")
    assert "UTF-8" in message.upper()


@pytest.mark.parametrize("header", ["text/csv", "application/jsonlines", "text/csv; charset=utf-8"])
def test_invalid_utf8_text_is_400_naming_the_charset_and_byte(header):
    message = bad_request(b'1,2\n"caf\xe9",3', header)
    assert "utf-8" in message
    assert "byte 8" in message  # 0-based offset of \xe9


def test_latin1_json_is_decoded_with_its_charset():
    body = '{"name": "café", "price": "5€"}'.encode("cp1252")
    assert decode(body, "application/json; charset=windows-1252") == {"name": "café", "price": "5€"}
    assert decode('["café"]'.encode("latin-1"), "application/json; charset=ISO-8859-1") == ["café"]


def test_latin1_csv_is_decoded_with_its_charset():
    assert decode("café,1\nnaïve,2".encode("latin-1"), "text/csv; charset=latin-1") == [["café", "1"], ["naïve", "2"]]


def test_unknown_charset_is_415():
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(b"1,2", "text/csv; charset=no-such-codec")
    assert caught.value.status == 415


def test_jsonlines_skips_blank_lines():
    body = b'{"a": 1}\n\n   \n[1, 2]\r\n"text"\n'
    assert decode(body, "application/jsonlines") == [{"a": 1}, [1, 2], "text"]


def test_jsonlines_alias():
    assert decode(b"1\n2", "application/x-jsonlines") == [1, 2]


def test_jsonlines_keeps_unicode_line_separators_inside_strings():
    body = '{"text": "a\u2028b"}\n{"text": "c\x85d"}'.encode()
    assert decode(body, "application/jsonlines") == [{"text": "a\u2028b"}, {"text": "c\x85d"}]


def test_malformed_jsonlines_names_the_line():
    message = bad_request(b'{"a": 1}\n\n{"a": 2\n{"a": 3}', "application/jsonlines")
    assert "line 3" in message


def test_jsonlines_nan_is_400():
    assert "line 2" in bad_request(b"[1]\n[NaN]", "application/jsonlines")


def test_csv_rows_of_strings_blank_lines_skipped():
    body = b"1,2.5,abc\n\n  \n-3,4e-3,\r\n5,6,7\n"
    assert decode(body, "text/csv; charset=utf-8") == [["1", "2.5", "abc"], ["-3", "4e-3", ""], ["5", "6", "7"]]


def test_csv_quoted_fields_follow_rfc4180():
    body = b'"a,b","say ""hi""",3\n"line\nbreak",x,y\n'
    assert decode(body, "text/csv") == [["a,b", 'say "hi"', "3"], ["line\nbreak", "x", "y"]]


def test_csv_unterminated_quote_is_400():
    assert "invalid CSV" in bad_request(b'1,"abc\n2,3', "text/csv")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype == object)
    return buffer.getvalue()


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([1.5, -2.25]),
    np.array([[1, 2], [3, 4]], dtype=np.int64),
    np.array(["a", "bc"]),
])
def test_npy_round_trip(array):
    decoded = decode(npy(array), "application/x-npy")
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_npy_object_array_is_refused_without_unpickling():
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    body = npy(np.array([Boom(), 1], dtype=object))
    assert "allow_pickle" in bad_request(body, "application/x-npy")


def test_npy_garbage_and_truncation_are_400():
    assert "NPY" in bad_request(b"not an npy file at all", "application/x-npy")
    assert "NPY" in bad_request(npy(np.arange(100.0))[:-40], "application/x-npy")


def test_npz_archive_is_400():
    buffer = io.BytesIO()
    np.savez(buffer, a=np.arange(3))
    assert "npz" in bad_request(buffer.getvalue(), "application/x-npy")


def test_type_without_decoder_is_415():
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(b"1 1:2", "text/libsvm")
    assert caught.value.status == 415


@pytest.mark.parametrize("media, lines", [("text/csv", [b"1,2", b"3,4"]),
                                          ("application/jsonlines", [b'{"a": 1}', b"[3, 4]"])])
@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\n\n"])
def test_line_bodies_read_the_same_with_or_without_a_final_newline(media, lines, ending):
    # Our responses end with a newline, other clients' bodies may not: neither adds a phantom empty row.
    separator = b"\r\n" if ending == b"\r\n" else b"\n"
    assert decode(separator.join(lines) + ending, media) == decode(b"\n".join(lines), media)
    assert len(decode(separator.join(lines) + ending, media)) == 2


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [decoders.MAX_JSON_DEPTH + 1, 1000, 1023])
def test_json_nested_past_the_limit_is_400_naming_it(depth):
    # 1,000 levels parse (orjson's own limit is 1,024) but used to crash recursive code downstream (500).
    with pytest.raises(BadRequest, match=f"deeper than {decoders.MAX_JSON_DEPTH} levels"):
        decoders.decode(_nested(depth), parse("application/json"))
    with pytest.raises(BadRequest, match=f"on line 2 nests .* deeper than {decoders.MAX_JSON_DEPTH}"):
        decoders.decode(b'{"a": 1}\n' + _nested(depth), parse("application/jsonlines"))


def test_json_nested_past_the_limit_in_another_charset_is_400():
    with pytest.raises(BadRequest, match="deeper than"):
        decoders.decode(b"[" * 100 + b"]" * 100, parse("application/json; charset=latin-1"))


def test_json_at_the_limit_and_many_shallow_records_are_accepted():
    assert decoders.decode(_nested(decoders.MAX_JSON_DEPTH), parse("application/json"))
    records = b"[" + b",".join(b'{"a": {"b": [1, 2]}, "c": "{[{["}' for _ in range(1000)) + b"]"
    assert len(decoders.decode(records, parse("application/json"))) == 1000
