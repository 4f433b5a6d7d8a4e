"""Transfer learning: which encoder weights train, and at what learning rate.

``full`` trains everything; ``partial`` trains the last N of the encoder's
:meth:`~crossfuse.encoders.base.Encoder.blocks` plus every normalisation layer's scale
and shift; ``frozen`` trains nothing. In an encoder that is not fully trained,
BatchNorm layers keep their pretrained running statistics (they stay in eval mode):
re-estimating them from small batches of a new domain, at the slow momentum pretrained
CNNs use, leaves evaluation-time statistics that match neither domain.
Layer-wise learning-rate decay gives block ``i`` of ``n`` (counted from the input)
``encoder_lr × decay^(n-1-i)``, so layers near the input, which hold the most general
features, move least.
"""

from __future__ import annotations

from typing import Any

from torch import nn

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def apply_finetune(encoder: nn.Module, mode: str, partial_blocks: int = 2) -> None:
    """Set ``requires_grad`` of ``encoder``'s parameters for ``mode``."""
    if mode == "full":
        encoder.requires_grad_(True)
        return
    encoder.requires_grad_(False)
    if mode == "frozen":
        return
    blocks = encoder.blocks() if hasattr(encoder, "blocks") else [encoder]
    for block in blocks[-partial_blocks:]:
        block.requires_grad_(True)
    for module in encoder.modules():
        if isinstance(module, _NORMS):
            module.requires_grad_(True)


def keep_batchnorm_statistics(encoder: nn.Module) -> None:
    """Put the BatchNorm layers of a partially trained or frozen encoder in eval mode."""
    if all(p.requires_grad for p in encoder.parameters()):
        return
    for module in encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def is_frozen(encoder: nn.Module) -> bool:
    """True when no parameter of ``encoder`` trains."""
    return not any(p.requires_grad for p in encoder.parameters())


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    encoder_lr: float | None,
    layer_decay: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """AdamW parameter groups: fusion/heads at ``lr``; encoders per block with decay.

    Biases, norms and embeddings get no weight decay.
    """
    enc_lr = lr if encoder_lr is None else encoder_lr
    lr_of: dict[int, float] = {}
    for encoder in getattr(model, "encoders", {}).values():
        blocks = encoder.blocks() if hasattr(encoder, "blocks") else [encoder]
        for p in encoder.parameters():
            lr_of[id(p)] = enc_lr
        n = len(blocks)
        for i, block in enumerate(blocks):
            for p in block.parameters():
                lr_of[id(p)] = enc_lr * layer_decay ** (n - 1 - i)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or "embedding" in name
        groups.setdefault((lr_of.get(id(p), lr), no_decay), []).append(p)
    return [
        {"params": params, "lr": group_lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (group_lr, no_decay), params in sorted(groups.items(), key=lambda kv: kv[0])
    ]
