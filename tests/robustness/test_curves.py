"""Robustness curves on a trained toy model: levels, missing inputs, summaries, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossfuse.api import FusionPredictor
from crossfuse.errors import ConfigError
from crossfuse.robustness.curves import MISSING
from tests.conftest import TINY_CONFIG

LEVELS = [0.0, 0.3, 0.6, 0.9]


@pytest.fixture(scope="module")
def picture_only(toy_table: Path) -> FusionPredictor:
    """A model that sees only the image, so hiding or corrupting it must hurt."""
    ignore = {"note": "ignore", "x": "ignore", "score": "ignore"}
    return FusionPredictor("label", config=TINY_CONFIG, modalities=ignore, progress=False).fit(
        toy_table, seed=0
    )


@pytest.fixture(scope="module")
def curves(picture_only: FusionPredictor, toy_table: Path) -> dict:
    chosen = {"image": [MISSING, "gaussian-noise", "occlusion"]}
    return picture_only.evaluate(toy_table, robustness=True, corruptions=chosen, levels=LEVELS)


def test_curves_cover_every_level_and_start_clean(curves: dict) -> None:
    rob = curves["robustness"]
    assert rob["metric"] == "accuracy" and rob["levels"] == LEVELS
    assert rob["clean"] == pytest.approx(curves["tasks"]["label"]["accuracy"])
    assert set(rob["curves"]) == {"picture"}
    assert list(rob["curves"]["picture"]) == [MISSING, "gaussian-noise", "occlusion"]
    for curve in rob["curves"]["picture"].values():
        assert len(curve) == len(LEVELS) and curve[0] == rob["clean"]
    assert set(rob["descriptions"]) >= {MISSING, "gaussian-noise", "occlusion"}


def test_hiding_the_only_input_falls_towards_chance(curves: dict) -> None:
    rob = curves["robustness"]
    missing = rob["curves"]["picture"][MISSING]
    assert rob["clean"] > 0.85
    assert missing[-1] < rob["clean"] - 0.25  # 90% of rows see no input at all
    assert all(b <= a + 0.02 for a, b in zip(missing, missing[1:], strict=False))


def test_auc_is_the_normalised_area(curves: dict) -> None:
    rob = curves["robustness"]
    for corruption, curve in rob["curves"]["picture"].items():
        expected = np.trapezoid(curve, LEVELS) / 0.9
        assert rob["auc"]["picture"][corruption] == pytest.approx(expected)
    assert rob["auc_mean"]["picture"] == pytest.approx(
        np.mean(list(rob["auc"]["picture"].values()))
    )


def test_same_seed_same_curves_and_reference_gap(picture_only, toy_table: Path) -> None:
    chosen = {"image": ["gaussian-noise"]}
    first = picture_only.robustness(toy_table, corruptions=chosen, levels=LEVELS, seed=3)
    again = picture_only.robustness(
        toy_table, corruptions=chosen, levels=LEVELS, seed=3, reference=first
    )
    assert again["curves"] == first["curves"]
    assert again["effective"]["picture"]["gaussian-noise"] == pytest.approx(0.0, abs=1e-12)
    assert again["reference"]["curves"] == first["curves"]


def test_bad_levels_and_unknown_corruptions_are_config_errors(picture_only, toy_table) -> None:
    with pytest.raises(ConfigError, match="levels"):
        picture_only.robustness(toy_table, levels=[0.5, 0.2])
    with pytest.raises(ConfigError, match="gaussian-noise"):
        picture_only.robustness(toy_table, corruptions={"image": ["no-such-thing"]})


def test_a_level_equals_evaluating_a_table_with_those_rows_corrupted(
    picture_only, toy_table: Path
) -> None:
    import pandas as pd

    from crossfuse.data.table import read_table
    from crossfuse.robustness.corruptions import corrupt_column

    table = read_table(toy_table)
    n, level, seed = len(table), 0.6, 5
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    chosen = rank < round(level * n)
    result = picture_only.robustness(
        table, corruptions={"image": [MISSING, "occlusion"]}, levels=[0.0, level], seed=seed
    )
    df = table.df.copy()
    df.loc[chosen, "picture"] = ""
    hidden = picture_only.evaluate(read_table(df, base_dir=table.base_dir))
    assert result["curves"]["picture"][MISSING][1] == pytest.approx(
        hidden["tasks"]["label"]["accuracy"]
    )
    cells = corrupt_column(
        table.df["picture"].to_numpy(dtype=object),
        "occlusion",
        "image",
        chosen,
        base_dir=table.base_dir,
        seed=seed,
    )
    occluded = pd.DataFrame(
        {**{c: table.df[c] for c in table.df}, "picture": pd.Series(cells, dtype=object)}
    )
    scored = picture_only.evaluate(read_table(occluded, base_dir=table.base_dir))
    assert result["curves"]["picture"]["occlusion"][1] == pytest.approx(
        scored["tasks"]["label"]["accuracy"]
    )
