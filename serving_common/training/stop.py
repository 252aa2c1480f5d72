"""SIGTERM during built-in training (SageMaker's StopTrainingJob, a spot interruption): stop promptly.

SageMaker sends SIGTERM and waits 120 s before SIGKILL. The container's training process is PID 1, which
ignores SIGTERM unless it installs a handler, so without this a job trains on until it is killed. While the
handler is installed, a signal stops the job at once (``StopRequested`` raised where Python code runs);
inside ``deferred()`` (a training loop) it is only recorded, and the loop stops at its next safe point (the
end of a round), writes its checkpoint and raises ``StopRequested`` itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("training")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """The job was told to stop; the message is the failure file's text."""


class StopSignal:
    """Records SIGTERM/SIGINT while installed; ``received`` names the first one."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._deferred = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        self.received = None
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A section that checks ``received`` at its own safe points instead of being interrupted."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        self.check()

    def check(self) -> None:
        if self.received is not None:
            raise StopRequested(self.message())

    def message(self, detail: str = "") -> str:
        return (f"Stopped: the job received {self.received} (StopTrainingJob or a spot interruption)"
                + (f"; {detail}" if detail else ""))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        first = self.received is None
        self.received = self.received or name
        log.warning("received %s: stopping the training job", name)
        if first and not self._deferred:
            raise StopRequested(self.message())


#: The process's one instance: the harness installs it, training loops read it.
STOP = StopSignal()
