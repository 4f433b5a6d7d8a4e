"""The ``hf-text`` encoder: the real bundled MiniLM, and a tiny BERT saved to a temp folder."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F

from crossfuse.data.hf_text_processor import HFTextProcessor, HFTextProcessorConfig
from crossfuse.encoders import InputSpec, create_encoder
from crossfuse.encoders.hf_common import freeze_all_but_last
from crossfuse.encoders.hf_text import HFTextEncoder
from crossfuse.errors import ConfigError

WORDS = [
    "a",
    "man",
    "is",
    "eating",
    "food",
    "the",
    "girl",
    "carrying",
    "baby",
    "bread",
    "piece",
    "of",
]
SPEC = InputSpec(name="caption", modality="text", processor="hf-text")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: hub ids must fail fast instead of retrying a download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT and a WordPiece tokenizer over a 17-token vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


def loss(pooled: torch.Tensor) -> torch.Tensor:
    """A random projection (a plain sum of LayerNorm outputs has zero gradient)."""
    return (pooled * torch.randn(pooled.shape, generator=torch.Generator().manual_seed(0))).sum()


def encode(model: str, cells: list, **options) -> tuple[HFTextEncoder, dict, object]:
    """Tokenize ``cells`` (None = absent) with the hf-text processor and encode them."""
    proc = HFTextProcessor(HFTextProcessorConfig(model=model))
    batch = proc.collate([None if c is None else proc.process(c) for c in cells])
    enc = HFTextEncoder(SPEC, model=model, **options).eval()
    with torch.no_grad():
        return enc, batch, enc(batch)


def test_bundled_minilm_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    from crossfuse.encoders.hf_common import bundled_text_model

    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
    ]
    enc, _, out = encode("default", [*sentences, None], normalize=True)
    assert enc.out_dim == 384 and enc.pretrained
    pooled = out.pooled  # (4, 384), unit length
    # Measured with sentence-transformers 6.2 on this model: 0.7553 and -0.1050.
    assert pooled[0] @ pooled[1] == pytest.approx(0.755, abs=0.01)
    assert pooled[0] @ pooled[2] < 0.1
    assert torch.equal(pooled[3], torch.zeros(384))
    reference = SentenceTransformer(bundled_text_model(), device="cpu").encode(
        sentences, convert_to_tensor=True
    )
    torch.testing.assert_close(pooled[:3], reference.float(), atol=1e-4, rtol=0)


def test_tiny_model_shapes_masks_and_absent_rows(tiny_bert: str) -> None:
    cells = ["a man is eating food .", None, "the girl", None]
    enc, batch, out = encode(tiny_bert, cells)
    assert enc.out_dim == 32
    assert out.pooled.shape == (4, 32)
    assert out.tokens.shape == (4, 8, 32)  # [CLS] 6 words [SEP]
    assert torch.equal(out.present, torch.tensor([True, False, True, False]))
    assert torch.equal(out.token_mask, batch["attention_mask"].bool())
    assert out.token_mask.sum(1).tolist() == [8, 0, 4, 0]
    for row in (1, 3):
        assert torch.equal(out.pooled[row], torch.zeros(32))
        assert torch.equal(out.tokens[row], torch.zeros(8, 32))
    assert torch.equal(out.tokens[2, 4:], torch.zeros(4, 32))  # padding positions
    assert out.pooled[0].abs().sum() > 0 and torch.isfinite(out.tokens).all()


def test_rows_do_not_depend_on_padding_or_other_rows(tiny_bert: str) -> None:
    _, _, alone = encode(tiny_bert, ["the girl"])
    _, _, mixed = encode(tiny_bert, [None, "a man is eating a piece of bread .", "the girl"])
    torch.testing.assert_close(mixed.pooled[2], alone.pooled[0], atol=1e-5, rtol=0)


def test_mean_cls_and_normalize(tiny_bert: str) -> None:
    cells = ["a man is eating food .", "the baby", None]
    _, batch, mean = encode(tiny_bert, cells, pooling="mean")
    _, _, cls = encode(tiny_bert, cells, pooling="cls")
    _, _, unit = encode(tiny_bert, cells, normalize=True)
    m = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
    expected = (mean.tokens * m).sum(1) / m.sum(1).clamp(min=1)
    torch.testing.assert_close(mean.pooled, expected)
    torch.testing.assert_close(cls.pooled, cls.tokens[:, 0])
    assert not torch.allclose(mean.pooled[:2], cls.pooled[:2])
    torch.testing.assert_close(unit.pooled[:2], F.normalize(mean.pooled[:2], dim=-1))
    assert torch.equal(unit.pooled[2], torch.zeros(32))


def test_blocks_and_gradients(tiny_bert: str) -> None:
    enc = HFTextEncoder(SPEC, model=tiny_bert)
    blocks = enc.blocks()
    names = [type(b).__name__ for b in blocks]
    assert names == ["BertEmbeddings", "BertLayer", "BertLayer"]  # the unused pooler is dropped
    proc = HFTextProcessor(HFTextProcessorConfig(model=tiny_bert))
    batch = proc.collate([proc.process("a man is eating"), None, proc.process("the girl")])
    loss(enc(batch).pooled).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    enc.zero_grad(set_to_none=True)
    freeze_all_but_last(blocks, 1)
    loss(enc(batch).pooled).backward()
    assert all(p.grad is not None for p in blocks[2].parameters())
    assert all(p.grad is None for b in blocks[:2] for p in b.parameters())
    freeze_all_but_last(blocks, 0)
    assert not any(p.requires_grad for p in enc.parameters())
    freeze_all_but_last(blocks, -1)
    assert all(p.requires_grad for p in enc.parameters())


def test_gradient_checkpointing_still_trains(tiny_bert: str) -> None:
    enc = HFTextEncoder(SPEC, model=tiny_bert, gradient_checkpointing=True).train()
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in enc.modules())
    proc = HFTextProcessor(HFTextProcessorConfig(model=tiny_bert))
    batch = proc.collate([proc.process("a man is eating"), proc.process("the girl")])
    loss(enc(batch).pooled).backward()
    layer = enc.blocks()[1]
    assert all(p.grad is not None for p in layer.parameters())


def test_all_rows_absent(tiny_bert: str) -> None:
    _, _, out = encode(tiny_bert, [None, None])
    assert out.pooled.shape == (2, 32) and not out.pooled.any()
    assert out.tokens.shape == (2, 1, 32) and not out.token_mask.any()


def test_registry_processor_choice_and_ignored_dim(tiny_bert: str) -> None:
    enc = create_encoder("hf-text", SPEC, model=tiny_bert, dim=128, max_length=16)
    assert isinstance(enc, HFTextEncoder) and enc.out_dim == 32
    assert HFTextEncoder.processor_choice({"model": tiny_bert, "max_length": 16}) == (
        "hf-text",
        {"model": tiny_bert, "max_length": 16},
    )
    default = HFTextEncoder.processor_choice({})
    assert default == ("hf-text", {"model": "default", "max_length": 128})


def test_unknown_hub_id_offline_says_to_pass_a_local_directory() -> None:
    with pytest.raises(ConfigError) as err:
        HFTextEncoder(SPEC, model="nobody-xyz/no-such-model")
    assert "nobody-xyz/no-such-model" in str(err.value)
    assert "local directory" in str(err.value)


def test_bad_options(tiny_bert: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pooling"):
        HFTextEncoder(SPEC, model=tiny_bert, pooling="max")
    with pytest.raises(ConfigError, match="max_length 200 exceeds"):
        HFTextEncoder(SPEC, model=tiny_bert, max_length=200)
    with pytest.raises(ConfigError, match="'hf-text' column processor"):
        HFTextEncoder(InputSpec("c", "text", vocab_size=9, processor="text"), model=tiny_bert)
    with pytest.raises(ConfigError, match="does not exist"):
        HFTextEncoder(SPEC, model=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="local directory"):
        HFTextEncoder(SPEC, model=str(tmp_path))  # exists, but holds no model
