"""The contract kit (contract_kit/, `smkit-contract`) against every image of ours: both levels pass."""

from __future__ import annotations

import json

import pytest

from local_test.docker_run import OptMl

from kit.runner import run_kit

pytestmark = pytest.mark.docker


def test_the_contract_kit_passes_the_image_at_both_levels(descriptor, image, model_dir, tmp_path):
    data = OptMl(tmp_path / "data")
    descriptor.write_training_data(data)
    args = ["--level", "smkit", "--model-dir", str(model_dir),
            "--hyperparameters", json.dumps(dict(descriptor.hyperparameters))]
    for name, entry in data.channels.items():
        args += ["--train-channel", f"{name}={data.channel_dir(name)}:{entry['ContentType']}"]
    for index, (content_type, body) in enumerate(descriptor.payloads(model_dir).items()):
        path = tmp_path / f"payload-{index}"
        path.write_bytes(body)
        args += ["--payload", f"{path}:{content_type}"]
    for accept in descriptor.accepts:
        args += ["--accept", accept]
    wrong_type, wrong_body = descriptor.wrong_shape(model_dir)
    (tmp_path / "wrong-shape").write_bytes(wrong_body)
    args += ["--bad-payload", f"{tmp_path / 'wrong-shape'}:{wrong_type}"]

    run = run_kit(image, *args, workdir=tmp_path)

    assert run.exit_code == 0, run.output
    assert run.with_status("sagemaker", "FAIL") == set() and run.with_status("smkit", "FAIL") == set(), run.output
    not_applicable = {"smkit.multi-model-refused"} if descriptor.multi_model else {"multi-model.api"}
    assert run.with_status("sagemaker", "SKIP") | run.with_status("smkit", "SKIP") == not_applicable, run.output
