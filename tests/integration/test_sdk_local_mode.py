"""The SageMaker Python SDK 2.x in local mode against the real images, fully offline.

One preprocess model, its batch-transform output and one XGBoost model trained on it are shared by the
module (SDK flows: ``Estimator.fit``, ``Model.deploy``, ``Predictor.predict``, ``Transformer.transform``);
served numbers are compared with the same fitted transform and booster loaded in-process (1e-6). A guard
active for the whole module refuses and records any connection to a non-loopback address, any DNS
lookup of a non-local name, any botocore request and any telemetry call; the last test checks that
none happened.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
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
from sagemaker.deserializers import BytesDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.local.local_session import LocalSagemakerClient, file_input
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer

from local_test.docker_run import ROOT
from local_test.orders import make_orders, write_jsonl
from local_test.sagemaker_local import (
    ROLE,
    SDK_DEFAULTS_CONFIG,
    OfflineViolation,
    TrainingJobFailed,
    endpoint,
    free_port,
    offline_local_mode,
    remove_sdk_containers,
    sdk_containers,
)
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
from serving_common.features.features import FittedFeatures

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


def _labelled_table(output: Path, orders: list[dict], reference: FittedFeatures) -> np.ndarray:
    """The transform's CSV, checked row by row: one line per order (no blank ones), label first, every line
    full width."""
    lines = transform_output(output).decode().splitlines()
    widths = {len(line.split(",")) for line in lines}
    assert len(lines) == len(orders) and widths == {1 + len(reference.output_columns)}, (len(lines), widths)
    table = _csv(transform_output(output))
    assert np.array_equal(table[:, 0], [order["default"] for order in orders])
    return table


def test_a_transform_of_several_batches_with_the_sdk_defaults_keeps_every_row(session, image_of, preprocess_model,
                                                                               reference):
    """Issue 12 point 1: no strategy, no assemble_with (the SDK's defaults), mini-batches of 1 MB: the
    responses are written back to back, so each must end its own last line."""
    orders = make_orders(9000, seed=5)
    source = write_jsonl(orders, session.root / "data" / "several-batches" / "orders.jsonl")
    assert source.stat().st_size > 2 * 1024 * 1024  # at least three requests of at most 1 MB
    output = transform(session, image_of("preprocess"), preprocess_model, source.parent, session.root / "batches",
                       JSONL, CSV, env={"SMKIT_OUTPUT_LABEL": "true"}, strategy=None, assemble_with=None,
                       max_payload_mb=1)
    table = _labelled_table(output, orders, reference)
    np.testing.assert_allclose(table[:, 1:], reference.transform_records_sklearn(orders), rtol=0, atol=1e-6)


def test_a_transform_with_every_sdk_default_through_the_offline_session(session, image_of, preprocess_model,
                                                                        reference, train_orders):
    """``model.transformer(1, "local", output_path=..., accept=...).transform(data, content_type=...)``:
    no strategy (the container's /execution-parameters answers none: MultiRecord), no split (the whole
    file is one request), no assemble_with, logs=True (no CloudWatch call afterwards)."""
    source = write_jsonl(train_orders[:300], session.root / "data" / "defaults" / "orders.jsonl").parent
    model = Model(image_uri=image_of("preprocess"), model_data=preprocess_model, role=ROLE,
                  env={"SMKIT_OUTPUT_LABEL": "true"}, sagemaker_session=session)
    output = session.root / "defaults-out"
    transformer = model.transformer(instance_count=1, instance_type="local", output_path=f"file://{output}",
                                    accept=CSV)
    transformer.transform(f"file://{source}", content_type=JSONL)
    job = session.sagemaker_client.describe_transform_job(TransformJobName=transformer.latest_transform_job.name)
    assert job["TransformJobStatus"] == "Completed"
    _labelled_table(output, train_orders[:300], reference)


def test_a_strategy_the_model_sets_is_answered_in_aws_spelling_and_local_mode_reads_it(session, image_of,
                                                                                     preprocess_model, reference,
                                                                                     train_orders):
    """The model's environment asks for SINGLE_RECORD; the job sets no strategy, so local mode takes the
    container's answer (which the SDK alone would refuse: it knows only "SingleRecord")."""
    orders = train_orders[:40]
    source = write_jsonl(orders, session.root / "data" / "single" / "orders.jsonl").parent
    output = transform(session, image_of("preprocess"), preprocess_model, source, session.root / "single-out",
                       JSONL, CSV, env={"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD"},
                       strategy=None)
    name = max(LocalSagemakerClient._transform_jobs, key=lambda n: LocalSagemakerClient._transform_jobs[n].start_time)
    assert LocalSagemakerClient._transform_jobs[name].batch_strategy == "SINGLE_RECORD"
    _labelled_table(output, orders, reference)


def test_a_plain_local_session_transforms_with_the_sdk_defaults(guard, tmp_path, image_of, preprocess_model,
                                                                reference, train_orders):
    """The SDK's own LocalSession (our module imported, nothing else of ours): the container's
    /execution-parameters suits it, and the default logs=True asks CloudWatch for nothing."""
    plain = LocalSession(sagemaker_config=SDK_DEFAULTS_CONFIG)  # telemetry off; offline env from the import
    plain.config = {"local": {"local_code": True, "container_root": str(tmp_path / "root"),
                              "serving_port": free_port()}}
    (tmp_path / "root").mkdir()
    source = write_jsonl(train_orders[:200], tmp_path / "in" / "orders.jsonl").parent
    requests_before = len(guard.aws_requests) + len(guard.connections) + len(guard.lookups)
    try:
        model = Model(image_uri=image_of("preprocess"), model_data=preprocess_model, role=ROLE,
                      env={"SMKIT_OUTPUT_LABEL": "true"}, sagemaker_session=plain)
        model.transformer(instance_count=1, instance_type="local", output_path=f"file://{tmp_path / 'out'}",
                          accept=CSV).transform(f"file://{source}", content_type=JSONL)
    finally:
        remove_sdk_containers(tmp_path / "root")
    assert len(guard.aws_requests) + len(guard.connections) + len(guard.lookups) == requests_before
    _labelled_table(tmp_path / "out", train_orders[:200], reference)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _path_of(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_a_model_with_entry_point_and_source_dir_deploys_and_leaves_the_archive_alone(session, image_of,
                                                                                     preprocess_model, tmp_path):
    """Issue 12 point 5: no code_location; the SDK's in-place repack of the file:// archive is skipped
    (the container reads the mounted source_dir), so the user's model.tar.gz is byte for byte unchanged."""
    archive = tmp_path / "models" / "model.tar.gz"  # a folder of its own, world-readable as users' are:
    archive.parent.mkdir()                           # local mode mounts (and extracts into) the archive's folder
    shutil.copy(_path_of(preprocess_model), archive)
    before = _sha256(archive)
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "import json\n\n\ndef output_fn(prediction, accept):\n"
        "    return json.dumps({'hooked': len(prediction)}), 'application/json'\n")
    model = Model(entry_point="inference.py", source_dir=str(code), image_uri=image_of("preprocess"),
                  model_data=f"file://{archive}", role=ROLE, sagemaker_session=session)
    model.deploy(initial_instance_count=1, instance_type="local", endpoint_name="entry-point")
    predictor = Predictor("entry-point", sagemaker_session=session, serializer=IdentitySerializer(JSONL),
                          deserializer=BytesDeserializer())
    with endpoint(predictor):
        body = predictor.predict("\n".join(json.dumps(o) for o in _live_orders()[:3]).encode())
    assert json.loads(body) == {"hooked": 3}  # the user's output_fn answered
    assert _sha256(archive) == before
    with tarfile.open(archive) as tar:
        assert not any(name.startswith("code") for name in tar.getnames())


def test_a_failed_training_job_raises_with_its_failure_reason(session, image_of, tmp_path):
    """Issue 12 point 7: plain ``Estimator.fit`` in the offline session; the exception carries the text
    of /opt/ml/output/failure, not only docker-compose's exit code."""
    train = tmp_path / "train"
    _numeric_csv(train / "part-0.csv", 50, seed=1)
    estimator = Estimator(image_uri=image_of("xgboost"), role=ROLE, instance_count=1, instance_type="local",
                          hyperparameters={"objective": "binary:logistic", "max_depth": "4"},  # no num_round
                          output_path=f"file://{tmp_path / 'output'}", sagemaker_session=session)
    with pytest.raises(TrainingJobFailed) as failed:
        estimator.fit({"train": file_input(f"file://{train}", CSV)})
    assert isinstance(failed.value, RuntimeError)  # what local mode raised before, now with the reason
    assert "num_round" in failed.value.reason
    assert failed.value.reason in str(failed.value) and "exited with code" in str(failed.value)
    with tarfile.open(tmp_path / "output" / "output.tar.gz") as tar:
        assert tar.extractfile("failure").read().decode().strip() == failed.value.reason


def _readme_script() -> str:
    """The README's script for users' own code: the python block after the quickstart marker."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- users-script -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README.md lost its <!-- users-script --> block"
    return block.group(1)


def test_the_readme_script_runs_as_written_from_a_folder_outside_the_repository(tmp_path, image_of, train_orders):
    """Issue 12 point 6: the README block, run by the venv's python from a temp folder with the package
    installed (setup.sh: pip install -e local_test), only the image tag swapped for this build's."""
    script = _readme_script().replace("smkit-preprocess:0.1.0", image_of("preprocess"))
    (tmp_path / "my_job.py").write_text(script)
    write_jsonl(train_orders[:400], tmp_path / "orders" / "orders.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}  # as a user's shell
    result = subprocess.run([sys.executable, "my_job.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not tmp_path.is_relative_to(ROOT)
    lines = (tmp_path / "features" / "orders.jsonl.out").read_text().splitlines()
    assert len(lines) == 400
    assert [float(line.split(",")[0]) for line in lines] == [order["default"] for order in train_orders[:400]]


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
