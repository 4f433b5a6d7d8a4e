"""Recipes: YAML files that say what to train on and how (see configs/).

A recipe holds the :class:`~crossfuse.config.CrossfuseConfig` sections (``data``,
``model``, ``train``) plus what a training run needs besides: ``label``,
``problem_type``, ``modalities`` (column → modality overrides) and the tables
(``train_table``, ``valid_table``, relative to the recipe file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfuse.config import CrossfuseConfig, from_dict, load_yaml
from crossfuse.errors import ConfigError

RUN_KEYS = ("label", "problem_type", "modalities", "train_table", "valid_table")


@dataclass
class Recipe:
    """A parsed recipe: the run's settings and a validated config."""

    config: CrossfuseConfig = field(default_factory=CrossfuseConfig)
    label: str | list[str] | None = None
    problem_type: str | None = None
    modalities: dict[str, str] = field(default_factory=dict)
    train_table: Path | None = None
    valid_table: Path | None = None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; table paths are made relative to the file."""
    p = Path(path)
    data = load_yaml(p)
    return recipe_from_dict(data, base=p.resolve().parent, source=str(p))


def recipe_from_dict(data: dict[str, Any], *, base: Path, source: str = "recipe") -> Recipe:
    unknown = sorted(set(data) - set(RUN_KEYS) - {"data", "model", "train"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; expected data, model, train or "
            f"{', '.join(RUN_KEYS)}"
        )
    config = from_dict(
        CrossfuseConfig, {k: data[k] for k in ("data", "model", "train") if k in data}
    )
    modalities = data.get("modalities") or {}
    if not isinstance(modalities, dict):
        raise ConfigError(f"{source}: modalities must map column names to modalities")

    def table(key: str) -> Path | None:
        return (base / data[key]) if data.get(key) else None

    return Recipe(
        config=config,
        label=data.get("label"),
        problem_type=data.get("problem_type"),
        modalities={str(k): str(v) for k, v in modalities.items()},
        train_table=table("train_table"),
        valid_table=table("valid_table"),
    )
