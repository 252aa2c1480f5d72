"""The PyTorch image under load, beside the empty-handler ceiling of the same stack and TorchServe configured
as AWS's PyTorch inference toolkit configures it (the stack of SageMaker's own PyTorch images), or flask +
torch when TorchServe cannot run here; plus container start time and image size.

Steps: make 20000 synthetic rows of 30 numeric features, train the image through its real ``train`` entry
(the example MLP: 30 inputs, 64 hidden, 1 output, saved as TorchScript), time ``serve`` to the first 200 on
/ping, serve it with 2 workers on the host network and load it (single-row and 100-row JSON lists of rows,
Accept text/csv) closed loop with wrk, paced with wrk's ``delay()`` and open loop with httperf. Then the same model
under TorchServe: ``torch-model-archiver --handler sagemaker_pytorch_serving_container.handler_service
--extra-files MODEL_DIR`` and the toolkit's ``default-ts.properties`` plus the settings its ``torchserve.py``
adds (workers per model, response timeout, addresses), run with Debian's Java 17. Prints figures; asserts
nothing.

    .venv/bin/python bench/pytorch_image.py [--duration 5] [--rate 1000] [--starts 5] [--rows 20000]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import image_bench
import numpy as np
import requests
from http_stack import flask_server
from image_bench import ImageBench
from loadgen import (
    BASE_IMAGE,
    Payload,
    Result,
    Server,
    figure_rows,
    find,
    load_figures,
    measure_baseline,
    measure_image,
    ratio,
    result_headers,
    result_row,
    same_output,
    start_and_size_rows,
    step,
    table,
    target_lines,
    time_starts,
    verdict,
)

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import free_port

FEATURES = 30
HYPERPARAMETERS = {"epochs": 5, "hidden": 64}
BATCH = 100
WORKERS = 2  # loadgen.SERVE_ENV's SAGEMAKER_MODEL_SERVER_WORKERS; TorchServe's default_workers_per_model
IMAGE = "image: pytorch"
CEILING = "ours, empty handler (host)"
TORCHSERVE = "TorchServe (AWS toolkit config)"
FLASK = "flask sync + torch"

# Issue targets (printed beside the figures, never asserted).
TARGET_RPS = 5000
TARGET_START_S = 3.0
TARGET_IMAGE_MB = 1300

# What sagemaker_pytorch_serving_container/torchserve.py writes: its default-ts.properties, then its settings.
# disable_token_authorization: TorchServe >= 0.11 wants a token otherwise; SageMaker's images turn it off too.
# decode_input_request=false: the toolkit's handler decodes the body itself (it fails on TorchServe's str).
# The metrics and gRPC ports are free ports here, so that nothing else on the machine collides with them.
TS_CONFIG = """enable_envvars_config=true
load_models=ALL
default_response_timeout=60
default_workers_per_model={workers}
inference_address=http://127.0.0.1:{port}
management_address=http://127.0.0.1:{management_port}
disable_token_authorization=true
decode_input_request=false
metrics_address=http://127.0.0.1:{metrics_port}
grpc_inference_port={grpc_port}
grpc_management_port={grpc_management_port}
"""


def make_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels): standard normal features, a binary label from a noisy logit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    logit = x[:, 0] + x[:, 1] * x[:, 2] - np.abs(x[:, 3]) + 0.5 * x[:, 5:10].sum(axis=1)
    return x, (logit + rng.logistic(size=rows) > 0).astype(int)


def json_body(rows: np.ndarray) -> bytes:
    """Rows as a JSON request body, a list of rows (6 significant digits).

    JSON, not CSV: AWS's toolkit reads a one-row CSV body as a 1-D array (``np.genfromtxt``), so a model
    whose output drops the last axis returns a 0-d tensor its CSV encoder cannot write (500); a list of
    rows is 2-D for both servers."""
    return ("[" + ",".join("[" + ",".join(f"{value:.6g}" for value in row) + "]" for row in rows.tolist())
            + "]").encode()


class TorchServe(Server):
    """TorchServe answers /ping before its Python workers have loaded the model: ready means a first answer."""

    def start(self, timeout: float = 120.0) -> float:
        began = time.monotonic()
        super().start(timeout)
        while time.monotonic() - began < timeout:
            with contextlib.suppress(requests.RequestException):
                if requests.post(f"{self.url}/invocations", data=json_body(np.zeros((1, FEATURES))), timeout=5,
                                 headers={"Content-Type": "application/json", "Accept": "text/csv"}).status_code == 200:
                    return time.monotonic() - began
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} never answered an invocation:\n{self.log_tail()}")


def torchserve_server(work: Path, model_dir: Path) -> Server | str:
    """TorchServe serving the model as the AWS toolkit sets it up, or why it cannot run here."""
    venv_bin = Path(sys.executable).parent
    missing = [tool for tool in ("torchserve", "torch-model-archiver") if not (venv_bin / tool).exists()]
    if missing or shutil.which("java") is None:
        return f"not installed: {', '.join(missing or ['java (openjdk-17-jre-headless)'])}"
    store = work / "torchserve-store"
    store.mkdir()
    # The toolkit names its handler module; this archiver version wants the module's file.
    import sagemaker_pytorch_serving_container.handler_service as handler_service
    subprocess.run([str(venv_bin / "torch-model-archiver"), "--model-name", "model", "--version", "1",
                    "--handler", str(handler_service.__file__),
                    "--extra-files", str(model_dir), "--export-path", str(store)], check=True)
    ports = {name: free_port() for name in ("port", "management_port", "metrics_port", "grpc_port",
                                            "grpc_management_port")}
    config = work / "ts.properties"
    config.write_text(TS_CONFIG.format(workers=WORKERS, **ports))
    log_config = Path(handler_service.__file__).parent / "etc" / "log4j2.xml"  # the toolkit's --log-config
    argv = [str(venv_bin / "torchserve"), "--start", "--foreground", "--ncs", "--model-store", str(store),
            "--ts-config", str(config), "--log-config", str(log_config), "--models", "model.mar"]
    env = {"PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1)
                                                                                        // WORKERS))}
    return TorchServe(TORCHSERVE, argv, ports["port"], work, env=env, cwd=work)


def main(argv: list[str] | None = None) -> int:
    parser = image_bench.parser(__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="training rows (default 20000)")
    parser.add_argument("--flask", action="store_true", help="compare with flask + torch instead of TorchServe")
    args = parser.parse_args(argv)

    with ImageBench("pytorch") as bench:
        client, image = bench.client, bench.image
        step(f"training {image} on {args.rows} x {FEATURES} synthetic rows, the example MLP "
             f"({' '.join(f'{k}={v}' for k, v in HYPERPARAMETERS.items())}) (docker run {image} train)")
        model_dir = bench.train_on_rows(HYPERPARAMETERS, *make_rows(args.rows, seed=42))
        if model_dir is None:
            return 1
        print(f": model.pt {(model_dir / 'model.pt').stat().st_size / 1e3:.0f} kB")

        live, _ = make_rows(BATCH, seed=7)
        single = Payload(json_body(live[:1]), "application/json", "text/csv", records=1)
        batch = Payload(json_body(live), "application/json", "text/csv", records=BATCH)

        starts = time_starts(client, image, model_dir, bench.containers, args.starts)
        image_results, reference = measure_image(IMAGE, client, image, model_dir, bench.containers, single, batch,
                                                 args)
        bench.results += image_results
        bench.measure_ceiling(CEILING, single, batch, args)

        baseline = torchserve_server(bench.work, model_dir) if not args.flask else "--flask given"
        if isinstance(baseline, str):
            step(f"{FLASK} (TorchServe: {baseline}): torch.jit.load, pandas-free CSV parse, {WORKERS} sync workers")
            env = {"BENCH_MODEL_DIR": str(model_dir), "BENCH_THREADS": str(max(1, (os.cpu_count() or 1) // WORKERS))}
            baseline = flask_server(bench.work, "flask_apps:torch_app()", workers=WORKERS, name=FLASK, env=env)
        else:
            step(f"{TORCHSERVE}: {WORKERS} workers per model, handler sagemaker_pytorch_serving_container")
        bench.servers.append(baseline)
        bench.results += measure_baseline(baseline.name, baseline, single, batch, reference, same_output,
                                          f"{BATCH} rows", args)

        report(bench.results, starts, bench.sizes(), image, args.rate, baseline.name)
        bench.done()
        return 0


def report(results: list[Result], starts: list[float], sizes: tuple[float | None, float | None], image: str,
           rate: float, baseline: str) -> None:
    print(f"\nPyTorch image, {WORKERS} workers; application/json in ({FEATURES} features, 1 or {BATCH} rows), "
          "text/csv out; generator on the same 2 cores")
    print(table(result_headers(records=True), [result_row(result, records=True) for result in results]))
    rows = figure_rows(results, (IMAGE, CEILING, baseline), load_figures(rate, unit="row", batch=BATCH))
    rows += start_and_size_rows(starts, sizes, 5)
    base_mb = sizes[1]
    print(f"\nSummary ({image}; MLP {FEATURES}-64-1 TorchScript; base {BASE_IMAGE} "
          f"{f'{base_mb:.0f} MB' if base_mb else 'not found'})")
    print(table(["figure", "image", "empty-handler ceiling", baseline, f"image / {baseline}"], rows))

    print("\nIssue targets (printed, not asserted)")
    print("\n".join(target_lines(results, IMAGE, rate, rps=TARGET_RPS, p99_ms=5.0, unit="row")))
    closed = [find(results, name, "closed", 1) for name in (IMAGE, baseline)]
    if all(closed):
        print(f"      beside {baseline}: {closed[1].rps:.0f} req/s, image / it {ratio(closed[0].rps, closed[1].rps)}")
    batched = [find(results, name, "closed", BATCH) for name in (IMAGE, baseline)]
    if batched[0]:
        print(f"  {BATCH}-row requests: {batched[0].records_per_s:.0f} rows/s closed loop"
              + (f"; {baseline} {batched[1].records_per_s:.0f} rows/s, image / it "
                 f"{ratio(batched[0].records_per_s, batched[1].records_per_s)}" if batched[1] else ""))
    print(f"  start to first /ping <= {TARGET_START_S:g} s: max {max(starts):.2f} s "
          f"({verdict(max(starts) <= TARGET_START_S)})")
    if sizes[0]:
        print(f"  image <= {TARGET_IMAGE_MB} MB: {sizes[0]:.0f} MB ({verdict(sizes[0] <= TARGET_IMAGE_MB)})")


if __name__ == "__main__":
    sys.exit(main())
