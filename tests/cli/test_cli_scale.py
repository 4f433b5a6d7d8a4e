"""`crossfuse train` at scale: two DDP processes (gloo on CPU), and a killed run resumed."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crossfuse.training.checkpoint_io import SafeCheckpointIO
from tests.conftest import TINY_CONFIG, make_toy_table
from tests.training.test_resumable_loader import checkpoint_loader_state


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crossfuse", *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # a process group, so a test can kill every DDP rank
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


def recipe(folder: Path, rows: int, **train) -> Path:
    make_toy_table(folder / "data", n=rows)
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["model"]["encoders"]["image"]["finetune"] = "frozen"  # read from the embedding cache
    cfg["train"].update({"cache_dir": str(folder / "cache"), **train})
    cfg.update(label="label", train_table="data/toy.csv", modalities={"score": "ignore"})
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fit_summary(model: Path) -> dict:
    return json.loads((model / "crossfuse.json").read_text())["fit_summary"]


def valid_metrics(model: Path) -> dict:
    return json.loads((model / "metrics.json").read_text())["valid"]["tasks"]["label"]


def assert_same_training(resumed: Path, whole: Path) -> tuple[dict, dict]:
    """The learning curves and final metrics of two model directories agree to 1e-5;
    returns their fit summaries."""
    s_resumed, s_whole = fit_summary(resumed), fit_summary(whole)
    for a, b in zip(s_resumed["history"], s_whole["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-5)
    m_resumed, m_whole = valid_metrics(resumed), valid_metrics(whole)
    for key in ("accuracy", "f1_macro", "log_loss"):
        assert m_resumed[key] == pytest.approx(m_whole[key], abs=1e-5)
    return s_resumed, s_whole


def resume_and_compare(folder: Path, reference: subprocess.Popen) -> tuple[dict, dict]:
    """Resume the killed run in ``folder/run``, let the uninterrupted ``reference`` finish,
    and check that both trained alike (``killed`` vs ``whole``); returns their summaries."""
    rc, _, err = finish(start("train", "--resume", "run", cwd=folder))
    assert rc == 0, err
    rc, _, err = finish(reference)
    assert rc == 0, err
    return assert_same_training(folder / "killed", folder / "whole")


def test_two_ddp_processes_match_one_and_write_one_model(tmp_path: Path) -> None:
    rcp = recipe(tmp_path, rows=240, epochs=5)
    one = start("train", "-c", str(rcp), "--out", "one", cwd=tmp_path)
    two = start(
        "train", "-c", str(rcp), "--out", "two", "--devices", "2", "--strategy", "ddp",
        cwd=tmp_path,
    )  # fmt: skip
    (rc1, _, err1), (rc2, out2, err2) = finish(one), finish(two)
    assert rc1 == 0, err1
    assert rc2 == 0, err2
    assert out2.count("model written to") == 1  # rank 1 trained but wrote nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cache", "data", "one", "recipe.yaml", "two",
    ]  # fmt: skip
    s1, s2 = fit_summary(tmp_path / "one"), fit_summary(tmp_path / "two")
    assert (s1["processes"], s2["processes"]) == (1, 2)
    assert s1["valid_rows"] == s2["valid_rows"] == 36
    m1, m2 = valid_metrics(tmp_path / "one"), valid_metrics(tmp_path / "two")
    assert m1["accuracy"] >= 0.8 and m2["accuracy"] >= 0.8
    assert abs(m1["accuracy"] - m2["accuracy"]) <= 0.1
    # the validation score gathered over both ranks (torchmetrics) is the whole
    # validation table's: it equals scoring the restored best weights on every row
    best = s2["history"][s2["best_epoch"]]["valid_metric"]
    assert best == pytest.approx(m2["accuracy"], abs=1e-6)
    # the frozen image input was encoded once per distinct image, shared by the ranks
    assert sum(s["cache"]["picture"]["encoded"] for s in (s1, s2)) == 240
    assert s2["cache"]["picture"]["encoded"] + s2["cache"]["picture"]["reused"] == 240


def test_a_killed_run_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    rcp = recipe(tmp_path, rows=480, epochs=4, batch_size=8, modality_dropout=0.2)
    victim = start("train", "-c", str(rcp), "--out", "killed", "--run-dir", "run", cwd=tmp_path)
    reference = start("train", "-c", str(rcp), "--out", "whole", cwd=tmp_path)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.safetensors"
    epoch = -1
    deadline = time.monotonic() + 240
    while epoch < 1 and victim.poll() is None and time.monotonic() < deadline:
        if checkpoint.exists():
            epoch = SafeCheckpointIO().load_checkpoint(checkpoint)["epoch"]
        time.sleep(0.02)
    time.sleep(0.3)  # into the next epoch
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (tmp_path / "killed").exists()
    assert SafeCheckpointIO().load_checkpoint(checkpoint)["epoch"] < 3
    resumed, whole = resume_and_compare(tmp_path, reference)
    assert resumed["epochs"] == whole["epochs"] == 4
    assert resumed["best_epoch"] == whole["best_epoch"]


def test_a_ddp_run_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    # 408 training rows, 204 per process, 26 batches of 8 per epoch; a checkpoint every
    # 5 steps, and the run killed after one taken inside its first epoch.
    rcp = recipe(tmp_path, rows=480, epochs=2, batch_size=8, modality_dropout=0.2)
    ddp = ("--devices", "2", "--strategy", "ddp")
    victim = start(
        "train", "-c", str(rcp), "--out", "killed", "--run-dir", "run", *ddp,
        "--checkpoint-every", "5", cwd=tmp_path,
    )  # fmt: skip
    reference = start("train", "-c", str(rcp), "--out", "whole", *ddp, cwd=tmp_path)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.safetensors"
    done = 0  # batches of the first epoch in the last checkpoint
    deadline = time.monotonic() + 240
    while done == 0 and time.monotonic() < deadline:
        assert victim.poll() is None, victim.communicate()[1]
        if checkpoint.exists():
            done = checkpoint_loader_state(checkpoint)["batches"]
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)  # both ranks
    victim.wait()
    assert not (tmp_path / "killed").exists()
    loader = checkpoint_loader_state(checkpoint)
    assert loader["epoch"] == 0 and 0 < loader["batches"] < 26  # killed inside epoch 1
    resumed, whole = resume_and_compare(tmp_path, reference)
    assert resumed["processes"] == whole["processes"] == 2


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, cwd: Path, *args: str) -> tuple[int, str]:
    """``crossfuse ARGS`` through the real entry point, in this process (no import cost)."""
    cli_app = importlib.import_module("crossfuse.cli.app")  # the package re-exports `app`
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["crossfuse", *args, "--no-progress"])
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main()
    return exit_info.value.code, capsys.readouterr().err


def test_resume_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    rc, err = run_main(monkeypatch, capsys, tmp_path, "train", "--resume", "nowhere")
    assert rc == 2 and "not a run directory" in err and "Traceback" not in err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(
        json.dumps({"train_table": "t.csv", "label": ["label"], "run_dir": "run"})
    )
    make_toy_table(tmp_path, n=40)
    (tmp_path / "t.csv").write_text((tmp_path / "toy.csv").read_text())
    rc, err = run_main(monkeypatch, capsys, tmp_path, "train", "--resume", "run")
    assert rc == 2 and "nothing to resume" in err and "Traceback" not in err
    (tmp_path / "run" / "run.json").write_text(json.dumps({"train_tabel": "t.csv"}))
    rc, err = run_main(monkeypatch, capsys, tmp_path, "train", "--resume", "run")
    assert rc == 2 and "unknown entry 'train_tabel'" in err
    args = ("train", "--train", "t.csv", "-l", "label", "--checkpoint-every", "5")
    rc, err = run_main(monkeypatch, capsys, tmp_path, *args)
    assert rc == 2 and "checkpoint_every needs a run directory" in err and "Traceback" not in err
