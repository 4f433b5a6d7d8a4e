"""FeedbackStore: what it keeps, how it reads back, and that concurrent writers and a
killed writer never leave a missing or half-written row."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from crossfuse.errors import ConfigError
from crossfuse.feedback import FeedbackStore, default_store_path, media_extension
from tests.conftest import write_png, write_wav


@pytest.fixture
def png_bytes(tmp_path: Path) -> bytes:
    write_png(tmp_path / "p.png", 90)
    return (tmp_path / "p.png").read_bytes()


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "db" / "feedback.sqlite")


def test_database_is_in_wal_mode_with_both_tables(store: FeedbackStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"predictions", "feedback"} <= tables


def test_feedback_on_a_request_joins_its_inputs_and_prediction(
    store: FeedbackStore, png_bytes: bytes
) -> None:
    prediction = {
        "label": "a",
        "predictions": {"label": {"label": "a", "probabilities": {"a": 0.8, "b": 0.2}}},
    }
    store.record_prediction(
        "req-1", {"note": "hello", "picture": png_bytes, "x": 1.5}, prediction, "3"
    )
    fid = store.add_feedback(request_id="req-1", label="b", comment="wrong")
    (row,) = store.feedback_rows()
    assert row["id"] == fid and row["request_id"] == "req-1"
    assert row["label"] == "b" and row["predicted"] == "a"
    assert row["probabilities"] == {"a": 0.8, "b": 0.2}
    assert row["model_version"] == "3" and row["comment"] == "wrong"
    assert row["inputs"]["note"] == "hello" and row["inputs"]["x"] == 1.5
    media = Path(row["inputs"]["picture"])
    assert media.is_absolute() and media.suffix == ".png"
    assert media.parent == store.path.parent / "feedback_media"
    assert media.read_bytes() == png_bytes
    assert len(store) == 1


def test_media_is_content_addressed_and_deduplicated(
    store: FeedbackStore, png_bytes: bytes
) -> None:
    for i in range(3):
        store.add_feedback(label="a", inputs={"picture": png_bytes, "n": i})
    files = list(store.media_dir.iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".")
    paths = {r["inputs"]["picture"] for r in store.feedback_rows()}
    assert paths == {str(files[0])}


def test_feedback_with_inputs_only_and_nan_cells(store: FeedbackStore) -> None:
    store.add_feedback(label=1, inputs={"x": float("nan"), "note": None}, model_version="2")
    (row,) = store.feedback_rows()
    assert row["request_id"] is None and row["predicted"] is None
    assert row["label"] == 1  # the label keeps its type
    assert row["inputs"] == {"x": None, "note": None}


def test_bad_calls_raise_the_documented_errors(store: FeedbackStore) -> None:
    with pytest.raises(KeyError, match="nope"):
        store.add_feedback(request_id="nope", label="a")
    with pytest.raises(ValueError, match="request_id or the full inputs"):
        store.add_feedback(label="a")
    with pytest.raises(ConfigError, match="needs a label"):
        store.add_feedback(label=" ", inputs={"x": 1})
    with pytest.raises(ConfigError, match="input 'x'.*object"):
        store.add_feedback(label="a", inputs={"x": object()})
    store.record_prediction("r", {"x": 1}, {"label": "a"}, "1")
    with pytest.raises(ConfigError, match="already recorded"):
        store.record_prediction("r", {"x": 2}, {"label": "b"}, "1")
    assert len(store) == 0  # nothing half-written by the failed calls


def test_to_frame_is_trainable_and_renames_clashing_columns(
    store: FeedbackStore, png_bytes: bytes
) -> None:
    store.record_prediction(
        "r1", {"note": "hi", "picture": png_bytes, "id": 7}, {"label": "a"}, "1"
    )
    store.add_feedback(request_id="r1", label="b")
    store.add_feedback(label="a", inputs={"note": "yo", "extra": 2.0})
    store.set_label_column("target")
    frame = store.to_frame()
    assert list(frame.columns) == [
        "note", "picture", "id", "extra", "target",
        "predicted", "model_version", "time", "comment", "feedback_id",
    ]  # fmt: skip
    assert frame["target"].tolist() == ["b", "a"]
    assert frame["id"].tolist()[0] == 7 and pd.isna(frame["id"].tolist()[1])
    assert frame["feedback_id"].tolist() == [1, 2]
    assert Path(frame.loc[0, "picture"]).is_file() and pd.isna(frame.loc[1, "picture"])
    assert store.to_frame(label_column="label").columns[4] == "label"


def test_limit_returns_the_newest_rows_in_order(store: FeedbackStore) -> None:
    for i in range(5):
        store.add_feedback(label=str(i), inputs={"x": i})
    assert [r["label"] for r in store.feedback_rows(limit=2)] == ["3", "4"]
    assert len(store.feedback_rows()) == 5


def test_model_store_lives_in_the_model_folder(tmp_path: Path, png_bytes: bytes) -> None:
    store = FeedbackStore.for_model(tmp_path / "model")
    assert store.path == default_store_path(tmp_path / "model").resolve()
    store.add_feedback(label="a", inputs={"picture": png_bytes})
    assert Path(store.feedback_rows()[0]["inputs"]["picture"]).parent == store.path.parent / "media"
    # another reader of the same file (any media_dir) still finds the media
    other = FeedbackStore(store.path, media_dir=tmp_path / "elsewhere")
    assert Path(other.feedback_rows()[0]["inputs"]["picture"]).is_file()


@pytest.mark.parametrize(
    ("head", "ext"),
    [
        (b"\xff\xd8\xff\xe0rest", "jpg"),
        (b"GIF89a....", "gif"),
        (b"BM\x00\x00", "bmp"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00....", "tiff"),
        (b"fLaC\x00", "flac"),
        (b"OggS\x00", "ogg"),
        (b"plain text", "bin"),
    ],
)
def test_media_extension_from_magic_bytes(head: bytes, ext: str) -> None:
    assert media_extension(head) == ext


def test_wav_bytes_are_stored_as_wav(store: FeedbackStore, tmp_path: Path) -> None:
    write_wav(tmp_path / "s.wav", 300)
    store.add_feedback(label="a", inputs={"sound": (tmp_path / "s.wav").read_bytes()})
    assert store.feedback_rows()[0]["inputs"]["sound"].endswith(".wav")


# ------------------------------------------------------------------ concurrency
def _writer(db: str, tag: str, n: int) -> None:
    """Add ``n`` feedback rows, each with its own media bytes (run in threads or processes)."""
    store = FeedbackStore(db)
    for i in range(n):
        store.add_feedback(label=tag, inputs={"blob": f"{tag}-{i}".encode(), "i": i})


def _endless_writer(db: str, seconds: float) -> None:
    """Record predictions and feedback in a loop until killed (or ``seconds`` pass)."""
    store = FeedbackStore(db)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        payload = os.urandom(2048)
        store.record_prediction(f"k{i}", {"blob": payload}, {"label": "a"}, "1")
        store.add_feedback(request_id=f"k{i}", label="b")
        i += 1


def _assert_complete(store: FeedbackStore) -> list[dict]:
    rows = store.feedback_rows()
    for row in rows:
        assert Path(row["inputs"]["blob"]).is_file(), row
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    return rows


def test_sixteen_threads_and_two_processes_lose_no_row(tmp_path: Path) -> None:
    db = str(tmp_path / "feedback.sqlite")
    FeedbackStore(db)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, f"p{k}", 25)) for k in range(2)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_writer, args=(db, f"t{k}", 10)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    rows = _assert_complete(FeedbackStore(db))
    assert len(rows) == 16 * 10 + 2 * 25
    assert len({r["id"] for r in rows}) == len(rows)
    per_tag = pd.Series([r["label"] for r in rows]).value_counts().to_dict()
    assert per_tag == {**{f"t{k}": 10 for k in range(16)}, "p0": 25, "p1": 25}


def test_a_writer_killed_mid_loop_leaves_only_complete_rows(tmp_path: Path) -> None:
    db = str(tmp_path / "feedback.sqlite")
    store = FeedbackStore(db)
    proc = mp.get_context("spawn").Process(target=_endless_writer, args=(db, 60.0))
    proc.start()
    deadline = time.monotonic() + 60
    while len(store) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    rows = _assert_complete(store)
    assert len(rows) >= 30
    # every feedback row refers to a recorded prediction; the store still takes writes
    assert all(store.prediction(r["request_id"]) is not None for r in rows)
    store.add_feedback(label="after", inputs={"blob": b"x"})
    assert store.feedback_rows()[-1]["label"] == "after"
