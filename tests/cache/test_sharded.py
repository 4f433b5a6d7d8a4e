"""precompute_sharded: ranks split the encoding, and every node's store ends up complete."""

from __future__ import annotations

import json
from pathlib import Path

from crossfuse.cache import EmbeddingStore, precompute
from crossfuse.cache.sharded import RankGroup, precompute_sharded
from crossfuse.data.image import ImageConfig, ImageProcessor
from tests.cache.test_precompute import CountingImageEncoder
from tests.conftest import write_png
from tests.distributed import run_ranks

NS = "test-namespace"


def _write_media(folder: Path) -> None:
    """Written once, before the ranks start (ranks rewriting them would race readers)."""
    for i in range(9):
        write_png(folder / f"img{i}.png", 20 * i, size=12)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")


def _cells(folder: Path) -> list:
    cells = [f"img{i}.png" for i in range(9)]
    return [*cells, cells[0], "broken.png", None, cells[3]]  # duplicates, a bad cell, a gap


def _rank(rank: int, world: int, folder: Path) -> None:
    # each rank is its own "node": its own store, and it writes it (local rank 0)
    store = EmbeddingStore(folder / f"node{rank}")
    if rank == 1:  # node 1 already holds two cells from an earlier run
        precompute(
            CountingImageEncoder(tokens=False),
            ImageProcessor(ImageConfig(size=8, channels=1)),
            _cells(folder)[:2],
            modality="image",
            base_dir=folder,
            store=store,
            namespace=NS,
        )
    encoder = CountingImageEncoder(tokens=False)
    group = RankGroup(rank, world, writer=True)
    result = precompute_sharded(
        encoder,
        ImageProcessor(ImageConfig(size=8, channels=1)),
        _cells(folder),
        modality="image",
        base_dir=folder,
        store=store,
        namespace=NS,
        group=group,
        batch_size=2,
    )
    present = [k for k in result.keys if k is not None]
    (folder / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "rows_encoded_here": encoder.rows,
                "encoded": result.encoded,
                "reused": result.reused,
                "absent": result.absent,
                "keys": result.keys,
                "stored": len(store.contains(NS, present)),
            }
        )
    )


def test_two_ranks_encode_disjoint_shares_and_both_stores_are_complete(tmp_path):
    _write_media(tmp_path)
    run_ranks(_rank, 2, tmp_path, tmp_path)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 9 distinct images; node 1 had 2 of them, node 0 none → all 9 are needed somewhere
    assert [g["rows_encoded_here"] for g in got] == [5, 4]  # each cell encoded once in all
    assert got[0]["keys"] == got[1]["keys"]
    assert got[0]["keys"][10] is None and got[0]["keys"][11] is None  # broken file, gap
    for g in got:
        assert (g["encoded"], g["reused"], g["absent"]) == (9, 2, 2)
        assert g["stored"] == 9  # every node can now read every row from its own store


def test_current_group_is_none_outside_a_process_group():
    assert RankGroup.current(local_rank=0) is None
