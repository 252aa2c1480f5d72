"""Real XGBoost trainings through the shared harness: the model files, metrics on stdout, early stopping,
checkpoints and resuming, the features channel, and the failures a user must be able to read."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xgboost

from serving_common.training.harness import run
from serving_common.training.metrics import metric_regex
from xgboost_container.hyperparameters import HYPERPARAMETERS
from xgboost_container.train import train

from .jobs import classification_table, csv_text, failure, metric_lines, metric_values, regression_table

FAST = {"nthread": "1", "max_depth": "3"}
NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def booster(base: Path) -> xgboost.Booster:
    with warnings.catch_warnings():  # "Unknown file format: ``. Using UBJSON": the SageMaker name has no suffix
        warnings.simplefilter("ignore")
        return xgboost.Booster(model_file=str(base / "model" / "xgboost-model.ubj"))


def meta(base: Path) -> dict:
    return json.loads((base / "model" / "xgboost-meta.json").read_text())


def checkpoints(base: Path) -> list[str]:
    folder = base / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_model_and_meta_are_saved_and_loadable(opt_ml, capsys):
    table = regression_table(300)
    base = opt_ml(hyperparameters={"num_round": "8", **FAST}, channels={"train": {"a.csv": csv_text(table)}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert sorted(p.name for p in (base / "model").iterdir()) == [
        "xgboost-forest.npz", "xgboost-meta.json", "xgboost-model.ubj"]
    assert not (base / "output" / "failure").exists()
    model = booster(base)
    assert model.num_boosted_rounds() == 8 and model.num_features() == 3
    assert meta(base) == {"num_features": 3, "objective": "reg:squarederror", "num_class": None, "rounds": 8,
                          "features_fingerprint": None}
    predictions = model.inplace_predict(table[:, 1:])
    assert np.sqrt(np.mean((predictions - table[:, 0]) ** 2)) < 0.5 * np.std(table[:, 0])  # it learned
    assert len(metric_lines(capsys.readouterr().out)) == 8  # one line per round on stdout


def test_multiclass_model(opt_ml):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    table = np.column_stack([np.digitize(x[:, 0], [-0.5, 0.5]), x])
    base = opt_ml(hyperparameters={"num_round": "4", "objective": "multi:softprob", "num_class": "3", **FAST},
                  channels={"train": {"a.csv": csv_text(table)}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert meta(base)["num_class"] == 3 and meta(base)["objective"] == "multi:softprob"
    probabilities = booster(base).inplace_predict(table[:, 1:])
    assert probabilities.shape == (300, 3)
    assert (probabilities.argmax(axis=1) == table[:, 0]).mean() > 0.9


def test_per_round_metric_lines_match_the_estimator_regex(opt_ml, capsys):
    base = opt_ml(hyperparameters={"num_round": "5", "objective": "binary:logistic", "eval_metric": "auc", **FAST},
                  channels={"train": {"a.csv": csv_text(classification_table(300, seed=1))},
                            "validation": {"v.csv": csv_text(classification_table(200, seed=2))}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    out = capsys.readouterr().out
    lines = metric_lines(out)
    assert len(lines) == 5
    for step, line in enumerate(lines):
        assert re.fullmatch(rf"\[{step}\]\ttrain-auc:{NUMBER}\tvalidation-auc:{NUMBER}", line), line
    validation = metric_values(out, "validation-auc")
    assert list(validation) == [0, 1, 2, 3, 4] and all(0.7 < v <= 1 for v in validation.values())

    pattern = re.compile(metric_regex("validation-auc"))
    matched = [m for m in map(pattern.match, out.splitlines()) if m]  # log lines around them never match
    assert [float(m.group(1)) for m in matched] == list(validation.values())
    train_pattern = re.compile(metric_regex("train-auc"))
    train_values = list(metric_values(out, "train-auc").values())
    assert [float(train_pattern.match(line).group(1)) for line in lines] == train_values
    cloudwatch = lines[3].replace("\t", "#011")  # as CloudWatch shows the line
    assert float(pattern.match(cloudwatch).group(1)) == validation[3]


def test_early_stopping_keeps_only_the_best_rounds(opt_ml, capsys):
    rng = np.random.default_rng(7)
    noise = regression_table(200, seed=5)
    noise[:, 0] = rng.normal(size=200)  # validation labels the features cannot explain: overfitting shows
    base = opt_ml(hyperparameters={"num_round": "60", "early_stopping_rounds": "3", "eta": "0.5", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(300))},
                            "validation": {"v.csv": csv_text(noise)}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    out = capsys.readouterr().out
    scores = metric_values(out, "validation-rmse")
    best = min(scores, key=lambda step: (scores[step], step))
    assert len(scores) == best + 1 + 3  # stopped 3 rounds after the best one
    assert booster(base).num_boosted_rounds() == best + 1 == meta(base)["rounds"] < 60
    assert f"early stopping: keeping the best {best + 1} of {best + 4} rounds" in out


def test_early_stopping_needs_a_validation_channel(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "5", "early_stopping_rounds": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(50))}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base) == "TrainingError: early_stopping_rounds needs a validation channel\n"
    assert not (base / "model" / "xgboost-model.ubj").exists()


def test_checkpoints_every_n_rounds_keep_the_two_newest(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "7", "checkpoint_frequency": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(100))}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert checkpoints(base) == ["xgboost-checkpoint.4", "xgboost-checkpoint.6"]  # no temporary files left
    for rounds in (4, 6):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = xgboost.Booster(model_file=str(base / "checkpoints" / f"xgboost-checkpoint.{rounds}"))
        assert saved.num_boosted_rounds() == rounds


def test_a_second_run_resumes_from_the_newest_checkpoint(opt_ml, capsys):
    channels = {"train": {"a.csv": csv_text(regression_table(200))}}
    straight = opt_ml(hyperparameters={"num_round": "9", **FAST}, channels=channels, name="straight")
    assert run(train, HYPERPARAMETERS, base=straight) == 0
    capsys.readouterr()

    base = opt_ml(hyperparameters={"num_round": "5", "checkpoint_frequency": "2", **FAST}, channels=channels)
    assert run(train, HYPERPARAMETERS, base=base) == 0  # a job stopped after 5 rounds (checkpoints 2 and 4)
    assert checkpoints(base) == ["xgboost-checkpoint.2", "xgboost-checkpoint.4"]
    capsys.readouterr()
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"num_round": "9", "checkpoint_frequency": "2", **FAST}))
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    out = capsys.readouterr().out
    assert "resuming from checkpoint xgboost-checkpoint.4 (4 rounds done)" in out
    assert list(metric_values(out, "train-rmse")) == [4, 5, 6, 7, 8]  # 5 new rounds, numbered on from 4
    assert booster(base).num_boosted_rounds() == 9 == meta(base)["rounds"]
    assert checkpoints(base) == ["xgboost-checkpoint.6", "xgboost-checkpoint.8"]
    features = regression_table(200)[:, 1:]
    np.testing.assert_allclose(booster(base).inplace_predict(features), booster(straight).inplace_predict(features),
                               rtol=0, atol=1e-5)  # the same model as one uninterrupted run


def test_a_torn_newest_checkpoint_is_skipped(opt_ml, capsys):
    base = opt_ml(hyperparameters={"num_round": "4", "checkpoint_frequency": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(100))}})
    assert run(train, HYPERPARAMETERS, base=base) == 0
    newest = base / "checkpoints" / "xgboost-checkpoint.4"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # half written
    capsys.readouterr()
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"num_round": "6", "checkpoint_frequency": "2", **FAST}))
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    out = capsys.readouterr().out
    assert "skipping unreadable checkpoint xgboost-checkpoint.4" in out
    assert "resuming from checkpoint xgboost-checkpoint.2 (2 rounds done)" in out
    assert list(metric_values(out, "train-rmse")) == [2, 3, 4, 5]
    assert booster(base).num_boosted_rounds() == 6


def test_only_garbage_checkpoints_start_from_scratch(opt_ml, capsys):
    base = opt_ml(hyperparameters={"num_round": "3", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(100))}})
    (base / "checkpoints").mkdir()
    (base / "checkpoints" / "xgboost-checkpoint.2").write_bytes(b"\x00garbage")
    (base / "checkpoints" / "xgboost-checkpoint.notanumber").write_bytes(b"{}")
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert list(metric_values(capsys.readouterr().out, "train-rmse")) == [0, 1, 2]
    assert booster(base).num_boosted_rounds() == 3


def test_a_checkpoint_past_num_round_is_cut_to_num_round(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "6", "checkpoint_frequency": "3", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(100))}})
    assert run(train, HYPERPARAMETERS, base=base) == 0
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"num_round": "4", **FAST}))
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert booster(base).num_boosted_rounds() == 4 == meta(base)["rounds"]


def test_the_features_fingerprint_is_recorded(opt_ml):
    features = {"fingerprint": "sha256:0123abcd", "features": ["a", "b", "c"]}
    base = opt_ml(hyperparameters={"num_round": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(50))},
                            "features": {"features.json": json.dumps(features)}},
                  inputdataconfig={"train": {"ContentType": "text/csv"},
                                   "features": {"ContentType": "application/json"}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert meta(base)["features_fingerprint"] == "sha256:0123abcd"


@pytest.mark.parametrize(("files", "reason"), [
    ({"other.json": "{}"}, "TrainingError: the features channel holds no features.json"),
    ({"features.json": "{}"}, "TrainingError: features.json of the features channel is unreadable"),
    ({"features.json": "not json"}, "TrainingError: features.json of the features channel is unreadable"),
])
def test_a_bad_features_channel_fails_clearly(opt_ml, files, reason):
    base = opt_ml(hyperparameters={"num_round": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(50))}, "features": files})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base).startswith(reason)


def test_validation_with_another_feature_count_fails(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "2", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(50, features=3))},
                            "validation": {"v.csv": csv_text(regression_table(20, features=2))}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base) == "TrainingError: the validation channel has 2 features, the train channel 3\n"
    assert not (base / "model" / "xgboost-model.ubj").exists()


def test_libsvm_validation_may_lack_the_highest_indices(opt_ml, capsys):
    train_text = "1 0:1 3:2\n0 1:1 2:5\n1 0:2 3:1\n0 2:3\n" * 10
    base = opt_ml(hyperparameters={"num_round": "2", **FAST},
                  channels={"train": {"a.libsvm": train_text}, "validation": {"v.libsvm": "1 0:1\n0 1:2\n"}})
    assert run(train, HYPERPARAMETERS, base=base) == 0, failure(base)
    assert meta(base)["num_features"] == 4
    assert len(metric_values(capsys.readouterr().out, "validation-rmse")) == 2


def test_libsvm_validation_with_an_index_past_train_fails(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "2", **FAST},
                  channels={"train": {"a.libsvm": "1 0:1 3:2\n0 1:1\n"}, "validation": {"v.libsvm": "1 5:1\n"}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base) == "TrainingError: the validation channel has 6 features, the train channel 4\n"


@pytest.mark.parametrize(("channels", "reason"), [
    ({"train": {"a.csv": ""}}, "TrainingError: the train channel holds no rows"),
    ({"validation": {"v.csv": "1,2\n"}}, "ConfigError: the training job needs a 'train' channel"),
    ({"train": {"a.csv": "1,2\nnan,3\n"}}, "TrainingError: channel train: labels must be finite numbers"),
    ({"train": {"a.csv": "1,2\n0,x\n"}}, "TrainingError: a.csv, line 2: 'x' is not a number"),
])
def test_bad_data_fails_the_job_with_a_clear_reason(opt_ml, channels, reason):
    base = opt_ml(hyperparameters={"num_round": "2", **FAST}, channels=channels)
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base).startswith(reason), failure(base)
    assert sorted(p.name for p in (base / "model").iterdir()) == []  # nothing half-written


def test_sigterm_stops_at_the_next_round_with_a_checkpoint(opt_ml):
    import os
    import signal
    import threading

    base = opt_ml(hyperparameters={"num_round": "100000", "checkpoint_frequency": "99999", **FAST},
                  channels={"train": {"a.csv": csv_text(regression_table(300))}})
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))  # StopTrainingJob, mid-training
    timer.start()
    try:
        assert run(train, HYPERPARAMETERS, base=base) == 1
    finally:
        timer.cancel()
    reason = failure(base)
    assert reason.startswith("Stopped: the job received SIGTERM"), reason
    rounds = int(re.search(r"stopped after round (\d+)", reason).group(1))
    assert 0 < rounds < 100000
    assert checkpoints(base) == [f"xgboost-checkpoint.{rounds}"]  # written at the stop, not at the frequency
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = xgboost.Booster(model_file=str(base / "checkpoints" / f"xgboost-checkpoint.{rounds}"))
    assert saved.num_boosted_rounds() == rounds
    assert not any((base / "model").iterdir())  # no model, no staging folder
