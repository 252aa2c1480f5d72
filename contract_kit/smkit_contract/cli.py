"""``smkit-contract IMAGE ...``: check an image against the SageMaker container contract.

Exit status: 0 when every rule of the "sagemaker" level passes (or is skipped), 1 when one fails, 2 when
the kit could not run (bad arguments, no docker, no such image). "smkit" rules never change it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from smkit_contract import __version__, report
from smkit_contract.docker_cli import DockerError, image_labels
from smkit_contract.media import parse_media_type
from smkit_contract.rules import LEVELS, RULES, SAGEMAKER, SMKIT, Results
from smkit_contract.serving import Payload, ServeOptions, ServingChecks
from smkit_contract.training import Channel, TrainingChecks, TrainOptions, make_workspace


class UsageError(Exception):
    pass


def _payload(value: str) -> Payload:
    path, colon, content_type = value.rpartition(":")
    if not colon or not path:
        raise UsageError(f"--payload {value!r}: expected FILE:CONTENT_TYPE")
    try:
        parse_media_type(content_type)
        return Payload(Path(path).read_bytes(), content_type.strip(), Path(path).name)
    except ValueError as exc:
        raise UsageError(f"--payload {value!r}: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"--payload {value!r}: {exc.strerror}") from exc


def _channel(value: str) -> Channel:
    name, equals, rest = value.partition("=")
    if not equals or not name or not rest:
        raise UsageError(f"--train-channel {value!r}: expected NAME=DIR or NAME=DIR:CONTENT_TYPE")
    path, content_type = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and "/" in tail and not tail.startswith("/"):  # DIR:type/subtype (a path's colon is left alone)
        path, content_type = head, tail
    if not Path(path).is_dir():
        raise UsageError(f"--train-channel {value!r}: {path} is not a directory")
    return Channel(name, Path(path), content_type)


def _env(value: str) -> tuple[str, str]:
    name, equals, setting = value.partition("=")
    if not equals or not name:
        raise UsageError(f"--env {value!r}: expected NAME=VALUE")
    return name, setting


def _hyperparameters(value: str | None, option: str) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        parsed = json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{option}: not a JSON object or @file holding one ({exc})") from exc
    if not isinstance(parsed, dict):
        raise UsageError(f"{option}: expected a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smkit-contract",
        description="Check that a Docker image honours the Amazon SageMaker container contract "
                    "(`docker run IMAGE serve` and `docker run IMAGE train`). Needs the docker CLI.",
        epilog="Exit status: 0 every sagemaker-level rule passed, 1 one failed, 2 the kit could not run.")
    p.add_argument("image", help="the image to check (local, e.g. my-model:1.0)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for every container the kit starts (repeatable); the kit's "
                        "own SAGEMAKER_* settings win over it")
    serve = p.add_argument_group("serve")
    serve.add_argument("--model-dir", type=Path, help="a model folder to mount at /opt/ml/model (default: the "
                       "model the training check writes)")
    serve.add_argument("--payload", action="append", default=[], metavar="FILE:CONTENT_TYPE",
                       help="a valid request body and its Content-Type (repeatable; the first one is used for "
                            "the error checks)")
    serve.add_argument("--accept", action="append", default=[], metavar="TYPE",
                       help="a response type the image produces (repeatable); the last one is set as "
                            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")
    serve.add_argument("--bad-payload", action="append", default=[], metavar="FILE:CONTENT_TYPE",
                       help="a body the image must refuse with a 4xx (repeatable; JSON and NPY ones are built in)")
    train = p.add_argument_group("train")
    train.add_argument("--train-channel", action="append", default=[], metavar="NAME=DIR[:CONTENT_TYPE]",
                       help="a channel's files (copied to /opt/ml/input/data/NAME) and optional ContentType")
    train.add_argument("--hyperparameters", metavar="JSON|@FILE", help="hyperparameters.json for the good job")
    train.add_argument("--bad-hyperparameters", metavar="JSON|@FILE",
                       help="hyperparameters the image must refuse (default: the good ones plus an unknown name)")
    out = p.add_argument_group("output")
    out.add_argument("--level", choices=LEVELS, default=SAGEMAKER,
                     help="sagemaker: the contract only (default); smkit: also this project's conventions, "
                          "reported separately (they never change the exit status)")
    out.add_argument("--report-json", type=Path, metavar="FILE")
    out.add_argument("--junit", type=Path, metavar="FILE")
    out.add_argument("--explain", action="store_true", help="say what SageMaker does and the fix for every rule, "
                                                            "not only failed ones")
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    timing = p.add_argument_group("timing (seconds)")
    timing.add_argument("--startup-timeout", type=float, default=120, help="for /ping to answer 200 (default 120)")
    timing.add_argument("--no-model-window", type=float, default=10,
                        help="how long a server without a model is watched for a 200 (default 10)")
    timing.add_argument("--stop-timeout", type=float, default=30,
                        help="for the exit after SIGTERM (default 30, SageMaker's)")
    timing.add_argument("--train-timeout", type=float, default=1800, help="per training job (default 1800)")
    p.add_argument("--version", action="version", version=f"smkit-contract {__version__}")
    return p


def _not_checked(results: Results, levels: tuple[str, ...], serve_reason: str, train_reason: str) -> None:
    """Rules of the chosen levels that no check reached are reported as SKIP with the reason."""
    for rule in RULES.values():
        if rule.level in levels and rule.id not in results.items:
            results.skipped(rule.id, train_reason if rule.id.startswith(("train.", "smkit.train")) else serve_reason)


def run(args: argparse.Namespace) -> Results:
    log = (lambda message: None) if args.quiet else (lambda message: print(f"[smkit-contract] {message}",
                                                                           file=sys.stderr, flush=True))
    payloads = [_payload(value) for value in args.payload]
    bad_payloads = [_payload(value) for value in args.bad_payload]
    channels = [_channel(value) for value in args.train_channel]
    env = dict(_env(value) for value in args.env)
    hyperparameters = _hyperparameters(args.hyperparameters, "--hyperparameters") or {}
    bad_hyperparameters = _hyperparameters(args.bad_hyperparameters, "--bad-hyperparameters")
    if not payloads and not channels:
        raise UsageError("nothing to check: give --payload (serve) and/or --train-channel (train)")
    if payloads and args.model_dir is None and not channels:
        raise UsageError("serving needs a model: give --model-dir, or --train-channel to train one")
    if args.model_dir is not None and not args.model_dir.is_dir():
        raise UsageError(f"--model-dir {args.model_dir}: not a directory")
    for accept in args.accept:
        try:
            parse_media_type(accept)
        except ValueError as exc:
            raise UsageError(f"--accept: {exc}") from exc

    smkit = args.level == SMKIT
    levels = (SAGEMAKER, SMKIT) if smkit else (SAGEMAKER,)
    labels = image_labels(args.image)
    results = Results(args.image)
    workspace = make_workspace()
    try:
        model_dir = args.model_dir
        train_reason = "no --train-channel given"
        if channels:
            trained = TrainingChecks(TrainOptions(args.image, channels, hyperparameters, bad_hyperparameters,
                                                  args.train_timeout, smkit, env, log), results, workspace).run()
            if model_dir is None and trained is not None:
                model_dir = trained.model_dir
        serve_reason = "no --payload given"
        if payloads and model_dir is None:
            serve_reason = "no model to serve: training failed and no --model-dir was given"
        elif payloads:
            ServingChecks(ServeOptions(args.image, model_dir, payloads, list(args.accept), bad_payloads, smkit, env,
                                       args.startup_timeout, args.no_model_window, args.stop_timeout, log),
                          results, labels).run()
        _not_checked(results, levels, serve_reason, train_reason)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    print(report.text(results, levels, args.explain))
    if args.report_json:
        args.report_json.write_text(report.to_json(results, levels) + "\n")
    if args.junit:
        args.junit.write_text(report.to_junit(results, levels) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        results = run(args)
    except (UsageError, DockerError) as exc:
        print(f"smkit-contract: {exc}", file=sys.stderr)
        return 2
    return 1 if results.failures(SAGEMAKER) else 0


if __name__ == "__main__":
    sys.exit(main())
