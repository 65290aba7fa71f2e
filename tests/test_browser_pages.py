"""The answer-first evaluation page, the checkpoint page, the token page and the API docs
in headless Chromium: what a person sees and clicks, no console errors, screenshots kept
under var/screenshots/pages/."""

import pytest

from tests.test_browser import CHROMEDRIVER, CHROMIUM, SCREENSHOTS, wait_until
from tests.test_browser_analysis import console_errors, log_in
from tests.transferability.test_analysis_pages import evaluation_with_cache

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromedriver in /usr/bin"),
]

SHOTS = SCREENSHOTS / "pages"


@pytest.fixture(autouse=True)
def stores(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


def shoot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(1400, min(max(height + 120, 800), 5000))
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def visible_metric_headers(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#ranking thead th[data-metric]'))"
        ".filter(th => getComputedStyle(th).display !== 'none').map(th => th.dataset.metric);")


def test_the_evaluation_answers_first_and_leads_to_the_checkpoint(browser, live_server, owner,
                                                                  tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    evaluation = evaluation_with_cache(owner, tmp_path)
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())

    answer = browser.find_element(By.ID, "recommendation")
    assert answer.text.startswith("Take ") and "Its ranks:" in answer.text
    # The compact ranking shows one metric (TMI) and the baselines; the menu switches it.
    assert "tmi" in visible_metric_headers(browser)
    assert "logme" not in visible_metric_headers(browser)
    Select(browser.find_element(By.ID, "metric-choice")).select_by_value("logme")
    assert "logme" in visible_metric_headers(browser)
    assert "tmi" not in visible_metric_headers(browser)
    browser.find_element(By.ID, "show-all-metrics").click()
    assert {"tmi", "logme"} <= set(visible_metric_headers(browser))
    # Plotly is fetched when a chart comes near the viewport (400 px), not before.
    def fetched(driver):
        return driver.execute_script("return performance.getEntriesByType('resource')"
                                     ".some(r => r.name.includes('plotly'));")

    first_chart = browser.execute_script(
        "return Math.min(...Array.from(document.querySelectorAll('.plotly-graph-div'))"
        ".map(e => e.getBoundingClientRect().top));")
    if first_chart > browser.execute_script("return innerHeight;") + 400:
        assert not fetched(browser)
    browser.execute_script("document.getElementById('chart-flips').scrollIntoView();")
    wait_until(browser, fetched, 10, "plotly fetched once a chart is in view")
    shoot(browser, "evaluation-answer")

    # The recommended checkpoint's name opens its page: a model card.
    name = answer.find_element(By.CSS_SELECTOR, "a strong").text
    answer.find_element(By.CSS_SELECTOR, "a").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "model-card"), 10, "the model card")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(name)
    assert browser.find_elements(By.CSS_SELECTOR, "#checkpoint-scores tbody tr")
    shoot(browser, "checkpoint")
    assert console_errors(browser) == []


def test_the_token_page_and_the_api_docs(browser, live_server, owner):
    from selenium.webdriver.common.by import By

    log_in(browser, live_server)
    browser.find_element(By.LINK_TEXT, "API token").click()
    wait_until(browser, lambda d: "/accounts/token/" in d.current_url, 10, "the token page")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    token = wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "main input[readonly]"),
                       10, "the new token")[0].get_attribute("value")
    assert len(token) == 40
    shoot(browser, "token")

    browser.find_element(By.LINK_TEXT, "API").click()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"), 20,
               "the API operations in the docs")
    assert browser.execute_script(
        "return Array.from(document.scripts).filter(s => s.src)"
        ".every(s => s.src.startsWith(location.origin));")
    shoot(browser, "api-docs")
    assert console_errors(browser) == []
