import pandas as pd
import pytest
import torch

from crossfuse.data.labels import LabelEncoder
from crossfuse.data.schema import Task
from crossfuse.data.tabular import UNKNOWN_ID, TabularProcessor
from crossfuse.data.text import TextConfig, TextProcessor, clean_text
from crossfuse.errors import CellError, ConfigError, SchemaError


def test_clean_text_normalises_unicode_and_space() -> None:
    assert clean_text("  Ｃａｆé\u00a0 \t bar\x07 ") == "Café bar"


def test_word_vocab_and_padding() -> None:
    proc = TextProcessor(TextConfig(tokenizer="word")).fit(["the cat sat", "the dog", None, ""])
    a = proc.process("The CAT!")
    assert proc.vocab[a[0]] == "the" and proc.vocab[a[1]] == "cat"
    assert a[2] == 1  # "!" unseen → <unk>
    batch = proc.collate([a, None, proc.process("dog")])
    assert batch["ids"].shape == (3, 3)
    assert batch["lengths"].tolist() == [3, 0, 1]
    assert batch["present"].tolist() == [True, False, True]
    assert batch["ids"][1].tolist() == [0, 0, 0]


def test_auto_tokenizer_picks_chars_for_short_cells() -> None:
    assert TextProcessor().fit(["red", "blue", "navy"]).kind == "char"
    assert TextProcessor().fit(["a long sentence here", "another long one"]).kind == "word"


def test_empty_text_is_a_cell_error_and_state_round_trips() -> None:
    proc = TextProcessor().fit(["hello there world"])
    with pytest.raises(CellError, match="empty"):
        proc.process("  \u200b ".replace("\u200b", ""))
    with pytest.raises(CellError):
        proc.process(None)
    again = TextProcessor.from_state(proc.get_state())
    assert torch.equal(again.process("hello world"), proc.process("hello world"))
    with pytest.raises(ConfigError):
        TextConfig(tokenizer="bpe")


def test_tabular_standardises_and_masks() -> None:
    df = pd.DataFrame({"x": [1.0, 3.0, None], "c": ["a", "b", "a"]})
    proc = TabularProcessor(["x"], ["c"]).fit(df)
    item, problems = proc.process_row({"x": "3", "c": "zzz"})
    assert item["numeric"].item() == pytest.approx(1.0)
    assert item["categorical"].item() == UNKNOWN_ID
    assert problems == []
    bad, problems = proc.process_row({"x": "abc", "c": None})
    assert problems == [("x", "not a number: 'abc'"), ("c", "empty cell")]
    batch = proc.collate([item, bad])
    assert batch["present"].tolist() == [True, False]
    assert batch["numeric_present"].tolist() == [[True], [False]]
    assert proc.cardinalities == [4]
    again = TabularProcessor.from_state(proc.get_state())
    assert torch.equal(again.process_row({"x": 2, "c": "b"})[0]["categorical"], torch.tensor([3]))


def test_label_encoder_classes_and_regression() -> None:
    enc = LabelEncoder("y", Task.CLASSIFICATION).fit([2, 1, 2, None, 10])
    assert enc.classes == [1, 2, 10]
    assert enc.encode("10") == 2 and enc.decode(0) == 1
    with pytest.raises(CellError, match="not seen"):
        enc.encode(7)
    with pytest.raises(CellError, match="missing"):
        enc.encode(float("nan"))
    with pytest.raises(SchemaError, match="one class"):
        LabelEncoder("y", Task.CLASSIFICATION).fit(["a", "a"])
    reg = LabelEncoder("r", Task.REGRESSION).fit([1.0, 3.0])
    assert reg.encode(3.0) == pytest.approx(1.0)
    assert reg.unscale(torch.tensor([1.0]).numpy())[0] == pytest.approx(3.0)
    again = LabelEncoder.from_state(enc.get_state())
    assert again.classes == enc.classes and again.encode(10) == 2
