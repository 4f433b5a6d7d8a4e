"""Versions of a model directory: candidates from ``refine``, which one is live, rollback.

A plain model directory is version 1. The first :func:`new_version_dir` copies it to
``MODEL/versions/1/``; every later version is a full model directory
``MODEL/versions/N/``. ``MODEL/current`` (replaced atomically) names the live version
and ``MODEL/versions.json`` is the history, one entry per version::

    {"version": 2, "parent": 1, "created": "2025-…", "promoted": true,
     "reason": "…", "metrics": {…}, "promotion": 2, "rolled_back": false}

``promotion`` orders the promotions (1 for the original); the live version is the most
recent promotion not rolled back, so :func:`rollback` steps back one promotion at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crossfuse.atomic import atomic_write
from crossfuse.errors import ModelDirError
from crossfuse.evaluation.evaluate import SUMMARY_KEYS
from crossfuse.model_dir import METRICS_FILE

VERSIONS_DIR, CURRENT_FILE, HISTORY_FILE, LOCK_FILE = (
    "versions",
    "current",
    "versions.json",
    ".versions.lock",
)
# what belongs to the model itself (not copied into versions/1): version bookkeeping
# and the feedback store, which serve every version
_NOT_MODEL = {VERSIONS_DIR, CURRENT_FILE, HISTORY_FILE, LOCK_FILE, "feedback"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def metrics_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an ``evaluate_model`` result: rows and per-task summaries."""
    tasks = {
        task: {k: m[k] for k in SUMMARY_KEYS if m.get(k) is not None}
        for task, m in result.get("tasks", {}).items()
    }
    return {"rows": result.get("rows"), "tasks": tasks}


def resolve_model_dir(path: str | Path) -> Path:
    """The folder holding the live weights: ``MODEL/versions/<current>`` or ``MODEL``."""
    root = Path(path)
    if not (root / CURRENT_FILE).is_file():
        return root
    folder = root / VERSIONS_DIR / str(current_version(root))
    if not folder.is_dir():
        raise ModelDirError(
            f"{root / CURRENT_FILE} names version {folder.name}, but {folder} does not exist"
        )
    return folder


def current_version(path: str | Path) -> int:
    """The live version number (1 for a plain model directory; N for ``MODEL/versions/N``)."""
    folder = Path(path)
    file = folder / CURRENT_FILE
    if not file.is_file():
        in_versions = folder.parent.name == VERSIONS_DIR and folder.name.isdigit()
        return int(folder.name) if in_versions else 1
    text = file.read_text().strip()
    if not text.isdigit() or int(text) < 1:
        raise ModelDirError(f"{file} should hold a version number, found {text!r}")
    return int(text)


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every version's entry, oldest first (empty for a plain model directory)."""
    file = Path(path) / HISTORY_FILE
    if not file.is_file():
        return []
    try:
        entries = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{file} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(entries, list):
        raise ModelDirError(f"{file} should hold a list of version entries")
    return entries


def new_version_dir(path: str | Path) -> tuple[int, Path]:
    """Reserve the next version: ``(N, MODEL/versions/N)``, the folder created empty.

    The first call turns the plain model directory into version 1 (copied to
    ``versions/1``, recorded in the history and made current).
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelDirError(f"model directory {root} not found")
    versions = root / VERSIONS_DIR
    with _locked(root):
        if not (versions / "1").is_dir():
            _adopt_original(root)
        taken = [int(p.name) for p in versions.iterdir() if p.name.isdigit()]
        n = max(taken) + 1
        folder = versions / str(n)
        folder.mkdir()
    return n, folder


def record(path: str | Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the history (replacing the entry of the same version)."""
    if "version" not in entry:
        raise ModelDirError("a version entry needs a 'version' number")
    with _locked(Path(path)):
        _record(Path(path), entry)


def promote(path: str | Path, n: int, reason: str, metrics: dict[str, Any]) -> None:
    """Make version ``n`` live: its entry is marked promoted, then ``current`` is replaced."""
    root = Path(path)
    if not (root / VERSIONS_DIR / str(n)).is_dir():
        raise ModelDirError(f"{root} has no version {n} to promote")
    with _locked(root):
        entries = history(root)
        entry = next((e for e in entries if e.get("version") == n), {"version": n})
        entry.update(
            promoted=True,
            rolled_back=False,
            reason=reason,
            metrics={**entry.get("metrics", {}), **metrics},
            promotion=max((e.get("promotion") or 0 for e in entries), default=0) + 1,
            promoted_at=_now(),
        )
        _record(root, entry)
        _write_current(root, n)


def rollback(path: str | Path) -> int:
    """Make the version that was live before the current one live again; its number.

    Raises:
        ModelDirError: there is no earlier promoted version to return to.
    """
    root = Path(path)
    with _locked(root):
        now = current_version(root)
        live = sorted(
            (e for e in history(root) if e.get("promoted") and not e.get("rolled_back")),
            key=lambda e: e.get("promotion") or 0,
        )
        earlier = [e for e in live if e["version"] != now]
        if not (root / CURRENT_FILE).is_file() or not earlier:
            raise ModelDirError(
                f"cannot roll back {root}: version {now} is the only version that was "
                "ever live (nothing earlier to return to)"
            )
        target = int(earlier[-1]["version"])
        for entry in live:
            if entry["version"] == now:
                _record(root, {**entry, "rolled_back": True, "rolled_back_at": _now()})
        _write_current(root, target)
    return target


# ------------------------------------------------------------------- internals
def _adopt_original(root: Path) -> None:
    """Copy the plain model directory to ``versions/1`` (via a temp folder + rename)."""
    versions = root / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=versions, prefix=".tmp-1-"))
    try:
        for item in root.iterdir():
            if item.name in _NOT_MODEL or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        os.chmod(tmp, 0o755)
        os.rename(tmp, versions / "1")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    metrics_file = versions / "1" / METRICS_FILE
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if not any(e.get("version") == 1 for e in history(root)):
        _record(
            root,
            {
                "version": 1,
                "parent": None,
                "created": _now(),
                "promoted": True,
                "reason": "the original model",
                "metrics": {"valid": metrics_summary(metrics.get("valid", {}))},
                "promotion": 1,
                "rolled_back": False,
            },
        )
    if not (root / CURRENT_FILE).is_file():
        _write_current(root, 1)


def _record(root: Path, entry: dict[str, Any]) -> None:
    entries = [e for e in history(root) if e.get("version") != entry["version"]]
    entries.append(entry)
    entries.sort(key=lambda e: e["version"])
    atomic_write(root / HISTORY_FILE, json.dumps(entries, indent=2, default=str) + "\n")


def _write_current(root: Path, n: int) -> None:
    atomic_write(root / CURRENT_FILE, f"{n}\n")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise read-modify-write of the history between processes (POSIX file lock)."""
    if not root.is_dir():
        raise ModelDirError(f"model directory {root} not found")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-writer use only
        yield
        return
    with open(root / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
