"""What the evaluation page says is true and current, in headless Chromium: a tie named
as one, a partial truth that claims no best and fills in live, the rank that follows the
predictor picked, sorting best-first, a sticky name column, rank chips that copy with
separators, and a transfer whose status is live. Screenshots under var/screenshots/pages/."""

import pytest

from tests.test_browser import PAGE_TEST, wait_until
from tests.test_browser_analysis import console_errors, log_in
from tests.test_browser_pages import shoot
from tests.transferability.test_pages import finished_evaluation

pytestmark = PAGE_TEST


def tied_evaluation(owner):
    """Three checkpoints; LogME (the lead here) ties mid-net and zeta-net, and TMI, the
    other metric, puts zeta-net first: the consensus separates them."""
    from transferability.models import MetricScore

    evaluation = finished_evaluation(owner)
    MetricScore.objects.filter(result__checkpoint__name="zeta-net", metric="logme").update(
        value=0.75)
    return evaluation


def running_truth(evaluation, measured):
    from transferability.models import GroundTruth, Status, TruthResult

    truth = GroundTruth.objects.create(evaluation=evaluation, status=Status.RUNNING,
                                       mode=GroundTruth.Mode.PROBE)
    for result in evaluation.results.select_related("checkpoint"):
        accuracy = measured.get(result.checkpoint.name)
        TruthResult.objects.create(
            truth=truth, checkpoint=result.checkpoint, details={"test": 400},
            status=Status.DONE if accuracy is not None else Status.RUNNING, accuracy=accuracy)
    return truth


def answer(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "recommendation").text


def test_a_tie_and_a_partial_truth_are_said_as_such_and_the_truth_fills_in_live(
        browser, live_server, owner):
    from selenium.webdriver.common.by import By

    from transferability.models import Status, TruthResult

    evaluation = tied_evaluation(owner)
    truth = running_truth(evaluation, {"mid-net": 88.5})
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())

    text = answer(browser)
    # Not the first by name (mid-net): the one the consensus puts first, the tie named.
    assert text.startswith("Take zeta-net tied with mid-net"), text
    assert "a tie: zeta-net and mid-net are equal by LogME; zeta-net is taken because " \
           "consensus rank 1 against 2" in text
    # A partial truth claims no best.
    assert "partial truth true accuracy: 1 of 3 measured; the highest so far is mid-net " \
           "at 88.5 %, not final until the rest are measured" in text
    assert "best true accuracy" not in text and "((" not in text and "(" not in text.split(
        "\n")[0]
    assert browser.find_element(By.ID, "truth-count").text == "1 of 3 checkpoints measured"
    shoot(browser, "answer-tie-partial-truth")

    # Each accuracy fills in as it is measured, with the count and the answer's note.
    TruthResult.objects.filter(truth=truth, checkpoint__name="zeta-net").update(
        status=Status.DONE, accuracy=80.0)
    zeta = browser.find_element(By.CSS_SELECTOR, 'tr[data-checkpoint="zeta-net"] td.truth-cell')
    wait_until(browser, lambda d: zeta.text.startswith("80.0"), 15, "zeta-net's accuracy")
    assert browser.find_element(By.ID, "truth-count").text == "2 of 3 checkpoints measured"
    wait_until(browser, lambda d: "2 of 3 measured" in d.find_element(By.ID, "truth-note").text,
               10, "the answer's note to follow")

    # Complete: the page comes back with the answer resting on the truth.
    TruthResult.objects.filter(truth=truth, checkpoint__name="alpha-net").update(
        status=Status.DONE, accuracy=71.0)
    type(truth).objects.filter(pk=truth.pk).update(status=Status.DONE)
    wait_until(browser, lambda d: "best true accuracy" in answer(d), 20, "the final answer")
    assert answer(browser).startswith("Take mid-net · best true accuracy, 88.5 %; 8.5 points "
                                      "above zeta-net")
    assert console_errors(browser) == []
    shoot(browser, "answer-after-truth")


def test_the_rank_follows_the_predictor_picked_and_the_table_reads_well(
        browser, live_server, owner):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    evaluation = finished_evaluation(owner)
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())

    def order(d):
        return [r.get_attribute("data-checkpoint")
                for r in d.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")]

    assert order(browser) == ["mid-net", "zeta-net", "alpha-net"]  # by LogME, the lead
    Select(browser.find_element(By.ID, "rank-choice")).select_by_value("tmi")
    wait_until(browser, lambda d: "rank=tmi" in d.current_url, 10, "the page ranked by TMI")
    assert order(browser) == ["zeta-net", "mid-net", "alpha-net"]
    assert browser.find_element(By.ID, "rank-picked").text.startswith("Ranked by TMI, as picked")
    assert [c.text for c in browser.find_elements(
        By.CSS_SELECTOR, "#ranking tbody td:first-child")][:1] == ["1"]
    # The answer stays with the lead chosen by evidence.
    assert answer(browser).startswith("Take mid-net")
    assert "rank=tmi" in browser.find_element(By.ID, "export-csv").get_attribute("href")

    # The first click on a higher-is-better column puts the best first.
    browser.find_element(By.CSS_SELECTOR, "#ranking th.sticky-name").click()  # by name
    assert order(browser) == ["alpha-net", "mid-net", "zeta-net"]
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-metric="tmi"]').click()
    assert order(browser)[0] == "zeta-net"
    browser.find_element(By.CSS_SELECTOR, '#ranking th[data-metric="tmi"]').click()
    assert order(browser)[0] == "alpha-net"

    # The rank chips copy with separators.
    copied = browser.execute_script(
        "var p = document.querySelector('.rank-chip').parentNode;"
        "var range = document.createRange(); range.selectNodeContents(p);"
        "var s = window.getSelection(); s.removeAllRanges(); s.addRange(range);"
        "return s.toString();")
    assert "Its ranks: TMI 2/3, LogME 1/3" in copied, copied

    # Scrolled sideways, the checkpoint's name stays in view.
    browser.find_element(By.ID, "show-all-metrics").click()
    browser.set_window_size(700, 900)
    position = browser.execute_script(
        "var box = document.querySelector('#ranking').closest('.table-scroll');"
        "box.scrollLeft = 400;"
        "var cell = document.querySelector('#ranking tbody td.sticky-name');"
        "return [box.scrollWidth > box.clientWidth, getComputedStyle(cell).position,"
        "        Math.round(cell.getBoundingClientRect().left - box.getBoundingClientRect().left)];")
    assert position[0] and position[1] == "sticky" and abs(position[2]) <= 1, position
    browser.set_window_size(1400, 1000)
    assert console_errors(browser) == []


def test_a_transfer_shows_its_status_live_and_its_variant_by_name(browser, live_server, owner):
    from selenium.webdriver.common.by import By

    from transferability.models import Status, Transfer
    from zoo.models import Checkpoint

    evaluation = finished_evaluation(owner)
    transfer = Transfer.objects.create(
        owner=owner, evaluation=evaluation, teacher=Checkpoint.objects.get(name="zeta-net"),
        student=Checkpoint.objects.get(name="mid-net"), status=Status.PENDING)
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url() + "#transfer")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-transfer="{transfer.pk}"]')
    assert "KL+DP with labels" in row.text and "supervised" not in row.text
    assert row.find_element(By.CSS_SELECTOR, ".transfer-badge").text == "Pending"
    Transfer.objects.filter(pk=transfer.pk).update(status=Status.RUNNING, steps_done=41,
                                                   steps_total=100)
    badge = row.find_element(By.CSS_SELECTOR, ".transfer-badge")
    wait_until(browser, lambda d: badge.text == "Running", 10, "the transfer's status")
    assert float(row.find_element(By.CSS_SELECTOR, ".transfer-progress")
                 .get_attribute("value")) == pytest.approx(0.41)
    # The suggestion gives its expected gain, or why it is not estimated yet.
    suggestion = browser.find_element(By.ID, "transfer-suggestion").text
    assert "expected gain" in suggestion or suggestion.startswith("No transfer is suggested")
    assert console_errors(browser) == []
