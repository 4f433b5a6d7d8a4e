"""Open a report in headless Chromium and save a full-page screenshot.

Used by the browser tests and the benchmarks to check that a report really renders:
which sections are visible, whether every image decoded, and what the console logged.
Selenium is imported only when :func:`screenshot` runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from crossfuse.errors import ConfigError

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MAX_HEIGHT = 10_000
CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,2000",
)
_SECTIONS_JS = """
return Array.from(document.querySelectorAll('section[id]')).filter(
  s => s.offsetWidth > 0 && s.offsetHeight > 0).map(s => s.id);
"""
_HEIGHT_JS = """
return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);
"""
_IMAGES_JS = """
return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0);
"""


def find_browser() -> tuple[str, str]:
    """Paths of Chromium and chromedriver (the standard paths, else from ``PATH``).

    Raises:
        ConfigError: either program is missing.
    """
    found = []
    for default, names in ((CHROMIUM, ("chromium", "chromium-browser")), (CHROMEDRIVER, ())):
        path = default if Path(default).exists() else None
        for name in (Path(default).name, *names):
            path = path or shutil.which(name)
        if path is None:
            raise ConfigError(f"{Path(default).name} not found (looked at {default} and PATH)")
        found.append(path)
    return found[0], found[1]


def open_chrome(*, width: int = 1280, height: int = 2000) -> Any:
    """A headless Chromium driven by Selenium, logging the browser console.

    Raises:
        ConfigError: selenium, Chromium or chromedriver is missing.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise ConfigError("browser checks need selenium (pip install selenium)") from exc
    chromium, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(
            f"--window-size={width},{height}" if arg.startswith("--window") else arg
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver_path))


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1280) -> dict[str, Any]:
    """Load ``html_path`` in headless Chromium and save a full-page PNG to ``png_path``.

    The window is resized to the page height (at most 10,000 px) before the capture.

    Returns:
        ``{"console_errors": [SEVERE console messages], "sections": [visible section
        ids], "images_ok": every <img> decoded, "height": page height in px}``.

    Raises:
        ConfigError: selenium, Chromium or chromedriver is missing, or ``html_path``
            does not exist.
    """
    page = Path(html_path).resolve()
    if not page.is_file():
        raise ConfigError(f"report {str(page)!r} does not exist")
    driver = open_chrome(width=width)
    try:
        driver.get(page.as_uri())
        height = int(driver.execute_script(_HEIGHT_JS))
        # The window height includes the browser's own bars: add them so the viewport,
        # and so the screenshot, holds the whole page.
        bars = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
        driver.set_window_size(width, min(height, MAX_HEIGHT) + max(bars, 0))
        sections = list(driver.execute_script(_SECTIONS_JS))
        images_ok = bool(driver.execute_script(_IMAGES_JS))
        driver.save_screenshot(str(png_path))
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    return {
        "console_errors": errors,
        "sections": sections,
        "images_ok": images_ok,
        "height": height,
    }
