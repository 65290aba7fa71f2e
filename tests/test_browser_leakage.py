"""Target leakage in headless Chromium: on the dataset page a student distilled on this
dataset is offered unticked and marked; ticked anyway, the evaluation page warns of it above
the ranking and tags it in the table; the zoo shows its accuracy as a target one.
Screenshots under var/screenshots/pages/."""

import re


from tests.test_browser import PAGE_TEST, wait_until
from tests.test_browser_analysis import console_errors, log_in
from tests.test_browser_pages import shoot

pytestmark = PAGE_TEST


def picker(driver) -> dict[str, dict]:
    """The evaluation form's checkpoints: name -> {"ticked", "mark"} (the mark's text)."""
    return driver.execute_script(
        "var out = {};"
        "document.querySelectorAll('#evaluate-form input[name=checkpoints]')"
        ".forEach(function (box) {"
        "  var label = box.closest('label'), mark = label.querySelector('.tag.leak');"
        "  var copy = label.cloneNode(true);"
        "  copy.querySelectorAll('.tag').forEach(t => t.remove());"
        "  out[copy.textContent.trim()] = {ticked: box.checked,"
        "                                  mark: mark ? mark.textContent : ''};"
        "});"
        "return out;")


def test_a_student_trained_on_the_dataset_is_left_out_and_flagged(browser, live_server, owner,
                                                                  tmp_path, sent_tasks):
    from selenium.webdriver.common.by import By

    from tests.builders import colours_dataset, saved_checkpoint
    from tests.transferability.test_leakage import distilled

    dataset = colours_dataset(owner, tmp_path, "colours")
    teacher = saved_checkpoint("teacher-resnet", "test_resnet", seed=1, source_top1=81.5)
    plain = saved_checkpoint("plain-vit", "test_vit", seed=3)
    student = distilled(owner, dataset, teacher, plain)

    log_in(browser, live_server)
    browser.get(live_server.url + dataset.get_absolute_url())
    boxes = picker(browser)
    assert boxes[student.name] == {"ticked": False, "mark": "trained on this data"}
    assert boxes[teacher.name] == {"ticked": True, "mark": ""}
    assert boxes[plain.name] == {"ticked": True, "mark": ""}
    assert "left out unless you tick them" in browser.find_element(By.ID, "evaluate-form").text
    browser.find_element(By.CSS_SELECTOR, "#evaluate-form").location_once_scrolled_into_view
    shoot(browser, "dataset-leakage")

    # Ticked anyway: evaluated, with a warning above the ranking and a tag in the table.
    browser.find_element(By.CSS_SELECTOR,
                         f"#evaluate-form input[name=checkpoints][value='{student.pk}']").click()
    browser.find_element(By.CSS_SELECTOR, "#evaluate-form button[type=submit]").click()
    wait_until(browser, lambda d: re.search(r"/evaluations/\d+/$", d.current_url), 20,
               "the evaluation page")
    warning = browser.find_element(By.ID, "leakage-warning")
    assert warning.is_displayed()
    assert f"Trained on this data: {student.name} (distilled on this dataset)" in warning.text
    ranking = browser.find_element(By.ID, "ranking")
    assert warning.location["y"] < ranking.location["y"]
    row = browser.find_element(By.CSS_SELECTOR, f"#ranking tr[data-checkpoint='{student.name}']")
    tag = row.find_element(By.CSS_SELECTOR, ".tag.leak")
    assert tag.text == "trained on this data" and tag.is_displayed()
    assert not browser.find_elements(
        By.CSS_SELECTOR, f"#ranking tr[data-checkpoint='{teacher.name}'] .tag.leak")
    shoot(browser, "evaluation-leakage")

    # The zoo: its accuracy on the dataset it was distilled on, tagged as a target one.
    browser.get(live_server.url + "/zoo/")
    row = browser.find_element(By.XPATH, f"//table[@id='checkpoints']//tr[td/a[text()="
                                         f"'{student.name}']]")
    assert "92.1 % on colours" in row.text and "target acc." in row.text
    shoot(browser, "zoo-target-accuracy")
    assert console_errors(browser) == []
