"""serving_common.pipeline_check: neighbouring models of a pipeline must fit (width, fingerprint)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from serving_common.pipeline_check import ModelFiles, PipelineMismatchError, check_pipeline, main


def _folder(path: Path, files: dict[str, object]) -> Path:
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).write_text(json.dumps(content))
    return path


def _archive(folder: Path) -> Path:
    archive = folder.with_suffix(".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        for entry in folder.iterdir():
            tar.add(entry, arcname=entry.name)
    return archive


@pytest.fixture
def models(tmp_path):
    pre = _folder(tmp_path / "pre", {"features.json": {"output_columns": ["a", "b", "c"], "fingerprint": "f1"}})
    return {
        "pre": _archive(pre),
        "fits": _archive(_folder(tmp_path / "fits", {"xgboost-meta.json": {"num_features": 3,
                                                                           "features_fingerprint": None}})),
        "wider": _folder(tmp_path / "wider", {"xgboost-meta.json": {"num_features": 4, "features_fingerprint": None}}),
        "other": _folder(tmp_path / "other", {"xgboost-meta.json": {"num_features": 3,
                                                                    "features_fingerprint": "f2"}}),
        "old": _folder(tmp_path / "old", {"xgboost-meta.json": {"objective": "binary:logistic"}}),
    }


def _read(*paths: Path) -> list[ModelFiles]:
    return [ModelFiles.read(path, f"model {i}") for i, path in enumerate(paths, start=1)]


def test_the_width_is_checked_without_a_fingerprint(models):
    assert check_pipeline(_read(models["pre"], models["fits"])) == ["model 1 -> model 2: width 3 match"]
    with pytest.raises(PipelineMismatchError, match=r"model 2 was trained on rows of 4 features \(xgboost-meta.json "
                                                    r"num_features\), but model 1 answers rows of 3"):
        check_pipeline(_read(models["pre"], models["wider"]))


def test_a_pytorch_model_of_another_width_is_refused(tmp_path, models):
    """The PyTorch image's example records its width as every model image does (``num_features``)."""
    torch_model = _folder(tmp_path / "torch", {"pytorch-meta.json": {"num_features": 5}})
    with pytest.raises(PipelineMismatchError, match=r"rows of 5 features \(pytorch-meta.json num_features\)"):
        check_pipeline(_read(models["pre"], torch_model))


def test_a_fingerprint_that_differs_is_refused(models):
    with pytest.raises(PipelineMismatchError, match=r"fingerprint f2 .* fingerprint f1"):
        check_pipeline(_read(models["pre"], models["other"]))


def test_a_stage_writing_the_label_first_answers_one_column_more(models):
    pre, fits = _read(models["pre"], models["fits"])
    labelled = ModelFiles(pre.label, pre.features, pre.metas, {"SMKIT_OUTPUT_LABEL": "true"})
    with pytest.raises(PipelineMismatchError, match=r"answers rows of 4 \(.*SMKIT_OUTPUT_LABEL=true\)"):
        check_pipeline([labelled, fits])


def test_models_that_record_nothing_are_reported_as_not_checked(models):
    assert check_pipeline(_read(models["pre"], models["old"])) == [
        "model 1 -> model 2: not checked (no features.json before, or no width or fingerprint recorded in the "
        "model's *-meta.json)"]


def test_the_command_line_exit_status(models, capsys):
    assert main([str(models["pre"]), str(models["fits"])]) == 0
    assert "width 3 match" in capsys.readouterr().out
    assert main([str(models["pre"]), str(models["wider"])]) == 1
    assert "pipeline refused" in capsys.readouterr().err
    assert main([str(models["pre"]), str(models["pre"].with_name("missing.tar.gz"))]) == 2
    assert main(["--output-label", str(models["pre"]), str(models["fits"])]) == 1
