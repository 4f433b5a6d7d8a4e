"""Content keys for cells and fingerprints of modules and processor states."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from crossfuse.cache import keys as cache_keys
from crossfuse.cache.keys import cell_key, fingerprint, module_fingerprint, namespace
from crossfuse.errors import ConfigError
from tests.conftest import write_png


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_text_key_is_sha256_of_utf8_and_missing_is_none() -> None:
    assert cell_key("héllo wörld", modality="text", base_dir=None) == sha("héllo wörld".encode())
    assert cell_key(12, modality="text", base_dir=None) == sha(b"12")
    for missing in (None, float("nan"), "", "   "):
        assert cell_key(missing, modality="text", base_dir=None) is None


def test_media_key_hashes_file_bytes_relative_to_base_dir(tmp_path: Path) -> None:
    name = write_png(tmp_path / "a.png", 10)
    data = (tmp_path / name).read_bytes()
    assert cell_key(name, modality="image", base_dir=tmp_path) == sha(data)
    assert cell_key(str(tmp_path / name), modality="image", base_dir=None) == sha(data)
    assert cell_key(data, modality="image", base_dir=None) == sha(data)  # bytes cell: same key


def test_edit_in_place_changes_key_and_move_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    write_png(path, 10)
    before = cell_key("a.png", modality="image", base_dir=tmp_path)
    write_png(path, 200)
    edited = cell_key("a.png", modality="image", base_dir=tmp_path)
    assert edited != before and edited == sha(path.read_bytes())
    (tmp_path / "sub").mkdir()
    path.rename(tmp_path / "sub" / "moved.png")
    assert cell_key("sub/moved.png", modality="image", base_dir=tmp_path) == edited


def test_same_size_same_mtime_rewrite_of_recent_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"A" * 100)
    st = path.stat()
    first = cell_key(path, modality="audio", base_dir=None)
    path.write_bytes(b"B" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # identical size and mtime
    assert cell_key(path, modality="audio", base_dir=None) == sha(b"B" * 100) != first


def test_old_files_are_hashed_once_per_process(tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    path.write_bytes(b"old content")
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(hour_ago, hour_ago))
    info = cache_keys._memo_digest.cache_info
    misses, hits = info().misses, info().hits
    for _ in range(3):
        assert cell_key(path, modality="image", base_dir=None) == sha(b"old content")
    assert info().misses == misses + 1 and info().hits == hits + 2
    path.write_bytes(b"new content")  # new mtime: a new memo entry, not the stale digest
    os.utime(path, ns=(hour_ago + 1, hour_ago + 1))
    assert cell_key(path, modality="image", base_dir=None) == sha(b"new content")


def test_big_files_stream_in_chunks(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 7, dtype=np.uint8).tobytes()
    (tmp_path / "big.wav").write_bytes(data)
    assert cell_key("big.wav", modality="audio", base_dir=tmp_path) == sha(data)


def test_bad_media_cells_give_none(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    for cell in (None, float("nan"), "  ", "missing.png", "empty.png", "folder.png", b""):
        assert cell_key(cell, modality="image", base_dir=tmp_path) is None


def test_in_memory_media_cells_hash_their_content() -> None:
    a = np.zeros((4, 4), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = 1
    key = cell_key(a, modality="image", base_dir=None)
    assert key == cell_key(a.copy(), modality="image", base_dir=None)
    assert key != cell_key(b, modality="image", base_dir=None)
    assert key != cell_key(a.reshape(2, 8), modality="image", base_dir=None)
    wave = np.linspace(-1, 1, 100, dtype=np.float32)
    k1 = cell_key((wave, 8000), modality="audio", base_dir=None)
    assert k1 != cell_key((wave, 16000), modality="audio", base_dir=None)
    assert cell_key((wave[:0], 8000), modality="audio", base_dir=None) is None


def test_unknown_modality_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tabular"):
        cell_key(1.0, modality="tabular", base_dir=None)


def test_fingerprint_is_stable_and_order_free() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"p": Path("/x"), "t": (1, 2)}) == fingerprint({"p": "/x", "t": [1, 2]})
    assert fingerprint(np.float32(0.5)) == fingerprint(0.5)
    with pytest.raises(TypeError, match="object"):
        fingerprint({"x": object()})


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


class Other(Tiny):
    pass


def test_module_fingerprint_tracks_weights_buffers_options_and_class() -> None:
    a, b = Tiny(), Tiny()
    fp = module_fingerprint(a, {"model": "x"})
    assert fp == module_fingerprint(b, {"model": "x"})
    assert fp != module_fingerprint(a, {"model": "y"})
    assert fp != module_fingerprint(Other(), {"model": "x"})
    with torch.no_grad():
        b.lin.weight[0, 0] += 1e-6
    assert module_fingerprint(b, {"model": "x"}) != fp
    c = Tiny()
    c.norm.running_mean += 1.0  # a buffer, not a parameter
    assert module_fingerprint(c, {"model": "x"}) != fp
    assert module_fingerprint(Tiny().to(torch.bfloat16), {}) != module_fingerprint(Tiny(), {})


def test_namespace_depends_on_encoder_and_processor_state() -> None:
    ns = namespace("enc", {"config": {"size": 8}})
    assert ns == namespace("enc", {"config": {"size": 8}})
    assert ns != namespace("enc2", {"config": {"size": 8}})
    assert ns != namespace("enc", {"config": {"size": 16}})
