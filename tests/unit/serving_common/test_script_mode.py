"""Script mode: a real user inference.py in a temporary model folder, laid over the container's handler."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from serving_common.content_types import CSV, JSON
from serving_common.handler import RequestContext
from serving_common.invocations import Request, Service
from serving_common.script_mode import ScriptError, ScriptHandler, find_script, import_script, with_user_script
from serving_common.settings import Settings


def write_script(directory: Path, source: str, name: str = "inference.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def serve(handler, model_dir: Path, body: bytes, content_type: str = "application/json", accept: str | None = None,
          custom_attributes: str | None = None):
    service = Service(handler, handler.load(model_dir))
    return service.invoke(Request(body, content_type, accept, "rid-7", custom_attributes))


def scripted(linear_handler, model_dir: Path, source: str, settings: Settings | None = None):
    write_script(model_dir / "code", source)
    return with_user_script(linear_handler(), settings or Settings(), model_dir)


# -- finding the script ---------------------------------------------------------------------------------------

def test_find_script_in_model_code_folder(model_dir):
    path = write_script(model_dir / "code", "")
    assert find_script(Settings(), model_dir) == path


def test_find_script_in_submit_directory_first(tmp_path, model_dir):
    write_script(model_dir / "code", "")
    submit = write_script(tmp_path / "src", "")
    settings = Settings.from_env({"SAGEMAKER_SUBMIT_DIRECTORY": f"file://{tmp_path / 'src'}"})
    assert find_script(settings, model_dir) == submit


def test_find_script_falls_back_to_code_when_submit_directory_lacks_it(tmp_path, model_dir):
    (tmp_path / "empty").mkdir()
    path = write_script(model_dir / "code", "")
    assert find_script(Settings(submit_directory=tmp_path / "empty"), model_dir) == path


def test_find_script_uses_sagemaker_program(model_dir):
    write_script(model_dir / "code", "", "inference.py")
    path = write_script(model_dir / "code", "", "serve_me.py")
    assert find_script(Settings.from_env({"SAGEMAKER_PROGRAM": "serve_me.py"}), model_dir) == path


def test_no_script_means_the_container_handler(linear_handler, model_dir):
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").mkdir()  # a folder is not a script
    assert find_script(Settings(), model_dir) is None
    base = linear_handler()
    assert with_user_script(base, Settings(), model_dir) is base


# -- each hook replaces only its step ----------------------------------------------------------------------------

def test_model_fn_only(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        import json, os
        import numpy as np
        def model_fn(model_dir):
            assert isinstance(model_dir, str)
            return np.asarray(json.load(open(os.path.join(model_dir, "weights.json")))) * 10
    """)
    assert isinstance(handler, ScriptHandler)
    response = serve(handler, model_dir, b"[[1, 1]]", accept="text/csv")
    assert (response.status, response.body) == (200, b"30.0\n")  # base decode/predict/encode, script's model


def test_input_fn_only(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        import numpy as np
        def input_fn(body, content_type):
            assert content_type == "text/plain"
            return np.array([[float(x) for x in body.decode().split()]])
    """)
    response = serve(handler, model_dir, b"2 3", "text/plain; charset=utf-8", "text/csv")
    assert (response.status, response.body, response.content_type) == (200, b"8.0\n", CSV)


def test_input_fn_accepts_any_content_type_but_the_base_still_negotiates_accept(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def input_fn(body, content_type):
            return [[1.0, 1.0]]
    """)
    assert handler.content_types is None
    response = serve(handler, model_dir, b"whatever", "application/x-weird", "text/html")
    assert response.status == 406


def test_predict_fn_only(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def predict_fn(data, model):
            return (data @ model) * -1
    """)
    response = serve(handler, model_dir, b"1,2", "text/csv", "text/csv")
    assert (response.status, response.body) == (200, b"-5.0\n")
    assert handler.content_types == linear_handler.content_types  # decoding is still the container's


def test_output_fn_only(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        import json
        def output_fn(prediction, accept):
            return json.dumps({"y": prediction.tolist(), "accept": accept}), "application/vnd.custom"
    """)
    response = serve(handler, model_dir, b"[[1, 0], [0, 1]]", accept="application/vnd.custom+json")
    assert response.status == 200
    assert response.content_type == "application/vnd.custom"
    assert orjson.loads(response.body) == {"y": [1.0, 2.0], "accept": "application/vnd.custom+json"}


def test_bad_input_still_400_through_the_base_decoder(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def predict_fn(data, model):
            return data @ model
    """)
    assert serve(handler, model_dir, b"[[1, NaN]]").status == 400


def test_transform_fn(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def model_fn(model_dir):
            return "the-model"
        def transform_fn(model, body, content_type, accept):
            return f"{model}|{body.decode()}|{content_type}|{accept}", "text/plain"
    """)
    response = serve(handler, model_dir, b"raw bytes", "text/csv; charset=utf-8", "text/csv")
    assert (response.status, response.content_type) == (200, "text/plain")
    assert response.body == b"the-model|raw bytes|text/csv|text/csv"


def test_transform_fn_with_wildcard_accept_gets_the_default(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        DEFAULT_ACCEPT = "text/csv"
        def model_fn(model_dir):
            return None
        def transform_fn(model, body, content_type, accept):
            return accept.encode()
    """)
    response = serve(handler, model_dir, b"x", "application/octet-stream", "*/*")
    assert (response.status, response.body, response.content_type) == (200, b"text/csv", "text/csv")


def test_transform_fn_bug_is_500(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def model_fn(model_dir):
            return {}
        def transform_fn(model, body, content_type, accept):
            return model["missing"]
    """)
    response = serve(handler, model_dir, b"x")
    assert response.status == 500
    assert orjson.loads(response.body)["message"] == "KeyError: 'missing'"


def test_transform_fn_with_input_fn_is_refused(model_dir):
    path = write_script(model_dir / "code", """
        def transform_fn(model, body, content_type, accept):
            return body
        def input_fn(body, content_type):
            return body
    """)
    with pytest.raises(ScriptError) as caught:
        import_script(path)
    assert "transform_fn" in str(caught.value) and "input_fn" in str(caught.value)
    assert str(path) in str(caught.value)


def test_context_parameter_receives_the_request_context(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def input_fn(body, content_type, context):
            return {"attrs": context.custom_attributes}
        def predict_fn(data, model, context=None):
            return {**data, "id": context.request_id, "ct": context.content_type, "accept": context.accept,
                    "type": type(context).__name__}
        def output_fn(prediction, accept):
            import json
            return json.dumps(prediction)
    """)
    response = serve(handler, model_dir, b"{}", "application/json", None, "tenant=42,trace=xyz")
    assert response.status == 200
    assert orjson.loads(response.body) == {"attrs": "tenant=42,trace=xyz", "id": "rid-7", "ct": JSON,
                                           "accept": JSON, "type": RequestContext.__name__}


def test_hooks_without_context_are_called_without_it(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def predict_fn(data, model, *args, **kwargs):
            return [len(args), sorted(kwargs)]
        def output_fn(prediction, accept):
            return str(prediction)
    """)
    assert serve(handler, model_dir, b"[[1, 2]]", custom_attributes="a=1").body == b"[0, []]"


def test_requirements_txt_is_logged_and_not_installed(caplog, model_dir):
    code = model_dir / "code"
    write_script(code, "VALUE = 1\n")
    (code / "requirements.txt").write_text("smkit-surely-not-installed-pkg==9.9.9\n")
    caplog.set_level(logging.WARNING, logger="serving_common.script_mode")
    module = import_script(code / "inference.py")
    assert module.VALUE == 1
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "requirements.txt" in warnings[0].getMessage()
    assert "NOT installed" in warnings[0].getMessage()
    with pytest.raises(ImportError):
        __import__("smkit_surely_not_installed_pkg")


def test_missing_dependency_names_the_script_and_points_at_requirements(model_dir):
    code = model_dir / "code"
    path = write_script(code, "import smkit_surely_not_installed_pkg\n")
    (code / "requirements.txt").write_text("smkit-surely-not-installed-pkg\n")
    with pytest.raises(ScriptError) as caught:
        import_script(path)
    message = str(caught.value)
    assert str(path) in message
    assert "smkit_surely_not_installed_pkg" in message
    assert "requirements.txt" in message


@pytest.mark.parametrize(("source", "fragment"), [
    ("def model_fn(model_dir:\n    pass\n", "SyntaxError"),
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("import smkit_surely_not_installed_pkg\n", "No module named"),
])
def test_import_error_names_the_script(model_dir, source, fragment):
    path = write_script(model_dir / "code", source)
    with pytest.raises(ScriptError) as caught:
        import_script(path)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)
    assert "requirements.txt" not in str(caught.value)


def test_script_can_import_its_siblings(linear_handler, model_dir):
    write_script(model_dir / "code", "SCALE = 7\n", "smkit_helper_module.py")
    handler = scripted(linear_handler, model_dir, """
        import smkit_helper_module
        def predict_fn(data, model):
            return data @ model * smkit_helper_module.SCALE
    """)
    assert serve(handler, model_dir, b"[[1, 0]]", accept="text/csv").body == b"7.0\n"


def test_script_with_dataclasses_and_postponed_annotations_imports(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        from __future__ import annotations
        import dataclasses

        @dataclasses.dataclass
        class Offset:
            value: float = 0.5

        def predict_fn(data, model):
            return data @ model + Offset().value
    """)
    assert serve(handler, model_dir, b"[[1, 1]]", accept="text/csv").body == b"3.5\n"


def test_default_accept_from_the_script(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, 'DEFAULT_ACCEPT = "text/csv"\n')
    assert handler.default_accept == "text/csv"
    response = serve(handler, model_dir, b"[[2, 2]]")
    assert (response.content_type, response.body) == (CSV, b"6.0\n")


def test_script_in_submit_directory_is_used(tmp_path, linear_handler, model_dir):
    write_script(tmp_path / "src", """
        def predict_fn(data, model):
            return [["from submit dir"]]
    """)
    settings = Settings.from_env({"SAGEMAKER_SUBMIT_DIRECTORY": f"file://{tmp_path / 'src'}"})
    handler = with_user_script(linear_handler(), settings, model_dir)
    assert serve(handler, model_dir, b"[[1, 1]]", accept="text/csv").body == b"from submit dir\n"
    assert str(tmp_path / "src") in sys.path


def test_input_fn_without_content_type_gets_octet_stream(linear_handler, model_dir):
    handler = scripted(linear_handler, model_dir, """
        def input_fn(body, content_type):
            import numpy as np
            assert content_type == "application/octet-stream", content_type
            return np.array([[len(body), 0]])
    """)
    response = serve(handler, model_dir, b"abc", None, "text/csv")
    assert (response.status, response.body) == (200, b"3.0\n")
