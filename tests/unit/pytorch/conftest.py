"""Make ``pytorch_container`` importable (it lives in containers/pytorch) and build small models for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

_CONTAINER = Path(__file__).resolve().parents[3] / "containers" / "pytorch"
if str(_CONTAINER) not in sys.path:
    sys.path.insert(0, str(_CONTAINER))


WIDTH = 5


class Affine(nn.Module):
    """A model whose output is easy to check by hand: row sums times 2, plus 1."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, 1).to(dtype)
        with torch.no_grad():
            self.linear.weight.fill_(2.0)
            self.linear.bias.fill_(1.0)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.linear(rows).squeeze(-1)


@pytest.fixture
def scripted_dir(tmp_path: Path) -> Path:
    """A model directory as the example training writes it: TorchScript model.pt and pytorch-meta.json."""
    torch.jit.script(Affine()).save(str(tmp_path / "model.pt"))
    (tmp_path / "pytorch-meta.json").write_text(f'{{"num_features": {WIDTH}}}')
    return tmp_path
