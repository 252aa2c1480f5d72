"""The preprocess image under load, beside the empty-handler ceiling of the same stack and the plain
scikit-learn/pandas path (flask + gunicorn sync), plus container start time and image size.

Steps: make 5000 synthetic orders, train the image through its real ``train`` entry, time ``serve`` to
the first 200 on /ping (5 starts), serve it with 2 workers and load it (single-record and 100-record
JSON, Accept text/csv) closed loop with wrk, paced at ~1000 req/s with wrk's ``delay()`` and open loop
at 1000 req/s with httperf. Prints figures; asserts nothing.

    .venv/bin/python bench/preprocess_image.py [--duration 5] [--rate 1000] [--starts 5]
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import image_bench
from http_stack import flask_server
from image_bench import ImageBench
from loadgen import (
    BASE_IMAGE,
    ROOT,
    Payload,
    Result,
    figure_rows,
    load_figures,
    measure_baseline,
    measure_image,
    result_headers,
    result_row,
    same_output,
    start_and_size_lines,
    start_and_size_rows,
    step,
    table,
    target_lines,
    time_starts,
)

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import OptMl
from local_test.orders import make_orders, write_jsonl

IMAGE_CODE = "/opt/program"  # where the image holds preprocess_container
IMAGE = "image: preprocess"
CEILING = "ours, empty handler (host)"
SKLEARN = "flask sync + sklearn/pandas"

# Issue targets (printed beside the figures, never asserted).
TARGET_RPS = 3000
TARGET_P99_MS = 5.0
TARGET_START_S = 2.0
TARGET_IMAGE_MB = 250


def package_digest(directory: Path) -> str:
    """sha256 over the relative paths and contents of the ``.py`` files under ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def preprocess_code(client: Any, image: str, work: Path) -> Path:
    """The directory to import ``preprocess_container`` from for the scikit-learn baseline: the source tree
    (containers/preprocess) when it matches the image's copy, else the image's copy, which matches the model
    the image trained (the source may be ahead of the last build)."""
    source = ROOT / "containers" / "preprocess"
    copied = work / "image-code"
    container = client.containers.create(image, ["hyperparameters"])
    try:
        stream, _ = container.get_archive(f"{IMAGE_CODE}/preprocess_container")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            tar.extractall(copied, filter="data")
    finally:
        container.remove(force=True)
    if package_digest(source / "preprocess_container") == package_digest(copied / "preprocess_container"):
        return source
    print("    NOTE: containers/preprocess differs from the image's copy (rebuild: ./build.sh preprocess); the")
    print(f"    scikit-learn baseline imports the image's copy ({IMAGE_CODE}) so that it reads the model it trained")
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = image_bench.parser(__doc__)
    parser.add_argument("--orders", type=int, default=5000, help="training orders (default 5000)")
    args = parser.parse_args(argv)

    with ImageBench("preprocess") as bench:
        client, image = bench.client, bench.image
        step(f"training {image} on {args.orders} synthetic orders (docker run {image} train)")
        opt_ml = OptMl(bench.work / "opt_ml", {"label": "default", "drop": "order_id"},
                       {"train": {"ContentType": "application/jsonlines"}})
        write_jsonl(make_orders(args.orders, seed=42), opt_ml.channel_dir("train") / "orders.jsonl")
        if not bench.train(opt_ml):
            return 1
        model_dir = opt_ml.model_dir
        features = json.loads((model_dir / "features.json").read_text())
        print(f"    {len(features['input_columns'])} fields -> {len(features['output_columns'])} features")

        live = make_orders(100, seed=7)
        for order in live:
            order.pop("default")
        single = Payload(json.dumps(live[0]).encode(), "application/json", "text/csv", records=1)
        batch = Payload(json.dumps(live).encode(), "application/json", "text/csv", records=100)
        print(f"    single-record body {len(single.body)} B, 100-record body {len(batch.body)} B")

        starts = time_starts(client, image, model_dir, bench.containers, args.starts)
        image_results, reference = measure_image(IMAGE, client, image, model_dir, bench.containers, single, batch,
                                                 args)
        bench.results += image_results
        bench.measure_ceiling(CEILING, single, batch, args)

        step(f"{SKLEARN}: FittedFeatures.load + transform_records_sklearn per request, 2 sync workers")
        env = {"BENCH_MODEL_DIR": str(model_dir),
               "BENCH_PREPROCESS_CODE": str(preprocess_code(client, image, bench.work))}
        bench.servers.append(plain := flask_server(bench.work, "flask_apps:preprocess_app()", name=SKLEARN, env=env))
        bench.results += measure_baseline(SKLEARN, plain, single, batch, reference, same_output, "100 records", args)

        report(bench.results, starts, bench.sizes(), image, args.rate)
        bench.done()
        return 0


def report(results: list[Result], starts: list[float], sizes: tuple[float | None, float | None], image: str,
           rate: float) -> None:
    print("\nPreprocess image, 2 workers; JSON in (1 or 100 orders), text/csv out; generator on the same 2 cores")
    print(table(result_headers(records=True), [result_row(result, records=True) for result in results]))
    print("  srv CPU for the image = container + proxy + docker: the container's process tree, the docker-proxy of")
    print("  its published port (SageMaker has none), and the container's shim + dockerd (shipping its stdout, one")
    print("  log line per failed request: the access log is off by default; dockerd also counts other docker work).")
    print("  wrk latency is exact (1 us); httperf's comes from 1 ms bins (upper edge).")

    rows = figure_rows(results, (IMAGE, CEILING, SKLEARN), load_figures(rate))
    rows += start_and_size_rows(starts, sizes, 5)
    base_mb = sizes[1]
    print(f"\nSummary ({image}; base {BASE_IMAGE} {f'{base_mb:.0f} MB' if base_mb else 'not found'})")
    print(table(["figure", "image", "empty-handler ceiling", "sklearn/pandas flask", "image / flask"], rows))

    print("\nIssue targets (printed, not asserted)")
    for line in [*target_lines(results, IMAGE, rate, rps=TARGET_RPS, p99_ms=TARGET_P99_MS),
                 *start_and_size_lines(starts, sizes, start_s=TARGET_START_S, image_mb=TARGET_IMAGE_MB)]:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
