"""The preprocess image at several git revisions, side by side in one run: the handler's request path in
process (less sensitive to a busy machine), then each revision's image under load.

1. **in process**: each revision's ``serving_common`` and ``preprocess_container`` (``git archive``) are
   imported into this one process, each under its own module table (swapped in ``sys.modules`` around every
   call into it). Each fits a model on the same 5000 synthetic orders (flattened, label ``default``, drop
   ``order_id``: the image's training) with its own code, saves it and loads it through its handler's
   ``load``. Then, interleaved over ``--rounds`` rounds (revision after revision in each round, so a busy
   spell hits all alike), the whole request path of the handler (JSON body -> ``decode`` -> ``predict`` ->
   CSV ``encode``) runs for ``--seconds`` of this process's CPU time on a single-record and on a 100-record
   body. Printed: the median over rounds of records per CPU second and CPU µs per request, and the ratio to
   the first revision. Every revision's CSV
   answer must be byte for byte the first one's (else the script stops: the figures would compare
   different work); bad records are refused by every revision that checks records (printed).
2. **images** (unless ``--in-process-only``): each revision's image is built from a ``git worktree`` of it by
   its own ``build.sh`` as ``<prefix>rev-<sha>-preprocess`` (kept: a second run reuses it; ``--rebuild``
   builds again), trained through its ``train`` entry on the same orders, served with 2 workers (host
   network, as ``preprocess_image.py``) and loaded with ``wrk``: single-record and 100-record requests closed
   loop, single records paced at ``--rate``. Revisions take turns for each load, ``--rounds-images`` times.

    .venv/bin/python bench/preprocess_revisions.py [REV ...] [--rounds 7] [--seconds 1] [--in-process-only]
                                                   [--duration 5] [--rate 1000] [--rounds-images 1]

``REV`` defaults to ``35e1f12 main HEAD`` (before the record checks, main, this branch); ``WORKTREE`` names
the checkout's uncommitted files (in process only). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import ROOT, Payload, Result, exit_on_sigterm, run_wrk, step, table

from local_test.orders import make_orders

DEFAULT_REVISIONS = ("35e1f12", "main", "HEAD")
WORKTREE = "WORKTREE"
#: the packages a revision brings (each imported from its own archive; everything else is shared)
OWN_PACKAGES = ("serving_common", "preprocess_container")
TRAIN_ORDERS = 5000
BATCH = 100


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def short_sha(revision: str) -> str:
    return WORKTREE if revision == WORKTREE else git("rev-parse", "--short=7", revision + "^{commit}")


# -- one process, several revisions ---------------------------------------------------------------------


def _own(name: str) -> bool:
    return name.split(".", 1)[0] in OWN_PACKAGES


@dataclass
class Revision:
    """One revision's packages, imported under their usual names into a module table of its own."""

    name: str  # as given (35e1f12, main, HEAD, WORKTREE)
    sha: str
    paths: list[str]  # sys.path entries holding its serving_common and preprocess_container
    modules: dict[str, Any] = field(default_factory=dict)
    handler: Any = None
    model: Any = None
    context: Any = None
    media_type: Any = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Its modules in ``sys.modules`` (and its folders first on ``sys.path``) for the duration."""
        others = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _own(n)]}
        saved_path = sys.path[:]
        sys.modules.update(self.modules)
        sys.path[:0] = self.paths
        try:
            yield
        finally:
            self.modules = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _own(n)]}
            sys.modules.update(others)
            sys.path[:] = saved_path

    def load(self, orders: list[dict[str, Any]], model_dir: Path) -> None:
        """Fit, save and load (through the handler) a model with this revision's own code."""
        import importlib

        with self.active():
            def first(*names: str) -> Any:
                for name in names:
                    try:
                        return importlib.import_module(name)
                    except ModuleNotFoundError:
                        continue
                raise ModuleNotFoundError(f"{self.name}: none of {names}")

            records = first("serving_common.features.records", "preprocess_container.records")
            spec = first("serving_common.features.spec", "preprocess_container.spec")
            features = first("serving_common.features.features", "preprocess_container.features")
            handler_module = importlib.import_module("preprocess_container.handler")
            content_types = importlib.import_module("serving_common.content_types")
            handler_base = importlib.import_module("serving_common.handler")
            flat = [records.flatten(order) for order in orders]
            fitted = features.FittedFeatures.fit(flat, spec.infer_spec(flat, label="default", drop=["order_id"]))
            fitted.save(model_dir)
            self.handler = handler_module.PreprocessHandler()
            self.model = self.handler.load(model_dir)
            self.context = handler_base.RequestContext("bench", content_types.JSON, content_types.CSV)
            self.media_type = content_types.parse(content_types.JSON)
            loaded = Path(handler_module.__file__).resolve()
            if not any(loaded.is_relative_to(Path(path).resolve()) for path in self.paths):
                raise RuntimeError(f"{self.name}: imported {loaded}, not its own copy")

    def request(self, body: bytes) -> bytes:
        """The handler's whole request path, as the server calls it (JSON in, CSV out)."""
        handler, context = self.handler, self.context
        data = handler.decode(body, self.media_type, context)
        return handler.encode(handler.predict(self.model, data, context), context.accept, context)

    def refusal(self, body: bytes) -> str:
        with self.active():
            try:
                self.request(body)
            except Exception as exc:  # each revision has its own BadRequest class
                return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        return "accepted"


def materialize(revision: str, work: Path) -> Revision:
    """``revision``'s serving_common and preprocess_container, extracted under ``work`` (WORKTREE: the checkout)."""
    if revision == WORKTREE:
        return Revision(revision, WORKTREE, [str(ROOT), str(ROOT / "containers" / "preprocess")])
    sha = short_sha(revision)
    folder = work / f"rev-{sha}"
    if not folder.exists():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "serving_common",
                                  "containers/preprocess"], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
    return Revision(revision, sha, [str(folder), str(folder / "containers" / "preprocess")])


def rate(revision: Revision, body: bytes, seconds: float) -> float:
    """Requests per CPU second of ``revision.request(body)`` over about ``seconds`` of this process's CPU time
    (CPU time, not wall time: on a shared machine, time spent waiting for a core does not count)."""
    request = revision.request
    with revision.active():
        count, begin = 0, time.process_time()
        deadline = begin + seconds
        while True:
            for _ in range(20):
                request(body)
            count += 20
            now = time.process_time()
            if now >= deadline:
                return count / (now - begin)


def stages(revision: Revision, body: bytes) -> list[float]:
    """CPU µs of the handler's decode, predict and encode of ``body`` (best of 5 x 50)."""
    handler, context, model = revision.handler, revision.context, revision.model
    with revision.active():
        data = handler.decode(body, revision.media_type, context)
        prediction = handler.predict(model, data, context)
        calls = [lambda: handler.decode(body, revision.media_type, context),
                 lambda: handler.predict(model, data, context),
                 lambda: handler.encode(prediction, context.accept, context)]
        return [min(timeit.Timer(call, timer=time.process_time).repeat(number=50, repeat=5)) / 50 * 1e6
                for call in calls]


def bodies() -> tuple[bytes, bytes]:
    """The single-record and the 100-record JSON body (the orders preprocess_image.py sends)."""
    live = make_orders(BATCH, seed=7)
    for order in live:
        order.pop("default")
    return json.dumps(live[0]).encode(), json.dumps(live).encode()


def bad_batches(batch: list[dict[str, Any]]) -> dict[str, bytes]:
    """100-record bodies of one shape with one bad record in the middle (every revision that checks refuses)."""
    middle = len(batch) // 2
    bad = {"{} at 50": {}, "customer a string at 50": {**batch[middle], "customer": "abc"},
           "amount an object at 50": {**batch[middle], "amount": {"value": 3}}}
    return {what: json.dumps([*batch[:middle], record, *batch[middle + 1:]]).encode() for what, record in bad.items()}


def in_process(revisions: list[Revision], rounds: int, seconds: float, profile: str | None) -> None:
    single, batch = bodies()
    step(f"in process: the handler's request path, {rounds} rounds x {seconds:g} s per revision and body")
    answers = {}
    for revision in revisions:
        with revision.active():
            # newer encoders end the CSV with a newline: that alone is not a different answer
            answers[revision.name] = (revision.request(single).rstrip(b"\n"), revision.request(batch).rstrip(b"\n"))
    reference = answers[revisions[0].name]
    for name, answer in answers.items():
        if answer != reference:
            raise SystemExit(f"{name} answers differently from {revisions[0].name}: the figures would not compare")
    print(f"    every revision's CSV answer is byte for byte {revisions[0].name}'s (up to a final newline)")
    for what, body in bad_batches(json.loads(batch)).items():
        print(f"    bad record ({what}): " + "; ".join(f"{r.name}: {r.refusal(body)[:70]}" for r in revisions))
    figures: dict[tuple[str, int], list[float]] = {}
    for round_ in range(rounds):
        for records, body in ((1, single), (BATCH, batch)):
            for revision in revisions:
                figures.setdefault((revision.name, records), []).append(rate(revision, body, seconds))
        print(f"    round {round_ + 1}/{rounds} done", flush=True)
    rows = []
    for records in (1, BATCH):
        base = statistics.median(figures[(revisions[0].name, records)])
        for revision in revisions:
            runs = figures[(revision.name, records)]
            median = statistics.median(runs)
            rows.append([f"{records} record{'s' if records > 1 else ''}", f"{revision.name} ({revision.sha})",
                         f"{median * records:,.0f}", f"{1e6 / median:,.0f}",
                         f"{min(runs) * records:,.0f}-{max(runs) * records:,.0f}", f"{median / base:.2f}x"])
    print("\nIn process, per CPU second of this process: the handler's request path (decode, predict, encode CSV), "
          f"median of {rounds} rounds")
    print(table(["request", "revision", "records/s", "µs/request", "range records/s",
                 f"vs {revisions[0].name}"], rows))
    step(f"where a {BATCH}-record request's CPU time goes (best of 5 x 50 requests, µs)")
    rows = []
    for revision in revisions:
        rows.append([f"{revision.name} ({revision.sha})", *(f"{part:,.0f}" for part in stages(revision, batch))])
    print(table(["revision", "decode", "predict", "encode (CSV)"], rows))
    if profile:
        chosen = next(r for r in revisions if profile in (r.name, r.sha))
        profiler = cProfile.Profile()
        with chosen.active():
            profiler.enable()
            for _ in range(500):
                chosen.request(batch)
            profiler.disable()
        print(f"\nProfile of {chosen.name}, 500 requests of {BATCH} records (internal time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


# -- the images ----------------------------------------------------------------------------------------


def image_tag(sha: str) -> str:
    prefix = os.environ.get("IMAGE_PREFIX", "smkit-")
    version = (ROOT / "VERSION").read_text().strip()
    return f"{prefix}rev-{sha}-preprocess:{version}"


def build_image(client: Any, revision: Revision, work: Path, rebuild: bool) -> str:
    """The revision's preprocess image, built by its own build.sh from a temporary git worktree."""
    import docker

    prefix = os.environ.get("IMAGE_PREFIX", "smkit-") + f"rev-{revision.sha}-"
    version = git("show", f"{revision.sha}:VERSION").strip()
    tag = f"{prefix}preprocess:{version}"
    if not rebuild:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(tag)
            print(f"    {tag}: built before (--rebuild builds it again)")
            return tag
    tree = work / f"tree-{revision.sha}"
    git("worktree", "add", "--detach", str(tree), revision.sha)
    try:
        step(f"building {tag} from {revision.name} ({revision.sha})")
        subprocess.run(["./build.sh", "preprocess"], cwd=tree, check=True, env={**os.environ, "IMAGE_PREFIX": prefix})
    finally:
        git("worktree", "remove", "--force", str(tree))
    return tag


def images(revisions: list[Revision], work: Path, args: argparse.Namespace) -> None:
    from loadgen import SERVE_ENV, container_meters, start_container

    from local_test.docker_run import OptMl, docker_client, train
    from local_test.orders import write_jsonl

    client = docker_client()
    single_body, batch_body = bodies()
    single = Payload(single_body, "application/json", "text/csv", records=1)
    batch = Payload(batch_body, "application/json", "text/csv", records=BATCH)
    tags = {r.name: build_image(client, r, work, args.rebuild) for r in revisions if r.sha != WORKTREE}
    started: list[Any] = []
    containers = {}
    try:
        answers = {}
        for revision in (r for r in revisions if r.name in tags):
            step(f"training {tags[revision.name]} on {TRAIN_ORDERS} orders, then serving it "
                 f"({SERVE_ENV['SAGEMAKER_MODEL_SERVER_WORKERS']} workers, host network)")
            opt_ml = OptMl(work / f"opt_ml-{revision.sha}", {"label": "default", "drop": "order_id"},
                           {"train": {"ContentType": "application/jsonlines"}})
            write_jsonl(make_orders(TRAIN_ORDERS, seed=42), opt_ml.channel_dir("train") / "orders.jsonl")
            trained = train(client, tags[revision.name], opt_ml)
            if trained.exit_code != 0:
                raise SystemExit(f"training {tags[revision.name]} failed: {opt_ml.failure}\n{trained.logs}")
            container, _, _ = start_container(client, tags[revision.name], opt_ml.model_dir, started)
            containers[revision.name] = container
            answer = container.invoke(batch.body, batch.content_type, batch.accept)
            answer.raise_for_status()
            answers[revision.name] = answer.content.rstrip(b"\n")  # newer encoders end with a newline
        if len(set(answers.values())) > 1:
            raise SystemExit("the images answer the 100-record request differently: the figures would not compare")
        print("    every image's CSV answer to the 100-record request is the same (up to a final newline)")
        loads: list[tuple[str, Callable[[str, Any, Any], Result]]] = [
            ("single record, closed loop", lambda name, url, meters: run_wrk(
                name, url, single, connections=32, duration_s=args.duration, meters=meters)),
            (f"{BATCH} records, closed loop", lambda name, url, meters: run_wrk(
                name, url, batch, connections=32, duration_s=args.duration, meters=meters)),
            (f"single record, paced {args.rate:g}/s", lambda name, url, meters: run_wrk(
                name, url, single, connections=64, duration_s=args.duration, rate=args.rate, meters=meters)),
        ]
        results: dict[tuple[str, str], list[Result]] = {}
        for container in containers.values():
            run_wrk("warm-up", container.url, single, connections=8, duration_s=1)
        for round_ in range(args.rounds_images):
            for load, run in loads:
                step(f"{load} (round {round_ + 1}/{args.rounds_images}), revision after revision")
                for name, container in containers.items():
                    result = run(name, container.url, container_meters(container))
                    print(result.summary(), flush=True)
                    results.setdefault((load, name), []).append(result)
                    time.sleep(0.5)
        report_images(revisions, list(containers), results, [load for load, _ in loads])
    finally:
        for container in started:
            container.remove()


def report_images(revisions: list[Revision], names: list[str], results: dict[tuple[str, str], list[Result]],
                  loads: list[str]) -> None:
    sha = {r.name: r.sha for r in revisions}
    rows = []
    for load in loads:
        base = base_cpu = None
        for name in names:
            runs = results[(load, name)]
            if "paced" in load:
                p99 = statistics.median(r.p99_ms for r in runs if r.p99_ms is not None)
                rows.append([load, f"{name} ({sha[name]})", f"p99 {p99:.2f} ms",
                             f"{statistics.median(r.rps for r in runs):,.0f} req/s", "", ""])
                continue
            rps = statistics.median(r.rps for r in runs)
            records = statistics.median(r.records_per_s for r in runs)
            base = base or records
            cpu = statistics.median(r.cpu_ms_per_request() or 0.0 for r in runs)
            base_cpu = base_cpu or cpu
            rows.append([load, f"{name} ({sha[name]})", f"{rps:,.0f} req/s = {records:,.0f} records/s",
                         f"server CPU {cpu:.3f} ms/request", f"{records / base:.2f}x",
                         f"{base_cpu / cpu:.2f}x" if cpu else ""])
    print("\nImages, 2 workers, wrk on the same cores (median over rounds; on a busy machine the CPU per request "
          "is the steadier figure)")
    print(table(["load", "revision", "throughput / p99", "detail", f"vs {names[0]}", "vs, by CPU/request"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="*", default=list(DEFAULT_REVISIONS), help="git revisions (first = base)")
    parser.add_argument("--rounds", type=int, default=7, help="in-process rounds (default 7)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per in-process figure (default 1)")
    parser.add_argument("--profile", help="also profile this revision's 100-record requests (cProfile)")
    parser.add_argument("--in-process-only", action="store_true", help="skip the images")
    parser.add_argument("--duration", type=int, default=5, help="seconds per image load (default 5)")
    parser.add_argument("--rate", type=float, default=1000, help="paced rate, req/s (default 1000)")
    parser.add_argument("--rounds-images", type=int, default=1, help="rounds of the image loads (default 1)")
    parser.add_argument("--rebuild", action="store_true", help="build the revisions' images even if present")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    try:
        revisions = [materialize(name, work) for name in args.revisions]
        orders = make_orders(TRAIN_ORDERS, seed=42)
        step("fitting a model with each revision's own code: " + ", ".join(f"{r.name} ({r.sha})" for r in revisions))
        for revision in revisions:
            (model_dir := work / f"model-{revision.sha}").mkdir()
            revision.load(orders, model_dir)
        in_process(revisions, args.rounds, args.seconds, args.profile)
        if not args.in_process_only:
            images(revisions, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
