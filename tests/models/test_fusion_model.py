import pytest
import torch

from crossfuse.config import ModelConfig, from_dict
from crossfuse.encoders import InputSpec
from crossfuse.models import TaskSpec, build_model

SPECS = [
    InputSpec("img", "image", shape=(1, 8, 8)),
    InputSpec("tabular", "tabular", n_numeric=2, cardinalities=[4]),
    InputSpec("txt", "text", vocab_size=10),
]
TASKS = [TaskSpec("y", "classification", 3), TaskSpec("r", "regression", 1)]
CFG = {
    "hidden": 16,
    "encoders": {
        "image": {"dim": 8, "options": {"widths": [4]}},
        "text": {"dim": 8, "options": {"embed_dim": 4, "hidden": 4}},
        "tabular": {"dim": 8},
    },
}


def batch(b: int = 4) -> dict:
    torch.manual_seed(0)
    return {
        "img": {
            "pixels": torch.randn(b, 1, 8, 8),
            "present": torch.tensor([True, False, True, True]),
        },
        "tabular": {
            "numeric": torch.randn(b, 2),
            "numeric_present": torch.ones(b, 2, dtype=torch.bool),
            "categorical": torch.tensor([[2], [3], [0], [1]]),
            "present": torch.ones(b, dtype=torch.bool),
        },
        "txt": {
            "ids": torch.randint(1, 10, (b, 5)),
            "lengths": torch.tensor([5, 3, 0, 1]),
            "present": torch.tensor([True, True, False, True]),
        },
    }


@pytest.mark.parametrize("fusion", ["weighted", "concat", "late"])
def test_forward_shapes_per_task(fusion: str) -> None:
    model = build_model(SPECS, TASKS, from_dict(ModelConfig, {**CFG, "fusion": fusion})).eval()
    logits = model(batch())
    assert logits["y"].shape == (4, 3) and logits["r"].shape == (4, 1)
    assert all(torch.isfinite(v).all() for v in logits.values())
    assert (len(model.heads) == 0) == (fusion == "late")


def test_keep_mask_hides_an_input() -> None:
    model = build_model(SPECS, TASKS, from_dict(ModelConfig, CFG)).eval()
    b = batch()
    hidden = model(b, keep={"img": torch.zeros(4, dtype=torch.bool)})
    changed = batch()
    changed["img"]["pixels"] += 5.0  # hidden input: its values cannot matter
    torch.testing.assert_close(
        model(changed, keep={"img": torch.zeros(4, dtype=torch.bool)}), hidden
    )
    assert not torch.allclose(model(changed)["y"][0], hidden["y"][0])


def test_frozen_encoder_and_unknown_names() -> None:
    cfg = from_dict(
        ModelConfig,
        {
            **CFG,
            "encoders": {
                **CFG["encoders"],
                "img": {"dim": 8, "finetune": "frozen", "options": {"widths": [4]}},
            },
        },
    )
    model = build_model(SPECS, TASKS, cfg)
    assert not any(p.requires_grad for p in model.encoders["img"].parameters())
    assert any(p.requires_grad for p in model.encoders["txt"].parameters())
    from crossfuse.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown fusion"):
        build_model(SPECS, TASKS, from_dict(ModelConfig, {**CFG, "fusion": "nope"}))
    with pytest.raises(ConfigError, match="unknown encoder"):
        build_model(
            SPECS,
            TASKS,
            from_dict(ModelConfig, {**CFG, "encoders": {"image": {"name": "vit-huge"}}}),
        )
