"""Run every benchmark script in this folder (what `make bench` does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "dataset_memory.py",
    "demo.py",
    "av_mnist.py",
    "pretrained.py",
    "fusion_zoo.py",
    "scaling.py",
]

if __name__ == "__main__":
    failed = [s for s in SCRIPTS if subprocess.run([sys.executable, str(HERE / s)]).returncode]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
