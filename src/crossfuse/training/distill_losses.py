"""Knowledge-distillation losses: response (soft targets), feature and relational.

Pure functions on tensors. The teacher's side is always treated as a constant
(detached), so gradients reach only the student and its projectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import ConfigError

FEATURE_KINDS = ("mse", "cosine")


def response_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    target_present: torch.Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton et al. (2015): ``α·CE(hard labels) + (1−α)·T²·KL(teacher_T ‖ student_T)``.

    The cross-entropy is averaged over the rows that have a label; the KL term over ALL
    rows (unlabelled ones learn from the teacher alone). The T² factor keeps the soft
    term's gradients the same size whatever the temperature.

    Args:
        student_logits: (B, C) student logits.
        teacher_logits: (B, C) teacher logits. Log-probabilities are equally valid
            (``softmax(log p / T) ∝ p^(1/T)``), which is how cached teacher
            probabilities are passed: ``p.clamp_min(1e-12).log()``.
        target: (B,) class indices (anything where ``target_present`` is False).
        target_present: (B,) bool, rows with a usable label.
        temperature: softening temperature T > 0.
        alpha: weight of the hard-label term, in [0, 1].
        label_smoothing: smoothing of the hard-label cross-entropy.
        class_weights: optional (C,) weights of the hard-label cross-entropy.
    """
    t = float(temperature)
    soft_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)  # (B, C)
    soft_student = F.log_softmax(student_logits.float() / t, dim=-1)  # (B, C)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    loss = (1.0 - alpha) * t * t * kd
    if alpha > 0 and bool(target_present.any()):
        ce = F.cross_entropy(
            student_logits[target_present].float(),
            target[target_present],
            weight=class_weights,
            label_smoothing=label_smoothing,
        )
        loss = loss + alpha * ce
    return loss


def regression_kd(
    student_pred: torch.Tensor,
    teacher_pred: torch.Tensor,
    target: torch.Tensor,
    present: torch.Tensor,
    *,
    alpha: float = 0.5,
) -> torch.Tensor:
    """``α·MSE(student, labels) + (1−α)·MSE(student, teacher)``, in standardised units.

    The label term covers rows whose target is present; the teacher term every row.
    """
    pred = student_pred.reshape(-1).float()  # (B,)
    loss = (1.0 - alpha) * F.mse_loss(pred, teacher_pred.detach().reshape(-1).float())
    if alpha > 0 and bool(present.any()):
        loss = loss + alpha * F.mse_loss(pred[present], target[present].float())
    return loss


def feature_kd(
    student_feat: torch.Tensor,
    teacher_feat: torch.Tensor,
    projector: nn.Module | None,
    *,
    kind: str = "mse",
) -> torch.Tensor:
    """Match the student's features (B, Ds), projected to (B, Dt), to the teacher's.

    ``kind="mse"``: mean squared error over all elements (FitNets-style hint);
    ``kind="cosine"``: mean of ``1 − cos`` per row (direction only). ``projector``
    None means the identity (the widths must then be equal).
    """
    if kind not in FEATURE_KINDS:
        raise ConfigError(f"feature_kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    projected = student_feat if projector is None else projector(student_feat)  # (B, Dt)
    teacher = teacher_feat.detach().to(projected.dtype)
    if kind == "mse":
        return F.mse_loss(projected, teacher)
    return (1.0 - F.cosine_similarity(projected, teacher, dim=-1)).mean()


def relational_kd(
    student_feat: torch.Tensor,
    teacher_feat: torch.Tensor,
    *,
    distance_weight: float = 1.0,
    angle_weight: float = 2.0,
    max_angle_rows: int = 64,
) -> torch.Tensor:
    """Relational KD (Park et al., 2019): match how rows relate, not the features.

    Distance term: smooth-L1 between the pairwise distances of the rows (i ≠ j), each
    side divided by its mean distance. Angle term: smooth-L1 between the cosines of
    the angle ∠(x_i, x_j, x_k) at x_j for every triplet of distinct rows (the first
    ``max_angle_rows`` rows only, as the cost is cubic). The widths may differ; no
    projector is needed. Fewer than 2 rows (3 for angles) contribute 0.
    """
    student = student_feat.float()  # (B, Ds)
    teacher = teacher_feat.detach().float()  # (B, Dt)
    loss = student.sum() * 0.0
    b = student.shape[0]
    if b >= 2 and distance_weight > 0:
        off = ~torch.eye(b, dtype=torch.bool, device=student.device)  # (B, B)
        ds, dt = _pairwise(student)[off], _pairwise(teacher)[off]  # (B·(B−1),)
        ds = ds / ds.mean().clamp_min(1e-12)
        dt = dt / dt.mean().clamp_min(1e-12)
        loss = loss + distance_weight * F.smooth_l1_loss(ds, dt)
    if b >= 3 and angle_weight > 0:
        s, t = student[:max_angle_rows], teacher[:max_angle_rows]
        n = s.shape[0]
        idx = torch.arange(n, device=s.device)
        distinct = (  # (N, N, N): i, j (the vertex), k all different
            (idx[:, None, None] != idx[None, :, None])
            & (idx[None, :, None] != idx[None, None, :])
            & (idx[:, None, None] != idx[None, None, :])
        )
        loss = loss + angle_weight * F.smooth_l1_loss(_angles(s)[distinct], _angles(t)[distinct])
    return loss


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances, with a gradient that stays finite at zero distance."""
    diff = x[:, None, :] - x[None, :, :]  # (B, B, D)
    return (diff.pow(2).sum(-1) + 1e-12).sqrt()


def _angles(x: torch.Tensor) -> torch.Tensor:
    """(B, B, B): entry [i, j, k] is the cosine of the angle at x_j between x_i and x_k."""
    unit = F.normalize(x[:, None, :] - x[None, :, :], p=2, dim=-1)  # (B_i, B_j, D): x_i − x_j
    return torch.einsum("ijd,kjd->ijk", unit, unit)
