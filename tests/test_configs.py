"""Every recipe in configs/ parses and validates; the demo recipe matches the demo's config."""

from pathlib import Path

import pytest

from crossfuse.config import CrossfuseConfig, from_dict, to_dict
from crossfuse.demo import DEMO_CONFIG
from crossfuse.errors import ConfigError
from crossfuse.recipe import load_recipe

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses(path: Path) -> None:
    recipe = load_recipe(path)
    assert isinstance(recipe.config, CrossfuseConfig)


def test_demo_recipe_matches_demo_config() -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    assert to_dict(recipe.config) == to_dict(from_dict(CrossfuseConfig, DEMO_CONFIG))


def test_bad_keys_name_their_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoders:\n    image: {dimm: 3}\n")
    with pytest.raises(ConfigError, match="dimm.*encoders.image"):
        load_recipe(bad)
    bad.write_text("train: {epochs: -1}\n")
    with pytest.raises(ConfigError, match="epochs"):
        load_recipe(bad)
    bad.write_text("labell: y\n")
    with pytest.raises(ConfigError, match="labell"):
        load_recipe(bad)
