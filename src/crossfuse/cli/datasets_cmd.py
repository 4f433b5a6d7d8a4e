"""`crossfuse datasets build ...`: the bundled data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crossfuse.cli.common import out

datasets_app = typer.Typer(help="Build the bundled data sets.", no_args_is_help=True)
build_app = typer.Typer(help="Build a data set into a folder.", no_args_is_help=True)
datasets_app.add_typer(build_app, name="build")


@build_app.command("demo")
def build_demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the data set into.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 1500,
    seed: Annotated[int, typer.Option(help="Random seed (same seed → same files).")] = 0,
    missing_rate: Annotated[
        float, typer.Option(help="Share of each modality's cells left empty.")
    ] = 0.10,
) -> None:
    """The bundled demo set: handwritten digits, keypad tones, typed words and a number."""
    from crossfuse.data.builtin.demo import build_demo

    result = build_demo(out_dir, n_rows=rows, seed=seed, missing_rate=missing_rate, progress=True)
    out.print(f"demo data set written to {result.out_dir}: {json.dumps(result.counts)}")


@build_app.command("av-mnist")
def build_av_mnist_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the data set into.")],
    fsdd: Annotated[
        Path | None, typer.Option(help="Free Spoken Digit Dataset folder (with recordings/).")
    ] = None,
    mnist: Annotated[Path | None, typer.Option(help="Folder with the MNIST IDX .gz files.")] = None,
    download: Annotated[
        bool,
        typer.Option(help="Download FSDD/MNIST from their public sources when no folder is given."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    image_energy_removed: Annotated[
        float, typer.Option(help="Share of PCA energy removed from the images.")
    ] = 0.75,
    audio_snr_db: Annotated[
        float, typer.Option(help="Signal-to-noise ratio of the audio, dB.")
    ] = 0.0,
    noise: Annotated[
        str, typer.Option(help="Noise mixed into the audio: white or pink.")
    ] = "white",
    valid_fraction: Annotated[
        float, typer.Option(help="Share of training recordings used for validation.")
    ] = 0.1,
    holdout_speaker: Annotated[
        str, typer.Option(help="Speaker whose recordings form the speaker-holdout test split.")
    ] = "theo",
) -> None:
    """AV-MNIST: real MNIST digits paired with real spoken digits of the same class."""
    from crossfuse.data.builtin.av_mnist import build_av_mnist

    result = build_av_mnist(
        out_dir,
        fsdd_dir=fsdd,
        mnist_dir=mnist,
        download=download,
        seed=seed,
        image_energy_removed=image_energy_removed,
        audio_snr_db=audio_snr_db,
        noise=noise,
        valid_fraction=valid_fraction,
        holdout_speaker=holdout_speaker,
        progress=True,
    )
    out.print(f"AV-MNIST written to {result.out_dir}: {json.dumps(result.counts)}")


@build_app.command("mustard")
def build_mustard_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the tables into.")],
    src: Annotated[Path, typer.Option(help="MUStARD folder with sarcasm_data.json.")],
    seed: Annotated[int, typer.Option(help="Random seed of the stratified split.")] = 0,
) -> None:
    """MUStARD sarcasm: utterance and context text, speaker and show (no media)."""
    from crossfuse.data.builtin.mustard import build_mustard

    result = build_mustard(out_dir, src=src, seed=seed)
    out.print(f"MUStARD written to {result.out_dir}: {json.dumps(result.counts)}")
