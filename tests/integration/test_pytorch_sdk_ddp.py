"""Two-host DDP through the SageMaker Python SDK's local mode, as a researcher runs it:
``sagemaker.pytorch.PyTorch(image_uri=<pytorch image>, entry_point="train.py", source_dir=...,
instance_count=2, instance_type="local", distribution={"torch_distributed": {"enabled": True}})``
with the shipped example script (containers/pytorch/examples/mlp/train.py).

Why ``sagemaker.pytorch.PyTorch`` and not the generic ``Estimator``: only the framework estimators turn
``distribution`` into hyperparameters (``sagemaker_torch_distributed_enabled``); the generic ``Estimator``
takes ``distribution=`` into ``**kwargs`` and drops it without a word (SDK 2.257), so the job would run one
independent script per host. With ``image_uri`` given, ``PyTorch`` needs no ``framework_version`` and
resolves no AWS image: it works offline. (``Estimator(..., hyperparameters={"sagemaker_torch_distributed_
enabled": True})`` is the equivalent for the generic class.)

Local mode runs one compose service per host (``algo-1-<suffix>``, ``algo-2-<suffix>``) on the
``sagemaker-local`` network; its output (each line prefixed with the host's name) goes to the caller's
stdout. The job ends as on SageMaker (local_test.sagemaker_local replaces compose's
``--abort-on-container-exit``): when every host has exited, or at once when one fails; the last two tests
check that rule with a plain script.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import threading
import time
from pathlib import Path

import local_test.sagemaker_local  # noqa: F401  (first: the offline environment before the SDK's import)

# isort: split
import numpy as np
import pytest
import torch
from sagemaker.estimator import Estimator
from sagemaker.local.local_session import file_input
from sagemaker.pytorch import PyTorch

from local_test.docker_run import ROOT
from local_test.sagemaker_local import ROLE, TrainingJobFailed, offline_local_mode, sdk_containers
from local_test.sdk_flows import file_uri, local_path

pytestmark = pytest.mark.docker

EXAMPLE = ROOT / "containers" / "pytorch" / "examples" / "mlp" / "train.py"
WIDTH = 6
ROWS = 400  # even: both hosts get exactly half of the rows
# Full-batch training (batch_size >= rows): one step per epoch on one host is the mean gradient over all rows;
# on two hosts each takes half the rows (rank::world), and DDP averages the two half-means, which is the
# same mean. Same seed, same initial weights (and DDP broadcasts rank 0's anyway), same Adam steps: the
# models differ only by float32 summation order. Measured: <= 5e-7 on weights and probabilities after 30
# epochs; the tolerance is 1e-5. (With mini-batches the two runs take different steps and agree only in
# accuracy, which is what tests/integration/test_pytorch_script_mode.py checks on our own Docker helper.)
HYPERPARAMETERS = {"epochs": 30, "learning_rate": 0.05, "batch_size": 512, "hidden": 16}
TOLERANCE = 1e-5
FIT_WITHIN_S = 360  # the two-host fit: ~20 s on this 2-core machine when quiet-ish, ~90 s under heavy load
KILL_WITHIN_S = 120  # kill to exception: the host watch's stop (<= 10 s), at worst the example's 60 s timeout
# docker-compose 1.x prefixes each line with the container's name, <random>-algo-N-<suffix>, in colour.
LINE = re.compile(r"^(?:\w+-)?(algo-\d+-\w+)\s+\|\s?(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COMPOSE_SERVICE = "com.docker.compose.service"


def _labelled_csv(folder: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, WIDTH))
    labels = (features[:, 0] - features[:, 1] > 0).astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "part-0.csv", np.column_stack([labels, features]), delimiter=",", fmt="%.8g")


def _source(tmp_path: Path) -> Path:
    """The shipped example, byte for byte, in a folder of its own (the container runs as root and would
    leave root-owned files in a mounted checkout)."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(EXAMPLE, source / "train.py")
    return source


def _estimator(session, image: str, source: Path, output: Path, instance_count: int, **hyperparameters) -> PyTorch:
    """Two hosts: torch_distributed (torchrun). One host: the plain script, the reference."""
    output.mkdir(parents=True, exist_ok=True)
    return PyTorch(image_uri=image, entry_point="train.py", source_dir=str(source), role=ROLE,
                   instance_count=instance_count, instance_type="local",
                   distribution={"torch_distributed": {"enabled": True}} if instance_count > 1 else None,
                   hyperparameters={**HYPERPARAMETERS, **hyperparameters}, output_path=file_uri(output),
                   sagemaker_session=session, disable_profiler=True, debugger_hook_config=False)


def _host_logs(stdout: str) -> dict[str, list[str]]:
    """host -> its lines, from local mode's compose output (``x1y2z3-algo-1-abcde  | text``)."""
    hosts: dict[str, list[str]] = {}
    for raw in stdout.splitlines():
        match = LINE.match(ANSI.sub("", raw).strip("\r"))
        if match:
            hosts.setdefault(match[1], []).append(match[2].rstrip("\r"))
    return hosts


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _model(members: dict[str, bytes]) -> torch.jit.ScriptModule:
    return torch.jit.load(io.BytesIO(members["model.pt"]))


def test_two_hosts_through_sdk_local_mode_reach_the_one_host_model(docker, image_of, tmp_path, capsys):
    image = image_of("pytorch")
    source = _source(tmp_path)
    data = tmp_path / "train"
    _labelled_csv(data, ROWS, seed=0)
    inputs = {"train": file_input(file_uri(data), "text/csv")}
    with offline_local_mode() as session:
        one = _estimator(session, image, source, tmp_path / "one", 1)
        one.fit(inputs, wait=True, logs="All")
        capsys.readouterr()
        two = _estimator(session, image, source, tmp_path / "two", 2)
        assert two.hyperparameters()["sagemaker_torch_distributed_enabled"] == "true"
        thread, outcome = _fit_in_thread(two, inputs)  # bounded: a broken rendezvous would wait ~15 min
        thread.join(FIT_WITHIN_S)
        stdout = capsys.readouterr().out
        assert outcome.get("returned"), (outcome, ANSI.sub("", stdout)[-4000:])
        one_model, two_model = local_path(one.model_data), local_path(two.model_data)

    logs = _host_logs(stdout)
    hosts = sorted(logs)
    assert [host.rsplit("-", 1)[0] for host in hosts] == ["algo-1", "algo-2"], stdout[-3000:]
    for rank, host in enumerate(hosts):  # each host launched its share: master algo-1:7777, node_rank = its index
        launch = (f"torchrun --nnodes 2 --nproc_per_node 1 --master_addr {hosts[0]} --master_port 7777 "
                  f"--node_rank {rank} train.py --batch_size 512 --epochs 30 --hidden 16 --learning_rate 0.05")
        assert any(launch in line for line in logs[host]), (host, logs[host][-40:])
    leader, worker = (logs[host] for host in hosts)
    # Rank 0 (algo-1) reports the epochs and writes the model, once; rank 1 (algo-2) trains silently.
    assert sum("saved /opt/ml/model/model.pt" in line for line in leader) == 1
    assert sum("epoch 29: train_loss=" in line for line in leader) == 1
    assert not any("saved /opt/ml/" in line or "epoch " in line for line in worker), worker[-40:]

    two_files = _members(two_model)
    assert sorted(two_files) == ["model.pt", "pytorch-meta.json"]
    outputs = _members(two_model.with_name("output.tar.gz"))
    assert "success" in outputs and "failure" not in outputs, sorted(outputs)

    single, ddp = _model(_members(one_model)), _model(two_files)
    for name, weights in single.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[name], weights, rtol=0, atol=TOLERANCE, msg=name)
    rows = torch.from_numpy(np.random.default_rng(1).normal(size=(500, WIDTH)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(ddp(rows), single(rows), rtol=0, atol=TOLERANCE)
        labels = (rows[:, 0] - rows[:, 1] > 0).numpy()
        assert float(((ddp(rows) > 0.5).numpy() == labels).mean()) > 0.9  # and it learnt the rule


def _fit_in_thread(estimator, inputs: dict) -> tuple[threading.Thread, dict[str, object]]:
    """``estimator.fit`` in a thread of its own, so the test can bound how long it waits for it."""
    outcome: dict[str, object] = {}

    def fit() -> None:
        try:
            estimator.fit(inputs, wait=True, logs="All")
            outcome["returned"] = True
        except BaseException as exc:  # the test inspects whatever fit raised
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    return thread, outcome


def _container(root: Path, host_prefix: str):
    for container in sdk_containers(root):
        if container.labels.get(COMPOSE_SERVICE, "").startswith(host_prefix + "-"):
            return container
    return None


def test_a_host_killed_mid_run_fails_the_sdk_fit_within_a_timeout(docker, image_of, tmp_path):
    """algo-2's container is killed (docker kill, as a lost instance) once algo-1 reports epochs, i.e. both
    hosts are in the training loop (every step all-reduces). The SDK's ``fit`` must raise within
    ``KILL_WITHIN_S``, with algo-1's failure file, no success file and no model."""
    image = image_of("pytorch")
    source = _source(tmp_path)
    data = tmp_path / "train"
    _labelled_csv(data, 4000, seed=0)
    output = tmp_path / "output"
    with offline_local_mode() as session:
        # Far more epochs than the test waits for: the job can only end by the kill.
        estimator = _estimator(session, image, source, output, 2, epochs=100000, batch_size=64)
        thread, outcome = _fit_in_thread(estimator, {"train": file_input(file_uri(data), "text/csv")})
        deadline = time.monotonic() + 180
        leader = worker = None
        while time.monotonic() < deadline and thread.is_alive():
            leader, worker = _container(session.root, "algo-1"), _container(session.root, "algo-2")
            if leader is not None and worker is not None and b"epoch 1: train_loss=" in leader.logs():
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"training never got under way on both hosts: {outcome}")
        worker.kill()
        killed = time.monotonic()
        thread.join(KILL_WITHIN_S)
        waited = time.monotonic() - killed
        assert not thread.is_alive(), f"the SDK's fit still runs {KILL_WITHIN_S} s after algo-2 was killed"

    error = outcome.get("error")
    assert "returned" not in outcome and isinstance(error, TrainingJobFailed), outcome
    print(f"fit raised {waited:.1f} s after the kill: {error}")
    assert re.search(r"algo-2-\w+ exited with code 137", str(error)), error  # the killed host, by its exit code
    survivor = next(host for host in error.reasons if host.startswith("algo-1-"))
    # Its torchrun failed (gloo's "Connection closed by peer"), or was stopped by the job first: either way
    # the failure file, as SageMaker's FailureReason.
    assert error.reasons[survivor].startswith("ExecuteUserScriptError") and "torchrun --nnodes 2" in error.reasons[
        survivor], error.reasons
    [archive] = output.rglob("output.tar.gz")  # local mode moves both archives there, failed or not
    outputs = _members(archive)
    assert "failure" in outputs and "success" not in outputs, sorted(outputs)
    assert "model.pt" not in _members(archive.with_name("model.tar.gz"))


# Local mode's end of a job with several hosts (local_test.sagemaker_local's fix of docker-compose's
# --abort-on-container-exit), with a plain script per host: no torchrun, the generic Estimator.
HOSTS_SCRIPT = """
import json, os, sys, time
hosts, me = json.loads(os.environ["SM_HOSTS"]), os.environ["SM_CURRENT_HOST"]
mode = sys.argv[sys.argv.index("--mode") + 1]
if me == hosts[0]:
    time.sleep(600 if mode == "failing-worker" else 5)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as handle:
        handle.write("saved by " + me)
elif mode == "failing-worker":
    sys.exit("worker: the data is bad")
"""


def _hosts_job(session, image: str, tmp_path: Path, mode: str) -> tuple[Estimator, Path]:
    source, output = tmp_path / "hosts-src", tmp_path / "hosts-out"
    source.mkdir()
    output.mkdir()
    (source / "job.py").write_text(HOSTS_SCRIPT)
    estimator = Estimator(image_uri=image, entry_point="job.py", source_dir=str(source), role=ROLE, instance_count=2,
                          instance_type="local", hyperparameters={"mode": mode}, output_path=file_uri(output),
                          sagemaker_session=session, disable_profiler=True, debugger_hook_config=False)
    return estimator, output


def test_a_host_that_finishes_first_leaves_the_others_running(docker, image_of, tmp_path):
    """algo-2 exits 0 at once, algo-1 saves its model 5 s later. docker-compose's --abort-on-container-exit
    (the SDK's) stopped algo-1 then, and the job "succeeded" without a model."""
    with offline_local_mode() as session:
        estimator, output = _hosts_job(session, image_of("pytorch"), tmp_path, "slow-leader")
        estimator.fit(wait=True, logs="All")
        model = _members(local_path(estimator.model_data))
    assert list(model) == ["model.txt"] and model["model.txt"].startswith(b"saved by algo-1-")
    [archive] = output.rglob("output.tar.gz")
    assert sorted(_members(archive)) == ["success"]


def test_a_failed_host_stops_the_others_and_fails_the_job(docker, image_of, tmp_path):
    """algo-2 fails at once while algo-1 would sleep for 10 minutes: algo-1 is stopped, the fit raises
    with algo-2's failure file."""
    with offline_local_mode() as session:
        estimator, _ = _hosts_job(session, image_of("pytorch"), tmp_path, "failing-worker")
        thread, outcome = _fit_in_thread(estimator, {})
        thread.join(KILL_WITHIN_S)
        assert not thread.is_alive(), "the job waits for algo-1 although algo-2 failed"
    error = outcome.get("error")
    assert isinstance(error, TrainingJobFailed), outcome
    [worker] = [host for host in error.reasons if host.startswith("algo-2-")]
    assert "the data is bad" in error.reasons[worker]
