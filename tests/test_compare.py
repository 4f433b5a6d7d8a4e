"""compare_fusions: same data and seeds per fusion; metrics, timing, robustness, table."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfuse.api import FusionPredictor
from crossfuse.compare import CompareOptions, compare_fusions, markdown_table
from crossfuse.errors import ConfigError
from tests.conftest import TINY_CONFIG


def make(fusion: str) -> FusionPredictor:
    return FusionPredictor(
        "label", fusion=fusion, config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False
    )


@pytest.fixture(scope="module")
def result(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    options = CompareOptions(
        fusions=["concat", "late"],
        seeds=[0, 1],
        corruptions={"image": ["missing", "blur"], "text": ["missing"], "tabular": ["drop"]},
        levels=[0.0, 0.5, 0.9],
        epochs=3,
        save_dir=tmp_path_factory.mktemp("models"),
    )
    return compare_fusions("label", toy_table, toy_table, options, make_predictor=make)


def test_every_fusion_and_seed_is_run_and_summarised(result: dict) -> None:
    assert [(r["fusion"], r["seed"]) for r in result["runs"]] == [
        ("concat", 0),
        ("late", 0),
        ("concat", 1),
        ("late", 1),
    ]
    assert result["metric"] == "accuracy"
    for run in result["runs"]:
        assert 0.5 < run["value"] <= 1.0 and run["epochs"] == 3
        assert run["parameters"] > run["fusion_parameters"] > 0
        assert run["infer_ms_per_sample"] > 0 and run["train_seconds"] > 0
        assert 0.0 <= run["robustness_auc"] <= 1.0
    summary = {r["fusion"]: r for r in result["summary"]}
    concat = [r["value"] for r in result["runs"] if r["fusion"] == "concat"]
    assert summary["concat"]["value"] == pytest.approx(sum(concat) / 2)
    assert summary["concat"]["seeds"] == 2


def test_effective_robustness_is_measured_against_late(result: dict) -> None:
    for run in result["runs"]:
        if run["fusion"] == "late":
            assert run["effective_robustness"] == pytest.approx(0.0, abs=1e-12)
        else:
            assert isinstance(run["effective_robustness"], float)
    curves = result["curves"]["concat/seed0"]
    assert set(curves["curves"]["picture"]) == {"missing", "blur"}
    assert curves["reference"]["name"] == "late"


def test_saved_models_carry_their_report(result: dict) -> None:
    for run in result["runs"]:
        folder = Path(run["model_dir"])
        assert (folder / "crossfuse.json").exists()
        html = (folder / "report.html").read_text()
        assert 'id="robustness"' in html and 'id="contributions"' in html


def test_markdown_table_has_a_row_per_fusion(result: dict) -> None:
    md = markdown_table(result)
    assert md.splitlines()[0].startswith("| fusion | accuracy |")
    assert [line.split("|")[1].strip() for line in md.splitlines()[2:]] == ["concat", "late"]
    assert "±" in md


def test_unknown_fusion_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such"):
        CompareOptions(fusions=["concat", "no-such"])
