"""Media types: header parsing with parameters, Content-Type checks (415) and Accept negotiation (406)."""

from __future__ import annotations

import pytest

from serving_common import content_types as ct
from serving_common.content_types import CSV, JSON, JSONLINES, LIBSVM, NPY, MediaType
from serving_common.errors import NotAcceptable, UnsupportedMediaType

ALL = (JSON, JSONLINES, CSV, NPY)


@pytest.mark.parametrize(("header", "essence"), [
    ("text/csv", CSV),
    ("text/csv; charset=utf-8", CSV),
    ("TEXT/CSV;CHARSET=UTF-8", CSV),
    ("  text/csv  ;  header=absent ", CSV),
    ("application/x-jsonlines", JSONLINES),
    ("application/jsonl", JSONLINES),
    ("application/x-ndjson", JSONLINES),
    ("application/jsonlines", JSONLINES),
    ("application/csv", CSV),
    ("text/x-libsvm", LIBSVM),
    ("application/json; charset=utf-8", JSON),
    ("application/x-npy", NPY),
])
def test_parse_resolves_parameters_case_and_aliases(header, essence):
    assert ct.parse(header).essence == essence


def test_parse_keeps_parameters():
    media = ct.parse('text/csv; charset="ISO-8859-1"; header=present')
    assert media.params == (("charset", "iso-8859-1"), ("header", "present"))
    assert media.charset == "iso-8859-1"
    assert media.text_codec() == "iso8859-1"


def test_charset_defaults_to_utf8():
    assert ct.parse("text/csv").charset == "utf-8"
    assert ct.parse("application/json; charset=UTF8").text_codec() == "utf-8"


def test_unknown_charset_is_415():
    media = ct.parse("text/csv; charset=klingon")
    with pytest.raises(UnsupportedMediaType) as caught:
        media.text_codec()
    assert caught.value.status == 415
    assert "klingon" in caught.value.message


@pytest.mark.parametrize("header", ["text/csv; charset=utf-8", "application/x-jsonlines", "APPLICATION/JSON"])
def test_content_type_accepts_supported_types_with_parameters(header):
    media = ct.content_type(header, ALL)
    assert isinstance(media, MediaType)
    assert media.essence in ALL


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_content_type_is_415(header):
    with pytest.raises(UnsupportedMediaType) as caught:
        ct.content_type(header, ALL)
    assert caught.value.status == 415
    assert "no Content-Type" in caught.value.message
    assert "text/csv" in caught.value.message  # tells the caller what to send


@pytest.mark.parametrize("header", ["image/png", "text/plain; charset=utf-8", "text/libsvm"])
def test_unsupported_content_type_is_415(header):
    with pytest.raises(UnsupportedMediaType) as caught:
        ct.content_type(header, ALL)
    assert caught.value.status == 415
    assert ct.parse(header).essence in caught.value.message


@pytest.mark.parametrize(("accept", "expected"), [
    (None, JSON),
    ("", JSON),
    ("*/*", JSON),
    ("text/csv", CSV),
    ("text/csv; charset=utf-8", CSV),
    ("application/x-jsonlines", JSONLINES),
    ("text/*", CSV),
    ("application/*", JSON),  # the default matches the range: it wins
    ("image/png, text/csv", CSV),
    ("application/json;q=0.5, text/csv", CSV),
    ("text/csv;q=0.2, application/x-npy;q=0.9", NPY),
    ("text/csv;q=0.9, application/json;q=0.9", CSV),  # equal q: the header's order
    ("text/csv;q=0, application/json;q=0.1", JSON),  # q=0 means "not this"
    ("image/png;q=1, */*;q=0.1", JSON),
    ("text/csv;q=bogus", CSV),
])
def test_negotiate(accept, expected):
    assert ct.negotiate(accept, ALL, JSON) == expected


def test_missing_or_wildcard_accept_uses_the_given_default():
    assert ct.negotiate(None, ALL, CSV) == CSV
    assert ct.negotiate("*/*", ALL, NPY) == NPY
    assert ct.negotiate("application/*", ALL, NPY) == NPY


def test_type_wildcard_prefers_a_supported_type_over_the_default_of_another_type():
    assert ct.negotiate("application/*", (CSV, JSONLINES), CSV) == JSONLINES


@pytest.mark.parametrize("accept", ["image/png", "text/csv;q=0", "image/*", "text/html, application/xml"])
def test_nothing_acceptable_is_406(accept):
    with pytest.raises(NotAcceptable) as caught:
        ct.negotiate(accept, ALL, JSON)
    assert caught.value.status == 406
    assert "application/json" in caught.value.message


def test_accept_ranges_orders_by_preference():
    assert ct.accept_ranges("text/csv;q=0.5, application/json, image/png;q=0") == (JSON, CSV)
