"""The multi-model API steps against a small real server that keeps a model table (stdlib http.server)."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smkit_contract.multi_model import api_problem


class ModelTable(BaseHTTPRequestHandler):
    models: dict[str, str]
    duplicate_status = 409  # what a second load of one name answers

    def _answer(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/models":
            self._answer(200, {"models": [{"modelName": n, "modelUrl": u} for n, u in self.models.items()]})
        else:
            name = self.path.removeprefix("/models/")
            self._answer(200, {"modelName": name}) if name in self.models else self._answer(404, {})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/models":
            load = json.loads(body)
            if load["model_name"] in self.models:
                self._answer(self.duplicate_status, {})
            else:
                self.models[load["model_name"]] = load["url"]
                self._answer(200, {})
        else:
            name = self.path.removeprefix("/models/").removesuffix("/invoke")
            self._answer(200, {"predictions": [1]}) if name in self.models else self._answer(404, {})

    def do_DELETE(self) -> None:
        name = self.path.removeprefix("/models/")
        self._answer(200, {}) if self.models.pop(name, None) else self._answer(404, {})

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def good_port() -> Iterator[int]:
    yield from _serve(type("Good", (ModelTable,), {"models": {}}))


@pytest.fixture
def overwriting_port() -> Iterator[int]:
    yield from _serve(type("Overwriting", (ModelTable,), {"models": {}, "duplicate_status": 200}))


@pytest.fixture
def preloaded_port() -> Iterator[int]:
    yield from _serve(type("Preloaded", (ModelTable,), {"models": {"other": "/opt/ml/models/other"}}))


def test_a_server_that_keeps_its_model_table_passes(good_port):
    assert api_problem(good_port, b"1,2", "text/csv") is None


def test_loading_a_name_twice_must_be_409(overwriting_port):
    problem = api_problem(overwriting_port, b"1,2", "text/csv")
    assert problem is not None and problem.startswith("load the same name again") and "expected 409" in problem


def test_an_endpoint_must_start_empty(preloaded_port):
    problem = api_problem(preloaded_port, b"1,2", "text/csv")
    assert problem is not None and problem.startswith("list the models of an empty endpoint")
