"""SafeCheckpointIO: Lightning checkpoints round-trip through safetensors + JSON, atomically."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from crossfuse.training.checkpoint_io import CheckpointFormatError, SafeCheckpointIO


def _checkpoint() -> dict:
    weight = torch.randn(3, 2)
    return {
        "epoch": 4,
        "global_step": 120,
        "state_dict": {"model.w": weight, "model.tied": weight, "flag": torch.tensor([True])},
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(2)}},
                "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0]}],
            }
        ],
        "callbacks": {
            "BestWeights": {"best": None, "best_epoch": 2, "weights": {"a": torch.zeros(1)}}
        },
        "rng": {"numpy": np.random.get_state(), "python": random.getstate()},
        "score": float("nan"),
        "limit": float("inf"),
    }


def test_round_trip_keeps_types_keys_and_values(tmp_path):
    io = SafeCheckpointIO()
    original = _checkpoint()
    io.save_checkpoint(original, tmp_path / "last.safetensors")
    back = io.load_checkpoint(tmp_path / "last.safetensors")
    assert back["epoch"] == 4 and back["global_step"] == 120
    assert torch.equal(back["state_dict"]["model.w"], original["state_dict"]["model.w"])
    assert back["state_dict"]["flag"].dtype == torch.bool
    opt = back["optimizer_states"][0]
    assert list(opt["state"]) == [0]  # integer keys stay integers (the optimizer needs them)
    assert opt["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["callbacks"]["BestWeights"]["best"] is None
    np_state = back["rng"]["numpy"]
    assert np_state[0] == "MT19937" and np.array_equal(np_state[1], original["rng"]["numpy"][1])
    random.setstate(back["rng"]["python"])  # accepted as a real state
    assert math.isnan(back["score"]) and back["limit"] == math.inf


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    io = SafeCheckpointIO()
    path = tmp_path / "last.safetensors"
    io.save_checkpoint({"epoch": 1}, path)
    with pytest.raises(TypeError, match="unsupported type"):
        io.save_checkpoint({"epoch": 2, "bad": object()}, path)
    assert io.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no temp left


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    io = SafeCheckpointIO()
    with pytest.raises(CheckpointFormatError, match="does not exist"):
        io.load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="cannot be read"):
        io.load_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(CheckpointFormatError, match="not a crossfuse checkpoint"):
        io.load_checkpoint(tmp_path / "weights.safetensors")
