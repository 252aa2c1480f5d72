"""Fused models in the XGBoost image (docs/fused.md): a model that carries its preprocess stage, deployed as
a plain ``Model(image_uri, model_data)`` through SDK local mode and compared with the chained
``PipelineModel`` of the same two models in the same session, for requests and batch transform alike; and
per-market fused models (each its own transform and feature code) on one multi-model endpoint, loaded through
``POST /models`` and through the SDK's ``MultiDataModel``, each request answered by its own market's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from local_test.docker_run import ROOT, ServingContainer
from local_test.orders import make_orders
from local_test.pipeline import LABEL, PipelineSession, train_models

# isort: split
# Imported after local_test.pipeline, which sets the offline environment before the SDK is first loaded.
from botocore.exceptions import ClientError
from sagemaker.deserializers import BytesDeserializer
from sagemaker.model import Model
from sagemaker.pipeline import PipelineModel
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer

from local_test.multi_model import LocalMultiDataModel
from local_test.sagemaker_local import ROLE

pytestmark = pytest.mark.docker

JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"
CHAINED, FUSED, MARKETS_ENDPOINT = "smkit-fused-it-chained", "smkit-fused-it-alone", "smkit-fused-it-markets"


def fuse(preprocess: Path, model: Path, output: Path) -> Path:
    """``python -m serving_common.fuse``, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "serving_common.fuse", str(preprocess), str(model), "-o",
                             str(output)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return output


@pytest.fixture(scope="module")
def trained(docker, image_of, tmp_path_factory):
    return train_models(docker, tmp_path_factory.mktemp("models"), make_orders(1500, seed=21),
                        image_of("preprocess"), image_of("xgboost"), num_round=20)


@pytest.fixture(scope="module")
def session(docker, tmp_path_factory):
    with PipelineSession(tmp_path_factory.mktemp("sdk"), docker=docker) as local:
        yield local
    assert not docker.containers.list(all=True, filters={"label": LABEL})


@pytest.fixture(scope="module")
def fused_archive(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fused")
    folder.chmod(0o755)  # local mode mounts (and extracts into) the archive's folder: world-readable, as users' are
    return fuse(trained.preprocess_archive, trained.xgboost_archive, folder / "model.tar.gz")


def chained_model(session, image_of, trained) -> PipelineModel:
    return PipelineModel(models=[
        Model(image_uri=image_of("preprocess"), model_data=f"file://{trained.preprocess_archive}",
              sagemaker_session=session),
        Model(image_uri=image_of("xgboost"), model_data=f"file://{trained.xgboost_archive}", sagemaker_session=session),
    ], sagemaker_session=session)


def fused_model(session, image_of, fused_archive) -> Model:
    return Model(image_uri=image_of("xgboost"), model_data=f"file://{fused_archive}", role=ROLE,
                 sagemaker_session=session)


@pytest.fixture(scope="module")
def endpoints(session, image_of, trained, fused_archive):
    """(chained pipeline URL, fused model URL): the same two models, deployed both ways."""
    chained_model(session, image_of, trained).deploy(initial_instance_count=1, instance_type="local",
                                                     endpoint_name=CHAINED)
    fused_model(session, image_of, fused_archive).deploy(initial_instance_count=1, instance_type="local",
                                                         endpoint_name=FUSED)
    yield session.endpoint_url(CHAINED), session.endpoint_url(FUSED)
    session.delete_endpoint(CHAINED)
    session.delete_endpoint(FUSED)


def _post(url: str, body: bytes, content_type: str, accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return requests.post(f"{url}/invocations", data=body, headers=headers, timeout=30)


def test_a_fused_model_scores_every_order_as_the_chained_pipeline(endpoints):
    chained, fused = endpoints
    orders = [{k: v for k, v in order.items() if k != "default"} for order in make_orders(60, seed=5)]
    for order in orders[:20]:  # single JSON orders, the request the issue measures
        a, b = _post(chained, json.dumps(order).encode(), JSON), _post(fused, json.dumps(order).encode(), JSON)
        assert (b.status_code, b.headers["Content-Type"], b.content) == (200, a.headers["Content-Type"], a.content)
    batch, lines = json.dumps(orders).encode(), b"".join(json.dumps(o).encode() + b"\n" for o in orders)
    for body, content_type in ((batch, JSON), (lines, JSONL)):
        for accept in (CSV, JSON, JSONL):
            a, b = _post(chained, body, content_type, accept), _post(fused, body, content_type, accept)
            assert a.status_code == 200 and (b.status_code, b.headers["Content-Type"], b.content) == (
                200, a.headers["Content-Type"], a.content)
    assert len(_post(fused, batch, JSON, CSV).text.splitlines()) == len(orders)


@pytest.mark.parametrize("body", [b'{"amount": "lots"}', b'[{"amount": 1.0}, 5]', b"[]",
                                  b'{"instances": [{"amount": 1}], "x": 1}'])
def test_a_bad_order_is_the_chained_pipelines_400(endpoints, body):
    chained, fused = endpoints
    a, b = _post(chained, body, JSON, CSV), _post(fused, body, JSON, CSV)
    assert a.status_code == b.status_code == 400
    assert b.json() == a.json()  # same error and message; the pipeline adds only its stage headers


def test_content_types_the_chained_pipeline_refuses_the_fused_model_refuses(endpoints):
    chained, fused = endpoints
    for content_type, accept in (("text/libsvm", CSV), (JSON, "image/png")):
        a = _post(chained, b'{"amount": 1}', content_type, accept)
        b = _post(fused, b'{"amount": 1}', content_type, accept)
        assert a.status_code == b.status_code and a.status_code in (406, 415)


# -- batch transform ------------------------------------------------------------------------------------

def _transform(model, session, source: Path, output: Path, **env: str) -> None:
    model.transformer(instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line",
                      accept=CSV, output_path=f"file://{output}", env=env or None).transform(
        f"file://{source}", content_type=JSONL, split_type="Line")


def _write_lines(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(record).encode() + b"\n" for record in records))
    return path


def test_a_batch_transform_of_orders_writes_the_chained_pipelines_lines(session, image_of, trained, fused_archive,
                                                                        tmp_path):
    """``Transformer.transform`` over JSON Lines orders: the fused model writes the chained pipeline's file, byte
    for byte. With a bad order, both jobs fail by default; with ``SMKIT_RECORD_ERRORS=line`` (as the preprocess
    image's batch transform) the fused model writes that order's error on its line and every other order's
    score, the chained pipeline's, on its own."""
    orders = [{k: v for k, v in order.items() if k != "default"} for order in make_orders(300, seed=44)]
    _write_lines(tmp_path / "in" / "orders.jsonl", orders)
    _transform(chained_model(session, image_of, trained), session, tmp_path / "in", tmp_path / "chained")
    _transform(fused_model(session, image_of, fused_archive), session, tmp_path / "in", tmp_path / "fused")
    chained = (tmp_path / "chained" / "orders.jsonl.out").read_bytes()
    assert len(chained.splitlines()) == len(orders)
    assert (tmp_path / "fused" / "orders.jsonl.out").read_bytes() == chained

    bad = {7: {"amount": "lots"}, 150: {"amount": {"nested": 1}}}
    mixed = [bad.get(index, order) for index, order in enumerate(orders)]
    _write_lines(tmp_path / "bad" / "orders.jsonl", mixed)
    with pytest.raises(RuntimeError, match=r"stage 1 .* answered 400.*record 7"):
        _transform(chained_model(session, image_of, trained), session, tmp_path / "bad", tmp_path / "chained-bad")
    with pytest.raises(Exception, match="record 7"):
        _transform(fused_model(session, image_of, fused_archive), session, tmp_path / "bad", tmp_path / "fused-bad")
    _transform(fused_model(session, image_of, fused_archive), session, tmp_path / "bad", tmp_path / "line",
               SMKIT_RECORD_ERRORS="line")
    lines = (tmp_path / "line" / "orders.jsonl.out").read_bytes().splitlines()
    assert len(lines) == len(orders)
    for index, line in enumerate(lines):
        if index in bad:
            assert json.loads(line)["error"].startswith(f"record {index}: "), line
        else:
            assert line == chained.splitlines()[index], index


def test_a_fused_model_refuses_label_first_output(session, image_of, fused_archive, tmp_path):
    """``SMKIT_OUTPUT_LABEL=true`` makes the preprocess stage write training rows; a fused model answers scores
    and refuses it at load, so the job fails before writing anything."""
    _write_lines(tmp_path / "in" / "orders.jsonl", make_orders(3, seed=1))
    with pytest.raises(Exception, match="SMKIT_OUTPUT_LABEL"):
        _transform(fused_model(session, image_of, fused_archive), session, tmp_path / "in", tmp_path / "out",
                   SMKIT_OUTPUT_LABEL="true")
    assert not (tmp_path / "out" / "orders.jsonl.out").exists()


# -- per-market fused models on one multi-model endpoint ----------------------------------------------

MARKETS = {  # each market: its own orders, encoding and feature code
    "market-a": ({"categorical_encoding": "onehot"}, None),
    "market-b": ({"categorical_encoding": "ordinal"},
                 "def extract(record):\n    return {**record, 'amount': (record.get('amount') or 0) * 3}\n"),
    "market-c": ({"scale": "false"},
                 "def extract(record):\n    return {**record, 'big': (record.get('amount') or 0) > 300}\n"),
}


@pytest.fixture(scope="module")
def markets(docker, image_of, tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """market -> (fused model folder to load, its TrainedPipeline)."""
    root = tmp_path_factory.mktemp("markets")
    found = {}
    for seed, (market, (hyperparameters, code)) in enumerate(MARKETS.items()):
        pair = train_models(docker, root / market, make_orders(600, seed=100 + seed), image_of("preprocess"),
                            image_of("xgboost"), num_round=8, preprocess_hyperparameters=hyperparameters,
                            feature_code=code)
        archive = fuse(pair.preprocess_archive, pair.xgboost_archive, root / market / "fused.tar.gz")
        folder = root / "models" / market
        folder.mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(folder)], check=True)
        found[market] = (folder, pair)
    return found


@pytest.fixture(scope="module")
def market_orders() -> bytes:
    orders = [{k: v for k, v in order.items() if k != "default"} for order in make_orders(30, seed=77)]
    return json.dumps(orders).encode()


@pytest.fixture(scope="module")
def chained_scores(docker, image_of, markets, market_orders) -> dict[str, bytes]:
    """market -> its own chained pipeline's CSV scores of ``market_orders``, stage by stage."""
    expected = {}
    for market, (_, pair) in markets.items():
        with ServingContainer(docker, image_of("preprocess"), pair.preprocess_dir) as front, \
                ServingContainer(docker, image_of("xgboost"), pair.xgboost_dir) as back:
            front.wait_ready()
            back.wait_ready()
            features = front.invoke(market_orders, JSON, CSV)
            assert features.status_code == 200, features.text
            scores = back.invoke(features.content, CSV, CSV)
            assert scores.status_code == 200, scores.text
            expected[market] = scores.content
    assert len(set(expected.values())) == len(MARKETS)  # the markets' transforms and models differ
    return expected


def test_per_market_fused_models_answer_with_their_own_transform(docker, image_of, markets, market_orders,
                                                                 chained_scores):
    body, expected = market_orders, chained_scores
    models = next(iter(markets.values()))[0].parent
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with ServingContainer(docker, image_of("xgboost"), None, env=env,
                          volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}}) as server:
        server.wait_ready()
        for market in MARKETS:
            loaded = requests.post(f"{server.url}/models", json={"model_name": market,
                                                                 "url": f"/opt/ml/models/{market}"}, timeout=60)
            assert loaded.status_code == 200, loaded.text
        for _ in range(3):  # interleaved, fresh connections: every worker holds every market
            for market in MARKETS:
                routed = requests.post(f"{server.url}/invocations", data=body, timeout=30, headers={
                    "Content-Type": JSON, "Accept": CSV, "X-Amzn-SageMaker-Target-Model": market,
                    "Connection": "close"})
                assert routed.status_code == 200, routed.text
                assert routed.content == expected[market], market
        bad = requests.post(f"{server.url}/invocations", data=b'{"amount": "lots"}', timeout=30, headers={
            "Content-Type": JSON, "X-Amzn-SageMaker-Target-Model": "market-b"})
        assert bad.status_code == 400 and "amount" in bad.json()["message"]


def test_a_multi_data_model_of_fused_markets_answers_each_request_with_its_markets_model(
        session, image_of, markets, market_orders, chained_scores, tmp_path):
    """The SDK's ``MultiDataModel`` (over a local prefix: ``local_test.multi_model``, which says what SDK local
    mode lacks) of the three markets' fused archives, deployed in local mode; ``Predictor.predict(...,
    target_model=...)`` loads each market on its first request and answers with that market's own transform
    and model: its own chained pipeline's scores of the same orders."""
    prefix = tmp_path / "prefix"
    multi = LocalMultiDataModel("smkit-fused-it-markets", f"file://{prefix}", image_uri=image_of("xgboost"),
                                role=ROLE, sagemaker_session=session)
    for market, (folder, _) in markets.items():  # each market's fused archive, as fuse wrote it
        multi.add_model(str(folder.parents[1] / market / "fused.tar.gz"), f"{market}/model.tar.gz")
    assert sorted(multi.list_models()) == [f"{market}/model.tar.gz" for market in sorted(MARKETS)]
    assert multi.prepare_container_def()["Mode"] == "MultiModel"
    multi.deploy(initial_instance_count=1, instance_type="local", endpoint_name=MARKETS_ENDPOINT)
    try:
        predictor = Predictor(MARKETS_ENDPOINT, sagemaker_session=session, serializer=IdentitySerializer(JSON),
                              deserializer=BytesDeserializer(accept=CSV))
        for _ in range(2):  # first round: each request loads its market; second: all three held
            for market in ("market-c", "market-a", "market-b"):
                assert predictor.predict(market_orders, target_model=f"{market}/model.tar.gz") == \
                    chained_scores[market], market
        for wrong in ("market-d/model.tar.gz", "../markets/market-a/fused.tar.gz", None):
            with pytest.raises(ClientError, match="ValidationError"):
                predictor.predict(market_orders, target_model=wrong)
        with pytest.raises(ClientError, match=r"400.*amount"):  # a bad order: its market's transform's 400
            predictor.predict(b'{"amount": "lots"}', target_model="market-b/model.tar.gz")
    finally:
        session.delete_endpoint(MARKETS_ENDPOINT)


@pytest.mark.parametrize("image", ["preprocess", "xgboost"])
def test_serving_processes_map_no_sklearn_scipy_pandas_for_the_transform(docker, image_of, trained, image, tmp_path):
    """After answering orders, no serving process of the preprocess image (its model) has mapped a compiled
    module of scikit-learn, scipy or pandas; the XGBoost image (the fused model) maps no scikit-learn or
    pandas (scipy is XGBoost's own dependency there)."""
    if image == "preprocess":
        model_dir, heavy = trained.preprocess_dir, ("sklearn", "scipy", "pandas")
    else:
        model_dir, heavy = tmp_path / "fused", ("sklearn", "pandas")
        fuse(trained.preprocess_dir, trained.xgboost_dir, tmp_path / "fused.tar.gz")
        model_dir.mkdir()  # mounted as /opt/ml/model: 0755, the serving account enters it
        subprocess.run(["tar", "-xzf", str(tmp_path / "fused.tar.gz"), "-C", str(model_dir)], check=True)
    order = {k: v for k, v in make_orders(1, seed=3)[0].items() if k != "default"}
    with ServingContainer(docker, image_of(image), model_dir) as server:
        server.wait_ready()
        for _ in range(4):
            assert server.invoke(json.dumps(order).encode(), JSON, CSV).status_code == 200
        maps = server.container.exec_run(["sh", "-c", "cat /proc/[0-9]*/maps"], user="root").output.decode()
    assert "site-packages/numpy" in maps  # the check can see compiled modules at all
    assert [name for name in heavy if f"site-packages/{name}" in maps] == []

