"""The rules the kit checks: what each one means, what SageMaker does when an image breaks it, how to fix it.

Two levels: ``sagemaker`` rules are the contract as SageMaker applies it to any server in any language
(a failure there fails the run); ``smkit`` rules are this project's own conventions (its JSON error body,
exact status codes, unprivileged workers, its log lines), checked only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

SAGEMAKER = "sagemaker"
SMKIT = "smkit"
LEVELS = (SAGEMAKER, SMKIT)
LEVEL_TITLES = {SAGEMAKER: "SageMaker accepts it", SMKIT: "smkit conventions"}


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Rule:
    id: str
    level: str
    title: str
    sagemaker: str  # what SageMaker (or, for smkit rules, a user of the image) sees when it is broken
    fix: str


@dataclass
class Result:
    rule: Rule
    status: Status
    detail: str = ""


_RULES = [
    # --- serve (sagemaker) ---
    Rule("serve.ping-ready", SAGEMAKER, "GET /ping answers 200 once the model is loaded, within 2 s per call",
         "SageMaker polls /ping after the container starts and sends traffic only after a 200; an endpoint "
         "whose /ping never answers 200 (or answers after more than ~2 s) fails to become InService.",
         "Serve GET /ping on the port and answer 200 (any body) as soon as the model is loaded."),
    Rule("serve.ping-no-model", SAGEMAKER, "never healthy without a model: no 200 on /ping when /opt/ml/model "
         "is empty (exiting is fine)",
         "SageMaker routes requests to a container as soon as /ping answers 200; a container that reports "
         "healthy without a model fails every request, and an endpoint update with a broken model 'succeeds'.",
         "Load /opt/ml/model before answering /ping with 200; when it cannot be loaded, exit non-zero with "
         "the reason in the log (or keep answering non-200)."),
    Rule("serve.bind-to-port", SAGEMAKER, "listens on SAGEMAKER_BIND_TO_PORT when it is set (default 8080)",
         "In an inference pipeline or multi-container endpoint SageMaker gives each container its own port in "
         "SAGEMAKER_BIND_TO_PORT; a container listening elsewhere is never reached and the endpoint fails.",
         "Read SAGEMAKER_BIND_TO_PORT at start (default 8080) and listen on 0.0.0.0:<that port>."),
    Rule("serve.bind-to-port-label", SAGEMAKER,
         "the image carries the label com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true",
         "Without the label SageMaker will not place the image in an inference pipeline or a multi-container "
         "endpoint (it cannot tell the container which port to use).",
         "Add `LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true` to the Dockerfile."),
    Rule("serve.read-only-root", SAGEMAKER, "serves with a read-only root filesystem (--read-only, tmpfs /tmp)",
         "Hardened deployments (and network-isolated or read-only-root hosting) run the container with a "
         "read-only root; a server that writes outside /tmp at start or per request crashes there.",
         "Write only under /tmp (or /dev/shm); compile bytecode at build time (python -m compileall) and set "
         "PYTHONDONTWRITEBYTECODE=1."),
    Rule("serve.sigterm", SAGEMAKER, "exits on SIGTERM before SageMaker's SIGKILL (30 s)",
         "SageMaker stops a container with SIGTERM and kills it 30 s later; a container that ignores SIGTERM "
         "(a shell-form ENTRYPOINT, or a PID 1 without a handler) is killed mid-request on every scale-in "
         "and update.",
         "Use the exec form of ENTRYPOINT (`[\"prog\", \"arg\"]`) and handle SIGTERM in PID 1: stop accepting, "
         "finish in-flight requests, exit."),
    Rule("invocations.payloads", SAGEMAKER, "POST /invocations answers 200 to every sample payload, with a "
         "Content-Type", "InvokeEndpoint returns the container's body and Content-Type to the caller; "
         "anything but 200 is a ModelError.", "Read the body in the request's Content-Type and answer 200 "
         "with the prediction and its Content-Type."),
    Rule("invocations.accept", SAGEMAKER, "answers in the requested Accept type, for every type the image "
         "declares (--accept)", "The caller's Accept reaches the container unchanged (a pipeline passes "
         "each stage's output type on); a response in another type breaks the caller or the next stage.",
         "Pick the response type from the Accept header and name it in the response's Content-Type."),
    Rule("invocations.accept-wildcard", SAGEMAKER, "Accept */* (and no Accept) is answered with 200 and a "
         "Content-Type", "SDK clients and batch transform often send `*/*` or no Accept at all.",
         "Treat a missing Accept and `*/*` as 'your default type'."),
    Rule("invocations.accept-q-values", SAGEMAKER, "Accept q-values and parameters are honoured "
         "(`x/unknown, T;q=0.5` -> T; `T;q=0.9` -> T)", "Accept headers from HTTP clients carry q-values; a "
         "server that compares the header as a string answers 406 (or the wrong type) to valid requests.",
         "Parse Accept as a list of media ranges with weights (RFC 9110 §12.5.1); choose the best type "
         "you can produce; ignore parameters other than q when matching."),
    Rule("invocations.content-type-parameters", SAGEMAKER, "Content-Type parameters are understood "
         "(`text/csv; charset=utf-8` is CSV)", "Clients and pipeline stages send media-type parameters; "
         "the AWS toolkits' exact-match lookups reject `text/csv; charset=utf-8` with 415.",
         "Match on the media type's `type/subtype` only and use the parameters (charset) for decoding."),
    Rule("invocations.unsupported-content-type", SAGEMAKER, "a Content-Type the image does not read is a 4xx "
         "(415), never 200 or 5xx", "A 5xx counts as a server error in CloudWatch (alarms, auto-rollbacks) "
         "for what is the client's fault; a 200 means a garbage prediction.",
         "Answer 415 with a one-line message naming the types you read."),
    Rule("invocations.unsupported-accept", SAGEMAKER, "an Accept the image cannot produce is a 4xx (406), "
         "never 200 in another type or 5xx", "The caller would parse a body in a type it did not ask for; "
         "a pipeline stage would pass it to the next one.",
         "Answer 406 with a one-line message naming the types you produce."),
    Rule("invocations.empty-body", SAGEMAKER, "an empty body is a 4xx (400), never 200 or 5xx",
         "An empty request is the client's fault; 5xx counts against the model in CloudWatch and a 200 is a "
         "prediction of nothing.", "Check for an empty body and answer 400."),
    Rule("invocations.malformed-body", SAGEMAKER, "a body that does not parse in its Content-Type is a 4xx "
         "(400), never 200 or 5xx", "A parse failure surfacing as 500 looks like a model bug and triggers "
         "server-error alarms; a 200 is a prediction from garbage.",
         "Catch decoding errors and answer 400 with what was wrong (record, field)."),
    Rule("invocations.payload-limit", SAGEMAKER, "a body over SAGEMAKER_MAX_PAYLOAD_IN_MB is refused with 413",
         "Batch transform sets SAGEMAKER_MAX_PAYLOAD_IN_MB (up to 100 MB) and splits input to fit it; a "
         "container that buffers any size runs out of memory on a bad split instead of answering clearly.",
         "Read SAGEMAKER_MAX_PAYLOAD_IN_MB (default 6) and answer 413 to a larger Content-Length/body."),
    Rule("execution-parameters", SAGEMAKER, "GET /execution-parameters is 404 or a valid answer "
         "(MaxConcurrentTransforms, BatchStrategy, MaxPayloadInMB)",
         "Batch transform calls it first and uses the answer to size requests; a malformed answer fails the "
         "transform job.", "Either answer 404, or 200 with "
         "{\"MaxConcurrentTransforms\": n, \"BatchStrategy\": \"MULTI_RECORD\", \"MaxPayloadInMB\": m} "
         "(BatchStrategy may be left out: MULTI_RECORD applies, and SDK local mode reads only MultiRecord)."),
    Rule("multi-model.api", SAGEMAKER, "the image labelled multi-models=true serves the multi-model API "
         "(start empty, POST/GET/DELETE /models, /models/{name}/invoke, 409, 404)",
         "A multi-model endpoint starts the container with SAGEMAKER_MULTI_MODEL=true and no model, then "
         "loads and unloads models through /models; an image that claims the label but not the API fails "
         "every invocation.", "Implement the /models routes (docs/contract-kit.md lists them) or drop the "
         "label com.amazonaws.sagemaker.capabilities.multi-models."),
    # --- train (sagemaker) ---
    Rule("train.succeeds", SAGEMAKER, "`train` exits 0 on the given channels and hyperparameters",
         "A non-zero exit fails the training job (AlgorithmError).",
         "Read /opt/ml/input/config/*.json and /opt/ml/input/data/<channel>/; check the logs above."),
    Rule("train.model-written", SAGEMAKER, "a successful `train` leaves the model in /opt/ml/model",
         "SageMaker tars /opt/ml/model into model.tar.gz; an empty folder deploys a model with nothing in it.",
         "Save the model under /opt/ml/model (or SM_MODEL_DIR)."),
    Rule("train.bad-hyperparameters", SAGEMAKER, "`train` with bad hyperparameters exits non-zero",
         "A job that accepts a misspelt or invalid hyperparameter trains the wrong model and reports success.",
         "Validate hyperparameters.json (names, types, ranges) before training; exit non-zero on an error."),
    Rule("train.bad-data", SAGEMAKER, "`train` on unreadable channel data exits non-zero",
         "A job that skips or misreads garbage data reports success with a meaningless model.",
         "Fail on data you cannot parse; exit non-zero."),
    Rule("train.missing-channel", SAGEMAKER, "`train` with no channels at all exits non-zero",
         "A channel name misspelt in fit() reaches the container as a missing channel; a job that then trains "
         "on nothing reports success.",
         "Check inputdataconfig.json and /opt/ml/input/data/<channel> for the channels you need; exit non-zero."),
    Rule("train.failure-file", SAGEMAKER, "a failed `train` writes the reason to /opt/ml/output/failure",
         "SageMaker shows that file's text as the job's FailureReason (first 1,024 characters); without it "
         "users see only 'AlgorithmError' and must dig through logs.",
         "On any failure write a one-line reason to /opt/ml/output/failure, then exit non-zero."),
    # --- smkit conventions ---
    Rule("smkit.error-body", SMKIT, "every error is JSON: Content-Type application/json, "
         "{\"error\": ..., \"message\": ...}", "Clients and the pipeline front read the reason from one shape.",
         "Answer errors through serving_common's error response."),
    Rule("smkit.status-codes", SMKIT, "exact codes: 415 unknown or missing Content-Type, 406 Accept, 400 empty "
         "or malformed body", "The same request gets the same status in every smkit image and mode.",
         "Raise serving_common.errors.UnsupportedMediaType / NotAcceptable / BadRequest."),
    Rule("smkit.exact-content-type", SMKIT, "responses name their type exactly, with no parameters "
         "(no `; charset=`)", "The next stage of a pipeline may match types exactly (the AWS toolkits do).",
         "Set the response Content-Type to the bare media type."),
    Rule("smkit.default-accept", SMKIT, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT answers a missing or */* Accept",
         "A pipeline stage picks its output format through that variable (the AWS toolkits' convention).",
         "Use Settings.default_accept for a missing or wildcard Accept."),
    Rule("smkit.execution-parameters", SMKIT, "/execution-parameters answers the configured workers and limit",
         "Local mode and batch transform size their requests from it.",
         "Serve it from serving_common (workers, SAGEMAKER_MAX_PAYLOAD_IN_MB; no BatchStrategy unless set)."),
    Rule("smkit.unprivileged-workers", SMKIT, "PID 1 runs as root, every request-handling process as a "
         "non-root user", "SageMaker starts containers as root; a compromised worker should not be root.",
         "Set SMKIT_WORKER_USER (the images create the `model` account)."),
    Rule("smkit.request-log", SMKIT, "X-Amzn-RequestId is echoed in X-Request-Id and logged as "
         "`invocation id=<id> status=<code> ms=...`", "Operators trace one request through the logs.",
         "Serve through serving_common (SMKIT_ACCESS_LOG=true logs successful requests)."),
    Rule("smkit.model-load-failed", SMKIT, "a model that cannot load exits non-zero with a `MODEL LOAD FAILED` "
         "log line", "Operators find the reason for a failed deployment in one grep.",
         "Load the model through serving_common's server (it logs and exits)."),
    Rule("smkit.sigterm-exit-code", SMKIT, "SIGTERM drains and exits 0", "A clean stop is not an error.",
         "Let gunicorn handle SIGTERM (serving_common.server)."),
    Rule("smkit.multi-model-refused", SMKIT, "an image without multi-model support refuses "
         "SAGEMAKER_MULTI_MODEL=true (exits non-zero, saying 'multi-model')",
         "A misconfigured endpoint fails at start with a clear reason instead of serving something else.",
         "Declare multi_model=False on the Container (serving_common does the rest)."),
    Rule("smkit.train-no-model-on-failure", SMKIT, "a failed `train` leaves /opt/ml/model empty",
         "No half-written model can be mistaken for a trained one.",
         "Train through serving_common.training (it publishes the model only on success)."),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
_PRECEDENCE = {Status.SKIP: 0, Status.PASS: 1, Status.FAIL: 2}


@dataclass
class Results:
    """Results in the order they were recorded; at most one per rule (the first FAIL wins)."""

    image: str
    items: dict[str, Result] = field(default_factory=dict)

    def record(self, rule_id: str, status: Status, detail: str = "") -> None:
        """A rule may be checked several times (per payload, per type): FAIL beats PASS beats SKIP, and the
        first result of the winning status keeps its detail."""
        rule = RULES[rule_id]
        existing = self.items.get(rule_id)
        if existing is None or _PRECEDENCE[status] > _PRECEDENCE[existing.status]:
            self.items[rule_id] = Result(rule, status, detail)

    def passed(self, rule_id: str, detail: str = "") -> None:
        self.record(rule_id, Status.PASS, detail)

    def failed(self, rule_id: str, detail: str) -> None:
        self.record(rule_id, Status.FAIL, detail)

    def skipped(self, rule_id: str, detail: str) -> None:
        self.record(rule_id, Status.SKIP, detail)

    def check(self, rule_id: str, ok: bool, detail: str) -> bool:
        """PASS or FAIL ``rule_id`` by ``ok``; returns ``ok``."""
        self.record(rule_id, Status.PASS if ok else Status.FAIL, "" if ok else detail)
        return ok

    def of_level(self, level: str) -> list[Result]:
        """This level's results in the catalogue's order."""
        return [self.items[rule_id] for rule_id, rule in RULES.items() if rule.level == level and rule_id in self.items]

    def failures(self, level: str) -> list[str]:
        return [r.rule.id for r in self.of_level(level) if r.status is Status.FAIL]
