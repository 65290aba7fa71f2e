"""Cancel, Re-run and Delete in headless Chromium: the confirmations name what they destroy
and work under the page's Content-Security-Policy (no inline handlers). Screenshots kept
under var/screenshots/pages/."""

from tests.builders import image_folder_zip
from tests.test_browser import PAGE_TEST, wait_until
from tests.test_browser_analysis import console_errors, log_in
from tests.test_browser_pages import SHOTS, shoot
from tests.transferability.test_controls import distilled_transfer, running_evaluation
from tests.transferability.test_pages import finished_evaluation
from transferability.datasets import create_target_dataset
from transferability.models import Evaluation, GroundTruth, Status, TargetDataset

pytestmark = PAGE_TEST


def confirm_dialog(driver, click, accept: bool) -> str:
    """Click, then answer the confirmation that opens; its text."""
    from selenium.webdriver.support import expected_conditions

    click()
    alert = wait_until(driver, expected_conditions.alert_is_present(), 5, "the confirmation")
    text = alert.text
    alert.accept() if accept else alert.dismiss()
    return text


def evaluation_rows(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#evaluations tbody tr'))"
        ".map(r => r.children[1].textContent.trim());")


def test_delete_on_the_evaluation_page_names_it_and_lands_on_the_dashboard(browser, live_server,
                                                                          owner):
    from selenium.webdriver.common.by import By

    evaluation = finished_evaluation(owner)
    GroundTruth.objects.create(evaluation=evaluation, status=Status.DONE)
    distilled_transfer(evaluation)
    distilled_transfer(evaluation)
    kept = running_evaluation(owner)
    log_in(browser, live_server)
    browser.get(live_server.url + evaluation.get_absolute_url())
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.TAG_NAME, "main").screenshot(
        str(SHOTS / "evaluation-controls.png"))
    delete = browser.find_element(By.CSS_SELECTOR, "#delete-form button")
    question = (f"Delete evaluation {evaluation.pk} of dataset 'flowers' with its 3 results, "
                f"its ground truth and 2 transfers? Distilled checkpoints are kept.")

    # Said no: nothing is sent.
    assert confirm_dialog(browser, delete.click, accept=False) == question
    assert browser.current_url == live_server.url + evaluation.get_absolute_url()
    assert Evaluation.objects.filter(pk=evaluation.pk).exists()

    assert confirm_dialog(browser, delete.click, accept=True) == question
    wait_until(browser, lambda d: d.current_url == live_server.url + "/", 10, "the dashboard")
    assert f"Evaluation {evaluation.pk} of dataset flowers deleted." in browser.find_element(
        By.CSS_SELECTOR, ".flash").text
    assert evaluation_rows(browser) == [str(kept.pk)]
    assert not Evaluation.objects.filter(pk=evaluation.pk).exists()
    assert console_errors(browser) == []


def test_the_dashboard_rows_cancel_and_delete_with_their_own_questions(browser, live_server,
                                                                       owner):
    from selenium.webdriver.common.by import By

    finished = finished_evaluation(owner)
    running = running_evaluation(owner)
    log_in(browser, live_server)
    shoot(browser, "dashboard-controls")
    browser.find_element(By.ID, "evaluations").screenshot(
        str(SHOTS / "dashboard-evaluations-controls.png"))

    def button(evaluation, action):
        return browser.find_element(By.CSS_SELECTOR, f'button[form="{action}-{evaluation.pk}"]')

    assert not browser.find_elements(By.CSS_SELECTOR, f'button[form="cancel-{finished.pk}"]')
    cancel = button(running, "cancel")
    assert confirm_dialog(browser, cancel.click, accept=True).startswith(
        f"Cancel evaluation {running.pk} of dataset 'flowers'? Its 2 unfinished checkpoints")
    wait_until(browser, lambda d: "cancelled" in d.find_element(By.CSS_SELECTOR, ".flash").text,
               10, "the cancellation's message")
    assert browser.current_url == live_server.url + "/"  # back where it was asked
    running.refresh_from_db()
    assert running.status == Status.FAILED

    question = confirm_dialog(browser, button(finished, "delete").click, accept=True)
    assert question == (f"Delete evaluation {finished.pk} of dataset 'flowers' with its 3 "
                        f"results?")
    wait_until(browser, lambda d: evaluation_rows(d) == [str(running.pk)], 10,
               "the dashboard without the deleted evaluation")
    assert console_errors(browser) == []


def test_the_dataset_delete_dialog_names_the_dataset_and_counts_what_goes(browser, live_server,
                                                                          owner, tmp_path):
    from selenium.webdriver.common.by import By

    dataset = create_target_dataset(owner, "digits", image_folder_zip(
        tmp_path / "digits.zip", {"zero": 3, "one": 3, "two": 3}))
    for _ in range(2):
        Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.DONE)
    log_in(browser, live_server)
    browser.get(live_server.url + dataset.get_absolute_url())
    delete = browser.find_element(By.CSS_SELECTOR, "#dataset-delete-form button")
    question = ("Delete dataset 'digits' with its 9 images and 2 evaluations (their results, "
                "ground truths and transfers)?")

    assert confirm_dialog(browser, delete.click, accept=False) == question
    assert TargetDataset.objects.filter(pk=dataset.pk).exists()
    assert confirm_dialog(browser, delete.click, accept=True) == question
    wait_until(browser, lambda d: d.current_url == live_server.url + "/", 10, "the dashboard")
    assert not TargetDataset.objects.filter(pk=dataset.pk).exists()
    assert console_errors(browser) == []
