"""fit(run_dir=...) checkpoints every epoch; resume=True continues; only rank 0 saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossfuse import FusionPredictor
from crossfuse.errors import ConfigError
from crossfuse.training.checkpoint_io import SafeCheckpointIO
from tests.conftest import TINY_CONFIG
from tests.training.test_resumable_loader import checkpoint_loader_state


def _predictor() -> FusionPredictor:
    return FusionPredictor(
        "label", config=TINY_CONFIG, modalities={"score": "ignore"}, progress=False
    )


def test_a_finished_run_resumes_to_the_same_model(toy_table: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _predictor().fit(toy_table, epochs=3, seed=1, run_dir=run)
    checkpoint = SafeCheckpointIO().load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert checkpoint["epoch"] == 2 and "optimizer_states" in checkpoint
    assert any((run / "tensorboard").iterdir())
    again = _predictor().fit(toy_table, epochs=3, seed=1, run_dir=run, resume=True)
    assert again.fit_summary_["history"] == first.fit_summary_["history"]
    assert again.fit_summary_["best_epoch"] == first.fit_summary_["best_epoch"]
    np.testing.assert_allclose(
        again.predict_proba(toy_table).to_numpy(), first.predict_proba(toy_table).to_numpy()
    )


def test_resume_without_a_checkpoint_is_refused(toy_table: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to resume"):
        _predictor().fit(toy_table, epochs=1, run_dir=tmp_path / "empty", resume=True)


def test_only_rank_zero_writes_the_model_directory(toy_table: Path, tmp_path: Path) -> None:
    predictor = _predictor().fit(toy_table, epochs=1)
    assert predictor.is_global_zero and predictor.fit_summary_["processes"] == 1
    predictor.global_rank_ = 1  # as in the second process of a DDP job
    assert not predictor.is_global_zero
    assert predictor.save(tmp_path / "model") == tmp_path / "model"
    assert not (tmp_path / "model").exists()


def test_resume_with_a_changed_table_is_refused(toy_table: Path, tmp_path: Path) -> None:
    import pandas as pd

    from crossfuse.errors import CrossfuseError

    run = tmp_path / "run"
    _predictor().fit(toy_table, epochs=1, run_dir=run)
    changed = pd.read_csv(toy_table).iloc[:-5]
    changed["picture"] = [str(toy_table.parent / p) for p in changed["picture"]]
    changed.to_csv(tmp_path / "changed.csv", index=False)
    with pytest.raises(CrossfuseError, match="training table changed"):
        _predictor().fit(tmp_path / "changed.csv", epochs=1, run_dir=run, resume=True)


def test_final_validation_reads_frozen_features_from_the_cache(
    toy_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import crossfuse.api as api
    from crossfuse.encoders.image import ImageCNNEncoder

    calls = {"fit": 0, "evaluate": 0}
    phase = {"now": "fit"}
    forward = ImageCNNEncoder.forward

    def counting(self, batch):
        calls[phase["now"]] += 1
        return forward(self, batch)

    evaluate_model = api.evaluate_model

    def evaluating(*args, **kwargs):
        phase["now"] = "evaluate"
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(ImageCNNEncoder, "forward", counting)
    monkeypatch.setattr(api, "evaluate_model", evaluating)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["model"]["encoders"]["image"]["finetune"] = "frozen"
    config["train"]["cache_dir"] = str(tmp_path / "cache")
    p = FusionPredictor("label", config=config, modalities={"score": "ignore"}, progress=False)
    p.fit(toy_table, epochs=1)
    assert calls["fit"] > 0 and calls["evaluate"] == 0  # encoded once, into the cache
    assert p.metrics_["valid"]["rows"] == p.fit_summary_["valid_rows"]


class Crash(Exception):
    """Stands in for a process killed in the middle of an epoch."""


def _fit_recording_steps(
    config: dict, toy_table: Path, run: Path, crash_at: int | None = None, **fit
) -> tuple[FusionPredictor, list[int]]:
    """Fit with ``run_dir=run``, recording the global step of every training batch run;
    raise :class:`Crash` when the step ``crash_at`` is about to run."""
    from crossfuse.training.lightning_module import FusionModule

    steps: list[int] = []
    real = FusionModule.training_step

    def step(self, batch, batch_idx):
        if self.trainer.global_step == crash_at:
            raise Crash
        steps.append(self.trainer.global_step)
        return real(self, batch, batch_idx)

    predictor = FusionPredictor(
        "label", config=config, modalities={"score": "ignore"}, progress=False
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FusionModule, "training_step", step)
        predictor.fit(toy_table, epochs=3, seed=4, run_dir=run, **fit)
    return predictor, steps


def test_a_run_killed_mid_epoch_resumes_after_its_last_checkpointed_step(
    toy_table: Path, tmp_path: Path
) -> None:
    import json

    config = json.loads(json.dumps(TINY_CONFIG))
    config["train"]["modality_dropout"] = 0.3  # training draws random numbers every batch
    per_epoch = 9  # 136 training rows in batches of 16
    whole, steps = _fit_recording_steps(config, toy_table, tmp_path / "whole", checkpoint_every=4)
    assert steps == list(range(3 * per_epoch))

    run = tmp_path / "run"
    with pytest.raises(Crash):
        _fit_recording_steps(config, toy_table, run, crash_at=per_epoch + 6, checkpoint_every=4)
    path = run / "checkpoints" / "last.safetensors"
    loader = checkpoint_loader_state(path)
    step = SafeCheckpointIO().load_checkpoint(path)["global_step"]
    assert (step, loader["epoch"], loader["batches"]) == (12, 1, 3)

    resumed, steps = _fit_recording_steps(config, toy_table, run, resume=True, checkpoint_every=4)
    assert steps == list(range(12, 3 * per_epoch))  # the rest of epoch 2, then epoch 3
    history = [(r["train_loss"], r["valid_metric"]) for r in resumed.fit_summary_["history"]]
    expected = [(r["train_loss"], r["valid_metric"]) for r in whole.fit_summary_["history"]]
    assert np.allclose(history, expected, atol=1e-5)
    np.testing.assert_allclose(
        resumed.predict_proba(toy_table).to_numpy(),
        whole.predict_proba(toy_table).to_numpy(),
        atol=1e-5,
    )


def test_checkpoint_every_needs_a_run_directory(toy_table: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoint_every needs a run directory"):
        _predictor().fit(toy_table, epochs=1, checkpoint_every=5)
