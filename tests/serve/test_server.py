"""The HTTP service, started for real on a loopback port and called over HTTP."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pandas as pd
import pytest

from crossfuse.api import FusionPredictor
from crossfuse.feedback.store import FeedbackStore
from crossfuse.serve import ServeConfig, create_app
from tests.conftest import write_wav
from tests.serve.helpers import live_server, train_model

LIMIT = 20_000  # max_upload_bytes of the test server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def media(model_dir: Path) -> SimpleNamespace:
    data = model_dir.parent / "data"
    return SimpleNamespace(
        png=(data / "img1.png").read_bytes(),
        wav=(data / "snd1.wav").read_bytes(),
        png_path=data / "img1.png",
        wav_path=data / "snd1.wav",
    )


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    store = FeedbackStore(tmp_path_factory.mktemp("store") / "feedback.sqlite")
    config = ServeConfig(max_upload_bytes=LIMIT, max_batch_rows=4, batch_wait_ms=20)
    app = create_app(model_dir, config, store=store)
    with live_server(app) as url:
        yield SimpleNamespace(url=url, app=app, store=store)


@pytest.fixture
def client(server: SimpleNamespace) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def b64(data: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(data).decode()}


def full_form(media: SimpleNamespace) -> dict:
    return {
        "data": {"note": "beta item 2", "x": "0.8"},
        "files": {
            "picture": ("whatever.jpg", media.png, "application/octet-stream"),
            "sound": ("clip", media.wav, "text/plain"),  # names and client types are ignored
        },
    }


def test_predict_each_modality_matches_the_library(
    client: httpx.Client, media: SimpleNamespace, model_dir: Path
) -> None:
    r = client.post("/predict", **full_form(media))
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["request_id"]) == 32 and body["model_version"] == "1"
    assert body["present"] == {"note": True, "picture": True, "sound": True, "tabular": True}
    assert body["problems"] == []
    probs = body["predictions"]["label"]["probabilities"]
    assert set(probs) == {"a", "b"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert body["label"] == body["predictions"]["label"]["label"] == max(probs, key=probs.get)
    row = {"note": "beta item 2", "picture": str(media.png_path), "sound": str(media.wav_path)}
    expected = FusionPredictor.load(model_dir).predict_proba(pd.DataFrame([{**row, "x": 0.8}]))
    assert probs["a"] == pytest.approx(float(expected["a"][0]), abs=1e-5)


def test_missing_inputs_still_predict(client: httpx.Client, media: SimpleNamespace) -> None:
    text_only = client.post("/predict", data={"note": "alpha item 1"}).json()
    assert text_only["present"] == {
        "note": True,
        "picture": False,
        "sound": False,
        "tabular": False,
    }
    assert text_only["label"] in ("a", "b")
    assert "picture: not given" in text_only["problems"]
    audio_only = client.post("/predict", files={"sound": ("s.wav", media.wav)}).json()
    assert audio_only["present"] == {
        "note": False,
        "picture": False,
        "sound": True,
        "tabular": False,
    }


def test_json_with_base64_media_equals_multipart(
    client: httpx.Client, media: SimpleNamespace
) -> None:
    inputs = {"note": "beta item 2", "x": 0.8, "picture": b64(media.png), "sound": b64(media.wav)}
    r = client.post("/predict", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    multipart = client.post("/predict", **full_form(media)).json()
    assert r.json()["predictions"] == multipart["predictions"]
    assert r.json()["request_id"] != multipart["request_id"]


def test_batch_endpoint(client: httpx.Client, media: SimpleNamespace) -> None:
    rows = [{"note": "alpha item 1"}, {"picture": b64(media.png)}, {"x": -1.2, "sound": None}]
    r = client.post("/predict/batch", json={"rows": rows})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and len({res["request_id"] for res in results}) == 3
    assert [res["present"]["picture"] for res in results] == [False, True, False]
    single = client.post("/predict", json={"inputs": rows[2]}).json()
    assert results[2]["predictions"] == single["predictions"]
    too_many = client.post("/predict/batch", json={"rows": rows * 2})
    assert too_many.status_code == 413 and "max_batch_rows" in too_many.json()["detail"]
    bad = client.post("/predict/batch", json={"rows": [{"x": 1}, {"x": "abc"}]})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("rows[1]: field 'x'")


def test_oversize_upload_is_413_naming_the_field(client: httpx.Client, tmp_path: Path) -> None:
    write_wav(tmp_path / "long.wav", 300.0, sr=16000, seconds=1.0)  # 32 kB > LIMIT
    big = (tmp_path / "long.wav").read_bytes()
    r = client.post("/predict", files={"sound": ("long.wav", big)})
    assert r.status_code == 413 and "'sound'" in r.json()["detail"]
    r = client.post("/predict", json={"inputs": {"sound": b64(big)}})
    assert r.status_code == 413 and "'sound'" in r.json()["detail"]
    # declared far over the whole-body limit: refused from Content-Length alone
    huge = client.post("/predict", files={"picture": ("p.png", b"\0" * 400_000)})
    assert huge.status_code == 413 and "'picture', 'sound'" in huge.json()["detail"]


def test_chunked_body_is_counted_while_it_streams(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"inputs": {"note": "'
        for _ in range(8):
            yield b"w" * 50_000

    r = client.post("/predict", content=body(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_wrong_media_type_is_415_naming_the_field(
    client: httpx.Client, media: SimpleNamespace
) -> None:
    text_as_image = client.post(
        "/predict", files={"picture": ("cat.png", b"a text file\n", "image/png")}
    )
    assert text_as_image.status_code == 415
    assert "'picture'" in text_as_image.json()["detail"] and "PNG" in text_as_image.json()["detail"]
    png_as_audio = client.post("/predict", files={"sound": ("a.wav", media.png, "audio/wav")})
    assert png_as_audio.status_code == 415
    assert "'sound'" in png_as_audio.json()["detail"] and "WAV" in png_as_audio.json()["detail"]
    as_json = client.post("/predict", json={"inputs": {"sound": b64(media.png)}})
    assert as_json.status_code == 415 and "'sound'" in as_json.json()["detail"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"data": {"x": "twelve"}}, 422, ("field 'x'", "number")),
        ({"json": {"inputs": {"x": "1,5"}}}, 422, ("field 'x'",)),
        ({"data": {"picture": "/etc/hostname"}}, 422, ("'picture'", "file paths are not accepted")),
        ({"json": {"inputs": {"sound": "snd1.wav"}}}, 422, ("file paths are not accepted",)),
        ({"data": {"colour": "red"}}, 422, ("unknown field 'colour'",)),
        ({"json": {"inputs": {}}}, 422, ("no inputs given",)),
        ({"json": {"inputs": {"picture": {"base64": "@@@"}}}}, 422, ("'picture'", "base64")),
        ({"content": b"x=1", "headers": {"content-type": "text/plain"}}, 415, ("Content-Type",)),
    ],
)
def test_bad_requests_name_the_problem(
    client: httpx.Client, request_kwargs: dict, status: int, words: tuple[str, ...]
) -> None:
    r = client.post("/predict", **request_kwargs)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["detail"]


def test_feedback_is_stored_and_listed(
    client: httpx.Client, server: SimpleNamespace, media: SimpleNamespace
) -> None:
    pred = client.post("/predict", **full_form(media)).json()
    r = client.post(
        "/feedback", json={"request_id": pred["request_id"], "label": "a", "comment": "an a"}
    )
    assert r.status_code == 200 and r.json()["stored"] is True
    row = next(f for f in server.store.feedback_rows() if f["id"] == r.json()["feedback_id"])
    assert row["label"] == "a" and row["comment"] == "an a"
    assert row["request_id"] == pred["request_id"] and row["predicted"] == pred["label"]
    assert row["model_version"] == "1"
    assert Path(row["inputs"]["picture"]).read_bytes() == media.png
    assert row["inputs"]["note"] == "beta item 2" and row["inputs"]["x"] == 0.8
    direct = client.post("/feedback", json={"inputs": {"x": 2.0}, "label": "b"})
    assert direct.status_code == 200
    assert server.store.feedback_rows()[-1]["inputs"]["x"] == 2.0
    missing = client.post("/feedback", json={"request_id": "0" * 32, "label": "a"})
    assert missing.status_code == 404 and "request_id" in missing.json()["detail"]
    wrong = client.post("/feedback", json={"request_id": pred["request_id"], "label": "zebra"})
    assert wrong.status_code == 422 and "'label'" in wrong.json()["detail"]
    neither = client.post("/feedback", json={"label": "a"})
    assert neither.status_code == 422 and "request_id" in neither.json()["detail"]


def test_sixteen_concurrent_feedback_writers(server: SimpleNamespace) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        ids = [c.post("/predict", data={"x": str(i)}).json()["request_id"] for i in range(16)]
    before = len(server.store)
    barrier = threading.Barrier(16)

    def send(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait(timeout=30)
            r = c.post("/feedback", json={"request_id": ids[i], "label": "ab"[i % 2]})
            assert r.status_code == 200, r.text
            return r.json()["feedback_id"]

    with ThreadPoolExecutor(16) as pool:
        feedback_ids = list(pool.map(send, range(16)))
    assert len(set(feedback_ids)) == 16 and len(server.store) == before + 16
    stored = {f["request_id"]: f["label"] for f in server.store.feedback_rows()}
    assert all(stored[ids[i]] == "ab"[i % 2] for i in range(16))


def test_info_endpoints_and_page(client: httpx.Client) -> None:
    model = client.get("/model").json()
    assert model["label"] == "label" and model["task"] == "classification"
    assert model["classes"] == ["a", "b"] and model["fusion"]
    assert model["inputs"] == {"note": "text", "picture": "image", "sound": "audio", "x": "numeric"}
    assert 0 <= model["metrics"]["tasks"]["label"]["accuracy"] <= 1
    assert model["model_version"] == "1" and model["crossfuse_version"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["uptime_s"] > 0
    assert health["rows_scored"] >= health["batches"] >= 0
    assert client.get("/docs").status_code == 200
    assert "/predict/batch" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="predict-btn"' in page.text and "http" not in page.text.split("<footer")[0]
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/secrets.txt").status_code == 404


def test_concurrent_predicts_are_batched(server: SimpleNamespace, media: SimpleNamespace) -> None:
    batcher = server.app.state.batcher
    batches, rows = batcher.batches, batcher.rows

    def work(i: int) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return [
                c.post(
                    "/predict", data={"x": str(i + j / 10)}, files={"sound": ("s", media.wav)}
                ).status_code
                for j in range(4)
            ]

    with ThreadPoolExecutor(8) as pool:
        codes = [code for chunk in pool.map(work, range(8)) for code in chunk]
    assert codes == [200] * 32
    assert batcher.rows - rows == 32
    assert batcher.batches - batches < 32  # some requests shared a forward pass


def test_slow_model_gives_504(model_dir: Path, tmp_path: Path) -> None:
    config = ServeConfig(request_timeout_s=0.2)
    app = create_app(model_dir, config, store=FeedbackStore(tmp_path / "fb.sqlite"))
    score = app.state.batcher.score

    def slow(rows):
        time.sleep(1.0)
        return score(rows)

    app.state.batcher.score = slow
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/predict", data={"x": "1"})
    assert r.status_code == 504 and "request_timeout_s" in r.json()["detail"]


def test_serves_the_live_version(model_dir: Path, tmp_path: Path) -> None:
    from crossfuse.versions import new_version_dir, promote

    root = tmp_path / "model"
    shutil.copytree(model_dir, root)
    n, folder = new_version_dir(root)
    FusionPredictor.load(root).save(folder)
    promote(root, n, "test", {})
    app = create_app(root, store=FeedbackStore(tmp_path / "fb.sqlite"))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health").json()["model_version"] == "2"
        assert c.post("/predict", data={"x": "1"}).json()["model_version"] == "2"
    assert not (root / "feedback").exists()  # the store given was used
