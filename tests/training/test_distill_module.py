"""DistillModule: teacher outputs looked up by row, the loss terms, one Lightning fit."""

import dataclasses
from pathlib import Path

import pytest
import torch

from crossfuse.api import FusionPredictor
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.distill import DistillConfig
from crossfuse.errors import ConfigError
from crossfuse.teacher_outputs import TeacherTargets
from crossfuse.training.distill_losses import response_kd
from crossfuse.training.distill_module import DistillModule
from crossfuse.training.fit import fit_model
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def parts(toy_table: Path):
    """Config, train/valid tables, fitted preprocessing and an untrained student."""
    p = FusionPredictor("label", config=TINY_CONFIG, modalities={"score": "ignore"})
    config, _, _, train, valid, pre, _ = p._prepare(toy_table, None, None, None, 0)
    return config, train, valid, pre


def _student(parts, fusion: str = "concat"):
    from crossfuse.models import build_model
    from crossfuse.models.specs import input_specs, task_specs

    config, _, _, pre = parts
    torch.manual_seed(0)
    model_cfg = dataclasses.replace(config.model, fusion=fusion)
    return build_model(input_specs(pre), task_specs(pre), model_cfg)


def _teacher(n: int, seed: int = 0) -> TeacherTargets:
    """Synthetic cached teacher outputs: confident probabilities, 12-wide embeddings."""
    g = torch.Generator().manual_seed(seed)
    return TeacherTargets(
        scores={"label": torch.softmax(3 * torch.randn(n, 2, generator=g), -1)},
        fused=torch.randn(n, 12, generator=g),
        pooled={"note": torch.randn(n, 10, generator=g), "other": torch.randn(n, 4, generator=g)},
        present={"note": torch.ones(n, dtype=torch.bool), "other": torch.ones(n, dtype=torch.bool)},
    )


def _batch(parts, rows: list[int], unlabelled: bool = False) -> dict:
    _, train, _, pre = parts
    ds = FusionDataset(train, pre)
    batch = Collator(pre)([ds[i] for i in rows])
    if unlabelled:
        batch["target_present"]["label"] = torch.zeros(len(rows), dtype=torch.bool)
        batch["targets"]["label"] = torch.full((len(rows),), -100)
    return batch


def test_response_term_uses_the_teacher_rows_of_the_batch(parts) -> None:
    config, train, _, _ = parts
    model = _student(parts).eval()
    teacher = _teacher(len(train))
    module = DistillModule(model, config.train, DistillConfig(alpha=0.0), {"train": teacher})
    batch = _batch(parts, [7, 3, 20])
    loss, logits = module.distill_loss(batch)
    soft = teacher.scores["label"][[7, 3, 20]]
    expected = response_kd(
        logits["label"],
        soft.log(),
        batch["targets"]["label"],
        batch["target_present"]["label"],
        temperature=4.0,
        alpha=0.0,
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # other rows of the teacher → another loss
    shifted = module.distill_loss(_batch(parts, [7, 3, 20]) | {"index": torch.tensor([0, 1, 2])})
    assert shifted[0].item() != pytest.approx(loss.item(), rel=1e-3)


def test_one_training_step_reduces_the_loss_and_trains_projectors(parts) -> None:
    config, train, _, _ = parts
    model = _student(parts).eval()  # eval: no dropout, so the two losses are comparable
    dcfg = DistillConfig(feature_weight=1.0, modality_feature_weight=1.0, relational_weight=1.0)
    module = DistillModule(model, config.train, dcfg, {"train": _teacher(len(train))})
    assert set(module.modality_projectors) == {"note"}  # the only shared input
    assert module.projector.in_features == 16 and module.projector.out_features == 12
    batch = _batch(parts, list(range(16)))
    before_proj = module.projector.weight.detach().clone()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    loss, _ = module.distill_loss(batch)
    loss.backward()
    optimizer.step()
    after, _ = module.distill_loss(batch)
    assert after.item() < loss.item()
    assert not torch.equal(before_proj, module.projector.weight)
    assert module.modality_projectors["note"].weight.grad.abs().sum() > 0
    # projectors are not part of the student: the saved model needs no teacher
    assert not any("projector" in k for k in model.state_dict())


def test_unlabelled_batch_still_learns_from_the_teacher(parts) -> None:
    config, train, _, _ = parts
    model = _student(parts).eval()
    module = DistillModule(model, config.train, DistillConfig(alpha=0.5), {"train": _teacher(160)})
    batch = _batch(parts, list(range(8)), unlabelled=True)
    loss, _ = module.distill_loss(batch)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    hard_only = DistillModule(
        model, config.train, DistillConfig(alpha=1.0), {"train": _teacher(160)}
    )
    assert hard_only.distill_loss(batch)[0].item() == 0.0


def test_bad_combinations_are_config_errors(parts) -> None:
    config, train, _, _ = parts
    teacher = {"train": _teacher(len(train))}
    with pytest.raises(ConfigError, match="decision-level"):
        DistillModule(
            _student(parts, "late"), config.train, DistillConfig(feature_weight=1), teacher
        )
    no_shared = TeacherTargets(scores=teacher["train"].scores, fused=None)
    with pytest.raises(ConfigError, match="shared"):
        DistillModule(
            _student(parts),
            config.train,
            DistillConfig(modality_feature_weight=1.0),
            {"train": no_shared},
        )
    # a decision-level student can still learn from soft targets and per-input features
    module = DistillModule(
        _student(parts, "ensemble"), config.train, DistillConfig(modality_feature_weight=1), teacher
    )
    loss, logits = module.distill_loss(_batch(parts, list(range(6))))
    assert torch.isfinite(loss) and logits is None  # per-member losses in training


def test_fit_with_distill_module_trains_projectors_and_ignores_missing_labels(
    parts, tmp_path: Path
) -> None:
    config, train, valid, pre = parts
    train = type(train)(train.df.copy(), train.base_dir, train.name)
    train.df.loc[::2, "label"] = None  # half the rows unlabelled
    model = _student(parts)
    dcfg = DistillConfig(feature_weight=1.0)
    targets = {"train": _teacher(len(train)), "valid": _teacher(len(valid), seed=1)}
    module = DistillModule(model, config.train, dcfg, targets)
    before = module.projector.weight.detach().clone()
    result = fit_model(
        model,
        pre,
        train,
        valid,
        config.train,
        log_dir=tmp_path,
        progress=False,
        device=torch.device("cpu"),
        module=module,
    )
    assert result.epochs == config.train.epochs
    assert not torch.equal(before, module.projector.weight.detach())
    assert len(result.problems) == 0  # unlabelled rows are expected, not problems
    assert result.history[-1]["valid_loss"] is not None
    with pytest.raises(ValueError, match="must wrap"):
        fit_model(_student(parts), pre, train, valid, config.train, log_dir=tmp_path, module=module)
