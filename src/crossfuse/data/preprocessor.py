"""The fitted preprocessing of a whole table: one processor per input, one encoder per label.

Fitted on the training split only and saved (as JSON) with the model, so prediction
applies exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

from typing import Any

from crossfuse.config import DataConfig, from_dict, to_dict
from crossfuse.data import (  # noqa: F401  (importing registers the column processors)
    audio,
    hf_image_processor,
    hf_text_processor,
    image,
    text,
    waveform,
)
from crossfuse.data.labels import LabelEncoder
from crossfuse.data.processor import ColumnProcessor, processor_class
from crossfuse.data.schema import Modality, Schema
from crossfuse.data.table import Table
from crossfuse.data.tabular import TabularProcessor
from crossfuse.errors import SchemaError

TABULAR = "tabular"  # name of the input that groups numeric and categorical columns
_MEDIA = (Modality.TEXT, Modality.IMAGE, Modality.AUDIO)


ProcessorChoice = tuple[str, dict[str, Any]]  # (registered processor name, config overrides)


class Preprocessor:
    """Per-input processors plus label encoders for one schema.

    Args:
        schema: the table's schema.
        config: per-modality preprocessing settings.
        processors: for some columns, a processor other than the modality's default
            and config overrides for it, e.g. ``{"photo": ("image", {"size": 224})}`` or
            ``{"caption": ("hf-text", {"model": "path/to/model"})}``; chosen by the
            encoders (a pretrained encoder needs its own preprocessing).
    """

    def __init__(
        self,
        schema: Schema,
        config: DataConfig | None = None,
        processors: dict[str, ProcessorChoice] | None = None,
    ) -> None:
        self.schema = schema
        self.config = config or DataConfig()
        self.choices = dict(processors or {})
        self.columns: dict[str, ColumnProcessor] = {}
        for col in schema.inputs(*_MEDIA):
            if col == TABULAR:
                raise SchemaError(f"a {schema.columns[col]} column may not be named {TABULAR!r}")
            self.columns[col] = self._build(col)
        numeric = schema.inputs(Modality.NUMERIC)
        categorical = schema.inputs(Modality.CATEGORICAL)
        self.tabular: TabularProcessor | None = (
            TabularProcessor(numeric, categorical, self.config.tabular)
            if numeric or categorical
            else None
        )
        self.labels = {c: LabelEncoder(c, schema.tasks[c]) for c in schema.labels}

    def _build(self, col: str) -> ColumnProcessor:
        modality = str(self.schema.columns[col])
        name, overrides = self.choices.get(col, (modality, {}))
        cls = processor_class(name)
        if cls.modality != modality:
            raise SchemaError(
                f"processor {name!r} is for {cls.modality} columns; {col!r} is {modality}"
            )
        base = getattr(self.config, modality)
        settings = to_dict(base) if isinstance(base, cls.config_class) else {}
        return cls(from_dict(cls.config_class, {**settings, **overrides}, path=f"data.{col}"))

    @property
    def inputs(self) -> dict[str, str]:
        """Input name → modality; numeric and categorical columns form one tabular input."""
        out = {col: str(self.schema.columns[col]) for col in self.columns}
        if self.tabular is not None:
            out[TABULAR] = TABULAR
        return out

    def fit(self, table: Table, *, labels: bool = True) -> Preprocessor:
        """Learn vocabularies, statistics and classes from the training table."""
        df = table.df
        for col, proc in self.columns.items():
            proc.fit(list(df[col]), base_dir=table.base_dir)
        if self.tabular is not None:
            self.tabular.fit(df)
        if labels:
            for col, enc in self.labels.items():
                enc.fit(list(df[col]))
        return self

    def check_columns(self, table: Table, *, need_labels: bool) -> None:
        """Fail clearly when a table lacks a column this preprocessing needs."""
        need = list(self.columns) + (self.tabular.columns if self.tabular else [])
        if need_labels:
            need += list(self.labels)
        missing = [c for c in need if c not in table.df.columns]
        if missing:
            raise SchemaError(
                f"table {table.name} lacks column(s) {', '.join(map(repr, missing))} "
                "that the model was trained with"
            )

    def get_state(self) -> dict[str, Any]:
        return {
            "schema": self.schema.to_dict(),
            "config": to_dict(self.config),
            "choices": {c: [n, o] for c, (n, o) in self.choices.items()},
            "columns": {
                c: {"processor": p.processor_name, **p.get_state()} for c, p in self.columns.items()
            },
            "tabular": self.tabular.get_state() if self.tabular else None,
            "labels": {c: e.get_state() for c, e in self.labels.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessor:
        choices = {c: (n, dict(o)) for c, (n, o) in state.get("choices", {}).items()}
        pre = cls(
            Schema.from_dict(state["schema"]), from_dict(DataConfig, state["config"]), choices
        )
        for col, proc_state in state["columns"].items():
            proc_state = dict(proc_state)
            name = proc_state.pop("processor")
            pre.columns[col] = processor_class(name).from_state(proc_state)
        if state["tabular"] is not None:
            pre.tabular = TabularProcessor.from_state(state["tabular"])
        pre.labels = {c: LabelEncoder.from_state(s) for c, s in state["labels"].items()}
        return pre
