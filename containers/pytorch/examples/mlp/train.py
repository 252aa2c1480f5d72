"""Example training script (script mode): an MLP on the preprocess stage's features.

Input: the ``train`` (and optional ``validation``) channel holds label-first CSV without a header, as the
preprocess image's batch transform writes it (``SMKIT_OUTPUT_LABEL=true``); several files and ``.gz`` are
read. An optional ``features`` channel holds the preprocess model's ``features.json``: its fingerprint is
recorded, so a pipeline refuses to pair this model with a different preprocess model.

Output (``SM_MODEL_DIR``): ``model.pt``, TorchScript returning the probability of the positive class per
row, and ``pytorch-meta.json`` (``num_features``, ``features_fingerprint``): what the PyTorch image serves.

Checkpoints: with ``/opt/ml/checkpoints`` present (SageMaker's ``checkpoint_s3_uri``) or ``--checkpoint-dir``,
every epoch is saved there and a restarted job resumes after the last saved epoch.

Several processes (``torchrun``, e.g. SageMaker's ``torch_distributed``): DistributedDataParallel, gloo on
CPU and NCCL on GPU; each process trains on its share of the rows, the first one writes the model.

Run it directly: ``python train.py --train DIR --model-dir OUT [--epochs 20 ...]``; hyperparameters arrive
as SageMaker's script mode passes them (``--learning_rate 0.01``; dashes work too). Needs torch and numpy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

CHECKPOINT_FILE = "mlp-checkpoint.pt"
DEFAULT_CHECKPOINTS = "/opt/ml/checkpoints"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--learning_rate", "--learning-rate", dest="learning_rate", type=float, default=0.01)
    parser.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    # How long a collective (gradient all-reduce) may wait for the other processes: a lost host then fails
    # the job instead of hanging it (torch's default is 30 minutes; torchrun does not watch other hosts).
    parser.add_argument("--dist_timeout", "--dist-timeout", dest="dist_timeout", type=float, default=60.0)
    parser.add_argument("--model-dir", "--model_dir", dest="model_dir", default=env.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=env.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=env.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--features", default=env.get("SM_CHANNEL_FEATURES"))
    parser.add_argument("--checkpoint-dir", "--checkpoint_dir", dest="checkpoint_dir",
                        default=DEFAULT_CHECKPOINTS if Path(DEFAULT_CHECKPOINTS).is_dir() else None)
    args = parser.parse_args(argv)
    if not args.train or not args.model_dir:
        parser.error("--train and --model-dir are required (or SM_CHANNEL_TRAIN and SM_MODEL_DIR)")
    return args


def data_files(folder: str) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                   and not p.name.endswith(".crc"))
    if not files:
        raise SystemExit(f"no data files in {folder}")
    return files


def read_labelled_csv(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of every label-first CSV file in ``folder``, as float32."""
    parts = []
    for path in data_files(folder):
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as handle:
            rows = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
        if rows.size:
            parts.append(rows)
    if not parts:
        raise SystemExit(f"no rows in {folder}")
    widths = {part.shape[1] for part in parts}
    if len(widths) != 1:
        raise SystemExit(f"the files of {folder} have different numbers of columns: {sorted(widths)}")
    data = np.concatenate(parts)
    if not np.isfinite(data).all():
        raise SystemExit(f"{folder} holds missing or non-finite values: the MLP needs complete rows")
    return data[:, 1:].astype(np.float32), data[:, 0].astype(np.float32)


class MLP(nn.Module):
    """One hidden layer; ``forward`` returns logits (the training loss takes logits)."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.net(rows).squeeze(-1)


class Probability(nn.Module):
    """What is served: the probability of the positive class, one value per row."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(rows))


def distributed(timeout_s: float) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(seconds=timeout_s))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def save_atomically(obj: object, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world = distributed(args.dist_timeout)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    features, labels = read_labelled_csv(args.train)
    # Every process reads all rows and trains on its own share: together they see each row once per epoch.
    features, labels = torch.from_numpy(features[rank::world]), torch.from_numpy(labels[rank::world])
    width = features.shape[1]
    mlp = MLP(width, args.hidden).to(device)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=args.learning_rate)
    start = 0
    checkpoint = Path(args.checkpoint_dir) / CHECKPOINT_FILE if args.checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device)
        if state["num_features"] != width:
            raise SystemExit(f"{checkpoint} is for {state['num_features']} features, the data has {width}")
        mlp.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
        print(f"resuming from {checkpoint} after epoch {state['epoch']}", flush=True)
    model = nn.parallel.DistributedDataParallel(mlp) if world > 1 else mlp
    loss_fn = nn.BCEWithLogitsLoss()
    validation = read_labelled_csv(args.validation) if args.validation else None
    for epoch in range(start, args.epochs):
        generator = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        order = torch.randperm(len(labels), generator=generator)
        model.train()
        total = 0.0
        for begin in range(0, len(order), args.batch_size):
            batch = order[begin:begin + args.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(features[batch].to(device)), labels[batch].to(device))
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        line = f"epoch {epoch}: train_loss={total / len(order):.6f}"
        if validation is not None:
            with torch.inference_mode():
                mlp.eval()
                logits = mlp(torch.from_numpy(validation[0]).to(device))
                line += f" validation_loss={loss_fn(logits, torch.from_numpy(validation[1]).to(device)).item():.6f}"
        if rank == 0:
            print(line, flush=True)
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                save_atomically({"epoch": epoch, "num_features": width, "model": mlp.state_dict(),
                                 "optimizer": optimizer.state_dict()}, checkpoint)
    if rank == 0:
        save_model(mlp, width, args)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def save_model(mlp: MLP, width: int, args: argparse.Namespace) -> None:
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Probability(mlp.cpu()).eval()).save(str(model_dir / "model.pt"))
    fingerprint = None
    if args.features:
        features_json = Path(args.features) / "features.json"
        if features_json.is_file():
            fingerprint = json.loads(features_json.read_text()).get("fingerprint")
    meta = {"num_features": width, "features_fingerprint": fingerprint, "torch_version": torch.__version__}
    (model_dir / "pytorch-meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"saved {model_dir / 'model.pt'} ({width} inputs)", flush=True)


if __name__ == "__main__":
    main()
