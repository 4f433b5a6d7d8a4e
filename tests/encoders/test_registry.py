"""The encoder registry: built-in names, modality checks and option errors."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders import (
    DEFAULT_ENCODERS,
    Encoder,
    InputSpec,
    ModalityOutput,
    create_encoder,
    encoder_names,
)
from crossfuse.errors import ConfigError

SPECS = {
    "text": InputSpec(name="caption", modality="text", vocab_size=10),
    "image": InputSpec(name="photo", modality="image", shape=(1, 16, 16)),
    "audio": InputSpec(name="sound", modality="audio", shape=(8, 12)),
    "tabular": InputSpec(name="tabular", modality="tabular", n_numeric=2, cardinalities=[4]),
}
BATCHES = {
    "text": {
        "ids": torch.tensor([[2, 3], [0, 0]]),
        "lengths": torch.tensor([2, 0]),
        "present": torch.tensor([True, False]),
    },
    "image": {"pixels": torch.randn(2, 1, 16, 16), "present": torch.tensor([True, False])},
    "audio": {"mel": torch.randn(2, 8, 12), "present": torch.tensor([True, False])},
    "tabular": {
        "numeric": torch.randn(2, 2),
        "numeric_present": torch.tensor([[True, False], [False, False]]),
        "categorical": torch.tensor([[2], [0]]),
        "present": torch.tensor([True, False]),
    },
}


def test_every_default_encoder_is_registered_for_its_modality() -> None:
    assert set(DEFAULT_ENCODERS) == set(SPECS)
    for modality, name in DEFAULT_ENCODERS.items():
        assert name in encoder_names(modality)
        for other in set(SPECS) - {modality}:
            assert name not in encoder_names(other)
    assert set(DEFAULT_ENCODERS.values()) <= set(encoder_names())


@pytest.mark.parametrize("modality", sorted(DEFAULT_ENCODERS))
def test_default_encoders_build_and_honour_the_contract(modality: str) -> None:
    torch.manual_seed(0)
    enc = create_encoder(DEFAULT_ENCODERS[modality], SPECS[modality], dim=8).eval()
    assert isinstance(enc, Encoder) and enc.out_dim == 8
    out = enc(BATCHES[modality])
    assert isinstance(out, ModalityOutput)
    assert out.pooled.shape == (2, 8)
    assert torch.equal(out.present, BATCHES[modality]["present"])
    assert torch.equal(out.pooled[1], torch.zeros(8))
    assert out.tokens is not None and out.token_mask is not None
    assert out.tokens.shape[:2] == out.token_mask.shape and out.tokens.shape[2] == 8
    assert out.token_mask[0].any() and not out.token_mask[1].any()
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_unknown_name_lists_the_choices_for_that_modality() -> None:
    with pytest.raises(ConfigError, match="unknown encoder 'text-bert'") as err:
        create_encoder("text-bert", SPECS["text"])
    assert DEFAULT_ENCODERS["text"] in str(err.value)
    assert DEFAULT_ENCODERS["image"] not in str(err.value)


def test_encoder_for_another_modality_is_rejected() -> None:
    with pytest.raises(ConfigError, match="is for text inputs but 'photo' is image"):
        create_encoder("text-gru", SPECS["image"])


@pytest.mark.parametrize("modality", sorted(DEFAULT_ENCODERS))
def test_unknown_option_is_a_config_error_naming_it(modality: str) -> None:
    with pytest.raises(ConfigError, match="colour"):
        create_encoder(DEFAULT_ENCODERS[modality], SPECS[modality], colour="blue")
