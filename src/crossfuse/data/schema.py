"""What each column of a table is: its modality, the label(s) and the task.

Inference looks at file extensions (and file contents when there is no extension),
dtypes, cardinality and text length, with column names as a tie-breaker. Every
decision carries a short reason so `crossfuse inspect` can explain itself, and any
column can be overridden by the user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfuse.data.magic import sniff
from crossfuse.data.shard_members import KEY_COLUMN, parse_shard_ref, read_member
from crossfuse.errors import CellError, SchemaError


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    IGNORE = "ignore"


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au"}
_NAME_HINTS = {
    Modality.TEXT: (
        "text",
        "caption",
        "description",
        "comment",
        "review",
        "title",
        "utterance",
        "sentence",
        "message",
        "question",
        "answer",
        "body",
    ),
    Modality.IMAGE: ("image", "img", "photo", "picture", "pixel"),
    Modality.AUDIO: ("audio", "sound", "wav", "speech", "voice", "recording"),
}
# Thresholds, named so the docs and the code agree.
MEDIA_FRACTION = 0.5  # share of non-empty cells that look like media paths
NUMERIC_FRACTION = 0.9  # share of non-empty cells that parse as numbers
MAX_CATEGORIES = 50  # more distinct short strings than this → text
CATEGORICAL_RATIO = 0.5  # distinct/non-empty above this → not categorical
TEXT_MIN_WORDS = 3.0  # mean words per cell at or above this → text
MAX_CLASSIFICATION_INTS = 20  # an integer label with at most this many values → classes


@dataclass
class Schema:
    """Modality of every column, the label column(s) and the task of each label."""

    columns: dict[str, Modality]
    labels: list[str]
    tasks: dict[str, Task]
    reasons: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = {c: Modality(m) for c, m in self.columns.items()}
        self.tasks = {c: Task(t) for c, t in self.tasks.items()}
        for label in self.labels:
            if label in self.columns:
                raise SchemaError(f"column {label!r} is both a label and an input")
            if label not in self.tasks:
                raise SchemaError(f"label {label!r} has no task")
        if not self.inputs():
            raise SchemaError("the schema has no input columns (all are ignored or labels)")

    def inputs(self, *modalities: Modality) -> list[str]:
        """Input columns (not ignored), optionally only those of the given modalities."""
        want = set(modalities) or set(Modality) - {Modality.IGNORE}
        return [c for c, m in self.columns.items() if m in want and m != Modality.IGNORE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": {c: str(m) for c, m in self.columns.items()},
            "labels": list(self.labels),
            "tasks": {c: str(t) for c, t in self.tasks.items()},
            "reasons": dict(self.reasons),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        return cls(
            columns=dict(d["columns"]),
            labels=list(d["labels"]),
            tasks=dict(d["tasks"]),
            reasons=dict(d.get("reasons", {})),
        )


def infer_schema(
    df: pd.DataFrame,
    label: str | Sequence[str],
    *,
    base_dir: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    task: str | Mapping[str, str] | None = None,
) -> Schema:
    """Infer the modality of every column of ``df`` and the task of each label.

    Args:
        df: the table.
        label: the label column, or several for multitask.
        base_dir: folder that relative media paths are relative to.
        overrides: ``{column: modality}`` chosen by the user; wins over inference.
        task: ``"classification"``/``"regression"`` for all labels, or per label.
    """
    labels = [label] if isinstance(label, str) else list(label)
    if not labels:
        raise SchemaError("no label column given")
    for col in labels:
        if col not in df.columns:
            raise SchemaError(
                f"label column {col!r} not in the table; "
                f"columns are: {', '.join(map(str, df.columns))}"
            )
    overrides = dict(overrides or {})
    for col, mod in overrides.items():
        if col not in df.columns:
            raise SchemaError(f"override names column {col!r}, which is not in the table")
        if mod not in set(Modality):
            raise SchemaError(
                f"override for {col!r} is {mod!r}; choose one of {', '.join(Modality)}"
            )
    columns: dict[str, Modality] = {}
    reasons: dict[str, str] = {}
    for col in df.columns:
        if col in labels:
            continue
        if col in overrides:
            columns[col], reasons[col] = Modality(overrides[col]), "set by user"
        else:
            columns[col], reasons[col] = infer_column(df[col], str(col), base_dir)
    tasks = {}
    for col in labels:
        wanted = task.get(col) if isinstance(task, Mapping) else task
        if wanted is not None:
            if wanted not in set(Task):
                raise SchemaError(
                    f"task for {col!r} is {wanted!r}; choose classification or regression"
                )
            tasks[col], reasons[col] = Task(wanted), "set by user"
        else:
            tasks[col], reasons[col] = infer_task(df[col])
    return Schema(columns=columns, labels=labels, tasks=tasks, reasons=reasons)


def infer_column(values: pd.Series, name: str, base_dir: Path | None) -> tuple[Modality, str]:
    """The modality of one column and the reason for it."""
    if name == KEY_COLUMN:
        return Modality.IGNORE, "sample key of tar shards (an identifier)"
    cells = values.dropna()
    if cells.dtype == object or pd.api.types.is_string_dtype(cells.dtype):
        cells = cells[cells.astype(str).str.strip() != ""]
    n = len(cells)
    if n == 0:
        return Modality.IGNORE, "every cell is empty"
    if pd.api.types.is_bool_dtype(cells.dtype):
        return Modality.CATEGORICAL, "boolean values"
    if pd.api.types.is_numeric_dtype(cells.dtype):
        return Modality.NUMERIC, f"numeric dtype ({cells.dtype})"

    strings = cells.astype(str).str.strip()
    media = _media_by_extension(strings)
    if media is not None:
        return media
    sniffed = _media_by_content(strings, base_dir)
    if sniffed is not None:
        return sniffed

    parsed = pd.to_numeric(strings, errors="coerce")
    share = float(parsed.notna().mean())
    if share >= NUMERIC_FRACTION:
        return Modality.NUMERIC, f"{share:.0%} of cells are numbers"

    n_unique = strings.nunique()
    words = float(strings.str.split().str.len().mean())
    hint = _name_hint(name)
    if n_unique == n and n > 1 and words < 1.5 and hint != Modality.TEXT:
        return Modality.IGNORE, f"identifier-like: all {n} values distinct single tokens"
    if words >= TEXT_MIN_WORDS:
        return Modality.TEXT, f"free text ({words:.1f} words per cell on average)"
    if hint == Modality.TEXT:
        return Modality.TEXT, f"short strings in a column named like text ({name!r})"
    if n_unique <= MAX_CATEGORIES and n_unique / n <= CATEGORICAL_RATIO:
        return Modality.CATEGORICAL, f"{n_unique} distinct values"
    return Modality.TEXT, f"{n_unique} distinct short strings"


def infer_task(values: pd.Series) -> tuple[Task, str]:
    """Classification for strings, booleans and few distinct integers; else regression."""
    cells = values.dropna()
    if len(cells) == 0:
        raise SchemaError(f"label column {values.name!r} is empty")
    if pd.api.types.is_bool_dtype(cells.dtype) or not pd.api.types.is_numeric_dtype(cells.dtype):
        parsed = pd.to_numeric(cells.astype(str), errors="coerce")
        if parsed.notna().all() and not pd.api.types.is_bool_dtype(cells.dtype):
            cells = parsed
        else:
            return Task.CLASSIFICATION, f"{cells.nunique()} distinct non-numeric labels"
    as_float = cells.astype(float).to_numpy()
    n_unique = len(np.unique(as_float))
    if np.all(np.mod(as_float, 1) == 0) and n_unique <= MAX_CLASSIFICATION_INTS:
        return Task.CLASSIFICATION, f"{n_unique} distinct integer labels"
    return Task.REGRESSION, f"{n_unique} distinct numeric labels"


def _media_by_extension(strings: pd.Series) -> tuple[Modality, str] | None:
    ext = strings.str.lower().str.extract(r"(\.[a-z0-9]{2,5})$", expand=False)
    for modality, exts in ((Modality.IMAGE, IMAGE_EXTENSIONS), (Modality.AUDIO, AUDIO_EXTENSIONS)):
        share = float(ext.isin(exts).mean())
        if share >= MEDIA_FRACTION:
            return modality, f"{share:.0%} of cells are {modality} file names"
    return None


def _media_by_content(strings: pd.Series, base_dir: Path | None) -> tuple[Modality, str] | None:
    """Sniff up to 20 existing files (or tar shard members) for image/audio magic bytes."""
    votes: dict[Modality, int] = {}
    checked = 0
    for cell in strings.head(20):
        path = Path(cell)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            if len(cell) > 4096:
                continue
            head: bytes
            if (ref := parse_shard_ref(cell)) is not None:
                head = bytes(read_member(ref, base_dir, limit=16))
            elif not path.is_file():
                continue
            else:
                with path.open("rb") as f:
                    head = f.read(16)
        except (OSError, CellError):
            continue
        checked += 1
        kind = sniff(head)
        if kind is not None:
            modality = Modality(kind.modality)
            votes[modality] = votes.get(modality, 0) + 1
    if not votes:
        return None
    modality, count = max(votes.items(), key=lambda kv: kv[1])
    if count / max(checked, 1) >= MEDIA_FRACTION:
        return modality, f"{count} of {checked} sampled files are {modality} by content"
    return None


def _name_hint(name: str) -> Modality | None:
    lowered = name.lower()
    for modality, words in _NAME_HINTS.items():
        if any(w in lowered for w in words):
            return modality
    return None
