"""The default loader, the device choice and the dtype inputs are cast to."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from pytorch_container import model
from pytorch_container.model import ModelLoadError, ServedModel, choose_device

from .conftest import WIDTH, Affine


@pytest.mark.parametrize(("cuda", "gpus", "worker", "expected"), [
    (False, 0, 0, "cpu"),
    (False, 4, 3, "cpu"),  # GPUs present but CUDA unusable (no driver): CPU
    (True, 0, 1, "cpu"),
    (True, 1, 0, "cuda:0"),
    (True, 1, 5, "cuda:0"),
    (True, 4, 0, "cuda:0"),
    (True, 4, 3, "cuda:3"),
    (True, 4, 6, "cuda:2"),  # worker index modulo GPU count
    (True, 2, 7, "cuda:1"),
])
def test_device_choice_spreads_workers_over_gpus(cuda, gpus, worker, expected):
    assert choose_device(cuda, gpus, worker) == expected


def test_worker_device_follows_the_worker_index_and_is_cpu_without_cuda():
    expected = choose_device(torch.cuda.is_available(), torch.cuda.device_count(), 3)
    assert model.worker_device(3) == torch.device(expected)
    if not torch.cuda.is_available():
        assert model.worker_device(None) == torch.device("cpu")


@pytest.mark.parametrize(("workers", "cpus", "threads"), [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (2, 2, 1)])
def test_threads_per_worker_share_the_cpus(workers, cpus, threads):
    assert model.threads_per_worker(workers, cpus) == threads


def test_loads_torchscript_model_pt_in_eval_mode_with_its_width(scripted_dir):
    served = model.load(scripted_dir, torch.device("cpu"))
    assert served.num_features == WIDTH and served.dtype == torch.float32
    assert not served.module.training
    out = served(torch.ones(2, WIDTH, dtype=torch.float64))
    assert out.dtype == torch.float32 and out.tolist() == [11.0, 11.0]


def test_a_model_saved_with_the_first_releases_input_width_keeps_its_width(scripted_dir):
    (scripted_dir / model.META_FILE).write_text(f'{{"input_width": {WIDTH}}}')
    assert model.load(scripted_dir, torch.device("cpu")).num_features == WIDTH


def test_loads_the_single_pth_file_when_there_is_no_model_pt(tmp_path):
    torch.jit.script(Affine()).save(str(tmp_path / "weights.pth"))
    served = model.load(tmp_path, torch.device("cpu"))
    assert served.num_features is None
    assert served(torch.zeros(1, WIDTH)).tolist() == [1.0]


def test_model_pt_wins_over_other_files(tmp_path):
    torch.jit.script(Affine()).save(str(tmp_path / "model.pt"))
    torch.save(Affine().state_dict(), tmp_path / "other.pt")
    assert model.model_file(tmp_path) == tmp_path / "model.pt"


def test_several_model_files_without_model_pt_is_a_clear_error(tmp_path):
    for name in ("a.pt", "b.pth"):
        torch.jit.script(Affine()).save(str(tmp_path / name))
    with pytest.raises(ModelLoadError, match=r"several model files \(a.pt, b.pth\)"):
        model.model_file(tmp_path)


def test_no_model_file_names_model_fn(tmp_path):
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(ModelLoadError, match=r"model_fn in code/inference\.py"):
        model.load(tmp_path, torch.device("cpu"))


@pytest.mark.parametrize("saved", ["state_dict", "module"])
def test_an_eager_model_names_model_fn(tmp_path, saved):
    eager = Affine()
    torch.save(eager.state_dict() if saved == "state_dict" else eager, tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match=r"is not a TorchScript model .*model_fn in code/inference.py"):
        model.load(tmp_path, torch.device("cpu"))


@pytest.mark.parametrize("width", [0, -3, 2.5, "5", True])
def test_a_bad_num_features_is_refused(scripted_dir, width):
    (scripted_dir / model.META_FILE).write_text(f'{{"num_features": {__import__("json").dumps(width)}}}')
    with pytest.raises(ModelLoadError, match="num_features must be a positive integer"):
        model.load(scripted_dir, torch.device("cpu"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_inputs_are_cast_to_the_model_dtype(dtype):
    served = ServedModel.prepare(Affine(dtype), torch.device("cpu"))
    assert served.dtype == dtype
    for given in (torch.float64, torch.float32, torch.int64):
        out = served(torch.ones(3, WIDTH, dtype=given))
        assert out.dtype == dtype and out.tolist() == [11.0] * 3


def test_prepare_puts_a_training_module_in_eval_mode():
    module = nn_with_dropout()
    served = ServedModel.prepare(module, torch.device("cpu"))
    rows = torch.ones(4, WIDTH)
    assert not module.training
    assert torch.equal(served(rows), served(rows))  # dropout off: deterministic


def nn_with_dropout() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(WIDTH, 8), torch.nn.Dropout(0.9), torch.nn.Linear(8, 1))


def test_module_dtype_of_a_parameterless_module_is_float32():
    assert model.module_dtype(torch.nn.ReLU()) == torch.float32


def test_served_model_uses_inference_mode(scripted_dir: Path):
    out = model.load(scripted_dir, torch.device("cpu"))(torch.ones(1, WIDTH))
    assert out.is_inference()


def test_every_predicting_thread_runs_with_the_models_thread_count():
    """torch's intra-op thread count is per thread: the server's prediction thread must set it too."""
    served = ServedModel.prepare(Affine(), torch.device("cpu"), threads=3)
    seen = []

    def predict() -> None:
        served(torch.ones(1, WIDTH))
        seen.append(torch.get_num_threads())

    for _ in range(2):
        thread = threading.Thread(target=predict)
        thread.start()
        thread.join()
    assert seen == [3, 3]
