"""Multi-model memory accounting: the container's limit, the budget, what a model and a request take."""

from __future__ import annotations

import ctypes
import gc
import os
from contextlib import suppress
from pathlib import Path, PurePosixPath

from ..settings import Settings

MB = 1024 * 1024
#: Default budget: this fraction of the container's memory limit (the rest: workers, requests, the OS).
DEFAULT_MEMORY_FRACTION = 0.7


def _read_limit(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # cgroup v2 says "max" when unlimited


def memory_limit_bytes(root: Path = Path("/")) -> int:
    """The container's memory limit: the smallest cgroup limit (v2 or v1) that applies, else physical memory."""
    limits: list[int] = []
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if physical > 0:
        limits.append(physical)
    cgroup = root / "sys" / "fs" / "cgroup"
    own = "/"
    with suppress(OSError):
        for line in (root / "proc" / "self" / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:] or "/"
    parts = PurePosixPath(own).parts[1:]
    # v2: this process's cgroup and its ancestors (inside a container's cgroup namespace: the root itself).
    for depth in range(len(parts), -1, -1):
        limits.append(_read_limit(cgroup.joinpath(*parts[:depth], "memory.max")) or 0)
    limits.append(_read_limit(cgroup / "memory" / "memory.limit_in_bytes") or 0)  # v1 (huge when unlimited)
    return min(limit for limit in limits if limit > 0)


#: What one request in flight may take per worker, in multiples of the largest body accepted: the body,
#: its decoded text, the parsed rows and the answer.
REQUEST_MEMORY_FACTOR = 4


#: Whatever the estimates say, no load may take the container's real memory (every process, models not
#: yet given back included) plus room for the largest requests past this fraction of its limit.
HARD_MEMORY_FRACTION = 0.9


def memory_in_use_bytes(root: Path = Path("/")) -> int | None:
    """Anonymous memory of the container's processes now (cgroup v2 ``anon``, v1 ``total_rss``; page cache
    excluded: the kernel drops it under pressure); None without a cgroup to read."""
    cgroup = root / "sys" / "fs" / "cgroup"
    for path, key in ((cgroup / "memory.stat", "anon"), (cgroup / "memory" / "memory.stat", "total_rss")):
        with suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    return None


def request_room_bytes(settings: Settings) -> int:
    """Memory every worker may need at once for the largest request it accepts."""
    return settings.workers * REQUEST_MEMORY_FACTOR * settings.max_payload_bytes


def memory_budget_bytes(settings: Settings, root: Path = Path("/")) -> int:
    """What loaded models may take: ``SMKIT_MME_MEMORY_BUDGET_MB``, else ``DEFAULT_MEMORY_FRACTION`` of the
    memory limit less room for every worker to hold the largest request it accepts at once."""
    if settings.mme_memory_budget_mb is not None:
        return int(settings.mme_memory_budget_mb * MB)
    return max(0, int(memory_limit_bytes(root) * DEFAULT_MEMORY_FRACTION) - request_room_bytes(settings))


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def return_memory() -> None:
    """Give the memory of unloaded models back to the system.

    Why: a model's arrays and the parser's buffers are many small and medium allocations; glibc keeps the
    freed ones in its arenas (measured: 30 models of 8.6 MiB loaded and unloaded, no RSS returned), so a
    worker's memory only grew and a later request got it killed. ``malloc_trim`` (glibc, through ctypes:
    no library offers it) releases free arena memory; elsewhere it is skipped.
    """
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def directory_bytes(path: Path) -> int:
    """Size on disk of every file under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def mb(size: int) -> str:
    return f"{size / MB:.1f}"


