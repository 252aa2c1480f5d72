"""Multi-host training with XGBoost's own collective: the first sorted host runs the tracker.

Every host joins with its host name as task id, so ranks follow the sorted host list. A host whose
share of the data is empty still joins (XGBoost handles empty workers), so it never hangs the others.
A host that dies breaks the collective: the others fail too, instead of reporting success, within the
collective timeout plus a few seconds, naming the host that is gone and what they were doing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from xgboost import collective
from xgboost.core import XGBoostError
from xgboost.tracker import RabitTracker

from serving_common.training.environment import TrainingEnvironment
from serving_common.training.harness import TrainingError

log = logging.getLogger("xgboost_container")

TRACKER_PORT = 9099
PROBE_PORT = 9098  # every host listens here while in the collective (see _PeerProbe)
PROBE_TIMEOUT_S = 2.0
PROBE_ATTEMPTS = 4
PROBE_INTERVAL_S = 0.4
BOOTSTRAP_TIMEOUT_S = 900
CONNECT_RETRIES = 180
# A collective operation slower than SMKIT_COLLECTIVE_TIMEOUT_S (env.settings.collective_timeout_s) fails the
# job: a host that died without its connections being reset would otherwise hang the others.


def _resolve(host: str, deadline: float) -> str:
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() > deadline:
                raise TrainingError(f"cannot resolve host {host}") from None
            time.sleep(0.5)


class _PeerProbe:
    """A listener on ``PROBE_PORT`` while the host is in the collective: the others connect to it to learn
    whether this host is still there after a collective operation failed. Closed before the host reports a
    failure, so a host that failed on its own counts as gone too."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("0.0.0.0", PROBE_PORT))
        self.thread = threading.Thread(target=self._serve, name="peer-probe", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            connection.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _answers(host: str) -> bool:
    """True if ``host`` answers every probe over about a second. A refused connection, an unknown name or
    a timeout is proof enough that it is gone; one answer is not (a killed host may take a moment to
    die, and the kernel completes connections for a live listener however busy the process is)."""
    for attempt in range(PROBE_ATTEMPTS):
        if attempt:
            time.sleep(PROBE_INTERVAL_S)
        try:
            with socket.create_connection((host, PROBE_PORT), timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as exc:
            log.info("host %s does not answer on port %d: %s", host, PROBE_PORT, exc)
            return False
    return True


def lost_hosts(env: TrainingEnvironment) -> list[str]:
    """The other hosts that no longer answer (probed in parallel: a few seconds whatever their number)."""
    others = [host for host in env.hosts if host != env.current_host]
    with ThreadPoolExecutor(max_workers=min(len(others), 32) or 1) as pool:
        answers = list(pool.map(_answers, others))
    return [host for host, answered in zip(others, answers, strict=True) if not answered]


_NATIVE_NOISE = re.compile(r"\[[^\]]*\d\d:\d\d:\d\d\]:?|\S+\.(?:cc|h|cuh|cu):\d+:")


def native_message(exc: BaseException) -> str:
    """XGBoost's error in one line: no native stack trace, source locations or time stamps."""
    text = _NATIVE_NOISE.sub("", str(exc).split("Stack trace:")[0])
    parts = [part.strip(" -\n") for part in text.splitlines()]
    return " ".join(part for part in parts if part)[:300] or type(exc).__name__


def set_phase(phase: str) -> None:
    """What this host is doing (named in the failure file when a host is lost)."""
    global _phase
    _phase = phase


def current_phase() -> str:
    return _phase


_phase = "joining the collective"
# Trackers of failed jobs: never freed (XGBoost's free waits for every worker, up to the bootstrap
# timeout); the process leaves with os._exit (__main__) once the failure file is written.
_abandoned: list[RabitTracker] = []


@contextlib.contextmanager
def collective_group(env: TrainingEnvironment) -> Iterator[None]:
    """Join the hosts' collective for the duration of the block (no-op for one host).

    A collective error is explained: the hosts that no longer answer are named with the phase this host
    was in, XGBoost's own message kept (first line). On any failure this host leaves at once: no
    finalize (which would wait for a tracker that may be gone) and no wait for the tracker.
    """
    if len(env.hosts) == 1:
        yield
        return
    deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
    leader_address = _resolve(env.hosts[0], deadline)
    probe = _PeerProbe()
    tracker = None
    set_phase("joining the collective")
    try:
        if env.is_leader:
            # Listen on every interface: a host may have several, and the others reach it by its name.
            tracker = RabitTracker(n_workers=len(env.hosts), host_ip="0.0.0.0", port=TRACKER_PORT,
                                   sortby="task", timeout=BOOTSTRAP_TIMEOUT_S)
            tracker.start()
            log.info("tracker for %d hosts on %s:%d", len(env.hosts), leader_address, TRACKER_PORT)
        # Hosts start at different times: a worker retries (about once a second) until the tracker is up.
        collective.init(dmlc_communicator="rabit", dmlc_tracker_uri=leader_address,
                        dmlc_tracker_port=TRACKER_PORT, dmlc_task_id=env.current_host, dmlc_retry=CONNECT_RETRIES,
                        dmlc_timeout=env.settings.collective_timeout_s)
        log.info("joined the collective as rank %d of %d", collective.get_rank(), collective.get_world_size())
        yield
    except XGBoostError as exc:
        phase = current_phase()
        probe.close()
        if tracker is not None:
            _abandoned.append(tracker)
        lost = lost_hosts(env)
        log.error("collective failure during %s (hosts not answering: %s): %s", phase, lost or "none", exc)
        if lost:
            raise TrainingError(f"lost host {', '.join(lost)} during {phase}: it no longer answers (killed, out "
                                f"of memory, or failed itself: see its log). XGBoost: {native_message(exc)}"
                                ) from exc
        raise TrainingError(f"the collective failed during {phase} on {env.current_host} (every host still "
                            f"answers): {native_message(exc)}") from exc
    except BaseException:
        probe.close()
        if tracker is not None:
            _abandoned.append(tracker)
        raise
    else:
        set_phase("leaving the collective")
        collective.finalize()
        if tracker is not None:
            tracker.wait_for(60)
            tracker.free()
        probe.close()


def barrier() -> None:
    """Every host waits here until all have arrived (e.g. until the leader has saved the model)."""
    if collective.is_distributed():
        collective.allreduce(np.ones(1), collective.Op.SUM)
