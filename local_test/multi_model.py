"""Multi-model endpoints (``sagemaker.multidatamodel.MultiDataModel``) in SDK local mode, as SageMaker runs them.

What SDK 2.x's local mode lacks (sagemaker 2.257, pinned in requirements/local.txt; lines of that release):

- ``MultiDataModel`` refuses any prefix but ``s3://`` (``sagemaker/multidatamodel.py`` line 84, "Expecting S3
  model prefix beginning with "s3://""), and its ``add_model`` / ``list_models`` talk to S3;
- the local client keeps the container definition's ``Mode: MultiModel`` but never reads it: the endpoint
  runs the image as a single-model one, the prefix mounted at ``/opt/ml/model`` and no
  ``SAGEMAKER_MULTI_MODEL`` (``sagemaker/local/entities.py`` lines 626-628, ``_LocalEndpoint.serve``;
  ``sagemaker/local/image.py`` lines 692-701);
- nothing loads the model a request names: ``invoke_endpoint`` only adds the target-model header
  (``sagemaker/local/local_session.py`` lines 625-626).

Here, with a :class:`local_test.pipeline.PipelineSession`:

- :class:`LocalMultiDataModel` is the SDK's ``MultiDataModel`` over a local folder (``file://...``): its
  container definition (``Mode: MultiModel``, the prefix as ``ModelDataUrl``), ``deploy`` and the
  ``Predictor`` (``predict(..., target_model="market-a.tar.gz")``) are the SDK's own; ``add_model`` copies an
  archive into the folder, ``list_models`` lists it;
- :class:`MultiModelEndpoint` does what a multi-model endpoint's host does: it runs the image with
  ``SAGEMAKER_MULTI_MODEL=true`` and an empty ``/opt/ml/models``; the first request naming a target model (a
  ``model.tar.gz`` path under the prefix) extracts that archive into ``/opt/ml/models/<n>/model`` and loads
  it (``POST /models``, the target model's path as its name); every request then goes to the container with
  its ``X-Amzn-SageMaker-Target-Model`` header. A target model that is not an archive under the prefix is
  refused as AWS refuses it (a ``ValidationError``), before anything reaches the container. Not done:
  unloading models under memory pressure (a 507 from the container fails the request) and batch transform.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from botocore.exceptions import ClientError

from local_test.docker_run import ServingContainer
from local_test.sagemaker_local import ROLE  # first: sets the offline environment before the SDK is imported

# isort: split
from sagemaker.multidatamodel import MultiDataModel

log = logging.getLogger("local_test.multi_model")

MULTI_MODEL_MODE = "MultiModel"
MODELS_ROOT = "/opt/ml/models"  # where SageMaker puts the models of a multi-model endpoint


def _local(url: str) -> Path:
    from local_test.pipeline import local_path  # this module is imported by local_test.pipeline

    return local_path(url)


def _validation_error(message: str, operation: str = "InvokeEndpoint") -> ClientError:
    return ClientError({"Error": {"Code": "ValidationError", "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


class LocalMultiDataModel(MultiDataModel):
    """``MultiDataModel(name, model_data_prefix="file:///models/", image_uri=..., sagemaker_session=...)``:
    the SDK's class, its prefix a local folder (the SDK checks for ``s3://`` in ``__init__`` only)."""

    def __init__(self, name: str, model_data_prefix: str, **kwargs: Any) -> None:
        folder = _local(model_data_prefix)
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(name, "s3://placeholder-never-used/", **kwargs)
        self.model_data_prefix = self.model_data = f"file://{folder}/"

    @property
    def folder(self) -> Path:
        return _local(self.model_data_prefix)

    def add_model(self, model_data_source: str, model_data_path: str | None = None) -> str:
        """Copy a local ``model.tar.gz`` to ``model_data_path`` under the prefix (its file name by default)."""
        source = _local(model_data_source)
        target = self.folder / (model_data_path or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return f"file://{target}"

    def list_models(self) -> Iterator[str]:
        """Paths of the archives under the prefix, relative to it (what ``target_model`` names)."""
        for path in sorted(self.folder.rglob("*.tar.gz")):
            yield path.relative_to(self.folder).as_posix()


class LocalMultiModel:
    """A ``Mode: MultiModel`` model as the local client keeps it."""

    def __init__(self, model_name: str, primary_container: Mapping[str, Any]) -> None:
        self.model_name = model_name
        self.primary_container = dict(primary_container)
        self.prefix = _local(str(self.primary_container.get("ModelDataUrl") or ""))
        if not self.prefix.is_dir():
            raise ValueError(f"model {model_name}: the multi-model prefix {self.prefix} is not a folder")
        self.creation_time = datetime.now()

    def describe(self) -> dict[str, Any]:
        return {"ModelName": self.model_name, "CreationTime": self.creation_time, "ExecutionRoleArn": ROLE,
                "ModelArn": f"local:model/{self.model_name}", "PrimaryContainer": self.primary_container}


class MultiModelEndpoint:
    """A local multi-model endpoint: one container of the model's image, models loaded on first request."""

    _CREATING, _IN_SERVICE, _FAILED = "Creating", "InService", "Failed"

    def __init__(self, name: str, endpoint_config: Mapping[str, Any], model: LocalMultiModel, session: Any,
                 tags: Any = None) -> None:
        self.name = name
        self.endpoint_config = endpoint_config
        self.model = model
        self.session = session
        self.tags = tags
        self.state = self._CREATING
        self.create_time = datetime.now()
        self.failure: str | None = None
        self.server: ServingContainer | None = None
        self.workdir: Path | None = None
        self.loaded: dict[str, str] = {}  # target model -> its folder under /opt/ml/models
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self.server is not None, "the endpoint is not running"
        return self.server.url

    def serve(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"smkit-mme-{self.name[:40]}-"))
        models = self.workdir / "models"
        models.mkdir(mode=0o755)
        self.workdir.chmod(0o755)
        container = self.model.primary_container
        env = {**{str(k): str(v) for k, v in (container.get("Environment") or {}).items()},
               "SAGEMAKER_MULTI_MODEL": "true"}
        try:
            self.server = ServingContainer(self.session.docker, container["Image"], None, env=env,
                                           volumes={str(models): {"bind": MODELS_ROOT, "mode": "ro"}})
            self.session.track(self)
            seconds = self.server.wait_ready(self.session.startup_timeout)
        except BaseException as exc:
            self.state, self.failure = self._FAILED, str(exc)
            self.stop()
            raise
        self.state = self._IN_SERVICE
        log.info("multi-model endpoint %s in service at %s after %.1f s (%s, models from %s)", self.name, self.url,
                 seconds, container["Image"], self.model.prefix)

    def archive(self, target_model: str) -> Path:
        """The archive ``target_model`` names under the prefix; a ValidationError for anything else."""
        prefix = os.path.realpath(self.model.prefix)
        path = os.path.realpath(os.path.join(prefix, target_model))
        if os.path.commonpath([path, prefix]) != prefix or not os.path.isfile(path) or not tarfile.is_tarfile(path):
            raise _validation_error(f"Failed to download model data for model {target_model!r}: no model archive "
                                    f"{target_model!r} under {self.model.prefix}")
        return Path(path)

    def ensure_loaded(self, target_model: str | None) -> None:
        """Extract and load ``target_model`` unless this endpoint holds it already."""
        if not target_model:
            raise _validation_error(f"Endpoint {self.name} is a multi-model endpoint: name the model (TargetModel)")
        with self._lock:
            if target_model in self.loaded:
                return
            archive = self.archive(target_model)
            assert self.workdir is not None
            folder = f"{len(self.loaded)}/model"
            destination = self.workdir / "models" / folder
            destination.mkdir(parents=True)
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")
            for root, _dirs, files in os.walk(self.workdir / "models"):
                os.chmod(root, 0o755)
                for file in files:
                    os.chmod(os.path.join(root, file), 0o644)
            answer = requests.post(f"{self.url}/models", json={"model_name": target_model,
                                                               "url": f"{MODELS_ROOT}/{folder}"}, timeout=120)
            if answer.status_code != 200:
                raise ClientError({"Error": {"Code": "ModelError", "Message": f"loading {target_model!r} failed "
                                             f"({answer.status_code}): {answer.text[:1000]}"},
                                   "OriginalStatusCode": answer.status_code,
                                   "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
            self.loaded[target_model] = folder
            log.info("multi-model endpoint %s: loaded %s", self.name, target_model)

    def stop(self) -> None:
        if self.server is not None:
            self.server.remove()
            self.server = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.session.untrack(self)

    def describe(self) -> dict[str, Any]:
        response = {
            "EndpointName": self.name, "EndpointArn": f"local:endpoint/{self.name}",
            "EndpointConfigName": self.endpoint_config["EndpointConfigName"],
            "ProductionVariants": self.endpoint_config["ProductionVariants"], "EndpointStatus": self.state,
            "CreationTime": self.create_time, "Tags": self.tags,
        }
        if self.failure:
            response["FailureReason"] = self.failure
        return response
