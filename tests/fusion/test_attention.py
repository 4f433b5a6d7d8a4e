"""Attention fusion: token sequences, padding, cross-modal blocks, weights, learnability."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion import create_fusion
from crossfuse.fusion.attention import AttentionFusion, cap_tokens
from tests.fusion.helpers import (
    PRESENT,
    WIDTHS,
    WithHead,
    fit_accuracy,
    make_outputs,
    one_row,
    with_pooled,
    xor_inputs,
)

assert_close = torch.testing.assert_close
HAS_ANY = torch.tensor([True, True, True, False, True, False])
TEXT_LENGTHS = [5, 3, 1, 0, 2, 4]  # real text tokens per row (row 3: text absent anyway)
MODES = [{}, {"cross_modal": True}]


def build(**options: object) -> AttentionFusion:
    torch.manual_seed(0)
    return AttentionFusion(in_dims=WIDTHS, hidden=16, out_dims={"y": 2}, **options)


def token_outputs() -> dict[str, ModalityOutput]:
    """PRESENT inputs where text has 5 padded tokens, image 7 tokens without a mask, and
    audio none (it falls back to its pooled vector)."""
    outputs = make_outputs(WIDTHS, PRESENT)
    g = torch.Generator().manual_seed(7)
    mask = torch.arange(5)[None, :] < torch.tensor(TEXT_LENGTHS)[:, None]  # (6, 5)
    text, image = outputs["text"], outputs["image"]
    outputs["text"] = ModalityOutput(
        text.pooled, text.present, torch.randn(6, 5, 8, generator=g), mask
    )
    outputs["image"] = ModalityOutput(
        image.pooled, image.present, torch.randn(6, 7, 12, generator=g)
    )
    return outputs


def with_tokens(outputs: dict, name: str, where: torch.Tensor, value: float) -> dict:
    """A copy where ``name``'s tokens at positions ``where (B, T)`` are set to ``value``."""
    o = outputs[name]
    tokens = o.tokens.masked_fill(where[:, :, None], value)
    return {**outputs, name: ModalityOutput(o.pooled, o.present, tokens, o.token_mask)}


def test_parts_follow_the_options() -> None:
    plain = build(layers=3, heads=2)
    assert plain.out_dim == 16 and len(plain.blocks) == 3 and plain.cross is None
    assert plain.pos_emb is None and plain.blocks[0].attn.num_heads == 2
    both = build(use_tokens=True, cross_modal=True, max_tokens=9)
    assert both.pos_emb.shape == (9, 16) and len(both.cross) == 3
    for fusion in (plain, both):
        out = fusion(token_outputs())
        assert out.shape == (6, 16) and torch.isfinite(out).all()


def test_heads_must_divide_hidden() -> None:
    with pytest.raises(ConfigError, match=r"hidden \(18\).*heads \(4\)"):
        create_fusion("attention", WIDTHS, hidden=18, out_dims={})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"layers": 0}, "layers"),
        ({"heads": 0}, "heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"use_tokens": "yes"}, "use_tokens"),
        ({"cross_modal": 1}, "cross_modal"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion("attention", WIDTHS, hidden=16, out_dims={}, **options)


def test_tokens_of_the_wrong_width_are_config_errors() -> None:
    outputs = token_outputs()
    text = outputs["text"]
    outputs["text"] = ModalityOutput(text.pooled, text.present, torch.randn(6, 5, 3), None)
    with pytest.raises(ConfigError, match="tokens of input 'text'"):
        build(use_tokens=True)(outputs)


def test_sequences_use_tokens_only_when_asked() -> None:
    outputs = token_outputs()
    assert [h.shape[1] for h, _ in build().sequences(outputs)] == [1, 1, 1]
    seqs = build(use_tokens=True).sequences(outputs)  # audio, image, text
    assert [h.shape[1] for h, _ in seqs] == [1, 7, 5]
    assert torch.equal(seqs[0][1][:, 0], outputs["audio"].present)
    assert torch.equal(seqs[1][1], outputs["image"].present[:, None].expand(6, 7))  # no mask
    assert torch.equal(seqs[2][1], outputs["text"].token_mask & outputs["text"].present[:, None])


@pytest.mark.parametrize("mode", MODES)
def test_padded_and_absent_tokens_are_ignored(mode: dict) -> None:
    fusion = build(use_tokens=True, **mode).eval()
    outputs = token_outputs()
    base = fusion(outputs)
    padded = ~outputs["text"].token_mask | ~outputs["text"].present[:, None]
    absent_image = ~outputs["image"].present[:, None].expand(6, 7)
    for value in (float("nan"), float("inf"), 1e6):
        assert torch.equal(fusion(with_tokens(outputs, "text", padded, value)), base)
        assert torch.equal(fusion(with_tokens(outputs, "image", absent_image, value)), base)
    real = torch.zeros(6, 5, dtype=torch.bool)
    real[1, 2] = True  # the last real text token of row 1
    out = fusion(with_tokens(outputs, "text", real, 3.0))
    assert torch.equal((out != base).any(dim=1), torch.tensor([False, True] + [False] * 4))


def test_tokens_replace_the_pooled_vector_only_when_used() -> None:
    outputs = token_outputs()
    changed = with_pooled(outputs, "text", outputs["text"].present, 2.0)
    changed["text"] = ModalityOutput(
        changed["text"].pooled,
        outputs["text"].present,
        outputs["text"].tokens,
        outputs["text"].token_mask,
    )
    with_toks, without = build(use_tokens=True).eval(), build().eval()
    assert torch.equal(with_toks(changed), with_toks(outputs))  # text came from its tokens
    assert not torch.equal(without(changed), without(outputs))
    real = outputs["text"].token_mask & outputs["text"].present[:, None]
    assert torch.equal(without(with_tokens(outputs, "text", real, 2.0)), without(outputs))


def test_cap_tokens_is_a_masked_window_mean() -> None:
    tokens = torch.tensor([[1.0, 2.0, 0.0, 4.0, 0.0, 0.0], [0.0] * 6])[:, :, None]  # (2, 6, 1)
    real = torch.tensor([[True, True, False, True, False, False], [False] * 6])
    capped, kept = cap_tokens(tokens, real, 3)  # windows [0:2], [2:4], [4:6]
    assert torch.equal(capped[:, :, 0], torch.tensor([[1.5, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(kept, torch.tensor([[True, True, False], [False, False, False]]))
    same, same_real = cap_tokens(tokens, real, 6)
    assert same is tokens and same_real is real


def test_long_token_sequences_are_capped() -> None:
    fusion = build(use_tokens=True, max_tokens=3).eval()
    outputs = token_outputs()
    seqs = fusion.sequences(outputs)
    assert [h.shape[1] for h, _ in seqs] == [1, 3, 3]
    assert torch.isfinite(fusion(outputs)).all()


@pytest.mark.parametrize("mode", MODES)
def test_rows_do_not_depend_on_other_rows_with_tokens(mode: dict) -> None:
    fusion = build(use_tokens=True, **mode).eval()
    outputs = token_outputs()
    full = fusion(outputs)
    for i in range(6):
        assert_close(fusion(one_row(outputs, i))[0], full[i], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_eval_matches_the_training_path_without_dropout(mode: dict) -> None:
    # eval may take PyTorch's fused attention "fast path"; masking must stay exact there
    fusion = build(use_tokens=True, dropout=0.0, **mode)
    outputs = token_outputs()
    trained = fusion.train()(outputs)
    assert_close(fusion.eval()(outputs), trained, rtol=0, atol=1e-5)


def test_cross_modal_without_partners_passes_through() -> None:
    fusion = build(cross_modal=True).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    seqs = fusion.sequences(outputs)
    crossed = fusion.cross_attend(seqs)
    h = seqs[0][0][4]  # row 4: audio is the only present input, (1, H)
    block = fusion.cross[0]
    assert_close(crossed[0][0][4], h + block.ff(block.norm_ff(h)))
    assert torch.equal(crossed[0][1][:, 0], outputs["audio"].present)


def test_cross_modal_attends_to_the_other_present_inputs() -> None:
    fusion = build(cross_modal=True).eval()
    outputs = make_outputs(WIDTHS, PRESENT)
    base = fusion.cross_attend(fusion.sequences(outputs))[0][0]  # audio's vectors (B, 1, H)
    text = outputs["text"].present
    changed = fusion.cross_attend(fusion.sequences(with_pooled(outputs, "text", text, 2.0)))[0][0]
    moved = (changed != base).flatten(1).any(dim=1)
    # audio's vector moves exactly where both are present (absent audio pools to zeros)
    assert torch.equal(moved, text & outputs["audio"].present)


@pytest.mark.parametrize("mode", [*MODES, {"use_tokens": True}])
def test_modality_weights_sum_to_one_over_present_inputs(mode: dict) -> None:
    fusion = build(**mode).eval()
    outputs = token_outputs()
    w = fusion.modality_weights(outputs)
    assert_close(sum(w.values()), HAS_ANY.float())
    for n in WIDTHS:
        assert (w[n][~outputs[n].present] == 0).all() and (w[n][outputs[n].present] > 0).all()


@pytest.mark.parametrize("mode", MODES)
def test_gradients_finite_and_zero_for_hidden_tokens(mode: dict) -> None:
    fusion = build(use_tokens=True, **mode)
    outputs = token_outputs()
    text = outputs["text"]
    hidden = ~text.token_mask | ~text.present[:, None]
    tokens = text.tokens.masked_fill(hidden[:, :, None], float("nan")).requires_grad_()
    outputs["text"] = ModalityOutput(text.pooled, text.present, tokens, text.token_mask)
    out = fusion(outputs)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(tokens.grad).all() and (tokens.grad[hidden] == 0).all()
    assert (tokens.grad[~hidden].abs().sum(dim=-1) > 0).all()


@pytest.mark.parametrize("mode", MODES)
def test_learns_xor_of_two_inputs(mode: dict) -> None:
    x, y = xor_inputs()

    def accuracy(widths: dict[str, int]) -> float:
        torch.manual_seed(0)
        fusion = AttentionFusion(
            in_dims=widths, hidden=16, out_dims={}, layers=1, dropout=0.0, **mode
        )
        return fit_accuracy(WithHead(fusion), {k: x[k] for k in widths}, y)

    assert accuracy({"a": 4, "b": 6}) > 0.9
    assert accuracy({"a": 4}) < 0.7
