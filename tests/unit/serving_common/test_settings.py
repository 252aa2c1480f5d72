"""Settings.from_env: every SageMaker variable, its default, its parsing and its error message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving_common import settings as s
from serving_common.settings import Settings, SettingsError


def test_defaults_of_an_empty_environment():
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.workers == (os.cpu_count() or 1)
    assert settings.timeout_s == 60
    assert settings.default_accept is None
    assert settings.max_payload_mb == 6.0
    assert settings.max_payload_bytes == 6 * 1024 * 1024
    assert settings.program == "inference.py"
    assert settings.submit_directory is None
    assert settings.batch is False
    assert settings.batch_strategy is None  # unset: /execution-parameters leaves it out
    assert settings.max_concurrent_transforms is None
    assert settings.multi_model is False
    assert settings.safe_port_range is None
    assert settings.model_dir == Path("/opt/ml/model")
    assert settings.models_dir == Path("/opt/ml/models")
    assert settings.worker_user is None
    assert settings.log_level == "INFO"
    assert settings.inline_predictions is True


def test_blank_values_mean_the_default():
    env = {name: "  " for name in (s.BIND_TO_PORT, s.MODEL_SERVER_WORKERS, s.MODEL_SERVER_TIMEOUT,
                                   s.MAX_PAYLOAD_IN_MB, s.PROGRAM, s.BATCH, s.BATCH_STRATEGY,
                                   s.DEFAULT_INVOCATIONS_ACCEPT, s.SAFE_PORT_RANGE, s.MODEL_DIR)}
    assert Settings.from_env(env) == Settings.from_env({})


def test_every_variable_is_read():
    env = {
        "SAGEMAKER_BIND_TO_PORT": "9001",
        "SAGEMAKER_SAFE_PORT_RANGE": "29000-29999",
        "SAGEMAKER_MODEL_SERVER_WORKERS": " 3 ",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "120",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code",
        "SAGEMAKER_BATCH": "True",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
        "SAGEMAKER_MULTI_MODEL": "true",
        "SM_MODEL_DIR": "/tmp/model",
        "SMKIT_WORKER_USER": "model-server",
        "SMKIT_LOG_LEVEL": "debug",
        "SMKIT_INLINE_PREDICTIONS": "false",
    }
    settings = Settings.from_env(env)
    assert settings.port == 9001
    assert settings.safe_port_range == (29000, 29999)
    assert settings.workers == 3
    assert settings.timeout_s == 120
    assert settings.default_accept == "text/csv"
    assert settings.max_payload_mb == 100.0
    assert settings.max_payload_bytes == 100 * 1024 * 1024
    assert settings.program == "serve.py"
    assert settings.submit_directory == Path("/opt/ml/code")
    assert settings.batch is True
    assert settings.batch_strategy == "SINGLE_RECORD"
    assert settings.max_concurrent_transforms == 4
    assert settings.multi_model is True
    assert settings.model_dir == Path("/tmp/model")
    assert settings.worker_user == "model-server"
    assert settings.log_level == "DEBUG"
    assert settings.inline_predictions is False


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "8123")
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "5")
    settings = Settings.from_env()
    assert (settings.port, settings.workers) == (8123, 5)


def test_fractional_payload_limit():
    settings = Settings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.5"})
    assert settings.max_payload_bytes == 512 * 1024


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", " True "])
def test_true_booleans(raw):
    assert Settings.from_env({"SAGEMAKER_BATCH": raw, "SAGEMAKER_MULTI_MODEL": raw}).batch is True
    assert Settings.from_env({"SAGEMAKER_MULTI_MODEL": raw}).multi_model is True


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", ""])
def test_false_booleans(raw):
    assert Settings.from_env({"SAGEMAKER_BATCH": raw}).batch is False
    assert Settings.from_env({"SAGEMAKER_MULTI_MODEL": raw}).multi_model is False


def test_zero_concurrent_transforms_means_unset():
    assert Settings.from_env({"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "0"}).max_concurrent_transforms is None


@pytest.mark.parametrize(("raw", "strategy"), [
    ("single_record", "SINGLE_RECORD"), ("MULTI_RECORD", "MULTI_RECORD"),
    ("SingleRecord", "SINGLE_RECORD"), ("MultiRecord", "MULTI_RECORD"),  # the CreateTransformJob spelling
    (" ", None)])
def test_batch_strategy_is_normalised_to_the_container_spelling(raw, strategy):
    assert Settings.from_env({"SAGEMAKER_BATCH_STRATEGY": raw}).batch_strategy == strategy


def test_file_url_submit_directory_is_a_local_path():
    settings = Settings.from_env({"SAGEMAKER_SUBMIT_DIRECTORY": "file:///opt/ml/model/code"})
    assert settings.submit_directory == Path("/opt/ml/model/code")


def test_s3_submit_directory_is_ignored():
    settings = Settings.from_env({"SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/code/sourcedir.tar.gz"})
    assert settings.submit_directory is None


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SAGEMAKER_BIND_TO_PORT", "http", "not an integer"),
    ("SAGEMAKER_BIND_TO_PORT", "0", ">= 1"),
    ("SAGEMAKER_BIND_TO_PORT", "65536", "not a valid port"),
    ("SAGEMAKER_BIND_TO_PORT", "80.5", "not an integer"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", ">= 1"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "-2", ">= 1"),
    ("SAGEMAKER_MODEL_SERVER_WORKERS", "four", "not an integer"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0", ">= 1"),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "1m", "not an integer"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0", "> 0"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "-6", "> 0"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6MB", "not a number"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "nan", "> 0"),
    ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "inf", "finite"),
    ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "-1", ">= 0"),
    ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "many", "not an integer"),
    ("SAGEMAKER_BATCH", "maybe", "not a boolean"),
    ("SAGEMAKER_MULTI_MODEL", "enabled", "not a boolean"),
    ("SMKIT_INLINE_PREDICTIONS", "sometimes", "not a boolean"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "29000", "LOW-HIGH"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "a-b", "LOW-HIGH"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "1-2-3", "LOW-HIGH"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "30000-29000", "not a valid port range"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "0-100", "not a valid port range"),
    ("SAGEMAKER_SAFE_PORT_RANGE", "100-70000", "not a valid port range"),
    ("SAGEMAKER_BATCH_STRATEGY", "EVERYTHING", "MULTI_RECORD or SINGLE_RECORD"),
    ("SMKIT_OUTPUT_LABEL", "label", "SMKIT_OUTPUT_LABEL='label' is not a boolean (true/false)"),
    ("SMKIT_RECORD_ERRORS", "skip", "SMKIT_RECORD_ERRORS='skip' is not one of fail, line"),
    ("SMKIT_MAX_MISSING_FIELDS", "some", "SMKIT_MAX_MISSING_FIELDS='some' is not an integer"),
    ("SMKIT_UNKNOWN_FIELDS", "loud", "SMKIT_UNKNOWN_FIELDS='loud' is not one of error, warn, ignore"),
    ("SMKIT_MME_MEMORY_BUDGET_MB", "lots", "SMKIT_MME_MEMORY_BUDGET_MB='lots' is not a number"),
    ("SMKIT_ACCESS_LOG", "loud", "SMKIT_ACCESS_LOG='loud' is not a boolean"),
    ("SMKIT_LOG_LEVEL", "chatty", "SMKIT_LOG_LEVEL='CHATTY' is not one of"),
])
def test_invalid_values_name_the_variable(name, value, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_port_boundaries_are_accepted():
    assert Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "1"}).port == 1
    assert Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "65535"}).port == 65535
    assert Settings.from_env({"SAGEMAKER_SAFE_PORT_RANGE": "1-65535"}).safe_port_range == (1, 65535)
    assert Settings.from_env({"SAGEMAKER_SAFE_PORT_RANGE": " 29000 - 29000 "}).safe_port_range == (29000, 29000)


def test_log_level_is_validated():
    assert Settings.from_env({"SMKIT_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(SettingsError, match="SMKIT_LOG_LEVEL"):
        Settings.from_env({"SMKIT_LOG_LEVEL": "chatty"})


def test_record_rule_overrides_only_what_the_environment_sets():
    record_rule_overrides = s.record_rule_overrides
    assert record_rule_overrides({}) == {}
    assert record_rule_overrides({"SMKIT_MAX_MISSING_FIELDS": "auto"}) == {"max_missing_fields": None}
    assert record_rule_overrides({"SMKIT_MAX_MISSING_FIELDS": "2", "SMKIT_UNKNOWN_FIELDS": "Error"}) == {
        "max_missing_fields": 2, "unknown_fields": "error"}
    for env, message in (({"SMKIT_MAX_MISSING_FIELDS": "-1"}, "must be >= 0"),
                         ({"SMKIT_MAX_MISSING_FIELDS": "many"}, "is not an integer"),
                         ({"SMKIT_UNKNOWN_FIELDS": "loud"}, "is not one of error, warn, ignore")):
        with pytest.raises(SettingsError, match=message):
            record_rule_overrides(env)


def test_the_preprocess_variables_are_settings():
    assert (Settings.from_env({}).output_label, Settings.from_env({}).record_errors) == (False, "fail")
    assert Settings.from_env({}).record_overrides == {}
    settings = Settings.from_env({"SMKIT_OUTPUT_LABEL": "True", "SMKIT_RECORD_ERRORS": " Line ",
                                  "SMKIT_MAX_MISSING_FIELDS": "auto", "SMKIT_UNKNOWN_FIELDS": "error"})
    assert settings.output_label is True
    assert settings.record_errors == "line"
    assert settings.record_overrides == {"max_missing_fields": None, "unknown_fields": "error"}
    assert Settings.from_env({"SMKIT_OUTPUT_LABEL": "0", "SMKIT_RECORD_ERRORS": "fail"}).output_label is False


def test_worker_index_is_read_when_asked(monkeypatch):
    assert s.worker_index({}) is None
    assert s.worker_index({"SMKIT_WORKER_INDEX": " 3 "}) == 3
    monkeypatch.setenv("SMKIT_WORKER_INDEX", "1")  # as the model server sets it in each worker
    assert s.worker_index() == 1
    for value, message in (("-1", "SMKIT_WORKER_INDEX=-1 must be >= 0"), ("one", "'one' is not an integer")):
        with pytest.raises(SettingsError, match=message):
            s.worker_index({"SMKIT_WORKER_INDEX": value})


# -- training ---------------------------------------------------------------------------------------------


def test_training_defaults_of_an_empty_environment():
    assert s.TrainingSettings.from_env({}) == s.TrainingSettings(
        program=None, training_module=None, job_name=None, region="", pip_wheelhouse=None, pip_index_url=None,
        collective_timeout_s=1800)
    assert s.training_base_dir({}) == Path("/opt/ml")


def test_every_training_variable_is_read(monkeypatch):
    settings = s.TrainingSettings.from_env({
        "SAGEMAKER_PROGRAM": "train.py",
        "SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main",
        "TRAINING_JOB_NAME": "job-1",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SMKIT_PIP_WHEELHOUSE": " /wheels ",
        "SMKIT_PIP_INDEX_URL": "http://mirror/simple",
        "SMKIT_COLLECTIVE_TIMEOUT_S": "20",
    })
    assert settings == s.TrainingSettings(
        program="train.py", training_module="sagemaker_pytorch_container.training:main", job_name="job-1",
        region="eu-west-1", pip_wheelhouse="/wheels", pip_index_url="http://mirror/simple", collective_timeout_s=20)
    assert s.TrainingSettings.from_env({"AWS_DEFAULT_REGION": "us-east-1"}).region == "us-east-1"
    assert s.training_base_dir({"SMKIT_OPT_ML": "/tmp/job"}) == Path("/tmp/job")
    monkeypatch.setenv("SMKIT_OPT_ML", "/tmp/elsewhere")
    monkeypatch.setenv("SMKIT_COLLECTIVE_TIMEOUT_S", "30")
    assert s.training_base_dir() == Path("/tmp/elsewhere")
    assert s.TrainingSettings.from_env().collective_timeout_s == 30


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "SMKIT_COLLECTIVE_TIMEOUT_S='soon' is not a whole number of seconds"),
    ("1.5", "SMKIT_COLLECTIVE_TIMEOUT_S='1.5' is not a whole number of seconds"),
    ("0", "SMKIT_COLLECTIVE_TIMEOUT_S must be at least 1 second"),
])
def test_a_bad_collective_timeout_is_refused_naming_it(value, message):
    with pytest.raises(SettingsError) as caught:
        s.TrainingSettings.from_env({"SMKIT_COLLECTIVE_TIMEOUT_S": value})
    assert str(caught.value) == message
