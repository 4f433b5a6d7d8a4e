"""The web page in headless Chromium: upload media, predict, send feedback, see it stored."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from crossfuse.feedback.store import FeedbackStore
from crossfuse.serve import ServeConfig, create_app
from tests.browser import browser_missing, chrome
from tests.serve.helpers import live_server, train_model

SCREENSHOT_COPY = Path("/tmp/serve_page.png")  # a copy to look at by eye

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chrome(width=1280, height=1600)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    if browser_missing():
        pytest.skip(browser_missing())
    folder = tmp_path_factory.mktemp("browser")
    model_dir = train_model(folder)
    store = FeedbackStore(folder / "feedback.sqlite")
    app = create_app(model_dir, ServeConfig(), store=store)
    with live_server(app) as url:
        yield SimpleNamespace(url=url, store=store, data=model_dir.parent / "data")


def test_predict_and_send_feedback_in_the_browser(
    driver: Any, server: SimpleNamespace, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(server.url + "/")
    wait.until(ec.element_to_be_clickable((By.ID, "predict-btn")))
    assert "fusion" in driver.find_element(By.ID, "model-summary").text
    driver.find_element(By.ID, "input-picture").send_keys(str(server.data / "img1.png"))
    driver.find_element(By.ID, "input-sound").send_keys(str(server.data / "snd1.wav"))
    driver.find_element(By.ID, "input-note").send_keys("beta item 2")
    driver.find_element(By.ID, "input-x").send_keys("0.9")
    driver.find_element(By.ID, "predict-btn").click()

    wait.until(ec.visibility_of_element_located((By.ID, "prob-a")))
    bars = driver.find_elements(By.CSS_SELECTOR, "#result .bar-row")
    probs = [float(b.get_attribute("data-probability")) for b in bars]
    assert len(probs) == 2 and probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1, abs=1e-4)
    predicted = driver.find_element(By.ID, "predicted-label").text
    assert bars[0].get_attribute("id") == f"prob-{predicted}"
    chips = driver.find_element(By.ID, "present").text
    assert "picture" in chips and "table values (x)" in chips and "missing" not in chips

    right = "a" if predicted == "b" else "b"  # correct the model
    Select(driver.find_element(By.ID, "feedback-label")).select_by_value(right)
    driver.find_element(By.ID, "feedback-comment").send_keys("checked by hand")
    driver.find_element(By.ID, "feedback-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "feedback-status"), "feedback stored"))
    status = driver.find_element(By.ID, "feedback-status").text
    assert status.startswith("Thanks — feedback stored (#")

    rows = server.store.feedback_rows()
    assert len(rows) == 1 and status == f"Thanks — feedback stored (#{rows[0]['id']})"
    assert rows[0]["label"] == right and rows[0]["predicted"] == predicted
    assert rows[0]["comment"] == "checked by hand"
    assert Path(rows[0]["inputs"]["sound"]).read_bytes() == (server.data / "snd1.wav").read_bytes()
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []

    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))
    with Image.open(shot) as img:
        assert img.size[0] >= 1000 and img.getextrema() != ((255, 255), (255, 255), (255, 255))
    shutil.copyfile(shot, SCREENSHOT_COPY)


def test_page_shows_server_errors(driver: Any, server: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(server.url + "/")
    wait.until(ec.element_to_be_clickable((By.ID, "predict-btn")))
    driver.find_element(By.ID, "input-picture").send_keys(str(server.data / "snd1.wav"))
    driver.find_element(By.ID, "predict-btn").click()
    wait.until(ec.visibility_of_element_located((By.ID, "predict-error")))
    error = driver.find_element(By.ID, "predict-error").text
    assert "field 'picture'" in error and "not a supported image" in error
