"""Model versions: adopting the original, promoting, the history, rollback, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crossfuse import versions
from crossfuse.errors import ModelDirError


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A stand-in model directory (versions only copy files; nothing is loaded)."""
    root = tmp_path / "model"
    (root / "tensorboard").mkdir(parents=True)
    (root / "tensorboard" / "events").write_text("curves")
    (root / "crossfuse.json").write_text('{"label": "label"}')
    (root / "model.safetensors").write_bytes(b"weights-v1")
    (root / "metrics.json").write_text(
        json.dumps({"valid": {"rows": 8, "tasks": {"label": {"accuracy": 0.75, "confusion": [1]}}}})
    )
    (root / "feedback").mkdir()
    (root / "feedback" / "feedback.sqlite").write_bytes(b"db")
    return root


def _new(model: Path, weights: bytes) -> int:
    n, folder = versions.new_version_dir(model)
    (folder / "model.safetensors").write_bytes(weights)
    versions.record(model, {"version": n, "parent": versions.current_version(model)})
    return n


def test_a_plain_directory_is_version_one(model: Path) -> None:
    assert versions.resolve_model_dir(model) == model
    assert versions.current_version(model) == 1
    assert versions.history(model) == []


def test_first_new_version_adopts_the_original(model: Path) -> None:
    n, folder = versions.new_version_dir(model)
    assert (n, folder) == (2, model / "versions" / "2")
    assert folder.is_dir() and not any(folder.iterdir())
    one = model / "versions" / "1"
    assert (one / "model.safetensors").read_bytes() == b"weights-v1"
    assert (one / "tensorboard" / "events").read_text() == "curves"
    assert not (one / "feedback").exists()  # the store serves every version
    assert (model / "current").read_text().strip() == "1"
    (entry,) = versions.history(model)
    assert entry["version"] == 1 and entry["promoted"] and entry["parent"] is None
    assert entry["metrics"]["valid"] == {"rows": 8, "tasks": {"label": {"accuracy": 0.75}}}
    assert versions.new_version_dir(model)[0] == 3  # numbers are never reused


def test_promote_switches_the_live_folder_and_records_it(model: Path) -> None:
    n = _new(model, b"weights-v2")
    versions.promote(model, n, "better", {"holdout": {"accuracy": 0.9}})
    assert versions.current_version(model) == 2
    assert versions.resolve_model_dir(model) == model / "versions" / "2"
    entry = versions.history(model)[-1]
    assert entry["version"] == 2 and entry["parent"] == 1
    assert entry["promoted"] and entry["reason"] == "better"
    assert entry["metrics"] == {"holdout": {"accuracy": 0.9}}
    assert versions.current_version(model / "versions" / "2") == 2


def test_rollback_steps_back_one_promotion_at_a_time(model: Path) -> None:
    two = _new(model, b"v2")
    versions.promote(model, two, "ok", {})
    three = _new(model, b"v3")  # kept, never promoted: rollback skips it
    four = _new(model, b"v4")
    versions.promote(model, four, "ok", {})
    assert versions.current_version(model) == 4
    assert versions.rollback(model) == 2
    assert versions.rollback(model) == 1
    with pytest.raises(ModelDirError, match="nothing earlier"):
        versions.rollback(model)
    assert versions.current_version(model) == 1
    entries = {e["version"]: e for e in versions.history(model)}
    assert entries[4]["rolled_back"] and entries[2]["rolled_back"]
    assert not entries[three].get("promoted")
    # promoting a rolled-back version makes it live again, on top of the stack
    versions.promote(model, four, "again", {})
    assert versions.rollback(model) == 1


def test_rollback_of_a_plain_directory_is_a_clear_error(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="cannot roll back.*only version"):
        versions.rollback(model)
    with pytest.raises(ModelDirError, match="not found"):
        versions.rollback(tmp_path / "missing")


def test_current_is_replaced_atomically(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = _new(model, b"v2")
    before = sorted(p.name for p in model.iterdir())

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(versions.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        versions.promote(model, n, "x", {})
    assert (model / "current").read_text() == "1\n"  # the old file, intact
    assert sorted(p.name for p in model.iterdir()) == before  # no temp file left
    monkeypatch.undo()
    versions.promote(model, n, "x", {})
    assert (model / "current").read_text() == "2\n"


def test_broken_bookkeeping_is_reported(model: Path) -> None:
    (model / "current").write_text("two")
    with pytest.raises(ModelDirError, match="version number, found 'two'"):
        versions.current_version(model)
    (model / "current").write_text("5")
    with pytest.raises(ModelDirError, match="names version 5"):
        versions.resolve_model_dir(model)
    (model / "versions.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        versions.history(model)
    with pytest.raises(ModelDirError, match="no version 9"):
        versions.promote(model, 9, "x", {})


def test_history_file_is_written_whole(model: Path) -> None:
    _new(model, b"v2")
    leftovers = [p for p in model.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert [e["version"] for e in json.loads((model / "versions.json").read_text())] == [1, 2]
    assert os.stat(model / "versions.json").st_mode & 0o644 == 0o644
