"""Hyperparameters with the names SageMaker's built-in XGBoost uses, typed and validated."""

from __future__ import annotations

from typing import Any

from serving_common.training.hyperparameters import REQUIRED, Hyperparameter

OBJECTIVES = (
    "reg:squarederror", "reg:squaredlogerror", "reg:logistic", "reg:pseudohubererror", "reg:absoluteerror",
    "reg:quantileerror", "reg:gamma", "reg:tweedie", "binary:logistic", "binary:logitraw", "binary:hinge",
    "count:poisson", "survival:cox", "survival:aft", "multi:softmax", "multi:softprob", "rank:ndcg",
    "rank:map", "rank:pairwise",
)
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
    Hyperparameter("tree_method", str, "hist", "tree construction", choices=("auto", "exact", "approx", "hist")),
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
)

# Ours, not XGBoost's: they steer the training loop rather than the booster.
_LOOP_ONLY = {"num_round", "early_stopping_rounds", "checkpoint_frequency", "eval_metric"}


def booster_params(values: dict[str, Any]) -> dict[str, Any]:
    """The XGBoost parameter dict for validated hyperparameter values (unset optional ones left out)."""
    objective = values["objective"]
    if objective.startswith("multi:") and values["num_class"] is None:
        raise ValueError(f"objective {objective} needs the num_class hyperparameter")
    if objective == "reg:quantileerror" and values["quantile_alpha"] is None:
        raise ValueError(f"objective {objective} needs the quantile_alpha hyperparameter")
    params = {name: value for name, value in values.items() if name not in _LOOP_ONLY and value is not None}
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
