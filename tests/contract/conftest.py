"""Fixtures of the contract suite: per image, one trained model and one running serving container."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_test.docker_run import OptMl, ServingContainer, train

from descriptor import ImageDescriptor
from images import DESCRIPTORS

# The contract server listens on a non-default port (SAGEMAKER_BIND_TO_PORT), takes text/csv as its
# default Accept (as a pipeline stage does), has a 1 MB payload limit, and runs with a read-only root.
PORT = 8089
SERVER_ENV = {
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
    "SMKIT_ACCESS_LOG": "true",  # the log test below reads a successful request's line (off by default)
}


@pytest.fixture(scope="session", params=DESCRIPTORS, ids=str)
def descriptor(request) -> ImageDescriptor:
    return request.param


@pytest.fixture(scope="session")
def image(descriptor, image_of) -> str:
    return image_of(descriptor.name)


@pytest.fixture(scope="session")
def trained(descriptor, image, docker, tmp_path_factory) -> OptMl:
    """A model trained through the image's real ``train`` entry."""
    opt_ml = OptMl(tmp_path_factory.mktemp(f"{descriptor.name}-opt-ml"), descriptor.hyperparameters)
    descriptor.write_training_data(opt_ml)
    result = train(docker, image, opt_ml)
    assert result.exit_code == 0, result.logs
    return opt_ml


@pytest.fixture(scope="session")
def model_dir(trained) -> Path:
    return trained.model_dir


@pytest.fixture(scope="session")
def server(docker, image, model_dir) -> Iterator[ServingContainer]:
    with ServingContainer(docker, image, model_dir, env=SERVER_ENV, port=PORT) as container:
        container.wait_ready()
        yield container
