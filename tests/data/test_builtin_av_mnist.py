"""AV-MNIST builder and its sources, on tiny fake FSDD/MNIST folders (plus one real-data run)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from crossfuse.data.builtin import sources
from crossfuse.data.builtin.av_mnist import AvMnistConfig, build_av_mnist
from crossfuse.data.builtin.degrade import make_noise, mix_at_snr
from crossfuse.data.media import resolve_media_path
from crossfuse.errors import ConfigError, CrossfuseError, TableError

SPEAKERS = ("alice", "bob", "theo")
TAKES = 8  # takes 0-4 test, 5-7 train/valid
RATE = 8000
IMAGES_PER_DIGIT = 60
TABLES = ("train.csv", "valid.csv", "test.csv")


def tone_hz(digit: int) -> int:
    return 300 + 150 * digit


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``compress``."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)


def make_fsdd(folder: Path) -> Path:
    """3 speakers × 10 digits × 8 takes of quiet 0.25 s sines, plus non-FSDD files."""
    rec = folder / "recordings"
    rec.mkdir(parents=True)
    t = np.arange(RATE // 4) / RATE
    for digit in range(10):
        for speaker in SPEAKERS:
            for take in range(TAKES):
                phase = 0.3 * take + SPEAKERS.index(speaker)
                clip = 0.1 * np.sin(2 * np.pi * tone_hz(digit) * t + phase)
                buffer = io.BytesIO()  # in memory: libsndfile fsyncs files it writes
                sf.write(buffer, clip, RATE, subtype="PCM_16", format="WAV")
                (rec / f"{digit}_{speaker}_{take}.wav").write_bytes(buffer.getvalue())
    (rec / "notes.txt").write_text("not a recording")
    sf.write(rec / "bad_name.wav", np.zeros(100), RATE, subtype="PCM_16")
    return folder


def make_mnist(folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """60 noisy 28×28 images per digit (weak digit template + strong noise), as t10k gz."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.uniform(100, 150, (10, 7, 7)), np.ones((4, 4)))  # (10, 28, 28)
    labels = np.repeat(np.arange(10), IMAGES_PER_DIGIT)
    rng.shuffle(labels)
    noise = rng.normal(0, 40, (len(labels), 28, 28))
    images = np.clip(templates[labels] + noise, 0, 255).round().astype(np.uint8)
    folder.mkdir(parents=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return images, labels


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sources")
    images, labels = make_mnist(root / "mnist")
    return {
        "fsdd": make_fsdd(root / "fsdd"),
        "mnist": root / "mnist",
        "images": images,
        "labels": labels,
    }


@pytest.fixture(scope="module")
def built(fake: dict, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("build") / "avm"
    return build_av_mnist(out, fsdd_dir=fake["fsdd"], mnist_dir=fake["mnist"])


def read_manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", dtype={"id": str})


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def snr_db(clean: np.ndarray, mixed: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean**2) / np.sum((mixed - clean) ** 2)))


def test_tables_have_three_columns_and_expected_counts(built) -> None:
    n_test, n_rest = len(SPEAKERS) * 10 * 5, len(SPEAKERS) * 10 * (TAKES - 5)
    assert built.counts == {"train": n_rest - 10, "valid": 10, "test": n_test}
    assert built.holdout_counts == {"train": 140, "valid": 20, "test": 80}
    for paths, counts in (
        (built.tables, built.counts),
        (built.holdout_tables, built.holdout_counts),
    ):
        for split, path in paths.items():
            table = pd.read_csv(path)
            assert list(table.columns) == ["image", "audio", "label"]  # no speaker leak
            assert len(table) == counts[split]
    info = json.loads((built.out_dir / "build.json").read_text())
    assert info["counts"] == built.counts
    assert info["parameters"]["holdout_speaker"] == "theo"
    assert info["class_balance"]["valid"] == {str(d): 1 for d in range(10)}  # stratified
    assert (built.out_dir / "README.md").read_text().startswith("# AV-MNIST")


def test_image_and_audio_of_a_row_show_the_same_digit(built, fake) -> None:
    manifest = read_manifest(built.out_dir)
    assert (fake["labels"][manifest["mnist_index"]] == manifest["label"]).all()
    assert (manifest["recording"].str[0].astype(int) == manifest["label"]).all()
    table = pd.read_csv(built.tables["train"])
    for row in table.itertuples():
        clip, rate = sf.read(built.out_dir / row.audio)
        spectrum = np.abs(np.fft.rfft(clip))
        peak_hz = np.argmax(spectrum) * rate / len(clip)
        assert abs(peak_hz - tone_hz(row.label)) < 10


def test_splits_are_disjoint_and_follow_the_fsdd_takes(built) -> None:
    manifest = read_manifest(built.out_dir)
    assert manifest["recording"].is_unique and manifest["mnist_index"].is_unique
    assert len(manifest) == len(SPEAKERS) * 10 * TAKES
    assert ((manifest["take"] < 5) == (manifest["split"] == "test")).all()
    seen: set[str] = set()
    for path in built.tables.values():
        images = set(pd.read_csv(path)["image"])
        assert not images & seen
        seen |= images
    assert seen == set(manifest["image"])


def test_speaker_holdout_puts_every_clip_of_the_speaker_in_test(built) -> None:
    manifest = read_manifest(built.out_dir).set_index("image")
    for split, path in built.holdout_tables.items():
        images = pd.read_csv(path)["image"].str.removeprefix("../")
        speakers = set(manifest.loc[images, "speaker"])
        assert speakers == ({"theo"} if split == "test" else {"alice", "bob"})
    assert len(pd.read_csv(built.holdout_tables["test"])) == 10 * TAKES


def test_relative_paths_resolve_from_each_tables_folder(built) -> None:
    for path in (*built.tables.values(), *built.holdout_tables.values()):
        table = pd.read_csv(path)
        for cell in (*table["image"], *table["audio"]):
            resolved = resolve_media_path(cell, path.parent).resolve()
            assert resolved.parent.parent == built.out_dir.resolve()
    with Image.open(built.out_dir / pd.read_csv(built.tables["test"])["image"][0]) as image:
        assert image.size == (28, 28) and image.mode == "L"
    info = sf.info(built.out_dir / pd.read_csv(built.tables["test"])["audio"][0])
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")


@pytest.mark.parametrize("noise, snr", [("white", 0.0), ("pink", 6.0)])
def test_noise_is_mixed_at_the_requested_snr(built, fake, tmp_path, noise, snr) -> None:
    if (noise, snr) == ("white", 0.0):
        out = built.out_dir  # the default build
    else:
        out = tmp_path / "avm"
        build_av_mnist(
            out,
            fsdd_dir=fake["fsdd"],
            mnist_dir=fake["mnist"],
            noise=noise,
            audio_snr_db=snr,
            progress=True,
        )
    manifest = read_manifest(out)
    for row in manifest.head(20).itertuples():
        clean, _ = sf.read(fake["fsdd"] / "recordings" / row.recording)
        mixed, _ = sf.read(out / row.audio)
        assert abs(snr_db(clean, mixed) - snr) < 0.5


def test_loud_mix_is_scaled_below_full_scale_keeping_the_snr() -> None:
    signal = 0.9 * np.sin(np.linspace(0, 4000, 80_000))
    mixed = mix_at_snr(signal, 0.0, "white", np.random.default_rng(0))
    assert np.abs(mixed).max() <= 0.99 + 1e-12
    gain = mixed @ signal / (signal @ signal)  # the whole mix was scaled by one factor
    assert gain < 0.9
    assert abs(snr_db(gain * signal, mixed)) < 0.1


def test_pink_noise_has_more_low_than_high_frequency_power() -> None:
    def low_over_high(kind: str) -> float:
        power = np.abs(np.fft.rfft(make_noise(2**14, kind, np.random.default_rng(1)))) ** 2
        n = len(power)
        return power[1 : n // 8].mean() / power[n // 2 :].mean()

    assert low_over_high("pink") > 5 and 0.7 < low_over_high("white") < 1.4


def test_images_keep_the_requested_pca_energy_of_the_train_basis(built, fake) -> None:
    manifest = read_manifest(built.out_dir)
    original = fake["images"][manifest["mnist_index"]].reshape(len(manifest), -1).astype(float)
    degraded = np.stack(
        [np.asarray(Image.open(built.out_dir / p), dtype=float).ravel() for p in manifest["image"]]
    )
    train = (manifest["split"] == "train").to_numpy()
    mean = original[train].mean(axis=0)
    _, sing, vt = np.linalg.svd(original[train] - mean, full_matrices=False)
    cumulative = np.cumsum(sing**2) / np.sum(sing**2)
    info = json.loads((built.out_dir / "build.json").read_text())["pca"]
    keep = info["components_kept"]
    assert cumulative[keep - 2] < 0.25 <= cumulative[keep - 1]  # fewest components reaching it
    retained = np.sum((degraded[train] - mean) ** 2) / np.sum((original[train] - mean) ** 2)
    assert retained == pytest.approx(0.25, abs=0.03)
    assert retained == pytest.approx(info["variance_retained"], abs=0.005)
    # Every image (valid and test too) is its own original projected on the train basis.
    basis = vt[:keep]
    expected = mean + (original - mean) @ basis.T @ basis
    assert np.abs(degraded - expected).max() <= 1.0


def test_same_seed_gives_identical_bytes_and_another_seed_differs(built, fake, tmp_path) -> None:
    build_av_mnist(tmp_path / "again", fsdd_dir=fake["fsdd"], mnist_dir=fake["mnist"])
    assert tree_hashes(tmp_path / "again") == tree_hashes(built.out_dir)
    build_av_mnist(tmp_path / "seed1", fsdd_dir=fake["fsdd"], mnist_dir=fake["mnist"], seed=1)
    assert (
        read_manifest(tmp_path / "seed1")["mnist_index"].tolist()
        != read_manifest(built.out_dir)["mnist_index"].tolist()
    )


def test_read_idx_reads_raw_and_gz_and_rejects_bad_files(tmp_path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "raw-idx3-ubyte", array, compress=False)
    write_idx(tmp_path / "gz-idx3-ubyte.gz", array)
    assert np.array_equal(sources.read_idx(tmp_path / "raw-idx3-ubyte"), array)
    assert np.array_equal(sources.read_idx(tmp_path / "gz-idx3-ubyte.gz"), array)
    bad = tmp_path / "bad-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + bytes(20)))
    with pytest.raises(TableError, match=r"bad-images-idx3-ubyte\.gz.*bad magic number"):
        sources.read_idx(bad)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(5))
    with pytest.raises(TableError, match="need 10 data bytes, found 5"):
        sources.read_idx(short)


def test_load_mnist_prefers_training_files(tmp_path, fake) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_bytes((fake["mnist"] / name).read_bytes())
    assert len(sources.load_mnist(folder)[0]) == 10 * IMAGES_PER_DIGIT
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((3, 28, 28)), compress=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.array([1, 2, 3]), compress=False)
    images, labels = sources.load_mnist(folder)
    assert images.shape == (3, 28, 28) and labels.tolist() == [1, 2, 3]


def test_list_fsdd_parses_names_and_ignores_others(fake) -> None:
    recordings = sources.list_fsdd(fake["fsdd"])
    assert len(recordings) == len(SPEAKERS) * 10 * TAKES
    first = recordings[0]
    assert (first.digit, first.speaker, first.index, first.path.name) == (
        0,
        "alice",
        0,
        "0_alice_0.wav",
    )
    assert sources.list_fsdd(fake["fsdd"] / "recordings") == recordings


def test_missing_or_empty_sources_give_clear_errors(tmp_path, fake) -> None:
    with pytest.raises(ConfigError, match="FSDD folder not found"):
        build_av_mnist(tmp_path / "o1", fsdd_dir=tmp_path / "nope", mnist_dir=fake["mnist"])
    with pytest.raises(ConfigError, match="MNIST folder not found"):
        build_av_mnist(tmp_path / "o2", fsdd_dir=fake["fsdd"], mnist_dir=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.wav").write_bytes(b"x")
    with pytest.raises(ConfigError, match="no FSDD recordings found"):
        build_av_mnist(tmp_path / "o3", fsdd_dir=tmp_path / "empty", mnist_dir=fake["mnist"])
    with pytest.raises(ConfigError, match="no MNIST files"):
        build_av_mnist(tmp_path / "o4", fsdd_dir=fake["fsdd"], mnist_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="fsdd_dir not given"):
        build_av_mnist(tmp_path / "o5", mnist_dir=fake["mnist"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_av_mnist(tmp_path / "full", fsdd_dir=fake["fsdd"], mnist_dir=fake["mnist"])
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_energy_removed": 1.0}, "image_energy_removed"),
        ({"image_energy_removed": -0.1}, "image_energy_removed"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"noise": "brown"}, "noise"),
        ({"audio_snr_db": float("inf")}, "audio_snr_db"),
        ({"seed": -1}, "seed"),
        ({"holdout_speaker": "nobody"}, "speakers found: alice, bob, theo"),
    ],
)
def test_bad_parameters_are_config_errors(tmp_path, fake, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_av_mnist(tmp_path / "out", fsdd_dir=fake["fsdd"], mnist_dir=fake["mnist"], **kwargs)


def test_config_defaults_follow_the_recipe() -> None:
    config = AvMnistConfig()
    assert (config.image_energy_removed, config.audio_snr_db, config.noise) == (0.75, 0.0, "white")


def test_download_is_atomic_and_checks_md5(tmp_path) -> None:
    source = tmp_path / "remote" / "blob.bin"
    source.parent.mkdir()
    source.write_bytes(b"crossfuse" * 1000)
    good = hashlib.md5(source.read_bytes()).hexdigest()
    dest = sources.download(source.as_uri(), tmp_path / "cache" / "blob.bin", good)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(CrossfuseError, match="md5"):
        sources.download(source.as_uri(), tmp_path / "cache" / "other.bin", "0" * 32)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["blob.bin"]  # no temp
    with pytest.raises(CrossfuseError, match="cannot download"):
        sources.download((tmp_path / "missing.bin").as_uri(), tmp_path / "cache" / "m.bin")


def test_fetch_fsdd_extracts_only_recordings_from_the_archive(tmp_path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    top = "free-spoken-digit-dataset-abc123"
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.ones(400), RATE, subtype="PCM_16")
    with zipfile.ZipFile(remote / "abc123.zip", "w") as zf:
        zf.write(clip, f"{top}/recordings/3_bob_7.wav")
        zf.write(clip, f"{top}/recordings/4_bob_0.wav")
        zf.writestr(f"{top}/README.md", "upstream readme")
        zf.writestr(f"{top}/recordings/notes.txt", "not audio")
    folder = sources.fetch_fsdd(tmp_path / "cache", base_url=remote.as_uri(), ref="abc123")
    recordings = sources.list_fsdd(folder)
    assert [(r.digit, r.speaker, r.index) for r in recordings] == [(3, "bob", 7), (4, "bob", 0)]
    assert sorted(p.name for p in (folder / "recordings").iterdir()) == [
        "3_bob_7.wav",
        "4_bob_0.wav",
    ]
    (remote / "abc123.zip").unlink()  # a finished extraction is reused, not downloaded again
    assert sources.fetch_fsdd(tmp_path / "cache", base_url=remote.as_uri(), ref="abc123") == folder


def test_fetch_mnist_downloads_the_named_files_with_checksums(tmp_path, fake) -> None:
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    md5 = {n: hashlib.md5((fake["mnist"] / n).read_bytes()).hexdigest() for n in names}
    folder = sources.fetch_mnist(tmp_path / "cache", base_url=fake["mnist"].as_uri(), md5=md5)
    images, labels = sources.load_mnist(folder)
    assert np.array_equal(images, fake["images"]) and np.array_equal(labels, fake["labels"])
    with pytest.raises(CrossfuseError, match="md5"):
        sources.fetch_mnist(
            tmp_path / "c2", base_url=fake["mnist"].as_uri(), md5={names[0]: "f" * 32}
        )


@pytest.mark.realdata
def test_real_data_build_has_the_published_split_sizes(tmp_path) -> None:
    root = Path(__file__).resolve().parents[2]
    data = Path(os.environ.get("CROSSFUSE_DATA", root.parent / "shared" / "data"))
    if not (data / "fsdd" / "recordings").is_dir() or not (data / "mnist").is_dir():
        pytest.skip(f"real data not found at {data} (set CROSSFUSE_DATA)")
    built = build_av_mnist(tmp_path / "avm", fsdd_dir=data / "fsdd", mnist_dir=data / "mnist")
    assert built.counts == {"train": 2430, "valid": 270, "test": 300}
    assert built.holdout_counts == {"train": 2250, "valid": 250, "test": 500}
    manifest = read_manifest(built.out_dir)
    assert len(manifest) == 3000 and manifest["mnist_index"].is_unique
    assert set(manifest.loc[manifest["speaker_holdout_split"] == "test", "speaker"]) == {"theo"}
    info = json.loads((built.out_dir / "build.json").read_text())
    assert info["sources"]["mnist_images"] == 10_000
    assert info["class_balance"]["test"] == {str(d): 30 for d in range(10)}
    assert len(list((built.out_dir / "audio").glob("*.wav"))) == 3000


def test_inspect_reads_every_av_mnist_table_with_the_right_schema(built) -> None:
    from crossfuse.data.inspect import inspect_table

    tables = [*built.tables.values(), *built.holdout_tables.values()]
    for table in tables:
        report = inspect_table(table, "label")
        assert {c: str(m) for c, m in report.schema.columns.items()} == {
            "image": "image", "audio": "audio",
        }, table
        assert str(report.schema.tasks["label"]) == "classification"
        # every cell decodes (tiny fake splits may still flag rare classes)
        assert [p for p in report.errors if p.kind in ("cell", "row")] == []
        assert not any(report.missing_by_column.values())
