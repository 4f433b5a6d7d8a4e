"""From-scratch vs frozen pretrained vs partially fine-tuned encoders.

On AV-MNIST (real MNIST digits + real spoken digits) and MUStARD (sarcasm: utterance,
context, speaker, show), each with a fixed split: test accuracy and macro-F1 (mean ±
std over seeds), the first epoch's time (for frozen encoders this includes filling the
embedding cache) against later epochs, and peak resident memory. Writes
results/pretrained.{json,md}.

    python benchmarks/pretrained.py [--seeds 0 1 2] [--finetune-seeds 0] [--datasets ...]

Partial fine-tuning runs every image/audio through EfficientNet-Lite0 each epoch,
which is slow on a CPU: by default it uses one seed and few epochs on AV-MNIST.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from av_mnist import shared_data  # noqa: E402
from common import md_table, write_results  # noqa: E402

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import to_dict  # noqa: E402
from crossfuse.data.builtin.av_mnist import build_av_mnist  # noqa: E402
from crossfuse.data.builtin.mustard import build_mustard  # noqa: E402
from crossfuse.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AV_AUDIO = {"sample_rate": 8000, "duration": 1.0, "n_fft": 512, "hop_length": 80}


class PeakMemory:
    """Samples this process's RSS every 50 ms; ``peak_mib`` after the block."""

    def __enter__(self) -> PeakMemory:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            self._stop.wait(0.05)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def setups(name: str, finetune_epochs: int) -> list[tuple[str, dict[str, Any], str | None]]:
    """(setting, config, preset) for one data set."""
    recipe = "av_mnist.yaml" if name == "av-mnist" else "mustard.yaml"
    scratch = to_dict(load_recipe(REPO / "configs" / recipe).config)
    pretrained: dict[str, Any] = {"model": {"fusion": "concat", "hidden": 128}}
    if name == "av-mnist":
        pretrained["data"] = {"audio": AV_AUDIO}
    finetune = {**pretrained, "train": {"epochs": finetune_epochs}}
    return [("from scratch", scratch, None), ("frozen pretrained", pretrained, "pretrained"),
            ("partial fine-tune", finetune, "finetune")]


def run(data: Path, label: str, modalities: dict, config: dict, preset: str | None,
        seed: int, cache: Path) -> dict[str, Any]:
    config = {**config, "train": {**config.get("train", {}), "cache_dir": str(cache)}}
    with PeakMemory() as mem:
        start = time.perf_counter()
        p = FusionPredictor(label, config=config, preset=preset, modalities=modalities,
                            progress=False)
        p.fit(data / "train.csv", data / "valid.csv", seed=seed)
        m = p.evaluate(data / "test.csv")["tasks"][label]
    epochs = p.fit_summary_["epoch_seconds"]
    return {
        "seed": seed, "accuracy": m["accuracy"], "f1_macro": m["f1_macro"],
        "epochs": len(epochs), "encode_seconds": p.fit_summary_["encode_seconds"],
        "first_epoch_seconds": p.fit_summary_["encode_seconds"] + (epochs[0] if epochs else 0.0),
        "later_epoch_seconds": statistics.mean(epochs[1:]) if len(epochs) > 1 else None,
        "cache": p.fit_summary_["cache"], "wall_seconds": time.perf_counter() - start,
        "peak_rss_mib": mem.peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--finetune-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["mustard", "av-mnist"])
    parser.add_argument("--settings", nargs="+", default=None,
                        help="only these settings (e.g. 'partial fine-tune')")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the rerun (data, setting) rows of the JSON results")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results/pretrained.md from results/pretrained.json")
    args = parser.parse_args()
    if args.render:
        import json

        from common import RESULTS

        payload = json.loads((RESULTS / "pretrained.json").read_text())
        payload["summary"] = summarise(payload["runs"])
        (RESULTS / "pretrained.json").write_text(json.dumps(payload, indent=2) + "\n")
        (RESULTS / "pretrained.md").write_text(markdown(payload["summary"], args))
        return
    src = shared_data()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for name in args.datasets:
            if name == "av-mnist":
                data = build_av_mnist(tmp_path / "av", fsdd_dir=src / "fsdd",
                                      mnist_dir=src / "mnist").out_dir
                label, modalities = "label", {}
            else:
                data = build_mustard(tmp_path / "mustard", src=src / "mustard").out_dir
                label, modalities = "sarcasm", {"context_speakers": "ignore"}
            cache = tmp_path / f"cache-{name}"  # fresh: the first frozen run pays the encoding
            for setting, config, preset in setups(name, args.finetune_epochs):
                if args.settings and setting not in args.settings:
                    continue
                seeds = args.finetune_seeds if preset == "finetune" else args.seeds
                for seed in seeds:
                    row = {"dataset": name, "setting": setting,
                           **run(data, label, modalities, config, preset, seed, cache)}
                    results.append(row)
                    print({k: v for k, v in row.items() if k != "cache"}, flush=True)
    if args.merge:
        import json

        from common import RESULTS

        rerun = {(r["dataset"], r["setting"]) for r in results}
        old = json.loads((RESULTS / "pretrained.json").read_text())["runs"]
        kept = [r for r in old if (r["dataset"], r["setting"]) not in rerun]
        order = {k: i for i, k in enumerate(dict.fromkeys((r["dataset"], r["setting"])
                                                          for r in old + results))}
        results = sorted(kept + results, key=lambda r: order[(r["dataset"], r["setting"])])
    summary = summarise(results)
    write_results("pretrained", {"runs": results, "summary": summary}, markdown(summary, args))
    print(markdown(summary, args))


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key in dict.fromkeys((r["dataset"], r["setting"]) for r in results):
        rows = [r for r in results if (r["dataset"], r["setting"]) == key]
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        later = [r["later_epoch_seconds"] for r in rows if r["later_epoch_seconds"]]
        out.append({
            "dataset": key[0], "setting": key[1], "seeds": len(rows),
            "epochs_mean": statistics.mean(r["epochs"] for r in rows),
            "accuracy_mean": statistics.mean(r["accuracy"] for r in rows),
            "accuracy_std": sd([r["accuracy"] for r in rows]),
            "f1_macro_mean": statistics.mean(r["f1_macro"] for r in rows),
            "f1_macro_std": sd([r["f1_macro"] for r in rows]),
            "first_epoch_seconds_first_seed": rows[0]["first_epoch_seconds"],
            "later_epoch_seconds_mean": statistics.mean(later) if later else None,
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rows),
        })
    return out


def markdown(summary: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [[
        s["dataset"], s["setting"], s["seeds"], f"{s['epochs_mean']:.0f}",
        f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
        f"{s['f1_macro_mean']:.3f} ± {s['f1_macro_std']:.3f}",
        f"{s['first_epoch_seconds_first_seed']:.1f}",
        "–" if s["later_epoch_seconds_mean"] is None else f"{s['later_epoch_seconds_mean']:.2f}",
        f"{s['peak_rss_mib_max']:.0f}",
    ] for s in summary]
    return (
        "# Pretrained vs from-scratch encoders (test split)\n\n"
        + md_table(["data", "encoders", "seeds", "epochs", "accuracy", "macro-F1",
                    "first epoch s (incl. encoding)", "later epochs s", "peak RSS MiB"], rows)
        + "\n\nFirst epoch: the first seed's first epoch, including filling the embedding "
        "cache for frozen encoders (later seeds find it filled). Later epochs: mean over "
        "epochs 2+ and seeds. Epochs: mean epochs run (early stopping may end sooner). "
        "Partial fine-tuning trains the last 2 blocks + norms, one seed (CPU budget). "
        "Peak RSS is the benchmark process's, which runs every setting in turn, so it "
        "includes what earlier runs left allocated. Reproduce: `python benchmarks/pretrained.py`\n"
    )


if __name__ == "__main__":
    main()
