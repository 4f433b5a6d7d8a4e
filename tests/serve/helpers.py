"""A tiny model over text, image, audio and a number, and a live server for it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from crossfuse.api import FusionPredictor
from tests.conftest import TINY_CONFIG, write_wav

SERVE_CONFIG: dict[str, Any] = {
    **TINY_CONFIG,
    "data": {
        **TINY_CONFIG["data"],
        "audio": {
            "sample_rate": 8000,
            "duration": 0.25,
            "n_fft": 256,
            "hop_length": 128,
            "n_mels": 16,
        },
    },
    "model": {
        **TINY_CONFIG["model"],
        "encoders": {
            **TINY_CONFIG["model"]["encoders"],
            "audio": {"dim": 16, "options": {"channels": [4], "hidden": 8}},
        },
    },
    "train": {**TINY_CONFIG["train"], "epochs": 4},
}


def png_bytes(value: int, size: int = 8) -> bytes:
    """A grey PNG (the class shows in its brightness)."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def make_media_table(folder: Path, n: int = 48) -> Path:
    """Class "a"/"b" shows in a word, image brightness, a tone's pitch and a number."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        cls = i % 2
        (folder / f"img{i}.png").write_bytes(png_bytes(190 if cls else 60))
        write_wav(folder / f"snd{i}.wav", 900.0 if cls else 300.0)
        rows.append(
            {
                "note": f"{['alpha', 'beta'][cls]} item {i % 5}",
                "picture": f"img{i}.png",
                "sound": f"snd{i}.wav",
                "x": round(float(rng.normal(1.0 if cls else -1.0, 0.5)), 3),
                "label": ["a", "b"][cls],
            }
        )
    path = folder / "table.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_model(folder: Path) -> Path:
    """Train and save the tiny four-modality model; returns the model directory."""
    table = make_media_table(folder / "data")
    modalities = {"note": "text", "picture": "image", "sound": "audio", "x": "numeric"}
    predictor = FusionPredictor("label", config=SERVE_CONFIG, modalities=modalities, progress=False)
    return predictor.fit(table, seed=0).save(folder / "model")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: Any, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
