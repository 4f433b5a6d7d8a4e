"""A headless Chromium for the browser tests, skipped with a reason when unavailable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crossfuse.errors import ConfigError
from crossfuse.report.browser import find_browser, open_chrome


def browser_missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401

        find_browser()
    except ImportError:
        return "selenium is not installed"
    except ConfigError as e:
        return str(e)
    return None


def chrome(width: int = 1280, height: int = 2000) -> Iterator[Any]:
    """Generator for a module fixture: yields a driver, always quits it."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    driver = open_chrome(width=width, height=height)
    try:
        yield driver
    finally:
        driver.quit()
