"""The analysis pages' scripts in headless Chromium: a click on a heatmap cell opens the
pair's page, the pairs table filters and pages, the metric menus switch charts, thumbnails
load, and no page logs an error. The data is made in code (no worker needed).
"""

import re

import numpy as np

from tests.test_browser import PAGE_TEST, SCREENSHOTS, wait_until
from tests.transferability.test_analysis_pages import evaluation_with_cache, ids

pytestmark = PAGE_TEST


def log_in(driver, live_server):
    from selenium.webdriver.common.by import By

    driver.get(live_server.url + "/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys("alice-password-1")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(driver, lambda d: "Log out alice" in d.find_element(By.TAG_NAME, "header").text,
               10, "the dashboard after logging in")


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def visible_pairs(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#pairs tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.children[0].textContent + ' > ' "
        "+ r.children[1].textContent);")


def test_the_heatmap_and_the_pairs_table_lead_to_the_pair_page(browser, live_server, owner,
                                                              tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    evaluation = evaluation_with_cache(owner, tmp_path)
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())
    # Plotly is fetched when a chart comes near the viewport.
    browser.execute_script("document.getElementById('chart-flips').scrollIntoView();")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-flips .main-svg .hm"),
               20, "the flips heatmap")

    # The pairs table: every pair, a filter that counts what matches.
    assert len(visible_pairs(browser)) == 6
    assert browser.find_element(By.ID, "pairs-count").text == "6 of 6 pairs"
    browser.find_element(By.ID, "pairs-filter").send_keys("zeta")
    wait_until(browser, lambda d: d.find_element(By.ID, "pairs-count").text == "4 of 6 pairs",
               5, "the filtered count")
    assert all("zeta-net" in pair for pair in visible_pairs(browser))
    assert not browser.find_element(By.ID, "pairs-pager").is_displayed()  # one page

    # Each metric menu switches its chart without a round trip.
    scores = browser.find_element(By.CSS_SELECTOR, "#scores .plotly-graph-div")
    scores.find_element(By.CSS_SELECTOR, ".updatemenu-header-group").click()
    option = wait_until(browser, lambda d: d.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.updatemenu-dropdown-button'))"
        ".find(b => b.textContent.trim() === 'LogME');", scores), 5, "the menu's options")
    option.click()
    wait_until(browser, lambda d: "LogME per checkpoint" in scores.text, 5, "the LogME bars")

    # A click on the cell (row alpha-net, column mid-net) opens that pair's page.
    plot = browser.find_element(By.ID, "chart-flips")
    x, y = browser.execute_script(
        "var gd = arguments[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;"
        "return [xa._offset + xa.d2p('mid-net'), ya._offset + ya.d2p('alpha-net')];", plot)
    size = plot.size
    ActionChains(browser).move_to_element_with_offset(
        plot, int(x - size["width"] / 2), int(y - size["height"] / 2)).click().perform()
    expected = f"/evaluations/{evaluation.pk}/pairs/{ids()['alpha-net']}/{ids()['mid-net']}/"
    wait_until(browser, lambda d: d.current_url.endswith(expected), 10, "the pair's page")
    assert console_errors(browser) == []

    # The pair page: its chart, and thumbnails that load.
    wait_until(browser, lambda d: d.find_elements(
        By.CSS_SELECTOR, "#chart-pair-classes .main-svg .bars .point"), 20, "the class bars")
    images = browser.find_elements(By.CSS_SELECTOR, "#examples img")
    assert len(images) == 4 + 5
    for image in images:
        browser.execute_script("arguments[0].scrollIntoView();", image)
    wait_until(browser, lambda d: all(d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0;", i) for i in images),
        10, "every thumbnail")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "pair.png"))
    assert console_errors(browser) == []


def test_the_pairs_table_pages_through_many_pairs(browser, live_server, owner, tmp_path):
    from selenium.webdriver.common.by import By

    from transferability.complementarity import complementarity_report
    from transferability.models import CheckpointResult
    from zoo.models import Checkpoint

    evaluation = evaluation_with_cache(owner, tmp_path)
    names = [f"net-{i:02d}" for i in range(7)]  # 42 ordered pairs: two pages of 25
    for name in names:
        CheckpointResult.objects.create(
            evaluation=evaluation, status="done",
            checkpoint=Checkpoint.objects.create(name=name, architecture="resnet18",
                                                 input_size=[3, 32, 32], mean=[0.5] * 3,
                                                 std=[0.5] * 3))
    rng = np.random.default_rng(0)
    labels = np.repeat(["blue", "green", "red"], 4).astype(object)
    evaluation.complementarity = complementarity_report(rng.random((7, 12)) > 0.5, labels, names)
    evaluation.save()
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())

    assert browser.find_element(By.ID, "pairs-count").text == "42 of 42 pairs"
    assert len(visible_pairs(browser)) == 25
    pager = browser.find_element(By.ID, "pairs-pager")
    assert pager.is_displayed() and "page 1 of 2" in pager.text
    first_page = visible_pairs(browser)
    pager.find_element(By.CSS_SELECTOR, '[data-step="1"]').click()
    assert "page 2 of 2" in pager.text
    second_page = visible_pairs(browser)
    assert len(second_page) == 17 and not set(first_page) & set(second_page)
    # Sorting goes back to the first page of the new order.
    header = browser.find_element(By.XPATH, "//table[@id='pairs']/thead//th[text()='Right']")
    header.click()
    assert "page 1 of 2" in pager.text
    rights = [pair.split(" > ")[0] for pair in visible_pairs(browser)]
    assert rights == sorted(rights)
    assert re.fullmatch(r"page 1 of 2", pager.find_element(By.CLASS_NAME, "pager-page").text)
    assert console_errors(browser) == []


def test_the_dataset_and_compare_pages_load_without_errors(browser, live_server, owner,
                                                          tmp_path):
    from selenium.webdriver.common.by import By

    first = evaluation_with_cache(owner, tmp_path)
    second = evaluation_with_cache(owner, tmp_path, dataset=first.dataset)
    log_in(browser, live_server)

    browser.get(live_server.url + first.dataset.get_absolute_url())
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-classes .bars .point"),
               20, "the class balance chart")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#samples img")
    assert len(thumbs) == 12
    wait_until(browser, lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0;", thumbs[0]), 10,
        "the first thumbnail")
    # Tick both evaluations and compare them.
    for box in browser.find_elements(By.CSS_SELECTOR, "#compare-form input[name=ids]"):
        box.click()
    browser.find_element(By.CSS_SELECTOR, "#compare-form button[type=submit]").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "comparison"), 10, "the comparison")
    assert f"ids={second.pk}" in browser.current_url and f"ids={first.pk}" in browser.current_url
    assert len(browser.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")) == 3
    assert console_errors(browser) == []
