"""The local smoke run: train the preprocess image on synthetic orders, serve it, send orders, print features.

    .venv/bin/python -m local_test.smoke            (./run.sh does setup, build and this)

It drives the real images exactly as SageMaker does (`train` on an /opt/ml tree, `serve` on a port).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from local_test.docker_run import OptMl, ServingContainer, docker_client, ensure_image, train
from local_test.orders import make_orders, write_jsonl


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000, help="training orders to generate")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (model, data)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    client = docker_client()
    work = Path(tempfile.mkdtemp(prefix="smkit-smoke-"))
    try:
        step(f"making {args.orders} synthetic orders (nested JSON, missing values, default label)")
        orders = make_orders(args.orders, seed=42)
        opt_ml = OptMl(work / "opt_ml", {"label": "default", "drop": "order_id"},
                       {"train": {"ContentType": "application/jsonlines"}})
        write_jsonl(orders, opt_ml.channel_dir("train") / "orders.jsonl")
        print(f"    default rate {sum(o['default'] for o in orders) / len(orders):.1%}; example:")
        print("    " + json.dumps(orders[0]))

        image = ensure_image(client, "preprocess")
        step(f"training the feature transform: docker run {image} train")
        result = train(client, image, opt_ml)
        print("\n".join("    " + line for line in result.logs.splitlines() if "preprocess:" in line))
        if result.exit_code != 0:
            print(f"training failed ({result.exit_code}): {opt_ml.failure}\n{result.logs}", file=sys.stderr)
            return 1
        features = json.loads((opt_ml.model_dir / "features.json").read_text())
        print(f"    {len(features['input_columns'])} fields -> {len(features['output_columns'])} features, "
              f"fingerprint {features['fingerprint'][:16]}")

        step(f"serving it: docker run {image} serve (read-only root)")
        with ServingContainer(client, image, opt_ml.model_dir,
                              env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}) as server:
            print(f"    /ping answered 200 after {server.wait_ready():.2f} s at {server.url}")
            live = make_orders(3, seed=7)
            for order in live:
                order.pop("default")
            step("POST /invocations with 3 live orders (application/json -> text/csv)")
            response = server.invoke(json.dumps(live).encode(), "application/json")
            print(f"    {response.status_code} {response.headers['Content-Type']}")
            for line in response.text.splitlines():
                print("    " + line[:110] + (" ..." if len(line) > 110 else ""))
            step("a record that cannot be interpreted gets a clear 400")
            bad = server.invoke(json.dumps({**live[0], "amount": "lots"}).encode(), "application/json")
            print(f"    {bad.status_code} {bad.json()['message']}")
        print(f"\ndone in {time.monotonic() - started:.1f} s")
        return 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
