"""The training contract, black-box through `docker run IMAGE train` on an /opt/ml tree. Runs for every image."""

from __future__ import annotations

import json

from local_test.docker_run import OptMl, train


def test_training_writes_a_model_and_no_failure(trained):
    files = sorted(p.name for p in trained.model_dir.iterdir())
    assert files and not any(name.startswith(".staging") for name in files)
    assert trained.failure is None


def _job(descriptor, tmp_path, **hyperparameters) -> OptMl:
    opt_ml = OptMl(tmp_path / "opt_ml", {**descriptor.hyperparameters, **hyperparameters})
    descriptor.write_training_data(opt_ml)
    return opt_ml


def test_sdk_encoded_and_reserved_hyperparameters_are_accepted(docker, image, descriptor, tmp_path):
    opt_ml = _job(descriptor, tmp_path)
    opt_ml.hyperparameters = {
        **{name: json.dumps(value) for name, value in descriptor.hyperparameters.items()},  # as the SDK sends them
        "sagemaker_job_name": json.dumps("contract-job"),
        "sagemaker_container_log_level": "20",
        "_tuning_objective_metric": "validation:auc",
    }
    result = train(docker, image, opt_ml)
    assert result.exit_code == 0, result.logs
    assert any(opt_ml.model_dir.iterdir())


def test_unknown_hyperparameter_fails_with_a_reason_and_no_model(docker, image, descriptor, tmp_path):
    result = train(docker, image, _job(descriptor, tmp_path, no_such_knob="3"))
    assert result.exit_code != 0
    assert "no_such_knob" in (result.opt_ml.failure or "")
    assert not any(result.opt_ml.model_dir.iterdir())


def test_missing_train_channel_fails_with_a_reason(docker, image, descriptor, tmp_path):
    opt_ml = OptMl(tmp_path / "opt_ml", descriptor.hyperparameters)
    result = train(docker, image, opt_ml)
    assert result.exit_code != 0
    assert "train" in (result.opt_ml.failure or "")
    assert not any(result.opt_ml.model_dir.iterdir())


def test_unreadable_data_fails_with_a_reason(docker, image, descriptor, tmp_path):
    opt_ml = OptMl(tmp_path / "opt_ml", descriptor.hyperparameters)
    (opt_ml.channel_dir("train") / "data.csv").write_bytes(b"\x00\xff\xfe garbage \x00\n\x01,\x02\n")
    (opt_ml.channel_dir("train") / "data.jsonl").write_text('{"a": 1}\n{not json\n')
    result = train(docker, image, opt_ml)
    assert result.exit_code != 0
    assert result.opt_ml.failure and len(result.opt_ml.failure) < 1100
    assert not any(result.opt_ml.model_dir.iterdir())
