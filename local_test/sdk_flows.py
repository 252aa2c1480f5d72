"""The SageMaker Python SDK 2.x flows against our images in local mode, one function each:

    with offline_local_mode() as session:
        model_data = fit(session, image, {"label": "default"}, {"train": train_dir})   # file://.../model.tar.gz
        with endpoint(deploy(session, image, model_data)) as predictor:
            body = predict(predictor, b'{"amount": 10}', "application/json", "text/csv")
        out_dir = transform(session, image, model_data, in_dir, out_dir, "application/jsonlines", "text/csv")

Everything is the SDK's own code path (``Estimator.fit``, ``Model.deploy``, ``Predictor.predict``,
``Model.transformer(...).transform``) with file:// paths and the offline session of
``local_test.sagemaker_local``; these functions only add what local mode leaves out: the training
job's failure reason, a check of the model archive, raw-bytes predictions.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import local_test.sagemaker_local  # noqa: F401  (first: the offline environment before the SDK's import)

# isort: split
from sagemaker.deserializers import BytesDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local.local_session import file_input
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer
from sagemaker.utils import base_name_from_image, name_from_base

from local_test.sagemaker_local import (
    ROLE,
    OfflineLocalSession,
    OfflineViolation,
    TrainingJobFailed,
    endpoint,
    offline_local_mode,
)

__all__ = ["TrainingFailed", "deploy", "endpoint", "extract_model", "fit", "model_files", "offline_local_mode",
           "predict", "read_csv_rows", "transform", "transform_output"]

INSTANCE_TYPE = "local"


class TrainingFailed(RuntimeError):
    """A local training job failed; ``reason`` is the container's /opt/ml/output/failure (FailureReason)."""

    def __init__(self, message: str, reason: str | None, output_path: Path) -> None:
        super().__init__(message)
        self.reason = reason
        self.output_path = output_path


def file_uri(path: Path | str) -> str:
    """``file:///abs/path`` for a path; a file:// URI is returned as it is."""
    if isinstance(path, str) and path.startswith("file://"):
        return path
    return f"file://{Path(path).resolve()}"


def local_path(uri: Path | str) -> Path:
    return Path(uri[len("file://"):]) if isinstance(uri, str) and uri.startswith("file://") else Path(uri)


def _job_name(image: str) -> str:
    return name_from_base(base_name_from_image(image))


def _failure_reason(output_path: Path) -> str | None:
    archive = output_path / "output.tar.gz"
    if not archive.is_file():
        return None
    try:
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if Path(m.name).name == "failure" and m.isfile()), None)
            return tar.extractfile(member).read().decode(errors="replace").strip() if member else None
    except (tarfile.TarError, OSError):
        return None


def model_files(model_data: str | Path) -> list[str]:
    """The regular files in a model.tar.gz, as paths relative to the model folder."""
    with tarfile.open(local_path(model_data)) as tar:
        return sorted(str(Path(m.name)) for m in tar.getmembers() if m.isfile())


def extract_model(model_data: str | Path, destination: Path) -> Path:
    """Extracts a model.tar.gz (what ``fit`` returned) into ``destination``: the folder /opt/ml/model
    gets, to load the same model in-process."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(local_path(model_data)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def fit(session: OfflineLocalSession, image: str, hyperparameters: Mapping[str, Any],
        channels: Mapping[str, Path | str], *, instance_count: int = 1,
        content_types: Mapping[str, str] | None = None, output_path: Path | str | None = None,
        required_files: Iterable[str] = (), environment: Mapping[str, str] | None = None,
        job_name: str | None = None, entry_point: str | None = None, source_dir: Path | str | None = None) -> str:
    """``Estimator(image_uri=image, instance_type="local", ...).fit(channels)``; returns the model's
    ``file://.../model.tar.gz``.

    ``entry_point`` (with ``source_dir``, a local folder): script mode, the image runs that script of the
    folder (local code: the SDK hands the folder over as it is, no upload).

    ``channels``: channel name -> folder (a path or file:// URI), mounted at /opt/ml/input/data/<name>;
    ``content_types``: channel name -> ContentType. ``output_path`` (default: a folder of its own under
    the session's root) receives model.tar.gz and output.tar.gz — one folder per job, since a local
    deploy extracts the archive next to itself.

    Raises :class:`TrainingFailed` with the container's failure reason when the job fails, and also
    when it "succeeds" with a model archive that is empty, holds an unpublished staging folder, or
    lacks one of ``required_files`` (every host exiting 0 is not proof that the leader saved the model;
    with the SDK alone, compose's ``--abort-on-container-exit`` even reported the first host's exit code
    alone, see ``local_test.sagemaker_local``).
    """
    job_name = job_name or _job_name(image)
    output = local_path(output_path) if output_path is not None else session.root / "output" / job_name
    output.mkdir(parents=True, exist_ok=True)
    estimator = Estimator(
        image_uri=image, role=ROLE, instance_count=instance_count, instance_type=INSTANCE_TYPE,
        hyperparameters=dict(hyperparameters), output_path=file_uri(output), sagemaker_session=session,
        environment=dict(environment or {}), disable_profiler=True, debugger_hook_config=False,
        entry_point=entry_point, source_dir=None if source_dir is None else str(source_dir))
    inputs = {name: file_input(file_uri(path), (content_types or {}).get(name)) for name, path in channels.items()}
    try:
        estimator.fit(inputs, job_name=job_name, wait=True, logs="All")
    except OfflineViolation:
        raise
    except TrainingJobFailed as exc:
        raise TrainingFailed(str(exc), exc.reason, output) from exc
    except RuntimeError as exc:
        reason = _failure_reason(output)
        raise TrainingFailed(f"training job {job_name} failed: {reason or exc}", reason, output) from exc
    model_data = estimator.model_data
    files = model_files(model_data)
    problem = None
    if not files:
        problem = "the model archive is empty"
    elif any(name.split("/")[0].startswith(".staging") for name in files):
        problem = f"the model archive holds an unpublished staging folder: {files}"
    elif missing := [name for name in required_files if name not in files]:
        problem = f"the model archive lacks {missing}: {files}"
    if problem:
        raise TrainingFailed(f"training job {job_name} reported success but {problem}", _failure_reason(output),
                             output)
    return model_data


def _model(session: OfflineLocalSession, image: str, model_data: str | Path,
           env: Mapping[str, str] | None) -> Model:
    return Model(image_uri=image, model_data=file_uri(model_data), role=ROLE, env=dict(env or {}),
                 sagemaker_session=session, predictor_cls=Predictor)


def deploy(session: OfflineLocalSession, image: str, model_data: str | Path, env: Mapping[str, str] | None = None,
           *, content_type: str = "application/json", accept: str | None = None,
           endpoint_name: str | None = None) -> Predictor:
    """``Model(image, model_data).deploy(instance_type="local", initial_instance_count=1)``: a running
    endpoint on a free port of its own (``session.endpoint_url(predictor.endpoint_name)``).

    The predictor sends bytes as they are (``IdentitySerializer(content_type)``) and returns bytes;
    pass other types per call with :func:`predict`. Delete it with ``predictor.delete_endpoint()`` or
    ``with sagemaker_local.endpoint(deploy(...)) as predictor``.
    """
    model = _model(session, image, model_data, env)
    return model.deploy(initial_instance_count=1, instance_type=INSTANCE_TYPE, endpoint_name=endpoint_name,
                        serializer=IdentitySerializer(content_type), deserializer=BytesDeserializer(accept or "*/*"),
                        wait=True)


def predict(predictor: Predictor, body: bytes | str, content_type: str | None = None, accept: str | None = None,
            custom_attributes: str | None = None) -> bytes:
    """One ``Predictor.predict`` with raw bytes; a non-2xx answer raises botocore's ``ClientError``
    (code ``ModelError``, ``OriginalStatusCode``), as on AWS."""
    args: dict[str, str] = {}
    if content_type is not None:
        args["ContentType"] = content_type
    if accept is not None:
        args["Accept"] = accept
    if custom_attributes is not None:
        args["CustomAttributes"] = custom_attributes
    return predictor.predict(body.encode() if isinstance(body, str) else body, initial_args=args)


def transform(session: OfflineLocalSession, image: str, model_data: str | Path, input_path: Path | str,
              output_path: Path | str, content_type: str, accept: str, env: Mapping[str, str] | None = None, *,
              split_type: str | None = "Line", assemble_with: str | None = "Line", strategy: str | None = "MultiRecord",
              max_payload_mb: int | None = None) -> Path:
    """``Model(image, model_data).transformer(...).transform(input)``: SageMaker batch transform in
    local mode. Every input file ``f`` gives ``output_path/f.out``; with ``assemble_with="Line"`` the
    SDK adds a newline after every response. ``None`` for ``split_type``, ``assemble_with`` or
    ``strategy`` is the SDK's own default (the container's /execution-parameters for the strategy). A
    record the container refuses fails the job (ClientError). Returns the output folder."""
    output = local_path(output_path)
    output.mkdir(parents=True, exist_ok=True)
    transformer = _model(session, image, model_data, env).transformer(
        instance_count=1, instance_type=INSTANCE_TYPE, strategy=strategy, assemble_with=assemble_with,
        output_path=file_uri(output), accept=accept, max_payload=max_payload_mb)
    transformer.transform(file_uri(input_path), content_type=content_type, split_type=split_type)  # wait, logs
    return output


def transform_output(output_dir: Path) -> bytes:
    """Every ``*.out`` file of a transform's output folder, in name order, concatenated."""
    return b"".join(path.read_bytes() for path in sorted(output_dir.rglob("*.out")))


def read_csv_rows(data: bytes) -> list[list[float]]:
    """Numeric CSV rows (blank lines — the SDK's assemble_with="Line" newlines — skipped)."""
    return [[float(cell) for cell in line.split(",")] for line in io.StringIO(data.decode()) if line.strip()]
