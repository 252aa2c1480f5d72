"""``train`` for the preprocess image: fit the feature transform on the ``train`` channel.

Optional feature code (see ``user_code``) comes from a ``code`` channel or from the SageMaker SDK's
script-mode hyperparameters ``sagemaker_program`` / ``sagemaker_submit_directory``.
"""

from __future__ import annotations

import logging

from serving_common.features.features import FittedFeatures
from serving_common.features.records import read_training_files
from serving_common.features.spec import CATEGORICAL_ENCODINGS, NUMERIC_IMPUTE, infer_spec
from serving_common.features.user_code import FeatureCode, FeatureCodeError, find_training_code
from serving_common.features.validation import DEFAULT_UNKNOWN_FIELDS, RecordRules
from serving_common.settings import UNKNOWN_FIELD_POLICIES
from serving_common.training.harness import TrainingError, TrainingJob
from serving_common.training.hyperparameters import Hyperparameter

log = logging.getLogger("preprocess")

HYPERPARAMETERS = (
    Hyperparameter("label", str, None, "the target field (dotted path); passed through only when asked"),
    Hyperparameter("numeric", list, None, "comma-separated numeric fields; inferred from the data if absent"),
    Hyperparameter("categorical", list, None, "comma-separated categorical fields; inferred if absent"),
    Hyperparameter("drop", list, [], "comma-separated fields to leave out"),
    Hyperparameter("numeric_impute", str, "median", "how missing numbers are filled", choices=NUMERIC_IMPUTE),
    Hyperparameter("scale", bool, True, "standardise numeric features"),
    Hyperparameter("categorical_encoding", str, "onehot", "onehot or ordinal", choices=CATEGORICAL_ENCODINGS),
    Hyperparameter("max_categories", int, None, "most categories kept per field (rest: infrequent)", minimum=2),
    Hyperparameter("min_frequency", int, None, "rarer categories are grouped as infrequent", minimum=1),
    Hyperparameter("max_missing_fields", int, None, "input fields a record may miss at serving (default: all but "
                   "one); SMKIT_MAX_MISSING_FIELDS overrides", minimum=0),
    Hyperparameter("unknown_fields", str, DEFAULT_UNKNOWN_FIELDS, "a record field the model does not know, at "
                   "serving: error (400), warn (logged once) or ignore; SMKIT_UNKNOWN_FIELDS overrides",
                   choices=UNKNOWN_FIELD_POLICIES),
)


def feature_code(job: TrainingJob) -> FeatureCode | None:
    """The job's feature code (``code`` channel or sagemaker_program), imported; None without."""
    env = job.env
    try:
        path = find_training_code(env.hyperparameters, {name: c.path for name, c in env.channels.items()},
                                  env.base)
        if path is None:
            return None
        code = FeatureCode(path)
    except FeatureCodeError as exc:
        raise TrainingError(str(exc)) from None
    return code  # its import logged "feature code: <name> (<path>) defines <functions>"


def train(job: TrainingJob) -> None:
    hp = job.hyperparameters
    channel = job.env.channel("train")
    code = feature_code(job)
    extract = code is not None and code.has_extract
    # extract() sees records as serving receives them: nested, not flattened
    records = read_training_files(channel.path, flat=not extract)
    if not records:
        raise TrainingError(f"the train channel ({channel.path}) holds no records")
    log.info("read %d records from %s", len(records), channel.path)
    if extract:
        records = code.extract_records(records)
    options = {name: hp[name] for name in ("numeric_impute", "scale", "categorical_encoding")}
    for name in ("max_categories", "min_frequency"):
        if hp[name] is not None:
            options[name] = hp[name]
    spec = infer_spec(records, label=hp["label"], drop=hp["drop"], numeric=hp["numeric"],
                      categorical=hp["categorical"], **options)
    rules = RecordRules(hp["max_missing_fields"], hp["unknown_fields"])
    features = FittedFeatures.fit(records, spec, code=code, extracted=True, rules=rules)
    features.save(job.model_dir)
    log.info("fitted %d input fields into %d features (fingerprint %s, fast path %s)", len(spec.input_columns),
             len(features.output_columns), features.fingerprint[:12], "saved" if features.fast_path else "unavailable")
