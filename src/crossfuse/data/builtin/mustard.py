"""MUStARD (sarcasm in TV dialogue) as a crossfuse table: text + categorical columns.

Source: ``sarcasm_data.json`` of Castro et al. (ACL 2019), 690 utterances, 345
sarcastic. The audio and video features are not in the shared copy, so the table has
the utterance, its dialogue context, the speaker and the show. Splits are stratified
by label with a fixed seed (train 70% / valid 10% / test 20%).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from crossfuse.errors import ConfigError, TableError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class MustardBuild:
    """Where the tables were written and how many rows each has."""

    out_dir: Path
    tables: dict[str, Path]
    counts: dict[str, int]


def load_mustard(src: str | Path) -> pd.DataFrame:
    """The annotations as one row per utterance (columns: id, utterance, context, speaker,
    context_speakers, show, sarcasm)."""
    folder = Path(src)
    path = folder / "sarcasm_data.json" if folder.is_dir() else folder
    if not path.is_file():
        raise TableError(f"MUStARD annotations not found at {path} (expected sarcasm_data.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TableError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    rows = []
    for key, item in data.items():
        try:
            rows.append({
                "id": key,
                "utterance": item["utterance"],
                "context": " ".join(item.get("context", [])),
                "speaker": item["speaker"],
                "context_speakers": " ".join(sorted(set(item.get("context_speakers", [])))),
                "show": item["show"],
                "sarcasm": bool(item["sarcasm"]),
            })
        except (KeyError, TypeError) as e:
            raise TableError(f"{path}, entry {key!r}: missing field {e}") from None
    return pd.DataFrame(rows)


def build_mustard(
    out_dir: str | Path, *, src: str | Path, seed: int = 0, valid: float = 0.1, test: float = 0.2
) -> MustardBuild:
    """Write ``train.csv``, ``valid.csv`` and ``test.csv`` (stratified by label)."""
    if not (0 < valid < 0.5 and 0 < test < 0.5):
        raise ConfigError("valid and test fractions must each be in (0, 0.5)")
    df = load_mustard(src).drop(columns=["id"])
    rows = np.arange(len(df))
    rest, test_rows = train_test_split(rows, test_size=test, random_state=seed,
                                       stratify=df["sarcasm"])
    train_rows, valid_rows = train_test_split(
        rest, test_size=valid / (1 - test), random_state=seed, stratify=df["sarcasm"].iloc[rest]
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables, counts = {}, {}
    for name, idx in zip(SPLITS, (train_rows, valid_rows, test_rows), strict=True):
        tables[name] = out / f"{name}.csv"
        df.iloc[np.sort(idx)].to_csv(tables[name], index=False)
        counts[name] = len(idx)
    return MustardBuild(out, tables, counts)
