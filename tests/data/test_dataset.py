from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from crossfuse.config import DataConfig
from crossfuse.data.audio import AudioConfig
from crossfuse.data.dataset import Collator, FusionDataset
from crossfuse.data.image import ImageConfig
from crossfuse.data.preprocessor import TABULAR, Preprocessor
from crossfuse.data.schema import infer_schema
from crossfuse.data.table import read_table
from crossfuse.errors import CellError

SMALL = DataConfig(image=ImageConfig(size=16), audio=AudioConfig(sample_rate=8000, duration=0.25))


def _prepare(path: Path, **kw):
    table = read_table(path)
    schema = infer_schema(table.df, "label", base_dir=table.base_dir)
    pre = Preprocessor(schema, SMALL).fit(table)
    return table, pre, FusionDataset(table, pre, **kw)


def test_batch_has_per_input_tensors_and_masks(media_table: Path) -> None:
    table, pre, ds = _prepare(media_table)
    assert pre.inputs == {"caption": "text", "image": "image", "sound": "audio", TABULAR: "tabular"}
    loader = DataLoader(ds, batch_size=5, collate_fn=Collator(pre))
    batch = next(iter(loader))
    inputs = batch["inputs"]
    assert inputs["image"]["pixels"].shape == (5, 3, 16, 16)
    assert inputs["sound"]["mel"].dim() == 3 and inputs["sound"]["mel"].shape[0] == 5
    assert inputs["caption"]["ids"].shape[0] == 5
    assert inputs[TABULAR]["numeric"].shape == (5, 1)
    assert inputs[TABULAR]["categorical"].shape == (5, 1)
    # row 3 has an empty caption: absent, and reported as missing
    assert inputs["caption"]["present"].tolist() == [True, True, True, False, True]
    assert [(p.row, p.column, p.kind) for p in batch["problems"]] == [(3, "caption", "missing")]
    assert batch["targets"]["label"].tolist() == [0, 1, 0, 1, 0]
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]


def test_every_bad_cell_is_reported_and_good_cells_kept(bad_table: Path) -> None:
    table, pre, ds = _prepare(bad_table)
    batch = Collator(pre)([ds[i] for i in range(len(ds))])
    found = {(p.row, p.column): p.reason for p in batch["problems"]}
    assert set(found) == {
        (1, "image"),
        (2, "audio"),
        (3, "audio"),
        (4, "audio"),
        (5, "text"),
        (6, "image"),
        (7, "image"),
        (8, "value"),
    }
    assert "decode" in found[(1, "image")]
    assert "empty" in found[(2, "audio")]
    assert "truncated" in found[(3, "audio")]
    assert "decode" in found[(4, "audio")]
    assert "not found" in found[(6, "image")]
    assert "directory" in found[(7, "image")]
    assert "not a number" in found[(8, "value")]
    # Bad cells are absent; the other cells of the same rows are still used.
    present = {k: v["present"] for k, v in batch["inputs"].items()}
    assert present["image"].tolist() == [
        True,
        False,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert present["audio"].tolist() == [
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert present["text"][1:5].all() and present["audio"][[1, 6, 7]].all()
    assert batch["inputs"][TABULAR]["numeric_present"][:, 0].tolist() == [True] * 8 + [False, True]


def test_strict_mode_names_row_column_and_file(bad_table: Path) -> None:
    _, _, ds = _prepare(bad_table, strict=True)
    ds[0]
    with pytest.raises(CellError) as info:
        ds[1]
    msg = str(info.value)
    assert "row 1" in msg and "'image'" in msg and "corrupt.png" in msg and "bad.csv" in msg


def test_training_items_are_reproducible_for_a_seed(media_table: Path) -> None:
    table = read_table(media_table)
    schema = infer_schema(table.df, "label", base_dir=table.base_dir)
    cfg = DataConfig(
        image=ImageConfig(size=16, augment=True), audio=AudioConfig(sample_rate=8000, duration=0.25)
    )
    pre = Preprocessor(schema, cfg).fit(table)
    ds = FusionDataset(table, pre, train=True)
    torch.manual_seed(1)
    a = ds[0]["inputs"]["image"]
    torch.manual_seed(1)
    b = ds[0]["inputs"]["image"]
    c = ds[0]["inputs"]["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_preprocessor_state_round_trip(media_table: Path) -> None:
    import json

    table, pre, ds = _prepare(media_table)
    again = Preprocessor.from_state(json.loads(json.dumps(pre.get_state())))
    ds2 = FusionDataset(table, again)
    a, b = Collator(pre)([ds[0], ds[1]]), Collator(again)([ds2[0], ds2[1]])
    for name in a["inputs"]:
        for key, value in a["inputs"][name].items():
            assert torch.equal(value, b["inputs"][name][key]), (name, key)


def test_unlabelled_tables_for_prediction(media_table: Path) -> None:
    table, pre, _ = _prepare(media_table)
    unlabelled = read_table(table.df.drop(columns=["label"]), base_dir=table.base_dir)
    ds = FusionDataset(unlabelled, pre, labels=False)
    batch = Collator(pre)([ds[0]])
    assert batch["targets"] == {}
    with pytest.raises(Exception, match="label"):
        FusionDataset(unlabelled, pre, labels=True)
