"""Distillation on AV-MNIST: a pretrained image+audio teacher, small from-scratch students.

Teacher: the `pretrained` preset (frozen ImageNet EfficientNet-Lite0 on the image and on
the log-mel spectrogram, embeddings cached), concat fusion. Students
(configs/av_mnist_student.yaml, about a tenth of the from-scratch model's size):
(a) trained on labels only, (b) distilled (response: T=4, α=0.5), (c) distilled
(response + fused-feature MSE), (d) an audio-only student distilled from the
image+audio teacher, next to (e) the same audio-only student trained on labels alone.
Accuracy/macro-F1 on the test split over seeds; parameters; weights on disk; CPU
latency per sample of the network alone (preprocessed tensors in, probabilities out)
at batch 1 and batch 64, in PyTorch and, for the students, in onnxruntime (the
exported model.onnx, checked against PyTorch to 1e-4 at export). All measured in one
run. Writes results/distill.{json,md}.

    python benchmarks/distill.py [--seeds 0 1 2] [--data AV_MNIST_DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import to_dict  # noqa: E402
from crossfuse.data.builtin.av_mnist import build_av_mnist  # noqa: E402
from crossfuse.data.dataset import Collator, FusionDataset  # noqa: E402
from crossfuse.data.table import read_table  # noqa: E402
from crossfuse.export import ExportConfig, OnnxPredictor, export_model  # noqa: E402
from crossfuse.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AV_AUDIO = {"sample_rate": 8000, "duration": 1.0, "n_fft": 512, "hop_length": 80}
RESPONSE = {"temperature": 4.0, "alpha": 0.5}
STUDENTS = [  # (name, modalities, distillation config or None for labels only)
    ("(a) student, labels only", {}, None),
    ("(b) student, distilled (response)", {}, RESPONSE),
    ("(c) student, distilled (response + feature)", {}, {**RESPONSE, "feature_weight": 1.0}),
    ("(d) audio-only student, distilled from image+audio", {"image": "ignore"}, RESPONSE),
    ("(e) audio-only student, labels only", {"image": "ignore"}, None),
]


def shared_data() -> Path:
    return Path(os.environ.get("CROSSFUSE_DATA", REPO.parent / "shared" / "data"))


def batches(p: Any, data: Path, size: int, count: int) -> list[dict]:
    """``count`` collated input batches of ``size`` test rows for ``p``'s preprocessing."""
    table = read_table(data / "test.csv")
    dataset = FusionDataset(table, p.preprocessor_, labels=False)
    collate = Collator(p.preprocessor_)
    rows = [dataset[i] for i in range(min(len(dataset), size * count))]
    return [collate(rows[i : i + size])["inputs"] for i in range(0, len(rows), size)][:count]


def latency_ms(run, inputs: list[dict], size: int, repeat: int) -> float:
    """Mean milliseconds per sample of ``run(batch)`` over ``repeat`` passes (1 warm-up)."""
    run(inputs[0])
    start = time.perf_counter()
    for i in range(repeat):
        run(inputs[i % len(inputs)])
    return 1000 * (time.perf_counter() - start) / (repeat * size)


def measure(p: Any, data: Path, onnx_dir: Path | None) -> dict[str, float]:
    model = p.model_.eval()
    out: dict[str, float] = {}
    one, many = batches(p, data, 1, 100), batches(p, data, 64, 4)
    with torch.inference_mode():
        out["torch_b1_ms"] = latency_ms(model, one, 1, 100)
        out["torch_b64_ms"] = latency_ms(model, many, 64, 8)
    if onnx_dir is not None:
        session = OnnxPredictor.load(onnx_dir).session
        out["onnx_b1_ms"] = latency_ms(session.run, one, 1, 100)
        out["onnx_b64_ms"] = latency_ms(session.run, many, 64, 8)
    return out


def score(p: Any, data: Path) -> dict[str, float]:
    m = p.evaluate(data / "test.csv")["tasks"]["label"]
    return {"accuracy": m["accuracy"], "f1_macro": m["f1_macro"]}


def size_info(p: Any, folder: Path) -> dict[str, Any]:
    p.save(folder)
    return {
        "parameters": sum(t.numel() for t in p.model_.parameters()),
        "disk_mib": (folder / "model.safetensors").stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, help="an AV-MNIST folder already built")
    args = parser.parse_args()
    student_cfg = to_dict(load_recipe(REPO / "configs" / "av_mnist_student.yaml").config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = args.data
        if data is None:
            src = shared_data()
            data = build_av_mnist(
                root / "av_mnist", fsdd_dir=src / "fsdd", mnist_dir=src / "mnist"
            ).out_dir
        teacher_cfg = {
            "model": {"fusion": "concat", "hidden": 128},
            "data": {"audio": AV_AUDIO},
            "train": {"cache_dir": str(root / "cache")},
        }
        start = time.perf_counter()
        teacher = FusionPredictor("label", config=teacher_cfg, preset="pretrained", progress=False)
        teacher.fit(data / "train.csv", data / "valid.csv", seed=0)
        teacher_row = {
            "model": "teacher (pretrained preset, image+audio)",
            "seed": 0,
            **score(teacher, data),
            **size_info(teacher, root / "teacher"),
            "train_seconds": time.perf_counter() - start,
        }
        print(teacher_row, flush=True)
        runs = [teacher_row]
        timed: list[tuple[dict, Any, Path | None]] = [(teacher_row, teacher, None)]
        for name, modalities, kd in STUDENTS:
            for seed in args.seeds:
                start = time.perf_counter()
                p = FusionPredictor(
                    "label", config=student_cfg, modalities=modalities, progress=False
                )
                if kd is None:
                    p.fit(data / "train.csv", data / "valid.csv", seed=seed)
                else:
                    p.distill(teacher, data / "train.csv", data / "valid.csv", config=kd, seed=seed)
                row = {"model": name, "seed": seed, **score(p, data)}
                row["train_seconds"] = time.perf_counter() - start
                folder = root / f"student-{len(runs)}"
                row.update(size_info(p, folder))
                if seed == args.seeds[0]:  # latency once per student kind
                    onnx_dir = root / f"onnx-{len(runs)}"
                    export_model(
                        folder, onnx_dir, ExportConfig(format="onnx"), data=data / "valid.csv"
                    )
                    timed.append((row, p, onnx_dir))
                runs.append(row)
                print(row, flush=True)
        for row, p, onnx_dir in timed:  # all latencies at the end, one model at a time
            row.update(measure(p, data, onnx_dir))
            print(row["model"], {k: v for k, v in row.items() if k.endswith("_ms")}, flush=True)
    summary = summarise(runs)
    md = render(summary, args.seeds)
    write_results("distill", {"seeds": args.seeds, "runs": runs, "summary": summary}, md)
    print(md)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        row: dict[str, Any] = {"model": name, "seeds": len(mine)}
        for key in ("accuracy", "f1_macro"):
            values = [r[key] for r in mine]
            row[key] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        for key in (
            "parameters",
            "disk_mib",
            "torch_b1_ms",
            "torch_b64_ms",
            "onnx_b1_ms",
            "onnx_b64_ms",
        ):
            if key in mine[0]:
                row[key] = mine[0][key]
        out.append(row)
    teacher = out[0]
    for row in out[1:]:
        row["speedup_b1_vs_teacher"] = teacher["torch_b1_ms"] / row["torch_b1_ms"]
    return out


def render(summary: list[dict[str, Any]], seeds: list[int]) -> str:
    def ms(row: dict, key: str) -> str:
        return f"{row[key]:.3f}" if key in row else "–"

    rows = [
        [
            r["model"],
            f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}",
            f"{r['f1_macro']:.3f} ± {r['f1_macro_std']:.3f}",
            f"{r['parameters']:,}",
            f"{r['disk_mib']:.2f}",
            ms(r, "torch_b1_ms"),
            ms(r, "torch_b64_ms"),
            ms(r, "onnx_b1_ms"),
            ms(r, "onnx_b64_ms"),
            f"{r['speedup_b1_vs_teacher']:.0f}×" if "speedup_b1_vs_teacher" in r else "–",
        ]
        for r in summary
    ]
    header = [
        "model",
        "accuracy",
        "macro-F1",
        "parameters",
        "MiB on disk",
        "torch ms/sample b1",
        "torch ms/sample b64",
        "onnx ms/sample b1",
        "onnx ms/sample b64",
        "b1 speed-up",
    ]
    return (
        f"# Distillation on AV-MNIST (test split, 300 rows; students: {len(seeds)} seeds "
        f"{', '.join(map(str, seeds))}; teacher: seed 0)\n\n"
        + md_table(header, rows)
        + "\n\nLatency: the network alone on preprocessed test rows (decoding and log-mel "
        "excluded), CPU, 2 cores, mean per sample, measured after all training, one "
        "model at a time; the teacher's parameters include its "
        "frozen EfficientNets. Students: configs/av_mnist_student.yaml; distilled with "
        "T = 4, α = 0.5 (c: + fused-feature MSE, weight 1). Reproduce: "
        "`python benchmarks/distill.py`.\n"
    )


if __name__ == "__main__":
    main()
