"""One log line per event on stdout (SageMaker ships stdout to CloudWatch).

Every message is written on one line: control characters in it (a request path with ``%0A``, a header
with a carriage return, a model name a client chose) are escaped, so no client can forge a log line.
A traceback attached with ``exc_info`` is ours, not the client's, and keeps its lines.
"""

from __future__ import annotations

import logging
import re
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

#: C0 controls but TAB (metric lines use it), DEL, C1 controls and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = ord(match.group())
    return f"\\x{char:02x}" if char < 0x100 else f"\\u{char:04x}"


def one_line(text: str) -> str:
    """``text`` with every control character escaped (``\\n`` -> ``\\x0a``); TAB is kept."""
    return _CONTROL.sub(_escape, text)


class OneLineFormatter(logging.Formatter):
    """The log format, with the message escaped by :func:`one_line` (the traceback, if any, is appended as is)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
