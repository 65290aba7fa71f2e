"""A person in headless Chromium: log in, upload a zip, evaluate two checkpoints, read the
ranking that the live-progress script brings in, sort it. A real Celery worker does the work.
"""

import re
from pathlib import Path

import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from tests.conftest import ROOT
from transferability.models import Evaluation, TargetDataset

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "var" / "screenshots"
HAS_CHROMIUM = CHROMIUM.exists() and CHROMEDRIVER.exists()
# A browser test on pages built in the test (no worker): the live server sees the test's
# rows, and the media and feature stores are the test's own (tests/conftest.py).
PAGE_TEST = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not HAS_CHROMIUM,
                       reason="needs Debian's chromium and chromedriver in /usr/bin"),
    pytest.mark.usefixtures("private_stores"),
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromedriver in /usr/bin"),
]


def wait_until(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException, TimeoutException)
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import WebDriverException

    # The page may change under the condition (a navigation, the live-progress reload).
    ignored = (NoSuchElementException, StaleElementReferenceException)

    def polled(d):
        try:
            return condition(d)
        except WebDriverException as exc:
            # Chromium's word for an element of the page being left, read mid-navigation.
            if "does not belong to the document" in str(exc):
                return False
            raise

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2,
                             ignored_exceptions=ignored).until(polled)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:2000]
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                             f"page at {driver.current_url}:\n{body}") from None


def statuses(driver) -> list[str]:
    return [b.text for b in driver.find_elements("css selector", "#ranking .result-status .badge")]


def column(driver, index: int) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#ranking tbody tr'))"
        ".map(r => r.children[arguments[0]].textContent.trim());", index)


def ranks(driver) -> list[str]:
    """The rank column's numbers (P(first) and the rank interval stand below them)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#ranking tbody tr'))"
        ".map(r => r.children[0].firstChild.textContent.trim());")


def test_a_person_uploads_a_zip_and_watches_the_ranking_arrive(
        browser, live_server, worker_process, owner, tmp_path):
    from selenium.webdriver.common.by import By

    saved_checkpoint("tiny-resnet", "test_resnet", input_size=32, seed=1)
    saved_checkpoint("tiny-vit", "test_vit", input_size=32, seed=3)
    archive = image_folder_zip(tmp_path / "shapes.zip", {"red": 8, "green": 8, "blue": 8},
                               seed=11)

    # Log in through the login page.
    browser.get(live_server.url + "/")
    assert "/accounts/login/" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("alice-password-1")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(browser, lambda d: "Log out alice" in d.find_element(By.TAG_NAME, "header").text,
               10, "the dashboard after logging in")

    # Upload the zip through the form.
    browser.find_element(By.LINK_TEXT, "Upload dataset").click()
    browser.find_element(By.NAME, "name").send_keys("shapes")
    browser.find_element(By.CSS_SELECTOR, "input[type=file][name=file]").send_keys(str(archive))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait_until(browser, lambda d: re.search(r"/datasets/\d+/$", d.current_url), 20,
               "the dataset page after uploading")
    dataset = TargetDataset.objects.get()
    assert browser.current_url.endswith(dataset.get_absolute_url())
    assert "Dataset shapes uploaded" in browser.page_source
    # The dataset page offers the evaluation once the images are checked and unpacked
    # (a page that follows the ingest reloads itself into it).
    wait_until(browser, lambda d: d.find_elements(By.ID, "evaluate-form"), 60,
               "the dataset ready to evaluate")
    dataset.refresh_from_db()
    assert (dataset.num_images, dataset.num_classes) == (24, 3)

    # Start an evaluation of both checkpoints (checked by default) on every metric.
    boxes = browser.find_elements(By.CSS_SELECTOR, "input[name=checkpoints]")
    assert len(boxes) == 2 and all(b.is_selected() for b in boxes)
    browser.find_element(By.CSS_SELECTOR, "#evaluate-form button[type=submit]").click()
    wait_until(browser, lambda d: re.search(r"/evaluations/\d+/$", d.current_url), 20,
               "the evaluation page")
    evaluation = Evaluation.objects.get()
    assert browser.current_url.endswith(evaluation.get_absolute_url())
    state = browser.find_element(By.ID, "evaluation-state").get_attribute("data-status")
    assert state in ("pending", "running", "finalizing"), (
        f"the evaluation was already {state} when its page loaded: live progress not exercised")
    # Nobody reloads from here on: the page's own script must bring in the ranking.
    browser.execute_script("window.__notReloaded = true;")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "evaluation-in-progress.png"))
    try:
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#scores .plotly-graph-div"), 120,
                   "the finished ranking with its chart")
    except AssertionError as exc:
        results = list(evaluation.results.values_list("checkpoint__name", "status"))
        exited = worker_process.poll()
        log = Path(worker_process.log_path).read_text()[-3000:]
        raise AssertionError(
            f"{exc}\nresults: {results}; worker "
            f"{'running' if exited is None else f'exited with {exited}'}\n"
            f"--- worker log ---\n{log}") from None
    assert browser.execute_script("return window.__notReloaded === undefined;"), (
        "the chart appeared without the page reloading itself")
    assert browser.find_element(By.ID, "evaluation-state").get_attribute("data-status") == "done"
    assert browser.find_element(By.ID, "status-badge").text == "Done"
    assert statuses(browser) == ["Done", "Done"]
    assert sorted(column(browser, 1)) == ["tiny-resnet", "tiny-vit"]
    # The rank, with below it how often the lead ranks it first over the resamples.
    # Two ranks; a tie by the lead (its members can disagree on two checkpoints) is named.
    assert ranks(browser)[0] == "1" and ranks(browser)[1] in ("1", "2")
    if ranks(browser)[1] == "1":
        assert "tied with" in browser.find_element(By.ID, "recommendation").text
    assert all("%#" in text for text in column(browser, 0))
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-flips"), "the flips heatmap"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pairs tbody tr")) == 2

    # Plotly is fetched when a chart comes near the viewport: scroll to them.
    browser.execute_script("document.getElementById('chart-flips').scrollIntoView();")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-flips .main-svg .hm"),
               20, "the charts drawn once scrolled to")
    # Plotly came from our own static files and drew the charts.
    assert browser.execute_script("return typeof window.Plotly === 'object' "
                                  "&& typeof window.Plotly.newPlot === 'function';")
    assert browser.execute_script(
        "return Array.from(document.scripts).filter(s => s.src)"
        ".every(s => s.src.startsWith(location.origin + '/static/'));")
    assert browser.find_elements(By.CSS_SELECTOR, "#scores .plotly-graph-div .main-svg .bars .point")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-flips .main-svg .hm")

    # Sorting by a header changes the order, both ways.
    # (By name: the two checkpoints may tie by the lead, and a tie does not reorder.)
    names = sorted(column(browser, 1))
    header = browser.find_element(By.XPATH,
                                  "//table[@id='ranking']/thead//th[text()='Checkpoint']")
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert column(browser, 1) == names
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert column(browser, 1) == names[::-1]
    browser.find_element(By.XPATH, "//table[@id='ranking']/thead//th[text()='Rank']").click()

    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1400, min(max(height + 120, 800), 4000))
    assert browser.save_screenshot(str(SCREENSHOTS / "evaluation.png"))
