"""The command line: arguments, the exit status, and the /opt/ml tree a training check writes."""

import json
from pathlib import Path

import pytest

from smkit_contract import cli
from smkit_contract.training import Channel, write_tree


def test_payload_argument(tmp_path):
    body = tmp_path / "rows.csv"
    body.write_bytes(b"1,2\n")
    payload = cli._payload(f"{body}:text/csv; charset=utf-8")
    assert (payload.body, payload.content_type, payload.source) == (b"1,2\n", "text/csv; charset=utf-8", "rows.csv")
    with pytest.raises(cli.UsageError, match="FILE:CONTENT_TYPE"):
        cli._payload(str(body))
    with pytest.raises(cli.UsageError, match="not a media type"):
        cli._payload(f"{body}:csv")
    with pytest.raises(cli.UsageError, match="No such file"):
        cli._payload(f"{tmp_path / 'missing'}:text/csv")


def test_channel_argument_with_and_without_a_content_type(tmp_path):
    assert cli._channel(f"train={tmp_path}") == Channel("train", tmp_path, None)
    assert cli._channel(f"train={tmp_path}:text/csv") == Channel("train", tmp_path, "text/csv")
    with pytest.raises(cli.UsageError, match="not a directory"):
        cli._channel(f"train={tmp_path / 'missing'}")
    with pytest.raises(cli.UsageError, match="NAME=DIR"):
        cli._channel(str(tmp_path))


def test_hyperparameters_become_strings_as_sagemaker_sends_them(tmp_path):
    assert cli._hyperparameters('{"num_round": 20, "objective": "binary:logistic", "flag": true}', "--h") == {
        "num_round": "20", "objective": "binary:logistic", "flag": "true"}
    file = tmp_path / "hp.json"
    file.write_text('{"eta": 0.1}')
    assert cli._hyperparameters(f"@{file}", "--h") == {"eta": "0.1"}
    with pytest.raises(cli.UsageError, match="JSON object"):
        cli._hyperparameters("[1, 2]", "--h")
    with pytest.raises(cli.UsageError, match="--h"):
        cli._hyperparameters("{not json", "--h")


def test_nothing_to_check_is_a_usage_error_with_status_2(capsys):
    assert cli.main(["some/image:1"]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_serving_without_a_model_is_a_usage_error(tmp_path, capsys):
    body = tmp_path / "b.json"
    body.write_text("{}")
    assert cli.main(["some/image:1", "--payload", f"{body}:application/json"]) == 2
    assert "--model-dir" in capsys.readouterr().err


def test_training_tree_is_laid_out_as_sagemaker_does(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.csv").write_text("1,0.5\n")
    job = write_tree(tmp_path / "job", {"num_round": "3"}, [Channel("train", data, "text/csv"),
                                                          Channel("validation", data, None)])
    config = job.root / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text()) == {"num_round": "3"}
    assert json.loads((config / "inputdataconfig.json").read_text()) == {
        "train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None",
                  "ContentType": "text/csv"},
        "validation": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                       "RecordWrapperType": "None"}}
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert (job.root / "input" / "data" / "validation" / "part-0.csv").read_text() == "1,0.5\n"
    assert job.model_files() == [] and job.failure is None
    assert (job.root / "output" / "data").is_dir()


def test_a_garbage_tree_holds_no_caller_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.csv").write_text("1,0.5\n")
    job = write_tree(tmp_path / "job", {}, [Channel("train", data)], garbage=True)
    assert [p.name for p in (job.root / "input" / "data" / "train").iterdir()] == ["data"]
    assert Path(data / "part-0.csv").read_text() == "1,0.5\n"


def test_env_argument():
    assert cli._env("SAGEMAKER_PROGRAM=serve.py") == ("SAGEMAKER_PROGRAM", "serve.py")
    assert cli._env("EMPTY=") == ("EMPTY", "")
    with pytest.raises(cli.UsageError, match="NAME=VALUE"):
        cli._env("NOVALUE")
