"""The LightningModule that trains a student FusionModel from cached teacher outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from crossfuse.config import TrainConfig
from crossfuse.data.problems import Problem
from crossfuse.encoders import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.models import FusionModel
from crossfuse.training.distill_losses import (
    feature_kd,
    regression_kd,
    relational_kd,
    response_kd,
)
from crossfuse.training.lightning_module import FusionModule
from crossfuse.training.modality_dropout import drop_modalities

if TYPE_CHECKING:
    from crossfuse.distill import DistillConfig
    from crossfuse.teacher_outputs import TeacherTargets


class DistillModule(FusionModule):
    """A :class:`FusionModule` whose loss also follows a frozen teacher.

    The teacher never runs here: its outputs for every row of the training and
    validation tables are given up front (``teacher["train"]``, ``teacher["valid"]``)
    and looked up by each batch's ``index``. Training loss per task: response KD
    (classification) or regression KD, plus the optional feature, per-input feature
    and relational terms. Validation logs the plain label loss as ``val_loss`` (so
    epochs are selected as in ordinary training) and the full loss as
    ``val_distill_loss``.

    Args:
        model: the student.
        config: the student's training recipe.
        distill: the distillation settings.
        teacher: ``{"train": TeacherTargets, "valid": TeacherTargets}``, scores already
            in the student's class order and label scale.
        teacher_decision_level: the teacher's fusion returns logits, not features (its
            fused embedding cannot be matched).
        class_weights, label_scales: as for :class:`FusionModule`.
    """

    def __init__(
        self,
        model: FusionModel,
        config: TrainConfig,
        distill: DistillConfig,
        teacher: Mapping[str, TeacherTargets],
        *,
        teacher_decision_level: bool = False,
        class_weights: dict[str, torch.Tensor] | None = None,
        label_scales: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(model, config, class_weights=class_weights, label_scales=label_scales)
        if "train" not in teacher:
            raise ValueError("DistillModule needs the teacher's outputs for the 'train' table")
        self.distill = distill
        self._teacher = dict(teacher)  # plain attribute: not saved with the weights
        ref = teacher["train"]
        uses_fused = distill.feature_weight > 0 or distill.relational_weight > 0
        decision = getattr(model.fusion, "decision_level", False)
        if uses_fused and (decision or teacher_decision_level or ref.fused is None):
            raise ConfigError(
                "feature_weight and relational_weight match fused embeddings, which a "
                "decision-level fusion (late, ensemble) does not have; use a feature-level "
                "fusion for teacher and student, or modality_feature_weight instead"
            )
        self.projector = (
            nn.Linear(model.fusion.out_dim, ref.fused.shape[1])
            if distill.feature_weight > 0
            else None
        )
        self.modality_projectors = nn.ModuleDict()
        if distill.modality_feature_weight > 0:
            shared = [n for n in model.input_names if n in ref.pooled]
            if not shared:
                raise ConfigError(
                    "modality_feature_weight needs an input shared by teacher and student; "
                    f"student inputs {model.input_names}, teacher inputs {sorted(ref.pooled)}"
                )
            for name in shared:
                out_dim = model.encoders[name].out_dim
                self.modality_projectors[name] = nn.Linear(out_dim, ref.pooled[name].shape[1])

    # ----------------------------------------------------------------- the loss
    def teacher_rows(self, part: str, index: torch.Tensor) -> TeacherTargets:
        """The teacher's outputs for rows ``index`` of table ``part``, on this device."""
        targets = self._teacher[part]
        if targets.scores and next(iter(targets.scores.values())).device != self.device:
            targets = self._teacher[part] = targets.to(self.device)  # once per fit
        return targets.select(index)

    def distill_loss(
        self,
        batch: dict,
        part: str = "train",
        keep: dict[str, torch.Tensor] | None = None,
        *,
        per_member: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The student's full loss on ``batch`` and its logits per task.

        ``per_member`` (training): an ensemble's members each learn on their own rows,
        as in :meth:`FusionModel.training_logits` (the logits returned are then None);
        otherwise the fused logits are used.
        """
        teacher = self.teacher_rows(part, batch["index"])
        outputs = self.model.encode(batch["inputs"], keep)
        fused, logits = None, None
        if per_member and hasattr(self.model.fusion, "members"):
            members = self.model.fusion.members(outputs)
            parts = [(self.model.heads_forward(lg), rows) for lg, rows in members]
        else:
            fused = self.model.fuse(outputs)  # (B, H)
            logits = self.model.heads_forward(fused)
            parts = [(logits, None)]
        loss = sum(self._response(batch, lg, rows, teacher) for lg, rows in parts)
        return loss + self._features(outputs, fused, teacher), logits

    def _response(
        self, batch: dict, logits: dict[str, torch.Tensor], rows, teacher: TeacherTargets
    ) -> torch.Tensor:
        """Response KD per task, over ``rows`` (all rows when None)."""
        d, total = self.distill, torch.zeros((), device=self.device)
        for t in self.model.tasks:
            pred, soft = logits[t.name], teacher.scores[t.name]
            target, present = batch["targets"][t.name], batch["target_present"][t.name]
            if rows is not None:
                pred, soft, target, present = pred[rows], soft[rows], target[rows], present[rows]
            if pred.shape[0] == 0:
                continue
            if t.task == "classification":
                loss = response_kd(
                    pred,
                    soft.clamp_min(1e-12).log(),  # log-probabilities are valid teacher logits
                    target,
                    present,
                    temperature=d.temperature,
                    alpha=d.alpha,
                    label_smoothing=self.config.label_smoothing,
                    class_weights=getattr(self, f"class_weights_{t.name}", None),
                )
            else:
                loss = regression_kd(pred, soft, target, present, alpha=d.alpha)
            total = total + self.config.task_weights.get(t.name, 1.0) * loss
        return total

    def _features(
        self,
        outputs: dict[str, ModalityOutput],
        fused: torch.Tensor | None,
        teacher: TeacherTargets,
    ) -> torch.Tensor:
        """The feature, per-input feature and relational terms (those switched on)."""
        d, total = self.distill, torch.zeros((), device=self.device)
        if fused is not None and self.projector is not None:
            total = total + d.feature_weight * feature_kd(
                fused, teacher.fused, self.projector, kind=d.feature_kind
            )
        if fused is not None and d.relational_weight > 0:
            total = total + d.relational_weight * relational_kd(fused, teacher.fused)
        terms = []
        for name, projector in self.modality_projectors.items():
            rows = outputs[name].present & teacher.present[name]  # (B,) both saw the input
            if bool(rows.any()):
                student, target = outputs[name].pooled[rows], teacher.pooled[name][rows]
                terms.append(feature_kd(student, target, projector, kind=d.feature_kind))
        if terms:
            total = total + d.modality_feature_weight * torch.stack(terms).mean()
        return total

    # ------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == 0:  # an unlabelled row is expected here, not a problem
            self.problems.extend([p for p in batch["problems"] if not _unlabelled(p)])
        keep = None
        if self.config.modality_dropout > 0:
            present = {n: batch["inputs"][n]["present"] for n in self.model.input_names}
            keep = drop_modalities(present, self.config.modality_dropout)
        loss, _ = self.distill_loss(batch, "train", keep)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["index"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        size = len(batch["index"])
        if "valid" in self._teacher:
            loss, logits = self.distill_loss(batch, "valid", per_member=False)
            self.log("val_distill_loss", loss, batch_size=size, sync_dist=True)
        else:
            logits = self.model(batch["inputs"])
        self.log("val_loss", self._loss(batch, logits), prog_bar=True, batch_size=size)
        self.collect_validation(batch, logits)

    def configure_optimizers(self):
        """The student's optimiser and schedule, with the projectors at the head LR."""
        setup = super().configure_optimizers()
        extra = [p for p in self._projector_parameters() if p.requires_grad]
        if extra:
            optimizer = setup["optimizer"]
            optimizer.add_param_group(
                {"params": extra, "lr": self.config.lr, "weight_decay": self.config.weight_decay}
            )
            schedule = setup["lr_scheduler"]["scheduler"].lr_lambdas[0]
            # a fresh scheduler, so the new group follows the same warm-up and decay
            setup["lr_scheduler"]["scheduler"] = torch.optim.lr_scheduler.LambdaLR(
                optimizer, schedule
            )
        return setup

    def _projector_parameters(self) -> list[nn.Parameter]:
        params = list(self.modality_projectors.parameters())
        if self.projector is not None:
            params += list(self.projector.parameters())
        return params


def _unlabelled(problem: Problem) -> bool:
    return problem.kind == "label" and problem.reason == "missing label"
