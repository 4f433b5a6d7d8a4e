"""The demo's comparison (each modality alone vs. the fusions) as a benchmark.

Runs exactly what `make demo` runs (crossfuse.demo.run_demo) in a temporary folder and
writes results/demo.{json,md}.

    python benchmarks/demo.py [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.demo import DEMO_CONFIG, run_demo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_demo(Path(tmp), seed=args.seed, progress=False)
    total = time.perf_counter() - start
    rows = [[r.name, f"{r.accuracy:.3f}", f"{r.f1_macro:.3f}", f"{r.train_seconds:.1f}"]
            for r in runs]
    md = (
        f"# Demo: each modality alone vs. fused (test split, seed {args.seed})\n\n"
        + md_table(["model", "accuracy", "macro-F1", "train s"], rows)
        + f"\n\nWhole demo (data + 7 models): {total:.0f} s. Reproduce: `python benchmarks/demo.py`"
        " (or `make demo`).\n"
    )
    payload = {"seed": args.seed, "config": DEMO_CONFIG, "total_seconds": round(total, 1),
               "runs": [r.__dict__ | {"model_dir": None} for r in runs]}
    write_results("demo", payload, md)
    print(md)


if __name__ == "__main__":
    main()
