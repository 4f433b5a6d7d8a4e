"""How crossfuse's cost grows with rows: inspect, embed, one cached epoch, predict, DDP.

For each N (default 1k, 10k, 100k rows) a table of image (a distinct PNG per row),
audio (reused AV-MNIST clips), a numeric column and the digit label is built once
under --work (see scaling_data.py), then each step runs in its own process and its
wall time and peak resident memory (RSS) are recorded:

  inspect  `crossfuse inspect TABLE --label label --json`
  embed    FusionPredictor.precompute into an empty cache (frozen image-cnn, audio-cnn-gru)
  train    FusionPredictor.fit(epochs=1) reading the frozen inputs from that cache, + save
  predict  `crossfuse predict MODEL --data TABLE --out preds.csv --chunk-rows 5000`
  ddp      `crossfuse train --devices {1,2} --strategy ddp --epochs 2` on --ddp-rows rows

Peak RSS of inspect/embed/train/predict: a fresh intermediate Python process runs the
step and reads getrusage(RUSAGE_CHILDREN).ru_maxrss once it has ended, so each number
is that step's own maximum (see scaling_measure.py). DDP ranks are separate processes,
so for ddp the process tree's RSS is summed every 50 ms with psutil (shared pages count
once per process). Steps run with OMP_NUM_THREADS=1 unless --threads says otherwise;
inspect on the smallest table is also timed with torch's default threads, and embed
with the `pretrained` preset's EfficientNet-Lite0 (--skip-efficientnet). Writes
results/scaling.{json,md}.

    python benchmarks/scaling.py [--rows 1000,10000,100000] [--work /tmp/scaling] [--skip-ddp]
    python benchmarks/scaling.py --ddp-only # add the DDP step to an existing scaling.json
    python benchmarks/scaling.py --render   # rewrite scaling.md from scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from av_mnist import shared_data  # noqa: E402
from common import RESULTS, machine, write_results  # noqa: E402
from scaling_data import build_table, write_recipe  # noqa: E402
from scaling_measure import THREAD_VARS, Runner, StepFailed, cli, py, tree_measured  # noqa: E402
from scaling_report import ddp_section, markdown  # noqa: E402

CHUNK_ROWS = 5000
_EMBED = """
import json, sys
from crossfuse.api import FusionPredictor
from crossfuse.recipe import load_recipe
predictor = FusionPredictor("label", config=load_recipe(sys.argv[1]).config, progress=False)
print(json.dumps(predictor.precompute(sys.argv[2], seed=0)))
"""
_TRAIN = """
import json, sys
from crossfuse.api import FusionPredictor
from crossfuse.recipe import load_recipe
predictor = FusionPredictor("label", config=load_recipe(sys.argv[1]).config, progress=False)
predictor.fit(sys.argv[2], epochs=1, seed=0).save(sys.argv[3])
summary = {k: v for k, v in predictor.fit_summary_.items() if k != "history"}
summary["valid_accuracy"] = predictor.metrics_["valid"]["tasks"]["label"]["accuracy"]
print(json.dumps(summary))
"""


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def run_rows(table: Path, recipe: Path, cache: Path, run: Runner) -> dict[str, Any]:
    """Measure the four steps on one table; the embedding cache starts empty."""
    runs, rows = table.parent / "runs", int(table.parent.name[1:])
    model, preds = runs / "model", runs / "preds.csv"
    out: dict[str, Any] = {}
    step, text = run(cli("inspect", table, "--label", "label", "--json"), "inspect")
    out["inspect"] = {**step, "rows_seen": json.loads(text)["rows"]}
    empty_cache = lambda: shutil.rmtree(cache, ignore_errors=True)  # noqa: E731
    step, text = run(py(_EMBED, recipe, table), "embed", before=empty_cache)
    out["embed"] = {**step, "cache": last_json(text)}
    no_model = lambda: shutil.rmtree(model, ignore_errors=True)  # noqa: E731
    step, text = run(py(_TRAIN, recipe, table, model), "train", before=no_model)
    out["train"] = {**step, "fit_summary": last_json(text)}
    cmd = cli("predict", model, "--data", table, "--out", preds, "--chunk-rows", CHUNK_ROWS)
    step, _ = run(cmd, "predict")
    with preds.open() as f:
        written = sum(1 for _ in f) - 1
    if written != rows:
        sys.exit(f"predict wrote {written} rows for a {rows}-row table ({table})")
    out["predict"] = {**step, "rows_written": written}
    return out


def run_efficientnet(table: Path, run: Runner, batch_size: int) -> dict[str, Any]:
    """The embed step with the `pretrained` preset's EfficientNet-Lite0 as the image encoder."""
    folder = table.parent / "runs" / "efficientnet"
    recipe = write_recipe(folder, folder / "cache", batch_size=batch_size, efficientnet=True)
    empty_cache = lambda: shutil.rmtree(folder / "cache", ignore_errors=True)  # noqa: E731
    step, text = run(py(_EMBED, recipe, table), "embed_efficientnet", before=empty_cache)
    return {"rows": int(table.parent.name[1:]), **step, "cache": last_json(text)}


def run_ddp(table: Path, recipe: Path, run: Runner) -> dict[str, Any]:
    """`crossfuse train --devices {1,2} --strategy ddp` on a table whose cache is filled."""
    runs = table.parent / "runs"
    # Unmeasured: make sure the frozen inputs are cached, so both runs train from the cache.
    subprocess.run(py(_EMBED, recipe, table), check=True, capture_output=True, env=run.env)
    out = {}
    for devices in (1, 2):
        model = runs / f"ddp{devices}"
        shutil.rmtree(model, ignore_errors=True)
        flags = ("--label", "label", "--epochs", 2, "--strategy", "ddp", "--no-progress")
        cmd = cli(
            "train", "-c", recipe, "--train", table, *flags, "--devices", devices, "--out", model
        )
        step = tree_measured(cmd, f"ddp{devices}", run)
        metrics = json.loads((model / "metrics.json").read_text())
        step["valid_accuracy"] = metrics["valid"]["tasks"]["label"]["accuracy"]
        summary = json.loads((model / "crossfuse.json").read_text())["fit_summary"]
        step["epoch_seconds"] = summary["epoch_seconds"]  # training + validation, per epoch
        out[str(devices)] = step
        print(f"ddp devices={devices}: {step}", flush=True)
    return out


def parse_rows(text: str) -> list[int]:
    try:
        rows = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rows must be integers like 1000,10000, got {text!r}"
        ) from None
    if not rows or rows[0] < 100:
        raise argparse.ArgumentTypeError(f"--rows needs values of at least 100, got {text!r}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=parse_rows,
        default=[1000, 10000, 100000],
        help="comma-separated table sizes (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/scaling"),
        help="media, tables, caches and models (reused between runs)",
    )
    parser.add_argument("--skip-ddp", action="store_true", help="do not run the DDP step")
    parser.add_argument("--ddp-rows", type=int, default=10000, help="table size of the DDP step")
    parser.add_argument(
        "--ddp-only",
        action="store_true",
        help="run only the DDP step and add it to the existing results/scaling.json",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per step")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per step; the fastest is reported"
    )
    parser.add_argument(
        "--skip-efficientnet",
        action="store_true",
        help="do not time the embed step with EfficientNet-Lite0 on the smallest table",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite results/scaling.md from results/scaling.json (no measuring)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of every step, i.e. torch's intra-op threads (0: leave unset)",
    )
    args = parser.parse_args()
    if args.render:
        payload = json.loads((RESULTS / "scaling.json").read_text())
        (RESULTS / "scaling.md").write_text(markdown(payload, payload["machine"]))
        print(f"wrote {RESULTS / 'scaling.md'}")
        return
    started, work, shared = time.perf_counter(), args.work.resolve(), shared_data().resolve()
    if not (shared / "mnist").is_dir() or not (shared / "fsdd").is_dir():
        sys.exit(f"shared data not found at {shared} (mnist, fsdd); set CROSSFUSE_DATA")
    payload: dict[str, Any] = {
        "rows": args.rows,
        "work": str(work),
        "repeats": max(1, args.repeats),
        "step_threads": args.threads or None,
        "cpus": os.cpu_count(),
        "by_rows": {},
    }
    env = dict(os.environ)
    if args.threads:
        env.update(dict.fromkeys(THREAD_VARS, str(args.threads)))
    run = Runner(work / "logs", args.timeout, max(1, args.repeats), env)

    def prepare(n: int) -> tuple[Path, Path]:
        """The n-row table (built once) and its recipe; logs go next to it."""
        table = build_table(work, n, shared=shared)
        run.logs = table.parent / "runs" / "logs"
        cache = table.parent / "runs" / "cache"
        return table, write_recipe(table.parent, cache, batch_size=args.batch_size)

    def ddp() -> dict[str, Any]:
        """The DDP step's record; a failure (e.g. flags missing) is recorded, not raised."""
        table, recipe = prepare(args.ddp_rows)
        out: dict[str, Any] = {"rows": args.ddp_rows, "epochs": 2}
        try:
            out["devices"] = run_ddp(table, recipe, run)
        except StepFailed as e:
            out["error"] = str(e)
        return out

    if args.ddp_only:
        payload = json.loads((RESULTS / "scaling.json").read_text())
        payload["ddp"] = ddp()
        payload["ddp_seconds"] = round(time.perf_counter() - started, 1)
        write_results("scaling", payload, markdown(payload, payload["machine"]))
        print(ddp_section(payload["ddp"]))
        sys.exit(payload["ddp"].get("error"))
    payload["baseline"] = run(cli("--help"), "baseline")[0]

    for n in args.rows:
        t = time.perf_counter()
        table, recipe = prepare(n)
        print(f"table of {n} rows ready in {time.perf_counter() - t:.1f} s: {table}", flush=True)
        payload["by_rows"][str(n)] = run_rows(table, recipe, table.parent / "runs" / "cache", run)
        print(f"{n} rows: {json.dumps(payload['by_rows'][str(n)])}", flush=True)
    payload["recipe"] = yaml.safe_load(recipe.read_text())
    payload["recipe"]["train"]["cache_dir"] = "WORK/n{N}/runs/cache"
    table, _ = prepare(args.rows[0])
    if args.threads:  # the same inspect with torch's default threads, for comparison
        unset = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        default = Runner(run.logs, args.timeout, run.repeats, unset)
        cmd = cli("inspect", table, "--label", "label", "--json")
        step = default(cmd, "inspect_default_threads")[0]
        payload["default_threads_inspect"] = {"rows": args.rows[0], **step}
    if not args.skip_efficientnet:
        payload["efficientnet_embed"] = run_efficientnet(table, run, args.batch_size)
    payload["ddp"] = None if args.skip_ddp else ddp()
    payload["total_seconds"] = round(time.perf_counter() - started, 1)
    md = markdown(payload, machine())
    json_path, md_path = write_results("scaling", payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path} in {payload['total_seconds']:.0f} s")
    sys.exit((payload["ddp"] or {}).get("error"))  # a failed DDP step fails the run


if __name__ == "__main__":
    main()
