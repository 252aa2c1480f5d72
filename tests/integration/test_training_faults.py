"""Training under faults, in the real XGBoost image: SIGTERM (StopTrainingJob, spot interruption) and a host
lost mid-training on a Docker network. Every case ends promptly with a failure file that says what happened."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from local_test.docker_run import OptMl

pytestmark = pytest.mark.docker

COLLECTIVE_TIMEOUT_S = 20
# Generous bounds: these catch hangs (the bug was 60 s to 9+ minutes), not speed.
STOP_BOUND_S = 30
LOST_HOST_BOUND_S = COLLECTIVE_TIMEOUT_S + 30


def _csv(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 6))
    labels = (features[:, 0] - features[:, 1] + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([labels, features]), delimiter=",", fmt="%.6g")


def _long_job(root: Path, hosts: tuple[str, ...] = ("algo-1",), current: str = "algo-1") -> OptMl:
    job = OptMl(root, {"num_round": "100000", "objective": "binary:logistic", "max_depth": "6",
                       "checkpoint_frequency": "100000"},
                {"train": {"ContentType": "text/csv"}}, hosts=hosts, current_host=current)
    _csv(job.channel_dir("train") / "part-0.csv", 4000, seed=1)
    _csv(job.channel_dir("train") / "part-1.csv", 4000, seed=2)
    return job


def _wait_for_rounds(container, deadline_s: float = 120) -> None:
    """Until the leader has printed a few rounds' metrics: training is under way."""
    deadline = time.monotonic() + deadline_s
    while b"\n[3]\t" not in container.logs():
        container.reload()
        assert container.status == "running" and time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.2)


def _exit_within(container, seconds: float) -> int:
    try:
        return container.wait(timeout=seconds)["StatusCode"]
    except Exception as exc:  # requests' ReadTimeout: still running, i.e. hanging
        raise AssertionError(f"still running {seconds:.0f} s later:\n{container.logs().decode()[-3000:]}") from exc


def test_sigterm_stops_xgboost_training_with_a_checkpoint(docker, image_of, tmp_path):
    job = _long_job(tmp_path / "opt_ml")
    job.write_config()
    container = docker.containers.run(image_of("xgboost"), ["train"], detach=True,
                                      volumes={str(job.root): {"bind": "/opt/ml", "mode": "rw"}})
    try:
        _wait_for_rounds(container)
        container.kill(signal="SIGTERM")
        code = _exit_within(container, STOP_BOUND_S)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert code != 0, logs
    failure = job.failure or ""
    assert failure.startswith("Stopped: the job received SIGTERM"), failure + logs[-2000:]
    checkpoints = sorted(p.name for p in (job.root / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and checkpoints[0] in failure
    assert not any(job.model_dir.iterdir())  # no model, no staging folder


@pytest.mark.parametrize("lost", ["algo-2", "algo-1"])  # a worker, then the leader (it runs the tracker)
def test_a_lost_host_fails_every_other_host_promptly_and_names_it(docker, image_of, tmp_path, lost):
    hosts = ("algo-1", "algo-2")
    jobs = {host: _long_job(tmp_path / host, hosts, host) for host in hosts}
    network = docker.networks.create(f"smkit-training-faults-{uuid.uuid4().hex[:8]}", driver="bridge")
    containers = {}
    try:
        for host, job in jobs.items():
            job.write_config()
            containers[host] = docker.containers.create(
                image_of("xgboost"), ["train"], hostname=host, network=network.name,
                environment={"SMKIT_COLLECTIVE_TIMEOUT_S": str(COLLECTIVE_TIMEOUT_S)},
                networking_config={network.name: docker.api.create_endpoint_config(aliases=[host])},
                volumes={str(job.root): {"bind": "/opt/ml", "mode": "rw"}})
        for container in containers.values():
            container.start()
        _wait_for_rounds(containers["algo-1"])
        containers[lost].kill()
        survivor = next(host for host in hosts if host != lost)
        code = _exit_within(containers[survivor], LOST_HOST_BOUND_S)
        logs = containers[survivor].logs().decode(errors="replace")
    finally:
        for container in containers.values():
            container.remove(force=True)
        network.remove()
    assert code != 0, logs
    failure = jobs[survivor].failure or ""
    assert f"lost host {lost} during training round" in failure, failure + logs[-3000:]
    assert "Stack trace" not in failure and "Timeout waiting for the tracker" not in failure
    assert not any(jobs[survivor].model_dir.iterdir())  # no model, no staging folder
