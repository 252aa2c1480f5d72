"""The SageMaker Python SDK's local mode, fully offline: dummy region and credentials that never leave
this machine, no instance metadata lookups, no telemetry. Import this before anything touches boto3."""

from __future__ import annotations

import os

REGION = "eu-central-1"
OFFLINE_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local-mode-only",
    "AWS_SECRET_ACCESS_KEY": "local-mode-only",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
}


def offline_environment() -> None:
    """Set the variables that keep boto3 and the SDK from looking for AWS."""
    os.environ.update(OFFLINE_ENV)
