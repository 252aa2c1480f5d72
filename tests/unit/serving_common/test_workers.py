"""The shared gunicorn + uvicorn process (serving_common.workers) is all the pipeline front loads of the model
server: not its app, multi-model or script mode."""

from __future__ import annotations

import subprocess
import sys


def test_the_pipeline_front_imports_no_model_server_code():
    code = ("import sys, serving_common.pipeline, serving_common.pipeline.process; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('serving_common'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                timeout=60).stdout.split())
    assert "serving_common.workers" in loaded
    assert not loaded & {"serving_common.app", "serving_common.multi_model", "serving_common.script_mode",
                         "serving_common.server", "serving_common.handler"}
