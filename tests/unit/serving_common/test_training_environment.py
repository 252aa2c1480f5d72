"""TrainingEnvironment.load on real /opt/ml-like trees: config files, hosts, channels, folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving_common.training.environment import Channel, ConfigError, TrainingEnvironment, resolve_base

DATA_CONFIG = {
    "train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key",
              "RecordWrapperType": "None"},
    "validation": {"ContentType": "application/x-parquet", "TrainingInputMode": "Pipe",
                   "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"},
}


def test_full_configuration(opt_ml):
    base = opt_ml(
        hyperparameters={"max_depth": "5", "eta": "0.3", "objective": '"binary:logistic"'},
        inputdataconfig=DATA_CONFIG,
        resourceconfig={"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"],
                        "network_interface_name": "ethwe"},
        channels={"train": {"part-0.csv": "1,2\n", "nested/part-1.csv": "3,4\n"}, "validation": {"v.csv": "5,6"}},
    )
    env = TrainingEnvironment.load(base)
    assert env.base == base
    assert env.hyperparameters == {"max_depth": "5", "eta": "0.3", "objective": '"binary:logistic"'}
    assert env.hosts == ("algo-1", "algo-2", "algo-3")
    assert env.current_host == "algo-2"
    assert env.host_rank == 1
    assert not env.is_leader
    assert env.network_interface == "ethwe"
    train = env.channel("train")
    assert train == Channel("train", base / "input" / "data" / "train", "text/csv", "ShardedByS3Key", "File")
    assert env.channels["validation"].content_type == "application/x-parquet"
    assert env.channels["validation"].input_mode == "Pipe"
    assert env.channels["validation"].distribution == "FullyReplicated"
    assert train.files() == [train.path / "nested" / "part-1.csv", train.path / "part-0.csv"]
    assert env.model_dir == base / "model"
    assert env.output_data_dir == base / "output" / "data"
    assert env.failure_file == base / "output" / "failure"
    assert env.checkpoint_dir == base / "checkpoints"
    assert env.num_cpus >= 1


def test_leader_is_the_first_sorted_host(opt_ml):
    env = TrainingEnvironment.load(opt_ml(resourceconfig={"current_host": "algo-1", "hosts": ["algo-2", "algo-1"]}))
    assert env.is_leader and env.host_rank == 0


def test_missing_config_files_mean_a_single_host_job_without_hyperparameters(opt_ml):
    env = TrainingEnvironment.load(opt_ml())
    assert env.hyperparameters == {}
    assert env.channels == {}
    assert (env.hosts, env.current_host, env.is_leader) == (("algo-1",), "algo-1", True)
    assert env.network_interface == "eth0"


def test_current_host_defaults_to_the_first_host(opt_ml):
    env = TrainingEnvironment.load(opt_ml(resourceconfig={"hosts": ["algo-2", "algo-1"]}))
    assert env.current_host == "algo-1"


def test_current_host_must_be_among_the_hosts(opt_ml):
    with pytest.raises(ConfigError) as caught:
        TrainingEnvironment.load(opt_ml(resourceconfig={"current_host": "algo-9", "hosts": ["algo-1"]}))
    assert "algo-9" in str(caught.value)


def test_channels_from_folders_only(opt_ml):
    env = TrainingEnvironment.load(opt_ml(channels={"train": {"a.csv": "1"}, "test": {"b.csv": "2"}}))
    assert sorted(env.channels) == ["test", "train"]
    assert env.channels["train"].content_type is None
    assert env.channels["train"].distribution == "FullyReplicated"
    assert env.channels["train"].input_mode == "File"


def test_channels_from_inputdataconfig_without_folders(opt_ml):
    base = opt_ml(inputdataconfig={"train": {"ContentType": "text/csv"}})
    env = TrainingEnvironment.load(base)
    assert list(env.channels) == ["train"]
    assert env.channels["train"].path == base / "input" / "data" / "train"
    assert env.channels["train"].content_type == "text/csv"


def test_files_in_the_data_folder_are_not_channels(opt_ml):
    base = opt_ml(channels={"train": {"a": "1"}})
    (base / "input" / "data" / "train_0").write_text("a pipe-mode FIFO stands here")
    assert list(TrainingEnvironment.load(base).channels) == ["train"]


def test_missing_channel_error_names_it_and_the_given_ones(opt_ml):
    env = TrainingEnvironment.load(opt_ml(channels={"train": {"a": "1"}, "extra": {"b": "2"}}))
    with pytest.raises(ConfigError) as caught:
        env.channel("validation")
    assert "'validation'" in str(caught.value)
    assert "extra, train" in str(caught.value)
    empty = TrainingEnvironment.load(opt_ml(name="empty"))
    with pytest.raises(ConfigError, match="channels given: none"):
        empty.channel("train")


def test_non_string_hyperparameters_become_json_text(opt_ml):
    env = TrainingEnvironment.load(opt_ml(hyperparameters={"rounds": 10, "eta": 0.5, "flag": True, "list": [1, 2]}))
    assert env.hyperparameters == {"rounds": "10", "eta": "0.5", "flag": "true", "list": "[1, 2]"}


@pytest.mark.parametrize(("file_name", "text", "fragment"), [
    ("hyperparameters.json", "{not json", "hyperparameters.json is not valid JSON"),
    ("hyperparameters.json", '["a list"]', "must hold a JSON object"),
    ("resourceconfig.json", "", "resourceconfig.json is not valid JSON"),
    ("inputdataconfig.json", "{", "inputdataconfig.json is not valid JSON"),
])
def test_unreadable_config_is_a_config_error(opt_ml, file_name, text, fragment):
    base = opt_ml()
    (base / "input" / "config" / file_name).write_text(text)
    with pytest.raises(ConfigError) as caught:
        TrainingEnvironment.load(base)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_base_from_smkit_opt_ml(opt_ml, monkeypatch):
    base = opt_ml(resourceconfig={"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    monkeypatch.setenv("SMKIT_OPT_ML", str(base))
    assert resolve_base() == base
    assert TrainingEnvironment.load().hosts == ("algo-1", "algo-2")
    assert resolve_base(Path("/elsewhere")) == Path("/elsewhere")  # an explicit base wins
    monkeypatch.delenv("SMKIT_OPT_ML")
    assert resolve_base() == Path("/opt/ml")
