"""The XGBoost hyperparameters: SageMaker's names and quoting, checks, and the parameters XGBoost gets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xgboost

from serving_common.training.harness import run
from serving_common.training.hyperparameters import HyperparameterError, parse
from xgboost_container.hyperparameters import HYPERPARAMETERS, booster_params
from xgboost_container.train import train

from .jobs import csv_text, failure, regression_table


def values(**raw: str) -> dict:
    return parse(HYPERPARAMETERS, raw)


def test_sdk_quoted_values_are_typed():
    hp = values(num_round='"25"', objective='"binary:logistic"', eta='"0.1"', max_depth="5.0",
                eval_metric='["auc", "logloss"]', subsample="0.8", early_stopping_rounds="3",
                sagemaker_container_log_level="20", _tuning_objective_metric='"validation:auc"')
    assert hp["num_round"] == 25 and isinstance(hp["num_round"], int)
    assert hp["objective"] == "binary:logistic"
    assert hp["eta"] == 0.1
    assert hp["max_depth"] == 5 and isinstance(hp["max_depth"], int)
    assert hp["eval_metric"] == ["auc", "logloss"]
    assert hp["subsample"] == 0.8
    assert hp["early_stopping_rounds"] == 3
    assert "sagemaker_container_log_level" not in hp and "_tuning_objective_metric" not in hp


def test_defaults():
    hp = values(num_round="10")
    assert hp["objective"] == "reg:squarederror"
    assert hp["tree_method"] == "hist"
    assert hp["checkpoint_frequency"] == 10
    assert hp["eval_metric"] is None and hp["num_class"] is None and hp["early_stopping_rounds"] is None


def test_comma_separated_eval_metric():
    assert values(num_round="1", eval_metric="rmse, mae")["eval_metric"] == ["rmse", "mae"]


def test_num_round_is_required():
    with pytest.raises(HyperparameterError, match="hyperparameter num_round is required"):
        values(objective="reg:squarederror")


def test_unknown_hyperparameter_lists_the_known_ones():
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter 'n_estimators'.*num_round"):
        values(num_round="1", n_estimators="5")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("objective", "binary:logistics", "must be one of"),
    ("grow_policy", "bestfirst", "must be one of"),
    ("eta", "1.5", "eta=1.5 must be <= 1"),
    ("eta", "-0.1", "must be >= 0"),
    ("subsample", "0", "subsample=0.0 must be >= 1e-09"),
    ("max_depth", "-1", "must be >= 0"),
    ("max_depth", "2.5", "is not a valid int"),
    ("num_class", "1", "num_class=1 must be >= 2"),
    ("max_bin", "1", "must be >= 2"),
    ("verbosity", "4", "must be <= 3"),
    ("early_stopping_rounds", "0", "must be >= 1"),
    ("checkpoint_frequency", "0", "must be >= 1"),
    ("lambda", "nan", "is not a valid float"),
])
def test_choices_and_ranges(name, value, message):
    raw = {"num_round": "10", name: value}
    with pytest.raises(HyperparameterError, match=message):
        parse(HYPERPARAMETERS, raw)


def test_num_round_must_be_positive():
    with pytest.raises(HyperparameterError, match="num_round=0 must be >= 1"):
        values(num_round="0")


@pytest.mark.parametrize("objective", ["multi:softmax", "multi:softprob"])
def test_multi_objectives_need_num_class(objective):
    with pytest.raises(ValueError, match=f"objective {objective} needs the num_class hyperparameter"):
        booster_params(values(num_round="1", objective=objective))
    assert booster_params(values(num_round="1", objective=objective, num_class="3"))["num_class"] == 3


def test_quantile_objective_needs_quantile_alpha():
    with pytest.raises(ValueError, match="objective reg:quantileerror needs the quantile_alpha hyperparameter"):
        booster_params(values(num_round="1", objective="reg:quantileerror"))
    params = booster_params(values(num_round="1", objective="reg:quantileerror", quantile_alpha="0.9"))
    assert params["quantile_alpha"] == 0.9
    with pytest.raises(HyperparameterError, match=r"quantile_alpha=1\.0 must be <="):
        values(num_round="1", quantile_alpha="1")


def test_unknown_eval_metric_is_refused():
    with pytest.raises(ValueError, match=r"unknown eval_metric \['accuracy'\]; known: rmse, "):
        booster_params(values(num_round="1", eval_metric="auc,accuracy"))


@pytest.mark.parametrize("metric", ["ndcg@5", "error@0.7", "map@3-", "pre@10", "tweedie-nloglik@1.5", "quantile"])
def test_parametrised_and_late_metrics_are_known(metric):
    assert booster_params(values(num_round="1", eval_metric=metric))["eval_metric"] == [metric]


def test_booster_params_leave_out_unset_optionals_and_loop_only_keys():
    params = booster_params(values(num_round="10", early_stopping_rounds="2", checkpoint_frequency="5"))
    for left_out in ("num_round", "early_stopping_rounds", "checkpoint_frequency", "eval_metric",  # loop only
                     "num_class", "quantile_alpha", "base_score", "nthread"):  # unset optionals
        assert left_out not in params
    assert params["objective"] == "reg:squarederror"
    assert params["max_depth"] == 6 and params["eta"] == 0.3 and params["lambda"] == 1.0
    assert set(params) == {"objective", "max_depth", "eta", "gamma", "min_child_weight", "max_delta_step",
                           "subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode", "lambda",
                           "alpha", "tree_method", "grow_policy", "max_leaves", "max_bin", "num_parallel_tree",
                           "seed", "verbosity", "booster", "process_type"}
    # scale_pos_weight: XGBoost's default 1 is left to XGBoost; the other optional ones only when set


def test_scale_pos_weight_only_when_not_xgboosts_default():
    assert "scale_pos_weight" not in booster_params(values(num_round="1", scale_pos_weight="1"))
    assert booster_params(values(num_round="1", scale_pos_weight="3"))["scale_pos_weight"] == 3.0


def test_booster_params_carry_set_optionals_and_metrics():
    params = booster_params(values(num_round="3", eval_metric="auc,logloss", base_score="0.5", nthread="2"))
    assert params["eval_metric"] == ["auc", "logloss"]
    assert params["base_score"] == 0.5 and params["nthread"] == 2


def test_xgboost_uses_every_parameter_it_gets():
    """XGBoost warns about parameters it does not know (e.g. num_round): booster_params passes none."""
    params = booster_params(values(num_round="3", eval_metric="rmse", nthread="1", base_score="0.1"))
    rng = np.random.default_rng(0)
    dtrain = xgboost.DMatrix(rng.normal(size=(50, 2)), label=rng.normal(size=50))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xgboost.train(params, dtrain, num_boost_round=2, evals=[(dtrain, "train")], verbose_eval=False)
    assert not [str(w.message) for w in caught if "not used" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # the check itself works: a stray key is reported
        warnings.simplefilter("always")
        xgboost.train({**params, "num_round": 3}, dtrain, num_boost_round=1)
    assert any("num_round" in str(w.message) for w in caught)


@pytest.mark.filterwarnings("error:(?s).*are not used")
def test_objectives_and_metrics_are_xgboosts():
    """A sample of the declared names, each accepted by XGBoost itself."""
    rng = np.random.default_rng(0)
    dtrain = xgboost.DMatrix(rng.normal(size=(20, 2)), label=rng.integers(0, 2, size=20).astype(float))
    for objective in ("reg:squarederror", "binary:logistic", "count:poisson", "rank:ndcg", "reg:quantileerror"):
        extra = {"quantile_alpha": "0.5"} if objective == "reg:quantileerror" else {}
        params = booster_params(values(num_round="1", objective=objective, nthread="1", **extra))
        xgboost.train(params, dtrain, num_boost_round=1)
    for metric in ("rmse", "auc", "logloss", "quantile", "error@0.6", "ndcg@3"):
        extra = {"objective": "reg:quantileerror", "quantile_alpha": "0.5"} if metric == "quantile" else {}
        params = booster_params(values(num_round="1", eval_metric=metric, nthread="1", **extra))
        xgboost.train(params, dtrain, num_boost_round=1, evals=[(dtrain, "t")], verbose_eval=False)


@pytest.mark.parametrize(("hyperparameters", "reason"), [
    ({"num_round": "2", "objective": "multi:softmax"},
     "TrainingError: objective multi:softmax needs the num_class hyperparameter"),
    ({"num_round": "2", "eval_metric": "accuracy"}, "TrainingError: unknown eval_metric ['accuracy']"),
    ({"num_round": "2", "eta": "2"}, "HyperparameterError: hyperparameter eta=2.0 must be <= 1"),
    ({"objective": "reg:squarederror"}, "HyperparameterError: hyperparameter num_round is required"),
])
def test_bad_hyperparameters_fail_the_job_with_a_clear_reason(opt_ml, hyperparameters, reason):
    base = opt_ml(hyperparameters=hyperparameters, channels={"train": {"a.csv": csv_text(regression_table(20))}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert failure(base).startswith(reason)
    assert not (base / "model" / "xgboost-model.ubj").exists()
