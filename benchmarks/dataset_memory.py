"""Memory of iterating the Dataset over 20,000 rows stays flat.

Builds a 20,000-row table (text, image, audio, numeric, categorical; media files are
shared between rows so the table builds fast), iterates it once through a DataLoader
and samples the process's resident memory (RSS) every 1,000 rows. Writes
results/dataset_memory.{json,md}.

    python benchmarks/dataset_memory.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import soundfile as sf
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.data.dataset import Collator, FusionDataset  # noqa: E402
from crossfuse.data.preprocessor import Preprocessor  # noqa: E402
from crossfuse.data.schema import infer_schema  # noqa: E402
from crossfuse.data.table import read_table  # noqa: E402


def build_table(folder: Path, rows: int, n_media: int = 200) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_media):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"i{i}.png"
        )
        sf.write(folder / f"a{i}.wav", rng.normal(0, 0.1, 8000), 8000, subtype="PCM_16")
    words = np.array(["red", "green", "blue", "small", "large", "round", "square", "soft"])
    df = pd.DataFrame(
        {
            "text": [" ".join(rng.choice(words, 6)) for _ in range(rows)],
            "image": [f"i{i % n_media}.png" for i in range(rows)],
            "audio": [f"a{i % n_media}.wav" for i in range(rows)],
            "x": rng.normal(size=rows),
            "c": rng.choice(["p", "q", "r"], rows),
            "label": rng.choice(["yes", "no"], rows),
        }
    )
    path = folder / "big.csv"
    df.to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        table = read_table(build_table(Path(tmp), args.rows))
        schema = infer_schema(table.df, "label", base_dir=table.base_dir)
        pre = Preprocessor(schema).fit(table)
        loader = DataLoader(FusionDataset(table, pre), batch_size=100, collate_fn=Collator(pre))
        samples, seen, start = [], 0, time.perf_counter()
        for batch in loader:
            seen += len(batch["index"])
            if seen % 1000 == 0:
                samples.append((seen, proc.memory_info().rss / 2**20))
        seconds = time.perf_counter() - start
    first_k = samples[0][1]
    peak = max(m for _, m in samples)
    growth = samples[-1][1] - first_k
    payload = {
        "rows": args.rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(args.rows / seconds, 1),
        "rss_mib_after_1000_rows": round(first_k, 1),
        "rss_mib_peak": round(peak, 1),
        "rss_growth_mib_1000_to_end": round(growth, 1),
        "samples": [{"rows": r, "rss_mib": round(m, 1)} for r, m in samples],
    }
    md = (
        "# Dataset memory while iterating\n\n"
        + md_table(
            ["rows", "RSS after 1k rows (MiB)", "peak RSS (MiB)", "growth 1k→end (MiB)", "rows/s"],
            [
                [
                    args.rows,
                    payload["rss_mib_after_1000_rows"],
                    payload["rss_mib_peak"],
                    payload["rss_growth_mib_1000_to_end"],
                    payload["rows_per_second"],
                ]
            ],
        )
        + "\n\nReproduce: `python benchmarks/dataset_memory.py`\n"
    )
    json_path, md_path = write_results("dataset_memory", payload, md)
    print(md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
