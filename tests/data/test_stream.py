"""Chunked reading: the same rows as the whole-file reader, lazily, with the same checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfuse.data.stream import iter_table
from crossfuse.data.table import read_table
from crossfuse.errors import ConfigError, TableError


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "text": [f"row {i}" for i in range(23)],
            "x": rng.normal(size=23).round(4),
            "image": [f"img{i}.png" for i in range(23)],
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    elif path.suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_chunks_concatenate_to_the_whole_table(frame, tmp_path: Path, suffix: str) -> None:
    path = write(frame, tmp_path / f"t{suffix}")
    chunks = list(iter_table(path, chunk_rows=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert all(c.base_dir == tmp_path.resolve() for c in chunks)
    assert all(list(c.df.index) == list(range(len(c))) for c in chunks)
    whole = pd.concat([c.df for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(whole, read_table(path).df, check_dtype=False)


def test_in_memory_tables_are_sliced(frame) -> None:
    chunks = list(iter_table(frame, chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 3]
    assert chunks[1].df["text"].iloc[0] == "row 10"


def test_csv_is_read_lazily(frame, tmp_path: Path) -> None:
    path = write(frame, tmp_path / "t.csv")
    with path.open("a") as f:
        f.write('"unterminated,1,2\n' * 3)  # broken only at the end of the file
    chunks = iter_table(path, chunk_rows=5)
    assert len(next(chunks)) == 5  # the first rows arrive before the end is ever read
    with pytest.raises(TableError, match="malformed"):
        list(chunks)


def test_the_whole_file_readers_checks_still_apply(tmp_path: Path) -> None:
    dupes = tmp_path / "d.csv"
    dupes.write_text("a,a\n1,2\n")
    with pytest.raises(TableError, match="duplicate column names"):
        list(iter_table(dupes))
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(TableError, match="empty"):
        list(iter_table(empty))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(TableError, match="line 2"):
        list(iter_table(bad, chunk_rows=1))
    with pytest.raises(TableError, match="not found"):
        list(iter_table(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="chunk_rows"):
        list(iter_table(dupes, chunk_rows=0))
