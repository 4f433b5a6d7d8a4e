import pytest
import torch
from torch import nn

from crossfuse.models.transfer import apply_finetune, is_frozen, param_groups


class Blocky(nn.Module):
    """A toy encoder with three blocks and a norm in the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4)

    def blocks(self) -> list[nn.Module]:
        return [self.a, self.b, self.c]


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"x": Blocky()})
        self.head = nn.Linear(4, 2)


def trainable(module: nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_modes() -> None:
    enc = Blocky()
    apply_finetune(enc, "frozen")
    assert is_frozen(enc)
    apply_finetune(enc, "partial", partial_blocks=1)
    assert trainable(enc) == {"c.weight", "c.bias", "a.1.weight", "a.1.bias"}  # last block + norms
    apply_finetune(enc, "partial", partial_blocks=2)
    assert {"b.weight", "c.weight"} <= trainable(enc) and "a.0.weight" not in trainable(enc)
    apply_finetune(enc, "full")
    assert len(trainable(enc)) == 8


def test_layer_wise_decay_and_separate_encoder_lr() -> None:
    model = Model()
    groups = param_groups(model, lr=1.0, encoder_lr=0.1, layer_decay=0.5, weight_decay=0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    enc = model.encoders["x"]
    assert lr_of[id(model.head.weight)] == 1.0
    assert lr_of[id(enc.c.weight)] == pytest.approx(0.1)
    assert lr_of[id(enc.b.weight)] == pytest.approx(0.05)
    assert lr_of[id(enc.a[0].weight)] == pytest.approx(0.025)
    assert wd_of[id(enc.c.weight)] == 0.01 and wd_of[id(enc.c.bias)] == 0.0
    apply_finetune(enc, "frozen")
    groups = param_groups(model, lr=1.0, encoder_lr=None, layer_decay=1.0, weight_decay=0.0)
    assert sum(len(g["params"]) for g in groups) == 2  # only the head trains
    opt = torch.optim.AdamW(groups)
    assert len(opt.param_groups) == len(groups)


def test_partly_frozen_encoders_keep_batchnorm_statistics() -> None:
    from crossfuse.config import ModelConfig, from_dict
    from crossfuse.encoders import InputSpec
    from crossfuse.models import TaskSpec, build_model

    spec = [InputSpec("img", "image", shape=(1, 8, 8))]
    tasks = [TaskSpec("y", "classification", 2)]

    def bn_training(finetune: str, freeze_first: bool = False) -> set[bool]:
        cfg = from_dict(
            ModelConfig,
            {
                "encoders": {
                    "image": {"dim": 8, "finetune": finetune, "options": {"widths": [4, 4]}}
                }
            },
        )
        model = build_model(spec, tasks, cfg)
        if freeze_first:  # partly trained: the first conv frozen, the rest trains
            model.encoders["img"].features[0].requires_grad_(False)
        model.train()
        return {
            m.training for m in model.encoders["img"].modules() if isinstance(m, nn.BatchNorm2d)
        }

    assert bn_training("full") == {True}
    assert bn_training("full", freeze_first=True) == {False}
    assert bn_training("frozen") == {False}
