"""Log lines cannot be forged: control characters in a message are escaped."""

from __future__ import annotations

import io
import logging

from serving_common.logs import LOG_FORMAT, OneLineFormatter, one_line


def test_control_characters_are_escaped_but_tab_is_kept():
    assert one_line("a\nb\rc\x00d\x1be\x7f\u2028\tf") == "a\\x0ab\\x0dc\\x00d\\x1be\\x7f\\u2028\tf"


def test_a_forged_line_stays_inside_its_own_log_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    logger = logging.getLogger("test.forging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET %s status=%d", "/models/x\n2026-01-01 00:00:00,000 ERROR [1] x: FORGED", 404)
        try:
            raise ValueError("ours")
        except ValueError:
            logger.exception("failed for %s", "a\r\nb")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert "/models/x\\x0a2026-01-01 00:00:00,000 ERROR [1] x: FORGED status=404" in lines[0]
    assert lines[1].endswith("failed for a\\x0d\\x0ab")
    assert lines[2] == "Traceback (most recent call last):"  # our own traceback keeps its lines
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_the_server_logs_through_the_one_line_formatter():
    from serving_common.server import gunicorn_options
    from serving_common.settings import Settings

    formatter = gunicorn_options(Settings())["logconfig_dict"]["formatters"]["line"]
    assert formatter["()"] is OneLineFormatter
