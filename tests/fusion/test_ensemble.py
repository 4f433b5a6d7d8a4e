"""Ensemble fusion: averaged member probabilities, one loss per member, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossfuse.api import FusionPredictor
from crossfuse.errors import ConfigError
from crossfuse.fusion.ensemble import EnsembleFusion
from tests.conftest import TINY_CONFIG
from tests.fusion.helpers import PRESENT, WIDTHS, make_outputs

assert_close = torch.testing.assert_close


def build(out_dims: dict[str, int] | None = None) -> EnsembleFusion:
    torch.manual_seed(0)
    return EnsembleFusion(in_dims=WIDTHS, hidden=16, out_dims=out_dims or {"y": 3}).eval()


def test_output_is_the_mean_of_present_members_probabilities() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    out = fusion(outputs)
    members = fusion.member_logits(outputs)
    for row in range(6):
        here = [n for n in sorted(WIDTHS) if PRESENT[n][row]]
        if not here:
            assert_close(out[row], fusion.prior.detach())
            continue
        mean = torch.stack([members[n][row].softmax(-1) for n in here]).mean(0)
        assert_close(out[row].softmax(-1), mean)
        assert_close(out[row].exp().sum(), torch.tensor(1.0))  # log-probabilities


def test_regression_task_averages_values_and_tasks_are_split() -> None:
    fusion = build({"y": 3, "score": 1})
    outputs = make_outputs(WIDTHS, PRESENT)
    out, members = fusion(outputs), fusion.member_logits(outputs)
    assert out.shape == (6, 4)
    expected = (members["audio"][0, 3] + members["image"][0, 3] + members["text"][0, 3]) / 3
    assert_close(out[0, 3], expected)
    assert_close(out[4, 3], members["audio"][4, 3])  # row 4: audio only


def test_each_member_loss_reaches_only_its_own_input() -> None:
    fusion = build()
    outputs = make_outputs(WIDTHS, PRESENT)
    for value in outputs.values():
        value.pooled.requires_grad_(True)
    pairs = fusion.members(outputs)
    assert len(pairs) == len(WIDTHS) + 1  # one per input plus the prior
    for name, (logits, rows) in zip(sorted(WIDTHS), pairs, strict=False):
        assert torch.equal(rows, outputs[name].present)
        grads = torch.autograd.grad(
            logits[rows].sum(), [o.pooled for o in outputs.values()], allow_unused=True
        )
        for other, grad in zip(outputs, grads, strict=True):
            touched = grad is not None and bool(grad.abs().sum() > 0)
            assert touched == (other == name)
    prior_logits, prior_rows = pairs[-1]
    assert prior_rows.all() and prior_logits.shape == (6, 3)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        EnsembleFusion(in_dims=WIDTHS, hidden=8, out_dims={"y": 2}, dropout=2.0)
    with pytest.raises(ConfigError, match="at least one task"):
        EnsembleFusion(in_dims=WIDTHS, hidden=8, out_dims={})


def test_ensemble_model_learns_the_toy(toy_table: Path) -> None:
    config = {**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "fusion": "ensemble"}}
    p = FusionPredictor("label", config=config, modalities={"score": "ignore"}, progress=False)
    p.fit(toy_table, seed=0)
    assert p.evaluate(toy_table)["tasks"]["label"]["accuracy"] > 0.8
    history = p.fit_summary_["history"]
    assert len(history) == p.fit_summary_["epochs"] == TINY_CONFIG["train"]["epochs"]
    assert {"epoch", "train_loss", "valid_loss", "valid_metric"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
