"""A minimal SageMaker container in one stdlib file: ``train`` fits a tiny linear scorer, ``serve`` serves it.

It honours the contract and nothing more (no smkit conventions). MINIMAL_BROKEN names one deliberate
violation, so the tests can show the contract kit fails exactly that rule. Serving: ping-without-model,
500-on-bad-content-type, 500-on-malformed-body, charset-unsupported, ignores-q-values, no-payload-limit,
ignores-bind-to-port, ignores-sigterm, writes-root-fs. Training: no-failure-file,
accepts-any-hyperparameter, trains-without-channels.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BROKEN = os.environ.get("MINIMAL_BROKEN", "")
OPT_ML = Path("/opt/ml")
MODEL_FILE = OPT_ML / "model" / "model.json"
HYPERPARAMETERS = {"scale": float}
PRODUCES = ("application/json", "text/csv")


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- train ---

def read_rows(text: str) -> list[list[float]]:
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text))):
        if not row:
            continue
        try:
            rows.append([float(value) for value in row])
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from None
    return rows


def train() -> int:
    try:
        config = OPT_ML / "input" / "config"
        hyperparameters = json.loads((config / "hyperparameters.json").read_text())
        unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS))
        if unknown and BROKEN != "accepts-any-hyperparameter":
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
        scale = float(hyperparameters.get("scale", "1"))
        channels = json.loads((config / "inputdataconfig.json").read_text())
        json.loads((config / "resourceconfig.json").read_text())["current_host"]
        if "train" not in channels:
            if BROKEN == "trains-without-channels":
                MODEL_FILE.write_text(json.dumps({"means": [], "scale": scale}))
                return 0
            raise ValueError("no train channel")
        rows = []
        for path in sorted((OPT_ML / "input" / "data" / "train").iterdir()):
            if path.is_file() and not path.name.startswith((".", "_")):
                rows += read_rows(path.read_bytes().decode("utf-8"))
        if not rows or any(len(row) != len(rows[0]) or len(row) < 2 for row in rows):
            raise ValueError("the train channel needs CSV rows of label,feature,... of one width")
        features = [row[1:] for row in rows]
        means = [sum(column) / len(column) for column in zip(*features, strict=True)]
        MODEL_FILE.write_text(json.dumps({"means": means, "scale": scale}))
        print(f"trained on {len(rows)} rows")
        return 0
    except Exception as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        if BROKEN != "no-failure-file":
            (OPT_ML / "output").mkdir(parents=True, exist_ok=True)
            (OPT_ML / "output" / "failure").write_text(f"{type(exc).__name__}: {exc}")
        return 1


# --- serve ---

def parse_media(value: str) -> tuple[str, dict[str, str]]:
    head, *parameters = value.split(";")
    params = {}
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        params[name.strip().lower()] = raw.strip().strip('"')
    return head.strip().lower(), params


def choose_type(accept: str | None, default: str) -> str:
    if not accept or not accept.strip():
        return default
    ranges = []
    for item in accept.split(","):
        media, params = parse_media(item)
        try:
            q = 1.0 if BROKEN == "ignores-q-values" else float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        ranges.append((media, q))

    def weight(produced: str) -> float:
        matching = [(media, q) for media, q in ranges
                    if media in ("*/*", produced) or (media.endswith("/*") and produced.startswith(media[:-1]))]
        if not matching:
            return 0.0
        return max(matching, key=lambda pair: 0 if pair[0] == "*/*" else 1 if pair[0].endswith("/*") else 2)[1]

    candidates = [default, *[p for p in PRODUCES if p != default]]
    best = max(candidates, key=weight)  # max keeps the first of equals: the default wins ties
    if weight(best) <= 0:
        raise ClientError(406, f"cannot produce {accept}; this model answers in {', '.join(PRODUCES)}")
    return best


def decode(body: bytes, content_type: str | None) -> list[list[float]]:
    if not content_type:
        raise ClientError(415, "no Content-Type")
    media, params = parse_media(content_type)
    if params and BROKEN == "charset-unsupported":  # an exact-match lookup, as in the AWS toolkits
        raise ClientError(415, f"cannot read {content_type}")
    if media not in ("text/csv", "application/json"):
        raise ClientError(500 if BROKEN == "500-on-bad-content-type" else 415,
                          f"cannot read {media}; send text/csv or application/json")
    if not body:
        raise ClientError(400, "empty body")
    try:
        text = body.decode(params.get("charset", "utf-8"))
    except (LookupError, UnicodeDecodeError) as exc:
        raise ClientError(400, f"cannot decode the body: {exc}") from None
    try:
        if media == "text/csv":
            return read_rows(text)
        data = json.loads(text)
        return [[float(v) for v in row] for row in (data["instances"] if isinstance(data, dict) else data)]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClientError(500 if BROKEN == "500-on-malformed-body" else 400, f"malformed {media}: {exc}") from None


class Handler(BaseHTTPRequestHandler):
    model: dict | None = None
    limit = 6 * 1024 * 1024
    default_accept = "application/json"

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._answer(200, b"")
        elif self.path == "/execution-parameters":
            limit_mb = max(1, self.limit // (1024 * 1024))
            self._answer(200, json.dumps({"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                                          "MaxPayloadInMB": limit_mb}).encode(), "application/json")
        else:
            self._answer(404, b"not found")

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._answer(404, b"not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            if length > self.limit and BROKEN != "no-payload-limit":
                raise ClientError(413, f"the body is over the {self.limit} byte limit")
            if self.model is None:
                raise RuntimeError("no model")
            accept = choose_type(self.headers.get("Accept"), self.default_accept)
            rows = decode(body, self.headers.get("Content-Type"))
            if not rows:
                raise ClientError(400, "no rows")
            means = self.model["means"]
            if any(len(row) != len(means) for row in rows):
                raise ClientError(400, f"expected {len(means)} features per row")
            scores = [self.model["scale"] * sum(x - m for x, m in zip(row, means, strict=True)) for row in rows]
        except ClientError as exc:
            self._answer(exc.status, str(exc).encode())
            return
        except Exception as exc:
            self._answer(500, f"{type(exc).__name__}: {exc}".encode())
            return
        if accept == "text/csv":
            self._answer(200, "".join(f"{score}\n" for score in scores).encode(), "text/csv")
        else:
            self._answer(200, json.dumps({"predictions": scores}).encode(), "application/json")


def serve() -> int:
    if BROKEN == "writes-root-fs":
        Path("/var/run/minimal-server.pid").write_text(str(os.getpid()))
    try:
        Handler.model = json.loads(MODEL_FILE.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        if BROKEN != "ping-without-model":
            return 1
    Handler.limit = int(float(os.environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "6")) * 1024 * 1024)
    Handler.default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json"
    port = 8080 if BROKEN == "ignores-bind-to-port" else int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    if BROKEN != "ignores-sigterm":  # as PID 1 without a handler, SIGTERM is ignored
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"listening on {port}")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    sys.exit(train() if command == "train" else serve() if command == "serve" else 2)
