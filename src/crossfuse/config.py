"""Dataclass configs, and their conversion to and from plain dicts / YAML.

Configs are nested dataclasses; unknown keys and bad values fail with a message that
names the offending key path (e.g. ``data.image.size``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crossfuse.data.audio import AudioConfig
from crossfuse.data.image import ImageConfig
from crossfuse.data.tabular import TabularConfig
from crossfuse.data.text import TextConfig
from crossfuse.errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    """Preprocessing of each modality, and how bad cells are treated."""

    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)
    strict: bool = False  # True: any unusable cell is an error instead of an absent modality


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain, JSON/YAML-friendly data."""
    return _plain(dataclasses.asdict(config))


def from_dict(cls: type[T], data: dict[str, Any] | None, *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclasses are built recursively.

    Raises:
        ConfigError: unknown key, wrong type, or a value the dataclass rejects.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"unknown key {unknown[0]!r}{where}; expected one of: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    except TypeError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must contain a mapping at the top level")
    return data


def dump_yaml(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


def _convert(hint: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping")
        return from_dict(hint, value, path=path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path) if len(inner) == 1 else value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, bool, str) and not isinstance(value, hint):
        raise ConfigError(f"{path} must be {hint.__name__}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
