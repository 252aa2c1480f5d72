"""The multi-model registry shared by every worker: a JSON file under an fcntl lock, re-read only on change."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"


@dataclass(frozen=True)
class Entry:
    """A loaded model, as every worker sees it."""

    name: str
    url: str
    path: str
    token: str  # unique per load: a name unloaded and loaded again is a new model
    bytes_per_worker: int
    estimate_bytes: int  # bytes_per_worker x workers: what the budget counts

    def describe(self) -> dict[str, str]:
        return {"modelName": self.name, "modelUrl": self.url}


@dataclass(frozen=True)
class Pending:
    """A load in progress in worker ``pid``: holds its name and its first estimate."""

    token: str
    pid: int
    estimate_bytes: int

    @property
    def alive(self) -> bool:
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False  # the loading worker died (e.g. killed for memory): the name is free again
        except PermissionError:
            return True
        return True


@dataclass
class State:
    generation: int = 0
    models: dict[str, Entry] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)

    def used_bytes(self, except_token: str | None = None) -> int:
        return (sum(entry.estimate_bytes for entry in self.models.values())
                + sum(p.estimate_bytes for p in self.pending.values() if p.token != except_token and p.alive))

    def dumps(self) -> bytes:
        return orjson.dumps({"generation": self.generation, "models": self.models, "pending": self.pending})

    @classmethod
    def loads(cls, data: bytes) -> State:
        raw = orjson.loads(data)
        return cls(raw["generation"], {name: Entry(**entry) for name, entry in raw["models"].items()},
                   {name: Pending(**pending) for name, pending in raw["pending"].items()})


StatKey = tuple[int, int, int]


class Registry:
    """The models of the whole container, in one file that every worker reads (``directory`` is shared)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / REGISTRY_FILE
        self._cache: tuple[StatKey | None, State] = (None, State())

    @staticmethod
    def _key(stat: os.stat_result) -> StatKey:
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _read(self) -> tuple[StatKey | None, State]:
        try:
            with open(self.path, "rb") as file:
                key = self._key(os.fstat(file.fileno()))
                return key, State.loads(file.read())
        except FileNotFoundError:
            return None, State()

    def current(self) -> State:
        """The registry as last written: one ``stat`` per call, a read only when the file changed."""
        try:
            key: StatKey | None = self._key(os.stat(self.path))
        except FileNotFoundError:
            key = None
        cached_key, state = self._cache
        if key == cached_key:
            return state
        self._cache = self._read()
        return self._cache[1]

    @contextmanager
    def transaction(self) -> Iterator[State]:
        """Read, let the caller change, write back (only when changed): all under the registry's lock."""
        lock = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            key, state = self._read()
            before = state.dumps()
            state.pending = {name: p for name, p in state.pending.items() if p.alive}
            yield state
            if state.dumps() != before:
                self._write(state, key)
        finally:
            os.close(lock)  # releases the lock

    def _write(self, state: State, old: StatKey | None) -> None:
        state.generation += 1
        data = state.dumps()
        temporary = self.directory / f".{REGISTRY_FILE}.{os.getpid()}"
        with open(temporary, "wb") as file:
            file.write(data)
        # A strictly increasing mtime: a stat tells every reader that the file changed, whatever the
        # file system's clock granularity and even if the rename reuses an inode number.
        stamp = max(time.time_ns(), (old[1] if old else 0) + 1000)
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, self.path)
        self._cache = (self._key(os.stat(self.path)), state)


