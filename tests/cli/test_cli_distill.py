"""`crossfuse distill` run as a user would (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from crossfuse.api import FusionPredictor
from tests.conftest import TINY_CONFIG

# `crossfuse` with the distill command registered, whether or not app.py has it yet
ENTRY = (
    "from crossfuse.cli.app import app, main\n"
    "from crossfuse.cli.distill_cmd import distill\n"
    "names = {c.name or c.callback.__name__ for c in app.registered_commands}\n"
    "if 'distill' not in names:\n"
    "    app.command()(distill)\n"
    "main()\n"
)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},  # tiny models, busy CPUs
    )


@pytest.fixture(scope="module")
def teacher_dir(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = FusionPredictor("label", config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False)
    return p.fit(toy_table, seed=0).save(tmp_path_factory.mktemp("cli-teacher") / "teacher")


def test_distill_a_one_input_student_from_a_recipe(
    teacher_dir: Path, toy_table: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "student.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_CONFIG, "modalities": {"note": "ignore"}}))
    few = pd.read_csv(toy_table)
    few.loc[few.index % 2 == 1, "label"] = None  # half the labels
    few_path = toy_table.parent / "toy_half_labels.csv"  # beside the pictures
    few.to_csv(few_path, index=False)
    out = tmp_path / "student"
    result = run(
        "distill",
        "--teacher",
        str(teacher_dir),
        "--train",
        str(few_path),
        "--student",
        str(recipe),
        "--modality",
        "x=ignore",
        "--temperature",
        "2",
        "--alpha",
        "0.3",
        "--feature-weight",
        "1",
        "--epochs",
        "6",
        "--seed",
        "0",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "student written to" in result.stdout
    assert "Metrics on validation" in result.stdout and "accuracy" in result.stdout
    meta = json.loads((out / "crossfuse.json").read_text())
    info = meta["fit_summary"]["distillation"]
    assert (info["temperature"], info["alpha"], info["feature_weight"]) == (2.0, 0.3, 1.0)
    assert info["teacher_rows_encoded"] == 160
    assert meta["label"] == "label"  # the teacher's label by default
    assert meta["schema"]["columns"]["note"] == "ignore"  # from the recipe
    assert meta["schema"]["columns"]["x"] == "ignore"  # from --modality
    student = FusionPredictor.load(out)
    assert student.model_.input_names == ["picture"]
    assert student.evaluate(toy_table)["tasks"]["label"]["accuracy"] > 0.9


def test_bad_student_and_settings_are_one_line_errors(teacher_dir: Path, toy_table: Path) -> None:
    common = ["distill", "--teacher", str(teacher_dir), "--train", str(toy_table), "--out", "x"]
    result = run(*common, "--student", "tiny-and-fast")
    assert result.returncode == 2
    assert "--student must be a preset (fast, pretrained, finetune)" in result.stderr
    assert "Traceback" not in result.stderr
    result = run(*common, "--alpha", "2")
    assert result.returncode == 2 and "alpha must be in [0, 1]" in result.stderr
