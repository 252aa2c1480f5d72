"""The serving checks: ``docker run IMAGE serve`` as SageMaker runs it, then HTTP against it.

Containers (all started at once so their start-ups overlap, all removed at the end):
- the main one: the model mounted read-only at /opt/ml/model, read-only root with tmpfs /tmp,
  SAGEMAKER_BIND_TO_PORT=8089, both 8089 and 8080 published (so a server ignoring the variable is found
  on 8080, that one rule fails, and every other rule is still checked there); stopped with SIGTERM last;
- one with an empty /opt/ml/model (must never answer /ping with 200);
- with the multi-models label: one with SAGEMAKER_MULTI_MODEL=true and the model under /opt/ml/models;
  at the smkit level without the label: the same, which must exit.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smkit_contract import multi_model
from smkit_contract.docker_cli import Container
from smkit_contract.http_client import Response, describe, try_request
from smkit_contract.media import essence_of, is_acceptable, parse_media_type
from smkit_contract.rules import Results

CONTRACT_PORT = 8089
DEFAULT_PORT = 8080
LIMIT_MB = 1
WORKERS = 2
UNKNOWN_TYPE = "application/x-smkit-contract-unknown"
BIND_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
MME_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"
# Bodies that cannot parse in their type, for the types the kit knows; others need --bad-payload.
_MALFORMED = {
    "application/json": b'{"smkit-contract": [1, 2',
    "application/jsonlines": b'{"smkit-contract": [1, 2',
    "application/x-jsonlines": b'{"smkit-contract": [1, 2',
    "application/jsonl": b'{"smkit-contract": [1, 2',
    "application/x-npy": b"\x93NUMPY\x01\x00v\x00{'descr': garbage",
}


@dataclass(frozen=True)
class Payload:
    body: bytes
    content_type: str
    source: str  # shown in details: the file name or what the kit made


@dataclass
class ServeOptions:
    image: str
    model_dir: Path
    payloads: list[Payload]
    accepts: list[str] = field(default_factory=list)
    bad_payloads: list[Payload] = field(default_factory=list)
    smkit: bool = False
    env: dict[str, str] = field(default_factory=dict)  # the caller's --env, under the kit's own variables
    startup_timeout: float = 120
    no_model_window: float = 10
    stop_timeout: float = 30
    log: Callable[[str], None] = lambda message: None


def tail(logs: str, lines: int = 12) -> str:
    kept = logs.strip().splitlines()[-lines:]
    return "container log (last lines):\n" + "\n".join(f"  | {line}" for line in kept) if kept else "(no log)"


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _ping_ok(host_port: int) -> bool:
    answer = try_request(host_port, "GET", "/ping", timeout=2)
    return isinstance(answer, Response) and answer.status == 200


def wait_ready(container: Container, timeout: float) -> tuple[int, int] | None:
    """(container port, host port) of the first 200 on /ping, 8089 before 8080; None once it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in (CONTRACT_PORT, DEFAULT_PORT):
            host_port = container.host_ports.get(port)
            if host_port is not None and _ping_ok(host_port):
                return port, host_port
        if not container.running():
            return None
        time.sleep(0.1)
    return None


class ServingChecks:
    def __init__(self, options: ServeOptions, results: Results, labels: dict[str, str]) -> None:
        self.options = options
        self.results = results
        self.labels = labels
        self.port = 0  # host port of the main container's server
        self.ok_responses: list[tuple[str, Response]] = []
        self.error_responses: list[tuple[str, Response]] = []
        self.containers: list[Container] = []
        self.empty_model_dir = Path(tempfile.mkdtemp(prefix="smkit-contract-empty-model-"))
        self.empty_model_dir.chmod(0o755)

    # --- containers ---

    def _start(self, role: str, env: dict[str, str], mounts: list[tuple[Path, str, bool]],
               read_only: bool = True) -> Container:
        env = {**self.options.env, "SAGEMAKER_BIND_TO_PORT": str(CONTRACT_PORT), **env}
        container = Container(self.options.image, ["serve"], role, env=env, mounts=mounts,
                              ports=(CONTRACT_PORT, DEFAULT_PORT), read_only=read_only)
        self.containers.append(container)
        return container

    def _main_env(self) -> dict[str, str]:
        env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": str(LIMIT_MB), "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS)}
        if self.options.accepts:
            env["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] = self.options.accepts[-1]
        if self.options.smkit:
            env["SMKIT_ACCESS_LOG"] = "true"
        return env

    def run(self) -> None:
        options = self.options
        try:
            options.log("serve: starting the containers")
            model_mount = [(options.model_dir.resolve(), "/opt/ml/model", False)]
            main = self._start("serve", self._main_env(), model_mount)
            no_model = self._start("serve-no-model", {}, [(self.empty_model_dir, "/opt/ml/model", False)])
            mme = None
            if self.labels.get(MME_LABEL) == "true" or options.smkit:
                mme = self._start("serve-multi-model", {"SAGEMAKER_MULTI_MODEL": "true"},
                                  [(options.model_dir.resolve(), multi_model.MODEL_PATH, False)])
            main = self._ready_main(main, model_mount)
            if main is not None:
                self._check_invocations()
                self._check_execution_parameters()
                if options.smkit:
                    self._check_smkit_process_and_log(main)
            self._check_no_model(no_model)
            if mme is not None:
                self._check_multi_model(mme)
            else:
                self.results.skipped("multi-model.api", f"the image has no {MME_LABEL}=true label")
            if main is not None:
                self._check_sigterm(main)
        finally:
            for container in self.containers:
                container.remove()
            self.empty_model_dir.rmdir()

    def _ready_main(self, main: Container, model_mount: list[tuple[Path, str, bool]]) -> Container | None:
        """Wait for the main container; a failed read-only start is retried writable to tell the cause."""
        results = self.results
        ready = wait_ready(main, self.options.startup_timeout)
        if ready is None:
            read_only_logs = main.logs()
            main.remove()
            self.options.log("serve: not ready with a read-only root; retrying with a writable one")
            main = self._start("serve-writable", self._main_env(), model_mount, read_only=False)
            ready = wait_ready(main, self.options.startup_timeout)
            if ready is None:
                results.failed("serve.ping-ready", f"no 200 on /ping (port {CONTRACT_PORT} or {DEFAULT_PORT}) within "
                               f"{self.options.startup_timeout:.0f} s, read-only root or not.\n{tail(main.logs())}")
                results.skipped("serve.read-only-root", "the server never became ready")
                for rule in ("serve.bind-to-port", "serve.sigterm", "execution-parameters"):
                    results.skipped(rule, "the server never became ready")
                self._skip_invocations("the server never became ready")
                return None
            results.failed("serve.read-only-root", "the server became ready only with a writable root filesystem. "
                           f"With --read-only --tmpfs /tmp:\n{tail(read_only_logs)}")
        else:
            results.passed("serve.read-only-root")
        port, self.port = ready
        pings = [_ping_ok(self.port) for _ in range(3)]
        results.check("serve.ping-ready", all(pings), f"after a first 200, /ping answered {pings} (True = 200 "
                      "within 2 s)")
        results.check("serve.bind-to-port", port == CONTRACT_PORT,
                      f"SAGEMAKER_BIND_TO_PORT={CONTRACT_PORT}, but the server answered on {port}")
        label = self.labels.get(BIND_LABEL)
        results.check("serve.bind-to-port-label", label == "true", f"label {BIND_LABEL} is {label!r}")
        return main

    def _skip_invocations(self, why: str) -> None:
        for rule in ("invocations.payloads", "invocations.accept", "invocations.accept-wildcard",
                     "invocations.accept-q-values", "invocations.content-type-parameters",
                     "invocations.unsupported-content-type", "invocations.unsupported-accept",
                     "invocations.empty-body", "invocations.malformed-body", "invocations.payload-limit"):
            self.results.skipped(rule, why)

    # --- invocations ---

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None,
               headers: dict[str, str] | None = None, path: str = "/invocations",
               port: int | None = None) -> Response | str:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if accept is not None:
            all_headers["Accept"] = accept
        return try_request(port or self.port, "POST", path, body=body, headers=all_headers, timeout=60)

    def expect_ok(self, rule: str, answer: Response | str, what: str, accept: str | None = None,
                  expect_type: str | None = None) -> Response | None:
        if not isinstance(answer, Response):
            self.results.failed(rule, f"{what}: {answer}")
            return None
        problem = ""
        if answer.status != 200:
            problem = "not 200"
        elif not answer.content_type:
            problem = "no Content-Type"
        elif expect_type is not None and essence_of(answer.content_type) != expect_type:
            problem = f"expected Content-Type {expect_type}"
        elif not is_acceptable(answer.content_type, accept):
            problem = f"Content-Type is not one the Accept {accept!r} allows"
        if problem:
            self.results.failed(rule, f"{what}: {problem}; got {answer.summary()}")
            return None
        self.results.passed(rule)
        self.ok_responses.append((what, answer))
        return answer

    def expect_client_error(self, rule: str, answer: Response | str, what: str, smkit_status: int) -> None:
        if not isinstance(answer, Response):
            self.results.failed(rule, f"{what}: {answer}")
            return
        self.results.check(rule, 400 <= answer.status < 500, f"{what}: expected a 4xx, got {answer.summary()}")
        if 400 <= answer.status < 500:
            self.error_responses.append((what, answer))
        if self.options.smkit:
            self.results.check("smkit.status-codes", answer.status == smkit_status,
                               f"{what}: expected {smkit_status}, got {answer.summary()}")

    def _check_invocations(self) -> None:
        options, results = self.options, self.results
        first = options.payloads[0]
        for payload in options.payloads:
            self.expect_ok("invocations.payloads", self.invoke(payload.body, payload.content_type),
                           f"{payload.source} as {payload.content_type}, no Accept")
        self._check_accept()
        texts = [p for p in options.payloads if parse_media_type(p.content_type).is_text
                 and "charset" not in parse_media_type(p.content_type).parameters]
        for payload in texts:
            content_type = f"{payload.content_type}; charset=utf-8"
            self.expect_ok("invocations.content-type-parameters", self.invoke(payload.body, content_type),
                           f"{payload.source} as {content_type!r}")
        if not texts:
            results.skipped("invocations.content-type-parameters", "no text payload (text/*, JSON) to send")

        self.expect_client_error("invocations.unsupported-content-type", self.invoke(first.body, UNKNOWN_TYPE),
                                 f"Content-Type {UNKNOWN_TYPE}", 415)
        self.expect_client_error("invocations.unsupported-accept",
                                 self.invoke(first.body, first.content_type, UNKNOWN_TYPE),
                                 f"Accept {UNKNOWN_TYPE}", 406)
        self.expect_client_error("invocations.empty-body", self.invoke(b"", first.content_type),
                                 f"an empty body as {first.content_type}", 400)
        malformed = [Payload(_MALFORMED[essence_of(p.content_type)], p.content_type, "a truncated body")
                     for p in options.payloads if essence_of(p.content_type) in _MALFORMED]
        for payload in [*malformed, *options.bad_payloads]:
            self.expect_client_error("invocations.malformed-body", self.invoke(payload.body, payload.content_type),
                                     f"{payload.source} as {payload.content_type}", 400)
        if not malformed and not options.bad_payloads:
            results.skipped("invocations.malformed-body", "no payload type the kit can break (JSON, NPY): "
                            "give --bad-payload FILE:TYPE")
        if options.smkit:
            answer = self.invoke(first.body, None)
            if isinstance(answer, Response):
                self.error_responses.append(("no Content-Type", answer))
            results.check("smkit.status-codes", isinstance(answer, Response) and answer.status == 415,
                          f"no Content-Type: expected 415, got {describe(answer)}")
        self._check_payload_limit(first)
        if options.smkit:
            self._check_smkit_bodies()

    def _check_accept(self) -> None:
        options, results = self.options, self.results
        first = options.payloads[0]
        for accept in options.accepts:
            for payload in options.payloads:
                self.expect_ok("invocations.accept", self.invoke(payload.body, payload.content_type, accept),
                               f"{payload.source} as {payload.content_type}, Accept {accept}", accept, accept)
        if not options.accepts:
            results.skipped("invocations.accept", "no --accept given")
        wildcard = self.expect_ok("invocations.accept-wildcard", self.invoke(first.body, first.content_type, "*/*"),
                                  "Accept */*", "*/*")
        if options.smkit:
            if options.accepts:
                default = options.accepts[-1]
                for accept in (None, "*/*"):
                    answer = self.invoke(first.body, first.content_type, accept)
                    got = describe(answer)
                    results.check("smkit.default-accept", isinstance(answer, Response)
                                  and essence_of(answer.content_type) == default,
                                  f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={default}, Accept {accept!r}: got {got}")
            else:
                results.skipped("smkit.default-accept", "no --accept given")
        chosen = options.accepts[0] if options.accepts else (essence_of(wildcard.content_type) if wildcard else None)
        if chosen is None:
            results.skipped("invocations.accept-q-values", "no type known to be produced")
            return
        cases = [(f"{UNKNOWN_TYPE}, {chosen};q=0.5", chosen), (f"{chosen};q=0.9", chosen)]
        if len(options.accepts) >= 2:
            a, b = options.accepts[:2]
            cases += [(f"{a};q=0.2, {b};q=0.8", b), (f"{b};q=0.3, {a}", a)]
        for accept, expected in cases:
            self.expect_ok("invocations.accept-q-values", self.invoke(first.body, first.content_type, accept),
                           f"Accept {accept!r}", accept, expected)

    def _check_payload_limit(self, first: Payload) -> None:
        limit = LIMIT_MB * 1024 * 1024
        unit = first.body + b"\n"
        body = unit * (limit // len(unit) + 2)
        answer = self.invoke(body, first.content_type)
        if not isinstance(answer, Response):
            self.results.failed("invocations.payload-limit", f"{len(body):,} bytes with SAGEMAKER_MAX_PAYLOAD_IN_MB="
                                f"{LIMIT_MB}: {answer} (expected an answer 413)")
            return
        if self.results.check("invocations.payload-limit", answer.status == 413,
                              f"{len(body):,} bytes with SAGEMAKER_MAX_PAYLOAD_IN_MB={LIMIT_MB}: expected 413, "
                              f"got {answer.summary()}"):
            self.error_responses.append(("a body over the limit", answer))

    def _check_execution_parameters(self) -> None:
        answer = try_request(self.port, "GET", "/execution-parameters", timeout=10)
        rule = "execution-parameters"
        if not isinstance(answer, Response):
            self.results.failed(rule, str(answer))
            return
        parsed = None
        if answer.status == 404:
            self.results.passed(rule, "not offered (404): batch transform uses the job's own settings")
        elif answer.status == 200:
            try:
                parsed = answer.json()
            except ValueError:
                parsed = None
            # BatchStrategy may be left out (batch transform then applies MULTI_RECORD, as SDK local mode
            # does); SDK local mode cannot read AWS's spelling, so smkit's images leave it out by default.
            valid = (isinstance(parsed, dict)
                     and parsed.get("BatchStrategy", "MULTI_RECORD") in ("MULTI_RECORD", "SINGLE_RECORD")
                     and _int_in(parsed.get("MaxConcurrentTransforms"), 1, 10_000)
                     and _int_in(parsed.get("MaxPayloadInMB"), 1, 100))
            self.results.check(rule, valid, f"not a valid answer: {answer.summary()}")
        else:
            self.results.failed(rule, f"expected 404 or 200, got {answer.summary()}")
        if self.options.smkit:
            expected = {"MaxConcurrentTransforms": WORKERS, "MaxPayloadInMB": LIMIT_MB}
            self.results.check("smkit.execution-parameters", parsed == expected,
                               f"with {WORKERS} workers and a {LIMIT_MB} MB limit expected {expected}, "
                               f"got {answer.summary()}")

    # --- smkit conventions ---

    def _check_smkit_bodies(self) -> None:
        for what, answer in self.error_responses:
            try:
                body = answer.json()
            except ValueError:
                body = None
            good = (essence_of(answer.content_type) == "application/json" and isinstance(body, dict)
                    and isinstance(body.get("error"), str) and bool(body.get("message")))
            self.results.check("smkit.error-body", good, f"{what}: got {answer.summary()}")
        for what, answer in self.ok_responses:
            self.results.check("smkit.exact-content-type", answer.content_type == essence_of(answer.content_type),
                               f"{what}: Content-Type {answer.content_type!r}")

    def _check_smkit_process_and_log(self, main: Container) -> None:
        processes = main.processes()
        pids = {pid for _, pid, _, _ in processes}
        roots = [p for p in processes if p[2] not in pids]
        workers = [p for p in processes if p[2] in pids]
        self.results.check("smkit.unprivileged-workers",
                           len(roots) == 1 and roots[0][0] == "0" and workers and all(p[0] != "0" for p in workers),
                           "processes (uid, pid, ppid, args): " + "; ".join(map(str, processes)))
        request_id = f"smkit-contract-{uuid.uuid4().hex[:12]}"
        first = self.options.payloads[0]
        answer = self.invoke(first.body, first.content_type, headers={"X-Amzn-RequestId": request_id})
        echoed = isinstance(answer, Response) and answer.headers.get("x-request-id") == request_id
        line = ""
        deadline = time.monotonic() + 3
        while not line and time.monotonic() < deadline:
            line = next((x for x in main.logs().splitlines() if request_id in x and "invocation" in x), "")
            time.sleep(0.1)
        self.results.check("smkit.request-log", echoed and "status=200" in line and "ms=" in line,
                           f"X-Request-Id echoed: {echoed}; log line: {line or '(none)'}")

    # --- other containers ---

    def _check_no_model(self, container: Container) -> None:
        options, results = self.options, self.results
        window_end = container.started + options.no_model_window
        patience_end = container.started + (options.startup_timeout if options.smkit else options.no_model_window)
        healthy = None
        while healthy is None and container.running() and time.monotonic() < patience_end:
            for port in (CONTRACT_PORT, DEFAULT_PORT):
                host_port = container.host_ports.get(port)
                if host_port is not None and _ping_ok(host_port):
                    healthy = port
            if time.monotonic() >= window_end and not options.smkit:
                break
            time.sleep(0.1)
        status, code = container.state()
        if healthy is not None:
            results.failed("serve.ping-no-model", f"with an empty /opt/ml/model, /ping answered 200 on port "
                           f"{healthy}.\n{tail(container.logs())}")
        elif status == "exited":
            results.passed("serve.ping-no-model", f"exited with code {code}")
        else:
            results.passed("serve.ping-no-model", f"no 200 on /ping for {options.no_model_window:.0f} s")
        if options.smkit:
            logs = container.logs()
            results.check("smkit.model-load-failed", status == "exited" and code != 0 and "MODEL LOAD FAILED" in logs,
                          f"status {status}, exit code {code}; {tail(logs)}")

    def _check_sigterm(self, main: Container) -> None:
        self.options.log("serve: SIGTERM")
        sent = time.monotonic()
        main.signal("TERM")
        code = main.wait_exit(self.options.stop_timeout)
        if code is None:
            main.signal("KILL")
            self.results.failed("serve.sigterm", f"still running {self.options.stop_timeout:.0f} s after SIGTERM "
                                "(SageMaker would SIGKILL it at 30 s)")
            if self.options.smkit:
                self.results.failed("smkit.sigterm-exit-code", "did not exit on SIGTERM")
            return
        self.results.passed("serve.sigterm", f"exited with code {code} {time.monotonic() - sent:.1f} s after SIGTERM")
        if self.options.smkit:
            self.results.check("smkit.sigterm-exit-code", code == 0, f"exit code {code}\n{tail(main.logs())}")

    def _check_multi_model(self, container: Container) -> None:
        options, results = self.options, self.results
        claimed = self.labels.get(MME_LABEL) == "true"
        if not claimed:  # smkit level: the image must refuse the mode
            code = container.wait_exit(options.startup_timeout)
            logs = container.logs()
            results.check("smkit.multi-model-refused", code not in (None, 0) and "multi-model" in logs.lower(),
                          f"SAGEMAKER_MULTI_MODEL=true without the label: exit code {code}; {tail(logs)}")
            results.skipped("multi-model.api", f"the image has no {MME_LABEL}=true label")
            return
        results.skipped("smkit.multi-model-refused", "the image supports multi-model endpoints")
        ready = wait_ready(container, options.startup_timeout)
        if ready is None:
            results.failed("multi-model.api", f"with SAGEMAKER_MULTI_MODEL=true and no model loaded, /ping never "
                           f"answered 200.\n{tail(container.logs())}")
            return
        problem = multi_model.api_problem(ready[1], options.payloads[0].body, options.payloads[0].content_type)
        results.check("multi-model.api", problem is None, problem or "")
