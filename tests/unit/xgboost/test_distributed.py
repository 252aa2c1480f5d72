"""The pieces of multi-host failure handling that run without a second host: the error text, the probe."""

from __future__ import annotations

import socket

from serving_common.training.environment import TrainingEnvironment
from xgboost_container import distributed

NATIVE = """[13:29:50] /workspace/src/collective/result.cc:83: [histogram.h:197|13:29:50]:

- [allreduce.cc:135|13:29:50]: Ring Allreduce failed.
- [loop.cc:101|13:29:50]: Encountered EOF. The other end is likely closed.
Stack trace:
  [bt] (0) /opt/venv/lib/python3.11/site-packages/xgboost/lib/libxgboost.so(+0x11031e) [0x7f5b0edce31e]
"""


def test_native_message_is_one_line_without_the_stack_trace():
    assert distributed.native_message(RuntimeError(NATIVE)) == (
        "Ring Allreduce failed. Encountered EOF. The other end is likely closed.")
    assert distributed.native_message(RuntimeError("")) == "RuntimeError"


def test_a_host_that_refuses_or_does_not_resolve_is_lost_and_a_listening_one_is_not(tmp_path, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        monkeypatch.setattr(distributed, "PROBE_PORT", listener.getsockname()[1])
        monkeypatch.setattr(distributed, "PROBE_INTERVAL_S", 0.01)
        env = TrainingEnvironment(base=tmp_path, hyperparameters={}, channels={}, current_host="me",
                                  hosts=("127.0.0.1", "me", "smkit-no-such-host.invalid"))
        assert distributed.lost_hosts(env) == ["smkit-no-such-host.invalid"]
    assert distributed.lost_hosts(env) == ["127.0.0.1", "smkit-no-such-host.invalid"]  # closed: refused
