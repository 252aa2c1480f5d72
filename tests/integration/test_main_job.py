"""The README's main job (./run.sh runs local_test.run_pipeline) end to end, on a small dataset."""

from __future__ import annotations

import json
import subprocess
import sys

from local_test.docker_run import ROOT


def test_the_main_job_trains_deploys_scores_and_writes_the_report(image_of, tmp_path):
    image_of("preprocess")
    image_of("xgboost")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "local_test.run_pipeline", "--orders", "6000", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    for step in range(1, 9):
        assert f"[{step}/8]" in result.stdout
    assert "-> default risk 0." in result.stdout  # live orders scored through the pipeline's one port
    assert "a broken order: 400 from stage 1" in result.stdout
    numbers = json.loads((out / "model_comparison.json").read_text())
    assert numbers["data"]["rows"] == 1200 and set(numbers["models"]) == {"last week", "this week"}
    html = (out / "model_comparison.html").read_text()
    assert numbers["verdict"]["label"] in ("better", "worse", "no clear difference")
    assert numbers["verdict"]["sentence"].split(":")[-1].strip()[:30] in html  # the verdict heads the report
    assert numbers["verdict"]["sentence"] in result.stdout
    assert "data:image/png;base64," in html
