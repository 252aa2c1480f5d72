"""The front of a serial inference pipeline: one port in front of the containers of one endpoint.

SageMaker runs the containers of a pipeline model side by side in one network namespace, each on its own
``SAGEMAKER_BIND_TO_PORT``, and chains them itself. Where no platform does that (local mode, a plain
``docker run``), this front does it, as SageMaker does:

- ``POST /invocations``: the client's body and ``Content-Type`` go to stage 1; each stage's response body
  and ``Content-Type`` go to the next stage; the client's ``Accept`` is sent to the last stage only
  (earlier stages answer in their ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, e.g. ``text/csv``). The last
  stage's answer is the pipeline's. A stage that answers with an error ends the chain: its status, body
  and Content-Type reach the client unchanged, with ``X-Pipeline-Stage: <1-based index>`` and
  ``X-Pipeline-Container: <name>`` added (never a 500 of the front's own). A stage that cannot be reached
  or breaks the protocol gives 502, one that does not answer within the timeout 504, both with the JSON
  error body every image uses (``{"error", "message"}``) and the same two headers.
- ``GET /ping``: 200 only when every stage's ``/ping`` answers 200 (asked concurrently), else 503 naming
  the stages that are not ready.
- ``GET /execution-parameters``: the first stage's answer.

The caller's request id (``X-Amzn-RequestId`` / ``X-Request-Id``, or one generated here) and
``X-Amzn-SageMaker-Custom-Attributes`` are sent to every stage, so the stages' log lines of one request
share its id. Bodies are passed on as bytes: nothing is parsed or decoded.

Run it with ``python -m serving_common.pipeline`` (it ships in every image with serving_common), configured
by environment variables:

- ``SMKIT_PIPELINE_STAGES`` (required): the stages in order, ``[name=][host:]port`` comma separated, e.g.
  ``preprocess=8081,xgboost=8082`` (host ``127.0.0.1``);
- ``SAGEMAKER_BIND_TO_PORT`` (``8080``): the front's port;
- ``SMKIT_PIPELINE_TIMEOUT`` (``SAGEMAKER_MODEL_SERVER_TIMEOUT`` + 5 s): seconds one invocation may take
  through all stages (then 504); longer than the stages' own limit, so a stage's timeout answer passes through;
- ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (``6``): request body limit (413 above it);
- ``SMKIT_PIPELINE_WORKERS`` (``1``): worker processes, one event loop each;
- ``SMKIT_PIPELINE_POOL`` (``16``): kept-alive connections per stage per worker (more requests wait for one);
- ``SMKIT_ACCESS_LOG`` (``false``): one line per invocation (failed ones are always logged); the local
  pipeline keeps the stages' own access logs off, so each request is logged once, here.

Cost: the front is uvicorn (uvloop + httptools) on the server side and, on the client side, a pool of
kept-alive HTTP/1.1 connections per stage driven by httptools' response parser on asyncio protocols
(below); no timer per request (deadlines are swept). On the
project's 2-core machine it costs ~180 us of CPU per request against two trivial stages (of which ~95 us
is uvicorn serving the request at all), about a sixth of a preprocess -> xgboost pipeline's CPU under
load; ``bench/pipeline.py`` measures it in place, beside the stages'.
"""

from __future__ import annotations

from ..settings import PipelineConfig, Stage, parse_stages
from .front import PipelineApp
from .process import gunicorn_options, main

__all__ = ["PipelineApp", "PipelineConfig", "Stage", "gunicorn_options", "main", "parse_stages"]
