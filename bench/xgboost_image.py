"""The XGBoost image under load, beside the empty-handler ceiling of the same stack and the plain
``XGBClassifier.predict_proba`` path (flask + gunicorn sync), plus model load time in a multi-model
endpoint, container start time and image size.

Steps: make 20000 synthetic rows of 30 numeric features, train the image through its real ``train`` entry
(binary:logistic, num_round 200, max_depth 6: 200 trees), time ``serve`` to the first 200 on /ping
(5 starts), serve it with 2 workers on the host network and load it (single-row and 100-row CSV,
Accept text/csv) closed loop with wrk, paced at ~1000 req/s with wrk's ``delay()`` and open loop at
1000 req/s with httperf; time ``POST /models`` of the model under several names in a multi-model endpoint.
Prints figures; asserts nothing.

    .venv/bin/python bench/xgboost_image.py [--duration 5] [--rate 1000] [--starts 5] [--rows 20000] [--models 5]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import image_bench
import numpy as np
import requests
from http_stack import flask_server
from image_bench import ImageBench
from loadgen import (
    BASE_IMAGE,
    Payload,
    Result,
    figure_rows,
    find,
    fmt_ms,
    load_figures,
    measure_baseline,
    measure_image,
    ratio,
    result_headers,
    result_row,
    same_output,
    start_and_size_lines,
    start_and_size_rows,
    start_container,
    step,
    table,
    target_lines,
    time_starts,
    verdict,
)

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import ServingContainer

MODEL_FILE = "xgboost-model.ubj"  # what the image's train writes (xgboost_container.model_files.MODEL_FILE)
FEATURES = 30
HYPERPARAMETERS = {"num_round": 200, "objective": "binary:logistic", "max_depth": 6}
BATCH = 100
IMAGE = "image: xgboost"
CEILING = "ours, empty handler (host)"
PLAIN = "flask sync + XGBClassifier"
WORKERS = 2  # loadgen.SERVE_ENV's SAGEMAKER_MODEL_SERVER_WORKERS, and the flask baseline's
MME_ROOT = "/opt/ml/models"  # where the multi-model container sees the model copies

# Issue targets (printed beside the figures, never asserted).
TARGET_RPS = 2500
TARGET_P99_MS = 5.0
TARGET_ROWS_PER_S = 200_000
TARGET_LOAD_MS = 50.0
TARGET_START_S = 2.0
TARGET_IMAGE_MB = 250


def make_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels): standard normal features, a binary label from a noisy non-linear logit (so the
    trees use their depth)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    logit = (x[:, 0] + x[:, 1] * x[:, 2] - np.abs(x[:, 3]) + np.sin(2 * x[:, 4]) + 0.5 * x[:, 5:10].sum(axis=1)
             + 0.3 * (x[:, 10] > 0.5) * x[:, 11])
    labels = (logit + rng.logistic(size=rows) > 0).astype(int)
    return x, labels


def csv_body(rows: np.ndarray) -> bytes:
    """Rows as a CSV request body: no header, 6 significant digits, no trailing newline."""
    return "\n".join(",".join(f"{value:.6g}" for value in row) for row in rows.tolist()).encode()


def time_in_process(model_file: Path, repeats: int = 20) -> tuple[list[float], list[float], int]:
    """Load times (ms) of the model file alone, in this process: as the image does (``Booster.load_model``
    from the file's bytes) and as the flask baseline does (``XGBClassifier().load_model``); and its trees."""
    import xgboost
    booster_ms, classifier_ms = [], []
    trees = 0
    for _ in range(repeats):
        begin = time.perf_counter()
        booster = xgboost.Booster()
        booster.load_model(bytearray(model_file.read_bytes()))
        booster_ms.append((time.perf_counter() - begin) * 1e3)
        trees = booster.num_boosted_rounds()
        begin = time.perf_counter()
        xgboost.XGBClassifier().load_model(bytearray(model_file.read_bytes()))
        classifier_ms.append((time.perf_counter() - begin) * 1e3)
    return booster_ms, classifier_ms, trees


def time_model_loads(client: Any, image: str, model_dir: Path, work: Path, count: int, batch: Payload,
                     reference: bytes, containers: list[ServingContainer]) -> list[float]:
    """A multi-model endpoint (SAGEMAKER_MULTI_MODEL=true, 2 workers) with ``count`` copies of the model under
    /opt/ml/models: the milliseconds of each ``POST /models`` (a new name each time) until its 200."""
    models = work / "mme"
    for index in range(count):
        shutil.copytree(model_dir, models / f"model-{index}")
    for path in [models, *models.rglob("*")]:  # request workers run as an unprivileged user
        path.chmod(0o755 if path.is_dir() else 0o644)
    container, _, _ = start_container(client, image, None, containers, env={"SAGEMAKER_MULTI_MODEL": "true"},
                                      volumes={str(models): {"bind": MME_ROOT, "mode": "ro"}})
    times = []
    with requests.Session() as session:
        for index in range(count):
            begin = time.perf_counter()
            answer = session.post(f"{container.url}/models", timeout=60,
                                  json={"model_name": f"model-{index}", "url": f"{MME_ROOT}/model-{index}"})
            times.append((time.perf_counter() - begin) * 1e3)
            if answer.status_code != 200:
                raise RuntimeError(f"POST /models answered {answer.status_code}: {answer.text}\n"
                                   f"{container.logs()[-3000:]}")
            print(f"    POST /models model-{index}: 200 after {times[-1]:.1f} ms", flush=True)
        scores = session.post(f"{container.url}/models/model-{count - 1}/invoke", data=batch.body, timeout=30,
                              headers={"Content-Type": batch.content_type, "Accept": "text/csv"})
        scores.raise_for_status()
        print(f"    model-{count - 1}'s scores (100 rows) vs the single-model image's: "
              f"{same_output(reference, scores.content)}")
    container.remove()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = image_bench.parser(__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="training rows (default 20000)")
    parser.add_argument("--models", type=int, default=5, help="model names loaded in the multi-model endpoint "
                        "(default 5)")
    args = parser.parse_args(argv)

    with ImageBench("xgboost") as bench:
        client, image = bench.client, bench.image
        step(f"training {image} on {args.rows} x {FEATURES} synthetic rows, "
             f"{' '.join(f'{k}={v}' for k, v in HYPERPARAMETERS.items())} (docker run {image} train)")
        model_dir = bench.train_on_rows(HYPERPARAMETERS, *make_rows(args.rows, seed=42))
        if model_dir is None:
            return 1
        model_file = model_dir / MODEL_FILE
        booster_ms, classifier_ms, trees = time_in_process(model_file)
        size_kb = model_file.stat().st_size / 1e3
        print(f": {MODEL_FILE} {size_kb:.0f} kB, {trees} trees; "
              f"in-process load median {statistics.median(booster_ms):.1f} ms (Booster), "
              f"{statistics.median(classifier_ms):.1f} ms (XGBClassifier)")

        live, _ = make_rows(BATCH, seed=7)
        single = Payload(csv_body(live[:1]), "text/csv", "text/csv", records=1)
        batch = Payload(csv_body(live), "text/csv", "text/csv", records=BATCH)
        print(f"    single-row body {len(single.body)} B, {BATCH}-row body {len(batch.body)} B")

        starts = time_starts(client, image, model_dir, bench.containers, args.starts)
        image_results, reference = measure_image(IMAGE, client, image, model_dir, bench.containers, single, batch,
                                                 args)
        bench.results += image_results

        step(f"multi-model endpoint: POST /models of the {trees}-tree model under {args.models} names")
        loads = time_model_loads(client, image, model_dir, bench.work, args.models, batch, reference,
                                 bench.containers)
        bench.measure_ceiling(CEILING, single, batch, args)

        threads = max(1, (os.cpu_count() or 1) // WORKERS)
        step(f"{PLAIN}: pandas.read_csv + XGBClassifier.predict_proba per request, {WORKERS} sync workers, "
             f"n_jobs={threads} (the image's share)")
        env = {"BENCH_MODEL_FILE": str(model_file), "BENCH_THREADS": str(threads)}
        bench.servers.append(plain := flask_server(bench.work, "flask_apps:xgboost_app()", workers=WORKERS,
                                                   name=PLAIN, env=env))
        bench.results += measure_baseline(PLAIN, plain, single, batch, reference, scores_compared,
                                          f"{BATCH} rows", args)

        report(bench.results, starts, bench.sizes(), image, args.rate, loads, booster_ms, classifier_ms, trees)
        bench.done()
        return 0


def scores_compared(ours: bytes, theirs: bytes) -> str:
    """"numerically equal" (np.allclose, same shape) or "DIFFERENT"; says when the bytes are identical too."""
    verdict = same_output(ours, theirs)
    return "numerically equal (identical bytes)" if verdict == "identical bytes" else verdict


def beside(results: Sequence[Result], mode: str, records: int, get: Callable[[Result], float | None],
           show: Callable[[float], str]) -> str:
    """The ceiling's and the flask baseline's figure, and the ratio image / flask, for a target line."""
    values = {target: get(result) if (result := find(results, target, mode, records)) else None
              for target in (IMAGE, CEILING, PLAIN)}
    cells = [f"{label} {'-' if values[target] is None else show(values[target])}"
             for label, target in (("ceiling", CEILING), ("flask", PLAIN))]
    return f"      beside: {', '.join(cells)}, image / flask {ratio(values[IMAGE], values[PLAIN])}"


def report(results: list[Result], starts: list[float], sizes: tuple[float | None, float | None], image: str,
           rate: float, loads: list[float], booster_ms: list[float], classifier_ms: list[float],
           trees: int) -> None:
    print(f"\nXGBoost image, {WORKERS} workers; text/csv in ({FEATURES} features, 1 or {BATCH} rows), text/csv out; "
          f"generator on the same 2 cores")
    print(table(result_headers(records=True), [result_row(result, records=True) for result in results]))
    print("  rec/s = rows/s. srv CPU for the image = container + docker: the container's process tree, and its")
    print("  shim + dockerd (shipping its stdout: failures only, the access log is off by default; dockerd counts any")
    print("  other docker work meanwhile). Host network: no docker-proxy. wrk latency is exact (1 us); httperf's")
    print("  comes from 1 ms bins (upper edge). flask sync has no paced row (a sync worker would sit blocked on")
    print("  wrk's idle connection).")

    rows = figure_rows(results, (IMAGE, CEILING, PLAIN), load_figures(rate, unit="row", batch=BATCH))
    rows.append([f"multi-model POST /models ms, median (max) of {len(loads)}",
                 f"{statistics.median(loads):.1f} ({max(loads):.1f})", "-", "-", "-"])
    rows.append([f"model file alone, in-process load ms, median (max) of {len(booster_ms)}",
                 f"{statistics.median(booster_ms):.1f} ({max(booster_ms):.1f})", "-",
                 f"{statistics.median(classifier_ms):.1f} ({max(classifier_ms):.1f})", "-"])
    rows += start_and_size_rows(starts, sizes, 5)
    base_mb = sizes[1]
    print(f"\nSummary ({image}; {trees} trees; base {BASE_IMAGE} {f'{base_mb:.0f} MB' if base_mb else 'not found'})")
    print(table(["figure", "image", "empty-handler ceiling", "XGBClassifier flask", "image / flask"], rows))
    print("  in-process load: image column Booster.load_model from the file's bytes (what the image's load does),")
    print("  flask column XGBClassifier().load_model (the baseline's load); both in this process, no HTTP.")

    print("\nIssue targets (printed, not asserted)")
    rps_fmt = "{:.0f}".format

    def single(mode: str) -> str:
        if mode == "closed":
            return beside(results, mode, 1, lambda r: r.rps, rps_fmt)
        return beside(results, mode, 1, lambda r: r.p99_ms, fmt_ms)

    print("\n".join(target_lines(results, IMAGE, rate, rps=TARGET_RPS, p99_ms=TARGET_P99_MS, unit="row",
                                 beside=single)))
    batched = find(results, IMAGE, "closed", BATCH)
    if batched:
        print(f"  {BATCH}-row requests >= {TARGET_ROWS_PER_S} rows/s closed loop: {batched.records_per_s:.0f} rows/s "
              f"({batched.rps:.0f} req/s) ({verdict(batched.records_per_s >= TARGET_ROWS_PER_S)})")
        print(beside(results, "closed", BATCH, lambda r: r.records_per_s, rps_fmt))
    print(f"  model load in a multi-model endpoint <= {TARGET_LOAD_MS:g} ms ({trees}-tree model, POST /models, "
          f"{len(loads)} names): median {statistics.median(loads):.1f} ms, max {max(loads):.1f} ms "
          f"({', '.join(f'{ms:.1f}' for ms in loads)}) ({verdict(max(loads) <= TARGET_LOAD_MS)})")
    print(f"      the model file alone, in-process: Booster.load_model median {statistics.median(booster_ms):.1f} ms, "
          f"XGBClassifier().load_model median {statistics.median(classifier_ms):.1f} ms")
    print("\n".join(start_and_size_lines(starts, sizes, start_s=TARGET_START_S, image_mb=TARGET_IMAGE_MB)))


if __name__ == "__main__":
    sys.exit(main())
