"""The SQLite embedding store: round trips, namespaces, pickling and multi-process writes."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import sqlite3
import time
from pathlib import Path

import pytest
import torch

from crossfuse.cache.store import CachedItem, EmbeddingStore
from crossfuse.errors import ConfigError

D = 16


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def item(seed: int, length: int | None = None) -> CachedItem:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(D, generator=g) * 3
    if length is None:
        return CachedItem(pooled)
    mask = torch.ones(length, dtype=torch.bool)
    mask[-1] = length == 1
    return CachedItem(pooled, torch.randn(length, D, generator=g), mask)


def test_float16_round_trip_within_1e3_relative(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "c")
    items = {"a": item(0), "b": item(1, length=5)}
    store.put_many("ns", items)
    got = store.get_many("ns", ["a", "b", "nope"])
    assert set(got) == {"a", "b"}
    assert got["a"].tokens is None and got["a"].token_mask is None
    for key, want in items.items():
        assert got[key].pooled.dtype == torch.float32 and got[key].pooled.shape == (D,)
        torch.testing.assert_close(got[key].pooled, want.pooled, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(got["b"].tokens, items["b"].tokens, rtol=1e-3, atol=1e-4)
    assert got["b"].token_mask.dtype == torch.bool
    assert got["b"].token_mask.tolist() == [True] * 4 + [False]
    assert (tmp_path / "c" / "cache.sqlite").exists()


def test_float32_is_exact_and_overflowing_float16_rows_stay_float32(tmp_path: Path) -> None:
    exact = EmbeddingStore(tmp_path, dtype="float32")
    want = item(3, length=2)
    exact.put_many("ns", {"k": want})
    assert torch.equal(exact.get_many("ns", ["k"])["k"].tokens, want.tokens)
    half = EmbeddingStore(tmp_path)
    big = CachedItem(torch.tensor([1e6, 0.5]))
    half.put_many("ns", {"big": big, "small": CachedItem(torch.tensor([1.0, 0.5]))})
    got = half.get_many("ns", ["big"])["big"].pooled
    assert torch.equal(got, big.pooled)  # no inf
    con = sqlite3.connect(tmp_path / "cache.sqlite")
    dtypes = dict(con.execute("SELECT key, dtype FROM features").fetchall())
    assert dtypes == {"k": "float32", "big": "float32", "small": "float16"}
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_namespaces_contains_count_replace_and_clear(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    assert store.size_bytes() == 0 and store.count() == 0
    store.put_many("one", {f"k{i}": item(i) for i in range(600)})  # > one SELECT chunk
    store.put_many("two", {"k0": item(99, length=3), "k1": item(98)})
    assert (
        store.count() == 602
        and store.count("one") == 600
        and store.namespaces()
        == [
            "one",
            "two",
        ]
    )
    assert len(store.get_many("one", [f"k{i}" for i in range(600)])) == 600
    assert store.contains("two", ["k0", "k1", "k2"]) == {"k0", "k1"}
    assert store.contains("two", ["k0", "k1"], with_tokens=True) == {"k0"}
    assert store.shape("two") in ({"pooled": [D], "tokens": [3, D]}, {"pooled": [D]})
    assert store.shape("three") is None
    replaced = item(7)
    store.put_many("one", {"k0": replaced})  # INSERT OR REPLACE
    assert store.count("one") == 600
    torch.testing.assert_close(
        store.get_many("one", ["k0"])["k0"].pooled, replaced.pooled, rtol=1e-3, atol=1e-4
    )
    full = store.size_bytes()
    store.clear("two")
    assert store.count("two") == 0 and store.count("one") == 600
    store.clear()
    assert store.count() == 0 and store.get_many("one", ["k1"]) == {}
    assert store.size_bytes() < full / 2  # pages and log given back


def test_store_pickles_and_reconnects(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, dtype="float32")
    store.put_many("ns", {"a": item(0)})  # the connection is open now
    copy = pickle.loads(pickle.dumps(store))
    assert copy._conn is None and copy.dtype == "float32" and copy.directory == tmp_path
    assert torch.equal(copy.get_many("ns", ["a"])["a"].pooled, item(0).pooled)
    copy.put_many("ns", {"b": item(1)})
    assert store.count("ns") == 2
    store.close()
    assert store.count("ns") == 2  # reopens lazily


def test_bad_options_and_items_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="float16"):
        EmbeddingStore(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="pooled"):
        CachedItem(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="token_mask"):
        CachedItem(torch.zeros(3), torch.zeros(4, 3), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="without tokens"):
        CachedItem(torch.zeros(3), None, torch.ones(5, dtype=torch.bool))


def writer_item(writer: int, key: int) -> CachedItem:
    """Rows whose parts all carry the writer's mark, so a torn row would show."""
    value = float(writer * 100 + key)  # exact in float16
    length = 2 + writer
    return CachedItem(
        torch.full((D,), value), torch.full((length, D), value), torch.ones(length, dtype=bool)
    )


def intact(key: str, got: CachedItem) -> bool:
    value = float(got.pooled[0])
    writer = int(value) // 100
    return (
        writer in (1, 2)
        and int(value) % 100 == int(key[1:])
        and torch.all(got.pooled == value)
        and got.tokens is not None
        and got.tokens.shape == (2 + writer, D)
        and torch.all(got.tokens == value)
        and bool(got.token_mask.all())
    )


def write_rounds(directory: str, writer: int, rounds: int, first: int = 0) -> None:
    """Write batches of 25 keys, one transaction each; writer 1 owns k0-k39, 2 owns k20-k59."""
    store = EmbeddingStore(directory)
    for r in range(first, first + rounds):
        keys = [20 * (writer - 1) + (r * 7 + j) % 40 for j in range(25)]
        store.put_many("ns", {f"k{k}": writer_item(writer, k) for k in keys})


def test_two_processes_write_overlapping_keys_without_torn_rows(tmp_path: Path) -> None:
    """A spawned child and this process write the same keys at once; this one also reads."""
    directory = tmp_path / "shared"
    child = mp.get_context("spawn").Process(target=write_rounds, args=(str(directory), 2, 300))
    child.start()
    store = EmbeddingStore(directory)
    keys = [f"k{i}" for i in range(60)]
    rounds = 0
    while child.is_alive() or rounds < 30:
        write_rounds(str(directory), 1, 1, first=rounds)
        got = store.get_many("ns", keys)
        assert all(intact(k, v) for k, v in got.items())
        rounds += 1
        time.sleep(0.01)  # leave CPU to the child, which starts slowly under spawn
    child.join(timeout=60)
    assert child.exitcode == 0
    got = store.get_many("ns", keys)
    assert set(got) == set(keys) and all(intact(k, v) for k, v in got.items())
    writers = {k: int(v.pooled[0]) // 100 for k, v in got.items()}
    assert {writers[f"k{i}"] for i in range(20)} == {1}  # only writer 1 writes these
    assert {writers[f"k{i}"] for i in range(40, 60)} == {2}  # only the child writes these
