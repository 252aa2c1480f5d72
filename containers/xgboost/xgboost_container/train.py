"""``train`` for the XGBoost image: one model from one or many hosts, with checkpoints and early stopping."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import xgboost
from xgboost import collective

from serving_common.training.features_channel import features_fingerprint
from serving_common.training.harness import TrainingError, TrainingJob
from serving_common.training.metrics import log_metrics
from serving_common.training.stop import STOP, StopRequested

from .data import Dataset, load_channel
from .distributed import barrier, collective_group, set_phase
from .hyperparameters import booster_params
from .model_files import META_FILE, MODEL_FILE, load_booster

# The optional fast path (fast/, native/): without the folder no tables are saved and serving uses XGBoost.
fast = importlib.import_module(".fast", __package__) if importlib.util.find_spec(".fast", __package__) else None

log = logging.getLogger("xgboost_container")

CHECKPOINT_PREFIX = "xgboost-checkpoint."


class MetricsLog(xgboost.callback.TrainingCallback):
    """Prints each round's metrics in the documented format, numbered by the model's round (also after a
    resume from a checkpoint, where XGBoost's own monitor would count from 0 again). Leader only."""

    def __init__(self, write: bool) -> None:
        self.write = write

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        if self.write and evals_log:
            values = {f"{data}-{metric}": history[-1] for data, metrics in evals_log.items()
                      for metric, history in metrics.items()}
            log_metrics(model.num_boosted_rounds() - 1, values)
        return False


class Checkpoints(xgboost.callback.TrainingCallback):
    """Saves the booster every ``every`` rounds (leader only); keeps the two newest checkpoints."""

    def __init__(self, directory: Path, every: int, write: bool) -> None:
        self.directory = directory
        self.every = every
        self.write = write

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        if model.num_boosted_rounds() % self.every == 0:
            self.save(model)
        return False

    def save(self, model: xgboost.Booster) -> Path | None:
        """Write the checkpoint of the model's rounds now (leader only; None elsewhere)."""
        if not self.write:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"{CHECKPOINT_PREFIX}{model.num_boosted_rounds()}"
        temporary = self.directory / f".{target.name}.ubj"  # the suffix picks XGBoost's binary format
        model.save_model(temporary)
        os.replace(temporary, target)  # atomic: a job killed mid-write never leaves a torn checkpoint
        for old in sorted(_checkpoints(self.directory))[:-2]:
            old[1].unlink(missing_ok=True)
        return target


class StopOnSignal(xgboost.callback.TrainingCallback):
    """SIGTERM (StopTrainingJob, spot interruption): stop after the current round with a checkpoint.

    Every host stops at the same round (one max-allreduce of the flag per round), so the leader's
    checkpoint is complete; then the job fails with a failure file that says it was stopped.
    """

    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: Any) -> bool:
        rounds = model.num_boosted_rounds()
        set_phase(f"training round {rounds + 1}")
        stop = STOP.received is not None
        if collective.is_distributed():
            stop = bool(collective.allreduce(np.array([int(stop)], dtype=np.int32), collective.Op.MAX)[0])
            STOP.received = STOP.received or ("SIGTERM on another host" if stop else None)
        if not stop:
            return False
        saved = self.checkpoints.save(model)
        where = f"checkpoint {saved} written" if saved is not None else "the leader wrote the checkpoint"
        raise StopRequested(STOP.message(f"stopped after round {rounds}; {where} (a job given the same "
                                         "checkpoints resumes from it)"))


def _checkpoints(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX):]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return found


def latest_checkpoint(directory: Path) -> xgboost.Booster | None:
    """The newest readable checkpoint (a torn newest one is skipped with a warning)."""
    for rounds, path in sorted(_checkpoints(directory), reverse=True):
        try:
            booster = load_booster(path)
        except xgboost.core.XGBoostError as exc:
            log.warning("skipping unreadable checkpoint %s: %s", path.name, exc)
            continue
        log.info("resuming from checkpoint %s (%d rounds done)", path.name, rounds)
        return booster
    return None


def _dmatrix(data: Dataset, name: str, expected_columns: int | None, csv_weights: bool = False) -> xgboost.DMatrix:
    features, weights = data.features, None
    if expected_columns is not None and data.rows and data.columns != expected_columns:
        if scipy.sparse.issparse(features) and data.columns < expected_columns:
            # LIBSVM's width is its highest index present: a narrower file is the same feature space.
            features = scipy.sparse.csr_matrix(features, shape=(data.rows, expected_columns))
        else:
            raise TrainingError(f"the {name} channel has {data.columns} features, the train channel "
                                f"{expected_columns}")
    if csv_weights and data.rows:  # SageMaker's csv_weights: the column after the label weighs each row
        if scipy.sparse.issparse(features) or features.shape[1] < 2:
            raise TrainingError(f"csv_weights=1: the {name} channel needs dense rows of label, weight, features")
        weights, features = features[:, 0], features[:, 1:]
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise TrainingError(f"csv_weights=1: the {name} channel's weights (the column after the label) must "
                                "be finite numbers >= 0")
    return xgboost.DMatrix(features, label=data.labels, weight=weights, missing=float("nan"))


def train(job: TrainingJob) -> None:
    env, hp = job.env, job.hyperparameters
    try:
        params = booster_params(hp)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    params.setdefault("nthread", env.num_cpus)
    fingerprint = features_fingerprint(job)
    rank, hosts = env.host_rank, len(env.hosts)
    with collective_group(env):
        set_phase("loading the data")
        train_data = load_channel(env.channel("train"), rank, hosts)
        if hosts == 1 and not train_data.rows:
            raise TrainingError("the train channel holds no rows")
        weighted = bool(hp["csv_weights"])
        dtrain = _dmatrix(train_data, "train", None, weighted)
        evals = [(dtrain, "train")]
        if "validation" in env.channels:
            evals.append((_dmatrix(load_channel(env.channel("validation"), rank, hosts), "validation",
                                   train_data.columns, weighted), "validation"))
        if hp["early_stopping_rounds"] and len(evals) < 2:
            raise TrainingError("early_stopping_rounds needs a validation channel")

        resumed = latest_checkpoint(job.checkpoint_dir)
        done = resumed.num_boosted_rounds() if resumed is not None else 0
        if resumed is not None and done > hp["num_round"]:  # a checkpoint of a longer run: keep num_round
            log.info("the checkpoint has %d rounds; keeping the first %d (num_round)", done, hp["num_round"])
            resumed, done = resumed[: hp["num_round"]], hp["num_round"]
        checkpoints = Checkpoints(job.checkpoint_dir, hp["checkpoint_frequency"], env.is_leader)
        set_phase(f"training round {done + 1}")
        with STOP.deferred():  # a SIGTERM now stops at the end of the round (StopOnSignal)
            booster = xgboost.train(
                params, dtrain, num_boost_round=hp["num_round"] - done, evals=evals,
                early_stopping_rounds=hp["early_stopping_rounds"], xgb_model=resumed, verbose_eval=False,
                callbacks=[MetricsLog(env.is_leader), checkpoints, StopOnSignal(checkpoints)],
            )
        set_phase("saving the model")
        best = booster.best_iteration if hp["early_stopping_rounds"] and booster.attr("best_iteration") else None
        if best is not None and best + 1 < booster.num_boosted_rounds():
            log.info("early stopping: keeping the best %d of %d rounds", best + 1, booster.num_boosted_rounds())
            booster = booster[: best + 1]
        if env.is_leader:
            booster.save_model(str(job.model_dir / MODEL_FILE))
            forest, why = fast.compile_forest(booster) if fast else (None, "no fast path in this image")
            if forest is not None:
                forest.save(job.model_dir / fast.FOREST_FILE)
            else:
                log.info("serving will use XGBoost's predictor for every request: %s", why)
            meta = {"num_features": booster.num_features(), "objective": params["objective"],
                    "num_class": hp["num_class"], "rounds": booster.num_boosted_rounds(),
                    "features_fingerprint": fingerprint}
            (job.model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            log.info("saved %s (%d rounds, %d features)", MODEL_FILE, meta["rounds"], meta["num_features"])
            job.publish()
        set_phase("the final barrier")
        barrier()  # no host leaves before the leader's model is in /opt/ml/model
