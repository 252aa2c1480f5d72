"""``PipelineModel`` in the SageMaker Python SDK's local mode, run as SageMaker runs a serial inference pipeline.

The SDK's local mode cannot deploy or batch-transform a ``sagemaker.pipeline.PipelineModel`` (SDK issue 1846:
``create_model() missing ... 'PrimaryContainer'``). ``PipelineSession`` is the project's offline local session
(``local_test.sagemaker_local.OfflineLocalSession``: no AWS calls, telemetry off, a free port per endpoint,
AWS-like ``invoke_endpoint`` errors) whose client also handles multi-container models; single-container
models go on as before::

    with PipelineSession() as session:
        pipeline = PipelineModel(models=[Model(image_uri="smkit-preprocess:0.1.0", model_data="file:///m/pre.tar.gz"),
                                         Model(image_uri="smkit-xgboost:0.1.0", model_data="file:///m/xgb.tar.gz")],
                                 sagemaker_session=session)
        pipeline.deploy(initial_instance_count=1, instance_type="local", endpoint_name="risk")
        session.endpoint_url("risk")        # http://127.0.0.1:PORT: one port, curl and wrk work
        Predictor("risk", sagemaker_session=session).predict(...)
        pipeline.transformer(1, "local", output_path="file:///out", accept="text/csv", assemble_with="Line",
                             ).transform("file:///in", content_type="application/jsonlines", split_type="Line")
        session.delete_endpoint("risk")      # removes every container of the endpoint (cleanup does too)

How an endpoint runs (``PipelineDeployment``): every container of the endpoint shares one network namespace,
as on SageMaker. The namespace belongs to the *front* container, which runs ``python -m
serving_common.pipeline`` from the first model's image (serving_common is in every image), listens on 8080
and is the only one publishing a port (a free port on 127.0.0.1). Stage ``i`` runs ``serve`` from its own
image with ``network_mode=container:<front>``, ``SAGEMAKER_BIND_TO_PORT`` 8080 + i, its model extracted from
its ``model.tar.gz`` into a private folder mounted read-only at ``/opt/ml/model`` (the SDK extracts next to
the archive instead), a read-only root and a tmpfs ``/tmp``. Every stage but the last gets
``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=text/csv`` unless its model sets one. The front chains the stages
(Content-Type handed on, Accept to the last stage only, a stage's error passed through with
``X-Pipeline-Stage``/``X-Pipeline-Container``). The endpoint is InService once the front's ``/ping`` is 200,
which it is only when every stage's is.

Batch transform (``PipelineTransformJob``) deploys the same way with the batch environment
(``SAGEMAKER_BATCH``, ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ...), asks the front for ``/execution-parameters``
(the first stage's), splits each input file by line (``SplitType=Line``; blank lines are skipped), sends
``MultiRecord`` batches of whole lines up to ``MaxPayloadInMB`` (single lines for ``SingleRecord``) and
writes ``<file>.out`` into the output folder; ``AssembleWith=Line`` ends every answer with a newline. A
failed request fails the job with the stage's status and message; the containers are removed in every case.

Before any container starts (at ``create_model``, so for ``deploy`` and ``transformer`` alike), a pipeline
is refused with a ``PipelineMismatchError`` (a ValueError) when a model cannot read what the model before
it answers: the width of the previous model's ``features.json`` ``output_columns`` differs from the
``num_features`` recorded in the next model's ``*-meta.json`` (``xgboost-meta.json``), or its
``fingerprint`` from the ``features_fingerprint`` recorded there (``serving_common.pipeline_check``, which
users run on their archives before deploying to AWS).

Only ``file://`` (or plain path) model data, inputs and outputs: nothing here talks to AWS.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker as docker_sdk
import requests
from botocore.exceptions import ClientError

from local_test.docker_run import ServerExited, docker_client, free_port, wait_ready

# First: it sets the offline environment before the SDK is imported (the SDK's class comes through it).
from local_test.sagemaker_local import (
    ROLE,
    SDK_DEFAULTS_CONFIG,
    LocalSagemakerClient,
    OfflineLocalSession,
    OfflineRuntimeClient,
    OfflineSagemakerClient,
)

# isort: split
from local_test.multi_model import MULTI_MODEL_MODE, LocalMultiModel, MultiModelEndpoint
from serving_common.pipeline_check import (  # noqa: F401  (PipelineMismatchError: raised from here too)
    META_PATTERN,
    ModelFiles,
    PipelineMismatchError,
    check_pipeline,
    read_json_files,
)

log = logging.getLogger("local_test.pipeline")

FRONT_PORT = 8080  # the front inside the namespace; stage i listens on FRONT_PORT + i
FRONT_COMMAND = ["python3", "-m", "serving_common.pipeline"]  # the images put their venv first on PATH
STAGE_ACCEPT = "text/csv"  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT of every stage but the last, unless set
LABEL = "smkit.pipeline-endpoint"


# -- model archives -----------------------------------------------------------------------------------


def local_path(url: str) -> Path:
    """A local path from ``file://...`` or a plain path; anything else (s3://) is refused: this is offline."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(parsed.netloc + parsed.path).resolve()
    if parsed.scheme == "":
        return Path(url).resolve()
    raise ValueError(f"{url}: only file:// (or local) locations are supported by this offline local mode")


class ModelArchive:
    """A model's ``ModelDataUrl``: a ``model.tar.gz`` or a folder, read without extracting, extracted on demand."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = local_path(url)
        if not self.path.exists():
            raise FileNotFoundError(f"model data {url} does not exist")
        self.is_dir = self.path.is_dir()
        if not self.is_dir and not tarfile.is_tarfile(self.path):
            raise ValueError(f"model data {url} is neither a folder nor a tar archive")

    def read_json(self, pattern: str) -> dict[str, dict[str, Any]]:
        """{file name: parsed JSON} of the top-level files matching ``pattern`` (unreadable ones skipped)."""
        return read_json_files(self.path, pattern)

    def extract(self, destination: Path) -> Path:
        """The model folder: the folder itself, or the archive extracted into ``destination``."""
        if self.is_dir:
            return self.path
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.path) as tar:
            tar.extractall(destination, filter="data")  # no absolute paths, links out, devices
        # Request workers run as an unprivileged account: everything readable, folders enterable.
        for root, dirs, files in os.walk(destination):
            os.chmod(root, 0o755)
            for name in files:
                path = os.path.join(root, name)
                os.chmod(path, os.stat(path).st_mode | 0o444)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        return destination


def stage_workers(stages: int, cpus: int | None = None) -> int:
    """Default worker processes per pipeline stage: the CPUs shared out among the stages."""
    return max(1, (cpus or os.cpu_count() or 1) // stages)


@dataclass
class ContainerSpec:
    """One container of a pipeline model, from its CreateModel container definition."""

    index: int  # 1-based position in the pipeline
    image: str
    model_data: str | None
    environment: dict[str, str]
    name: str

    @classmethod
    def from_definition(cls, index: int, definition: Mapping[str, Any]) -> ContainerSpec:
        image = definition.get("Image")
        if not image:
            raise ValueError(f"container {index} of the pipeline has no Image")
        name = definition.get("ContainerHostname") or image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        return cls(index, image, definition.get("ModelDataUrl"),
                   {str(k): str(v) for k, v in (definition.get("Environment") or {}).items()}, name)

    @property
    def archive(self) -> ModelArchive | None:
        return ModelArchive(self.model_data) if self.model_data else None

    def describe(self) -> str:
        return f"container {self.index} ({self.image}, model {self.model_data})"


def check_fingerprints(specs: Sequence[ContainerSpec]) -> None:
    """PipelineMismatchError when a model cannot read what its predecessor answers: another row width
    than it was trained on, or other features (fingerprint). ``serving_common.pipeline_check`` decides,
    the same check users run on their archives before deploying to AWS."""
    models = []
    for spec in specs:
        archive = spec.archive
        models.append(ModelFiles(spec.describe(), archive.read_json("features.json").get("features.json"),
                                 archive.read_json(META_PATTERN), spec.environment) if archive is not None
                      else ModelFiles(spec.describe(), environment=spec.environment))
    for line in check_pipeline(models):
        log.info("pipeline check: %s", line)


class LocalPipelineModel:
    """A multi-container model as the local client keeps it (``describe_model`` answers ``Containers``)."""

    def __init__(self, model_name: str, containers: Sequence[Mapping[str, Any]]) -> None:
        self.model_name = model_name
        self.containers = [dict(container) for container in containers]
        self.specs = [ContainerSpec.from_definition(i, c) for i, c in enumerate(self.containers, start=1)]
        for spec in self.specs:
            _ = spec.archive  # exists and is readable: fail at create_model, not at deploy
        check_fingerprints(self.specs)
        self.creation_time = datetime.now()

    def describe(self) -> dict[str, Any]:
        return {"ModelName": self.model_name, "CreationTime": self.creation_time, "ExecutionRoleArn": ROLE,
                "ModelArn": f"local:model/{self.model_name}", "Containers": self.containers,
                "InferenceExecutionConfig": {"Mode": "Serial"}}


# -- the containers of one endpoint -------------------------------------------------------------------


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class PipelineDeployment:
    """The running containers of one pipeline endpoint (or transform job): the front and one per stage.

    ``host_network``: the shared namespace is the host's instead of the front container's own (no port
    published, no docker-proxy copying every byte: closer to SageMaker's hosts, for benchmarks); the front
    and the stages then listen on free host ports.
    """

    client: docker_sdk.DockerClient
    specs: Sequence[ContainerSpec]
    name: str
    host: str = "127.0.0.1"
    host_port: int | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)  # to every stage (batch transform settings)
    front_env: Mapping[str, str] = field(default_factory=dict)
    front_image: str | None = None
    host_network: bool = False
    front: Any = None
    stages: list[Any] = field(default_factory=list)
    workdir: Path | None = None
    stage_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.host_network:
            self.host = "127.0.0.1"
            self.host_port = self.host_port or free_port()
            self.stage_ports = [free_port() for _ in self.specs]
        else:
            self.stage_ports = [FRONT_PORT + spec.index for spec in self.specs]

    @property
    def front_port(self) -> int:
        """Where the front listens in the shared namespace."""
        return self.host_port if self.host_network and self.host_port else FRONT_PORT

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.host_port}"

    @property
    def containers(self) -> list[Any]:
        return [c for c in [self.front, *self.stages] if c is not None]

    def stage_environment(self, spec: ContainerSpec) -> dict[str, str]:
        env = {**spec.environment, **self.extra_env, "SAGEMAKER_BIND_TO_PORT": str(self.stage_ports[spec.index - 1])}
        if spec.index < len(self.specs):
            env.setdefault("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", STAGE_ACCEPT)
        env.setdefault("SMKIT_ACCESS_LOG", "false")  # the front logs each request once; stages log failures
        # The stages share the machine's CPUs: each one's own default (a worker per CPU) would run
        # stages x CPUs workers on CPUs cores. Measured on 2 cores (bench/pipeline.py, same run): 1 worker
        # per stage serves 2,343 req/s at 0.69 ms CPU per request, 2 workers each 1,987 req/s at 0.93 ms.
        env.setdefault("SAGEMAKER_MODEL_SERVER_WORKERS", str(stage_workers(len(self.specs))))
        return env

    def front_environment(self) -> dict[str, str]:
        env = {"SAGEMAKER_BIND_TO_PORT": str(self.front_port),
               "SMKIT_PIPELINE_STAGES": ",".join(f"{spec.name}={port}"
                                                 for spec, port in zip(self.specs, self.stage_ports, strict=True))}
        for name in ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_MODEL_SERVER_TIMEOUT"):
            values = [self.stage_environment(spec).get(name) for spec in self.specs]
            numbers = [float(value) for value in values if value]
            if numbers:  # the front lets through what the most generous stage accepts / waits for
                env[name] = f"{max(numbers):g}"
        env.update(self.front_env)
        return env

    def start(self) -> PipelineDeployment:
        """Start every container (the front first: it owns the network namespace); removed again on failure."""
        suffix = uuid.uuid4().hex[:6]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"smkit-pipeline-{self.name[:40]}-"))
        self.workdir.chmod(0o755)
        if self.host_port is None:
            self.host_port = free_port()
        labels = {LABEL: self.name}
        network = ({"network_mode": "host"} if self.host_network
                   else {"ports": {f"{FRONT_PORT}/tcp": (self.host, self.host_port)}})
        try:
            model_dirs = [spec.archive.extract(self.workdir / f"model-{spec.index}") if spec.archive else None
                          for spec in self.specs]
            self.front = self.client.containers.run(
                self.front_image or self.specs[0].image, [], entrypoint=FRONT_COMMAND, detach=True,
                name=f"{self.name}-front-{suffix}", environment=self.front_environment(), labels=labels,
                read_only=True, tmpfs={"/tmp": ""}, **network)
            for spec, model_dir in zip(self.specs, model_dirs, strict=True):
                volumes = {str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}} if model_dir else {}
                self.stages.append(self.client.containers.run(
                    spec.image, ["serve"], detach=True, name=f"{self.name}-{spec.index}-{spec.name}-{suffix}",
                    network_mode=f"container:{self.front.id}", environment=self.stage_environment(spec),
                    volumes=volumes, labels=labels, read_only=True, tmpfs={"/tmp": ""}))
        except BaseException:
            self.remove()
            raise
        return self

    def exited(self) -> str | None:
        """Which container of the endpoint exited, with its code and the end of its logs; None while all run."""
        for container, label in zip(self.containers, ["front", *(s.describe() for s in self.specs)], strict=False):
            container.reload()
            if container.status in ("exited", "dead"):
                code = container.attrs["State"].get("ExitCode")
                return (f"pipeline endpoint {self.name}: {label} exited (code {code}):\n"
                        f"{_tail(container.logs().decode(errors='replace'))}")
        return None

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until the front's /ping is 200 (every stage's is); RuntimeError with the logs otherwise."""
        try:
            return wait_ready(f"{self.url}/ping", timeout, alive=lambda: self.exited() is None, interval=0.1,
                              check_every=0.0, request_timeout=2)
        except ServerExited:
            raise RuntimeError(self.exited() or f"pipeline endpoint {self.name}: a container exited") from None
        except TimeoutError as exc:
            raise TimeoutError(f"pipeline endpoint {self.name}: {exc}\n{self.logs_text()}") from None

    def logs(self) -> dict[str, str]:
        names = ["front", *(spec.name for spec in self.specs)]
        result = {}
        for name, container in zip(names, self.containers, strict=False):
            try:
                result[name] = container.logs().decode(errors="replace")
            except docker_sdk.errors.APIError:
                result[name] = "(container gone)"
        return result

    def logs_text(self, lines: int = 30) -> str:
        return "\n".join(f"--- {name}:\n{_tail(text, lines)}" for name, text in self.logs().items())

    def pids(self) -> dict[str, int]:
        """Host pid of each container's first process (for CPU accounting), front first."""
        names = ["front", *(spec.name for spec in self.specs)]
        result = {}
        for name, container in zip(names, self.containers, strict=False):
            container.reload()
            result[name] = container.attrs["State"]["Pid"]
        return result

    def remove(self) -> None:
        """Remove every container (stages first: they live in the front's namespace) and the model copies."""
        for container in [*reversed(self.stages), self.front]:
            if container is None:
                continue
            with contextlib.suppress(docker_sdk.errors.NotFound):
                container.remove(force=True)
        self.stages, self.front = [], None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


# -- the SDK's entities for pipeline models -----------------------------------------------------------


class PipelineEndpoint:
    """A local endpoint serving a pipeline model (what ``describe_endpoint`` and ``delete_endpoint`` see)."""

    _CREATING, _IN_SERVICE, _FAILED = "Creating", "InService", "Failed"

    def __init__(self, name: str, endpoint_config: Mapping[str, Any], model: LocalPipelineModel,
                 session: PipelineSession, tags: Any = None) -> None:
        self.name = name
        self.endpoint_config = endpoint_config
        self.model = model
        self.session = session
        self.tags = tags
        self.state = self._CREATING
        self.create_time = datetime.now()
        self.deployment: PipelineDeployment | None = None
        self.failure: str | None = None

    @property
    def url(self) -> str:
        assert self.deployment is not None, "the endpoint is not running"
        return self.deployment.url

    def serve(self) -> None:
        variant = self.endpoint_config["ProductionVariants"][0]
        if int(variant.get("InitialInstanceCount") or 1) > 1:
            log.warning("endpoint %s: local mode runs one instance of the pipeline", self.name)
        timeout = float(variant.get("ContainerStartupHealthCheckTimeoutInSeconds") or self.session.startup_timeout)
        self.deployment = PipelineDeployment(self.session.docker, self.model.specs, self.name,
                                             host=self.session.serving_host,
                                             front_env=self.session.front_environment,
                                             host_network=self.session.host_network)
        try:
            self.deployment.start()
            self.session.track(self)
            seconds = self.deployment.wait_ready(timeout)
        except BaseException as exc:
            self.state, self.failure = self._FAILED, str(exc)
            self.stop()
            raise
        self.state = self._IN_SERVICE
        log.info("pipeline endpoint %s in service at %s after %.1f s (%s)", self.name, self.url, seconds,
                 " -> ".join(spec.image for spec in self.model.specs))

    def stop(self) -> None:
        if self.deployment is not None:
            self.deployment.remove()
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


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its newline) of a file, blank lines left out."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, line


def batches(path: Path, split_type: str, strategy: str, max_payload_mb: float) -> Iterator[tuple[str, bytes]]:
    """(which lines, request body) for one input file, as SageMaker cuts records into requests."""
    limit = int(max_payload_mb * 1024 * 1024) if max_payload_mb else 0
    if split_type in ("None", ""):
        body = path.read_bytes()
        if limit and len(body) > limit:
            raise ValueError(f"{path}: {len(body)} bytes exceed MaxPayloadInMB={max_payload_mb:g} (SplitType None)")
        yield "the whole file", body
        return
    if split_type != "Line":
        raise NotImplementedError(f"SplitType={split_type}: this local mode splits by Line (or not at all)")
    buffer: list[bytes] = []
    size, first, last = 0, 0, 0
    for number, line in _lines(path):
        if limit and len(line) > limit:
            raise ValueError(f"{path}: line {number} has {len(line)} bytes, over MaxPayloadInMB={max_payload_mb:g}")
        if buffer and (strategy == "SingleRecord" or (limit and size + len(line) > limit)):
            yield f"lines {first}-{last}", b"".join(buffer)
            buffer, size = [], 0
        if not buffer:
            first = number
        buffer.append(line)
        size += len(line)
        last = number
    if buffer:
        yield f"lines {first}-{last}", b"".join(buffer)


class PipelineTransformJob:
    """A local batch transform job through a pipeline model (what ``describe_transform_job`` sees)."""

    _IN_PROGRESS, _COMPLETED, _FAILED = "InProgress", "Completed", "Failed"

    def __init__(self, name: str, model_name: str, model: LocalPipelineModel, session: PipelineSession) -> None:
        self.name = name
        self.model_name = model_name
        self.model = model
        self.session = session
        self.state = self._IN_PROGRESS
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.request: dict[str, Any] = {}
        self.failure: str | None = None
        self.records_out = 0

    @staticmethod
    def batch_environment(kwargs: Mapping[str, Any]) -> dict[str, str]:
        """The variables SageMaker sets in every container of a transform job (as the SDK's local mode)."""
        env = {"SAGEMAKER_BATCH": "True", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1"}
        if kwargs.get("MaxPayloadInMB"):
            env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(kwargs["MaxPayloadInMB"])
        strategy = kwargs.get("BatchStrategy")
        if strategy:
            if strategy not in ("SingleRecord", "MultiRecord"):
                raise ValueError("Invalid BatchStrategy, must be 'SingleRecord' or 'MultiRecord'")
            env["SAGEMAKER_BATCH_STRATEGY"] = "SINGLE_RECORD" if strategy == "SingleRecord" else "MULTI_RECORD"
        env.update({str(k): str(v) for k, v in (kwargs.get("Environment") or {}).items()})
        return env

    def start(self, input_data: Mapping[str, Any], output_data: Mapping[str, Any],
              resources: Mapping[str, Any], **kwargs: Any) -> None:
        self.start_time = datetime.now()
        self.request = {"TransformInput": input_data, "TransformOutput": output_data,
                        "TransformResources": resources, **kwargs}
        if kwargs.get("DataProcessing"):
            log.warning("transform job %s: DataProcessing (input/output filters, join) is ignored locally", self.name)
        if input_data.get("CompressionType", "None") not in ("None", None):
            raise NotImplementedError("compressed transform input is not supported in this local mode")
        deployment = PipelineDeployment(self.session.docker, self.model.specs, self.name,
                                        host=self.session.serving_host, extra_env=self.batch_environment(kwargs),
                                        front_env=self.session.front_environment,
                                        host_network=self.session.host_network)
        try:
            deployment.start()
            deployment.wait_ready(self.session.startup_timeout)
            self._run(deployment, input_data, output_data, dict(kwargs))
        except BaseException as exc:
            self.state, self.failure = self._FAILED, str(exc)
            raise
        finally:
            deployment.remove()
            self.end_time = datetime.now()
        self.state = self._COMPLETED

    def _run(self, deployment: PipelineDeployment, input_data: Mapping[str, Any], output_data: Mapping[str, Any],
             kwargs: dict[str, Any]) -> None:
        with requests.Session() as http:
            answer = http.get(f"{deployment.url}/execution-parameters", timeout=10)
            if answer.status_code == 200:
                for setting in ("BatchStrategy", "MaxPayloadInMB"):
                    if setting not in kwargs and setting in answer.json():
                        kwargs[setting] = answer.json()[setting]
            strategy = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}.get(
                kwargs.get("BatchStrategy", "MultiRecord"), kwargs.get("BatchStrategy", "MultiRecord"))
            max_payload = float(kwargs.get("MaxPayloadInMB", 6))
            source = local_path(input_data["DataSource"]["S3DataSource"]["S3Uri"])
            files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
            root = source if source.is_dir() else source.parent
            output_dir = local_path(output_data["S3OutputPath"])
            headers = {}
            if input_data.get("ContentType"):
                headers["Content-Type"] = input_data["ContentType"]
            if output_data.get("Accept"):
                headers["Accept"] = output_data["Accept"]
            line_ends = output_data.get("AssembleWith") == "Line"
            timeout = float(kwargs.get("ModelClientConfig", {}).get("InvocationsTimeoutInSeconds", 600))
            for path in files:
                destination = output_dir / path.relative_to(root).with_name(path.name + ".out")
                destination.parent.mkdir(parents=True, exist_ok=True)
                partial = destination.with_name(destination.name + ".partial")
                with open(partial, "wb") as out:
                    for where, body in batches(path, input_data.get("SplitType") or "None", strategy, max_payload):
                        response = http.post(f"{deployment.url}/invocations", data=body, headers=headers,
                                             timeout=timeout)
                        if not 200 <= response.status_code < 300:
                            stage = response.headers.get("X-Pipeline-Stage")
                            origin = (f"stage {stage} ({response.headers.get('X-Pipeline-Container')})" if stage
                                      else "the pipeline")
                            raise RuntimeError(f"transform job {self.name}: {path} {where}: {origin} answered "
                                               f"{response.status_code}: {response.text[:1000]}")
                        out.write(response.content)
                        if line_ends and not response.content.endswith(b"\n"):
                            out.write(b"\n")
                os.replace(partial, destination)
                log.info("transform job %s: %s -> %s", self.name, path, destination)

    def describe(self) -> dict[str, Any]:
        response = {
            "TransformJobName": self.name, "TransformJobArn": f"local:transform-job/{self.name}",
            "ModelName": self.model_name, "TransformJobStatus": self.state, "CreationTime": self.start_time,
            "TransformStartTime": self.start_time, "TransformEndTime": self.end_time,
            **{key: value for key, value in self.request.items()
               if key in ("TransformInput", "TransformOutput", "TransformResources", "BatchStrategy",
                          "MaxPayloadInMB", "MaxConcurrentTransforms", "Environment")},
        }
        if self.failure:
            response["FailureReason"] = self.failure
        return response


# -- the client, the runtime client and the session ---------------------------------------------------


class PipelineSagemakerClient(OfflineSagemakerClient):
    """The offline local client, plus multi-container (pipeline) models and multi-model endpoints
    (``local_test.multi_model``); single containers go on as before."""

    def create_model(self, ModelName: str, PrimaryContainer: Mapping[str, Any] | None = None,
                     *args: Any, Containers: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> None:
        if PrimaryContainer is None and Containers and len(Containers) == 1:
            PrimaryContainer = Containers[0]
        if PrimaryContainer is not None and PrimaryContainer.get("Mode") == MULTI_MODEL_MODE:
            LocalSagemakerClient._models[ModelName] = LocalMultiModel(ModelName, PrimaryContainer)
            return
        if PrimaryContainer is not None:
            super().create_model(ModelName, PrimaryContainer, *args, **kwargs)
            return
        if not Containers:
            raise ValueError(f"model {ModelName}: neither PrimaryContainer nor Containers given")
        mode = (kwargs.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
        if mode != "Serial":
            raise NotImplementedError(f"model {ModelName}: InferenceExecutionConfig Mode={mode} (only Serial)")
        LocalSagemakerClient._models[ModelName] = LocalPipelineModel(ModelName, Containers)

    @staticmethod
    def _pipeline_model(model_name: str) -> LocalPipelineModel | None:
        model = LocalSagemakerClient._models.get(model_name)
        return model if isinstance(model, LocalPipelineModel) else None

    def create_endpoint(self, EndpointName: str, EndpointConfigName: str, Tags: Any = None) -> None:
        config = self.describe_endpoint_config(EndpointConfigName)
        model_name = config["ProductionVariants"][0]["ModelName"]
        model = self._pipeline_model(model_name)
        multi = LocalSagemakerClient._models.get(model_name)
        if model is None and not isinstance(multi, LocalMultiModel):
            super().create_endpoint(EndpointName, EndpointConfigName, Tags)
            return
        session = self.sagemaker_session
        existing = LocalSagemakerClient._endpoints.get(EndpointName)
        if (isinstance(existing, PipelineEndpoint) and existing.deployment is not None) or (
                isinstance(existing, MultiModelEndpoint) and existing.server is not None):
            raise ClientError({"Error": {"Code": "ValidationException",
                                         "Message": f"Cannot create already existing endpoint {EndpointName}"}},
                              "CreateEndpoint")
        endpoint: PipelineEndpoint | MultiModelEndpoint = (
            PipelineEndpoint(EndpointName, config, model, session, Tags) if model is not None
            else MultiModelEndpoint(EndpointName, config, multi, session, Tags))
        LocalSagemakerClient._endpoints[EndpointName] = endpoint
        session.endpoint_names.add(EndpointName)  # the session's cleanup deletes it
        try:
            endpoint.serve()
        except BaseException:
            LocalSagemakerClient._endpoints.pop(EndpointName, None)
            session.endpoint_names.discard(EndpointName)
            raise
        # invoke_endpoint routes by name
        session.endpoint_ports[EndpointName] = int(endpoint.url.rsplit(":", 1)[1])

    def create_transform_job(self, TransformJobName: str, ModelName: str, TransformInput: Mapping[str, Any],
                             TransformOutput: Mapping[str, Any], TransformResources: Mapping[str, Any],
                             **kwargs: Any) -> None:
        if isinstance(LocalSagemakerClient._models.get(ModelName), LocalMultiModel):
            raise NotImplementedError(f"model {ModelName}: batch transform of a multi-model (Mode MultiModel) model")
        model = self._pipeline_model(ModelName)
        if model is None:
            super().create_transform_job(TransformJobName, ModelName, TransformInput, TransformOutput,
                                         TransformResources, **kwargs)
            return
        job = PipelineTransformJob(TransformJobName, ModelName, model, self.sagemaker_session)
        LocalSagemakerClient._transform_jobs[TransformJobName] = job
        job.start(TransformInput, TransformOutput, TransformResources, **kwargs)


class PipelineRuntimeClient(OfflineRuntimeClient):
    """The offline runtime client; a request to a multi-model endpoint first loads its target model there."""

    def invoke_endpoint(self, Body: Any, EndpointName: str, ContentType: str | None = None,
                        Accept: str | None = None, CustomAttributes: str | None = None,
                        TargetModel: str | None = None, TargetVariant: str | None = None,
                        InferenceId: str | None = None) -> dict[str, Any]:
        endpoint = LocalSagemakerClient._endpoints.get(EndpointName)
        if isinstance(endpoint, MultiModelEndpoint):
            endpoint.ensure_loaded(TargetModel)
        return super().invoke_endpoint(Body, EndpointName, ContentType, Accept, CustomAttributes, TargetModel,
                                       TargetVariant, InferenceId)


class PipelineSession(OfflineLocalSession):
    """An offline ``LocalSession`` (``local_test.sagemaker_local``) that also deploys and batch-transforms
    multi-container (pipeline) models. ``cleanup()`` (or ``with``) removes its endpoints, pipeline ones
    included; pipeline containers still running when the interpreter exits are removed then.

    ``front_environment``: extra variables for the pipeline front (e.g. ``SMKIT_PIPELINE_WORKERS``).
    ``host_network``: pipeline containers share the host's network namespace instead of the front's own
    (no published port, no docker-proxy: for benchmarks; see ``PipelineDeployment``).
    """

    def __init__(self, root: Path | str | None = None, *, docker: docker_sdk.DockerClient | None = None,
                 serving_host: str = "127.0.0.1", startup_timeout: float = 120.0,
                 front_environment: Mapping[str, str] | None = None, host_network: bool = False,
                 container_config: dict | None = None) -> None:
        self._docker = docker
        self.host_network = host_network
        self.serving_host = serving_host
        self.startup_timeout = startup_timeout
        self.front_environment = dict(front_environment or {})
        self._running: set[PipelineEndpoint | MultiModelEndpoint] = set()
        self._lock = threading.Lock()
        super().__init__(root, container_config)
        # PipelineModel insists on an execution role: a dummy ARN when none is given (nothing looks it up).
        defaults = json.loads(json.dumps(self.sagemaker_config or SDK_DEFAULTS_CONFIG))
        defaults.setdefault("SageMaker", {}).setdefault("Model", {}).setdefault("ExecutionRoleArn", ROLE)
        self.sagemaker_config = defaults
        atexit.register(self._stop_pipelines)

    def _initialize(self, boto_session: Any, sagemaker_client: Any, sagemaker_runtime_client: Any,
                    **kwargs: Any) -> None:
        super()._initialize(boto_session, sagemaker_client, sagemaker_runtime_client, **kwargs)
        self.sagemaker_client = PipelineSagemakerClient(self)
        self.sagemaker_runtime_client = PipelineRuntimeClient(None, self.endpoint_ports)
        self.config = self.config  # hands the config to the new runtime client too

    @property
    def docker(self) -> docker_sdk.DockerClient:
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    def endpoint_url(self, endpoint_name: str) -> str:
        endpoint = LocalSagemakerClient._endpoints.get(endpoint_name)
        if (isinstance(endpoint, PipelineEndpoint) and endpoint.deployment is not None) or (
                isinstance(endpoint, MultiModelEndpoint) and endpoint.server is not None):
            return endpoint.url
        return super().endpoint_url(endpoint_name)

    def deployment(self, endpoint_name: str) -> PipelineDeployment:
        """The running containers of a pipeline endpoint (for logs and benchmarks)."""
        endpoint = LocalSagemakerClient._endpoints.get(endpoint_name)
        if not isinstance(endpoint, PipelineEndpoint) or endpoint.deployment is None:
            raise KeyError(f"no running pipeline endpoint {endpoint_name!r}")
        return endpoint.deployment

    def track(self, endpoint: PipelineEndpoint | MultiModelEndpoint) -> None:
        with self._lock:
            self._running.add(endpoint)

    def untrack(self, endpoint: PipelineEndpoint | MultiModelEndpoint) -> None:
        with self._lock:
            self._running.discard(endpoint)

    def _stop_pipelines(self) -> None:
        with self._lock:
            running = list(self._running)
        for endpoint in running:
            endpoint.stop()

    def cleanup(self) -> None:
        self._stop_pipelines()
        super().cleanup()

    def __enter__(self) -> PipelineSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def remove_leftovers(client: docker_sdk.DockerClient | None = None) -> int:
    """Remove pipeline containers left by an interpreter that was killed (label smkit.pipeline-endpoint)."""
    client = client or docker_client()
    containers = client.containers.list(all=True, filters={"label": LABEL})
    for container in sorted(containers, key=lambda c: c.name.endswith("-front") or "-front-" in c.name):
        with contextlib.suppress(docker_sdk.errors.NotFound):
            container.remove(force=True)
    return len(containers)


# -- models for tests and benchmarks ------------------------------------------------------------------


def pack_model(model_dir: Path, archive: Path) -> Path:
    """``model.tar.gz`` of a model folder, files at the top level (as SageMaker packs /opt/ml/model)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(model_dir.iterdir()):
            tar.add(entry, arcname=entry.name)
    return archive


@dataclass
class TrainedPipeline:
    """What ``train_models`` made: the two archives, their folders, and the labelled feature rows."""

    preprocess_archive: Path
    xgboost_archive: Path
    preprocess_dir: Path
    xgboost_dir: Path
    labelled_csv: str


def labelled_features(client: docker_sdk.DockerClient, workdir: Path, orders: Sequence[Mapping[str, Any]],
                      preprocess_image: str, preprocess_hyperparameters: Mapping[str, Any] | None = None,
                      feature_code: str | None = None) -> tuple[Path, str]:
    """Fit preprocess on ``orders`` (with ``feature_code``, a module's text, in its code channel) and turn them
    into labelled feature rows with the fitted image (its batch output: ``SMKIT_OUTPUT_LABEL``): (the
    preprocess model folder, label-first CSV rows), what any model image trains on."""
    from local_test.docker_run import OptMl, ServingContainer, train
    from local_test.orders import write_jsonl

    channels: dict[str, dict[str, str]] = {"train": {"ContentType": "application/jsonlines"}}
    if feature_code is not None:
        channels["code"] = {"ContentType": "text/x-python"}
    pre = OptMl(workdir / "preprocess", {"label": "default", "drop": "order_id", **(preprocess_hyperparameters or {})},
                channels)
    write_jsonl(list(orders), pre.channel_dir("train") / "orders.jsonl")
    if feature_code is not None:
        (pre.channel_dir("code") / "features.py").write_text(feature_code)
    result = train(client, preprocess_image, pre)
    if result.exit_code != 0:
        raise RuntimeError(f"preprocess training failed:\n{_tail(result.logs)}")
    env = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
    with ServingContainer(client, preprocess_image, pre.model_dir, env=env) as batch:
        batch.wait_ready()
        labelled = batch.invoke("\n".join(json.dumps(o) for o in orders).encode(), "application/jsonlines", "text/csv")
        if labelled.status_code != 200:
            raise RuntimeError(f"labelled features: {labelled.status_code} {labelled.text[:500]}")
    return pre.model_dir, labelled.text


def train_models(client: docker_sdk.DockerClient, workdir: Path, orders: Sequence[Mapping[str, Any]],
                 preprocess_image: str, xgboost_image: str, num_round: int = 30,
                 xgboost_hyperparameters: Mapping[str, Any] | None = None,
                 preprocess_hyperparameters: Mapping[str, Any] | None = None,
                 feature_code: str | None = None) -> TrainedPipeline:
    """:func:`labelled_features`, then XGBoost trained on those rows with the features channel; both models
    packed."""
    from local_test.docker_run import OptMl, train

    preprocess_dir, labelled = labelled_features(client, workdir, orders, preprocess_image,
                                                 preprocess_hyperparameters, feature_code)
    xgb = OptMl(workdir / "xgboost", {"num_round": str(num_round), "objective": "binary:logistic",
                                      "eval_metric": "auc", "max_depth": "4", **(xgboost_hyperparameters or {})},
                {"train": {"ContentType": "text/csv"}, "features": {"ContentType": "application/json"}})
    (xgb.channel_dir("train") / "features.csv").write_text(labelled + "\n")
    (xgb.channel_dir("features") / "features.json").write_bytes((preprocess_dir / "features.json").read_bytes())
    result = train(client, xgboost_image, xgb)
    if result.exit_code != 0:
        raise RuntimeError(f"xgboost training failed:\n{_tail(result.logs)}")
    return TrainedPipeline(pack_model(preprocess_dir, workdir / "archives" / "preprocess.tar.gz"),
                           pack_model(xgb.model_dir, workdir / "archives" / "xgboost.tar.gz"),
                           preprocess_dir, xgb.model_dir, labelled)
