"""``PipelineModel(models=[preprocess, xgboost])`` deployed and batch-transformed with the SageMaker Python SDK
in local mode through ``local_test.pipeline.PipelineSession``, against the real images.

The models are trained with the docker helpers (preprocess fitted on orders; its labelled batch output and
features.json train XGBoost) and packed as model.tar.gz. Served scores are compared with the same fitted
scikit-learn transform and booster computed in-process (1e-6).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost
from botocore.exceptions import ClientError

from local_test.docker_run import ROOT, OptMl, train
from local_test.orders import make_orders, write_jsonl
from local_test.pipeline import (
    FRONT_PORT,
    LABEL,
    ContainerSpec,
    ModelArchive,
    PipelineDeployment,
    PipelineMismatchError,
    PipelineSession,
    batches,
    check_fingerprints,
    pack_model,
    stage_workers,
    train_models,
)

sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
# Imported after local_test.pipeline, which sets the offline environment before the SDK is first loaded.
from sagemaker.model import Model
from sagemaker.pipeline import PipelineModel
from sagemaker.predictor import Predictor

from serving_common.features.features import FittedFeatures

ENDPOINT = "smkit-pipeline-it"
JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"


@pytest.fixture(scope="module")
def trained(docker, image_of, tmp_path_factory):
    return train_models(docker, tmp_path_factory.mktemp("models"), make_orders(3000, seed=21),
                        image_of("preprocess"), image_of("xgboost"), num_round=30)


@pytest.fixture(scope="module")
def reference(trained):
    """The fitted transform (scikit-learn path) and the booster, in-process: score(orders) -> scores."""
    features = FittedFeatures.load(trained.preprocess_dir)
    booster = xgboost.Booster()
    booster.load_model(bytearray((trained.xgboost_dir / "xgboost-model.ubj").read_bytes()))
    return lambda orders: booster.inplace_predict(features.transform_records_sklearn(orders))


@pytest.fixture(scope="module")
def session(docker, tmp_path_factory):
    with PipelineSession(tmp_path_factory.mktemp("sdk"), docker=docker) as local:
        yield local
    assert not docker.containers.list(all=True, filters={"label": LABEL})


def pipeline_model(session, image_of, preprocess_archive: Path, xgboost_archive: Path) -> PipelineModel:
    """What a user writes for AWS, with our session."""
    return PipelineModel(models=[
        Model(image_uri=image_of("preprocess"), model_data=f"file://{preprocess_archive}", sagemaker_session=session),
        Model(image_uri=image_of("xgboost"), model_data=f"file://{xgboost_archive}", sagemaker_session=session),
    ], sagemaker_session=session)


@pytest.fixture(scope="module")
def endpoint(session, image_of, trained):
    pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).deploy(
        initial_instance_count=1, instance_type="local", endpoint_name=ENDPOINT)
    yield session.endpoint_url(ENDPOINT)
    session.delete_endpoint(ENDPOINT)


def _scores(text: str) -> np.ndarray:
    return np.array([float(line) for line in text.splitlines() if line.strip()])


def _pipeline_containers(docker, name: str) -> list:
    return docker.containers.list(all=True, filters={"label": f"{LABEL}={name}"})


# -- the endpoint ---------------------------------------------------------------------------------------


def test_json_orders_through_the_one_port_score_as_the_fitted_transform_and_booster(endpoint, reference):
    orders = make_orders(200, seed=99)
    response = requests.post(f"{endpoint}/invocations", data=json.dumps(orders),
                             headers={"Content-Type": JSON, "Accept": CSV}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CSV
    np.testing.assert_allclose(_scores(response.text), reference(orders), rtol=0, atol=1e-6)


def test_single_orders_through_the_sdk_predictor(session, endpoint, reference):
    predictor = Predictor(ENDPOINT, sagemaker_session=session)
    orders = make_orders(20, seed=7)
    served = [float(predictor.predict(json.dumps(order), initial_args={"ContentType": JSON, "Accept": CSV}))
              for order in orders]
    np.testing.assert_allclose(served, reference(orders), rtol=0, atol=1e-6)


def test_json_lines_in_json_out(endpoint, reference):
    orders = make_orders(5, seed=3)
    response = requests.post(f"{endpoint}/invocations", data="\n".join(json.dumps(o) for o in orders),
                             headers={"Content-Type": JSONL, "Accept": JSON}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON  # the client's Accept reached the last stage
    served = np.array([item["score"] for item in json.loads(response.text)["predictions"]])
    np.testing.assert_allclose(served, reference(orders), rtol=0, atol=1e-6)


def test_a_bad_order_is_the_first_stages_400_with_the_stage_header(session, endpoint):
    response = requests.post(f"{endpoint}/invocations", data=b'{"amount": "lots"}',
                             headers={"Content-Type": JSON, "Accept": CSV}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == "BadRequest" and "amount" in response.json()["message"]
    assert response.headers["X-Pipeline-Stage"] == "1"
    assert response.headers["X-Pipeline-Container"] == "smkit-preprocess"
    with pytest.raises(ClientError) as raised:  # through the SDK: the ModelError AWS raises
        Predictor(ENDPOINT, sagemaker_session=session).predict(
            b'{"amount": "lots"}', initial_args={"ContentType": JSON, "Accept": CSV})
    assert raised.value.response["OriginalStatusCode"] == 400


def test_an_accept_only_the_last_stage_refuses_is_its_406(endpoint):
    response = requests.post(f"{endpoint}/invocations", data=json.dumps(make_orders(1)),
                             headers={"Content-Type": JSON, "Accept": "image/png"}, timeout=30)
    assert response.status_code == 406
    assert (response.headers["X-Pipeline-Stage"], response.headers["X-Pipeline-Container"]) == ("2", "smkit-xgboost")


def test_ping_and_execution_parameters(endpoint):
    assert requests.get(f"{endpoint}/ping", timeout=5).status_code == 200
    parameters = requests.get(f"{endpoint}/execution-parameters", timeout=5).json()
    assert "MaxPayloadInMB" in parameters
    assert "BatchStrategy" not in parameters  # unset: AWS and SDK local mode both apply MULTI_RECORD


def test_all_containers_share_one_network_namespace_and_one_published_port(docker, session, endpoint):
    deployment = session.deployment(ENDPOINT)
    front, *stages = deployment.containers
    front.reload()
    bindings = front.attrs["HostConfig"]["PortBindings"]
    assert bindings == {f"{FRONT_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployment.host_port)}]}
    assert endpoint == f"http://127.0.0.1:{deployment.host_port}"
    for index, stage in enumerate(stages, start=1):
        stage.reload()
        assert stage.attrs["HostConfig"]["NetworkMode"] == f"container:{front.id}"
        assert not stage.attrs["HostConfig"].get("PortBindings")
        env = dict(item.split("=", 1) for item in stage.attrs["Config"]["Env"])
        assert env["SAGEMAKER_BIND_TO_PORT"] == str(FRONT_PORT + index)
        mounts = {m["Destination"]: m for m in stage.attrs["Mounts"]}
        assert mounts["/opt/ml/model"]["RW"] is False
        assert stage.attrs["HostConfig"]["ReadonlyRootfs"] is True
    first_env = dict(item.split("=", 1) for item in stages[0].attrs["Config"]["Env"])
    assert first_env["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == CSV
    assert len(_pipeline_containers(docker, ENDPOINT)) == 3


def test_deleting_an_endpoint_removes_every_container(docker, session, image_of, trained):
    name = "smkit-pipeline-it-delete"
    pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).deploy(
        initial_instance_count=1, instance_type="local", endpoint_name=name)
    assert len(_pipeline_containers(docker, name)) == 3
    session.delete_endpoint(name)
    assert _pipeline_containers(docker, name) == []
    with pytest.raises(KeyError):
        session.endpoint_url(name)


def test_on_the_host_network_the_front_listens_on_a_host_port_without_docker_proxy(docker, image_of, trained,
                                                                                  reference, tmp_path):
    with PipelineSession(tmp_path / "sdk", docker=docker, host_network=True) as session:
        pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).deploy(
            initial_instance_count=1, instance_type="local", endpoint_name="smkit-pipeline-it-host")
        front, *stages = session.deployment("smkit-pipeline-it-host").containers
        front.reload()
        assert front.attrs["HostConfig"]["NetworkMode"] == "host"
        assert all(stage.attrs["HostConfig"]["NetworkMode"] == f"container:{front.id}" for stage in stages)
        orders = make_orders(10, seed=8)
        response = requests.post(f"{session.endpoint_url('smkit-pipeline-it-host')}/invocations",
                                 data=json.dumps(orders), headers={"Content-Type": JSON, "Accept": CSV}, timeout=30)
        np.testing.assert_allclose(_scores(response.text), reference(orders), rtol=0, atol=1e-6)
    assert _pipeline_containers(docker, "smkit-pipeline-it-host") == []


# -- batch transform ------------------------------------------------------------------------------------


def test_the_transformer_writes_one_score_line_per_input_line(docker, session, image_of, trained, reference,
                                                              tmp_path):
    big, small = make_orders(4000, seed=31), make_orders(7, seed=32)
    write_jsonl(big, tmp_path / "in" / "big.jsonl")  # ~1.3 MB: more than one 1 MB request
    write_jsonl(small, tmp_path / "in" / "part" / "small.jsonl")
    output = tmp_path / "out"
    transformer = pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).transformer(
        instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line", accept=CSV,
        max_payload=1, output_path=f"file://{output}")
    transformer.transform(f"file://{tmp_path / 'in'}", content_type=JSONL, split_type="Line")
    assert session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.job_name)["TransformJobStatus"] == "Completed"
    for orders, path in ((big, output / "big.jsonl.out"), (small, output / "part" / "small.jsonl.out")):
        lines = path.read_text().splitlines()
        assert len(lines) == len(orders)
        np.testing.assert_allclose(_scores(path.read_text()), reference(orders), rtol=0, atol=1e-6)
    assert len(docker.containers.list(all=True, filters={"label": LABEL})) == 3  # only the module's endpoint


def test_the_sdks_default_assembly_keeps_every_row_apart(session, image_of, trained, reference, tmp_path):
    # assemble_with=None (the SDK's default) joins the responses of the mini-batches as they are
    orders = make_orders(3500, seed=33)
    write_jsonl(orders, tmp_path / "in" / "orders.jsonl")  # ~1.1 MB: two 1 MB requests
    output = tmp_path / "out"
    transformer = pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).transformer(
        instance_count=1, instance_type="local", strategy="MultiRecord", accept=CSV, max_payload=1,
        output_path=f"file://{output}")
    transformer.transform(f"file://{tmp_path / 'in'}", content_type=JSONL, split_type="Line")
    text = (output / "orders.jsonl.out").read_text()
    assert text.endswith("\n") and "\n\n" not in text
    lines = text.splitlines()
    assert len(lines) == len(orders) and all("," not in line for line in lines)  # one score, one column
    np.testing.assert_allclose([float(line) for line in lines], reference(orders), rtol=0, atol=1e-6)


def test_a_failing_record_fails_the_transform_job_with_the_stage(docker, session, image_of, trained, tmp_path):
    orders = make_orders(3, seed=4)
    orders[1]["amount"] = "lots"
    write_jsonl(orders, tmp_path / "in" / "bad.jsonl")
    before = {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})}
    transformer = pipeline_model(session, image_of, trained.preprocess_archive, trained.xgboost_archive).transformer(
        instance_count=1, instance_type="local", assemble_with="Line", accept=CSV,
        output_path=f"file://{tmp_path / 'out'}")
    with pytest.raises(RuntimeError, match=r"stage 1 \(smkit-preprocess\) answered 400"):
        transformer.transform(f"file://{tmp_path / 'in'}", content_type=JSONL, split_type="Line")
    assert {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})} == before
    assert not (tmp_path / "out" / "bad.jsonl.out").exists()


# -- refusing a pipeline whose parts do not fit ---------------------------------------------------------


def test_a_features_fingerprint_mismatch_is_refused_before_anything_starts(docker, session, image_of, trained,
                                                                           narrower_preprocess, tmp_path):
    other_archive = narrower_preprocess
    theirs = ModelArchive(f"file://{other_archive}").read_json("features.json")["features.json"]["fingerprint"]
    expected = json.loads((trained.xgboost_dir / "xgboost-meta.json").read_text())["features_fingerprint"]
    assert theirs != expected
    before = {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})}

    mismatched = pipeline_model(session, image_of, other_archive, trained.xgboost_archive)
    with pytest.raises(PipelineMismatchError) as refused:
        mismatched.deploy(initial_instance_count=1, instance_type="local", endpoint_name="smkit-pipeline-mismatch")
    assert isinstance(refused.value, ValueError)
    message = str(refused.value)
    assert theirs in message and expected in message and "xgboost-meta.json" in message
    with pytest.raises(PipelineMismatchError):
        pipeline_model(session, image_of, other_archive, trained.xgboost_archive).transformer(
            instance_count=1, instance_type="local", output_path=f"file://{tmp_path / 'out'}")
    started = {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})} - before
    assert not started  # none started (a set difference: containers that ended meanwhile do not count)


@pytest.fixture(scope="module")
def narrower_preprocess(docker, image_of, tmp_path_factory) -> Path:
    """A preprocess model of the same orders that leaves ``device`` out: fewer output columns."""
    other = OptMl(tmp_path_factory.mktemp("narrower"), {"label": "default", "drop": "order_id,device"},
                  {"train": {"ContentType": JSONL}})
    write_jsonl(make_orders(500, seed=5), other.channel_dir("train") / "orders.jsonl")
    assert train(docker, image_of("preprocess"), other).exit_code == 0
    return pack_model(other.model_dir, other.root / "narrower.tar.gz")


def test_a_width_mismatch_is_refused_without_the_features_channel(docker, session, image_of, trained,
                                                                  narrower_preprocess, tmp_path):
    # XGBoost trained on the labelled rows alone (no features channel): it still records their width
    xgb = OptMl(tmp_path / "xgb", {"num_round": "3", "objective": "binary:logistic"}, {"train": {"ContentType": CSV}})
    (xgb.channel_dir("train") / "rows.csv").write_text(trained.labelled_csv)
    assert train(docker, image_of("xgboost"), xgb).exit_code == 0
    meta = json.loads((xgb.model_dir / "xgboost-meta.json").read_text())
    width = len(json.loads((trained.preprocess_dir / "features.json").read_text())["output_columns"])
    assert meta["features_fingerprint"] is None and meta["num_features"] == width
    archive = pack_model(xgb.model_dir, tmp_path / "xgb.tar.gz")
    before = {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})}
    with pytest.raises(PipelineMismatchError, match=rf"trained on rows of {width} features \(xgboost-meta.json "
                                                    r"num_features\), but container 1 .* answers rows of \d+"):
        pipeline_model(session, image_of, narrower_preprocess, archive).deploy(
            initial_instance_count=1, instance_type="local", endpoint_name="smkit-pipeline-narrow")
    started = {c.id for c in docker.containers.list(all=True, filters={"label": LABEL})} - before
    assert not started  # none started (a set difference: containers that ended meanwhile do not count)
    # what users run on their archives before PipelineModel.deploy on AWS says the same
    refused = subprocess.run([sys.executable, "-m", "serving_common.pipeline_check", str(narrower_preprocess),
                              str(archive)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode == 1 and f"trained on rows of {width} features" in refused.stderr
    accepted = subprocess.run([sys.executable, "-m", "serving_common.pipeline_check", str(trained.preprocess_archive),
                               str(archive)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert accepted.returncode == 0 and f"width {width} match" in accepted.stdout

# -- the pieces, without Docker -------------------------------------------------------------------------


def _model_dir(path: Path, files: dict[str, object]) -> Path:
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).write_text(json.dumps(content))
    return path


def test_fingerprints_are_compared_between_neighbours_only_when_both_are_known(tmp_path):
    pre = _model_dir(tmp_path / "pre", {"features.json": {"fingerprint": "aaa"}})
    good = pack_model(_model_dir(tmp_path / "good", {"xgboost-meta.json": {"features_fingerprint": "aaa"}}),
                      tmp_path / "good.tar.gz")
    bad = _model_dir(tmp_path / "bad", {"xgboost-meta.json": {"features_fingerprint": "bbb"}})
    unknown = _model_dir(tmp_path / "unknown", {"xgboost-meta.json": {"features_fingerprint": None}})

    def specs(*sources: Path) -> list[ContainerSpec]:
        return [ContainerSpec.from_definition(i, {"Image": f"img{i}:1", "ModelDataUrl": f"file://{source}"})
                for i, source in enumerate(sources, start=1)]

    check_fingerprints(specs(pre, good))  # a tar.gz and a folder, matching
    check_fingerprints(specs(pre, unknown))  # trained without the features channel: nothing to compare
    check_fingerprints(specs(bad, pre))  # order matters: only what a model consumes is checked
    with pytest.raises(PipelineMismatchError, match=r"bbb.*aaa"):
        check_fingerprints(specs(pre, bad))


def test_model_archives_are_extracted_safely_and_readable(tmp_path):
    source = _model_dir(tmp_path / "model", {"features.json": {"fingerprint": "x"}})
    (source / "sub").mkdir()
    (source / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    (source / "sub" / "weights.bin").chmod(0o600)
    archive = ModelArchive(f"file://{pack_model(source, tmp_path / 'model.tar.gz')}")
    assert archive.read_json("*.json") == {"features.json": {"fingerprint": "x"}}
    target = archive.extract(tmp_path / "out")
    assert (target / "sub" / "weights.bin").stat().st_mode & 0o444 == 0o444  # workers run unprivileged
    with pytest.raises(ValueError, match="only file://"):
        ModelArchive("s3://bucket/model.tar.gz")


def test_input_files_are_cut_into_requests_of_whole_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    # ten lines of 9 bytes, blank lines, a last line without a newline
    path.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(10)) + b"\n  \n" + b'{"n": 10}')
    multi = list(batches(path, "Line", "MultiRecord", 30 / (1024 * 1024)))  # 30 bytes: 3 lines of 9 bytes
    assert [where for where, _ in multi] == ["lines 1-3", "lines 4-6", "lines 7-9", "lines 10-13"]
    assert b"".join(body for _, body in multi).count(b'{"n"') == 11
    assert all(len(body) <= 30 for _, body in multi)
    assert len(list(batches(path, "Line", "SingleRecord", 6))) == 11
    assert list(batches(path, "None", "MultiRecord", 6)) == [("the whole file", path.read_bytes())]
    with pytest.raises(ValueError, match="line 1 has 9 bytes"):
        list(batches(path, "Line", "MultiRecord", 5 / (1024 * 1024)))


def test_stage_and_front_environments(tmp_path):
    specs = [ContainerSpec.from_definition(1, {"Image": "reg/smkit-preprocess:1", "Environment": {"A": "1"}}),
             ContainerSpec.from_definition(2, {"Image": "smkit-xgboost:1", "ContainerHostname": "model",
                                               "Environment": {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}}),
             ContainerSpec.from_definition(3, {"Image": "post:1", "Environment": {
                 "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}})]
    assert [spec.name for spec in specs] == ["smkit-preprocess", "model", "post"]
    deployment = PipelineDeployment(None, specs, "e", extra_env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"})
    first, second, last = (deployment.stage_environment(spec) for spec in specs)
    assert first == {"A": "1", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "SAGEMAKER_BIND_TO_PORT": "8081",
                     "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
                     "SMKIT_ACCESS_LOG": "false",  # the front logs each request once; stages log failures
                     "SAGEMAKER_MODEL_SERVER_WORKERS": str(stage_workers(3))}  # the CPUs shared out
    assert second["SAGEMAKER_BIND_TO_PORT"] == "8082" and second["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "text/csv"
    assert "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT" not in deployment.stage_environment(
        ContainerSpec.from_definition(3, {"Image": "post:1"}))  # the last stage answers in the client's Accept
    assert last["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "application/json"
    assert stage_workers(3, cpus=2) == 1 and stage_workers(2, cpus=2) == 1 and stage_workers(2, cpus=8) == 4
    explicit = ContainerSpec.from_definition(1, {"Image": "x:1",
                                                 "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}})
    assert deployment.stage_environment(explicit)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"  # the user's choice stays
    assert deployment.front_environment() == {
        "SAGEMAKER_BIND_TO_PORT": "8080", "SMKIT_PIPELINE_STAGES": "smkit-preprocess=8081,model=8082,post=8083",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}
