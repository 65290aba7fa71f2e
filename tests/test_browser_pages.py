"""The answer-first evaluation page, the checkpoint page, the token page and the API docs
in headless Chromium: what a person sees and clicks, no console errors, screenshots kept
under var/screenshots/pages/."""


from tests.test_browser import PAGE_TEST, SCREENSHOTS, wait_until
from tests.test_browser_analysis import console_errors, log_in
from tests.transferability.test_analysis_pages import evaluation_with_cache

pytestmark = PAGE_TEST

SHOTS = SCREENSHOTS / "pages"


def shoot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0);")  # the picture starts at the top
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
    assert browser.get_window_size() == {"width": 1400, "height": 1000}
    assert ranking_overflow(browser) <= 0
    # The compact ranking shows one metric (the lead's, LogME here) and the baselines; the
    # menu ranks by another predictor, and shows its column.
    assert "logme" in visible_metric_headers(browser)
    assert "tmi" not in visible_metric_headers(browser)
    Select(browser.find_element(By.ID, "rank-choice")).select_by_value("tmi")
    wait_until(browser, lambda d: "rank=tmi" in d.current_url, 10, "the page ranked by TMI")
    assert "tmi" in visible_metric_headers(browser)
    assert "logme" not in visible_metric_headers(browser)
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
    answer = browser.find_element(By.ID, "recommendation")  # the page ranked by TMI
    name = answer.find_element(By.CSS_SELECTOR, "a strong").text
    answer.find_element(By.CSS_SELECTOR, "a").click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "model-card"), 10, "the model card")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(name)
    assert browser.find_elements(By.CSS_SELECTOR, "#checkpoint-scores tbody tr")
    shoot(browser, "checkpoint")
    assert console_errors(browser) == []


def score_cells(driver, checkpoint: str) -> dict[str, str]:
    """A ranking row's score cells, metric -> text (warning signs left out)."""
    return driver.execute_script(
        "var row = document.querySelector('#ranking tr[data-checkpoint=\"' + arguments[0] + '\"]');"
        "var cells = {};"
        "row.querySelectorAll('td.score').forEach(function (td) {"
        "  var copy = td.cloneNode(true);"
        "  copy.querySelectorAll('.warn').forEach(function (w) { w.remove(); });"
        "  cells[td.dataset.metric] = copy.textContent.trim(); });"
        "return cells;", checkpoint)


def stored_values(result, metrics) -> dict[str, str]:
    """What a finished row's score cells must read: the stored values as the server writes
    them; a metric without a value (not applicable, or relative to the set before the end)
    reads –."""
    from transferability.models import MetricScore

    stored = {s.metric: s.value for s in
              MetricScore.objects.filter(result=result, layer=MetricScore.PRE_LOGITS)}
    return {metric: "–" if stored.get(metric) is None else "%.5g" % stored[metric]
            for metric in metrics}


def ranking_overflow(driver) -> int:
    """How far the ranking reaches past its box, px (0: no horizontal scroll)."""
    return driver.execute_script(
        "var box = document.getElementById('ranking').parentElement;"
        "return box.scrollWidth - box.clientWidth;")


def sticky_checkpoints(driver) -> bool:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#ranking tr > :nth-child(2)'))"
        ".every(c => getComputedStyle(c).position === 'sticky');")


def test_scores_fill_in_live_as_checkpoints_finish(browser, live_server, owner, tmp_path):
    """An evaluation of three checkpoints in which the test plays the worker: one is done
    when the page opens; a second finishes while the page is open and its scores appear
    without a reload while the third is still pending; the third finishes the evaluation
    and the page then reloads itself into the final ranking."""
    from selenium.webdriver.common.by import By

    from tests.builders import image_folder_zip, saved_checkpoint
    from transferability.datasets import create_target_dataset
    from transferability.models import (CheckpointResult, Evaluation, GroundTruth, Status,
                                        TruthResult)
    from workers.jobs import evaluate_checkpoint, finalize_evaluation

    archive = image_folder_zip(tmp_path / "shapes.zip", {"red": 8, "green": 8, "blue": 8},
                               seed=11)
    dataset = create_target_dataset(owner, "shapes", archive)
    # Names as long as timm's, which the compact ranking must fit.
    names = ["test_resnet.colours_seed1_in1k_ft_shapes", "test_vit.colours_seed3_in21k_ft_shapes",
             "test_resnet.colours_seed5_in1k_augmented"]
    checkpoints = [saved_checkpoint(name, name.split(".")[0], input_size=32, seed=seed)
                   for name, seed in zip(names, (1, 3, 5))]
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset)  # every metric
    first, second, third = [CheckpointResult.objects.create(evaluation=evaluation, checkpoint=c)
                            for c in checkpoints]
    assert evaluate_checkpoint(first.pk) is None  # done; the others are still to do
    evaluation.refresh_from_db()
    assert evaluation.status == Status.RUNNING

    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())
    assert browser.find_element(By.ID, "evaluation-state").get_attribute("data-status") == "running"
    done_cells = score_cells(browser, names[0])
    assert done_cells == stored_values(first, done_cells)
    assert any(text != "–" for text in done_cells.values()), done_cells
    for name in names[1:]:
        cells = score_cells(browser, name)
        assert cells.keys() == done_cells.keys()
        assert set(cells.values()) == {"–"}, (name, cells)
    # The compact ranking fits a 1,400 px window, progress bars and all, and the checkpoint
    # column stays in place when the table does scroll (all metrics).
    assert browser.get_window_size() == {"width": 1400, "height": 1000}
    assert ranking_overflow(browser) <= 0
    assert sticky_checkpoints(browser)
    browser.execute_script("document.querySelector('#scores .plotly-graph-div').scrollIntoView();")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#scores .plotly-graph-div .main-svg"), 20,
               "the score chart drawn")
    shoot(browser, "evaluation-running")

    # From here on the page must not be loaded again: a mark on this document, and its
    # navigation, both of which a reload would replace.
    browser.execute_script("window.__samePage = true;")
    origin = browser.execute_script("return performance.timeOrigin;")
    assert browser.execute_script("return performance.getEntriesByType('navigation').length;") == 1

    assert evaluate_checkpoint(second.pk) is None  # done, as a worker leaves it
    second.refresh_from_db()
    assert second.status == Status.DONE
    expected = stored_values(second, done_cells)
    assert any(text != "–" for text in expected.values()), expected
    wait_until(browser, lambda d: score_cells(d, names[1]) == expected, 20,
               "the second checkpoint's scores to appear in the page")
    # Still the same document, and the evaluation still running: no reload brought them.
    assert browser.execute_script("return window.__samePage === true;")
    assert browser.execute_script("return performance.timeOrigin;") == origin
    assert Evaluation.objects.get(pk=evaluation.pk).status == Status.RUNNING
    assert set(score_cells(browser, names[2]).values()) == {"–"}
    assert score_cells(browser, names[0]) == done_cells
    row = browser.find_element(By.CSS_SELECTOR, f'#ranking tr[data-checkpoint="{names[1]}"]')
    assert row.find_element(By.CSS_SELECTOR, ".result-status .badge").text == "Done"
    assert not row.find_elements(By.CSS_SELECTOR, ".result-progress")
    second.checkpoint.refresh_from_db()
    assert row.find_element(By.CSS_SELECTOR, "td.dim").text == str(second.feature_dim)
    assert row.find_element(By.CSS_SELECTOR, "td.params").text == f"{second.checkpoint.param_count:,}"
    live_cells = score_cells(browser, names[1])

    # The last checkpoint finishes the evaluation: the page reloads itself once, complete.
    assert evaluate_checkpoint(third.pk) == evaluation.pk
    finalize_evaluation(evaluation.pk)
    assert Evaluation.objects.get(pk=evaluation.pk).status == Status.DONE
    wait_until(browser, lambda d: d.execute_script("return window.__samePage === undefined;")
               and d.find_element(By.ID, "evaluation-state").get_attribute("data-status") == "done",
               20, "the page to reload itself into the finished evaluation")
    assert browser.execute_script("return performance.timeOrigin;") != origin
    assert browser.find_element(By.ID, "status-badge").text == "Done"
    # The server's rendering of the second row reads as the live one did, except for the
    # metrics relative to the set, which get their values only now.
    final_cells = score_cells(browser, names[1])
    for metric, text in live_cells.items():
        if text != "–":
            assert final_cells[metric] == text, metric
    assert browser.find_elements(By.CSS_SELECTOR, "#scores .plotly-graph-div")
    assert ranking_overflow(browser) <= 0

    # With the true accuracies beside the scores (a column more) it still fits.
    truth = GroundTruth.objects.create(evaluation=evaluation, mode=GroundTruth.Mode.PROBE,
                                       status=Status.DONE)
    for checkpoint, accuracy in zip(checkpoints, (91.5, 88.25, 90.0)):
        TruthResult.objects.create(truth=truth, checkpoint=checkpoint, status=Status.DONE,
                                   accuracy=accuracy)
    browser.refresh()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#ranking .truth-cell"), 10,
               "the true accuracy column")
    assert ranking_overflow(browser) <= 0
    assert sticky_checkpoints(browser)
    shoot(browser, "evaluation-finished")
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
