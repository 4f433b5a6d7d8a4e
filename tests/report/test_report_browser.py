"""The report in a real browser: headless Chromium renders every section and image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from crossfuse.errors import ConfigError
from crossfuse.report import render_report
from crossfuse.report.browser import screenshot
from tests.browser import browser_missing, chrome
from tests.report.test_report import SECTION_IDS, full_report_data

pytestmark = pytest.mark.browser
AUDIO_DURATIONS_JS = """
const done = arguments[arguments.length - 1];
const audios = Array.from(document.querySelectorAll('audio'));
Promise.all(audios.map(a => a.readyState >= 1 ? null : new Promise(ok => {
  a.addEventListener('loadedmetadata', ok); a.addEventListener('error', ok); a.load();
}))).then(() => done(audios.map(a => a.error ? -1 : a.duration)));
"""


@pytest.fixture(scope="module")
def driver() -> Any:
    yield from chrome(width=1280, height=2000)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(full_report_data(), tmp_path_factory.mktemp("browser") / "report.html")


def test_every_section_and_image_renders_without_console_errors(
    driver: Any, report: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver.get(report.as_uri())
    assert driver.title == "Pets <model> report"
    for sid in SECTION_IDS:
        assert driver.find_element(By.ID, sid).is_displayed(), sid
    widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 7 and all(w > 0 for w in widths)
    driver.set_script_timeout(10)
    durations = driver.execute_async_script(AUDIO_DURATIONS_JS)
    assert durations == [pytest.approx(0.2, abs=0.01)] * 2  # the embedded WAVs decode
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    height = min(int(driver.execute_script("return document.body.scrollHeight")), 10_000)
    assert height > 2000
    driver.set_window_size(1280, height)
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.height >= 0.9 * height


def test_screenshot_helper_reports_sections_images_and_height(report: Path, tmp_path: Path) -> None:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    result = screenshot(report, tmp_path / "shot.png", width=1000)
    assert result["sections"] == SECTION_IDS
    assert result["images_ok"] is True
    assert result["console_errors"] == []
    assert result["height"] > 2000
    with Image.open(tmp_path / "shot.png") as img:
        assert img.width <= 1000 and (tmp_path / "shot.png").stat().st_size > 20_000


def test_screenshot_helper_rejects_missing_page(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        screenshot(tmp_path / "nope.html", tmp_path / "x.png")
