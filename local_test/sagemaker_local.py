"""The SageMaker Python SDK's local mode, fully offline: dummy region and credentials that never leave
this machine, no instance metadata lookups, no telemetry, no AWS request of any kind.

    with offline_local_mode() as session:          # a LocalSession; everything it made is removed on exit
        Estimator(..., instance_type="local", sagemaker_session=session).fit(...)

What :class:`OfflineLocalSession` changes in SDK 2.x's ``LocalSession`` (pinned in requirements/local.txt):

- **No AWS calls.** Its boto3 session carries the dummy credentials and region of ``OFFLINE_ENV``, and
  every botocore request is refused before it is sent (``OfflineViolation``): code paths that would
  reach S3, STS, ECR or CloudWatch fail loudly instead of hanging in retries. ``default_bucket()``
  answers a placeholder name without asking STS/S3 (``Model.deploy`` asks for it even when nothing is
  uploaded); local code (``local.local_code``) and file:// paths keep everything on disk.
- **Telemetry off** through the SDK's own switch, ``SageMaker.PythonSDK.Modules.TelemetryOptOut`` in
  the session's SDK-defaults config (the ``_telemetry_emitter`` decorator reads it before every
  ``fit``/``deploy``/``transform`` and sends nothing when it is true).
- **A free host port per endpoint and per transform job.** The SDK publishes every local endpoint on
  ``local.serving_port`` (default 8080) and its runtime client ignores ``EndpointName``; here each
  endpoint gets its own free port, recorded by name, and ``invoke_endpoint`` routes by name, so one
  session holds several endpoints (and a batch transform beside them).
- **invoke_endpoint behaves like AWS's**: a non-2xx answer raises ``ClientError`` code ``ModelError``
  (the SDK's local client hands the error body back as if it were a prediction, and a batch
  transform would write it into the ``.out`` file), and ``ContentType`` is the response's, not the
  request's ``Accept``. With ``assemble_with="Line"`` a response that ends its last line gets no
  second newline (local mode alone would write a blank line after every mini-batch).
- **Fast readiness.** The SDK polls ``/ping`` every 5 s (first poll at once, so a deploy takes ≥ 5 s)
  and ``deploy(wait=True)`` then sleeps another 30 s in ``wait_for_endpoint``; transform jobs sleep 10 s
  and call CloudWatch for logs. Here pings are polled every 50 ms (and a container that exits, e.g. a
  failed model load, fails the deploy at once with its logs instead of after 120 s), and the
  ``wait_for_*``/``logs_for_*`` methods return at once: local mode's create calls are synchronous, so
  there is nothing left to wait for. A deploy takes the container's start time (~2-4 s here).
- **Cleanup.** Every temporary folder the SDK makes lives under the session's ``root``
  (``local.container_root``). Local mode never removes its containers: the ones of a training job or
  transform job are removed when it ends, an endpoint's when it is deleted, and
  :meth:`OfflineLocalSession.cleanup` stops what is left (endpoints, transform containers), removes
  every container docker-compose made under ``root``, then ``root``. :func:`offline_local_mode` and
  :func:`endpoint` do that even when a step fails.

Importing this module sets ``OFFLINE_ENV`` (import it before the SDK, which warns about v2 on import)
and patches the SDK, process-wide (so a plain ``LocalSession`` gets it too):

- without changing what they do: the ping wait above
  (``sagemaker.local.entities._wait_for_serving_container``); the endpoint's compose thread
  (``sagemaker.local.image._HostingContainer``), which raised — a stderr traceback per deleted endpoint —
  when its container was stopped on purpose; and ``sagemaker.utils.validate_sagemaker_config``, which
  re-validated the SDK-defaults config against its whole JSON schema on every config lookup (~0.45 s
  each, ~20 per fit or deploy, as soon as the config is not empty — as our telemetry opt-out makes it):
  now once per distinct config;
- where local mode differs from SageMaker: batch transform reads ``/execution-parameters``'
  ``MULTI_RECORD``/``SINGLE_RECORD`` (AWS's spelling) as well as ``MultiRecord``/``SingleRecord``;
  ``Transformer.transform(logs=True)`` no longer asks CloudWatch for logs after the job
  (``LocalSession.logs_for_transform_job``, as the SDK already does for training); the in-place repack
  of a ``file://`` model archive for ``Model(entry_point=..., source_dir=...)`` with local code is
  skipped (the container reads the mounted ``source_dir``; the user's archive is never rewritten); and
  a failed training job raises :class:`TrainingJobFailed`, whose message carries each host's
  ``/opt/ml/output/failure`` instead of only ``docker-compose ... exited with code 1``; and a training
  job on several hosts ends as on SageMaker, when every host has exited (compose's
  ``--abort-on-container-exit`` ended it when the first one did, successful or not, stopping the others
  mid-work): the first host that exits non-zero has the others stopped and fails the job, and the hosts'
  exit codes decide the outcome (``_HostWatch``, ``_compose_waiting_for_every_host``).

Known limits: the SDK publishes an endpoint's port on every interface (its compose file says
``"PORT:8080"``); the docker-compose subprocess is outside this process, so the offline guarantees are
about the SDK and boto3 (compose only talks to the local Docker socket; images are never pulled
because they are local tags).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

REGION = "eu-central-1"
ACCOUNT = "111111111111"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/local"  # a full ARN: the SDK never asks IAM to expand it
OFFLINE_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local-mode-only",
    "AWS_SECRET_ACCESS_KEY": "local-mode-only",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
}
# The SDK-defaults config (the schema of ~/.config/sagemaker/config.yaml) every session gets.
SDK_DEFAULTS_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
PLACEHOLDER_BUCKET = "smkit-local-mode-offline"  # never contacted
PING_INTERVAL_S = 0.05
PING_TIMEOUT_S = 120  # the SDK's HEALTH_CHECK_TIMEOUT_LIMIT
COMPOSE_WORKING_DIR = "com.docker.compose.project.working_dir"
COMPOSE_SERVICE = "com.docker.compose.service"  # a training job's host name, algo-N-<suffix>
HOST_WATCH_INTERVAL_S = 0.25
HOST_STOP_TIMEOUT_S = 10  # docker-compose's: SIGTERM, then SIGKILL

log = logging.getLogger("smkit.local_mode")


def offline_environment() -> None:
    """Set the variables that keep boto3 and the SDK from looking for AWS."""
    os.environ.update(OFFLINE_ENV)


offline_environment()  # before the SDK (and boto3 through it) is imported below

import boto3  # noqa: E402
import sagemaker.utils  # noqa: E402
import urllib3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from sagemaker.config import validate_sagemaker_config as _validate_sagemaker_config  # noqa: E402
from sagemaker.local import data as _data  # noqa: E402
from sagemaker.local import entities as _entities  # noqa: E402
from sagemaker.local import image as _image  # noqa: E402
from sagemaker.local.local_session import (  # noqa: E402
    LocalSagemakerClient,
    LocalSagemakerRuntimeClient,
    LocalSession,
)

from local_test.docker_run import ServerExited, docker_client, free_port, wait_ready  # noqa: E402

logging.getLogger("sagemaker.telemetry.telemetry_logging").setLevel(logging.WARNING)  # the opt-out notice
logging.getLogger("sagemaker.config").setLevel(logging.WARNING)  # "Applied value from config key" per lookup

_VALID_CONFIGS: set[str] = set()


def _validate_sagemaker_config_once(sagemaker_config: dict | None = None) -> None:
    """``sagemaker.utils.get_sagemaker_config_value`` validates the whole SDK-defaults config against
    its JSON schema on every lookup, re-checking the (large) schema itself each time: ~0.45 s a lookup,
    ~20 lookups per fit or deploy — 10 s each, only because the config is not empty (our telemetry
    opt-out). Same check, once per distinct config."""
    key = json.dumps(sagemaker_config, sort_keys=True, default=repr)
    if key not in _VALID_CONFIGS:
        _validate_sagemaker_config(sagemaker_config)
        _VALID_CONFIGS.add(key)


sagemaker.utils.validate_sagemaker_config = _validate_sagemaker_config_once


class OfflineViolation(RuntimeError):
    """Something tried to send a request to AWS from an offline local-mode session."""


def _refuse_aws_request(request: Any = None, **_: Any) -> None:
    raise OfflineViolation(f"offline local mode: refused an AWS request to {getattr(request, 'url', request)}")


def offline_boto_session() -> boto3.Session:
    """A boto3 session with the dummy credentials and region; any request it would send raises."""
    session = boto3.Session(aws_access_key_id=OFFLINE_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=OFFLINE_ENV["AWS_SECRET_ACCESS_KEY"], region_name=REGION)
    session.events.register("before-send", _refuse_aws_request)
    return session


# -- readiness ---------------------------------------------------------------------------------------

_DOCKER_HOST: str | None = None


def docker_host() -> str:
    """Where published ports answer: the SDK's answer (it runs `docker info` and `docker context
    inspect` on every call, ~0.1 s each), computed once."""
    global _DOCKER_HOST
    if _DOCKER_HOST is None:
        from sagemaker.local.utils import get_docker_host
        _DOCKER_HOST = get_docker_host()
    return _DOCKER_HOST


def _container_on_port(client: Any, port: int) -> Any | None:
    """The compose-made container that publishes ``port`` (HostConfig keeps the binding after an exit)."""
    for container in client.containers.list(all=True, filters={"label": COMPOSE_WORKING_DIR}):
        bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
        if any(str(b.get("HostPort")) == str(port) for entries in bindings.values() for b in entries or ()):
            return container
    return None


def wait_for_serving_container(serving_port: int, timeout: float = PING_TIMEOUT_S) -> float:
    """Drop-in for ``sagemaker.local.entities._wait_for_serving_container``: polls ``/ping`` every 50 ms
    instead of 5 s, and fails at once (with the container's logs) when the container exits. Returns
    the seconds it waited."""
    url = f"http://{docker_host()}:{serving_port}/ping"
    client = None
    exited: tuple[str, Any, str] | None = None

    def alive() -> bool:
        nonlocal client, exited
        with suppress(Exception):  # no Docker API: keep polling /ping, as the SDK does
            client = client or docker_client()
            container = _container_on_port(client, serving_port)
            if container is not None and container.status in ("exited", "dead"):
                exited = (container.name, container.attrs["State"].get("ExitCode"),
                          container.logs(tail=60).decode(errors="replace"))
        return exited is None

    try:
        return wait_ready(url, timeout, alive=alive, interval=PING_INTERVAL_S, request_timeout=2)
    except ServerExited:
        name, code, logs = exited or ("?", "?", "")
        raise RuntimeError(f"the serving container {name} exited ({code}) before /ping answered 200:\n{logs}") from None
    except TimeoutError:
        raise RuntimeError(f"Giving up, endpoint didn't launch correctly: no 200 on {url} within {timeout:.0f} s") \
            from None


# _LocalEndpoint.serve and _LocalTransformJob.start call the module-level function; this keeps their
# behaviour (wait until /ping is 200, raise RuntimeError otherwise) and only makes it faster.
_entities._wait_for_serving_container = wait_for_serving_container

# The thread that runs `docker-compose up` for an endpoint raises when compose exits non-zero, which it
# does whenever the endpoint is deleted (stopping the container): a traceback on stderr per endpoint,
# caught by nobody. A stop we asked for is now quiet; any other end of the container is a warning.
_hosting_run, _hosting_down = _image._HostingContainer.run, _image._HostingContainer.down


def _run_hosting_container(self) -> None:
    try:
        _hosting_run(self)
    except RuntimeError as exc:
        if not getattr(self, "smkit_stopping", False):
            log.warning("a local serving container ended: %s", exc)


def _stop_hosting_container(self) -> None:
    self.smkit_stopping = True
    _hosting_down(self)


_image._HostingContainer.run = _run_hosting_container
_image._HostingContainer.down = _stop_hosting_container


# -- SDK local mode where it differs from SageMaker (process-wide: plain LocalSessions get it too) -----

# /execution-parameters: AWS's containers and documentation spell the strategy MULTI_RECORD/SINGLE_RECORD,
# local mode knows only the API's MultiRecord/SingleRecord (serving_common/app.py has the evidence).
_STRATEGY_SPELLINGS = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}
_batch_strategy_instance = _data.get_batch_strategy_instance


def _batch_strategy_instance_any_spelling(strategy: str, splitter: Any) -> Any:
    return _batch_strategy_instance(_STRATEGY_SPELLINGS.get(strategy, strategy), splitter)


_data.get_batch_strategy_instance = _batch_strategy_instance_any_spelling


# `Transformer.transform(wait=True, logs=True)` (the defaults) calls logs_for_transform_job, which
# LocalSession does not override (it does logs_for_job and logs_for_processing_job): CloudWatch is asked
# for the logs after the output is written, and the job ends in a connection error offline (or with
# someone else's credentials). Local mode's transform is synchronous and its container logged to stdout.
def _no_transform_logs(self, job_name, wait=False, poll=10):
    """Local mode: the transform job has finished and its container's log went to stdout."""


LocalSession.logs_for_transform_job = _no_transform_logs

# `Model(entry_point=..., source_dir=..., model_data="file://...")` with local code: the SDK repacks the
# code into the user's own model.tar.gz, in place (model.Model._upload_code: repacked_model_data =
# model_data), although the container never reads that copy: local mode mounts source_dir at
# /opt/ml/code and points SAGEMAKER_SUBMIT_DIRECTORY there. The in-place repack is skipped; the
# archive is left as the user made it. A repack to another location (AWS, s3://) runs as before.
_repack_model = sagemaker.utils.repack_model


def _repack_model_unless_in_place(*args: Any, **kwargs: Any) -> Any:
    names = ("inference_script", "source_directory", "dependencies", "model_uri", "repacked_model_uri")
    given = {**dict(zip(names, args, strict=False)), **kwargs}
    model_uri, repacked_uri = given.get("model_uri"), given.get("repacked_model_uri")
    if isinstance(model_uri, str) and model_uri.startswith("file://") and model_uri == repacked_uri:
        log.info("local code: %s is not repacked (source_dir %s is mounted at /opt/ml/code)", model_uri,
                 given.get("source_directory"))
        return None
    return _repack_model(*args, **kwargs)


sagemaker.utils.repack_model = _repack_model_unless_in_place


class TrainingJobFailed(RuntimeError):
    """A local training job failed. The message carries every host's /opt/ml/output/failure (the job's
    FailureReason on SageMaker), not only docker-compose's exit code; ``reasons`` maps host -> text."""

    def __init__(self, job_name: str, reasons: dict[str, str], compose_error: str) -> None:
        self.job_name = job_name
        self.reasons = reasons
        self.reason = "; ".join(f"{host}: {text}" if len(reasons) > 1 else text for host, text in reasons.items())
        super().__init__(f"training job {job_name} failed: {self.reason} ({compose_error})")


def failure_reasons(container_root: str | Path | None, hosts: list[str]) -> dict[str, str]:
    """host -> the text of its /opt/ml/output/failure (hosts that wrote none are left out)."""
    reasons = {}
    for host in sorted(hosts or []):
        path = Path(container_root or "") / host / "output" / "failure"
        with suppress(OSError):
            text = path.read_text(errors="replace").strip()
            if text:
                reasons[host] = text[:4096]
    return reasons


_container_train = _image._SageMakerContainer.train
_retrieve_artifacts = _image._SageMakerContainer.retrieve_artifacts
_compose = _image._SageMakerContainer._compose


def _job_containers(client: Any, container_root: str | Path) -> list[Any]:
    """The containers docker-compose made for the compose file in ``container_root`` (running or not)."""
    root = str(Path(container_root).resolve())
    return [c for c in client.containers.list(all=True, filters={"label": COMPOSE_WORKING_DIR})
            if c.labels.get(COMPOSE_WORKING_DIR) == root]


def _exit_code(container: Any) -> int | None:
    """The container's exit code once it has stopped, else None."""
    return container.attrs["State"].get("ExitCode") if container.status in ("exited", "dead") else None


class _HostWatch:
    """SageMaker's rule for a failed host, over ``docker-compose up`` without ``--abort-on-container-exit``
    (see :func:`_compose_waiting_for_every_host`): as soon as one host's container has exited non-zero,
    every host still running is stopped as compose stops them (SIGTERM, SIGKILL after 10 s); a host that
    exits 0 leaves the others running."""

    def __init__(self, container: Any) -> None:
        self.container = container  # the SDK's _SageMakerContainer: train() sets its container_root
        self.failed: tuple[str, int] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="smkit-host-watch", daemon=True)

    def __enter__(self) -> _HostWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=HOST_STOP_TIMEOUT_S + 5)

    def _watch(self) -> None:
        client = None
        try:
            while self.failed is None and not self._done.wait(HOST_WATCH_INTERVAL_S):
                root = getattr(self.container, "container_root", None)
                if not root:
                    continue
                try:
                    client = client or docker_client()
                    containers = _job_containers(client, root)
                except Exception:  # the Docker API did not answer this time: ask again
                    continue
                self._stop_all_if_one_failed(containers)
        finally:
            if client is not None:
                client.close()

    def _stop_all_if_one_failed(self, containers: list[Any]) -> None:
        for container in containers:
            code = _exit_code(container)
            if code:
                self.failed = (container.labels.get(COMPOSE_SERVICE, container.name), code)
                break
        if self.failed is not None:
            log.warning("host %s exited with code %d: stopping the other hosts", *self.failed)
            for container in containers:
                if container.status == "running":
                    with suppress(Exception):
                        container.stop(timeout=HOST_STOP_TIMEOUT_S)


def _compose_waiting_for_every_host(self, detached=False):
    """Several hosts: ``docker-compose up`` without ``--abort-on-container-exit``, which ended the job when
    the first host exited, failed or not: a host that finished first had the others stopped mid-work (rank 0
    saving after a barrier, torchrun's exit barrier) and compose exited with that first host's code, 0,
    so the job "succeeded" without their model or with their failure. ``_HostWatch`` stops the others
    when a host fails instead."""
    command = _compose(self, detached)
    if getattr(self, "smkit_several_hosts", False):
        command = [part for part in command if part != "--abort-on-container-exit"]
    return command


def _retrieve_artifacts_keeping_failures(self, compose_data, output_data_config, job_name):
    # Runs after the containers exit, failed or not; the hosts' folders are gone once it returns.
    self.smkit_failure_reasons = failure_reasons(getattr(self, "container_root", None), getattr(self, "hosts", []))
    with suppress(Exception):
        client = docker_client()
        try:
            self.smkit_exit_codes = {c.labels.get(COMPOSE_SERVICE, c.name): _exit_code(c)
                                     for c in _job_containers(client, self.container_root)}
        finally:
            client.close()
    return _retrieve_artifacts(self, compose_data, output_data_config, job_name)


def _train_with_failure_reason(self, input_data_config, output_data_config, hyperparameters, environment,
                               job_name):
    self.smkit_failure_reasons, self.smkit_exit_codes = {}, {}
    self.smkit_several_hosts = len(getattr(self, "hosts", None) or []) > 1
    try:
        with _HostWatch(self) if self.smkit_several_hosts else nullcontext():
            artifacts = _container_train(self, input_data_config, output_data_config, hyperparameters,
                                         environment, job_name)
    except RuntimeError as exc:
        if not self.smkit_failure_reasons:
            raise
        raise TrainingJobFailed(job_name, self.smkit_failure_reasons, str(exc)) from exc
    finally:
        self.smkit_several_hosts = False
    # Without --abort-on-container-exit compose exits 0 whatever its containers did: the hosts' exit codes
    # (or, where one could not be read, its failure file) decide, as on SageMaker.
    failed = {host: code for host, code in self.smkit_exit_codes.items() if code}
    failed.update({host: None for host in self.smkit_failure_reasons if host not in self.smkit_exit_codes})
    if failed:
        summary = ", ".join(f"{host} exited with code {code}" if code is not None else f"{host} wrote a failure file"
                            for host, code in sorted(failed.items()))
        if self.smkit_failure_reasons:
            raise TrainingJobFailed(job_name, self.smkit_failure_reasons, summary)
        raise RuntimeError(f"training job {job_name} failed: {summary}")
    return artifacts


_image._SageMakerContainer.retrieve_artifacts = _retrieve_artifacts_keeping_failures
_image._SageMakerContainer.train = _train_with_failure_reason
_image._SageMakerContainer._compose = _compose_waiting_for_every_host


# -- the session ---------------------------------------------------------------------------------------

class OfflineRuntimeClient(LocalSagemakerRuntimeClient):
    """Routes ``invoke_endpoint`` by endpoint name to that endpoint's port; errors raise as on AWS."""

    def __init__(self, config: dict | None, endpoint_ports: dict[str, int]) -> None:
        self._endpoint_ports = endpoint_ports
        super().__init__(config)
        self.http = urllib3.PoolManager(maxsize=8, retries=False)
        # Set by the client for the length of a transform job with AssembleWith=Line (see invoke_endpoint).
        self.transform_assembles_lines = False

    def invoke_endpoint(self, Body, EndpointName, ContentType=None, Accept=None, CustomAttributes=None,
                        TargetModel=None, TargetVariant=None, InferenceId=None):
        # A batch transform calls with EndpointName "": the session's port, set for the job.
        port = self._endpoint_ports.get(EndpointName) or self.serving_port
        headers = {name: value for name, value in (
            ("Content-Type", ContentType), ("Accept", Accept), ("X-Amzn-SageMaker-Custom-Attributes", CustomAttributes),
            ("X-Amzn-SageMaker-Target-Model", TargetModel), ("X-Amzn-SageMaker-Target-Variant", TargetVariant),
            ("X-Amzn-SageMaker-Inference-Id", InferenceId)) if value is not None}
        if isinstance(Body, str):
            Body = Body.encode("utf-8")
        response = self.http.request("POST", f"http://{docker_host()}:{port}/invocations", body=Body,
                                     headers=headers, preload_content=False)
        if not 200 <= response.status < 300:
            message = response.read().decode(errors="replace")
            response.release_conn()
            raise ClientError({
                "Error": {"Code": "ModelError", "Message": f"Received client error ({response.status}) from primary "
                                                           f"with message \"{message}\"."},
                "OriginalStatusCode": response.status, "OriginalMessage": message,
                "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
        content_type = response.headers.get("Content-Type", Accept)
        if EndpointName == "" and self.transform_assembles_lines:
            # Local mode's AssembleWith=Line writes b"\n" after every response, also after one that ends
            # its last line already (every CSV/JSON Lines answer of ours): a blank line between
            # mini-batches. One final newline is left to local mode, so each line ends exactly once,
            # as local_test.pipeline's transform job writes them.
            data = response.read()
            response.release_conn()
            return {"Body": io.BytesIO(data.removesuffix(b"\n")), "ContentType": content_type}
        return {"Body": response, "ContentType": content_type}


def require_local_image(image: str) -> None:
    """docker-compose pulls an image it does not find (from Docker Hub, for a plain tag): refuse instead."""
    import docker.errors

    try:
        docker_client().images.get(image)
    except docker.errors.ImageNotFound:
        raise OfflineViolation(f"image {image} is not on this machine and offline local mode does not pull "
                               "(build it: ./build.sh NAME)") from None


class OfflineSagemakerClient(LocalSagemakerClient):
    """Gives every endpoint and every transform job its own free host port; refuses images that are
    not on this machine; removes the containers of finished jobs."""

    def _require_model_images(self, model_name: str) -> None:
        model = LocalSagemakerClient._models.get(model_name)
        containers = [getattr(model, "primary_container", None) or {}, *(getattr(model, "containers", None) or [])]
        for container in containers:
            if isinstance(container, dict) and container.get("Image"):
                require_local_image(container["Image"])

    def __init__(self, session: OfflineLocalSession) -> None:
        super().__init__(session)
        self._lock = threading.Lock()  # the port travels through the session's config: one start at a time

    def _on_free_port(self) -> int:
        port = free_port()
        self.sagemaker_session.config = {**self.sagemaker_session.config,
                                         "local": {**self.sagemaker_session.config["local"], "serving_port": port}}
        return port

    def create_endpoint(self, EndpointName, EndpointConfigName, Tags=None):
        session = self.sagemaker_session
        config = LocalSagemakerClient._endpoint_configs.get(EndpointConfigName)
        for variant in getattr(config, "production_variants", None) or []:
            self._require_model_images(variant.get("ModelName"))
        with self._lock:
            port = self._on_free_port()
            session.endpoint_ports[EndpointName] = port
            session.endpoint_names.add(EndpointName)
            log.info("endpoint %s on port %d", EndpointName, port)
            try:
                super().create_endpoint(EndpointName, EndpointConfigName, Tags)
            except BaseException:
                endpoint = LocalSagemakerClient._endpoints.pop(EndpointName, None)
                if endpoint is not None:
                    with suppress(Exception):
                        endpoint.stop()
                session.endpoint_ports.pop(EndpointName, None)
                session.endpoint_names.discard(EndpointName)
                raise

    def delete_endpoint(self, EndpointName):
        try:
            super().delete_endpoint(EndpointName)
        finally:
            LocalSagemakerClient._endpoints.pop(EndpointName, None)
            self.sagemaker_session.endpoint_ports.pop(EndpointName, None)
            self.sagemaker_session.endpoint_names.discard(EndpointName)

    def create_training_job(self, TrainingJobName, AlgorithmSpecification, OutputDataConfig, ResourceConfig,
                            InputDataConfig=None, Environment=None, **kwargs):
        require_local_image(AlgorithmSpecification["TrainingImage"])
        root = self.sagemaker_session.root
        before = {c.id for c in sdk_containers(root)}
        try:
            super().create_training_job(TrainingJobName, AlgorithmSpecification, OutputDataConfig, ResourceConfig,
                                        InputDataConfig, Environment, **kwargs)
        finally:  # `compose up --abort-on-container-exit` leaves the stopped containers behind
            for container in sdk_containers(root):
                if container.id not in before and container.status != "running":
                    with suppress(Exception):
                        container.remove(force=True)

    def create_transform_job(self, TransformJobName, ModelName, TransformInput, TransformOutput,
                             TransformResources, **kwargs):
        self._require_model_images(ModelName)
        runtime = self.sagemaker_session.sagemaker_runtime_client
        with self._lock:
            self._on_free_port()
            self.sagemaker_session.transform_jobs.add(TransformJobName)
            runtime.transform_assembles_lines = (TransformOutput or {}).get("AssembleWith") == "Line"
            try:
                super().create_transform_job(TransformJobName, ModelName, TransformInput, TransformOutput,
                                             TransformResources, **kwargs)
            finally:
                runtime.transform_assembles_lines = False
                job = LocalSagemakerClient._transform_jobs.get(TransformJobName)
                container = getattr(job, "container", None)  # a _SageMakerContainer
                compose = getattr(container, "container", None)
                if compose is not None and compose.is_alive():
                    with suppress(Exception):  # the SDK stops it only on success
                        container.stop_serving()
                if getattr(container, "container_root", None):
                    with suppress(Exception):
                        remove_sdk_containers(container.container_root)


class OfflineLocalSession(LocalSession):
    """A ``LocalSession`` that never leaves the machine (see the module's docstring).

    ``root``: the folder every SDK temporary folder goes under (``local.container_root``); made when
    not given, removed by :meth:`cleanup`.
    """

    def __init__(self, root: Path | str | None = None, container_config: dict | None = None) -> None:
        offline_environment()
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="smkit-sdk-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.endpoint_ports: dict[str, int] = {}
        self.endpoint_names: set[str] = set()
        self.transform_jobs: set[str] = set()
        self._container_config = container_config
        super().__init__(boto_session=offline_boto_session(), sagemaker_config=SDK_DEFAULTS_CONFIG)

    def _initialize(self, boto_session, sagemaker_client, sagemaker_runtime_client, **kwargs):
        super()._initialize(boto_session, sagemaker_client, sagemaker_runtime_client, **kwargs)
        local: dict[str, Any] = {"local_code": True, "region_name": REGION, "container_root": str(self.root),
                                 "serving_port": 8080}
        if self._container_config:
            local["container_config"] = self._container_config
        self.sagemaker_client = OfflineSagemakerClient(self)
        self.sagemaker_runtime_client = OfflineRuntimeClient(None, self.endpoint_ports)
        self.config = {"local": local}  # also hands the config to the runtime client

    # -- nothing in local mode needs S3, STS or CloudWatch ------------------------------------------

    def default_bucket(self) -> str:
        return PLACEHOLDER_BUCKET

    def wait_for_job(self, job, poll=5):
        return self._finished(self.sagemaker_client.describe_training_job(TrainingJobName=job), "TrainingJobStatus")

    def wait_for_endpoint(self, endpoint, poll=30, live_logging=False):
        return self._finished(self.sagemaker_client.describe_endpoint(EndpointName=endpoint), "EndpointStatus",
                              "InService")

    def wait_for_transform_job(self, job, poll=5):
        return self._finished(self.sagemaker_client.describe_transform_job(TransformJobName=job),
                              "TransformJobStatus")

    def logs_for_transform_job(self, job_name, wait=False, poll=10):
        self.wait_for_transform_job(job_name)  # the container's output went to stdout as it ran

    @staticmethod
    def _finished(description: dict, key: str, done: str = "Completed") -> dict:
        if description[key] != done:
            raise RuntimeError(f"local job/endpoint is {description[key]!r}, not {done!r}: {description}")
        return description

    # -- endpoints and cleanup ----------------------------------------------------------------------

    def endpoint_url(self, endpoint_name: str) -> str:
        """``http://host:port`` of a local endpoint: curl, wrk or any HTTP client can call it."""
        return f"http://{docker_host()}:{self.endpoint_ports[endpoint_name]}"

    def delete_endpoint_quietly(self, endpoint_name: str) -> None:
        """Deletes the endpoint (and its config), removes its container; never raises."""
        compose_dir = getattr(getattr(LocalSagemakerClient._endpoints.get(endpoint_name), "container", None),
                              "container_root", None)
        with suppress(Exception):
            self.sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
        with suppress(Exception):
            self.sagemaker_client.delete_endpoint_config(EndpointConfigName=endpoint_name)
        if compose_dir:
            with suppress(Exception):
                remove_sdk_containers(compose_dir)

    def cleanup(self) -> None:
        """Stop this session's endpoints and transform containers, remove every container docker-compose
        made under ``root`` (local mode leaves them behind), then ``root`` itself."""
        for name in list(self.endpoint_names):
            self.delete_endpoint_quietly(name)
        for name in list(self.transform_jobs):
            job = LocalSagemakerClient._transform_jobs.pop(name, None)
            compose = getattr(getattr(job, "container", None), "container", None)  # a _HostingContainer
            if compose is not None and compose.is_alive():
                with suppress(Exception):
                    compose.down()
        with suppress(Exception):
            remove_sdk_containers(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def local_session(root: Path | str | None = None, container_config: dict | None = None) -> OfflineLocalSession:
    """The factory: an offline ``LocalSession`` with local code, telemetry off and a port per endpoint.
    Call ``.cleanup()`` when done, or use :func:`offline_local_mode`."""
    return OfflineLocalSession(root, container_config)


@contextmanager
def offline_local_mode(root: Path | str | None = None) -> Iterator[OfflineLocalSession]:
    """A session whose endpoints, containers and temporary folders are removed on exit, failed or not."""
    session = local_session(root)
    try:
        yield session
    finally:
        session.cleanup()


@contextmanager
def endpoint(predictor: Any) -> Iterator[Any]:
    """``with endpoint(model.deploy(...)) as predictor:`` deletes the endpoint (container stopped and
    removed, its folders deleted) when the block ends, failed or not."""
    try:
        yield predictor
    finally:
        session = predictor.sagemaker_session
        name = predictor.endpoint_name
        if isinstance(session, OfflineLocalSession):
            session.delete_endpoint_quietly(name)
        else:
            with suppress(Exception):
                predictor.delete_endpoint()


def sdk_containers(root: Path | str) -> list[Any]:
    """Containers docker-compose made for compose files in ``root`` or below (running or not)."""
    root = str(Path(root).resolve())
    client = docker_client()
    return [c for c in client.containers.list(all=True, filters={"label": COMPOSE_WORKING_DIR})
            if (c.labels.get(COMPOSE_WORKING_DIR) or "") == root
            or (c.labels.get(COMPOSE_WORKING_DIR) or "").startswith(root + os.sep)]


def remove_sdk_containers(root: Path | str) -> int:
    """Force-removes :func:`sdk_containers`; returns how many."""
    removed = 0
    for container in sdk_containers(root):
        with suppress(Exception):
            container.remove(force=True)
            removed += 1
    return removed
