"""precompute encodes each distinct cell once; load_batch turns keys back into a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from crossfuse.cache import (
    CacheMissError,
    EmbeddingStore,
    load_batch,
    module_fingerprint,
    namespace,
    precompute,
)
from crossfuse.data.image import ImageConfig, ImageProcessor
from crossfuse.data.text import TextConfig, TextProcessor
from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from tests.conftest import write_png

D = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class CountingImageEncoder(nn.Module):
    """pooled = Linear(flattened 8×8 pixels); tokens = Linear(each pixel row). Counts rows."""

    def __init__(self, tokens: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pool = nn.Linear(64, D)
        self.row = nn.Linear(8, D)
        self.with_tokens = tokens
        self.calls = self.rows = 0
        self.modes: list[bool] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> ModalityOutput:
        pixels, present = batch["pixels"], batch["present"]  # (B, 1, 8, 8), (B,)
        self.calls += 1
        self.rows += int(present.sum())
        self.modes.append(self.training)
        keep = present[:, None].float()
        pooled = self.pool(pixels.flatten(1)) * keep  # (B, D)
        if not self.with_tokens:
            return ModalityOutput(pooled, present)
        tokens = self.row(pixels[:, 0]) * keep[:, :, None]  # (B, 8, D)
        mask = present[:, None].expand(-1, 8)  # (B, 8)
        return ModalityOutput(pooled, present, tokens, mask)


class CountingTextEncoder(nn.Module):
    """Word embeddings as tokens, their masked mean as pooled. Counts rows."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, D)
        self.rows = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> ModalityOutput:
        ids, lengths, present = batch["ids"], batch["lengths"], batch["present"]  # (B, T)
        self.rows += int(present.sum())
        mask = torch.arange(ids.shape[1])[None] < lengths[:, None]  # (B, T)
        tokens = self.emb(ids) * mask[:, :, None]  # (B, T, D)
        pooled = tokens.sum(1) / lengths.clamp(min=1)[:, None]  # (B, D)
        return ModalityOutput(pooled, present, tokens, mask)


def image_setup(tmp_path: Path, n: int = 6):
    cells = [write_png(tmp_path / f"img{i}.png", 30 * i, size=12) for i in range(n)]
    proc = ImageProcessor(ImageConfig(size=8, channels=1))
    enc = CountingImageEncoder()
    ns = namespace(module_fingerprint(enc, {"name": "counting"}), proc.get_state())
    return cells, proc, enc, ns, EmbeddingStore(tmp_path / "cache")


def run(enc, proc, cells, store, ns, tmp_path, **kw):
    return precompute(
        enc, proc, cells, modality="image", base_dir=tmp_path, store=store, namespace=ns, **kw
    )


def test_second_run_encodes_nothing_and_features_match_the_encoder(tmp_path: Path) -> None:
    cells, proc, enc, ns, store = image_setup(tmp_path)
    calls: list[tuple[int, int]] = []
    first = run(
        enc, proc, cells, store, ns, tmp_path, batch_size=4, progress=lambda *a: calls.append(a)
    )
    assert (first.encoded, first.reused, first.absent) == (6, 0, 0)
    assert enc.rows == 6 and enc.calls == 2 and calls[-1] == (6, 6)
    assert all(mode is False for mode in enc.modes) and enc.training  # eval inside, restored
    second = run(enc, proc, cells, store, ns, tmp_path)
    assert (second.encoded, second.reused, second.absent) == (0, 6, 0)
    assert enc.rows == 6 and second.keys == first.keys
    batch = load_batch(store, ns, second.keys)
    assert set(batch) == {"cached_pooled", "present"}
    enc.eval()
    direct = enc(proc.collate([proc.process(c, base_dir=tmp_path) for c in cells])).pooled
    torch.testing.assert_close(batch["cached_pooled"], direct.detach(), rtol=1e-3, atol=1e-3)


def test_editing_one_file_re_encodes_only_that_row_and_renaming_reuses(tmp_path: Path) -> None:
    cells, proc, enc, ns, store = image_setup(tmp_path)
    before = run(enc, proc, cells, store, ns, tmp_path)
    write_png(tmp_path / cells[2], 250, size=12)  # new bytes, same path
    after = run(enc, proc, cells, store, ns, tmp_path)
    assert enc.rows == 7 and (after.encoded, after.reused) == (1, 5)
    assert after.keys[2] != before.keys[2]
    assert [k for i, k in enumerate(after.keys) if i != 2] == before.keys[:2] + before.keys[3:]
    (tmp_path / cells[4]).rename(tmp_path / "renamed.png")
    moved = run(enc, proc, [*cells[:4], "renamed.png", cells[5]], store, ns, tmp_path)
    assert enc.rows == 7 and moved.encoded == 0 and moved.keys == after.keys


def test_new_weights_or_processor_state_mean_a_new_namespace(tmp_path: Path) -> None:
    cells, proc, enc, ns, store = image_setup(tmp_path, n=3)
    run(enc, proc, cells, store, ns, tmp_path)
    with torch.no_grad():
        enc.pool.weight[0, 0] += 0.5
    ns_weights = namespace(module_fingerprint(enc, {"name": "counting"}), proc.get_state())
    assert ns_weights != ns
    assert run(enc, proc, cells, store, ns_weights, tmp_path).encoded == 3
    proc2 = ImageProcessor(ImageConfig(size=8, channels=1, normalize="none"))
    ns_proc = namespace(module_fingerprint(enc, {"name": "counting"}), proc2.get_state())
    assert ns_proc not in (ns, ns_weights)
    assert run(enc, proc2, cells, store, ns_proc, tmp_path).encoded == 3
    assert enc.rows == 9 and store.count() == 9


def test_bad_cells_are_absent_and_zero_in_the_batch(tmp_path: Path) -> None:
    cells, proc, enc, ns, store = image_setup(tmp_path, n=2)
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    table = [cells[0], "missing.png", None, "notes.png", "folder.png", cells[1]]
    result = run(enc, proc, table, store, ns, tmp_path)
    assert result.keys[1:5] == [None] * 4 and None not in (result.keys[0], result.keys[5])
    assert (result.encoded, result.absent, enc.rows) == (2, 4, 2)
    batch = load_batch(store, ns, result.keys)
    assert batch["present"].tolist() == [True, False, False, False, False, True]
    assert batch["cached_pooled"].shape == (6, D) and batch["cached_pooled"].dtype == torch.float32
    assert torch.all(batch["cached_pooled"][1:5] == 0) and torch.all(batch["cached_pooled"][0] != 0)
    empty = load_batch(store, ns, [None, None])  # width taken from the namespace
    assert empty["cached_pooled"].shape == (2, D) and not empty["present"].any()


def test_duplicate_content_is_encoded_once(tmp_path: Path) -> None:
    cells, proc, enc, ns, store = image_setup(tmp_path, n=2)
    (tmp_path / "copy.png").write_bytes((tmp_path / cells[0]).read_bytes())
    result = run(enc, proc, [cells[0], cells[1], "copy.png", cells[0]], store, ns, tmp_path)
    assert enc.rows == 2 and (result.encoded, result.reused, result.absent) == (2, 2, 0)
    assert result.keys[0] == result.keys[2] == result.keys[3]


def test_text_tokens_are_stored_padded_and_masked(tmp_path: Path) -> None:
    texts = ["a short one", "a much longer piece of text here", "", "short one"]
    proc = TextProcessor(TextConfig(tokenizer="word")).fit(texts)
    enc = CountingTextEncoder(proc.vocab_size)
    ns = namespace(module_fingerprint(enc, {}), proc.get_state())
    store = EmbeddingStore(tmp_path / "cache")
    kw = {"modality": "text", "base_dir": None, "store": store, "namespace": ns}
    plain = precompute(enc, proc, texts, **kw)
    assert plain.absent == 1 and enc.rows == 3
    with pytest.raises(CacheMissError, match="store_tokens=True"):
        load_batch(store, ns, plain.keys, tokens=True)
    result = precompute(enc, proc, texts, store_tokens=True, **kw)
    assert result.encoded == 3 and enc.rows == 6  # cached without tokens → encoded again
    assert precompute(enc, proc, texts, store_tokens=True, **kw).encoded == 0
    batch = load_batch(store, ns, result.keys)
    assert (
        batch["cached_tokens"].shape == (4, 7, D) and batch["cached_tokens"].dtype == torch.float32
    )
    assert batch["cached_token_mask"].dtype == torch.bool
    assert batch["cached_token_mask"].sum(1).tolist() == [3, 7, 0, 2]
    assert torch.all(batch["cached_tokens"][0, 3:] == 0) and torch.all(
        batch["cached_tokens"][2] == 0
    )
    ids = proc.process(texts[1])
    torch.testing.assert_close(
        batch["cached_tokens"][1], enc.emb(ids).detach(), rtol=1e-3, atol=1e-3
    )
    assert set(load_batch(store, ns, result.keys, tokens=False)) == {"cached_pooled", "present"}


def test_errors_are_clear(tmp_path: Path) -> None:
    cells, proc, _, ns, store = image_setup(tmp_path, n=2)
    with pytest.raises(ConfigError, match="batch_size"):
        run(CountingImageEncoder(), proc, cells, store, ns, tmp_path, batch_size=0)
    with pytest.raises(ConfigError, match="store_tokens=False"):
        run(CountingImageEncoder(tokens=False), proc, cells, store, ns, tmp_path, store_tokens=True)
    keys = run(CountingImageEncoder(), proc, cells, store, ns, tmp_path).keys
    store.clear(ns)
    with pytest.raises(CacheMissError, match="precompute again"):
        load_batch(store, ns, keys)
    with pytest.raises(CacheMissError, match="no features"):
        load_batch(store, ns, [None])


class DropDarkEncoder(CountingImageEncoder):
    """Marks rows whose mean pixel is below zero absent (an encoder-side refusal)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> ModalityOutput:
        out = super().forward(batch)
        return out.masked(batch["pixels"].mean((1, 2, 3)) >= 0)


def test_rows_the_encoder_marks_absent_are_absent(tmp_path: Path) -> None:
    cells, proc, _, ns, store = image_setup(tmp_path, n=6)  # values 0..150: dark and light
    result = run(DropDarkEncoder(), proc, cells, store, ns, tmp_path)
    dark = [proc.process(c, base_dir=tmp_path).mean() < 0 for c in cells]
    assert 0 < sum(dark) < len(cells)
    assert [k is None for k in result.keys] == dark
    assert result.absent == sum(dark) and store.count(ns) == len(cells) - sum(dark)
