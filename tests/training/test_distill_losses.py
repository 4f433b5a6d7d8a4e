"""Distillation losses on hand-computed values and their edge cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError
from crossfuse.training.distill_losses import (
    feature_kd,
    regression_kd,
    relational_kd,
    response_kd,
)

STUDENT = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
TEACHER = torch.tensor([[3.0, -1.0, 0.0], [0.0, 2.0, 1.0]])
TARGET = torch.tensor([0, 2])
BOTH = torch.tensor([True, True])


def _kl_by_hand(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """Σ_rows Σ_c p_t (log p_t − log p_s) / rows, on temperature-softened distributions."""
    log_s, log_t = torch.log_softmax(student / t, -1), torch.log_softmax(teacher / t, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def test_response_kd_known_value() -> None:
    loss = response_kd(STUDENT, TEACHER, TARGET, BOTH, temperature=2.0, alpha=0.3)
    log_p = torch.log_softmax(STUDENT, -1)
    ce = -(log_p[0, 0] + log_p[1, 2]) / 2
    expected = 0.3 * ce + 0.7 * 4.0 * _kl_by_hand(STUDENT, TEACHER, 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_alpha_one_is_plain_cross_entropy_and_alpha_zero_pure_kd() -> None:
    ce = response_kd(STUDENT, TEACHER, TARGET, BOTH, alpha=1.0)
    assert ce.item() == pytest.approx(F.cross_entropy(STUDENT, TARGET).item(), rel=1e-6)
    kd = response_kd(STUDENT, TEACHER, TARGET, BOTH, temperature=3.0, alpha=0.0)
    assert kd.item() == pytest.approx(9.0 * _kl_by_hand(STUDENT, TEACHER, 3.0).item(), rel=1e-6)
    # pure KD ignores the labels entirely
    other = response_kd(STUDENT, TEACHER, torch.tensor([1, 1]), BOTH, temperature=3.0, alpha=0.0)
    assert other.item() == kd.item()


def test_unlabelled_rows_get_only_the_soft_loss() -> None:
    none = torch.tensor([False, False])
    loss = response_kd(STUDENT, TEACHER, torch.tensor([-100, -100]), none, alpha=0.5)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(0.5 * 16 * _kl_by_hand(STUDENT, TEACHER, 4.0).item())
    # one labelled row: CE over that row only, KD over both
    one = torch.tensor([True, False])
    mixed = response_kd(STUDENT, TEACHER, torch.tensor([0, -100]), one, alpha=0.5)
    ce = -torch.log_softmax(STUDENT, -1)[0, 0]
    assert mixed.item() == pytest.approx(loss.item() + 0.5 * ce.item(), rel=1e-6)


def test_same_logits_give_zero_kd_and_log_probs_work_as_teacher_logits() -> None:
    zero = response_kd(STUDENT, STUDENT, TARGET, BOTH, alpha=0.0)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)
    # logits and their log-softmax differ by a per-row constant: the same soft targets
    as_log_probs = torch.log_softmax(TEACHER, -1)
    a = response_kd(STUDENT, TEACHER, TARGET, BOTH, alpha=0.2)
    b = response_kd(STUDENT, as_log_probs, TARGET, BOTH, alpha=0.2)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_high_temperature_t_squared_kd_tends_to_the_logit_mse_limit() -> None:
    """Hinton et al.: T²·KL → Σ_c (z̃_s − z̃_t)² / (2C) with z̃ the mean-centred logits."""
    loss = response_kd(STUDENT.double(), TEACHER.double(), TARGET, BOTH, temperature=100.0, alpha=0)
    centred = lambda z: z - z.mean(-1, keepdim=True)  # noqa: E731
    limit = ((centred(STUDENT) - centred(TEACHER)) ** 2).sum(-1).mean() / (2 * 3)
    assert loss.item() == pytest.approx(limit.item(), rel=2e-2)
    # the gradient's size stays of the same order whatever the temperature
    grads = []
    for t in (1.0, 10.0, 100.0):
        s = STUDENT.clone().requires_grad_(True)
        response_kd(s, TEACHER, TARGET, BOTH, temperature=t, alpha=0.0).backward()
        grads.append(s.grad.norm().item())
    assert 0.1 < grads[2] / grads[0] < 10


def test_teacher_side_gets_no_gradient() -> None:
    teacher = TEACHER.clone().requires_grad_(True)
    student = STUDENT.clone().requires_grad_(True)
    response_kd(student, teacher, TARGET, BOTH).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_regression_kd_known_value() -> None:
    pred = torch.tensor([[1.0], [2.0], [0.0]])
    teacher = torch.tensor([0.5, 2.0, 1.0])
    target = torch.tensor([1.5, float("nan"), -1.0])
    present = torch.tensor([True, False, True])
    loss = regression_kd(pred, teacher, target, present, alpha=0.25)
    hard = ((1.0 - 1.5) ** 2 + (0.0 + 1.0) ** 2) / 2
    soft = (0.5**2 + 0.0 + 1.0) / 3
    assert loss.item() == pytest.approx(0.25 * hard + 0.75 * soft)
    only_soft = regression_kd(pred, teacher, target, torch.zeros(3, dtype=torch.bool))
    assert only_soft.item() == pytest.approx(0.5 * soft)


def _identity(dim: int) -> nn.Linear:
    proj = nn.Linear(dim, dim)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(dim))
        proj.bias.zero_()
    return proj


def test_feature_kd_zero_for_identical_features_positive_otherwise() -> None:
    feats = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    for kind in ("mse", "cosine"):
        assert feature_kd(feats, feats, _identity(4), kind=kind).item() == pytest.approx(
            0.0, abs=1e-6
        )
        assert feature_kd(feats, feats.flip(0), _identity(4), kind=kind).item() > 0.01
    # known values without a projector
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert feature_kd(s, t, None, kind="mse").item() == pytest.approx((1 + 4) / 2)
    assert feature_kd(s, t, None, kind="cosine").item() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="feature_kind"):
        feature_kd(s, t, None, kind="l1")


def test_feature_kd_gradient_reaches_projector_and_student() -> None:
    student = torch.randn(6, 3, requires_grad=True)
    teacher = torch.randn(6, 5, requires_grad=True)
    proj = nn.Linear(3, 5)
    for kind in ("mse", "cosine"):
        proj.zero_grad()
        student.grad = None
        feature_kd(student, teacher, proj, kind=kind).backward()
        assert proj.weight.grad.abs().sum() > 0 and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_relational_kd_known_distance_term() -> None:
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    # two rows: both normalised distances are 1 → zero; no triplet for the angle term
    assert relational_kd(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    s3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # distances 1, 2, 1 (mean 4/3)
    t3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # 1, √2, 1 (mean (2+√2)/3)
    ds = torch.tensor([1.0, 2.0, 1.0]) / (4 / 3)
    dt = torch.tensor([1.0, math.sqrt(2), 1.0]) / ((2 + math.sqrt(2)) / 3)
    expected = F.smooth_l1_loss(ds, dt)
    got = relational_kd(s3, t3, distance_weight=1.0, angle_weight=0.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_relational_kd_known_angle_term() -> None:
    # a line (angles 0 or 180°) vs a right-angled triangle at the origin
    s3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    t3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    def cosines(x: torch.Tensor) -> list[float]:
        out = []
        for j in range(3):  # vertex
            for i in range(3):
                for k in range(3):
                    if len({i, j, k}) == 3:
                        a, b = x[i] - x[j], x[k] - x[j]
                        out.append(float(a @ b / (a.norm() * b.norm())))
        return out

    expected = F.smooth_l1_loss(torch.tensor(cosines(s3)), torch.tensor(cosines(t3)))
    got = relational_kd(s3, t3, distance_weight=0.0, angle_weight=1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_relational_kd_invariant_to_scale_and_rotation_and_trains_student() -> None:
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(8, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    same_shape = 3.0 * teacher @ q  # scaled and rotated: the same relations
    assert relational_kd(same_shape, teacher).item() == pytest.approx(0.0, abs=1e-5)
    student = torch.randn(8, 4, generator=g, requires_grad=True)  # other width
    loss = relational_kd(student, teacher)
    assert loss.item() > 0.01
    loss.backward()
    assert student.grad.abs().sum() > 0
    one = torch.randn(1, 4, requires_grad=True)
    assert relational_kd(one, teacher[:1]).item() == 0.0
