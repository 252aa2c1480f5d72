"""The one file:// to path helper (serving_common.uris.local_path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving_common.uris import local_path


@pytest.mark.parametrize(("uri", "path"), [
    ("/opt/ml/code", Path("/opt/ml/code")),
    ("file:///opt/ml/code", Path("/opt/ml/code")),
    ("file:///tmp/source.tar.gz", Path("/tmp/source.tar.gz")),
    ("code", Path("code")),
    ("s3://bucket/prefix/source.tar.gz", None),
    ("https://example.invalid/x", None),
    ("file://", None),
    ("", None),
])
def test_local_path(uri, path):
    assert local_path(uri) == path
