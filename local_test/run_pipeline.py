"""The main job, end to end on this machine, through the SageMaker Python SDK's local mode (offline):

 1. make a synthetic deferred-payment order dataset (nested JSON, missing values, a default label);
 2. fit the preprocess image on the training orders (Estimator.fit);
 3. batch transform the training and validation orders into labelled features (Transformer.transform);
 4. train XGBoost, "last week's" model (Estimator.fit, with the preprocess model's features.json);
 5. deploy the two-container pipeline (PipelineModel.deploy) and send live JSON orders to its one port;
 6. batch transform the held-out orders through the pipeline (PipelineModel.transformer);
 7. train "this week's" XGBoost model and score the same held-out orders through its pipeline;
 8. train the PyTorch image in script mode (the example MLP, containers/pytorch/examples/mlp/train.py) on the
    same features and score the same held-out orders through the pipeline preprocess -> pytorch;
 9. write the comparison report (HTML with plots + JSON) of this week's XGBoost vs last week's, and of PyTorch
    vs this week's XGBoost, with every model's scores per order id (out/scores/, for ``smkit-report``).

    .venv/bin/python -m local_test.run_pipeline [--out out/] [--orders 20000]     (./run.sh runs it)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import requests

from local_test.orders import make_orders, write_jsonl
from local_test.sagemaker_local import offline_environment

offline_environment()  # before the SDK and boto3 are imported
logging.getLogger("sagemaker").setLevel(logging.ERROR)  # its notices would drown the steps

from sagemaker.model import Model  # noqa: E402
from sagemaker.pipeline import PipelineModel  # noqa: E402

from local_test import sdk_flows  # noqa: E402
from local_test.docker_run import PREFIX, ROOT, VERSION  # noqa: E402
from local_test.pipeline import PipelineSession  # noqa: E402
from smkit_report import compare, write_report  # noqa: E402

PREPROCESS = f"{PREFIX}preprocess:{VERSION}"
XGBOOST = f"{PREFIX}xgboost:{VERSION}"
PYTORCH = f"{PREFIX}pytorch:{VERSION}"
MLP_SCRIPT = ROOT / "containers" / "pytorch" / "examples" / "mlp" / "train.py"  # the researchers' example
MLP_HYPERPARAMETERS = {"epochs": "25", "hidden": "64", "learning_rate": "0.003", "batch_size": "256"}
# One torch thread: batches of 256 rows through a 64-unit MLP are too small to share, and two threads on a busy
# 2-core machine made an epoch 1-4 s instead of 0.2 s (measured in the image, 12,000 rows).
MLP_ENVIRONMENT = {"OMP_NUM_THREADS": "1"}
# The report's model names, and the pairs it compares (old, new); the first pair is the headline.
LAST_WEEK, THIS_WEEK, TORCH = "XGBoost last week", "XGBoost this week", "PyTorch MLP"
PAIRS = [(LAST_WEEK, THIS_WEEK), (THIS_WEEK, TORCH)]
# Two model versions to compare: last week's quick model and this week's tuned one.
VERSIONS = {
    "last week": {"num_round": "10", "max_depth": "1", "eta": "0.3"},
    "this week": {"num_round": "400", "max_depth": "4", "eta": "0.05", "subsample": "0.8",
                  "min_child_weight": "5", "early_stopping_rounds": "30"},
}
COMMON = {"objective": "binary:logistic", "eval_metric": "auc,logloss"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hold back what the SDK streams (every container log line) unless the step fails."""
    held = io.StringIO()
    try:
        with contextlib.redirect_stdout(held):
            yield
    except BaseException:
        sys.stdout.write(held.getvalue()[-20000:])
        raise


class Progress:
    """Numbered steps with their durations, printed as they happen."""

    def __init__(self, total: int) -> None:
        self.total, self.number, self.started = total, 0, time.monotonic()
        self.step_started = self.started

    def step(self, text: str) -> None:
        self.done()
        self.number += 1
        self.step_started = time.monotonic()
        print(f"\n[{self.number}/{self.total}] {text}", flush=True)

    def done(self) -> None:
        if self.number:
            print(f"      ({time.monotonic() - self.step_started:.1f} s)", flush=True)

    def say(self, text: str) -> None:
        print(f"      {text}", flush=True)


def _labels_and_orders(path: Path, orders: list[dict]) -> np.ndarray:
    """Write the orders without their label (as a caller sends them); return the labels."""
    write_jsonl([{k: v for k, v in order.items() if k != "default"} for order in orders], path)
    return np.array([order["default"] for order in orders], dtype=float)


def _scores(output_dir: Path) -> np.ndarray:
    return np.array([row[0] for row in sdk_flows.read_csv_rows(sdk_flows.transform_output(output_dir))])


def _pipeline(session: PipelineSession, pre_model: str, model: str, image: str = XGBOOST) -> PipelineModel:
    return PipelineModel(
        models=[Model(image_uri=PREPROCESS, model_data=pre_model, sagemaker_session=session),
                Model(image_uri=image, model_data=model, sagemaker_session=session)],
        sagemaker_session=session)


def _slug(name: str) -> str:
    return name.lower().replace(" ", "_")


def _write_scores(out: Path, order_ids: list[str], labels: np.ndarray, scores: dict[str, np.ndarray]) -> Path:
    """``out/scores/labels.csv`` (order_id,default) and one ``<model>.csv`` (order_id,score) per model: what
    ``smkit-report compare`` reads to redo or extend the comparison."""
    folder = out / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    columns = {"labels": ("default", labels.astype(int)), **{_slug(name): ("score", s) for name, s in scores.items()}}
    for stem, (header, values) in columns.items():
        with open(folder / f"{stem}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["order_id", header])
            writer.writerows(zip(order_ids, (repr(v.item()) for v in values), strict=True))
    return folder


def _score_through_pipeline(session: PipelineSession, pipeline: PipelineModel, data: Path, out: Path) -> np.ndarray:
    transformer = pipeline.transformer(instance_count=1, instance_type="local", output_path=sdk_flows.file_uri(out),
                                       accept="text/csv", assemble_with="Line", strategy="MultiRecord",
                                       max_payload=6)
    with quiet():
        transformer.transform(sdk_flows.file_uri(data), content_type="application/jsonlines", split_type="Line")
    return _scores(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the report goes (default out/)")
    parser.add_argument("--orders", type=int, default=20000, help="orders to generate (default 20000)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, models)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress = Progress(9)
    work = Path(tempfile.mkdtemp(prefix="smkit-pipeline-"))
    try:
        with PipelineSession(root=work / "sdk") as session:
            progress.step(f"making {args.orders} synthetic orders (nested JSON, missing values, default label)")
            orders = make_orders(args.orders, seed=42)
            cut_train, cut_valid = int(0.6 * len(orders)), int(0.8 * len(orders))
            train, valid, test = orders[:cut_train], orders[cut_train:cut_valid], orders[cut_valid:]
            data = work / "data"
            write_jsonl(train, data / "train" / "orders.jsonl")
            write_jsonl(valid, data / "valid" / "orders.jsonl")
            labels = _labels_and_orders(data / "test" / "orders.jsonl", test)
            progress.say(f"{len(train)} train, {len(valid)} validation, {len(test)} held-out orders; "
                         f"default rate {np.mean([o['default'] for o in orders]):.1%}")
            progress.say("example: " + json.dumps(orders[0])[:150] + " ...")

            progress.step(f"fitting the preprocess image ({PREPROCESS}) with Estimator.fit")
            with quiet():
                pre_model = sdk_flows.fit(session, PREPROCESS, {"label": "default", "drop": "order_id"},
                                          {"train": data / "train"}, content_types={"train": "application/jsonlines"})
            features_dir = sdk_flows.extract_model(pre_model, work / "preprocess-model")
            features = json.loads((features_dir / "features.json").read_text())
            progress.say(f"{len(features['input_columns'])} fields -> {len(features['output_columns'])} features, "
                         f"fingerprint {features['fingerprint'][:12]}")

            progress.step("batch transform of the train and validation orders into labelled features")
            labelled = {}
            for name in ("train", "valid"):
                with quiet():
                    out = sdk_flows.transform(session, PREPROCESS, pre_model, data / name, work / f"features-{name}",
                                              "application/jsonlines", "text/csv", env={"SMKIT_OUTPUT_LABEL": "true"})
                labelled[name] = out
                rows = sdk_flows.read_csv_rows(sdk_flows.transform_output(out))
                progress.say(f"{name}: {len(rows)} rows of label + {len(rows[0]) - 1} features")
            (work / "features").mkdir()
            shutil.copy(features_dir / "features.json", work / "features" / "features.json")

            progress.step(f"training XGBoost, last week's model: {VERSIONS['last week']}")
            models = {"last week": _fit_xgboost(session, VERSIONS["last week"], labelled, work)}

            progress.step("deploying the pipeline preprocess -> xgboost and sending live orders to its one port")
            pipeline = _pipeline(session, pre_model, models["last week"])
            with quiet():
                pipeline.deploy(initial_instance_count=1, instance_type="local", endpoint_name="risk-score")
            url = session.endpoint_url("risk-score")
            progress.say(f"endpoint risk-score answers on {url}/invocations (curl or wrk work too)")
            live = [{k: v for k, v in order.items() if k != "default"} for order in test[:3]]
            response = requests.post(f"{url}/invocations", data=json.dumps(live),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"},
                                     timeout=30)
            response.raise_for_status()
            for order, prediction in zip(live, response.json()["predictions"], strict=True):
                progress.say(f"order {order['order_id']} amount {order['amount']:>8} "
                             f"{order['customer']['country']} {order['payment']['method']:<13} "
                             f"-> default risk {prediction['score']:.3f}")
            bad = requests.post(f"{url}/invocations", data=json.dumps({**live[0], "amount": "lots"}),
                                headers={"Content-Type": "application/json"}, timeout=30)
            progress.say(f"a broken order: {bad.status_code} from stage {bad.headers.get('X-Pipeline-Stage')}: "
                         f"{bad.json()['message']}")
            session.delete_endpoint("risk-score")

            progress.step("batch transform of the held-out orders through the pipeline (last week's model)")
            scores = {LAST_WEEK: _score_through_pipeline(session, pipeline, data / "test", work / "scores-v1")}
            progress.say(f"{len(scores[LAST_WEEK])} scores, mean {scores[LAST_WEEK].mean():.3f}")

            progress.step(f"training this week's model {VERSIONS['this week']}, scoring the same held-out orders")
            models["this week"] = _fit_xgboost(session, VERSIONS["this week"], labelled, work)
            scores[THIS_WEEK] = _score_through_pipeline(
                session, _pipeline(session, pre_model, models["this week"]), data / "test", work / "scores-v2")

            progress.step(f"training PyTorch in script mode on the same features ({MLP_SCRIPT.relative_to(ROOT)}, "
                          f"{MLP_HYPERPARAMETERS}), scoring the same held-out orders through preprocess -> pytorch")
            models["pytorch"] = _fit_pytorch(session, labelled, work)
            scores[TORCH] = _score_through_pipeline(
                session, _pipeline(session, pre_model, models["pytorch"], PYTORCH), data / "test", work / "scores-pt")
            progress.say(f"{len(scores[TORCH])} scores, mean {scores[TORCH].mean():.3f}")

            progress.step("comparing the models on the same held-out orders: this week vs last week, "
                          "PyTorch vs XGBoost")
            result = compare(labels, scores, pairs=PAIRS)
            html, numbers = write_report(
                result, args.out, title="Default risk: this week's model vs last week's, PyTorch vs XGBoost",
                description=f"{len(labels)} held-out synthetic orders, each model scored through the local "
                            "pipeline preprocess -> model")
            scores_dir = _write_scores(args.out, [order["order_id"] for order in test], labels, scores)
            for pair in result["comparisons"]:
                progress.say(pair["verdict"]["sentence"])
            progress.say(f"report: {html}  numbers: {numbers}  scores per order: {scores_dir}/")
            progress.done()
        print(f"\ndone in {time.monotonic() - progress.started:.0f} s")
        return 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _fit_xgboost(session: PipelineSession, hyperparameters: dict[str, str], labelled: dict[str, Path],
                 work: Path) -> str:
    started = time.monotonic()
    with quiet():
        model = sdk_flows.fit(session, XGBOOST, {**COMMON, **hyperparameters},
                              {"train": labelled["train"], "validation": labelled["valid"],
                               "features": work / "features"},
                              content_types={"train": "text/csv", "validation": "text/csv",
                                             "features": "application/json"})
    meta = json.loads((sdk_flows.extract_model(model, work / f"xgb-{time.monotonic_ns()}") /
                       "xgboost-meta.json").read_text())
    print(f"      {meta['rounds']} rounds on {meta['num_features']} features "
          f"({time.monotonic() - started:.1f} s)", flush=True)
    return model


def _fit_pytorch(session: PipelineSession, labelled: dict[str, Path], work: Path) -> str:
    """The researchers' script in the PyTorch image (SDK script mode: Estimator(entry_point=..., source_dir=...))."""
    started = time.monotonic()
    with quiet():
        model = sdk_flows.fit(session, PYTORCH, MLP_HYPERPARAMETERS,
                              {"train": labelled["train"], "validation": labelled["valid"],
                               "features": work / "features"},
                              content_types={"train": "text/csv", "validation": "text/csv",
                                             "features": "application/json"},
                              entry_point=MLP_SCRIPT.name, source_dir=MLP_SCRIPT.parent, environment=MLP_ENVIRONMENT,
                              required_files=("model.pt", "pytorch-meta.json"))
    meta = json.loads((sdk_flows.extract_model(model, work / "pytorch-model") / "pytorch-meta.json").read_text())
    print(f"      TorchScript model.pt: {meta['num_features']} inputs, torch {meta['torch_version']}, features "
          f"fingerprint {(meta['features_fingerprint'] or 'none')[:12]} ({time.monotonic() - started:.1f} s)",
          flush=True)
    return model


if __name__ == "__main__":
    sys.exit(main())
