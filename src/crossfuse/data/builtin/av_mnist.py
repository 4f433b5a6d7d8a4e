"""Build AV-MNIST: spoken digits (FSDD) paired with MNIST images, both degraded.

After Vielzeuf et al. (2018, "CentralNet"), as in MultiBench: images lose PCA energy and
audio gets noise, so neither modality alone is easy. Unlike the original, the noise is
white or pink (ESC-50 is not available offline) and MNIST may be the t10k set only.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image
from rich.progress import track

from crossfuse import __version__
from crossfuse.data.builtin import sources
from crossfuse.data.builtin.degrade import mix_at_snr, pca_degrade
from crossfuse.data.builtin.sources import FsddRecording
from crossfuse.errors import ConfigError, CrossfuseError

SPLITS = ("train", "valid", "test")
HOLDOUT_DIR = "speaker-holdout"
TEST_TAKES = 5  # FSDD convention: takes 0-4 of every speaker × digit are the test set
# Independent random streams, so e.g. changing the noise never changes the split.
_SPLIT, _HOLDOUT, _PAIR, _IDS, _NOISE = range(5)


@dataclass(frozen=True)
class AvMnistConfig:
    """How AV-MNIST is built from FSDD and MNIST."""

    seed: int = 0  # seeds splits, pairing, file ids and noise: same seed → same bytes
    image_energy_removed: float = 0.75  # share of PCA energy removed from the images
    audio_snr_db: float = 0.0  # signal-to-noise ratio (dB) of each noise-mixed clip
    noise: str = "white"  # the noise mixed into the audio: "white" or "pink"
    valid_fraction: float = 0.1  # share of each digit's training recordings put in valid
    holdout_speaker: str = "theo"  # the speaker whose clips form the speaker-holdout test

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("image_energy_removed", "audio_snr_db", "valid_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= self.image_energy_removed < 1.0:
            raise ConfigError(
                f"image_energy_removed must be in [0, 1), got {self.image_energy_removed}"
            )
        if not math.isfinite(self.audio_snr_db):
            raise ConfigError(f"audio_snr_db must be a finite number, got {self.audio_snr_db}")
        if self.noise not in ("white", "pink"):
            raise ConfigError(f"noise must be 'white' or 'pink', got {self.noise!r}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ConfigError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if not isinstance(self.holdout_speaker, str) or not self.holdout_speaker.strip():
            raise ConfigError("holdout_speaker must be a speaker name, e.g. 'theo'")


@dataclass(frozen=True)
class AvMnistBuild:
    """Where a finished build lies and how many rows each split has."""

    out_dir: Path  # the build folder
    tables: dict[str, Path]  # split → train/valid/test.csv (paths relative to out_dir)
    holdout_tables: dict[str, Path]  # split → speaker-holdout/{split}.csv
    manifest: Path  # manifest.csv: every row with its provenance
    counts: dict[str, int]  # split → rows
    holdout_counts: dict[str, int]  # split → rows of the speaker-holdout tables


def _carve_valid(
    split: np.ndarray, digits: np.ndarray, fraction: float, rng: np.random.Generator
) -> None:
    """Move ``fraction`` of each digit's "train" rows to "valid", in place."""
    for digit in np.unique(digits):
        candidates = np.flatnonzero((split == "train") & (digits == digit))
        n_valid = math.floor(fraction * len(candidates) + 0.5)
        split[rng.choice(candidates, size=n_valid, replace=False)] = "valid"


def plan_av_mnist(
    recordings: list[FsddRecording], mnist_labels: np.ndarray, config: AvMnistConfig
) -> pd.DataFrame:
    """Decide every row without touching media: splits, paired MNIST image and file ids.

    Returns the manifest (one row per recording, ordered by id), with columns id, image,
    audio, label, split, speaker_holdout_split, speaker, take, recording, mnist_index.

    Raises:
        ConfigError: the holdout speaker is unknown, or MNIST lacks images of a digit.
    """
    digits = np.array([r.digit for r in recordings])
    speakers = np.array([r.speaker for r in recordings])
    takes = np.array([r.index for r in recordings])
    if config.holdout_speaker not in set(speakers):
        raise ConfigError(
            f"holdout_speaker {config.holdout_speaker!r} has no recordings; "
            f"speakers found: {', '.join(sorted(set(speakers)))}"
        )
    split = np.where(takes < TEST_TAKES, "test", "train").astype(object)
    _carve_valid(split, digits, config.valid_fraction, np.random.default_rng([config.seed, _SPLIT]))
    holdout = np.where(speakers == config.holdout_speaker, "test", "train").astype(object)
    _carve_valid(
        holdout, digits, config.valid_fraction, np.random.default_rng([config.seed, _HOLDOUT])
    )
    # Each recording gets its own image of the same digit, drawn without replacement,
    # so no image is shared between rows (and hence between splits).
    pair_rng = np.random.default_rng([config.seed, _PAIR])
    mnist_index = np.empty(len(recordings), dtype=np.int64)
    for digit in np.unique(digits):
        rows = np.flatnonzero(digits == digit)
        pool = np.flatnonzero(mnist_labels == digit)
        if len(pool) < len(rows):
            raise ConfigError(
                f"MNIST has {len(pool)} images of digit {digit}, need {len(rows)} (one per clip)"
            )
        mnist_index[rows] = pair_rng.choice(pool, size=len(rows), replace=False)
    # Random ids, so file names carry no hint of label, speaker or split.
    ids = np.random.default_rng([config.seed, _IDS]).permutation(len(recordings))
    names = [f"{i:05d}" for i in ids]
    manifest = pd.DataFrame(
        {
            "id": names,
            "image": [f"images/{n}.png" for n in names],
            "audio": [f"audio/{n}.wav" for n in names],
            "label": digits,
            "split": split.astype(str),
            "speaker_holdout_split": holdout.astype(str),
            "speaker": speakers,
            "take": takes,
            "recording": [r.path.name for r in recordings],
            "mnist_index": mnist_index,
        }
    )
    return manifest.sort_values("id", kind="stable").reset_index(drop=True)


def _prepare_out_dir(out: Path) -> None:
    """Create ``out``, refusing a non-empty folder so no stale file survives a rebuild."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder {out} exists and is not empty; choose a new one")
    out.mkdir(parents=True, exist_ok=True)


def _write_tables(manifest: pd.DataFrame, column: str, folder: Path, prefix: str) -> dict:
    """Write ``folder/{split}.csv`` (image, audio, label) by ``column``; paths get ``prefix``."""
    folder.mkdir(exist_ok=True)
    paths = {}
    for s in SPLITS:
        frame = manifest.loc[manifest[column] == s, ["image", "audio", "label"]].copy()
        frame[["image", "audio"]] = prefix + frame[["image", "audio"]]  # relative to table
        paths[s] = folder / f"{s}.csv"
        frame.to_csv(paths[s], index=False, lineterminator="\n")
    return paths


def _write_media(
    out: Path,
    manifest: pd.DataFrame,
    images: np.ndarray,
    recordings: dict[str, Path],
    config: AvMnistConfig,
    progress: bool,
) -> None:
    """Write each row's degraded PNG and noise-mixed WAV."""
    (out / "images").mkdir()
    (out / "audio").mkdir()
    rows = zip(manifest.itertuples(index=False), images, strict=True)
    for row, image in track(
        rows, total=len(manifest), description="Writing AV-MNIST", disable=not progress
    ):
        Image.fromarray(image).save(out / row.image)  # (28, 28) uint8 → grayscale PNG
        source = recordings[row.recording]
        try:
            signal, rate = sf.read(source, dtype="float64", always_2d=True)  # (T, C)
            rng = np.random.default_rng([config.seed, _NOISE, int(row.id)])
            mixed = mix_at_snr(signal.mean(axis=1), config.audio_snr_db, config.noise, rng)
        except (RuntimeError, CrossfuseError) as exc:
            raise CrossfuseError(f"cannot use recording {source}: {exc}") from exc
        buffer = io.BytesIO()  # in memory: libsndfile would fsync every file on close
        sf.write(buffer, mixed, rate, subtype="PCM_16", format="WAV")
        (out / row.audio).write_bytes(buffer.getvalue())


def _balance(manifest: pd.DataFrame, column: str) -> dict[str, dict[str, int]]:
    """split → digit → rows."""
    counts = {s: Counter(manifest.label[manifest[column] == s]) for s in SPLITS}
    return {s: {str(d): int(n) for d, n in sorted(c.items())} for s, c in counts.items()}


def _readme(config: AvMnistConfig, counts: dict, holdout_counts: dict) -> str:
    sizes = " / ".join(f"{counts[s]}" for s in SPLITS)
    holdout_sizes = " / ".join(f"{holdout_counts[s]}" for s in SPLITS)
    return f"""# AV-MNIST (crossfuse {__version__}, seed {config.seed})

Spoken digits (FSDD, CC BY-SA 4.0) paired with MNIST images of the same digit, after
Vielzeuf et al. 2018 ("CentralNet"). Images lose {config.image_energy_removed:.0%} of their
PCA energy; audio has {config.noise} noise at {config.audio_snr_db:g} dB SNR (not ESC-50).

- `train.csv`, `valid.csv`, `test.csv` (image, audio, label; FSDD takes 0-4 are test):
  {sizes} rows.
- `{HOLDOUT_DIR}/`: all clips of {config.holdout_speaker!r} are test: {holdout_sizes} rows.
- `manifest.csv` (splits, speaker, take, source files) and `build.json` (parameters,
  counts, class balance) record how every row was made.
"""


def build_av_mnist(
    out_dir: str | Path,
    *,
    fsdd_dir: str | Path | None = None,
    mnist_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    image_energy_removed: float = 0.75,
    audio_snr_db: float = 0.0,
    noise: str = "white",
    valid_fraction: float = 0.1,
    holdout_speaker: str = "theo",
    progress: bool = False,
    cache_dir: str | Path | None = None,
) -> AvMnistBuild:
    """Build AV-MNIST into ``out_dir``; the same inputs and seed give identical bytes.

    Args:
        out_dir: a new or empty folder.
        fsdd_dir: FSDD folder (with ``recordings/`` or the WAVs themselves).
        mnist_dir: folder with MNIST IDX files (train set preferred, else t10k).
        download: fetch missing sources into ``cache_dir`` (default ~/.cache/crossfuse).
        progress: show a progress bar while writing media.
        Other arguments: see :class:`AvMnistConfig`.

    Raises:
        ConfigError: bad parameters, missing folders, unknown holdout speaker.
        CrossfuseError: unreadable sources or a failed download.
    """
    config = AvMnistConfig(
        seed, image_energy_removed, audio_snr_db, noise, valid_fraction, holdout_speaker
    )
    fsdd, mnist = sources.resolve_sources(
        fsdd_dir, mnist_dir, download=download, cache_dir=cache_dir
    )
    recordings = sources.list_fsdd(fsdd)
    images, labels = sources.load_mnist(mnist)
    manifest = plan_av_mnist(recordings, labels, config)
    paired = images[manifest["mnist_index"].to_numpy()]  # (N, 28, 28)
    is_train = (manifest["split"] == "train").to_numpy()
    degraded, pca = pca_degrade(paired, is_train, config.image_energy_removed)

    out = Path(out_dir).expanduser()
    _prepare_out_dir(out)
    by_name = {r.path.name: r.path for r in recordings}
    _write_media(out, manifest, degraded, by_name, config, progress)
    # Tables hold no speaker column: it would leak the speaker-holdout split.
    tables = _write_tables(manifest, "split", out, "")
    holdout_tables = _write_tables(manifest, "speaker_holdout_split", out / HOLDOUT_DIR, "../")
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    balance = _balance(manifest, "split")
    holdout_balance = _balance(manifest, "speaker_holdout_split")
    counts = {s: sum(b.values()) for s, b in balance.items()}
    holdout_counts = {s: sum(b.values()) for s, b in holdout_balance.items()}
    info = {
        "dataset": "av-mnist",
        "crossfuse_version": __version__,
        "parameters": asdict(config),
        "sources": {
            "fsdd_dir": str(fsdd),
            "fsdd_recordings": len(recordings),
            "mnist_files": [str(p) for p in sources.find_mnist_files(mnist)],
            "mnist_images": len(images),
        },
        "pca": {**pca, "fit_on": "train split", "fit_images": int(is_train.sum())},
        "counts": counts,
        "speaker_holdout_counts": holdout_counts,
        "class_balance": balance,
        "speaker_holdout_class_balance": holdout_balance,
    }
    (out / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(_readme(config, counts, holdout_counts))
    return AvMnistBuild(out, tables, holdout_tables, out / "manifest.csv", counts, holdout_counts)
