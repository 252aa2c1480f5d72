"""Shared pieces of the benchmarks: servers under test, the load generators (wrk, httperf) and the
parsing of their output, CPU accounting from /proc, and the printed tables.

Load always comes from a separate generator process on 127.0.0.1 and every run is bounded in time.
The generator's own CPU is measured (``getrusage`` of reaped children): on a small machine it competes
with the server for the same cores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the scripts run as files: make local_test importable

from local_test.docker_run import ServingContainer, wait_ready  # noqa: E402

HOST = "127.0.0.1"
WRK = "/usr/bin/wrk"
HTTPERF = "/usr/bin/httperf"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CpuMeter = Callable[[], float]


# -- CPU accounting ----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds) of a process: utime + stime + cutime + cstime (threads and reaped children in)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3 (state) of proc(5)
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[1]), ticks / CLK_TCK


def _processes() -> dict[int, tuple[int, float]]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _tree(root: int, processes: Mapping[int, tuple[int, float]]) -> list[int]:
    """``root`` and its living descendants, from a snapshot of ``_processes()``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its living descendants (e.g. a gunicorn master + workers)."""
    processes = _processes()
    return sum(processes[pid][1] for pid in _tree(root, processes))


def tree_memory_bytes(root: int) -> tuple[int, int]:
    """(PSS, RSS) of ``root`` and its descendants, from ``/proc/<pid>/smaps_rollup``. PSS counts pages shared
    between the processes once over the tree (the memory the tree costs); RSS counts them in every process."""
    pss = rss = 0
    for pid in _tree(root, _processes()):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
    return pss, rss


def tree_pss_bytes(root: int) -> int:
    """Proportional set size of ``root`` and its descendants (shared pages counted once over the tree)."""
    return tree_memory_bytes(root)[0]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by one process (all its threads), without its living children."""
    stat = _stat(pid)
    return stat[1] if stat else 0.0


def parent_pid(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[0] if stat else None


def pids_named(name: str) -> list[int]:
    """Processes whose command name (``/proc/<pid>/comm``) is ``name``."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(f"/proc/{entry.name}/comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def docker_proxy_pids(host_port: int) -> list[int]:
    """docker-proxy processes forwarding ``host_port`` (the userland proxy of a published port)."""
    wanted = b"\0-host-port\0" + str(host_port).encode() + b"\0"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if b"docker-proxy" in cmdline and wanted in cmdline + b"\0":
            pids.append(int(entry.name))
    return pids


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have been waited for (the finished generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- servers under test ------------------------------------------------------------------------------


class Server:
    """A server process group started on the host; stopped (SIGTERM, then SIGKILL) by ``stop``/``with``."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_dir: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait for 200 on /ping; returns the seconds that took."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        try:
            return wait_ready(f"{self.url}/ping", timeout, alive=lambda: self.proc is not None
                              and self.proc.poll() is None, interval=0.01)
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the process group it leads, SIGKILL after 15 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:  # the leader is gone: make sure no child of it is left in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """One request as the generators send it (always ``POST``)."""

    body: bytes
    content_type: str
    accept: str | None = None
    records: int = 1  # records per request, for records/s
    path: str = "/invocations"
    #: multi-model endpoints: each request names the next of these in X-Amzn-SageMaker-Target-Model (wrk only)
    target_models: tuple[str, ...] = ()


@dataclass
class Result:
    """One measurement: what was served, how it was loaded, and what came out."""

    target: str  # the server, e.g. "ours (serving_common)"
    load: str  # the generator and mode, e.g. "wrk closed c=32"
    requests: int  # successful (2xx) responses
    duration_s: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    generator_cpu_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # meter name -> CPU seconds during the run
    records_per_request: int = 1
    offered_rps: float | None = None
    resolution: str = "1 us"
    detail: str = ""
    mode: str = ""  # "closed", "paced" or "open"

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def records_per_s(self) -> float:
        return self.rps * self.records_per_request

    def cpu_ms_per_request(self, meter: str = "server") -> float | None:
        seconds = self.cpu_s.get(meter)
        if seconds is None or not self.requests:
            return None
        return seconds * 1e3 / self.requests

    def summary(self) -> str:
        cpu = " ".join(f"{name}={seconds:.2f}s" for name, seconds in self.cpu_s.items())
        return (f"  {self.target:<28} {self.load:<34} {self.rps:8.0f} req/s  p50 {fmt_ms(self.p50_ms)}  "
                f"p99 {fmt_ms(self.p99_ms)}  p99.9 {fmt_ms(self.p999_ms)} ms  errors {self.errors}  "
                f"CPU gen={self.generator_cpu_s:.2f}s {cpu}" + (f"  [{self.detail}]" if self.detail else ""))


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _run_generator(argv: Sequence[str], limit_s: float,
                   meters: Mapping[str, CpuMeter]) -> tuple[str, float, dict[str, float]]:
    """Run a generator to its end: (stdout+stderr, its CPU seconds, CPU seconds of each meter meanwhile)."""
    before = {name: meter() for name, meter in meters.items()}
    generator_before = children_cpu_seconds()
    completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=limit_s, check=False)
    generator = children_cpu_seconds() - generator_before
    used = {name: meter() - before[name] for name, meter in meters.items()}
    if completed.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {completed.returncode}:\n{completed.stdout[-3000:]}")
    return completed.stdout, generator, used


# -- wrk ---------------------------------------------------------------------------------------------

_WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d %d %.1f %.1f %.1f %.1f\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


def wrk_script(body_path: Path, payload: Payload, mean_delay_ms: float | None = None) -> str:
    """The Lua script: POST the body file; ``done()`` prints exact percentiles (wrk keeps every sample, 1 us)."""
    lines = [
        'wrk.method = "POST"',
        f"local f = assert(io.open({json.dumps(str(body_path))}, \"rb\"))",
        'wrk.body = f:read("*a")',
        "f:close()",
        f'wrk.headers["Content-Type"] = {json.dumps(payload.content_type)}',
    ]
    if payload.accept:
        lines.append(f'wrk.headers["Accept"] = {json.dumps(payload.accept)}')
    if payload.target_models:  # round robin over the models, from a random start per thread
        names = ", ".join(json.dumps(name) for name in payload.target_models)
        lines += [f"local models = {{{names}}}", "math.randomseed(os.time())",
                  "local turn = math.random(1, #models)",
                  "function request()",
                  "  turn = turn % #models + 1",
                  '  wrk.headers["X-Amzn-SageMaker-Target-Model"] = models[turn]',
                  "  return wrk.format()",
                  "end"]
    if mean_delay_ms is not None:
        # Uniform in [0, 2*mean] ms before each request, so connections do not fire in lock-step.
        high = max(1, round(2 * mean_delay_ms))
        lines += ["math.randomseed(os.time())", f"function delay() return math.random(0, {high}) end"]
    return "\n".join(lines) + "\n" + _WRK_DONE


def run_wrk(target: str, url: str, payload: Payload, *, connections: int = 32, threads: int = 1,
            duration_s: int = 5, timeout_s: int = 2, rate: float | None = None,
            meters: Mapping[str, CpuMeter] | None = None) -> Result:
    """wrk against ``url + payload.path``: closed loop, or paced to about ``rate`` req/s with Lua ``delay()``.

    Paced: each connection waits a random delay (mean ``connections / rate``) after each response, so the
    achieved rate is a little below ``rate`` (the delay excludes the response time); latency is measured
    from the moment the request is written, on kept-alive connections.
    """
    mean_delay_ms = connections / rate * 1e3 if rate else None
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(payload.body)
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(body_path, payload, mean_delay_ms))
        argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s}s", "--latency",
                "-s", str(script), url.rstrip("/") + payload.path]
        output, generator_cpu, used = _run_generator(argv, duration_s + 30, meters or {})
    line = next((line for line in output.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"no BENCH line in wrk's output:\n{output[-3000:]}")
    values = line.split()[1:]
    requests, duration_us, connect, read, write, status, timeouts = (int(v) for v in values[:7])
    p50, p99, p999, slowest = (float(v) / 1e3 for v in values[7:])
    latencies: tuple[float | None, ...] = (p50, p99, p999)
    if not slowest:  # wrk keeps no sample of an answer later than --timeout: none came in time, no percentile
        latencies = (None, None, None)
    errors = connect + read + write + status + timeouts
    detail = ", ".join(f"{name} {count}" for name, count in
                       (("connect", connect), ("read", read), ("write", write), ("non-2xx", status),
                        ("timeout", timeouts)) if count)
    load = f"wrk paced ~{rate:.0f}/s c={connections}" if rate else f"wrk closed c={connections}"
    return Result(target, load, requests - status, duration_us / 1e6, errors, *latencies, generator_cpu,
                  used, payload.records, rate, "1 us", detail, "paced" if rate else "closed")


# -- httperf -----------------------------------------------------------------------------------------


def parse_lifetime_histogram(output: str) -> list[tuple[float, int]]:
    """httperf's "Connection lifetime histogram (time in ms)": (bin centre in ms, count), 1 ms wide bins."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Connection lifetime histogram"))
    except StopIteration:
        return []
    bins = []
    for line in lines[start + 1:]:
        parts = line.split()
        if parts == [":"]:  # a run of empty bins left out
            continue
        if len(parts) != 2:
            break
        try:
            bins.append((float(parts[0]), int(parts[1])))
        except ValueError:
            break
    return bins


def histogram_percentile(bins: Sequence[tuple[float, int]], percent: float, width_ms: float = 1.0) -> float | None:
    """The upper edge (ms) of the bin holding the ``percent``-th percentile: an upper bound, ``width_ms`` coarse."""
    total = sum(count for _, count in bins)
    if not total:
        return None
    rank = math.ceil(total * percent / 100)
    seen = 0
    for centre, count in sorted(bins):
        seen += count
        if seen >= rank:
            return centre + width_ms / 2
    return sorted(bins)[-1][0] + width_ms / 2


def _number(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"httperf output lacks {pattern!r}:\n{output[-3000:]}")
    return float(match.group(1))


def _httperf_escape(body: bytes) -> str:
    text = body.decode()
    if "\n" in text or "\r" in text:
        raise ValueError("httperf session files take one-line bodies")
    return text.replace("\\", "\\\\").replace("'", "\\'")


def run_httperf(target: str, url: str, payload: Payload, *, rate: float = 1000, duration_s: float = 5,
                timeout_s: float = 5, meters: Mapping[str, CpuMeter] | None = None) -> Result:
    """Open loop with httperf: ``rate`` new connections per second, one POST each (``--wsesslog`` sessions
    of one call; ``--num-calls 1`` semantics), so a slow server cannot slow the arrivals down.

    Percentiles come from the connection-lifetime histogram (connect + request + response, 1 ms bins,
    printed with ``-v -v``); each is the bin's upper edge. Failed connections are not in the histogram:
    they are counted in ``errors``.
    """
    parts = urlsplit(url)
    sessions = max(1, round(rate * duration_s))
    headers = f"Content-Type: {payload.content_type}\\n" + (f"Accept: {payload.accept}\\n" if payload.accept else "")
    with tempfile.TemporaryDirectory(prefix="bench-httperf-") as tmp:
        session = Path(tmp) / "session.log"
        session.write_text(f"{payload.path} method=POST contents='{_httperf_escape(payload.body)}'\n")
        argv = [HTTPERF, "--hog", "-v", "-v", f"--server={parts.hostname}", f"--port={parts.port}",
                f"--rate={rate:g}", f"--timeout={timeout_s:g}", f"--add-header={headers}",
                f"--wsesslog={sessions},0,{session}"]
        output, generator_cpu, used = _run_generator(argv, duration_s + timeout_s + 30, meters or {})
    duration = _number(r"test-duration ([\d.]+) s", output)
    ok = int(_number(r"2xx=(\d+)", output))
    replies = int(_number(r"replies (\d+)", output))
    failed = int(_number(r"Errors: total (\d+)", output))
    bins = parse_lifetime_histogram(output)
    detail = f"{sessions} conns offered"
    for name in ("client-timo", "connrefused", "connreset", "fd-unavail", "addrunavail"):
        if failed and (count := int(_number(name + r" (\d+)", output))):
            detail += f", {name} {count}"
    if replies - ok:
        detail += f", non-2xx {replies - ok}"
    return Result(target, f"httperf open {rate:g}/s new conn/req", ok, duration, failed + replies - ok,
                  histogram_percentile(bins, 50), histogram_percentile(bins, 99), histogram_percentile(bins, 99.9),
                  generator_cpu, used, payload.records, rate, "1 ms bins (upper edge)", detail, "open")


# -- tables ------------------------------------------------------------------------------------------


def load_suite(name: str, url: str, payload: Payload, meters: Mapping[str, CpuMeter], *, duration_s: int,
               rate: float, closed: bool = True, paced: bool = True, open_loop: bool = True) -> list[Result]:
    """Closed loop (wrk, 32 connections), paced (wrk delay, 64 connections) and open loop (httperf) against
    a ready server, in that order (the open loop last: it is the one that can leave a backlog behind)."""
    runs: list[Callable[[], Result]] = []
    if closed:
        runs.append(lambda: run_wrk(name, url, payload, connections=32, duration_s=duration_s, meters=meters))
    if paced:
        runs.append(lambda: run_wrk(name, url, payload, connections=64, duration_s=duration_s, rate=rate,
                                    meters=meters))
    if open_loop:
        runs.append(lambda: run_httperf(name, url, payload, rate=rate, duration_s=duration_s, meters=meters))
    results = []
    for run in runs:
        results.append(run())
        time.sleep(0.5)  # let the previous run's connections close
    return results


def warm_up(url: str, payload: Payload) -> None:
    """One second of closed-loop load, not reported (first requests pay for lazy imports and caches)."""
    run_wrk("warm-up", url, payload, connections=8, duration_s=1)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line([str(h) for h in headers]), rule, *(line(row) for row in cells)])


def result_headers(records: bool = False) -> list[str]:
    return ["server", "load", "req/s", *(["rec/s"] if records else []), "p50 ms", "p99 ms", "p99.9 ms", "errors",
            "srv CPU s", "srv CPU ms/req", "gen CPU s", "latency res."]


def result_row(result: Result, records: bool = False) -> list[object]:
    """The row of :func:`result_headers`; CPU figures of several meters (server, proxy) are joined by "+"."""
    seconds = "+".join(f"{value:.2f}" for value in result.cpu_s.values()) or "-"
    per_request = "+".join(f"{value:.2f}" for name in result.cpu_s
                           if (value := result.cpu_ms_per_request(name)) is not None) or "-"
    return [result.target, result.load, f"{result.rps:.0f}",
            *([f"{result.records_per_s:.0f}"] if records else []),
            fmt_ms(result.p50_ms), fmt_ms(result.p99_ms), fmt_ms(result.p999_ms), result.errors, seconds, per_request,
            f"{result.generator_cpu_s:.2f}", result.resolution]


def find(results: Sequence[Result], target: str, mode: str, records: int | None = None) -> Result | None:
    """The result of ``target`` under ``mode`` (and ``records`` per request, if given)."""
    for result in results:
        if result.target == target and result.mode == mode and records in (None, result.records_per_request):
            return result
    return None


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return "-"
    value = ours / theirs
    if value >= 10:
        return f"{value:.0f}x"
    if value <= 0:  # e.g. a CPU meter that read 0.00 s for ours
        return f"{value:g}x"
    return f"{value:.1f}x" if value >= 0.1 else f"1/{1 / value:.0f}x"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that the scripts' ``finally`` blocks stop servers and containers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# -- suites and images (shared by the image benchmarks: preprocess_image.py, xgboost_image.py) -------------------

BASE_IMAGE = "smkit-base/bookworm-python3:local"
SERVE_ENV = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}  # = the CPU count here (the default); fixed for comparability

FigureSpec = tuple[str, str, int, Callable[[Result], float | int | None], Callable[[Any], str]]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def measure(name: str, url: str, single: Payload, batch: Payload, meters: Mapping[str, CpuMeter],
            args: Any, paced: bool = True) -> list[Result]:
    """Closed loop single and batch (``args.duration`` s each), then ~``args.rate`` single-record paced (wrk)
    and open loop (httperf); each result is printed as it comes."""
    warm_up(url, single)
    results = []
    runs = [load_suite(name, url, single, meters, duration_s=args.duration, rate=args.rate, paced=False,
                       open_loop=False),
            load_suite(name, url, batch, meters, duration_s=args.duration, rate=args.rate, paced=False,
                       open_loop=False),
            load_suite(name, url, single, meters, duration_s=args.duration, rate=args.rate, closed=False,
                       paced=paced)]
    for result in (result for run in runs for result in run):
        print(result.summary(), flush=True)
        results.append(result)
    return results


def time_starts(client: Any, image: str, model_dir: Path, started: list[Any], times: int) -> list[float]:
    """Seconds from ``docker run IMAGE serve`` to the first 200 on /ping, ``times`` times (printed as they come)."""
    step(f"start time: docker run {image} serve -> first 200 on /ping, {times} times")
    starts = []
    for _ in range(times):
        container, created, seconds = start_container(client, image, model_dir, started)
        starts.append(seconds)
        container.remove()
        print(f"    first 200 on /ping after {seconds:.2f} s (the docker create + start call returned after "
              f"{created:.2f} s)", flush=True)
    return starts


def measure_image(name: str, client: Any, image: str, model_dir: Path, started: list[Any], single: Payload,
                  batch: Payload, args: Any) -> tuple[list[Result], bytes]:
    """The image served on the host network under the usual loads; also its answer to ``batch`` (reference)."""
    step(f"{name} ({SERVE_ENV.get('SAGEMAKER_MODEL_SERVER_WORKERS', 'default')} workers, read-only root, "
         "host network: no docker-proxy in the path)")
    container, _, _ = start_container(client, image, model_dir, started)
    reference = container.invoke(batch.body, batch.content_type, batch.accept)
    reference.raise_for_status()
    results = measure(name, container.url, single, batch, container_meters(container), args)
    container.remove()
    return results, reference.content


def measure_baseline(name: str, server: Any, single: Payload, batch: Payload, reference: bytes,
                     compare: Callable[[bytes, bytes], str], what: str, args: Any) -> list[Result]:
    """The classic flask baseline: start it, check its answer to ``batch`` against the image's (printed with
    ``compare``), measure it (closed loop and open loop; no paced run), stop it. A baseline that does not start
    is reported and skipped, so the figures measured so far still print."""
    try:
        server.start()
    except RuntimeError as exc:
        print(f"    {exc}", file=sys.stderr)
        return []
    answer = requests.post(f"{server.url}/invocations", data=batch.body, timeout=30,
                           headers={"Content-Type": batch.content_type, "Accept": "text/csv"})
    answer.raise_for_status()
    print(f"    its answer vs the image's ({what}): {compare(reference, answer.content)}")
    results = measure(name, server.url, single, batch, {"server": server.cpu_seconds}, args, paced=False)
    server.stop()
    return results


def start_container(client: Any, image: str, model_dir: Path | None, started: list[Any],
                    env: Mapping[str, str] | None = None,
                    volumes: Mapping[str, Mapping[str, str]] | None = None,
                    read_only: bool = True, port: int | None = None) -> tuple[Any, float, float]:
    """``docker run IMAGE serve`` (``ServingContainer``, host network, ``SERVE_ENV`` + ``env``, a read-only root
    unless ``read_only`` is false, on ``port`` or a free one): the container (also appended to ``started``), the
    seconds from just before its creation until the docker API call returned (created and started) and until
    the first 200 on /ping (polled every 10 ms)."""
    begin = time.perf_counter()
    container = ServingContainer(client, image, model_dir, env={**SERVE_ENV, **(env or {})}, volumes=volumes,
                                 host_network=True, read_only=read_only, host_port=port)
    running_after = time.perf_counter() - begin
    started.append(container)
    container.wait_ready(timeout=60, interval=0.01)  # raises with the container's logs
    return container, running_after, time.perf_counter() - begin


def container_meters(container: Any) -> dict[str, CpuMeter]:
    """CPU meters: the container's process tree (seen from the host), the docker-proxy forwarding its port
    (none on the host network), and docker's log path (the container's shim + dockerd itself, which also
    serves any other docker work)."""
    container.container.reload()
    pid = container.container.attrs["State"]["Pid"]
    proxies = docker_proxy_pids(container.host_port)
    meters: dict[str, CpuMeter] = {"server": lambda: tree_cpu_seconds(pid)}
    if proxies:
        meters["proxy"] = lambda: sum(tree_cpu_seconds(proxy) for proxy in proxies)
    docker = [shim for shim in (parent_pid(pid),) if shim] + pids_named("dockerd")
    meters["docker"] = lambda: sum(process_cpu_seconds(each) for each in docker)
    return meters


def image_size_mb(client: Any, tag: str) -> float | None:
    """``docker image inspect -f {{.Size}}`` in MB (10^6 bytes, as ``docker images`` prints)."""
    try:
        return client.images.get(tag).attrs["Size"] / 1e6
    except Exception:
        return None


def same_output(ours: bytes, theirs: bytes) -> str:
    """Two CSV answers compared: "identical bytes", "numerically equal" (np.allclose) or "DIFFERENT"."""
    if ours == theirs:
        return "identical bytes"
    import numpy as np

    try:
        a = np.loadtxt(ours.decode().splitlines(), delimiter=",", ndmin=2)
        b = np.loadtxt(theirs.decode().splitlines(), delimiter=",", ndmin=2)
        return "numerically equal" if a.shape == b.shape and np.allclose(a, b) else "DIFFERENT"
    except ValueError:
        return "DIFFERENT"


def load_figures(rate: float, unit: str = "record", batch: int = 100) -> list[FigureSpec]:
    """The summary's load rows (label, mode, records per request, getter, format) of :func:`measure`'s runs."""
    rate_fmt, count_fmt = "{:.0f}".format, str
    return [
        (f"single-{unit} req/s, closed c=32", "closed", 1, lambda r: r.rps, rate_fmt),
        (f"single-{unit} p99 ms, closed", "closed", 1, lambda r: r.p99_ms, fmt_ms),
        (f"{batch}-{unit} {unit}s/s, closed c=32", "closed", batch, lambda r: r.records_per_s, rate_fmt),
        (f"{batch}-{unit} p99 ms, closed", "closed", batch, lambda r: r.p99_ms, fmt_ms),
        (f"p99 ms at ~{rate:.0f}/s, wrk paced (keep-alive)", "paced", 1, lambda r: r.p99_ms, fmt_ms),
        (f"p99 ms at {rate:.0f}/s, httperf open (new conn/req)", "open", 1, lambda r: r.p99_ms, fmt_ms),
        (f"req/s achieved at {rate:.0f}/s, httperf open", "open", 1, lambda r: r.rps, rate_fmt),
        (f"errors at {rate:.0f}/s, httperf open", "open", 1, lambda r: r.errors, count_fmt),
        ("server CPU ms/request, single, closed *", "closed", 1, lambda r: r.cpu_ms_per_request(), fmt_ms),
        ("  * image: + docker-proxy", "closed", 1, lambda r: r.cpu_ms_per_request("proxy"), fmt_ms),
        ("  * image: + shim & dockerd", "closed", 1, lambda r: r.cpu_ms_per_request("docker"), fmt_ms),
    ]


def figure_rows(results: Sequence[Result], targets: Sequence[str], specs: Sequence[FigureSpec]) -> list[list[str]]:
    """One row per spec: its label, the figure of each target, and the ratio first target / last target."""
    rows = []
    for label, mode, records, get, show in specs:
        values = []
        for target in targets:
            result = find(results, target, mode, records)
            values.append(get(result) if result is not None else None)
        cells = ["-" if value is None else show(value) for value in values]
        rows.append([label, *cells, ratio(values[0], values[-1]) if show is not str else "-"])
    return rows


def start_and_size_rows(starts: Sequence[float], sizes: tuple[float | None, float | None],
                        columns: int) -> list[list[str]]:
    """Summary rows for the start time (median and max) and the image size (and growth over the base)."""
    image_mb, base_mb = sizes
    rest = ["-"] * (columns - 2)
    return [[f"start to first /ping, median (max) of {len(starts)} s",
             f"{statistics.median(starts):.2f} ({max(starts):.2f})", *rest],
            ["image MB (over base)", f"{image_mb:.0f} ({image_mb - base_mb:+.0f})" if image_mb and base_mb
             else (f"{image_mb:.0f}" if image_mb else "-"), *rest]]


def verdict(met: bool) -> str:
    return "met" if met else "NOT met here"


def target_lines(results: Sequence[Result], target: str, rate: float, *, rps: float, p99_ms: float,
                 unit: str = "record", beside: Callable[[str], str] | None = None) -> list[str]:
    """Issue-target lines for ``target``'s single-request throughput (closed) and p99 at ``rate`` (paced, open);
    ``beside(mode)``, if given, adds a line after each (e.g. the same figure of the other servers)."""
    lines = []
    closed = find(results, target, "closed", 1)
    if closed:
        lines.append(f"  single-{unit} >= {rps:.0f} req/s closed loop: {closed.rps:.0f} req/s "
                     f"({verdict(closed.rps >= rps)})")
        if beside:
            lines.append(beside("closed"))
    for name, mode in (("wrk paced, keep-alive", "paced"), ("httperf open, new conn/req, 1 ms bins", "open")):
        result = find(results, target, mode, 1)
        if result and result.p99_ms is not None:
            lines.append(f"  p99 <= {p99_ms:g} ms at {rate:.0f} req/s, {name}: {fmt_ms(result.p99_ms)} ms at "
                         f"{result.rps:.0f} req/s ({verdict(result.p99_ms <= p99_ms and not result.errors)})")
            if beside:
                lines.append(beside(mode))
    return lines


def start_and_size_lines(starts: Sequence[float], sizes: tuple[float | None, float | None], *, start_s: float,
                         image_mb: float) -> list[str]:
    """Issue-target lines for the start time (all starts within ``start_s``) and the growth over the base image."""
    lines = [f"  start to first /ping <= {start_s:g} s: median {statistics.median(starts):.2f} s, max "
             f"{max(starts):.2f} s ({', '.join(f'{s:.2f}' for s in starts)}) ({verdict(max(starts) <= start_s)})"]
    size, base = sizes
    if size and base:
        lines.append(f"  image <= {image_mb:g} MB over the base: {size - base:.0f} MB "
                     f"({size:.0f} MB image, {base:.0f} MB base) ({verdict(size - base <= image_mb)})")
    return lines
