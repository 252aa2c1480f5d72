"""The two-container inference pipeline (preprocess -> xgboost) under load through its one port, beside each
container alone and a plain scikit-learn-pipeline flask server, with the pipeline front's own CPU cost.

Steps: make 3000 synthetic orders, train preprocess and XGBoost through their real ``train`` entries
(``local_test.pipeline.train_models``), deploy ``PipelineModel([preprocess, xgboost])`` with the SDK in local
mode (``local_test.pipeline.PipelineSession``), check that the pipeline, the flask server and the same
transform + booster in-process give the same score, then load each target with single-record JSON orders
(``Accept: text/csv``): wrk closed loop (32 connections), wrk paced at ~``--rate`` req/s (64 connections)
and httperf open loop at ``--rate`` (a new connection per request). Every target runs alone: a container
alone and the flask server with 2 workers (the CPU count here, the images' default), the pipeline's stages
with the local pipeline's default (the CPUs shared out among the stages: 1 worker each here), the
generator on the same 2 cores. Prints figures; asserts nothing.

Targets measured:

- **pipeline**: front + preprocess + xgboost containers sharing the host's network namespace (no
  docker-proxy, as the image benchmarks run and as SageMaker hosts have none), at the images' defaults
  (``SMKIT_ACCESS_LOG`` off: no log line per successful request; failures are logged);
- **pipeline, published port**: the default local endpoint (the front's own namespace, its port published
  on 127.0.0.1 through docker-proxy), closed loop only;
- **pipeline, access log on**: as the first, with ``SMKIT_ACCESS_LOG=true`` on the front (one line per
  request through docker's log path), closed loop only;
- **pipeline, inline off**: as the first, with ``SMKIT_INLINE_PREDICTIONS=false`` on both stages (every
  prediction handed to the worker's prediction thread), closed loop and paced;
- **preprocess alone** and **xgboost alone**: each image served on the host network (xgboost gets the
  feature row preprocess makes of the same order, as CSV);
- **flask + sklearn + xgboost**: the classic bring-your-own style on the host: flask under gunicorn sync
  (2 workers), ``json.loads`` -> pandas + the fitted ``ColumnTransformer`` (``transform_records_sklearn``)
  -> ``Booster.predict(DMatrix)`` -> CSV (``flask_pipeline_app`` below).

CPU per request comes from ``/proc`` (utime + stime of each container's process tree, the docker-proxy,
the containers' shims + dockerd for the log path, the generator's own), divided by the successful requests.

    .venv/bin/python bench/pipeline.py [--duration 5] [--rate 1000] [--orders 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadgen import (
    BENCH,
    HOST,
    ROOT,
    CpuMeter,
    Payload,
    Result,
    Server,
    docker_proxy_pids,
    exit_on_sigterm,
    fmt_ms,
    parent_pid,
    pids_named,
    process_cpu_seconds,
    ratio,
    run_httperf,
    run_wrk,
    table,
    tree_cpu_seconds,
)

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import free_port

WORKERS = "2"  # a container alone and flask: the CPU count here (the images' default), fixed for comparability
PIPELINE = "pipeline"
PIPELINE_PROXY = "pipeline, published port"
PIPELINE_LOGGED = "pipeline, access log on"
PIPELINE_THREADED = "pipeline, inline off"
PREPROCESS = "preprocess alone"
XGBOOST = "xgboost alone"
FLASK = "flask + sklearn + xgboost"

# The targets (printed beside the figures, never asserted).
TARGET_RPS = 2000
TARGET_P99_MS = 10.0
TARGET_P999_MS = 25.0
TARGET_RATIO = 20


# -- the comparison: a plain flask server running the same sklearn transform and booster ----------------


def flask_pipeline_app() -> Any:
    """``gunicorn -w 2 -k sync --chdir bench 'pipeline:flask_pipeline_app()'`` with ``BENCH_PREPROCESS_DIR``
    and ``BENCH_XGBOOST_DIR`` set to the trained model folders."""
    import xgboost
    from flask import Flask, Response, request

    from serving_common import encoders

    sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
    from serving_common.features.features import FittedFeatures

    features = FittedFeatures.load(os.environ["BENCH_PREPROCESS_DIR"])
    booster = xgboost.Booster()
    booster.load_model(bytearray((Path(os.environ["BENCH_XGBOOST_DIR"]) / "xgboost-model.ubj").read_bytes()))
    booster.set_param({"nthread": 1})  # 2 sync workers on 2 cores
    app = Flask("pipeline")

    @app.get("/ping")
    def ping() -> Response:
        return Response(b"", status=200, mimetype="text/plain")

    @app.post("/invocations")
    def invocations() -> Response:
        data = json.loads(request.get_data())
        records = data if isinstance(data, list) else data.get("instances", [data])
        scores = booster.predict(xgboost.DMatrix(features.transform_records_sklearn(records)))
        return Response(encoders.encode_csv(scores), status=200, mimetype="text/csv")

    return app


# -- measuring --------------------------------------------------------------------------------------------


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def container_pid(container: Any) -> int:
    container.reload()
    return container.attrs["State"]["Pid"]


def meters_for(containers: Mapping[str, Any], host_port: int | None) -> dict[str, CpuMeter]:
    """CPU meters: each container's process tree, the docker-proxy of ``host_port`` (if any), and the log
    path (the containers' shims + dockerd, which also counts any other docker work meanwhile)."""
    meters: dict[str, CpuMeter] = {}
    shims = []
    for name, container in containers.items():
        pid = container_pid(container)
        meters[name] = lambda pid=pid: tree_cpu_seconds(pid)
        shim = parent_pid(pid)
        if shim:
            shims.append(shim)
    proxies = docker_proxy_pids(host_port) if host_port else []
    if proxies:
        meters["docker-proxy"] = lambda: sum(tree_cpu_seconds(proxy) for proxy in proxies)
    log_path = shims + pids_named("dockerd")
    meters["docker logs"] = lambda: sum(process_cpu_seconds(pid) for pid in log_path)
    return meters


def warm_up(url: str, payload: Payload) -> None:
    run_wrk("warm-up", url, payload, connections=8, duration_s=1)


def load(target: str, url: str, payload: Payload, meters: Mapping[str, CpuMeter], args: argparse.Namespace,
         closed: bool = True, paced: bool = True, open_loop: bool = False) -> list[Result]:
    warm_up(url, payload)
    results = []
    if closed:
        results.append(run_wrk(target, url, payload, connections=32, duration_s=args.duration, meters=meters))
    if paced:
        results.append(run_wrk(target, url, payload, connections=64, duration_s=args.duration, rate=args.rate,
                               meters=meters))
    if open_loop:
        results.append(run_httperf(target, url, payload, rate=args.rate, duration_s=args.duration, meters=meters))
    for result in results:
        print(f"  {result.target:<30} {result.load:<32} {result.rps:7.0f} req/s  p50 {fmt_ms(result.p50_ms)}  "
              f"p99 {fmt_ms(result.p99_ms)}  p99.9 {fmt_ms(result.p999_ms)} ms  errors {result.errors}  "
              f"CPU us/req {cpu_breakdown(result)}" + (f"  [{result.detail}]" if result.detail else ""), flush=True)
    return results


def per_request_us(result: Result, meter: str) -> float | None:
    seconds = result.cpu_s.get(meter)
    return seconds * 1e6 / result.requests if seconds is not None and result.requests else None


def cpu_breakdown(result: Result) -> str:
    parts = [f"{name} {value:.0f}" for name in result.cpu_s if (value := per_request_us(result, name)) is not None]
    total = sum(value for name in result.cpu_s if (value := per_request_us(result, name)) is not None)
    generator = result.generator_cpu_s * 1e6 / result.requests if result.requests else 0.0
    return " + ".join(parts) + f" = {total:.0f} (+ generator {generator:.0f})"


def scores(body: bytes) -> list[float]:
    return [float(line) for line in body.decode().splitlines() if line.strip()]


# -- the run ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rate", type=float, default=1000, help="req/s of the paced and open-loop runs")
    parser.add_argument("--orders", type=int, default=3000, help="training orders")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    from local_test.sagemaker_local import offline_environment

    offline_environment()  # before the SDK loads: dummy AWS region and credentials, no AWS lookups
    import numpy as np
    import requests
    import xgboost
    from sagemaker.model import Model
    from sagemaker.pipeline import PipelineModel

    from local_test.docker_run import ServingContainer, docker_client, ensure_image
    from local_test.orders import make_orders
    from local_test.pipeline import PipelineSession, train_models

    sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
    from serving_common.features.features import FittedFeatures

    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()} (1/5/15 min) at the start; the "
          "generator shares the cores; other work on the machine moves every figure")
    client = docker_client()
    images = {name: ensure_image(client, name) for name in ("preprocess", "xgboost")}
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    results: list[Result] = []
    cleanup: list[Callable[[], None]] = []
    try:
        step(f"training preprocess and xgboost on {args.orders} orders (their real train entries)")
        started = time.monotonic()
        trained = train_models(client, work / "models", make_orders(args.orders, seed=21), images["preprocess"],
                               images["xgboost"])
        print(f"  trained in {time.monotonic() - started:.1f} s")
        order = make_orders(1, seed=12345)[0]
        body = json.dumps(order).encode()
        payload = Payload(body, "application/json", "text/csv")
        features = FittedFeatures.load(trained.preprocess_dir)
        booster = xgboost.Booster()
        booster.load_model(bytearray((trained.xgboost_dir / "xgboost-model.ubj").read_bytes()))
        expected = float(booster.inplace_predict(features.transform_records_sklearn([order]))[0])

        def pipeline_run(target: str, host_network: bool, front_env: dict[str, str] | None = None,
                         stage_env: dict[str, str] | None = None, **loads: bool) -> None:
            step(f"{target}: deploy PipelineModel([preprocess, xgboost]) with the SDK, then load it")
            # workers: the local pipeline's default (CPUs shared out among stages)
            env: dict[str, str] = dict(stage_env or {})
            session = PipelineSession(work / f"sdk-{len(results)}", docker=client, host_network=host_network,
                                      front_environment=front_env)
            cleanup.append(session.cleanup)
            try:
                models = [Model(image_uri=images[name], model_data=f"file://{archive}", env=env,
                                sagemaker_session=session)
                          for name, archive in (("preprocess", trained.preprocess_archive),
                                                ("xgboost", trained.xgboost_archive))]
                begin = time.monotonic()
                PipelineModel(models=models, sagemaker_session=session).deploy(
                    initial_instance_count=1, instance_type="local", endpoint_name="bench-pipeline")
                print(f"  deployed in {time.monotonic() - begin:.1f} s (SDK call to InService)")
                url = session.endpoint_url("bench-pipeline")
                answer = requests.post(f"{url}/invocations", data=body, headers={
                    "Content-Type": payload.content_type, "Accept": payload.accept}, timeout=10)
                served = scores(answer.content)
                print(f"  score {served} vs in-process {expected:.9f}: "
                      f"{'equal (1e-6)' if np.allclose(served, [expected], rtol=0, atol=1e-6) else 'DIFFERENT'}")
                deployment = session.deployment("bench-pipeline")
                containers = dict(zip(["front", "preprocess", "xgboost"], deployment.containers, strict=True))
                meters = meters_for(containers, None if host_network else deployment.host_port)
                results.extend(load(target, url, payload, meters, args, **loads))
            finally:
                session.cleanup()

        def alone_run(target: str, image: str, model_dir: Path, this_payload: Payload) -> None:
            step(f"{target}: {image} served on the host network, 2 workers")
            with ServingContainer(client, image, model_dir, env={"SAGEMAKER_MODEL_SERVER_WORKERS": WORKERS},
                                  host_network=True) as container:
                container.wait_ready()
                meters = meters_for({"server": container.container}, None)
                results.extend(load(target, container.url, this_payload, meters, args))

        pipeline_run(PIPELINE, True, open_loop=True)
        pipeline_run(PIPELINE_PROXY, False, paced=False)
        pipeline_run(PIPELINE_LOGGED, True, {"SMKIT_ACCESS_LOG": "true"}, paced=False)
        pipeline_run(PIPELINE_THREADED, True, stage_env={"SMKIT_INLINE_PREDICTIONS": "false"})

        row = ",".join(repr(float(v)) for v in features.transform_records_sklearn([order])[0]).encode()
        alone_run(PREPROCESS, images["preprocess"], trained.preprocess_dir, payload)
        alone_run(XGBOOST, images["xgboost"], trained.xgboost_dir, Payload(row, "text/csv", "text/csv"))

        step(f"{FLASK}: flask under gunicorn sync (2 workers) on the host")
        port = free_port()
        flask = Server(FLASK, [sys.executable, "-m", "gunicorn", "-w", WORKERS, "-k", "sync", "-b", f"{HOST}:{port}",
                               "--chdir", str(BENCH), "pipeline:flask_pipeline_app()"], port, work,
                       env={"BENCH_PREPROCESS_DIR": str(trained.preprocess_dir),
                            "BENCH_XGBOOST_DIR": str(trained.xgboost_dir),
                            "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])})
        with flask:
            answer = requests.post(f"{flask.url}/invocations", data=body, headers={"Content-Type": "application/json"},
                                   timeout=10)
            same = np.allclose(scores(answer.content), [expected], rtol=0, atol=1e-6)
            print(f"  flask's score {scores(answer.content)}: {'equal (1e-6)' if same else 'DIFFERENT'}")
            results.extend(load(FLASK, flask.url, payload, {"server": flask.cpu_seconds}, args, paced=False))
    finally:
        for action in cleanup:
            try:
                action()
            except Exception as exc:  # report and go on cleaning
                print(f"cleanup: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.rate)
    return 0


def report(results: list[Result], rate: float) -> None:
    print(f"\nload average at the end: {load_average()}")
    headers = ["target", "load", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "CPU us/req (by process)"]
    rows = [[r.target, r.load, f"{r.rps:.0f}", fmt_ms(r.p50_ms), fmt_ms(r.p99_ms), fmt_ms(r.p999_ms), r.errors,
             cpu_breakdown(r)] for r in results]
    print("\n" + table(headers, rows))

    def first(target: str, mode: str) -> Result | None:
        return next((r for r in results if r.target == target and r.mode == mode), None)

    closed, paced, open_loop = first(PIPELINE, "closed"), first(PIPELINE, "paced"), first(PIPELINE, "open")
    flask = first(FLASK, "closed")
    print("\nthe pipeline front's own cost (CPU of its process tree per request):")
    for result in (r for r in results if r.target.startswith("pipeline") and "front" in r.cpu_s):
        total = sum(v for name in result.cpu_s if (v := per_request_us(result, name)) is not None)
        front = per_request_us(result, "front") or 0.0
        print(f"  {result.target:<30} {result.load:<32} front {front:5.0f} us/req = "
              f"{100 * front / total if total else 0:4.1f} % of the pipeline's CPU")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\ntargets (issue 5):")
    if closed:
        print(f"  closed loop >= {TARGET_RPS} req/s: {closed.rps:.0f} req/s -> {verdict(closed.rps >= TARGET_RPS)}")
    for result in (paced, open_loop):
        if result:
            ok = (result.errors == 0 and result.p99_ms is not None and result.p99_ms <= TARGET_P99_MS
                  and result.p999_ms is not None and result.p999_ms <= TARGET_P999_MS)
            print(f"  at ~{rate:.0f} req/s ({result.load}): {result.rps:.0f} req/s, p99 {fmt_ms(result.p99_ms)} ms "
                  f"(<= {TARGET_P99_MS:g}), p99.9 {fmt_ms(result.p999_ms)} ms (<= {TARGET_P999_MS:g}), errors "
                  f"{result.errors} (0) -> {verdict(ok)}")
    if closed and flask:
        value = closed.rps / flask.rps if flask.rps else float("inf")
        print(f"  >= {TARGET_RATIO}x the flask server (closed loop): {ratio(closed.rps, flask.rps)} -> "
              f"{verdict(value >= TARGET_RATIO)}")
    alone = [first(name, "closed") for name in (PREPROCESS, XGBOOST)]
    if closed and all(alone):
        stages = sum(1e6 / r.rps for r in alone if r and r.rps)
        print(f"  (for scale: preprocess alone + xgboost alone take {stages:.0f} us of machine time per request "
              f"closed loop, i.e. at most {1e6 / stages:.0f} req/s for the two in series on this machine)")


if __name__ == "__main__":
    sys.exit(main())
