"""Fused models (docs/fused.md) beside the chained pipeline, in the same run, on the same models and orders.

Steps: train preprocess and XGBoost on synthetic orders through their real ``train`` entries
(``local_test.pipeline.train_models``), fuse them (``python -m serving_common.fuse``), check that the
chained pipeline and the fused model give the same score, then load each with single JSON orders
(``Accept: text/csv``): wrk closed loop (32 connections) and paced at ~``--rate`` req/s (64 connections).

Targets (each alone, on the host network, the generator on the same cores):

- **pipeline**: ``PipelineModel([preprocess, xgboost])`` deployed with the SDK in local mode (front +
  two stages, the local pipeline's default workers), as ``bench/pipeline.py`` measures it;
- **fused**: the fused model in the XGBoost image, a plain endpoint (2 workers);
- **fused, 1 of N**: a multi-model endpoint of the XGBoost image (``SAGEMAKER_MULTI_MODEL=true``) holding
  one fused model, then **fused, N models**: the same endpoint with ``--markets`` fused per-market models
  loaded (``POST /models``) and the requests spread over all of them (``X-Amzn-SageMaker-Target-Model``,
  round robin). Printed: the load time of each model (the POST, mean and max) and the memory each loaded
  model adds (PSS of the container's processes, every worker holds every model).

Prints figures and the issue's targets beside them; asserts nothing.

    .venv/bin/python bench/fused.py [--duration 5] [--rate 1000] [--orders 3000] [--markets 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from loadgen import ROOT, Payload, Result, exit_on_sigterm, find, fmt_ms, ratio, table, tree_pss_bytes
from pipeline import WORKERS, container_pid, load, load_average, meters_for, scores, step

# Issue targets (printed beside the figures, never asserted).
TARGET_RPS = 7000
TARGET_RATIO = 2.5
TARGET_P99_MS = 3.0
TARGET_SPREAD = 0.8  # N models' throughput at least 80% of one model's
TARGET_LOAD_MS = 50

PIPELINE, FUSED, MME_ONE, MME_MANY = "pipeline", "fused", "fused, 1 of N", "fused, N models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rate", type=float, default=1000, help="req/s of the paced runs")
    parser.add_argument("--orders", type=int, default=3000, help="training orders")
    parser.add_argument("--markets", type=int, default=100, help="fused per-market models on one endpoint")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    from local_test.sagemaker_local import offline_environment

    offline_environment()  # before the SDK loads: dummy AWS region and credentials, no AWS lookups
    import requests
    from sagemaker.model import Model
    from sagemaker.pipeline import PipelineModel

    from local_test.docker_run import ServingContainer, docker_client, ensure_image
    from local_test.orders import make_orders
    from local_test.pipeline import PipelineSession, train_models

    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()} (1/5/15 min) at the start; the "
          "generator shares the cores; other work on the machine moves every figure")
    client = docker_client()
    images = {name: ensure_image(client, name) for name in ("preprocess", "xgboost")}
    work = Path(tempfile.mkdtemp(prefix="bench-fused-"))
    work.chmod(0o755)  # the images serve as an unprivileged account
    results: list[Result] = []
    loads_ms: list[float] = []
    memory: dict[str, int] = {}
    try:
        step(f"training preprocess and xgboost on {args.orders} orders (their real train entries), fusing them")
        trained = train_models(client, work / "models", make_orders(args.orders, seed=21), images["preprocess"],
                               images["xgboost"])
        fused_archive = work / "fused" / "model.tar.gz"
        subprocess.run([sys.executable, "-m", "serving_common.fuse", str(trained.preprocess_archive),
                        str(trained.xgboost_archive), "-o", str(fused_archive)], check=True, cwd=ROOT)
        fused_dir = work / "fused" / "model"
        with tarfile.open(fused_archive) as tar:
            tar.extractall(fused_dir, filter="data")
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        order = {k: v for k, v in make_orders(1, seed=12345)[0].items() if k != "default"}
        body = json.dumps(order).encode()
        payload = Payload(body, "application/json", "text/csv")
        answers: dict[str, list[float]] = {}

        step(f"{PIPELINE}: deploy PipelineModel([preprocess, xgboost]) with the SDK, then load it")
        session = PipelineSession(work / "sdk", docker=client, host_network=True)
        try:
            stages = [Model(image_uri=images[name], model_data=f"file://{archive}", sagemaker_session=session)
                      for name, archive in (("preprocess", trained.preprocess_archive),
                                            ("xgboost", trained.xgboost_archive))]
            PipelineModel(models=stages, sagemaker_session=session).deploy(
                initial_instance_count=1, instance_type="local", endpoint_name="bench-fused-pipeline")
            url = session.endpoint_url("bench-fused-pipeline")
            answers[PIPELINE] = scores(requests.post(f"{url}/invocations", data=body, timeout=10, headers={
                "Content-Type": payload.content_type, "Accept": payload.accept}).content)
            deployment = session.deployment("bench-fused-pipeline")
            containers = dict(zip(["front", "preprocess", "xgboost"], deployment.containers, strict=True))
            results.extend(load(PIPELINE, url, payload, meters_for(containers, None), args))
        finally:
            session.cleanup()

        step(f"{FUSED}: the fused model in {images['xgboost']} on the host network, {WORKERS} workers")
        with ServingContainer(client, images["xgboost"], fused_dir, env={"SAGEMAKER_MODEL_SERVER_WORKERS": WORKERS},
                              host_network=True) as container:
            container.wait_ready()
            answers[FUSED] = scores(container.invoke(body, payload.content_type, payload.accept).content)
            results.extend(load(FUSED, container.url, payload, meters_for({"server": container.container}, None),
                                args))
        print(f"  scores: pipeline {answers[PIPELINE]}, fused {answers[FUSED]}: "
              f"{'identical' if answers[PIPELINE] == answers[FUSED] else 'DIFFERENT'}")

        step(f"{MME_MANY}: {args.markets} fused models on one multi-model endpoint, requests spread over all")
        models = work / "mme"
        for index in range(args.markets):
            shutil.copytree(fused_dir, models / f"market-{index}")
        for path in [models, *models.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": WORKERS}
        with ServingContainer(client, images["xgboost"], None, env=env, host_network=True,
                              volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}}) as server:
            server.wait_ready()
            pid = container_pid(server.container)
            time.sleep(1)
            memory["empty"] = tree_pss_bytes(pid)
            for index in range(args.markets):
                begin = time.perf_counter()
                answer = requests.post(f"{server.url}/models", json={"model_name": f"market-{index}",
                                                                     "url": f"/opt/ml/models/market-{index}"},
                                       timeout=60)
                loads_ms.append((time.perf_counter() - begin) * 1e3)
                if answer.status_code != 200:
                    raise RuntimeError(f"loading market-{index}: {answer.status_code} {answer.text[:300]}")
                if index == 0:
                    memory["one"] = tree_pss_bytes(pid)
                    one = Payload(body, payload.content_type, payload.accept, target_models=("market-0",))
                    results.extend(load(MME_ONE, server.url, one, meters_for({"server": server.container}, None),
                                        args))
            memory["all"] = tree_pss_bytes(pid)
            spread = Payload(body, payload.content_type, payload.accept,
                             target_models=tuple(f"market-{index}" for index in range(args.markets)))
            results.extend(load(MME_MANY, server.url, spread, meters_for({"server": server.container}, None), args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args, loads_ms, memory)
    return 0


def report(results: list[Result], args: argparse.Namespace, loads_ms: list[float], memory: dict[str, int]) -> None:
    print(f"\nload average at the end: {load_average()}")
    headers = ["target", "load", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"]
    print("\n" + table(headers, [[r.target, r.load, f"{r.rps:.0f}", fmt_ms(r.p50_ms), fmt_ms(r.p99_ms),
                                  fmt_ms(r.p999_ms), r.errors] for r in results]))
    pipeline, fused = find(results, PIPELINE, "closed"), find(results, FUSED, "closed")
    paced = find(results, FUSED, "paced")
    one, many = find(results, MME_ONE, "closed"), find(results, MME_MANY, "closed")
    print("\nissue targets (one run, this machine):")
    if fused and pipeline:
        print(f"  fused {fused.rps:.0f} req/s (target >= {TARGET_RPS}); fused / pipeline "
              f"{ratio(fused.rps, pipeline.rps)} (target >= {TARGET_RATIO}x)")
    if paced:
        print(f"  fused paced ~{args.rate:.0f}/s: p99 {fmt_ms(paced.p99_ms)} ms (target <= {TARGET_P99_MS} ms)")
    if one and many:
        print(f"  {args.markets} models, spread: {many.rps:.0f} req/s vs 1 model {one.rps:.0f} req/s: "
              f"{ratio(many.rps, one.rps)} (target >= {TARGET_SPREAD})")
    if loads_ms:
        print(f"  load time per model (POST /models): mean {sum(loads_ms) / len(loads_ms):.1f} ms, "
              f"max {max(loads_ms):.1f} ms (target <= {TARGET_LOAD_MS} ms); the first {loads_ms[0]:.1f} ms")
    if {"empty", "one", "all"} <= memory.keys() and args.markets > 1:
        per_model = (memory["all"] - memory["one"]) / (args.markets - 1)
        print(f"  memory (PSS, all workers): empty {memory['empty'] / 2**20:.0f} MiB, first model "
              f"+{(memory['one'] - memory['empty']) / 2**20:.1f} MiB, each further model +{per_model / 2**20:.2f} MiB")


if __name__ == "__main__":
    sys.exit(main())
