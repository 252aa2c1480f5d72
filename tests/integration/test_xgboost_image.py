"""The XGBoost image end to end: training on the preprocess image's batch output, validation and early
stopping, resuming from checkpoints, and two-host training on a Docker network."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xgboost

from local_test.docker_run import OptMl, ServingContainer, train, train_cluster
from local_test.orders import make_orders, write_jsonl

FEATURES = 6


def _numeric_csv(path: Path, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES))
    labels = (features[:, 0] - features[:, 1] + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    table = np.column_stack([labels, features])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, table, delimiter=",", fmt="%.10g")
    return table


def _load(model_dir: Path) -> xgboost.Booster:
    booster = xgboost.Booster()
    booster.load_model(bytearray((model_dir / "xgboost-model.ubj").read_bytes()))  # XGBoost's own format
    return booster


def test_trains_on_the_preprocess_batch_output_and_serves_the_same_scores(docker, image_of, tmp_path):
    pre = OptMl(tmp_path / "pre", {"label": "default", "drop": "order_id"},
                {"train": {"ContentType": "application/jsonlines"}})
    orders = make_orders(3000, seed=21)
    write_jsonl(orders, pre.channel_dir("train") / "orders.jsonl")
    assert train(docker, image_of("preprocess"), pre).exit_code == 0
    env = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
    with ServingContainer(docker, image_of("preprocess"), pre.model_dir, env=env) as batch:
        batch.wait_ready()
        labelled = batch.invoke("\n".join(json.dumps(o) for o in orders).encode(), "application/jsonlines", "text/csv")
        assert labelled.status_code == 200, labelled.text

    xgb = OptMl(tmp_path / "xgb", {"num_round": "40", "objective": "binary:logistic", "eval_metric": "auc",
                                   "max_depth": "4"},
                {"train": {"ContentType": "text/csv"}, "features": {"ContentType": "application/json"}})
    (xgb.channel_dir("train") / "features.csv").write_text(labelled.text + "\n")
    (xgb.channel_dir("features") / "features.json").write_bytes((pre.model_dir / "features.json").read_bytes())
    result = train(docker, image_of("xgboost"), xgb)
    assert result.exit_code == 0, result.logs
    meta = json.loads((xgb.model_dir / "xgboost-meta.json").read_text())
    assert meta["features_fingerprint"] == json.loads((pre.model_dir / "features.json").read_text())["fingerprint"]

    table = np.array([[float(v) for v in line.split(",")] for line in labelled.text.splitlines()])
    expected = _load(xgb.model_dir).inplace_predict(table[:100, 1:])
    with ServingContainer(docker, image_of("xgboost"), xgb.model_dir) as server:
        server.wait_ready()
        body = "\n".join(",".join(repr(v) for v in row) for row in table[:100, 1:].tolist()).encode()
        response = server.invoke(body, "text/csv", "text/csv")
        assert response.status_code == 200, response.text
        served = np.array([float(v) for v in response.text.splitlines()])
        # the image's build stage compiled the forest evaluator, and the model is served through it
        assert "dense requests use the compiled forest (40 trees, 4 levels)" in server.logs()
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    auc_line = next(line for line in result.logs.splitlines() if line.startswith("[39]"))
    assert float(auc_line.split("train-auc:")[1].split()[0]) > 0.75


def test_sagemaker_request_shapes_booleans_and_joined_responses(docker, image_of, tmp_path):
    job = OptMl(tmp_path / "job", {"num_round": "5", "objective": "binary:logistic", "csv_weights": "0",
                                   "booster": "gbtree", "silent": "1", "learning_rate": "0.3"},
                {"train": {"ContentType": "text/csv"}})
    table = _numeric_csv(job.channel_dir("train") / "a.csv", 300, seed=6)
    result = train(docker, image_of("xgboost"), job)
    assert result.exit_code == 0, result.logs
    assert sorted(p.name for p in job.model_dir.iterdir()) == [
        "xgboost-forest.npz", "xgboost-meta.json", "xgboost-model.ubj"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Unknown file format" warning from XGBoost
        booster = xgboost.Booster(model_file=str(job.model_dir / "xgboost-model.ubj"))
    rows = table[:4, 1:].copy()
    rows[1, 2], rows[2, 2] = 1.0, 0.0
    expected = booster.inplace_predict(rows)
    as_json = [[True if (i, j) == (1, 2) else False if (i, j) == (2, 2) else v for j, v in enumerate(row)]
               for i, row in enumerate(rows.tolist())]
    with ServingContainer(docker, image_of("xgboost"), job.model_dir) as server:
        server.wait_ready()
        for body, content_type in [
            ({"instances": [{"features": row} for row in as_json]}, "application/json"),  # built-in algorithms'
            ({"instances": as_json}, "application/json"),
            (as_json, "application/json"),
            ("\n".join(json.dumps({"features": row}) for row in as_json), "application/jsonlines"),
        ]:
            data = body if isinstance(body, str) else json.dumps(body)
            response = server.invoke(data.encode(), content_type, "application/json")
            assert response.status_code == 200, response.text
            served = [item["score"] for item in response.json()["predictions"]]
            np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
        refused = server.invoke(b'{"instances": [[1, 2, 3, 4, 5, 6]], "extra": 1}', "application/json", "text/csv")
        assert refused.status_code == 400 and "'extra'" in refused.json()["message"]
        # AssembleWith=None joins the responses of the mini-batches as they are: rows stay rows
        for accept in ("text/csv", "application/jsonlines"):
            parts = [server.invoke("\n".join(",".join(map(repr, row)) for row in part.tolist()).encode(), "text/csv",
                                   accept) for part in (rows[:3], rows[3:])]
            joined = b"".join(part.content for part in parts).decode()
            assert joined.endswith("\n") and "\n\n" not in joined
            lines = joined.splitlines()
            assert len(lines) == 4
            served = [float(line) if accept == "text/csv" else json.loads(line)["score"] for line in lines]
            np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_validation_with_early_stopping_keeps_the_best_rounds(docker, image_of, tmp_path):
    job = OptMl(tmp_path / "job", {"num_round": "500", "objective": "binary:logistic", "eval_metric": "logloss",
                                   "early_stopping_rounds": "5", "eta": "0.5"},
                {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}})
    _numeric_csv(job.channel_dir("train") / "a.csv", 800, seed=1)
    _numeric_csv(job.channel_dir("validation") / "v.csv", 300, seed=2)
    result = train(docker, image_of("xgboost"), job)
    assert result.exit_code == 0, result.logs
    assert "early stopping: keeping the best" in result.logs
    rounds = _load(job.model_dir).num_boosted_rounds()
    assert rounds < 500
    assert any(line.startswith("[") and "validation-logloss:" in line for line in result.logs.splitlines())


def test_a_restarted_job_resumes_from_its_checkpoints(docker, image_of, tmp_path):
    job = OptMl(tmp_path / "job", {"num_round": "12", "checkpoint_frequency": "4", "objective": "binary:logistic"},
                {"train": {"ContentType": "text/csv"}})
    _numeric_csv(job.channel_dir("train") / "a.csv", 500, seed=3)
    first = train(docker, image_of("xgboost"), job)
    assert first.exit_code == 0, first.logs
    assert sorted(p.name for p in (job.root / "checkpoints").iterdir()) == [
        "xgboost-checkpoint.12", "xgboost-checkpoint.8"]
    job.hyperparameters = {**job.hyperparameters, "num_round": "20"}
    second = train(docker, image_of("xgboost"), job)
    assert second.exit_code == 0, second.logs
    assert "resuming from checkpoint xgboost-checkpoint.12 (12 rounds done)" in second.logs
    assert "[11]" not in second.logs and "[19]" in second.logs  # only the 8 missing rounds ran
    assert _load(job.model_dir).num_boosted_rounds() == 20


def _cluster(tmp_path: Path, hyperparameters: dict, distribution: str = "FullyReplicated") -> list[OptMl]:
    hosts = ("algo-1", "algo-2")
    return [OptMl(tmp_path / host, hyperparameters,
                  {"train": {"ContentType": "text/csv", "S3DistributionType": distribution}},
                  hosts=hosts, current_host=host) for host in hosts]


def test_two_hosts_train_one_model_on_a_docker_network(docker, image_of, tmp_path):
    jobs = _cluster(tmp_path, {"num_round": "15", "objective": "binary:logistic", "eval_metric": "auc"})
    for job in jobs:  # FullyReplicated: every host has every file and takes its share by rank
        for part in range(4):
            _numeric_csv(job.channel_dir("train") / f"part-{part}.csv", 300, seed=part)
    leader, worker = train_cluster(docker, image_of("xgboost"), jobs)
    assert (leader.exit_code, worker.exit_code) == (0, 0), leader.logs + worker.logs
    assert "600 rows, 6 features from 2 files (host 1 of 2)" in leader.logs
    assert "600 rows, 6 features from 2 files (host 2 of 2)" in worker.logs
    assert _load(leader.opt_ml.model_dir).num_boosted_rounds() == 15
    assert not any(worker.opt_ml.model_dir.iterdir())  # only the leader writes the model


def test_a_host_without_data_does_not_hang_the_others(docker, image_of, tmp_path):
    jobs = _cluster(tmp_path, {"num_round": "10", "objective": "binary:logistic"}, distribution="ShardedByS3Key")
    _numeric_csv(jobs[0].channel_dir("train") / "only.csv", 500, seed=4)
    jobs[1].channel_dir("train")  # algo-2's shard is empty
    leader, worker = train_cluster(docker, image_of("xgboost"), jobs, timeout=300)
    assert (leader.exit_code, worker.exit_code) == (0, 0), leader.logs + worker.logs
    assert _load(leader.opt_ml.model_dir).num_boosted_rounds() == 10


@pytest.mark.parametrize("failure", ["bad-data", "killed"])
def test_a_failing_host_fails_the_job(docker, image_of, tmp_path, failure):
    jobs = _cluster(tmp_path, {"num_round": "100000", "objective": "binary:logistic", "max_depth": "8"})
    for job in jobs:
        _numeric_csv(job.channel_dir("train") / "part-0.csv", 20000, seed=5)
        _numeric_csv(job.channel_dir("train") / "part-1.csv", 20000, seed=6)
    kill = None
    if failure == "bad-data":
        (jobs[1].channel_dir("train") / "part-1.csv").write_text("1,2,three\n")
    else:
        kill = {"algo-2": 15.0}
    # A killed host may vanish without resetting its connections: the collective timeout ends the wait.
    leader, worker = train_cluster(docker, image_of("xgboost"), jobs, timeout=300, kill_after=kill,
                                   environment={"SMKIT_COLLECTIVE_TIMEOUT_S": "20"})
    assert worker.exit_code != 0
    assert leader.exit_code != 0, leader.logs  # the job fails instead of reporting success
    assert not (leader.opt_ml.model_dir / "xgboost-model.ubj").exists()
