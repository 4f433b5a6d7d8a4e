"""FusionPredictor.distill end to end: few labels, cross-modal students, regression."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfuse.api import FusionPredictor
from crossfuse.data.labels import LabelEncoder
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.distill import (
    DistillConfig,
    distill_config,
    teacher_labels,
)
from crossfuse.errors import ConfigError
from tests.conftest import TINY_CONFIG

TAB_CONFIG = {
    "model": {"hidden": 32, "encoders": {"tabular": {"dim": 32, "options": {"hidden": [64]}}}},
    "train": {"epochs": 30, "batch_size": 32, "lr": 5e-3, "patience": 0},
}
TOY_ONLY_LABEL = {"score": "ignore"}


def xor_table(n: int, seed: int) -> pd.DataFrame:
    """The label is a rule of the inputs, sign(x0) == sign(x1), beside 4 noise columns:
    easy with 400 labels, hard to find from 40."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    df = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(6)])
    df["label"] = np.where(x[:, 0] * x[:, 1] > 0, "same", "diff")
    return df


@pytest.fixture(scope="module")
def xor_teacher() -> FusionPredictor:
    """A teacher that learned the rule from all 400 labels."""
    return FusionPredictor("label", config=TAB_CONFIG, progress=False).fit(xor_table(400, 100))


@pytest.fixture(scope="module")
def few_labels() -> pd.DataFrame:
    """The same 400 rows with only 40 labels (10%); the rest are empty cells."""
    df = xor_table(400, 100)
    keep = np.zeros(len(df), dtype=bool)
    keep[np.random.default_rng(0).choice(len(df), 40, replace=False)] = True
    df.loc[~keep, "label"] = None
    return df


@pytest.fixture(scope="module")
def toy_teacher(toy_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher over note, picture and the tabular x, saved as a model directory."""
    p = FusionPredictor("label", config=TINY_CONFIG, modalities=TOY_ONLY_LABEL, progress=False)
    return p.fit(toy_table, seed=0).save(tmp_path_factory.mktemp("teacher") / "model")


def test_distilled_student_beats_label_only_training_with_few_labels(
    xor_teacher: FusionPredictor, few_labels: pd.DataFrame
) -> None:
    test = xor_table(400, 200)

    def accuracy(p: FusionPredictor) -> float:
        return p.evaluate(test)["tasks"]["label"]["accuracy"]

    labelled = few_labels.dropna(subset=["label"]).reset_index(drop=True)
    label_only = FusionPredictor("label", config=TAB_CONFIG, progress=False)
    label_only.fit(labelled, epochs=150, seed=0)  # as many steps as the student, on 34 rows
    student = FusionPredictor("label", config=TAB_CONFIG, progress=False)
    student.distill(xor_teacher, few_labels, epochs=40, seed=0)

    assert accuracy(xor_teacher) > 0.85
    assert accuracy(student) >= accuracy(label_only) + 0.15
    summary = student.fit_summary_
    assert summary["labelled_train_rows"] == 40 - summary["valid_rows"]
    assert summary["train_rows"] + summary["valid_rows"] == 400
    assert summary["monitor"] == "val_distill_loss"
    assert student.config_.train.monitor is None  # the saved recipe is the user's


def test_teacher_runs_once_per_row_whatever_the_epochs(
    xor_teacher: FusionPredictor, few_labels: pd.DataFrame
) -> None:
    xor_teacher.__dict__.pop("_teacher_targets", None)  # earlier tests' teacher passes
    rows: list[int] = []
    hook = xor_teacher.model_.fusion.register_forward_hook(
        lambda module, args, out: rows.append(out.shape[0])
    )
    try:
        student = FusionPredictor("label", config=TAB_CONFIG, progress=False)
        student.distill(xor_teacher, few_labels, epochs=3, seed=0)
        assert sum(rows) == 400  # train and validation rows, once: not 400 × 3 epochs
        second = FusionPredictor("label", config=TAB_CONFIG, progress=False)
        second.distill(xor_teacher, few_labels, epochs=1, seed=0)
    finally:
        hook.remove()
    assert sum(rows) == 400  # a second student of the same teacher reuses its outputs
    info = student.fit_summary_["distillation"]
    assert info["teacher_rows_encoded"] == 400 and info["teacher_seconds"] >= 0
    assert info["temperature"] == 4.0 and info["alpha"] == 0.5
    assert info["teacher"]["inputs"] == ["tabular"] and info["teacher"]["labels"] == ["label"]


def test_cross_modal_student_with_one_input_saves_and_loads(
    toy_teacher: Path, toy_table: Path, tmp_path: Path
) -> None:
    student = FusionPredictor(
        "label",
        config=TINY_CONFIG,
        modalities={"note": "ignore", "x": "ignore"},
        progress=False,
    )
    config = {"feature_weight": 1.0, "modality_feature_weight": 1.0, "relational_weight": 0.5}
    student.distill(str(toy_teacher), toy_table, config=config, seed=0)
    assert student.model_.input_names == ["picture"]
    assert student.schema_.columns["score"] == "ignore"  # as the teacher had it
    assert student.fit_summary_["distillation"]["ignored_as_by_teacher"] == ["score"]
    info = student.fit_summary_["distillation"]
    assert info["feature_weight"] == 1.0 and info["modality_feature_weight"] == 1.0
    assert info["teacher"]["inputs"] == ["note", "picture", "tabular"]
    assert student.evaluate(toy_table)["tasks"]["label"]["accuracy"] > 0.9
    path = student.save(tmp_path / "student")
    loaded = FusionPredictor.load(path)  # strict weights: no projector, no teacher needed
    pd.testing.assert_frame_equal(loaded.predict_proba(toy_table), student.predict_proba(toy_table))
    assert loaded.fit_summary_["distillation"]["teacher_rows_encoded"] == 160


def test_hard_labels_only_is_exactly_fit(toy_table: Path) -> None:
    """alpha=1 and no feature terms: the teacher is consulted but changes nothing."""
    config = dict(TINY_CONFIG, train={**TINY_CONFIG["train"], "monitor": "val_score"})

    def student() -> FusionPredictor:
        return FusionPredictor("label", config=config, modalities=TOY_ONLY_LABEL, progress=False)

    teacher = student().fit(toy_table, epochs=1, seed=1)
    fitted = student().fit(toy_table, epochs=2, seed=0)
    distilled = student().distill(teacher, toy_table, config={"alpha": 1.0}, epochs=2, seed=0)
    pd.testing.assert_frame_equal(
        distilled.predict_proba(toy_table), fitted.predict_proba(toy_table)
    )
    assert distilled.fit_summary_["history"] == fitted.fit_summary_["history"]


def test_regression_distillation_learns_the_teacher_s_values(toy_table: Path) -> None:
    reg = dict(TINY_CONFIG, train={**TINY_CONFIG["train"], "epochs": 8})
    teacher = FusionPredictor("score", config=reg, modalities={"label": "ignore"}, progress=False)
    teacher.fit(toy_table, seed=0)
    df = pd.read_csv(toy_table)
    df.loc[df.index % 3 != 0, "score"] = None  # a third of the values kept
    student = FusionPredictor(
        "score",
        config=reg,
        modalities={"label": "ignore", "note": "ignore", "picture": "ignore"},
        progress=False,
    )
    few = toy_table.parent / "toy_few_scores.csv"  # beside the pictures the teacher reads
    df.to_csv(few, index=False)
    student.distill(teacher, few, seed=0)
    assert student.schema_.tasks["score"] == "regression"
    enc, t_enc = student.preprocessor_.labels["score"], teacher.preprocessor_.labels["score"]
    assert (enc.mean, enc.std) == (t_enc.mean, t_enc.std)  # the teacher's scale
    metrics = student.evaluate(toy_table)["tasks"]["score"]
    assert metrics["pearson"] > 0.8


def test_student_takes_the_teacher_s_classes_even_unseen_ones(toy_teacher: Path) -> None:
    teacher = FusionPredictor.load(toy_teacher).preprocessor_
    df = pd.DataFrame({"label": ["b", "b", None]})
    student = Preprocessor.__new__(Preprocessor)
    student.labels = {"label": LabelEncoder("label", "classification")}
    teacher_labels(teacher)(student, _table(df))  # only "b" labelled: still both classes
    assert student.labels["label"].classes == ["a", "b"]
    with pytest.raises(ConfigError, match=r"\['c'\] are unknown to the teacher"):
        teacher_labels(teacher)(student, _table(pd.DataFrame({"label": ["a", "c"]})))
    student.labels = {"label": LabelEncoder("label", "regression")}
    with pytest.raises(ConfigError, match="regression for the student"):
        teacher_labels(teacher)(student, _table(df))


def test_bad_requests_are_clear_errors(xor_teacher: FusionPredictor, tmp_path: Path) -> None:
    df = xor_table(40, 1)
    with pytest.raises(ConfigError, match="alpha must be in"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        distill_config({"temperature": 0})
    with pytest.raises(ConfigError, match="feature_kind"):
        distill_config({"feature_kind": "l2"})
    with pytest.raises(ConfigError, match="unknown key 'beta'"):
        distill_config({"beta": 1})
    with pytest.raises(ConfigError, match="not one of the teacher's labels"):
        FusionPredictor("x5", progress=False).distill(xor_teacher, df)
    unlabelled = df.assign(label=None)
    with pytest.raises(ConfigError, match="validation needs them"):
        FusionPredictor("label", progress=False).distill(xor_teacher, df, unlabelled)
    with pytest.raises(ConfigError, match="teacher must be"):
        FusionPredictor("label", progress=False).distill(42, df)


def _table(df: pd.DataFrame):
    from crossfuse.data.table import Table

    return Table(df, None, "t")
