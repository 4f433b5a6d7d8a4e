"""evaluate --robustness, report and compare from the command line."""

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.test_cli_data import run
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "modalities": {"score": "ignore"}}))
    return path


@pytest.fixture(scope="module")
def model_dir(toy_table: Path, recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("analysis") / "model"
    args = ["train", "-c", str(recipe), "--train", str(toy_table), "--label", "label"]
    result = run(*args, "--epochs", "3", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return out


def test_train_writes_a_report(model_dir: Path) -> None:
    html = (model_dir / "report.html").read_text()
    assert 'id="training"' in html and 'id="summary"' in html


def test_evaluate_robustness_json_and_report(model_dir: Path, toy_table: Path) -> None:
    result = run(
        "evaluate",
        str(model_dir),
        "--data",
        str(toy_table),
        "--robustness",
        "--corruption",
        "image=blur,occlusion",
        "--corruption",
        "text=missing",
        "--corruption",
        "tabular=drop",
        "--levels",
        "0,0.5,0.9",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rob = json.loads(result.stdout)["robustness"]
    assert rob["levels"] == [0.0, 0.5, 0.9]
    assert rob["curves"]["picture"].keys() == {"blur", "occlusion"}
    assert rob["curves"]["note"].keys() == {"missing"}
    assert rob["curves"]["tabular"].keys() == {"drop"}
    html = (model_dir / "report.html").read_text()
    assert "occlusion" in html and 'id="robustness"' in html


def test_evaluate_robustness_table(model_dir: Path, toy_table: Path) -> None:
    result = run(
        "evaluate",
        str(model_dir),
        "--data",
        str(toy_table),
        "--robustness",
        "--no-report",
        "--corruption",
        "image=missing",
        "--corruption",
        "text=char-swap",
        "--corruption",
        "tabular=swap",
        "--levels",
        "0,0.9",
    )
    assert result.returncode == 0, result.stderr
    assert "Robustness" in result.stdout and "char-swap" in result.stdout


def test_report_command(model_dir: Path, toy_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = run(
        "report",
        str(model_dir),
        "--data",
        str(toy_table),
        "--corruption",
        "image=missing",
        "--corruption",
        "text=missing",
        "--corruption",
        "tabular=missing",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    for section in (
        "summary",
        "schema",
        "training",
        "confusion",
        "per-class",
        "contributions",
        "robustness",
        "examples",
    ):
        assert f'id="{section}"' in html


def test_bad_corruption_is_one_clear_line(model_dir: Path, toy_table: Path) -> None:
    result = run(
        "evaluate",
        str(model_dir),
        "--data",
        str(toy_table),
        "--robustness",
        "--corruption",
        "image=sparkles",
    )
    assert result.returncode == 2
    assert "sparkles" in result.stderr and "Traceback" not in result.stderr
    bad = run(
        "evaluate",
        str(model_dir),
        "--data",
        str(toy_table),
        "--robustness",
        "--corruption",
        "image",
    )
    assert bad.returncode == 2 and "INPUT=NAME" in bad.stderr


def test_compare_writes_json_markdown_and_html(
    toy_table: Path, recipe: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    result = run(
        "compare",
        "--train",
        str(toy_table),
        "--test",
        str(toy_table),
        "--label",
        "label",
        "-c",
        str(recipe),
        "--fusions",
        "concat,late",
        "--epochs",
        "2",
        "--corruption",
        "image=missing",
        "--corruption",
        "text=missing",
        "--corruption",
        "tabular=missing",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "compare.json").read_text())
    assert [r["fusion"] for r in data["summary"]] == ["concat", "late"]
    assert "| concat |" in (out / "compare.md").read_text()
    assert 'id="robustness"' in (out / "compare.html").read_text()
