"""WebDataset-style tar shards: references, lazy reading, chunking, bad input, the writer."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch.utils.data import DataLoader

from crossfuse.cache.keys import cell_key
from crossfuse.config import DataConfig
from crossfuse.data import shard_index
from crossfuse.data.audio import AudioConfig
from crossfuse.data.audio_io import load_audio_cell
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.image import ImageConfig, ImageProcessor, decode_image
from crossfuse.data.media import resolve_media
from crossfuse.data.preprocessor import Preprocessor
from crossfuse.data.schema import Modality, infer_schema
from crossfuse.data.shard_index import scan_shard
from crossfuse.data.shard_members import ShardRef, format_shard_ref, parse_shard_ref, read_member
from crossfuse.data.shard_writer import write_shards
from crossfuse.data.shards import ShardWarning, expand_braces
from crossfuse.data.stream import iter_table
from crossfuse.data.table import read_table
from crossfuse.errors import CellError, ConfigError, TableError
from crossfuse.robustness.corruptions_media import load_image_pixels
from tests.conftest import write_png, write_wav

SMALL = DataConfig(image=ImageConfig(size=8, channels=1), audio=AudioConfig(sample_rate=8000))


def make_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar file holding ``members`` (name, bytes) in order, as a WebDataset writer would."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def wds(tmp_path: Path) -> dict[str, object]:
    """Two WebDataset shards of 3 + 2 samples (png, wav, cls, txt, json), plus the originals."""
    media = tmp_path / "media"
    media.mkdir()
    folder = tmp_path / "shards"
    folder.mkdir()
    pngs = [media / write_png(media / f"{i}.png", 30 + 40 * i) for i in range(5)]
    wavs = [media / write_wav(media / f"{i}.wav", 300 + 100 * i) for i in range(5)]
    samples = []
    for i in range(5):
        key = f"train/{i:06d}"
        members = [(f"{key}.png", pngs[i].read_bytes())]
        if i != 2:  # sample 2 has no audio
            members.append((f"{key}.wav", wavs[i].read_bytes()))
        members += [
            (f"{key}.cls", f"{i % 2}\n".encode()),
            (f"{key}.txt", f"  spoken digit number {i}\n".encode()),
            (f"{key}.json", f'{{"speaker": "s{i % 3}", "age": {20 + i}}}'.encode()),
        ]
        samples.append(members)
    make_tar(folder / "train-000000.tar", [m for s in samples[:3] for m in s] + [("README", b"x")])
    make_tar(folder / "train-000001.tar", [m for s in samples[3:] for m in s])
    return {"folder": folder, "pngs": pngs, "wavs": wavs}


# ---------------------------------------------------------------- reference syntax


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("a/b.tar::x/000001.png", ShardRef("a/b.tar", "x/000001.png")),
        ("/abs/S.TAR::k.wav", ShardRef("/abs/S.TAR", "k.wav")),
        ("dir.tar/s.tar::m.png", ShardRef("dir.tar/s.tar", "m.png")),
        ("s.tar::odd::name.png", ShardRef("s.tar", "odd::name.png")),
        ("s.tar", None),
        ("s.tar::", None),
        ("file::x.png", None),
        ("s.tar.gz::x.png", None),
        (b"s.tar::x.png", None),
        (3, None),
    ],
)
def test_reference_syntax(cell: object, expected: ShardRef | None) -> None:
    assert parse_shard_ref(cell) == expected


def test_format_and_parse_round_trip() -> None:
    ref = format_shard_ref(Path("sub") / "shard-000001.tar", "train/000007.png")
    assert ref == "sub/shard-000001.tar::train/000007.png"
    assert parse_shard_ref(ref) == ShardRef("sub/shard-000001.tar", "train/000007.png")
    with pytest.raises(ValueError, match="must end with .tar"):
        format_shard_ref("shard.zip", "a.png")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("s-{000..003}.tar", ["s-000.tar", "s-001.tar", "s-002.tar", "s-003.tar"]),
        ("s-{8..10}.tar", ["s-8.tar", "s-9.tar", "s-10.tar"]),
        ("{a,b}/t-{0..1}.tar", ["a/t-0.tar", "a/t-1.tar", "b/t-0.tar", "b/t-1.tar"]),
        ("plain.tar", ["plain.tar"]),
    ],
)
def test_brace_expansion(pattern: str, expected: list[str]) -> None:
    assert expand_braces(pattern) == expected


@pytest.mark.parametrize("pattern", ["s-{0..2.tar", "s-0..2}.tar", "s-{{0..2}}.tar", "s-{x}.tar"])
def test_bad_brace_patterns(pattern: str) -> None:
    with pytest.raises(TableError, match="pattern"):
        expand_braces(pattern)


# ---------------------------------------------------------------- reading shards


def test_webdataset_shards_become_a_table(wds: dict) -> None:
    folder = wds["folder"]
    table = read_table(folder)
    df = table.df
    assert table.base_dir == folder.resolve() and table.name == str(folder)
    assert list(df.columns) == ["__key__", "png", "wav", "cls", "txt", "speaker", "age"]
    assert df["__key__"].tolist() == [f"train/{i:06d}" for i in range(5)]  # README skipped
    assert df["cls"].tolist() == [0, 1, 0, 1, 0]  # label members as integers
    assert df["txt"][4] == "spoken digit number 4"  # text members decoded and stripped
    assert df["speaker"].tolist() == ["s0", "s1", "s2", "s0", "s1"]  # JSON fields as columns
    assert df["age"].tolist() == [20, 21, 22, 23, 24]
    assert df["png"][3] == "train-000001.tar::train/000003.png"  # a reference, not bytes
    assert pd.isna(df["wav"][2])  # the sample without audio has an empty cell
    # a brace pattern and a single shard read the same samples
    pattern = read_table(str(folder / "train-{000000..000001}.tar"))
    pd.testing.assert_frame_equal(pattern.df, df)
    assert read_table(folder / "train-000001.tar").df["__key__"].tolist() == [
        "train/000003",
        "train/000004",
    ]


def test_references_decode_to_the_original_media(wds: dict) -> None:
    table = read_table(wds["folder"])
    proc = ImageProcessor(ImageConfig(size=8, channels=1))
    for i in (0, 4):
        from_shard = proc.process(table.df["png"][i], base_dir=table.base_dir)
        assert from_shard.equal(proc.process(wds["pngs"][i]))
        samples, sr = load_audio_cell(table.df["wav"][i], table.base_dir)
        expected, expected_sr = load_audio_cell(wds["wavs"][i])
        assert sr == expected_sr and np.array_equal(samples, expected)
    # content keys (the embedding cache) and the robustness decoder agree with the files
    ref = table.df["png"][1]
    assert cell_key(ref, modality="image", base_dir=table.base_dir) == cell_key(
        wds["pngs"][1], modality="image", base_dir=None
    )
    assert np.array_equal(load_image_pixels(ref, table.base_dir), load_image_pixels(wds["pngs"][1]))


def test_schema_classifies_references(wds: dict) -> None:
    table = read_table(wds["folder"])
    schema = infer_schema(table.df, "cls", base_dir=table.base_dir)
    assert schema.columns["png"] == Modality.IMAGE
    assert schema.columns["wav"] == Modality.AUDIO
    assert schema.columns["__key__"] == Modality.IGNORE
    # members without a media extension are sniffed by their magic bytes
    folder = wds["folder"]
    renamed = [(f"{i:03d}.photo", p.read_bytes()) for i, p in enumerate(wds["pngs"])]
    renamed += [(f"{i:03d}.voice", p.read_bytes()) for i, p in enumerate(wds["wavs"])]
    renamed += [(f"{i:03d}.cls", str(i % 2).encode()) for i in range(5)]
    other = make_tar(folder.parent / "other.tar", renamed)
    table = read_table(other)
    schema = infer_schema(table.df, "cls", base_dir=table.base_dir)
    assert schema.columns["photo"] == Modality.IMAGE
    assert schema.columns["voice"] == Modality.AUDIO
    assert "by content" in schema.reasons["photo"]


def test_reading_does_not_read_media_bytes(tmp_path: Path, monkeypatch) -> None:
    """2,000 samples of 16,000-byte media: only headers (and the .cls values) are read."""
    payload = 16_000  # not a multiple of 512, so tar's look-ahead byte lands in padding
    members = []
    for i in range(2000):
        members.append((f"{i:06d}.png", bytes([i % 251]) * payload))
        members.append((f"{i:06d}.cls", str(i % 3).encode()))
    for s in range(2):
        make_tar(tmp_path / f"s-{s}.tar", members[s * 2000 : (s + 1) * 2000])
    reads: list[tuple[str, int, int]] = []

    class Spy:
        def __init__(self, path: str | Path) -> None:
            self._f, self._path = open(path, "rb"), str(Path(path).resolve())  # noqa: SIM115

        def read(self, n: int = -1) -> bytes:
            start = self._f.tell()
            data = self._f.read(n)
            reads.append((self._path, start, len(data)))
            return data

        def __getattr__(self, name: str):
            return getattr(self._f, name)

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    media = {  # (shard, start, end) of every png member's data
        (str(p.resolve()), off, off + size)
        for p in tmp_path.glob("*.tar")
        for name, (off, size) in scan_shard(p).items()
        if name.endswith(".png")
    }

    def media_bytes_read() -> int:
        return sum(
            max(0, min(start + n, end) - max(start, lo))
            for path, start, n in reads
            for shard, lo, end in media
            if shard == path
        )

    monkeypatch.setattr(shard_index, "_open", Spy)
    table = read_table(tmp_path)
    assert len(table) == 2000 and table.df["cls"].tolist()[:4] == [0, 1, 2, 0]
    assert all(isinstance(c, str) and "::" in c for c in table.df["png"])
    assert media_bytes_read() == 0
    assert sum(n for _, _, n in reads) < 0.1 * 2000 * payload  # headers and .cls values
    reads.clear()
    assert sum(len(c) for c in iter_table(tmp_path, chunk_rows=700)) == 2000
    assert media_bytes_read() == 0
    # decoding one cell reads exactly that member: reading the table indexed the shards
    reads.clear()
    data = resolve_media(table.df["png"][1234], table.base_dir)
    assert data == bytes([1234 % 251]) * payload
    assert media_bytes_read() == payload and sum(n for *_, n in reads) == payload


def test_each_shard_is_indexed_once_and_again_when_it_changes(tmp_path: Path, monkeypatch) -> None:
    shard = make_tar(
        tmp_path / "s.tar", [(f"{i:04d}.bin", bytes([i % 256]) * (i + 1)) for i in range(300)]
    )
    scans: list[str] = []
    scan = shard_index.scan_shard
    monkeypatch.setattr(shard_index, "scan_shard", lambda p: scans.append(str(p)) or scan(p))
    shard_index.clear_index_cache()
    for i in (5, 299, 0, 77):
        assert read_member(f"s.tar::{i:04d}.bin", tmp_path) == bytes([i % 256]) * (i + 1)
    with pytest.raises(CellError, match="member not in"):
        read_member("s.tar::0300.bin", tmp_path)
    assert scans == [str(shard)]  # one header pass serves every later read
    make_tar(shard, [("0005.bin", b"rewritten")])  # new size and mtime: indexed afresh
    assert read_member("s.tar::0005.bin", tmp_path) == b"rewritten"
    with pytest.raises(CellError, match="member not in"):
        read_member("s.tar::0077.bin", tmp_path)
    assert len(scans) == 2


def test_iter_table_chunks_across_shards(tmp_path: Path) -> None:
    frame = pd.DataFrame({"n": range(20), "word": [f"w{i}" for i in range(20)]})
    write_shards(frame, tmp_path / "sh", rows_per_shard=7)  # shards of 7, 7, 6
    whole = read_table(tmp_path / "sh").df
    for size, expected in [(5, [5, 5, 5, 5]), (3, [3] * 6 + [2]), (7, [7, 7, 6]), (50, [20])]:
        chunks = list(iter_table(tmp_path / "sh", chunk_rows=size))
        assert [len(c) for c in chunks] == expected
        assert all(c.base_dir == (tmp_path / "sh").resolve() for c in chunks)
        assert all(list(c.df.index) == list(range(len(c))) for c in chunks)
        pd.testing.assert_frame_equal(pd.concat([c.df for c in chunks], ignore_index=True), whole)
    assert whole["n"].tolist() == list(range(20))
    with pytest.raises(ConfigError, match="chunk_rows"):
        next(iter_table(tmp_path / "sh", chunk_rows=0))


# ---------------------------------------------------------------- bad input


def _good_tar(tmp_path: Path) -> Path:
    return make_tar(
        tmp_path / "good.tar",
        [(f"{i:03d}.png", b"\x89PNG" + bytes(600)) for i in range(4)]
        + [(f"{i:03d}.cls", b"1") for i in range(4)],
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, good: p.write_bytes(b"not a tar at all" * 100), "not a readable tar file"),
        (lambda p, good: p.write_bytes(good.read_bytes()[:1800]), "truncated"),
        (lambda p, good: p.write_bytes(good.read_bytes()[:2048]), "truncated"),
        (lambda p, good: p.write_bytes(gzip.compress(good.read_bytes())), "compressed"),
        (lambda p, good: p.write_bytes(b""), "empty"),
    ],
)
def test_a_bad_tar_names_the_shard(tmp_path: Path, make, message: str) -> None:
    good = _good_tar(tmp_path)
    bad = tmp_path / "bad-000001.tar"
    make(bad, good)
    with pytest.raises(TableError, match=message) as info:
        read_table(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(TableError, match=message):
        list(iter_table(tmp_path, chunk_rows=2))  # the folder holds good.tar and the bad one


def test_bad_sources(tmp_path: Path) -> None:
    _good_tar(tmp_path)
    with pytest.raises(TableError, match=r"good-000\.tar not found"):
        read_table(str(tmp_path / "good-{000..001}.tar"))
    with pytest.raises(TableError, match="not URLs"):
        read_table("https://example.com/shards/train-{000..009}.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TableError, match="is a directory"):
        read_table(tmp_path / "empty")
    dup = make_tar(tmp_path / "dup.tar", [("a.png", b"1"), ("a.png", b"2")])
    with pytest.raises(TableError, match="appears twice"):
        read_table(dup)
    clash = make_tar(tmp_path / "clash.tar", [("a.png", b"1"), ("a.json", b'{"png": 3}')])
    with pytest.raises(TableError, match=r"\['png'\].*'a.json'"):
        read_table(clash)


def test_undecodable_value_members_are_empty_cells_with_a_warning(tmp_path: Path) -> None:
    shard = make_tar(
        tmp_path / "s.tar",
        [
            ("000.png", b"img0"),
            ("000.txt", b"hello"),
            ("001.png", b"img1"),
            ("001.txt", b"\xff\xfe bad utf-8"),
            ("002.png", b"img2"),
            ("002.json", b"{not json"),
        ],
    )
    with pytest.warns(ShardWarning) as caught:
        table = read_table(shard)
    message = str(caught[0].message)
    assert "2 member(s)" in message
    assert f"row 1, column 'txt', file {shard}::001.txt: not UTF-8" in message
    assert f"row 2, column 'json', file {shard}::002.json: invalid JSON" in message
    assert table.df["__key__"].tolist() == ["000", "001", "002"]  # the samples are kept
    assert table.df["txt"][0] == "hello" and pd.isna(table.df["txt"][1])


def test_member_errors_name_the_shard_and_member(tmp_path: Path) -> None:
    shard = make_tar(tmp_path / "s.tar", [("a.png", b"\x89PNG" + bytes(1000)), ("b.png", b"")])
    with pytest.raises(CellError, match="member not in the tar shard") as info:
        resolve_media("s.tar::zzz.png", tmp_path)
    assert info.value.file == f"{shard}::zzz.png"
    with pytest.raises(CellError, match="empty") as info:
        resolve_media("s.tar::b.png", tmp_path)
    assert info.value.file == f"{shard}::b.png"
    with pytest.raises(CellError, match="tar shard not found"):
        resolve_media("gone.tar::a.png", tmp_path)
    assert read_member("s.tar::a.png", tmp_path, limit=4) == b"\x89PNG"
    # the shard is cut short after the table was read: the index is rebuilt and says so
    shard.write_bytes(shard.read_bytes()[:900])
    with pytest.raises(CellError, match="truncated") as info:
        resolve_media("s.tar::a.png", tmp_path)
    assert str(shard) in str(info.value) and "a.png" in str(info.value)
    # plain paths behave as before
    assert resolve_media(write_png(tmp_path / "p.png", 9), tmp_path) == tmp_path / "p.png"
    with pytest.raises(CellError, match="file not found"):
        resolve_media("nope.png", tmp_path)


def test_a_corrupt_member_is_an_ordinary_bad_cell(wds: dict) -> None:
    folder = wds["folder"]
    png = wds["pngs"][1].read_bytes()
    members = [(f"{i}.png", wds["pngs"][i].read_bytes()) for i in range(4)]
    members[1] = ("1.png", png[: len(png) // 2])  # a PNG cut in half
    members += [(f"{i}.cls", str(i % 2).encode()) for i in range(4)]
    shard = make_tar(folder / "zz-corrupt.tar", members)
    table = read_table(shard)
    schema = infer_schema(table.df, "cls", base_dir=table.base_dir)
    pre = Preprocessor(schema, SMALL).fit(table)
    items = [FusionDataset(table, pre)[i] for i in range(4)]
    assert items[1]["inputs"]["png"] is None
    assert all(items[i]["inputs"]["png"] is not None for i in (0, 2, 3))
    (problem,) = items[1]["problems"]
    assert (problem.row, problem.column) == (1, "png")
    assert problem.file == f"{shard}::1.png" and "cannot decode image" in problem.reason
    with pytest.raises(CellError, match=r"row 1, column 'png', file .*zz-corrupt\.tar::1\.png"):
        FusionDataset(table, pre, strict=True)[1]


# ---------------------------------------------------------------- workers and pickling


def test_references_survive_pickling_into_workers(wds: dict) -> None:
    table = read_table(wds["folder"])
    clone = pickle.loads(pickle.dumps(table))
    shard_index.clear_index_cache()  # as in a fresh process
    proc = ImageProcessor(ImageConfig(size=8, channels=1))
    assert proc.process(clone.df["png"][3], base_dir=clone.base_dir).equal(
        proc.process(wds["pngs"][3])
    )
    schema = infer_schema(table.df, "cls", base_dir=table.base_dir)
    pre = Preprocessor(schema, SMALL).fit(table)
    loader = DataLoader(
        FusionDataset(table, pre),
        batch_size=5,
        num_workers=1,
        multiprocessing_context="spawn",  # a fresh interpreter: nothing inherited
        collate_fn=Collator(pre),
    )
    (batch,) = list(loader)
    assert batch["inputs"]["png"]["present"].all()
    assert batch["inputs"]["wav"]["present"].tolist() == [True, True, False, True, True]
    assert [(p.row, p.column, p.kind) for p in batch["problems"]] == [(2, "wav", "missing")]
    direct = Collator(pre)([FusionDataset(table, pre)[i] for i in range(5)])
    assert batch["inputs"]["png"]["pixels"].equal(direct["inputs"]["png"]["pixels"])


# ---------------------------------------------------------------- the writer


def test_table_to_shards_and_back(media_table: Path, tmp_path: Path) -> None:
    original = read_table(media_table)
    result = write_shards(media_table, tmp_path / "out", rows_per_shard=5)
    assert [p.name for p in result.shards] == [f"shard-00000{i}.tar" for i in range(3)]
    assert result.rows == 12 and result.media_columns == ["image", "sound"] and not result.problems
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind
    back = read_table(tmp_path / "out")
    assert set(back.df.columns) == set(original.df.columns) | {"__key__"}
    for col in ("id", "caption", "weight", "colour", "label"):
        pd.testing.assert_series_equal(back.df[col], original.df[col], check_dtype=False)
    assert pd.isna(back.df["caption"][3])  # the empty cell stays empty
    assert back.df["image"][7] == "shard-000001.tar::000007.image"
    for i in range(12):
        ref, path = back.df["image"][i], original.base_dir / original.df["image"][i]
        shard_pixels = np.asarray(decode_image(resolve_media(ref, back.base_dir), channels=1))
        assert np.array_equal(shard_pixels, np.asarray(decode_image(path, channels=1)))
        sound = load_audio_cell(back.df["sound"][i], back.base_dir)[0]
        assert np.array_equal(
            sound, load_audio_cell(original.df["sound"][i], media_table.parent)[0]
        )
    for table in (original, back):  # the same modalities are inferred
        schema = infer_schema(table.df, "label", base_dir=table.base_dir)
        assert {c: str(m) for c, m in schema.columns.items() if c != "__key__"} == {
            "id": "ignore",
            "caption": "text",
            "image": "image",
            "sound": "audio",
            "weight": "numeric",
            "colour": "categorical",
        }


def test_writer_refuses_and_reports(media_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = read_table(media_table).df
    df.loc[2, "image"] = "missing.png"
    write_shards(media_table, out, rows_per_shard=4)
    with pytest.raises(ConfigError, match="already holds 3 shard"):
        write_shards(media_table, out)
    result = write_shards(
        read_table(df, base_dir=media_table.parent), out, rows_per_shard=10, overwrite=True
    )
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    (problem,) = result.problems
    assert (problem.row, problem.column, problem.reason) == (2, "image", "file not found")
    back = read_table(out)
    assert pd.isna(back.df["image"][2]) and back.df["image"][3] == "shard-000000.tar::000003.image"
    with pytest.raises(ConfigError, match="rows_per_shard"):
        write_shards(media_table, tmp_path / "o2", rows_per_shard=0)
    with pytest.raises(ConfigError, match=r"media column\(s\) \['nope'\]"):
        write_shards(media_table, tmp_path / "o3", media=["nope"])
    renamed = read_table(media_table)
    renamed.df = renamed.df.rename(columns={"image": "json"})
    with pytest.raises(ConfigError, match="'json' cannot name a shard member"):
        write_shards(renamed, tmp_path / "o4")
