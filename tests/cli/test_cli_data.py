"""The data commands, run as a user would (a subprocess), plus --help on every command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crossfuse", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def _command_paths() -> list[list[str]]:
    """Every command and sub-command of the app, found by walking its click tree."""
    import typer.main

    from crossfuse.cli import app

    paths, stack = [], [([], typer.main.get_command(app))]
    while stack:
        path, cmd = stack.pop()
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append(([*path, name], sub))
    return sorted(paths)


def test_the_app_has_the_documented_commands() -> None:
    names = {" ".join(p) for p in _command_paths()}
    assert {
        "inspect",
        "train",
        "evaluate",
        "predict",
        "embed",
        "features",
        "demo",
        "datasets build demo",
        "datasets build av-mnist",
        "datasets build shards",
        "report",
        "compare",
        "distill",
        "export",
        "serve",
        "refine",
        "rollback",
        "feedback list",
        "feedback export",
    } <= names


@pytest.mark.parametrize("command", _command_paths(), ids=lambda p: " ".join(p) or "crossfuse")
def test_every_command_has_help(command: list[str]) -> None:
    from typer.testing import CliRunner

    from crossfuse.cli import app

    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_inspect_prints_schema_and_problems(bad_table: Path) -> None:
    result = run("inspect", str(bad_table), "--label", "label")
    assert result.returncode == 0, result.stderr
    for text in (
        "Schema",
        "image",
        "audio",
        "numeric",
        "Class balance",
        "Problems (7",
        "corrupt.png",
        "truncated",
    ):
        assert text in result.stdout, text


def test_inspect_json(bad_table: Path) -> None:
    result = run("inspect", str(bad_table), "--label", "label", "--json")
    report = json.loads(result.stdout)
    assert report["schema"]["columns"]["value"] == "numeric"
    assert {p["row"] for p in report["problems"]} == {1, 2, 3, 4, 6, 7, 8}


def test_strict_fails_with_one_line_and_no_traceback(bad_table: Path) -> None:
    result = run("inspect", str(bad_table), "--label", "label", "--strict")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "row 1" in result.stderr and "corrupt.png" in result.stderr
    assert "strict" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "nope.csv", "--label", "y"], "not found"),
        (["inspect", "{table}", "--label", "nope"], "not in the table"),
        (["inspect", "{table}", "--label", "label", "--modality", "image"], "COLUMN=MODALITY"),
    ],
)
def test_user_mistakes_are_one_clear_line(bad_table: Path, args, message) -> None:
    args = [a.replace("{table}", str(bad_table)) for a in args]
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
