"""AV-MNIST: unimodal image, unimodal audio and each fusion, over several seeds.

Builds AV-MNIST from the shared real data (FSDD + MNIST; see docs/datasets/av-mnist.md)
unless --data points at a built copy, trains every model with configs/av_mnist.yaml,
and reports test accuracy and macro-F1 (mean ± std over seeds) and wall time. Writes
results/av_mnist.{json,md}.

    python benchmarks/av_mnist.py [--seeds 0 1 2] [--data DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import to_dict  # noqa: E402
from crossfuse.data.builtin.av_mnist import build_av_mnist  # noqa: E402
from crossfuse.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = [  # (name, ignored columns, fusion)
    ("image only", {"audio": "ignore"}, "concat"),
    ("audio only", {"image": "ignore"}, "concat"),
    ("weighted fusion", {}, "weighted"),
    ("concat fusion", {}, "concat"),
    ("late fusion", {}, "late"),
]


def shared_data() -> Path:
    return Path(os.environ.get("CROSSFUSE_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, help="an AV-MNIST folder already built")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    recipe = load_recipe(REPO / "configs" / "av_mnist.yaml")
    config = to_dict(recipe.config)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            src = shared_data()
            if not (src / "fsdd").is_dir():
                sys.exit(f"shared data not found at {src}; set CROSSFUSE_DATA")
            data = build_av_mnist(
                Path(tmp) / "av_mnist", fsdd_dir=src / "fsdd", mnist_dir=src / "mnist"
            ).out_dir
        runs = []
        for name, ignored, fusion in MODELS:
            for seed in args.seeds:
                start = time.perf_counter()
                predictor = FusionPredictor(
                    "label", fusion=fusion, config=config, modalities=ignored, progress=False
                )
                predictor.fit(data / "train.csv", data / "valid.csv", seed=seed, epochs=args.epochs)
                m = predictor.evaluate(data / "test.csv")["tasks"]["label"]
                runs.append(
                    {
                        "model": name,
                        "seed": seed,
                        "accuracy": m["accuracy"],
                        "f1_macro": m["f1_macro"],
                        "epochs": predictor.fit_summary_["epochs"],
                        "train_seconds": predictor.fit_summary_["train_seconds"],
                        "wall_seconds": round(time.perf_counter() - start, 1),
                    }
                )
                print(runs[-1], flush=True)
    summary = []
    for name, _, _ in MODELS:
        rows = [r for r in runs if r["model"] == name]
        acc = [r["accuracy"] for r in rows]
        f1 = [r["f1_macro"] for r in rows]
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        summary.append(
            {
                "model": name,
                "accuracy_mean": statistics.mean(acc),
                "accuracy_std": sd(acc),
                "f1_macro_mean": statistics.mean(f1),
                "f1_macro_std": sd(f1),
                "wall_seconds_mean": statistics.mean(r["wall_seconds"] for r in rows),
            }
        )
    md = (
        "# AV-MNIST (test split, 300 rows; "
        f"{len(args.seeds)} seeds: {', '.join(map(str, args.seeds))})\n\n"
        + md_table(
            ["model", "accuracy", "macro-F1", "wall s / run"],
            [
                [
                    s["model"],
                    f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
                    f"{s['f1_macro_mean']:.3f} ± {s['f1_macro_std']:.3f}",
                    f"{s['wall_seconds_mean']:.0f}",
                ]
                for s in summary
            ],
        )
        + "\n\nConfig: `configs/av_mnist.yaml`. Reproduce: `python benchmarks/av_mnist.py`\n"
    )
    write_results("av_mnist", {"config": config, "runs": runs, "summary": summary}, md)
    print(md)


if __name__ == "__main__":
    main()
