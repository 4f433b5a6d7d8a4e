from pathlib import Path

import pandas as pd
import pytest

from crossfuse.data.table import read_table
from crossfuse.errors import TableError

DF = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_reads_every_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        DF.to_csv(path, index=False)
    elif suffix == ".tsv":
        DF.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        DF.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        DF.to_json(path, orient="records")
    else:
        DF.to_parquet(path)
    table = read_table(path)
    assert list(table.df.columns) == ["a", "b"]
    assert table.df["a"].tolist() == [1, 2, 3]
    assert table.base_dir == tmp_path.resolve()
    assert str(path) in table.name


def test_dataframe_gets_fresh_index(tmp_path: Path) -> None:
    table = read_table(DF.set_index(pd.Index([10, 20, 30])), base_dir=tmp_path)
    assert table.df.index.tolist() == [0, 1, 2]
    assert table.base_dir == tmp_path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.csv", None, "not found"),
        ("empty.csv", "", "empty"),
        ("ragged.csv", "a,b\n1,2\n3,4,5,6\n", "malformed"),
        ("bad.jsonl", '{"a": 1}\n{"a": \n', "line 2"),
        ("list.jsonl", '{"a": 1}\n[1, 2]\n', "line 2"),
        ("table.xlsx", "x", "unknown format"),
        ("bad.parquet", "not parquet", "Parquet"),
        ("dupes.csv", "a,a\n1,2\n", "duplicate column"),
    ],
)
def test_malformed_tables_name_the_problem(tmp_path: Path, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(TableError, match=message) as info:
        read_table(path)
    assert name in str(info.value)


def test_directory_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="directory"):
        read_table(tmp_path)
