"""The SageMaker Python SDK 2.x in local mode against the real images, fully offline.

One preprocess model, its batch-transform output and one XGBoost model trained on it are shared by the
module (SDK flows: ``Estimator.fit``, ``Model.deploy``, ``Predictor.predict``, ``Transformer.transform``);
served numbers are compared with the same fitted transform and booster loaded in-process (1e-6). A guard
active for the whole module refuses and records any connection to a non-loopback address, any DNS
lookup of a non-local name, any botocore request and any telemetry call; the last test checks that
none happened.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import sys
import time
from pathlib import Path

import local_test.sagemaker_local  # noqa: F401  (first: the offline environment before the SDK's import)

# isort: split
import botocore.endpoint
import numpy as np
import pytest
import requests
import sagemaker.telemetry.telemetry_logging as telemetry_logging
import xgboost
from botocore.exceptions import ClientError

from local_test.docker_run import ROOT
from local_test.orders import make_orders, write_jsonl
from local_test.sagemaker_local import OfflineViolation, endpoint, offline_local_mode, sdk_containers
from local_test.sdk_flows import (
    TrainingFailed,
    deploy,
    extract_model,
    fit,
    model_files,
    predict,
    read_csv_rows,
    transform,
    transform_output,
)

sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
from preprocess_container.features import FittedFeatures

PREPROCESS_HP = {"label": "default", "drop": "order_id"}
XGBOOST_HP = {"num_round": "20", "objective": "binary:logistic", "eval_metric": "auc", "max_depth": "4"}
JSONL = "application/jsonlines"
CSV = "text/csv"


class NetworkGuard:
    """Refuses (and records) what would leave the machine; lets loopback and the Docker socket through."""

    def __init__(self) -> None:
        self.connections: list[object] = []
        self.lookups: list[object] = []
        self.aws_requests: list[str] = []
        self.telemetry_calls: list[tuple] = []

    @staticmethod
    def _local(host: object) -> bool:
        if host in (None, "localhost", b"localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_connect, real_connect_ex, real_getaddrinfo = (
            socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
        guard = self

        def allowed(sock: socket.socket, address: object) -> bool:
            if sock.family == socket.AF_UNIX or guard._local(address[0]):
                return True
            guard.connections.append(address)
            return False

        def connect(sock, address):
            if not allowed(sock, address):
                raise ConnectionRefusedError(f"network guard: refused a connection to {address}")
            return real_connect(sock, address)

        def connect_ex(sock, address):
            if not allowed(sock, address):
                raise ConnectionRefusedError(f"network guard: refused a connection to {address}")
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            literal = True
            try:
                ipaddress.ip_address(str(host).split("%")[0])
            except ValueError:
                literal = False
            if not (literal or guard._local(host)):  # an IP literal needs no DNS query
                guard.lookups.append(host)
                raise socket.gaierror(socket.EAI_NONAME, f"network guard: refused a DNS lookup of {host}")
            return real_getaddrinfo(host, *args, **kwargs)

        real_send = botocore.endpoint.Endpoint._send

        def send(endpoint_self, request):  # any boto3 session, not only ours
            guard.aws_requests.append(request.url)
            return real_send(endpoint_self, request)

        real_telemetry = telemetry_logging._send_telemetry_request

        def telemetry(*args, **kwargs):
            guard.telemetry_calls.append(args)
            return real_telemetry(*args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", send)
        monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", telemetry)

    def record_botocore(self, request, **_):  # a "before-send" hook: sees every request botocore builds
        self.aws_requests.append(request.url)


@pytest.fixture(scope="module", autouse=True)
def guard(docker):
    network_guard = NetworkGuard()
    with pytest.MonkeyPatch.context() as monkeypatch:
        network_guard.install(monkeypatch)
        yield network_guard


@pytest.fixture(scope="module")
def session(guard):
    with offline_local_mode() as local:
        local.boto_session.events.register_first("before-send", guard.record_botocore)
        yield local
    assert not local.root.exists()
    assert not sdk_containers(local.root)


@pytest.fixture(scope="module")
def train_orders():
    return make_orders(1500, seed=17)


@pytest.fixture(scope="module")
def preprocess_model(session, image_of, train_orders) -> str:
    train = write_jsonl(train_orders, session.root / "data" / "orders" / "orders.jsonl").parent
    model_data = fit(session, image_of("preprocess"), PREPROCESS_HP, {"train": train}, content_types={"train": JSONL},
                     required_files=("features.json",))
    assert model_data.startswith("file://") and model_data.endswith("/model.tar.gz")
    return model_data


@pytest.fixture(scope="module")
def preprocess_dir(session, preprocess_model) -> Path:
    return extract_model(preprocess_model, session.root / "reference" / "preprocess")


@pytest.fixture(scope="module")
def reference(preprocess_dir) -> FittedFeatures:
    """The same fitted transform in-process; its transform_*_sklearn methods are the reference."""
    return FittedFeatures.load(preprocess_dir)


@pytest.fixture(scope="module")
def preprocess_endpoint(session, image_of, preprocess_model):
    started = time.monotonic()
    predictor = deploy(session, image_of("preprocess"), preprocess_model,
                       env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": CSV})
    with endpoint(predictor):
        predictor.deploy_seconds = time.monotonic() - started
        yield predictor


@pytest.fixture(scope="module")
def labelled(session, image_of, preprocess_model, train_orders) -> Path:
    """The training orders through SDK batch transform with labels: XGBoost's training CSV."""
    source = write_jsonl(train_orders, session.root / "data" / "batch" / "orders.jsonl").parent
    return transform(session, image_of("preprocess"), preprocess_model, source, session.root / "labelled", JSONL, CSV,
                     env={"SMKIT_OUTPUT_LABEL": "true"})


@pytest.fixture(scope="module")
def xgboost_model(session, image_of, labelled, preprocess_dir) -> str:
    features = session.root / "data" / "features"
    features.mkdir(parents=True)
    shutil.copy(preprocess_dir / "features.json", features / "features.json")
    return fit(session, image_of("xgboost"), XGBOOST_HP, {"train": labelled, "features": features},
               content_types={"train": CSV, "features": "application/json"}, required_files=("xgboost-model.ubj",))


def _csv(body: bytes) -> np.ndarray:
    return np.array(read_csv_rows(body))


def _live_orders() -> list[dict]:
    orders = make_orders(40, seed=99)
    for order in orders:
        order.pop("default")
    orders[0]["customer"]["country"] = "XX"  # unseen category
    orders[1]["customer"] = {}  # every customer field missing
    orders[2]["amount"] = None
    orders[3]["device"] = "smart-fridge"
    return orders


def test_deployed_preprocess_serves_the_in_process_features(session, preprocess_endpoint, reference):
    assert preprocess_endpoint.deploy_seconds < 25  # no 30 s sleep in deploy(wait=True), no 5 s ping polls
    orders = _live_orders()
    expected = reference.transform_records_sklearn(orders)
    served = _csv(predict(preprocess_endpoint, json.dumps(orders), "application/json"))  # Accept */* -> CSV
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    as_json = json.loads(predict(preprocess_endpoint, json.dumps({"instances": orders}), "application/json",
                                 "application/json"))
    np.testing.assert_allclose(np.array(as_json["instances"]), expected, rtol=0, atol=1e-6)
    # The endpoint is a plain HTTP port on this machine too (curl, wrk).
    url = session.endpoint_url(preprocess_endpoint.endpoint_name)
    raw = requests.post(f"{url}/invocations", data=json.dumps(orders[:2]), timeout=10,
                        headers={"Content-Type": "application/json", "Accept": CSV})
    assert raw.status_code == 200 and raw.headers["Content-Type"] == CSV
    np.testing.assert_allclose(_csv(raw.content), expected[:2], rtol=0, atol=1e-6)
    # A request the container refuses raises as on AWS (the SDK's local client returns the error body).
    with pytest.raises(ClientError) as refused:
        predict(preprocess_endpoint, json.dumps({**orders[0], "amount": "lots"}), "application/json", CSV)
    assert refused.value.response["Error"]["Code"] == "ModelError"
    assert refused.value.response["OriginalStatusCode"] == 400
    assert "amount" in refused.value.response["OriginalMessage"]


def test_batch_transform_writes_labelled_csv(labelled, reference, train_orders):
    assert [p.name for p in labelled.iterdir()] == ["orders.jsonl.out"]
    table = _csv(transform_output(labelled))
    assert table.shape == (len(train_orders), 1 + len(reference.output_columns))
    assert np.array_equal(table[:, 0], [order["default"] for order in train_orders])
    np.testing.assert_allclose(table[:, 1:], reference.transform_records_sklearn(train_orders), rtol=0, atol=1e-6)


def test_xgboost_trained_on_the_transform_serves_the_in_process_scores(
        session, image_of, xgboost_model, preprocess_endpoint, preprocess_dir, reference):
    model_dir = extract_model(xgboost_model, session.root / "reference" / "xgboost")
    assert model_files(xgboost_model) == ["xgboost-forest.npz", "xgboost-meta.json", "xgboost-model.ubj"]
    meta = json.loads((model_dir / "xgboost-meta.json").read_text())
    assert meta["features_fingerprint"] == json.loads((preprocess_dir / "features.json").read_text())["fingerprint"]
    booster = xgboost.Booster()
    booster.load_model(bytearray((model_dir / "xgboost-model.ubj").read_bytes()))
    orders = _live_orders()
    expected = booster.inplace_predict(reference.transform_records_sklearn(orders))
    with endpoint(deploy(session, image_of("xgboost"), xgboost_model, content_type=CSV)) as scorer:
        # Two endpoints of one session at once, each on its own port, routed by endpoint name.
        ports = {session.endpoint_ports[p.endpoint_name] for p in (scorer, preprocess_endpoint)}
        assert len(ports) == 2
        features = predict(preprocess_endpoint, json.dumps(orders), "application/json", CSV)
        scores = _csv(predict(scorer, features, CSV, CSV))[:, 0]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    assert booster.num_boosted_rounds() == 20


def _numeric_csv(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 6))
    labels = (features[:, 0] - features[:, 1] + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([labels, features]), delimiter=",", fmt="%.10g")


def test_two_hosts_train_one_model(session, image_of):
    train = session.root / "data" / "two-hosts"
    for part in range(4):  # FullyReplicated (local mode's only choice): each host takes its files by rank
        _numeric_csv(train / f"part-{part}.csv", 300, seed=part)
    model_data = fit(session, image_of("xgboost"), {"num_round": "10", "objective": "binary:logistic"},
                     {"train": train}, content_types={"train": CSV}, instance_count=2,
                     required_files=("xgboost-model.ubj",))
    assert model_files(model_data) == ["xgboost-forest.npz", "xgboost-meta.json", "xgboost-model.ubj"]
    model_dir = extract_model(model_data, session.root / "reference" / "two-hosts")
    assert json.loads((model_dir / "xgboost-meta.json").read_text())["rounds"] == 10


def test_a_failing_host_fails_the_fit(session, image_of):
    train = session.root / "data" / "bad-host"
    for part in range(2):
        _numeric_csv(train / f"part-{part}.csv", 300, seed=part)
    (train / "part-1.csv").write_text("1,2,three\n")  # the second host's file
    with pytest.raises(TrainingFailed) as failed:
        fit(session, image_of("xgboost"), {"num_round": "10", "objective": "binary:logistic"}, {"train": train},
            content_types={"train": CSV}, instance_count=2, required_files=("xgboost-model.ubj",))
    assert failed.value.reason is not None  # the failure file's text, which local mode does not surface


def test_a_failed_deploy_fails_fast_and_leaves_nothing_behind(image_of, xgboost_model):
    started = time.monotonic()
    with offline_local_mode() as local:
        root = local.root
        with pytest.raises(RuntimeError, match="exited"):  # preprocess cannot load an XGBoost model
            deploy(local, image_of("preprocess"), xgboost_model)
    assert time.monotonic() - started < 30  # the SDK alone would poll for 120 s
    assert not root.exists()
    assert not sdk_containers(root)


def test_an_image_missing_here_is_refused_not_pulled(session, tmp_path):
    with pytest.raises(OfflineViolation, match="not on this machine"):
        fit(session, "smkit-no-such-image:0.0.0", {}, {"train": tmp_path})


def test_no_connection_left_the_machine(session, guard, preprocess_endpoint):
    """Runs last: every flow above ran under the guard; nothing was refused because nothing was tried."""
    predict(preprocess_endpoint, json.dumps(_live_orders()[:1]), "application/json")
    assert guard.connections == [] and guard.lookups == []
    assert guard.aws_requests == []
    assert guard.telemetry_calls == []  # TelemetryOptOut: the emitter never tried
    # The guard and the session's refusal work: both would have caught an attempt.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("sts.eu-central-1.amazonaws.com", 443)
    with pytest.raises(OfflineViolation):
        session.boto_session.client("sts").get_caller_identity()
    assert guard.connections == [("192.0.2.1", 443)]
    assert guard.lookups == ["sts.eu-central-1.amazonaws.com"]
    assert len(guard.aws_requests) == 1 and "sts." in guard.aws_requests[0]
