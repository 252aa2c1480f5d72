"""The booster compiled to flat tables and walked by the compiled evaluator predicts what XGBoost predicts,
or is refused with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xgboost

from xgboost_container.fast import forest as forest_module
from xgboost_container.fast.forest import calibrated, compile_forest
from xgboost_container.fast.xgboost_c_api import DensePredictor
from xgboost_container.handler import Model

FEATURES = 6


def _data(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    x[rng.random(x.shape) < 0.15] = np.nan  # learns default directions both ways
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + np.isnan(x[:, 3])
    return x, signal + rng.normal(scale=0.3, size=rows)


def _train(params: dict, rounds: int = 20, label=None) -> xgboost.Booster:
    x, signal = _data()
    y = signal if label is None else label(signal)
    return xgboost.train({"nthread": 1, "seed": 0, **params}, xgboost.DMatrix(x, y), rounds)


def _rows(count: int = 300, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(scale=2.0, size=(count, FEATURES))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    rows[0] = np.nan  # every feature missing
    rows[1, :3] = np.inf
    rows[2, :3] = -np.inf
    return rows


def _compiled(booster: xgboost.Booster):
    forest, why = compile_forest(booster)
    assert forest is not None, why
    forest, why = calibrated(forest, booster, _rows(64, seed=1))
    assert forest is not None, why
    return forest


MODELS = {
    "logistic": lambda: _train({"objective": "binary:logistic", "max_depth": 4}, label=lambda s: s > 0.5),
    "logitraw": lambda: _train({"objective": "binary:logitraw", "max_depth": 3}, label=lambda s: s > 0.5),
    "reg_logistic": lambda: _train({"objective": "reg:logistic"}, label=lambda s: 1 / (1 + np.exp(-s))),
    "squarederror": lambda: _train({"objective": "reg:squarederror", "max_depth": 6}),
    "poisson": lambda: _train({"objective": "count:poisson"}, label=lambda s: np.round(np.exp(s / 2))),
    "lossguide_deep": lambda: _train({"objective": "reg:squarederror", "grow_policy": "lossguide",
                                      "max_depth": 0, "max_leaves": 24, "tree_method": "hist"}),
    "approx_uneven": lambda: _train({"objective": "reg:squarederror", "tree_method": "approx", "max_depth": 5,
                                     "min_child_weight": 30}),
    "random_forest": lambda: _train({"objective": "reg:squarederror", "num_parallel_tree": 4, "subsample": 0.7,
                                     "colsample_bynode": 0.7}, rounds=2),
    "single_leaf_trees": lambda: _train({"objective": "reg:squarederror", "min_child_weight": 10_000}, rounds=3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("count", [1, 2, 64, 300])  # 300: blocks of 128 rows, then lanes of 8 and a rest
def test_predicts_as_xgboost(name, count):
    booster = MODELS[name]()
    rows = _rows()[:count]
    expected = booster.inplace_predict(rows, validate_features=False)
    got = _compiled(booster)(rows)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_missing_values_follow_each_nodes_default_direction():
    booster = MODELS["squarederror"]()
    forest = _compiled(booster)
    # the widened row sends a missing value left for default-left splits, right for the others
    columns = forest.nodes["feature"][~np.isnan(forest.nodes["threshold"])]
    assert (columns < FEATURES).any() and (columns >= FEATURES).any()
    for feature in range(FEATURES):
        rows = np.zeros((1, FEATURES))
        rows[0, feature] = np.nan
        np.testing.assert_allclose(forest(rows), booster.inplace_predict(rows), rtol=1e-6)


@pytest.mark.parametrize(("params", "reason"), [
    ({"objective": "multi:softprob", "num_class": 3}, "several outputs per row"),
    ({"objective": "reg:squarederror", "booster": "gblinear"}, "booster gblinear"),
    ({"objective": "reg:squarederror", "booster": "dart", "rate_drop": 0.1}, "booster dart"),
    ({"objective": "binary:hinge"}, "objective binary:hinge"),
])
def test_what_it_cannot_represent_is_refused_with_the_reason(params, reason):
    label = (lambda s: np.digitize(s, [0, 1])) if "num_class" in params else (lambda s: s > 0.5)
    if params["objective"].startswith("reg"):
        label = None
    forest, why = compile_forest(_train(params, rounds=3, label=label))
    assert forest is None and why == reason


def test_categorical_splits_are_refused():
    x, signal = _data()
    frame = {"c": np.where(np.nan_to_num(x[:, 0]) > 0, 1, 0)}
    import pandas as pd  # the dev environment has it; the image does not need it
    data = xgboost.DMatrix(pd.DataFrame({"c": pd.Categorical(frame["c"]), "x": x[:, 1]}), signal,
                           enable_categorical=True)
    booster = xgboost.train({"tree_method": "hist", "max_cat_to_onehot": 1}, data, 3)
    assert compile_forest(booster) == (None, "categorical splits or vector leaves")


def test_forests_too_deep_to_pad_stay_with_xgboost(monkeypatch):
    monkeypatch.setattr(forest_module, "MAX_PADDED_NODES", 100)
    forest, why = compile_forest(MODELS["squarederror"]())
    assert forest is None and why.startswith("trees 6 levels deep")


def test_a_forest_that_predicts_differently_is_refused():
    booster = MODELS["squarederror"]()
    forest, _ = compile_forest(booster)
    broken = forest.nodes.copy()
    broken["threshold"][:, 0] = 0.123  # every root now splits elsewhere
    forest = dataclasses.replace(forest, nodes=broken)
    assert calibrated(forest, booster, _rows(64)) == (None, "margins differ from XGBoost's")


def test_a_one_thread_worker_sends_every_dense_request_to_the_forest():
    booster = MODELS["logistic"]()
    model = Model(booster, FEATURES, "binary:logistic")
    assert model.forest is not None and isinstance(model.predict_large, DensePredictor)
    rows = np.tile(_rows(), (8, 1))  # 2400 rows
    np.testing.assert_array_equal(model.predict_dense(rows), model.forest(rows))
    np.testing.assert_allclose(model.predict_dense(rows), booster.inplace_predict(rows), rtol=1e-6, atol=1e-6)


def test_a_worker_with_many_threads_sends_large_requests_to_xgboost():
    booster = MODELS["logistic"]()
    model = Model(booster, FEATURES, "binary:logistic", threads=Model.XGBOOST_THREADS_TO_WIN)
    rows = np.tile(_rows(), (4, 1))[:Model.FOREST_MAX_ROWS + 1]
    small, large = rows[:Model.FOREST_MAX_ROWS], rows
    np.testing.assert_array_equal(model.predict_dense(small), model.forest(small))
    np.testing.assert_array_equal(model.predict_dense(large), booster.inplace_predict(large))


def test_no_rows_give_no_scores():
    forest = _compiled(MODELS["logistic"]())
    assert forest(np.empty((0, FEATURES))).shape == (0,)


@pytest.mark.parametrize(("change", "message"), [
    (lambda nodes, leaf: (nodes.astype([("feature", "i8"), ("threshold", "f4")]), leaf), "wrong types"),
    (lambda nodes, leaf: (nodes, leaf[:, :-1].copy()), "mismatched shapes"),
    (lambda nodes, leaf: (nodes[:, :-1].copy(), leaf[:, :-1].copy()), "mismatched shapes"),
    (lambda nodes, leaf: (nodes[:, ::2], leaf), "C-contiguous"),
    (lambda nodes, leaf: (_with_feature(nodes, 2 * FEATURES), leaf), "outside the 12 widened columns"),
    (lambda nodes, leaf: (_with_feature(nodes, -1), leaf), "outside the 12 widened columns"),
])
def test_tables_the_evaluator_could_read_outside_of_are_refused(change, message):
    forest = _compiled(MODELS["squarederror"]())
    nodes, leaf = change(forest.nodes, forest.leaf)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(forest, nodes=nodes, leaf=leaf)


def _with_feature(nodes: np.ndarray, feature: int) -> np.ndarray:
    nodes = nodes.copy()
    nodes["feature"][-1, -1] = feature
    return nodes


def test_rows_of_another_width_are_refused():
    forest = _compiled(MODELS["squarederror"]())
    with pytest.raises(ValueError, match="the forest has 6 features"):
        forest(np.zeros((2, FEATURES + 1)))


def test_without_the_compiled_evaluator_the_model_is_served_by_xgboost(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(forest_module, "LIBRARY", tmp_path / "libforest.so")
    forest_module.evaluator.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            model = Model(MODELS["logistic"](), FEATURES, "binary:logistic")
    finally:
        forest_module.evaluator.cache_clear()
    assert model.forest is None and "the forest evaluator is not built" in caplog.text
    rows = _rows(3)
    np.testing.assert_array_equal(model.predict_dense(rows), model.booster.inplace_predict(rows))


def test_a_model_the_forest_cannot_hold_is_served_by_xgboost_alone(caplog):
    booster = _train({"objective": "multi:softprob", "num_class": 3}, rounds=3, label=lambda s: np.digitize(s, [0, 1]))
    with caplog.at_level("INFO"):
        model = Model(booster, FEATURES, "multi:softprob")
    assert model.forest is None and "several outputs per row" in caplog.text
    rows = _rows(3)
    np.testing.assert_array_equal(model.predict_dense(rows), booster.inplace_predict(rows))


def test_saved_tables_load_as_they_were_saved(tmp_path):
    forest, _ = compile_forest(MODELS["squarederror"]())
    forest.save(tmp_path / "forest.npz")
    loaded = type(forest).load(tmp_path / "forest.npz")
    assert loaded.num_features == forest.num_features and loaded.objective == forest.objective
    for field in ("feature", "threshold"):  # field by field: padding thresholds are NaN
        np.testing.assert_array_equal(loaded.nodes[field], forest.nodes[field])
    np.testing.assert_array_equal(loaded.leaf, forest.leaf)


def test_the_model_uses_the_tables_training_saved(tmp_path, monkeypatch):
    booster = MODELS["logistic"]()
    compile_forest(booster)[0].save(tmp_path / "forest.npz")
    monkeypatch.setattr("xgboost_container.fast.forest.compile_forest", lambda _: pytest.fail("laid out again"))
    model = Model(booster, FEATURES, "binary:logistic", tmp_path / "forest.npz")
    rows = _rows(10)
    np.testing.assert_allclose(model.predict_dense(rows), booster.inplace_predict(rows), rtol=1e-6)


def test_tables_of_another_model_are_replaced(tmp_path, caplog):
    compile_forest(MODELS["squarederror"]())[0].save(tmp_path / "forest.npz")  # stale: another model
    booster = MODELS["logistic"]()
    with caplog.at_level("WARNING"):
        model = Model(booster, FEATURES, "binary:logistic", tmp_path / "forest.npz")
    assert "does not match the model" in caplog.text and model.forest is not None
    rows = _rows(10)
    np.testing.assert_allclose(model.predict_dense(rows), booster.inplace_predict(rows), rtol=1e-6)


def test_saved_tables_that_point_outside_a_row_are_laid_out_again(tmp_path, caplog):
    booster = MODELS["logistic"]()
    forest, _ = compile_forest(booster)
    with (tmp_path / "forest.npz").open("wb") as file:  # what a corrupted or hand-edited file could hold
        np.savez(file, num_features=FEATURES, objective=forest.objective,
                 nodes=_with_feature(forest.nodes, 10_000), leaf=forest.leaf)
    with caplog.at_level("WARNING"):
        model = Model(booster, FEATURES, "binary:logistic", tmp_path / "forest.npz")
    assert "does not match the model (ValueError: a split feature outside" in caplog.text
    rows = _rows(10)
    np.testing.assert_allclose(model.predict_dense(rows), booster.inplace_predict(rows), rtol=1e-6)
