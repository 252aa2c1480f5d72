"""Multi-host training with XGBoost's own collective: the first sorted host runs the tracker.

Every host joins with its host name as task id, so ranks follow the sorted host list. A host whose
share of the data is empty still joins (XGBoost handles empty workers), so it never hangs the others.
A host that dies breaks the collective: the others fail too, instead of reporting success.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator

import numpy as np
from xgboost import collective
from xgboost.tracker import RabitTracker

from serving_common.training.environment import TrainingEnvironment
from serving_common.training.harness import TrainingError

log = logging.getLogger("xgboost_container")

TRACKER_PORT = 9099
BOOTSTRAP_TIMEOUT_S = 900
CONNECT_RETRIES = 180
# A host that dies without its TCP connections being reset (a killed container, a lost instance) would leave
# the others waiting in a collective operation forever: any operation slower than this fails the job instead.
# Generous by default, as the first operation waits for every host to have loaded its data.
COLLECTIVE_TIMEOUT = "SMKIT_COLLECTIVE_TIMEOUT_S"
DEFAULT_COLLECTIVE_TIMEOUT_S = 1800


def collective_timeout_s() -> int:
    raw = os.environ.get(COLLECTIVE_TIMEOUT, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_COLLECTIVE_TIMEOUT_S
    except ValueError:
        raise TrainingError(f"{COLLECTIVE_TIMEOUT}={raw!r} is not a whole number of seconds") from None
    if value < 1:
        raise TrainingError(f"{COLLECTIVE_TIMEOUT} must be at least 1 second")
    return value


def _resolve(host: str, deadline: float) -> str:
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() > deadline:
                raise TrainingError(f"cannot resolve host {host}") from None
            time.sleep(0.5)


@contextlib.contextmanager
def collective_group(env: TrainingEnvironment) -> Iterator[None]:
    """Join the hosts' collective for the duration of the block (no-op for one host)."""
    if len(env.hosts) == 1:
        yield
        return
    deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
    leader_address = _resolve(env.hosts[0], deadline)
    tracker = None
    if env.is_leader:
        # Listen on every interface: a host may have several, and the others reach it by its name.
        tracker = RabitTracker(n_workers=len(env.hosts), host_ip="0.0.0.0", port=TRACKER_PORT,
                               sortby="task", timeout=BOOTSTRAP_TIMEOUT_S)
        tracker.start()
        log.info("tracker for %d hosts on %s:%d", len(env.hosts), leader_address, TRACKER_PORT)
    # Hosts start at different times: a worker retries (about once a second) until the tracker is up.
    args = {"dmlc_communicator": "rabit", "dmlc_tracker_uri": leader_address, "dmlc_tracker_port": TRACKER_PORT,
            "dmlc_task_id": env.current_host, "dmlc_retry": CONNECT_RETRIES, "dmlc_timeout": collective_timeout_s()}
    try:
        with collective.CommunicatorContext(**args):
            log.info("joined the collective as rank %d of %d", collective.get_rank(), collective.get_world_size())
            yield
    finally:
        if tracker is not None:
            tracker.wait_for(60)
            tracker.free()


def barrier() -> None:
    """Every host waits here until all have arrived (e.g. until the leader has saved the model)."""
    if collective.is_distributed():
        collective.allreduce(np.ones(1), collective.Op.SUM)
