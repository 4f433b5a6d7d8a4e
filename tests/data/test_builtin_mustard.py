import json
from pathlib import Path

import pandas as pd
import pytest

from crossfuse.data.builtin.mustard import build_mustard, load_mustard
from crossfuse.data.inspect import inspect_table
from crossfuse.errors import TableError
from tests.conftest import shared_data_dir


def fake_mustard(folder: Path, n: int = 40) -> Path:
    data = {
        f"{i}_x": {
            "utterance": f"oh sure, that is {'totally' if i % 2 else 'not'} great number {i}",
            "speaker": ["SHELDON", "PENNY", "CHANDLER"][i % 3],
            "context": ["what do you think?", "about the plan"],
            "context_speakers": ["LEONARD", "PENNY"],
            "show": ["BBT", "FRIENDS"][i % 2],
            "sarcasm": bool(i % 2),
        }
        for i in range(n)
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sarcasm_data.json").write_text(json.dumps(data))
    return folder


def test_build_writes_stratified_splits_and_inspect_reads_them(tmp_path: Path) -> None:
    build = build_mustard(tmp_path / "out", src=fake_mustard(tmp_path / "src"))
    assert build.counts == {"train": 28, "valid": 4, "test": 8}
    train = pd.read_csv(build.tables["train"])
    assert train["sarcasm"].mean() == 0.5
    report = inspect_table(build.tables["train"], "sarcasm")
    cols = {c: str(m) for c, m in report.schema.columns.items()}
    assert cols["utterance"] == "text" and cols["context"] == "text"
    assert cols["speaker"] == "categorical" and cols["show"] == "categorical"
    assert str(report.schema.tasks["sarcasm"]) == "classification"


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="not found"):
        load_mustard(tmp_path)
    (tmp_path / "sarcasm_data.json").write_text('{"a": {"utterance": "x"}}')
    with pytest.raises(TableError, match="missing field"):
        load_mustard(tmp_path)


@pytest.mark.realdata
def test_real_mustard_has_690_balanced_rows() -> None:
    src = shared_data_dir() / "mustard"
    if not src.is_dir():
        pytest.skip(f"shared MUStARD copy not found at {src}")
    df = load_mustard(src)
    assert len(df) == 690 and int(df["sarcasm"].sum()) == 345
