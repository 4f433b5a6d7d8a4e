"""predict(explain=True): per-row influence of each input and the top modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfuse.api import FusionPredictor
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def trained(toy_table: Path) -> FusionPredictor:
    return FusionPredictor(
        "label", config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False
    ).fit(toy_table, seed=0)


def test_explain_adds_influence_per_input_and_top_modality(trained, toy_table: Path) -> None:
    plain = trained.predict(toy_table)
    frame = trained.predict(toy_table, explain=True)
    assert list(frame["label"]) == list(plain)
    inputs = ["note", "picture", "tabular"]
    assert [c for c in frame.columns if c.startswith("influence_")] == [
        f"influence_{n}" for n in inputs
    ]
    influence = frame[[f"influence_{n}" for n in inputs]].to_numpy()
    top = np.array(inputs, dtype=object)[np.abs(influence).argmax(1)]
    assert (frame["top_modality"].to_numpy() == top).all()
    assert np.abs(influence).max() > 0.05  # inputs matter


def test_influence_is_the_drop_in_the_predicted_class_probability(trained, toy_table) -> None:
    df = pd.read_csv(toy_table).head(12)
    table_dir = Path(toy_table).parent
    df["picture"] = [str(table_dir / p) for p in df["picture"]]
    full = trained.predict_proba(df)
    without = df.assign(picture="")  # an empty cell: the image is absent
    hidden = trained.predict_proba(without)
    frame = trained.predict(df, explain=True)
    for i, label in enumerate(frame["label"]):
        expected = full.loc[i, label] - hidden.loc[i, label]
        assert frame.loc[i, "influence_picture"] == pytest.approx(expected, abs=1e-5)
    # rows where the picture is absent: no influence
    assert (trained.predict(without, explain=True)["influence_picture"] == 0).all()
