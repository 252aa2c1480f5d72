"""Media types and Accept headers (RFC 9110 §8.3, §12.5.1), as the kit needs them to judge responses.

Written by hand: the standard library parses neither Accept headers nor q-values, and the kit installs
with no dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Types whose bodies are text: the kit sends them with "; charset=utf-8" to check parameter handling.
TEXT_TYPES = frozenset({"application/json", "application/jsonlines", "application/x-jsonlines", "application/jsonl",
                        "application/x-ndjson", "application/ndjson", "application/xml", "application/libsvm"})


@dataclass(frozen=True)
class MediaType:
    """``type/subtype`` (lower case) and its parameters (names lower case)."""

    essence: str
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return self.essence.startswith("text/") or self.essence in TEXT_TYPES


def _split_parameters(value: str) -> list[str]:
    """Split on ';' outside double quotes."""
    parts, current, quoted = [], [], False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_media_type(value: str) -> MediaType:
    """``'Text/CSV; charset="utf-8"'`` -> ``MediaType('text/csv', {'charset': 'utf-8'})``.

    Raises ValueError for a value that is not ``type/subtype``.
    """
    head, *rest = _split_parameters(value)
    essence = head.strip().lower()
    kind, _, subtype = essence.partition("/")
    if not kind or not subtype or " " in essence:
        raise ValueError(f"not a media type: {value!r}")
    parameters = {}
    for part in rest:
        name, equals, raw = part.partition("=")
        if not equals:
            continue  # a bare token is not a parameter; RFC 9110 ignores it
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        parameters[name.strip().lower()] = raw
    return MediaType(essence, parameters)


@dataclass(frozen=True)
class AcceptRange:
    """One entry of an Accept header: a media range (``text/*``, ``*/*``) and its weight."""

    media_range: str
    q: float

    def matches(self, essence: str) -> bool:
        if self.media_range == "*/*":
            return True
        kind, _, subtype = self.media_range.partition("/")
        if subtype == "*":
            return essence.partition("/")[0] == kind
        return essence == self.media_range

    @property
    def specificity(self) -> int:
        return 0 if self.media_range == "*/*" else 1 if self.media_range.endswith("/*") else 2


def parse_accept(value: str | None) -> list[AcceptRange]:
    """The ranges of an Accept header, best first (q, then specificity, then order). Missing = ``*/*``.

    A malformed q counts as 1 (lenient, as most servers are); entries that are not media ranges are dropped.
    """
    if value is None or not value.strip():
        return [AcceptRange("*/*", 1.0)]
    ranges = []
    for index, item in enumerate(value.split(",")):
        if not item.strip():
            continue
        try:
            media = parse_media_type(item)
        except ValueError:
            continue
        try:
            q = float(media.parameters.get("q", "1"))
        except ValueError:
            q = 1.0
        ranges.append((index, AcceptRange(media.essence, min(max(q, 0.0), 1.0))))
    ranges.sort(key=lambda pair: (-pair[1].q, -pair[1].specificity, pair[0]))
    return [accept for _, accept in ranges]


def quality(essence: str, accept: str | None) -> float:
    """The weight the Accept header gives a response type: that of the most specific matching range."""
    matching = [r for r in parse_accept(accept) if r.matches(essence)]
    if not matching:
        return 0.0
    return max(matching, key=lambda r: r.specificity).q


def is_acceptable(content_type: str | None, accept: str | None) -> bool:
    """Whether a response with this Content-Type satisfies the request's Accept header."""
    if not content_type:
        return False
    try:
        essence = parse_media_type(content_type).essence
    except ValueError:
        return False
    return quality(essence, accept) > 0


def essence_of(content_type: str | None) -> str | None:
    """``'text/csv; charset=utf-8'`` -> ``'text/csv'``; None for a missing or malformed value."""
    if not content_type:
        return None
    try:
        return parse_media_type(content_type).essence
    except ValueError:
        return None
