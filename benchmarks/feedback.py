"""The feedback loop on AV-MNIST: a class that is scarce in training, corrected through
the live service, then `refine`.

One digit keeps only a few of its training rows; the rest of them, with as many other
training rows, become a separate "field" split the model never trained on. The model is
served by a real `crossfuse serve` process; every field row is sent to /predict and
each mistake gets /feedback with the right label. `refine` then fine-tunes on the
feedback plus a replay sample of the training rows, judged on the validation split, and
promotes the new version only if that split's accuracy did not drop by more than 0.01.
Accuracy on the scarce digit and overall is measured on the untouched test split,
before and after. Writes results/feedback.{json,md}.

    python benchmarks/feedback.py [--digit 5] [--keep 8] [--epochs 10] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_results  # noqa: E402

from crossfuse.api import FusionPredictor  # noqa: E402
from crossfuse.config import to_dict  # noqa: E402
from crossfuse.data.builtin.av_mnist import build_av_mnist  # noqa: E402
from crossfuse.feedback.refine import refine_model  # noqa: E402
from crossfuse.feedback.store import FeedbackStore  # noqa: E402
from crossfuse.recipe import load_recipe  # noqa: E402
from serve import free_port, start_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("CROSSFUSE_DATA", REPO.parent / "shared" / "data"))


def absolute(df: pd.DataFrame, data: Path) -> pd.DataFrame:
    return df.assign(
        image=[str(data / p) for p in df.image], audio=[str(data / p) for p in df.audio]
    )


def scores(model: Path, test: pd.DataFrame, digit: int) -> dict[str, float]:
    predicted = FusionPredictor.load(model).predict(test).to_numpy()
    right = predicted == test.label.to_numpy()
    mine = test.label.to_numpy() == digit
    return {"accuracy": float(right.mean()), f"digit_{digit}_accuracy": float(right[mine].mean())}


def collect_feedback(model: Path, field: pd.DataFrame) -> dict[str, int]:
    """Send every field row to the live service; correct its mistakes via /feedback."""
    port = free_port()
    server = start_server(model, port)
    sent = wrong = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            for row in field.itertuples():
                files = {
                    "image": ("x.png", Path(row.image).read_bytes(), "image/png"),
                    "audio": ("x.wav", Path(row.audio).read_bytes(), "audio/wav"),
                }
                answer = http.post("/predict", files=files)
                answer.raise_for_status()
                result = answer.json()
                sent += 1
                if str(result["label"]) != str(row.label):
                    wrong += 1
                    body = {"request_id": result["request_id"], "label": str(row.label)}
                    http.post("/feedback", json=body).raise_for_status()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"field_rows": sent, "mistakes_corrected": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digit", type=int, default=5)
    parser.add_argument("--keep", type=int, default=8, help="training rows kept of the digit")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--refine-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="an AV-MNIST folder already built")
    args = parser.parse_args()
    config = to_dict(load_recipe(REPO / "configs" / "av_mnist.yaml").config)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            src = shared_data()
            data = build_av_mnist(
                Path(tmp) / "av_mnist", fsdd_dir=src / "fsdd", mnist_dir=src / "mnist"
            ).out_dir
        train = absolute(pd.read_csv(data / "train.csv"), data)
        valid = absolute(pd.read_csv(data / "valid.csv"), data)
        test = absolute(pd.read_csv(data / "test.csv"), data)
        digit_rows = train[train.label == args.digit].sample(frac=1.0, random_state=args.seed)
        others = train[train.label != args.digit].sample(frac=1.0, random_state=args.seed)
        field = pd.concat(
            [digit_rows.iloc[args.keep :], others.iloc[: len(digit_rows) - args.keep]]
        )
        used = train.drop(index=field.index)
        model = Path(tmp) / "model"
        FusionPredictor("label", config=config, progress=False).fit(
            used, valid, epochs=args.epochs, seed=args.seed
        ).save(model)
        before = scores(model, test, args.digit)
        collected = collect_feedback(model, field)
        store = FeedbackStore.for_model(model)
        result = refine_model(
            model, store, data=used, holdout=valid, epochs=args.refine_epochs, seed=args.seed
        )
        after = scores(model, test, args.digit)  # load() follows the current version
    payload = {
        "digit": args.digit,
        "kept_training_rows_of_digit": args.keep,
        "training_rows": len(used),
        **collected,
        "before": before,
        "after": after,
        "refine": {
            "promoted": result.promoted,
            "reason": result.reason,
            "version": result.version,
            "metrics": result.metrics,
            "feedback_rows": result.feedback_rows,
            "replay_rows": result.replay_rows,
            "holdout_rows": result.holdout_rows,
        },
    }
    key = f"digit_{args.digit}_accuracy"
    md = (
        f"# Feedback loop on AV-MNIST (digit {args.digit} scarce: {args.keep} of its "
        f"training rows kept; {len(used)} training rows)\n\n"
        f"{collected['field_rows']} field rows sent to the live service; "
        f"{collected['mistakes_corrected']} mistakes corrected through /feedback; refine "
        f"used {result.feedback_rows} feedback + {result.replay_rows} replay rows, "
        f"held-out = validation split ({result.holdout_rows} rows).\n\n"
        + md_table(
            ["test split (300 rows)", "before refine", "after refine"],
            [
                [f"accuracy on digit {args.digit}", f"{before[key]:.3f}", f"{after[key]:.3f}"],
                ["overall accuracy", f"{before['accuracy']:.3f}", f"{after['accuracy']:.3f}"],
            ],
        )
        + f"\n\nPromoted: {result.promoted} — {result.reason}\n\n"
        "Reproduce: `python benchmarks/feedback.py`.\n"
    )
    write_results("feedback", payload, md)
    print(md)


if __name__ == "__main__":
    main()
