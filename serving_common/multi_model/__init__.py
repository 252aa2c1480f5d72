"""Multi-model endpoints (``SAGEMAKER_MULTI_MODEL=true``): the management API and one registry for all workers.

Routes, on the serving port beside ``/ping``, ``/invocations`` and ``/execution-parameters``:

- ``POST /models`` ``{"model_name", "url"}``: load; 200 once usable, 400 malformed body, 404 no such url,
  409 name already loaded (or being loaded), 500 the model failed to load (not registered), 507 over the
  memory budget (SageMaker then unloads models itself: nothing is ever evicted here).
- ``GET /models?next_page_token=&max_results=``: ``{"models": [{"modelName", "modelUrl"}], "nextPageToken"}``,
  sorted by name; no ``nextPageToken`` on the last page.
- ``GET /models/{name}``: the model's entry, or 404. ``DELETE /models/{name}``: 200, or 404.
- ``POST /models/{name}/invoke``, and ``POST /invocations`` with ``X-Amzn-SageMaker-Target-Model: name``:
  exactly ``/invocations`` of single-model mode (one ``Service`` per model, script mode per model from
  its own ``code/``); 404 ``Model not found`` when the name is not loaded.

How the workers agree:

- ONE registry per container: a JSON file in a private folder on ``/dev/shm`` (the gunicorn master makes
  it before forking), rewritten by atomic rename under an ``fcntl`` lock. Its mtime is set to a strictly
  increasing stamp on every write, so ``os.stat`` alone (inode, mtime_ns, size) tells a worker whether it
  changed: each request costs one stat, and the file is re-read only after a change.
- The worker that receives ``POST /models`` reserves the name (a *pending* entry: pid and estimate, so a
  concurrent load of the same name is 409 and two concurrent loads cannot overrun the budget together),
  loads the model on its prediction thread (so load errors reach the caller), then commits it.
- Every request checks the registry first: once ``DELETE`` has answered, the model is 404 in every
  worker. A model registered but not yet loaded in this worker is loaded on this worker's prediction
  thread before the prediction; that single thread does every load of the worker, so nothing is loaded
  twice. A small asyncio task (every ``SYNC_INTERVAL_S``) loads new models eagerly and drops unloaded ones,
  so other workers do not pay the load on their first request and free memory soon after an unload.
- A worker started later (gunicorn replaces dead workers) loads every registered model during its
  lifespan start-up, before it accepts connections, telling gunicorn's heartbeat that it is alive.

Memory estimate: every worker holds its own copy of every model, so a model counts ``per_worker x
workers``, where ``per_worker`` is the model folder's size on disk before the load (a first check, so a
model that cannot fit is refused without loading it) and ``max(size on disk, RSS growth of the validating
worker during the load)`` after it (the figure recorded in the registry). A load is refused (507) when the
recorded estimates of the loaded models, plus those of loads in progress, plus this one exceed the budget:
``SMKIT_MME_MEMORY_BUDGET_MB``, by default ``DEFAULT_MEMORY_FRACTION`` of the container's memory limit
(cgroup v2 ``memory.max``, cgroup v1 ``memory.limit_in_bytes``, else the physical memory).
"""

from __future__ import annotations

from .api import (
    DEFAULT_MAX_RESULTS,
    HEARTBEAT_S,
    MAX_MAX_RESULTS,
    MAX_NAME_CHARS,
    SYNC_INTERVAL_S,
    MultiModelApp,
    check_model_name,
    confined_path,
)
from .memory import (
    DEFAULT_MEMORY_FRACTION,
    HARD_MEMORY_FRACTION,
    MB,
    REQUEST_MEMORY_FACTOR,
    directory_bytes,
    memory_budget_bytes,
    memory_in_use_bytes,
    memory_limit_bytes,
    request_room_bytes,
    return_memory,
    rss_bytes,
)
from .registry import LOCK_FILE, REGISTRY_FILE, Entry, Pending, Registry, State

__all__ = [
    "DEFAULT_MAX_RESULTS", "DEFAULT_MEMORY_FRACTION", "HARD_MEMORY_FRACTION", "HEARTBEAT_S", "LOCK_FILE",
    "MAX_MAX_RESULTS", "MAX_NAME_CHARS", "MB", "REGISTRY_FILE", "REQUEST_MEMORY_FACTOR", "SYNC_INTERVAL_S",
    "Entry", "MultiModelApp", "Pending", "Registry", "State", "check_model_name", "confined_path",
    "directory_bytes", "memory_budget_bytes", "memory_in_use_bytes", "memory_limit_bytes", "request_room_bytes",
    "return_memory", "rss_bytes",
]
