"""HTTP serving latency and throughput: `crossfuse serve` on loopback, 8 concurrent clients.

Trains two AV-MNIST models (image + audio): the from-scratch encoders of
configs/av_mnist.yaml, and the `pretrained` preset (EfficientNet-Lite0 on the image and
on the log-mel spectrogram). Accuracy is not the point here, so both train briefly
(the pretrained one on a subset). Each model is served by a real `crossfuse serve`
process; 8 client threads send 2,000 multipart requests (a PNG and a WAV from the test
split each, cycling) in a bounded loop; the first 40 are warm-up and not counted.
Reports p50/p95/p99 latency, throughput, errors, and the server's mean micro-batch.
Writes results/serve.{json,md}.

    python benchmarks/serve.py [--requests 2000] [--clients 8] [--data AV_MNIST_DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import to_dict  # noqa: E402
from crossfuse.data.builtin.av_mnist import build_av_mnist  # noqa: E402
from crossfuse.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WARMUP = 40


def shared_data() -> Path:
    return Path(os.environ.get("CROSSFUSE_DATA", REPO.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_models(data: Path, root: Path) -> dict[str, Path]:
    config = to_dict(load_recipe(REPO / "configs" / "av_mnist.yaml").config)
    scratch = FusionPredictor("label", config=config, progress=False)
    scratch.fit(data / "train.csv", data / "valid.csv", epochs=3, seed=0).save(root / "scratch")
    train = pd.read_csv(data / "train.csv").sample(400, random_state=0)
    train[["image", "audio"]] = train[["image", "audio"]].map(lambda p: str(data / p))
    pretrained = FusionPredictor("label", preset="pretrained", progress=False)
    pretrained.fit(train, epochs=2, seed=0).save(root / "pretrained")
    return {
        "from scratch (configs/av_mnist.yaml)": root / "scratch",
        "pretrained preset (EfficientNet-Lite0 ×2)": root / "pretrained",
    }


def payloads(data: Path, n: int = 50) -> list[dict[str, tuple[str, bytes, str]]]:
    test = pd.read_csv(data / "test.csv").head(n)
    return [
        {
            "image": ("digit.png", (data / row.image).read_bytes(), "image/png"),
            "audio": ("digit.wav", (data / row.audio).read_bytes(), "audio/wav"),
        }
        for row in test.itertuples()
    ]


def start_server(model: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "crossfuse",
        "serve",
        str(model),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def load(url: str, bodies: list, total: int, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    r = http.post("/predict", files=bodies[i % len(bodies)])
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    ok = False
                    errors.append(repr(e))
                elapsed = time.perf_counter() - start
                if ok and i >= WARMUP:
                    with lock:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": total,
        "clients": clients,
        "errors": len(errors),
        "error_examples": errors[:5],
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_rps": total / wall,
        "wall_seconds": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--data", type=Path, help="an AV-MNIST folder already built")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            src = shared_data()
            data = build_av_mnist(
                Path(tmp) / "av_mnist", fsdd_dir=src / "fsdd", mnist_dir=src / "mnist"
            ).out_dir
        models = train_models(data, Path(tmp) / "models")
        bodies = payloads(data)
        results = []
        for name, model in models.items():
            port = free_port()
            server = start_server(model, port)
            try:
                url = f"http://127.0.0.1:{port}"
                row = {"model": name, **load(url, bodies, args.requests, args.clients)}
                health = httpx.get(f"{url}/health").json()
                row["mean_batch"] = health["rows_scored"] / max(health["batches"], 1)
            finally:
                server.terminate()
                server.wait(timeout=30)
            results.append(row)
            print(row, flush=True)
    md = (
        f"# Serving (`crossfuse serve`, loopback, {args.clients} concurrent clients, "
        f"{args.requests} requests each model, PNG + WAV multipart)\n\n"
        + md_table(
            ["model", "p50 ms", "p95 ms", "p99 ms", "throughput req/s", "errors", "mean batch"],
            [
                [
                    r["model"],
                    f"{r['p50_ms']:.1f}",
                    f"{r['p95_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['throughput_rps']:.1f}",
                    r["errors"],
                    f"{r['mean_batch']:.1f}",
                ]
                for r in results
            ],
        )
        + f"\n\nLatency is per request as the client sees it (the first {WARMUP} requests "
        "are warm-up), on 2 CPU cores shared by the server and the 8 client threads; "
        "each prediction is also recorded in the feedback store. Reproduce: "
        "`python benchmarks/serve.py`.\n"
    )
    write_results("serve", {"results": results, "warmup": WARMUP}, md)
    print(md)


if __name__ == "__main__":
    main()
