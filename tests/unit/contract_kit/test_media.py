"""Media types and Accept negotiation as the kit judges responses."""

import pytest

from smkit_contract.media import essence_of, is_acceptable, parse_accept, parse_media_type, quality


def test_parse_media_type_lowers_the_essence_and_unquotes_parameters():
    media = parse_media_type('Text/CSV; Charset="utf-8" ; header=present')
    assert media.essence == "text/csv"
    assert media.parameters == {"charset": "utf-8", "header": "present"}
    assert media.is_text


def test_a_quoted_semicolon_stays_inside_its_parameter():
    assert parse_media_type('text/plain; note="a;b"; q=1').parameters == {"note": "a;b", "q": "1"}


@pytest.mark.parametrize("value", ["csv", "", "text/", "/csv", "text csv/x"])
def test_values_that_are_not_media_types_are_refused(value):
    with pytest.raises(ValueError):
        parse_media_type(value)


def test_json_family_is_text_and_npy_is_not():
    assert parse_media_type("application/jsonlines").is_text
    assert not parse_media_type("application/x-npy").is_text


def test_accept_ranges_are_ordered_by_q_then_specificity_then_position():
    ranges = parse_accept("*/*;q=0.1, text/*;q=0.5, text/csv;q=0.5, application/json")
    assert [(r.media_range, r.q) for r in ranges] == [
        ("application/json", 1.0), ("text/csv", 0.5), ("text/*", 0.5), ("*/*", 0.1)]


def test_missing_or_blank_accept_is_anything():
    assert [(r.media_range, r.q) for r in parse_accept(None)] == [("*/*", 1.0)]
    assert [(r.media_range, r.q) for r in parse_accept("  ")] == [("*/*", 1.0)]


def test_malformed_q_counts_as_one_and_out_of_range_q_is_clamped():
    assert [r.q for r in parse_accept("text/csv;q=abc, application/json;q=7, x/y;q=-1")] == [1.0, 1.0, 0.0]


def test_the_most_specific_matching_range_gives_the_weight():
    accept = "text/*;q=0.3, text/csv;q=0.8, */*;q=0.1"
    assert quality("text/csv", accept) == 0.8
    assert quality("text/plain", accept) == 0.3
    assert quality("application/json", accept) == 0.1
    assert quality("application/json", "text/*") == 0.0


def test_q_zero_excludes_a_type_even_under_a_wildcard():
    assert not is_acceptable("text/csv", "*/*, text/csv;q=0")
    assert is_acceptable("application/json", "*/*, text/csv;q=0")


def test_response_parameters_do_not_matter_for_acceptability():
    assert is_acceptable("text/csv; charset=utf-8", "text/csv;q=0.9")
    assert not is_acceptable(None, "*/*")
    assert not is_acceptable("garbage", "*/*")


def test_essence_of():
    assert essence_of("Application/JSON; charset=utf-8") == "application/json"
    assert essence_of(None) is None
    assert essence_of("nonsense") is None
