"""Hyperparameters with the names SageMaker's built-in XGBoost uses, typed and validated.

Every name SageMaker's XGBoost algorithm documents is declared: implemented (passed to XGBoost, or done by
the training loop), or refused with "not supported by this image" and the reason (GPU-only settings on
this CPU-only image, settings XGBoost 3 removed, cross-validation) -- never "unknown".
"""

from __future__ import annotations

import json
import logging
from typing import Any

from serving_common.training.hyperparameters import REQUIRED, Hyperparameter

log = logging.getLogger("xgboost_container")

OBJECTIVES = (
    "reg:squarederror", "reg:squaredlogerror", "reg:logistic", "reg:pseudohubererror", "reg:absoluteerror",
    "reg:quantileerror", "reg:gamma", "reg:tweedie", "binary:logistic", "binary:logitraw", "binary:hinge",
    "count:poisson", "survival:cox", "survival:aft", "multi:softmax", "multi:softprob", "rank:ndcg",
    "rank:map", "rank:pairwise", "reg:linear",
)
#: Objectives XGBoost renamed: SageMaker still documents the old name.
_RENAMED_OBJECTIVES = {"reg:linear": "reg:squarederror"}
METRICS = (
    "rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss", "auc", "aucpr",
    "pre", "ndcg", "map", "poisson-nloglik", "gamma-nloglik", "cox-nloglik", "gamma-deviance",
    "tweedie-nloglik", "aft-nloglik", "interval-regression-accuracy", "quantile",
)

HYPERPARAMETERS = (
    Hyperparameter("num_round", int, REQUIRED, "number of boosting rounds", minimum=1),
    Hyperparameter("objective", str, "reg:squarederror", "learning objective", choices=OBJECTIVES),
    Hyperparameter("eval_metric", list, None, "comma-separated evaluation metrics (default: the objective's)"),
    Hyperparameter("num_class", int, None, "number of classes (multi:* objectives)", minimum=2),
    Hyperparameter("quantile_alpha", float, None, "the quantile to predict (reg:quantileerror)", minimum=1e-9,
                   maximum=1 - 1e-9),
    Hyperparameter("max_depth", int, 6, "maximum tree depth", minimum=0),
    Hyperparameter("eta", float, 0.3, "learning rate", minimum=0, maximum=1),
    Hyperparameter("gamma", float, 0.0, "minimum loss reduction to split", minimum=0),
    Hyperparameter("min_child_weight", float, 1.0, "minimum hessian sum in a child", minimum=0),
    Hyperparameter("max_delta_step", float, 0.0, "maximum delta step of leaf values", minimum=0),
    Hyperparameter("subsample", float, 1.0, "row subsample ratio", minimum=1e-9, maximum=1),
    Hyperparameter("colsample_bytree", float, 1.0, "column subsample ratio per tree", minimum=1e-9, maximum=1),
    Hyperparameter("colsample_bylevel", float, 1.0, "column subsample ratio per level", minimum=1e-9, maximum=1),
    Hyperparameter("colsample_bynode", float, 1.0, "column subsample ratio per node", minimum=1e-9, maximum=1),
    Hyperparameter("lambda", float, 1.0, "L2 regularisation", minimum=0),
    Hyperparameter("alpha", float, 0.0, "L1 regularisation", minimum=0),
    Hyperparameter("scale_pos_weight", float, 1.0, "weight of positive examples", minimum=0),
    Hyperparameter("tree_method", str, "hist", "tree construction: auto, exact, approx or hist (gpu_hist: not "
                   "supported by this CPU-only image)"),
    Hyperparameter("grow_policy", str, "depthwise", "tree growth", choices=("depthwise", "lossguide")),
    Hyperparameter("max_leaves", int, 0, "maximum leaves (lossguide)", minimum=0),
    Hyperparameter("max_bin", int, 256, "histogram bins", minimum=2),
    Hyperparameter("base_score", float, None, "initial prediction score"),
    Hyperparameter("num_parallel_tree", int, 1, "trees per round (random forests)", minimum=1),
    Hyperparameter("seed", int, 0, "random seed"),
    Hyperparameter("early_stopping_rounds", int, None, "stop when validation has not improved for N rounds",
                   minimum=1),
    Hyperparameter("checkpoint_frequency", int, 10, "save a checkpoint every N rounds", minimum=1),
    Hyperparameter("nthread", int, None, "threads (default: all CPUs)", minimum=1),
    Hyperparameter("verbosity", int, 1, "XGBoost's log level", minimum=0, maximum=3),
    # The rest of SageMaker XGBoost's names.
    Hyperparameter("booster", str, "gbtree", "gbtree, gblinear or dart", choices=("gbtree", "gblinear", "dart")),
    Hyperparameter("csv_weights", int, 0, "1: the CSV column after the label is each row's weight", minimum=0,
                   maximum=1),
    Hyperparameter("silent", int, None, "1: as verbosity=0 (XGBoost's older name)", minimum=0, maximum=1),
    Hyperparameter("monotone_constraints", str, None, "per feature 1, 0 or -1: '(1,0,-1)' or '[1,0,-1]'"),
    Hyperparameter("interaction_constraints", str, None, "lists of feature indices that may interact: "
                   "'[[0,1],[2,3,4]]'"),
    Hyperparameter("max_cat_to_onehot", int, None, "categorical splits: one-hot below this many categories",
                   minimum=1),
    Hyperparameter("process_type", str, "default", "default (update: not supported, see help)",
                   choices=("default", "update")),
    Hyperparameter("updater", str, None, "comma-separated tree or linear updaters (overrides tree_method)"),
    Hyperparameter("refresh_leaf", int, None, "updater refresh: 1 updates leaf values too", minimum=0, maximum=1),
    Hyperparameter("sampling_method", str, None, "uniform or gradient_based",
                   choices=("uniform", "gradient_based")),
    Hyperparameter("seed_per_iteration", bool, None, "seed the sampling from the round number"),
    Hyperparameter("tweedie_variance_power", float, None, "reg:tweedie's variance power, in (1, 2)",
                   minimum=1 + 1e-9, maximum=2 - 1e-9),
    Hyperparameter("aft_loss_distribution", str, None, "survival:aft: normal, logistic or extreme",
                   choices=("normal", "logistic", "extreme")),
    Hyperparameter("aft_loss_distribution_scale", float, None, "survival:aft: the distribution's scale", minimum=0),
    Hyperparameter("sample_type", str, None, "dart: uniform or weighted", choices=("uniform", "weighted")),
    Hyperparameter("normalize_type", str, None, "dart: tree or forest", choices=("tree", "forest")),
    Hyperparameter("rate_drop", float, None, "dart: dropout rate", minimum=0, maximum=1),
    Hyperparameter("one_drop", int, None, "dart: 1 always drops at least one tree", minimum=0, maximum=1),
    Hyperparameter("skip_drop", float, None, "dart: probability of skipping the dropout", minimum=0, maximum=1),
    Hyperparameter("predictor", str, None, "auto or cpu_predictor (this image predicts on CPU; gpu_predictor "
                   "is not supported)", choices=("auto", "cpu_predictor", "gpu_predictor")),
    Hyperparameter("use_dask_gpu_training", bool, None, "false only: this image trains on CPU with XGBoost's own "
                   "collective"),
    Hyperparameter("learning_rate", float, None, "alias of eta", minimum=0, maximum=1),
    Hyperparameter("min_split_loss", float, None, "alias of gamma", minimum=0),
    Hyperparameter("reg_lambda", float, None, "alias of lambda", minimum=0),
    Hyperparameter("reg_alpha", float, None, "alias of alpha", minimum=0),
    Hyperparameter("sketch_eps", unsupported="XGBoost 3 removed it; tree_method approx and hist sketch with "
                   "max_bin bins (set max_bin instead)"),
    Hyperparameter("lambda_bias", unsupported="XGBoost removed it (gblinear has no separate bias penalty)"),
    Hyperparameter("dsplit", unsupported="XGBoost removed it; multi-host jobs here split data by row"),
    Hyperparameter("single_precision_histogram", unsupported="a GPU-only setting (XGBoost 3 removed it), and this "
                   "image trains on CPU"),
    Hyperparameter("deterministic_histogram", unsupported="a GPU-only setting (XGBoost 3 removed it); this image "
                   "trains on CPU, where histograms are always deterministic"),
    Hyperparameter("prob_buffer_row", unsupported="a GPU-only setting (XGBoost removed it), and this image trains "
                   "on CPU"),
    Hyperparameter("save_model_on_termination", unsupported="a stopped job keeps its checkpoints instead "
                   "(checkpoint_frequency) and a restarted job resumes from the newest"),
    Hyperparameter("_kfold", unsupported="k-fold cross-validation is not implemented; give a validation channel"),
    Hyperparameter("_num_cv_round", unsupported="k-fold cross-validation is not implemented; give a validation "
                   "channel"),
)

# Ours, not XGBoost's: they steer the training loop rather than the booster.
_LOOP_ONLY = {"num_round", "early_stopping_rounds", "checkpoint_frequency", "eval_metric", "csv_weights", "silent",
              "predictor", "use_dask_gpu_training"}
_ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"}
_TREE_METHODS = ("auto", "exact", "approx", "hist")
_NOT_SUPPORTED = "is not supported by this image"


def _constraints(name: str, text: str, nested: bool) -> str:
    """``monotone_constraints`` ('(1,0,-1)', '[1,0,-1]' or '1,0,-1', as the SDK may have flattened a list) or
    ``interaction_constraints`` ('[[0,1],[2,3]]') in the form XGBoost reads; ValueError for anything else."""
    body = text.strip()
    if not nested:
        body = body.removeprefix("(").removesuffix(")").removeprefix("[").removesuffix("]")
        try:
            values = [int(item) for item in body.split(",") if item.strip()]
        except ValueError:
            values = []
        if not values or any(value not in (-1, 0, 1) for value in values):
            raise ValueError(f"{name}={text!r} must list 1, 0 or -1 per feature, e.g. (1,0,-1)")
        return "(" + ",".join(map(str, values)) + ")"
    try:
        groups = json.loads(body if body.startswith("[[") else f"[{body}]")
    except ValueError:
        groups = None
    if not (isinstance(groups, list) and groups and all(
            isinstance(group, list) and group and all(type(i) is int and i >= 0 for i in group) for group in groups)):
        raise ValueError(f"{name}={text!r} must be lists of feature indices, e.g. [[0,1],[2,3,4]]")
    return json.dumps(groups)


def booster_params(values: dict[str, Any]) -> dict[str, Any]:
    """The XGBoost parameter dict for validated hyperparameter values (unset optional ones left out)."""
    objective = values["objective"]
    if objective.startswith("multi:") and values["num_class"] is None:
        raise ValueError(f"objective {objective} needs the num_class hyperparameter")
    if objective == "reg:quantileerror" and values["quantile_alpha"] is None:
        raise ValueError(f"objective {objective} needs the quantile_alpha hyperparameter")
    if values["tree_method"] not in _TREE_METHODS:
        if "gpu" in values["tree_method"]:
            raise ValueError(f"tree_method={values['tree_method']} {_NOT_SUPPORTED}: it trains on CPU (use hist)")
        raise ValueError(f"hyperparameter tree_method={values['tree_method']!r} must be one of "
                         f"{', '.join(_TREE_METHODS)}")
    if values["process_type"] == "update":
        raise ValueError(f"process_type=update {_NOT_SUPPORTED}: it refreshes the trees of an existing model, and "
                         "a job here starts from no model (or from its own checkpoint)")
    if values["predictor"] == "gpu_predictor":
        raise ValueError(f"predictor=gpu_predictor {_NOT_SUPPORTED}: it predicts on CPU")
    if values["use_dask_gpu_training"]:
        raise ValueError(f"use_dask_gpu_training=true {_NOT_SUPPORTED}: it trains on CPU, several hosts through "
                         "XGBoost's own collective")
    params = {name: value for name, value in values.items() if name not in _LOOP_ONLY and value is not None}
    for alias, name in _ALIASES.items():  # the alias, when given, is the value
        if alias in params:
            params[name] = params.pop(alias)
    params["objective"] = _RENAMED_OBJECTIVES.get(objective, objective)
    if values["silent"] == 1:
        params["verbosity"] = 0
    if values["monotone_constraints"] is not None:
        params["monotone_constraints"] = _constraints("monotone_constraints", values["monotone_constraints"], False)
    if values["interaction_constraints"] is not None:
        params["interaction_constraints"] = _constraints("interaction_constraints",
                                                         values["interaction_constraints"], True)
    if values["seed_per_iteration"] is not None:
        params["seed_per_iteration"] = int(values["seed_per_iteration"])
    if params.get("scale_pos_weight") == 1.0:
        # XGBoost's own default; passed to an objective without classes (multi:*, rank:*) it only warns "not used".
        del params["scale_pos_weight"]
    metrics = values["eval_metric"] or []
    unknown = [m for m in metrics if m.split("@")[0] not in METRICS]
    if unknown:
        raise ValueError(f"unknown eval_metric {unknown}; known: {', '.join(METRICS)}")
    if metrics:
        params["eval_metric"] = metrics
    return params
