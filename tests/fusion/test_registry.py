"""The fusion registry: built-in names, construction by name, and bad options."""

from __future__ import annotations

import pytest
import torch

from crossfuse.encoders.base import ModalityOutput
from crossfuse.errors import ConfigError
from crossfuse.fusion import create_fusion, fusion_names
from crossfuse.fusion.concat import ConcatFusion
from crossfuse.fusion.late import LateFusion
from crossfuse.fusion.weighted import WeightedFusion

IN_DIMS = {"text": 8, "image": 12}
OUT_DIMS = {"kind": 3, "good": 2}


def test_builtin_names_are_registered() -> None:
    assert {"weighted", "concat", "late"} <= set(fusion_names())


@pytest.mark.parametrize(
    ("name", "cls", "out_dim", "decision_level"),
    [
        ("weighted", WeightedFusion, 16, False),
        ("concat", ConcatFusion, 16, False),
        ("late", LateFusion, 5, True),
    ],
)
def test_create_by_name(name: str, cls: type, out_dim: int, decision_level: bool) -> None:
    fusion = create_fusion(name, IN_DIMS, hidden=16, out_dims=OUT_DIMS)
    assert type(fusion) is cls
    assert fusion.out_dim == out_dim and fusion.decision_level is decision_level
    outputs = {
        n: ModalityOutput(torch.randn(4, w), torch.tensor([True, False, True, False]))
        for n, w in IN_DIMS.items()
    }
    assert fusion(outputs).shape == (4, out_dim)


def test_options_reach_the_fusion() -> None:
    fusion = create_fusion(
        "concat", IN_DIMS, hidden=16, out_dims=OUT_DIMS, proj_dim=4, layers=1, dropout=0.0
    )
    assert fusion.missing.shape == (2, 4) and len(fusion.mlp) == 3
    weighted = create_fusion(
        "weighted", IN_DIMS, hidden=16, out_dims=OUT_DIMS, weights={"text": 3, "image": 1}
    )
    assert torch.allclose(weighted.base_weights(), torch.tensor([0.25, 0.75]))  # image, text


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown fusion 'nope'.*concat"):
        create_fusion("nope", IN_DIMS, hidden=16, out_dims=OUT_DIMS)


@pytest.mark.parametrize("name", ["weighted", "concat", "late"])
def test_unknown_option_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        create_fusion(name, IN_DIMS, hidden=16, out_dims=OUT_DIMS, colour="red")


@pytest.mark.parametrize("name", ["weighted", "concat", "late"])
@pytest.mark.parametrize(
    ("in_dims", "hidden", "match"),
    [
        ({}, 16, "at least one input"),
        ({"text": 0}, 16, "width of input 'text'"),
        ({"text": 8.0}, 16, "width of input 'text'"),
        (IN_DIMS, 0, "hidden"),
        (IN_DIMS, True, "hidden"),
    ],
)
def test_bad_dims_are_config_errors(name: str, in_dims: dict, hidden: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion(name, in_dims, hidden=hidden, out_dims=OUT_DIMS)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"text": 1.0}, "name exactly"),
        ({"text": 1.0, "image": 1.0, "audio": 1.0}, "name exactly"),
        ([0.5, 0.5], "name exactly"),
        ({"text": -0.5, "image": 1.0}, "non-negative"),
        ({"text": 0, "image": 0.0}, "all zero"),
        ({"text": float("nan"), "image": 1.0}, "finite number"),
        ({"text": "high", "image": 1.0}, "finite number"),
    ],
)
def test_bad_weights_are_config_errors(weights: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion("weighted", IN_DIMS, hidden=16, out_dims=OUT_DIMS, weights=weights)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("concat", {"proj_dim": 0}, "proj_dim"),
        ("concat", {"layers": 0}, "layers"),
        ("concat", {"dropout": 1.0}, "dropout"),
        ("concat", {"dropout": -0.1}, "dropout"),
        ("late", {"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_options_are_config_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_fusion(name, IN_DIMS, hidden=16, out_dims=OUT_DIMS, **options)


@pytest.mark.parametrize("out_dims", [{}, {"kind": 0}, {"kind": 2.5}])
def test_late_needs_valid_tasks(out_dims: dict) -> None:
    with pytest.raises(ConfigError, match="task"):
        create_fusion("late", IN_DIMS, hidden=16, out_dims=out_dims)


@pytest.mark.parametrize("name", ["weighted", "concat", "late"])
def test_wrong_inputs_at_forward_are_config_errors(name: str) -> None:
    fusion = create_fusion(name, IN_DIMS, hidden=16, out_dims=OUT_DIMS)
    only_text = {"text": ModalityOutput(torch.randn(2, 8), torch.ones(2, dtype=torch.bool))}
    with pytest.raises(ConfigError, match="built for inputs"):
        fusion(only_text)
