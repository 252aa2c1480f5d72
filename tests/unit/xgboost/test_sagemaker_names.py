"""Every hyperparameter SageMaker's XGBoost algorithm documents is implemented or refused as not supported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xgboost

from serving_common.training.harness import run
from serving_common.training.hyperparameters import HyperparameterError, describe, parse
from xgboost_container.hyperparameters import HYPERPARAMETERS, booster_params
from xgboost_container.train import train

from .jobs import csv_text, failure, regression_table

# Each name the algorithm's documentation and its hyperparameter validation list, with a valid value and
# what it needs around it (an objective, a booster) to take effect.
IMPLEMENTED = {
    "num_round": ("3", {}), "num_class": ("3", {"objective": "multi:softprob"}), "alpha": ("0.1", {}),
    "base_score": ("0.4", {}), "booster": ("dart", {}), "colsample_bylevel": ("0.9", {}),
    "colsample_bynode": ("0.9", {}), "colsample_bytree": ("0.9", {}), "eta": ("0.2", {}), "gamma": ("0.1", {}),
    "grow_policy": ("lossguide", {}), "interaction_constraints": ("[[0, 1], [2]]", {}), "lambda": ("2", {}),
    "max_bin": ("64", {}), "max_cat_to_onehot": ("4", {}), "max_delta_step": ("1", {}), "max_depth": ("3", {}),
    "max_leaves": ("4", {}), "min_child_weight": ("2", {}), "monotone_constraints": ("(1,0,-1)", {}),
    "normalize_type": ("forest", {"booster": "dart"}), "nthread": ("1", {}), "num_parallel_tree": ("2", {}),
    "objective": ("reg:linear", {}), "one_drop": ("1", {"booster": "dart"}), "process_type": ("default", {}),
    "rate_drop": ("0.1", {"booster": "dart"}), "refresh_leaf": ("1", {}),
    "sample_type": ("weighted", {"booster": "dart"}), "sampling_method": ("gradient_based", {}),
    "scale_pos_weight": ("2", {"objective": "binary:logistic"}), "seed": ("3", {}),
    "seed_per_iteration": ("true", {}), "skip_drop": ("0.5", {"booster": "dart"}), "subsample": ("0.8", {}),
    "tree_method": ("approx", {}), "tweedie_variance_power": ("1.5", {"objective": "reg:tweedie"}),
    "updater": ("grow_quantile_histmaker,prune", {}), "verbosity": ("0", {}), "silent": ("1", {}),
    "aft_loss_distribution": ("logistic", {"objective": "survival:aft"}),
    "aft_loss_distribution_scale": ("1.2", {"objective": "survival:aft"}),
    "eval_metric": ("mae", {}), "early_stopping_rounds": ("2", {}), "csv_weights": ("1", {}),
    "predictor": ("cpu_predictor", {}), "use_dask_gpu_training": ("false", {}),
    "learning_rate": ("0.2", {}), "min_split_loss": ("0.1", {}), "reg_lambda": ("2", {}), "reg_alpha": ("0.1", {}),
}
NOT_SUPPORTED = {
    "sketch_eps": "0.03", "lambda_bias": "0.1", "dsplit": "row", "single_precision_histogram": "true",
    "deterministic_histogram": "true", "prob_buffer_row": "1.5", "save_model_on_termination": "true",
    "_kfold": "5", "_num_cv_round": "2",
}
NOT_SUPPORTED_VALUES = {"tree_method": "gpu_hist", "process_type": "update", "predictor": "gpu_predictor",
                        "use_dask_gpu_training": "true"}


def _data(objective: str) -> xgboost.DMatrix:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    label = (x[:, 0] > 0).astype(float) if objective.startswith(("binary", "multi")) else np.abs(x[:, 0]) + 0.1
    dtrain = xgboost.DMatrix(x, label=label)
    if objective == "survival:aft":
        dtrain.set_float_info("label_lower_bound", label)
        dtrain.set_float_info("label_upper_bound", label + 1)
    return dtrain


@pytest.mark.parametrize("name", sorted(IMPLEMENTED))
def test_each_implemented_name_reaches_xgboost_which_uses_it(name):
    value, context = IMPLEMENTED[name]
    raw = {"num_round": "2", **context, name: value}
    params = booster_params(parse(HYPERPARAMETERS, raw))
    objective = params["objective"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xgboost.train(params, _data(objective), num_boost_round=2)
    unused = [str(w.message) for w in caught if "not used" in str(w.message)]
    assert not unused, unused


def test_what_the_loop_does_itself_and_the_renamed_ones():
    params = booster_params(parse(HYPERPARAMETERS, {"num_round": "2", "silent": "1", "learning_rate": "0.05",
                                                    "reg_alpha": "0.5", "objective": "reg:linear",
                                                    "monotone_constraints": "[1, 0, -1]",
                                                    "interaction_constraints": "[0, 1],[2]"}))
    assert params["verbosity"] == 0 and params["eta"] == 0.05 and params["alpha"] == 0.5
    assert params["objective"] == "reg:squarederror"
    assert params["monotone_constraints"] == "(1,0,-1)" and params["interaction_constraints"] == "[[0, 1], [2]]"
    assert not {"silent", "learning_rate", "reg_alpha", "csv_weights", "predictor"} & set(params)


@pytest.mark.parametrize(("name", "value"), [("monotone_constraints", "(1,2)"), ("monotone_constraints", "up"),
                                             ("interaction_constraints", "[[0,-1]]"),
                                             ("interaction_constraints", "0,1")])
def test_malformed_constraints_are_refused(name, value):
    with pytest.raises(ValueError, match=f"{name}="):
        booster_params(parse(HYPERPARAMETERS, {"num_round": "1", name: value}))


@pytest.mark.parametrize("name", sorted(NOT_SUPPORTED))
def test_each_refused_name_says_not_supported_by_this_image(name):
    with pytest.raises(HyperparameterError, match=f"hyperparameter {name} is not supported by this image: .+"):
        parse(HYPERPARAMETERS, {"num_round": "1", name: NOT_SUPPORTED[name]})


@pytest.mark.parametrize("name", sorted(NOT_SUPPORTED_VALUES))
def test_each_refused_value_says_not_supported_by_this_image(name):
    value = NOT_SUPPORTED_VALUES[name]
    with pytest.raises(ValueError, match=f"{name}={value} is not supported by this image: .+"):
        booster_params(parse(HYPERPARAMETERS, {"num_round": "1", name: value}))


def test_the_table_lists_the_refused_names_with_their_reason():
    table = describe(HYPERPARAMETERS)
    assert "| `sketch_eps` | - | - | not supported by this image: XGBoost 3 removed it" in table


def test_a_job_with_a_refused_name_fails_saying_why(opt_ml):
    base = opt_ml(hyperparameters={"num_round": "2", "single_precision_histogram": "true"},
                  channels={"train": {"a.csv": csv_text(regression_table(20))}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert "single_precision_histogram is not supported by this image: a GPU-only setting" in failure(base)
    assert "unknown" not in failure(base)


def _predictions(base) -> np.ndarray:
    booster = xgboost.Booster(model_file=str(base / "model" / "xgboost-model.ubj"))
    return booster.inplace_predict(regression_table(30, seed=5)[:, 1:])


def test_csv_weights_take_the_column_after_the_label(opt_ml):
    table = regression_table(80)
    ones = np.column_stack([table[:, :1], np.ones(len(table)), table[:, 1:]])
    plain = opt_ml(hyperparameters={"num_round": "3"}, channels={"train": {"a.csv": csv_text(table)}}, name="plain")
    weighted = opt_ml(hyperparameters={"num_round": "3", "csv_weights": "1"},
                      channels={"train": {"a.csv": csv_text(ones)}}, name="weighted")
    assert run(train, HYPERPARAMETERS, base=plain) == 0 and run(train, HYPERPARAMETERS, base=weighted) == 0
    # weights of 1 are no weights: the same model, over the same 3 features (the weight is not one)
    np.testing.assert_array_equal(_predictions(plain), _predictions(weighted))
    skewed = ones.copy()
    skewed[::2, 1] = 0.0  # half the rows weigh nothing: another model
    zeroed = opt_ml(hyperparameters={"num_round": "3", "csv_weights": "1"},
                    channels={"train": {"a.csv": csv_text(skewed)}}, name="zeroed")
    assert run(train, HYPERPARAMETERS, base=zeroed) == 0
    assert not np.array_equal(_predictions(plain), _predictions(zeroed))


def test_negative_csv_weights_fail_the_job(opt_ml):
    table = regression_table(20)
    table[3, 1] = -1.0  # read as the weight column
    base = opt_ml(hyperparameters={"num_round": "2", "csv_weights": "1"},
                  channels={"train": {"a.csv": csv_text(table)}})
    assert run(train, HYPERPARAMETERS, base=base) == 1
    assert "csv_weights=1: the train channel's weights (the column after the label) must be" in failure(base)
