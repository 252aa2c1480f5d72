"""Media types: parsing Content-Type/Accept headers (parameters included) and negotiation."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import NotAcceptable, UnsupportedMediaType

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
LIBSVM = "text/libsvm"

# Other spellings clients send for the same formats.
ALIASES = {
    "application/x-jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "application/csv": CSV,
    "text/x-libsvm": LIBSVM,
}


@dataclass(frozen=True)
class MediaType:
    """A parsed media type: ``essence`` is the lower-case ``type/subtype``, aliases resolved."""

    essence: str
    params: tuple[tuple[str, str], ...] = field(default=())

    @property
    def charset(self) -> str:
        return dict(self.params).get("charset", "utf-8")

    def text_codec(self) -> str:
        """The Python codec of the declared charset; 415 for a charset nobody knows."""
        try:
            return codecs.lookup(self.charset).name
        except LookupError:
            raise UnsupportedMediaType(f"unknown charset {self.charset!r} in Content-Type") from None


@lru_cache(maxsize=256)
def parse(header: str) -> MediaType:
    """Parse ``text/csv; charset=utf-8`` into its essence and parameters (cached: headers repeat)."""
    essence, _, rest = header.partition(";")
    essence = essence.strip().lower()
    params = []
    for part in rest.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            params.append((name.strip().lower(), value.strip().strip('"').lower()))
    return MediaType(ALIASES.get(essence, essence), tuple(params))


def content_type(header: str | None, supported: tuple[str, ...]) -> MediaType:
    """The request's media type; 415 when missing or not among ``supported``."""
    if not header or not header.strip():
        raise UnsupportedMediaType(
            f"the request has no Content-Type; send one of: {', '.join(supported)}")
    media = parse(header)
    if media.essence not in supported:
        raise UnsupportedMediaType(
            f"Content-Type {media.essence!r} is not supported; send one of: {', '.join(supported)}")
    return media


@lru_cache(maxsize=256)
def _accept_candidates(header: str) -> tuple[str, ...]:
    """Accept's media ranges ordered by q-value (stable for equal q); q=0 ranges removed."""
    ranges = []
    for index, item in enumerate(header.split(",")):
        media = parse(item)
        if not media.essence:
            continue
        try:
            q = float(dict(media.params).get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append((-q, index, media.essence))
    return tuple(essence for _, _, essence in sorted(ranges))


def accept_ranges(header: str) -> tuple[str, ...]:
    """The essences of an Accept header's media ranges, most preferred first (q=0 ranges removed)."""
    return _accept_candidates(header.strip())


def negotiate(header: str | None, supported: tuple[str, ...], default: str) -> str:
    """The response type for an Accept header: missing or ``*/*`` means ``default``; 406 if none fits."""
    if not header or not header.strip():
        return default
    for essence in _accept_candidates(header):
        if essence == "*/*":
            return default
        if essence in supported:
            return essence
        if essence.endswith("/*"):
            prefix = essence[:-1]
            if default.startswith(prefix):
                return default
            for candidate in supported:
                if candidate.startswith(prefix):
                    return candidate
    raise NotAcceptable(f"cannot answer in {header.strip()!r}; accepted: {', '.join(supported)}")
