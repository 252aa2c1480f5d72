"""The optional ``features`` channel of a training job: the preprocess model's ``features.json``, whose
``fingerprint`` a model records (as ``features_fingerprint`` in its ``*-meta.json``) so that a pipeline or a
fused model (``serving_common.pipeline_check``, ``serving_common.fuse``) can check it scores the features it
was trained on."""

from __future__ import annotations

import json

from .harness import TrainingError, TrainingJob

FEATURES_CHANNEL = "features"


def features_fingerprint(job: TrainingJob) -> str | None:
    """The fingerprint of the features channel's ``features.json``; None without the channel."""
    channel = job.env.channels.get(FEATURES_CHANNEL)
    if channel is None:
        return None
    files = [p for p in channel.files() if p.name == "features.json"]
    if not files:
        raise TrainingError("the features channel holds no features.json (the preprocess model's description)")
    try:
        return json.loads(files[0].read_text())["fingerprint"]
    except (ValueError, KeyError) as exc:
        raise TrainingError(f"features.json of the features channel is unreadable: {exc}") from None
