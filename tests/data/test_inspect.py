from pathlib import Path

import pandas as pd

from crossfuse.data.inspect import inspect_table


def test_inspect_reports_schema_balance_and_problems(bad_table: Path) -> None:
    report = inspect_table(bad_table, "label")
    assert report.rows == 10
    assert report.balance["label"]["counts"] == {"a": 5, "b": 5}
    rows = sorted((p.row, p.column) for p in report.errors)
    assert rows == [
        (1, "image"),
        (2, "audio"),
        (3, "audio"),
        (4, "audio"),
        (6, "image"),
        (7, "image"),
        (8, "value"),
    ]
    assert report.missing_by_column["text"] == 1  # row 5's blank text
    d = report.to_dict()
    assert d["schema"]["columns"]["audio"] == "audio" and len(d["problems"]) == 7


def test_inspect_finds_duplicates_and_label_issues(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "x": [1.0, 2.0, 1.0, 4.0, 5.0, None],
            "t": ["a b c d", "e f g h", "a b c d", "q r s t", "u v w x", None],
            "y": ["p", "q", "q", None, "rare", "p"],
        }
    )
    path = tmp_path / "t.jsonl"
    df.to_json(path, orient="records", lines=True)
    report = inspect_table(path, "y")
    reasons = {(p.row, p.reason) for p in report.problems if p.kind in ("row", "label")}
    assert (2, "duplicate of row 0 with a different label") in reasons
    assert (3, "missing label") in reasons
    assert (5, "every input cell is empty") in reasons
    assert (None, "class 'rare' has only 1 example(s)") in reasons
