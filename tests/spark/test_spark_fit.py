"""Fitting the preprocess model on Spark local[2] against the image's own fit (FittedFeatures.fit, the code
the image's ``train`` runs) on the same records: same spec, categories and medians exactly, means and
scales to float64 rounding, features within FEATURE_TOLERANCE, and the saved folder loads as the image
loads it."""

from __future__ import annotations

import numpy as np
import pytest

from local_test.orders import make_orders, write_jsonl
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import infer_spec
from smkit_spark import FEATURE_TOLERANCE, fit_model


def _orders(n: int, seed: int) -> list[dict]:
    orders = make_orders(n, seed=seed)
    for i in range(0, n, 7):
        orders[i]["amount"] = None  # missing numbers: imputed
    orders[5]["customer"]["country"] = "a,b \"quoted\""  # a category CSV would have to quote
    return orders


def _parts(model: FittedFeatures):
    numeric = model.transformer.named_transformers_["numeric"]
    categorical = model.transformer.named_transformers_["categorical"]
    return numeric.named_steps["impute"], numeric.named_steps.get("scale"), categorical.named_steps["encode"]


@pytest.mark.parametrize("options", [
    {},
    {"numeric_impute": "mean", "categorical_encoding": "ordinal"},
    {"numeric_impute": "constant0", "scale": False},
    {"min_frequency": 40},
    {"min_frequency": 0.02, "max_categories": 4},
    {"max_categories": 3, "categorical_encoding": "ordinal"},
])
def test_spark_fit_matches_the_images_fit(spark, tmp_path, options):
    orders = _orders(2001, seed=31)  # odd count: the median is one value; the held-out check below is even
    for i, order in enumerate(orders):
        # ties: six devices with equal counts (333 or 334), max_categories cuts through them
        order["device"] = ["tv", "mobile", "desktop", "tablet", "watch", "car"][i % 6] if i < 1998 else "mobile"
    write_jsonl(orders, tmp_path / "orders.jsonl")
    spec = infer_spec(orders, label="default", drop=["order_id"], **options)
    image = FittedFeatures.fit(orders, spec)
    fitted = fit_model(spark, str(tmp_path / "orders.jsonl"), tmp_path / "model", label="default",
                       drop=["order_id"], **options)
    assert fitted.spec == image.spec
    assert fitted.output_columns == image.output_columns
    loaded = FittedFeatures.load(tmp_path / "model")  # the image's loader: files, digests, fingerprint
    assert loaded.fast_path and loaded.fingerprint == fitted.fingerprint
    # the record checks serving applies: the same rules and the same fields seen in the data
    assert (loaded.record_rules, loaded.known_fields) == (image.record_rules, image.known_fields)
    assert "order_id" in loaded.known_fields and "customer.country" in loaded.known_fields
    imputer, scaler, encoder = _parts(fitted)
    image_imputer, image_scaler, image_encoder = _parts(image)
    assert [list(c) for c in encoder.categories_] == [list(c) for c in image_encoder.categories_]
    grouped = options.get("min_frequency") is not None or options.get("max_categories") is not None
    if grouped:  # the same infrequent categories, ties included
        assert [list(c) if c is not None else None for c in encoder.infrequent_categories_] == [
            list(c) if c is not None else None for c in image_encoder.infrequent_categories_]
        assert any(c is not None for c in encoder.infrequent_categories_)
    if options.get("numeric_impute", "median") in ("median", "constant0"):
        assert np.array_equal(imputer.statistics_, image_imputer.statistics_)  # exact
    else:
        np.testing.assert_allclose(imputer.statistics_, image_imputer.statistics_, rtol=1e-12)
    if scaler is not None:
        assert scaler.n_samples_seen_ == image_scaler.n_samples_seen_
        np.testing.assert_allclose(scaler.mean_, image_scaler.mean_, rtol=1e-12)
        np.testing.assert_allclose(scaler.scale_, image_scaler.scale_, rtol=1e-12)
    held_out = make_orders(500, seed=32)
    for i, order in enumerate(held_out):
        order["device"] = ["tv", "mobile", "desktop", "tablet", "watch", "car", "fridge"][i % 7]
    n_num = len(spec.numeric)
    features, reference = loaded.transform_records(held_out), image.transform_records(held_out)
    assert np.array_equal(features[:, n_num:], reference[:, n_num:])  # categories: identical
    np.testing.assert_allclose(features, reference, rtol=FEATURE_TOLERANCE, atol=FEATURE_TOLERANCE)


def test_record_rules_are_stored(spark, tmp_path):
    from serving_common.features.validation import RecordRules

    orders = _orders(100, seed=36)
    write_jsonl(orders, tmp_path / "orders.jsonl")
    fit_model(spark, str(tmp_path / "orders.jsonl"), tmp_path / "model", label="default", max_missing_fields=3,
              unknown_fields="error")
    assert FittedFeatures.load(tmp_path / "model").record_rules == RecordRules(3, "error")
    with pytest.raises(ValueError, match="unknown_fields"):
        fit_model(spark, str(tmp_path / "orders.jsonl"), tmp_path / "m2", label="default", unknown_fields="maybe")


def test_even_count_median_and_parquet_input(spark, tmp_path):
    orders = _orders(1000, seed=33)
    write_jsonl(orders, tmp_path / "orders.jsonl")
    spark.read.json(str(tmp_path / "orders.jsonl")).write.parquet(str(tmp_path / "orders.parquet"))
    spec = infer_spec(orders, label="default", drop=["order_id"])
    image = FittedFeatures.fit(orders, spec)
    fitted = fit_model(spark, str(tmp_path / "orders.parquet"), tmp_path / "model.tar.gz", label="default",
                       drop=["order_id"], numeric=spec.numeric, categorical=spec.categorical)
    assert fitted.output_columns == image.output_columns
    assert np.array_equal(_parts(fitted)[0].statistics_, _parts(image)[0].statistics_)
    assert (tmp_path / "model.tar.gz").stat().st_size > 0


def test_unsupported_options_and_bad_records_are_refused(spark, tmp_path):
    from smkit_spark import FitError

    orders = _orders(50, seed=34)
    write_jsonl(orders, tmp_path / "orders.jsonl")
    code_path = tmp_path / "custom.py"
    code_path.write_text("def build_transformer(spec):\n    raise NotImplementedError\n")
    with pytest.raises(ValueError, match="defines build_transformer"):
        fit_model(spark, str(tmp_path / "orders.jsonl"), tmp_path / "m", label="default", code=code_path)
    orders[7]["customer.age"] = 5  # also nested as customer: {age}
    write_jsonl(orders, tmp_path / "bad.jsonl")
    with pytest.raises(FitError, match=r"'customer\.age' occurs twice"):
        fit_model(spark, str(tmp_path / "bad.jsonl"), tmp_path / "m", label="default")
    (tmp_path / "broken.jsonl").write_text('{"amount": 1, "default": 0}\n{"amount": \n')
    with pytest.raises(FitError, match=r"broken\.jsonl: invalid JSON"):
        fit_model(spark, str(tmp_path / "broken.jsonl"), tmp_path / "m", label="default")


def test_feature_code_extract_runs_on_the_executors(spark, tmp_path):
    from serving_common.features.user_code import FeatureCode

    code_path = tmp_path / "my_features.py"
    code_path.write_text("def extract(record):\n"
                         "    return {**record, 'amount_per_item': (record['amount'] or 0) / record['items']}\n")
    orders = _orders(600, seed=35)
    write_jsonl(orders, tmp_path / "orders.jsonl")
    code = FeatureCode(code_path)
    records = code.extract_records(orders)
    image = FittedFeatures.fit(records, infer_spec(records, label="default", drop=["order_id"]), code=code,
                               extracted=True)
    fitted = fit_model(spark, str(tmp_path / "orders.jsonl"), tmp_path / "model", label="default",
                       drop=["order_id"], code=code_path)
    assert "amount_per_item" in fitted.spec.numeric and fitted.output_columns == image.output_columns
    assert np.array_equal(_parts(fitted)[0].statistics_, _parts(image)[0].statistics_)
    loaded = FittedFeatures.load(tmp_path / "model")  # code/features.py saved, its sha256 in the fingerprint
    assert loaded.code is not None and loaded.code.sha256 == code.sha256
    np.testing.assert_allclose(loaded.transform_records(orders), image.transform_records(orders),
                               rtol=FEATURE_TOLERANCE, atol=FEATURE_TOLERANCE)
