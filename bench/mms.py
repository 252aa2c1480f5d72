"""The XGBoost image beside the stack a SageMaker user would otherwise take for the same model:
multi-model-server through AWS's sagemaker-inference toolkit (the peer image, bench/mms_peer/), in the same
run, on the same trained model and the same requests.

Steps: train the XGBoost image on synthetic rows through its real ``train`` entry (as xgboost_image.py: 200
trees of depth 6, 30 features); build the peer image if this version of bench/mms_peer/ has not been built
(Debian's Java 17, pinned multi-model-server + sagemaker-inference + the same XGBoost, installed offline from
wheelhouse/bench-mms-peer/); time ``docker run IMAGE serve`` of each to the first 200 on /ping and to the first
answered invocation; check that both answer the same scores for the same rows (the run stops if they differ:
the comparison would be meaningless); then serve each alone (2 workers, host network) and load it with
``text/csv`` requests (single rows paced at ``--sustained-rate`` req/s, a rate both sustain, with wrk's
``delay()``; single-row and 100-row closed loop with wrk; single rows paced at ~``--rate`` req/s with wrk and
open loop with httperf), and read its memory (PSS and RSS of the container's processes) after the load. Prints
figures and the ratios ours / MMS; asserts nothing else.

    .venv/bin/python bench/mms.py [--duration 5] [--rate 1000] [--sustained-rate 200] [--starts 5] [--rows 20000]
"""

from __future__ import annotations

import hashlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import image_bench
import numpy as np
import requests
from image_bench import ImageBench
from loadgen import (
    BASE_IMAGE,
    BENCH,
    ROOT,
    SERVE_ENV,
    Payload,
    Result,
    container_meters,
    figure_rows,
    find,
    fmt_ms,
    image_size_mb,
    load_figures,
    measure,
    ratio,
    result_headers,
    result_row,
    run_wrk,
    start_container,
    step,
    table,
    tree_memory_bytes,
)
from xgboost_image import BATCH, FEATURES, HYPERPARAMETERS, MODEL_FILE, csv_body, make_rows

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import PREFIX, ServingContainer

OURS = "ours: xgboost image"
PEER = "MMS + sagemaker-inference"
PEER_DIR = BENCH / "mms_peer"
PEER_NAME = "bench-mms-peer"
WHEELHOUSE = ROOT / "wheelhouse" / PEER_NAME
#: Packages of the peer that PyPI has as an sdist only: built into a wheel on this machine (pure Python).
SDISTS = ("sagemaker-inference",)
#: The peer's packages that must be exactly ours, or the two stacks would not predict with the same library.
SHARED_PINS = {"xgboost-cpu": ROOT / "containers/xgboost/requirements.txt",
               "scipy": ROOT / "containers/xgboost/requirements.txt",
               "numpy": ROOT / "requirements/serving.txt"}
#: Scores may differ in the last float32 bits: our image sums the trees in its own compiled evaluator.
RTOL, ATOL = 1e-5, 1e-6
MiB = 1024 * 1024
#: MMS refuses a port >= 32767 (its Connector: "Invalid port number"); the OS hands out free ports above that.
PORTS = range(20000, 32000)
SUSTAINED = "paced, sustained rate"  # the mode of the extra paced run at --sustained-rate


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file (names lower-cased)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def check_shared_pins() -> None:
    """The peer's XGBoost, numpy and scipy are ours, or stop."""
    peer = pins(PEER_DIR / "requirements.txt")
    for name, path in SHARED_PINS.items():
        if peer.get(name) != pins(path).get(name):
            raise SystemExit(f"bench/mms_peer/requirements.txt pins {name}=={peer.get(name)} but "
                             f"{path.relative_to(ROOT)} pins {pins(path).get(name)}: make them equal")


def fill_wheelhouse() -> Path:
    """Every wheel the peer installs, in wheelhouse/bench-mms-peer/ (cached while its requirements are
    unchanged): binary wheels for the image's CPython 3.11 on glibc x86_64 (as scripts/fill_wheelhouse.sh
    downloads them), and the sdist-only packages built into wheels here."""
    requirements = PEER_DIR / "requirements.txt"
    stamp = WHEELHOUSE / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return WHEELHOUSE
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    for wheel in WHEELHOUSE.glob("*.whl"):
        wheel.unlink()
    pinned = pins(requirements)
    binary = [f"{name}=={version}" for name, version in pinned.items() if name not in SDISTS]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    step(f"filling {WHEELHOUSE.relative_to(ROOT)} ({len(pinned)} pinned packages)")
    subprocess.run([*pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
                    "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform",
                    "manylinux_2_12_x86_64", "--platform", "any", "-d", str(WHEELHOUSE), *binary], check=True)
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(WHEELHOUSE),
                    *(f"{name}=={pinned[name]}" for name in SDISTS)], check=True)
    stamp.write_text(digest)
    return WHEELHOUSE


def peer_image(client: Any) -> str:
    """The peer image's tag, ``<prefix>bench-mms-peer:<digest of bench/mms_peer/>``; built if missing."""
    files = sorted(path for path in PEER_DIR.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(PEER_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    tag = f"{PREFIX}{PEER_NAME}:{digest.hexdigest()[:12]}"
    if image_size_mb(client, tag) is not None:
        return tag
    wheels = fill_wheelhouse()
    step(f"building {tag} (bench/mms_peer/; Debian's openjdk-17-jre-headless from apt)")
    base = ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"] if image_size_mb(client, BASE_IMAGE) else []
    with tempfile.TemporaryDirectory(prefix="bench-mms-peer-") as tmp:
        context = Path(tmp)
        shutil.copytree(PEER_DIR, context, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(wheels, context / "wheels", ignore=shutil.ignore_patterns(".*"))
        begin = time.perf_counter()
        subprocess.run(["docker", "build", "--quiet", "-t", tag, *base, str(context)], check=True)
    print(f"    built in {time.perf_counter() - begin:.0f} s")
    return tag


def low_free_port() -> int:
    """A port in ``PORTS`` that nothing listens on now (both images are served on one, so they are alike)."""
    for port in random.sample(PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def answered(container: ServingContainer, payload: Payload, timeout: float = 120.0) -> float:
    """Seconds until ``payload`` is answered 200 (MMS answers /ping before its workers have loaded the model)."""
    begin = time.perf_counter()
    last = "no answer"
    while time.perf_counter() - begin < timeout:
        try:
            answer = container.invoke(payload.body, payload.content_type, payload.accept, timeout=5)
            if answer.status_code == 200:
                return time.perf_counter() - begin
            last = f"{answer.status_code} {answer.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.01)
    raise TimeoutError(f"no 200 on /invocations within {timeout:g} s (last: {last}):\n{container.logs()[-3000:]}")


def time_starts(name: str, client: Any, image: str, model_dir: Path, started: list[Any], times: int,
                probes: tuple[Payload, ...], read_only: bool) -> tuple[list[tuple[float, float]], list[bytes]]:
    """``times`` starts of ``docker run IMAGE serve``: (seconds to the first 200 on /ping, to the first answered
    invocation) each, and the answers to ``probes`` of the first start."""
    step(f"{name}: start time, docker run {image} serve -> first 200 on /ping -> first answered invocation, "
         f"{times} times")
    starts, answers = [], []
    for index in range(times):
        container, _, ping = start_container(client, image, model_dir, started, read_only=read_only,
                                             port=low_free_port())
        first = ping + answered(container, probes[0])
        starts.append((ping, first))
        if index == 0:
            for probe in probes:
                answer = container.invoke(probe.body, probe.content_type, probe.accept)
                answer.raise_for_status()
                answers.append(answer.content)
        container.remove()
        print(f"    /ping 200 after {ping:.2f} s, first invocation answered after {first:.2f} s", flush=True)
    return starts, answers


def check_same_scores(ours: list[bytes], theirs: list[bytes], what: list[str]) -> None:
    """Both stacks' CSV scores for the same requests are equal within float32 tolerance, or the run stops."""
    for label, mine, peer in zip(what, ours, theirs, strict=True):
        a = np.loadtxt(mine.decode().splitlines(), delimiter=",", ndmin=1)
        b = np.loadtxt(peer.decode().splitlines(), delimiter=",", ndmin=1)
        if a.shape != b.shape or not np.allclose(a, b, rtol=RTOL, atol=ATOL):
            detail = (f"shapes {a.shape} and {b.shape}" if a.shape != b.shape
                      else f"max difference {np.max(np.abs(a - b)):.3g}")
            raise SystemExit(f"ERROR: {OURS} and {PEER} answer different scores for the {label} ({detail}); "
                             f"the comparison would be meaningless.\n  ours:  {mine[:200]!r}\n  peer:  {peer[:200]!r}")
        print(f"    {label}: same scores ({a.size} values, max difference {np.max(np.abs(a - b)):.2g}; "
              f"bytes {'identical' if mine == peer else 'differ in formatting'})")


def serve_and_load(name: str, client: Any, image: str, model_dir: Path, started: list[Any], single: Payload,
                   batch: Payload, args: Any, read_only: bool) -> tuple[list[Result], tuple[int, int]]:
    """Serve the image alone (host network, ``SERVE_ENV``), load it, and read its memory after the load."""
    step(f"{name} ({SERVE_ENV['SAGEMAKER_MODEL_SERVER_WORKERS']} workers, host network, "
         f"{'read-only' if read_only else 'writable'} root)")
    container, _, _ = start_container(client, image, model_dir, started, read_only=read_only,
                                      port=low_free_port())
    answered(container, single)
    meters = container_meters(container)
    # Warm up for a whole run, not reported (MMS's JVM compiles its hot paths in the first seconds under load);
    # then, before the loads that can overload it, paced at a rate both stacks sustain: latencies that are not
    # queueing behind an overload.
    run_wrk("warm-up", container.url, single, connections=32, duration_s=args.duration)
    sustained = replace(run_wrk(name, container.url, single, connections=64, duration_s=args.duration,
                                rate=args.sustained_rate, meters=meters), mode=SUSTAINED)
    print(sustained.summary(), flush=True)
    time.sleep(0.5)
    results = [sustained, *measure(name, container.url, single, batch, meters, args)]
    memory = tree_memory_bytes(container.container.attrs["State"]["Pid"])
    print(f"    memory after the load: PSS {memory[0] / MiB:.0f} MiB, RSS {memory[1] / MiB:.0f} MiB "
          "(the container's processes)")
    container.remove()
    return results, memory


def main(argv: list[str] | None = None) -> int:
    parser = image_bench.parser(__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="training rows (default 20000)")
    parser.add_argument("--sustained-rate", type=float, default=200,
                        help="req/s of an extra paced run that both stacks sustain (default 200)")
    args = parser.parse_args(argv)
    check_shared_pins()

    with ImageBench("xgboost") as bench:
        client, image = bench.client, bench.image
        peer = peer_image(client)
        step(f"training {image} on {args.rows} x {FEATURES} synthetic rows, "
             f"{' '.join(f'{k}={v}' for k, v in HYPERPARAMETERS.items())} (docker run {image} train)")
        model_dir = bench.train_on_rows(HYPERPARAMETERS, *make_rows(args.rows, seed=42))
        if model_dir is None:
            return 1
        print(f": {MODEL_FILE} {(model_dir / MODEL_FILE).stat().st_size / 1e3:.0f} kB")

        live, _ = make_rows(BATCH, seed=7)
        single = Payload(csv_body(live[:1]), "text/csv", "text/csv", records=1)
        batch = Payload(csv_body(live), "text/csv", "text/csv", records=BATCH)

        probes = (single, batch)
        our_starts, ours = time_starts(OURS, client, image, model_dir, bench.containers, args.starts, probes, True)
        peer_starts, theirs = time_starts(PEER, client, peer, model_dir, bench.containers, args.starts, probes,
                                          False)
        step("the same scores from both (a precondition of the comparison)")
        check_same_scores(ours, theirs, ["single row", f"{BATCH} rows"])

        memory = {}
        for name, tag, read_only in ((OURS, image, True), (PEER, peer, False)):
            results, memory[name] = serve_and_load(name, client, tag, model_dir, bench.containers, single, batch,
                                                   args, read_only)
            bench.results += results

        report(bench.results, {OURS: our_starts, PEER: peer_starts}, memory,
               {OURS: image_size_mb(client, image), PEER: image_size_mb(client, peer)}, image, peer, args.rate)
        bench.done()
        return 0


def report(results: list[Result], starts: dict[str, list[tuple[float, float]]], memory: dict[str, tuple[int, int]],
           sizes: dict[str, float | None], image: str, peer: str, rate: float) -> None:
    workers = SERVE_ENV["SAGEMAKER_MODEL_SERVER_WORKERS"]
    print(f"\n{OURS} ({image}) and {PEER} ({peer}), {workers} workers each; text/csv in ({FEATURES} features, 1 or "
          f"{BATCH} rows, no header), text/csv out; generator on the same cores")
    print(table(result_headers(records=True), [result_row(result, records=True) for result in results]))
    print("  srv CPU = the container's process tree + docker (its shim and dockerd). rec/s = rows/s.")

    specs = load_figures(rate, unit="row", batch=BATCH)
    sustained = find(results, OURS, SUSTAINED, 1)
    if sustained and sustained.offered_rps:
        specs.insert(4, (f"p99 ms at ~{sustained.offered_rps:.0f}/s, wrk paced (keep-alive)", SUSTAINED, 1,
                         lambda r: r.p99_ms, fmt_ms))
        specs.insert(5, (f"req/s achieved at ~{sustained.offered_rps:.0f}/s, wrk paced", SUSTAINED, 1,
                         lambda r: r.rps, "{:.0f}".format))
    rows = figure_rows(results, (OURS, PEER), specs)
    rows = [row for row in rows if "docker-proxy" not in row[0]]  # host network: there is none
    for mode in ("closed", SUSTAINED, "paced", "open"):
        cells = [f"{result.generator_cpu_s:.2f}" if (result := find(results, name, mode, 1)) else "-"
                 for name in (OURS, PEER)]
        rows.append([f"generator CPU s, single row, {mode}", *cells, "-"])
    for index, label in ((0, "start to first 200 on /ping"), (1, "start to first answered invocation")):
        values = {name: [each[index] for each in starts[name]] for name in (OURS, PEER)}
        rows.append([f"{label} s, median (max) of {len(values[OURS])}",
                     *(f"{statistics.median(values[name]):.2f} ({max(values[name]):.2f})" for name in (OURS, PEER)),
                     ratio(statistics.median(values[OURS]), statistics.median(values[PEER]))])
    for index, label in ((0, "PSS"), (1, "RSS")):
        rows.append([f"memory after the load, {label} MiB",
                     *(f"{memory[name][index] / MiB:.0f}" for name in (OURS, PEER)),
                     ratio(memory[OURS][index], memory[PEER][index])])
    rows.append(["image MB", *(f"{sizes[name]:.0f}" if sizes[name] else "-" for name in (OURS, PEER)),
                 ratio(sizes[OURS], sizes[PEER])])
    print(f"\nSummary (same 200-tree model, same requests; base {BASE_IMAGE})")
    print(table(["figure", OURS, PEER, "ours / MMS"], rows))

    print("\nIssue 14: multi-model-server + sagemaker-inference on the same XGBoost model, against ours")
    closed = [find(results, name, "closed", 1) for name in (OURS, PEER)]
    if all(closed):
        print(f"  single-row req/s, closed loop: ours {closed[0].rps:.0f}, MMS {closed[1].rps:.0f} "
              f"(ours / MMS {ratio(closed[0].rps, closed[1].rps)})")
    for mode, what in ((SUSTAINED, f"~{sustained.offered_rps if sustained else 0:.0f} req/s, wrk paced, keep-alive"),
                       ("paced", f"~{rate:.0f} req/s, wrk paced, keep-alive"),
                       ("open", f"{rate:.0f} req/s, httperf open, new connection per request")):
        pair = [find(results, name, mode, 1) for name in (OURS, PEER)]
        if all(pair):
            print(f"  p99 at {what}: " + ", ".join(
                f"{label} {fmt_ms(result.p99_ms)} ms ({result.rps:.0f} req/s achieved, {result.errors} errors)"
                for label, result in zip(("ours", "MMS"), pair, strict=True)))
    first = {name: statistics.median(each[1] for each in starts[name]) for name in (OURS, PEER)}
    print(f"  start to first answered invocation, median: ours {first[OURS]:.2f} s, MMS {first[PEER]:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
