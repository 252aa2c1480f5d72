"""The HTTP stack choice, side by side on the host (no docker), each with 2 workers and an empty handler
(the request body comes back as the response):

  ours          serving_common.server: gunicorn master + uvicorn workers (uvloop, httptools), plain ASGI app,
                at the images' defaults (SMKIT_ACCESS_LOG off: no line per successful request)
  ours, access log      the same with SMKIT_ACCESS_LOG=true (one log line per request)
  flask sync    flask under gunicorn's sync workers (the classic bring-your-own container)
  flask gthread flask under gunicorn's gthread workers (4 threads each; keeps connections alive)

Each is loaded with POST text/csv "1,2,3": closed loop with wrk, paced keep-alive load with wrk's Lua
``delay()``, and open loop with httperf (a new connection per request). Prints figures; asserts nothing.

    .venv/bin/python bench/http_stack.py [--duration 5] [--rate 1000] [--no-gthread]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from empty_server import write_model
from loadgen import (
    BENCH,
    Payload,
    Result,
    Server,
    exit_on_sigterm,
    find,
    load_suite,
    ratio,
    result_headers,
    result_row,
    table,
    warm_up,
)

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import free_port

WORKERS = 2
OURS = "ours (serving_common)"
OURS_LOGGED = "ours, access log on"
CSV_PAYLOAD = Payload(b"1,2,3", "text/csv")


def ours_server(work: Path, workers: int = WORKERS, access_log: bool = False, name: str = OURS) -> Server:
    """Our stack with the empty handler (model: a one-file directory under ``work``), by default without
    the access log (the images' default); ``access_log``: one log line per request."""
    model_dir = write_model(work / "empty-model")
    argv = [sys.executable, str(BENCH / "empty_server.py"), f"--port={(port := free_port())}",
            f"--workers={workers}", f"--model-dir={model_dir}"]
    return Server(name, argv, port, work, env={"SMKIT_ACCESS_LOG": "true" if access_log else "false"})


def flask_server(work: Path, app: str, worker_class: str = "sync", workers: int = WORKERS,
                 env: Mapping[str, str] | None = None, name: str | None = None) -> Server:
    """A flask app of bench/flask_apps.py under gunicorn (no access log: gunicorn's default)."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", f"--workers={workers}", f"--worker-class={worker_class}",
            f"--bind=127.0.0.1:{port}", "--log-level=warning", "--chdir", str(BENCH)]
    if worker_class == "gthread":
        argv.append("--threads=4")
    return Server(name or f"flask {worker_class}", [*argv, app], port, work, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    parser.add_argument("--rate", type=float, default=1000, help="fixed rate in req/s (default 1000)")
    parser.add_argument("--no-gthread", action="store_true", help="leave out flask under gthread")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    work = Path(tempfile.mkdtemp(prefix="bench-http-stack-"))
    started = time.monotonic()
    results: list[Result] = []
    servers = [ours_server(work), ours_server(work, access_log=True, name=OURS_LOGGED),
               flask_server(work, "flask_apps:echo_app", "sync")]
    if not args.no_gthread:
        servers.append(flask_server(work, "flask_apps:echo_app", "gthread"))
    try:
        for server in servers:
            print(f"\n==> {server.name}", flush=True)
            with server:
                warm_up(server.url, CSV_PAYLOAD)
                # wrk's paced mode connects, then waits: a sync worker would sit blocked on the idle socket.
                for result in load_suite(server.name, server.url, CSV_PAYLOAD, {"server": server.cpu_seconds},
                                         duration_s=args.duration, rate=args.rate, paced=server.name != "flask sync"):
                    print(result.summary(), flush=True)
                    results.append(result)
        print_report(results, args.rate)
        print(f"\n(done in {time.monotonic() - started:.0f} s)")
        return 0
    finally:
        for server in servers:
            server.stop()  # a no-op unless an error left it running
        shutil.rmtree(work, ignore_errors=True)


def print_report(results: list[Result], rate: float) -> None:
    print("\nHTTP stack, empty handler, 2 workers each, POST text/csv \"1,2,3\" (generator on the same 2 cores)")
    print(table(result_headers(), [result_row(result) for result in results]))
    print("  wrk closed: 1 thread, 32 connections kept alive; latency from wrk's own samples (exact).")
    print(f"  wrk paced: 64 kept-alive connections, each waiting a random 0-{2 * 64e3 / rate:.0f} ms before each "
          f"request (~{rate:.0f}/s offered; slightly less achieved).")
    print(f"  httperf open: {rate:.0f} new connections/s, one request each (--wsesslog sessions of one call): arrivals "
          "do not wait for responses; latency = connection lifetime, from its 1 ms histogram (bin upper edge).")
    print("  srv CPU: utime+stime of the server's process tree (master + workers) during the run.")
    print("  flask sync has no paced row: wrk connects before its delay and a sync worker would sit blocked on the")
    print("  idle connection; it closes every connection anyway, so httperf's one-request connections suit it.")
    rows = []
    for ours in (OURS, OURS_LOGGED):
        for other in ("flask sync", "flask gthread"):
            closed_ours, closed_other = find(results, ours, "closed"), find(results, other, "closed")
            open_ours, open_other = find(results, ours, "open"), find(results, other, "open")
            if not (closed_ours and closed_other and open_ours and open_other):
                continue
            rows.append([f"{ours} / {other}", ratio(closed_ours.rps, closed_other.rps),
                         ratio(closed_ours.cpu_ms_per_request(), closed_other.cpu_ms_per_request()),
                         ratio(closed_ours.p99_ms, closed_other.p99_ms),
                         ratio(open_ours.cpu_ms_per_request(), open_other.cpu_ms_per_request()),
                         ratio(open_ours.p99_ms, open_other.p99_ms)])
    if rows:
        print("\nRatios (ours / theirs; >1x req/s is better, <1x CPU and latency is better)")
        print(table(["", "closed req/s", "closed CPU/req", "closed p99", "open CPU/req", "open p99"], rows))

if __name__ == "__main__":
    sys.exit(main())
