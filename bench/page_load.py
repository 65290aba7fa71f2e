"""Time pages as a browser sees them: headless Chromium, navigation timing, warm loads.

Usage (a server running, e.g. `make demo`):

    .venv/bin/python bench/page_load.py --url http://127.0.0.1:8000 \
        --password-file var/admin_password / /evaluations/1/ /zoo/1/

Logs in as ``--user`` (admin), loads each path ``--repeat`` times (the first is cold) and
prints the last load's server response, DOMContentLoaded and load event (ms from navigation
start), the cold load, and any console error. ``--screenshots DIR`` keeps a full-page shot
of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TIMING = ("var n = performance.getEntriesByType('navigation')[0];"
          "return [n.responseEnd - n.startTime, n.domContentLoadedEventEnd - n.startTime,"
          " n.loadEventEnd - n.startTime];")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", default="var/admin_password")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--screenshots", type=Path)
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(args.url + "/accounts/login/")
        driver.find_element(By.NAME, "username").send_keys(args.user)
        driver.find_element(By.NAME, "password").send_keys(
            Path(args.password_file).read_text().strip())
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        time.sleep(1)
        print(f"{'page':40s} {'response':>9s} {'DOM ready':>9s} {'load':>7s} {'cold load':>9s}")
        for i, path in enumerate(args.paths):
            runs = []
            for _ in range(args.repeat):
                driver.get(args.url + path)
                time.sleep(1.0)  # let the load event pass
                runs.append(driver.execute_script(TIMING))
            errors = [e["message"][:100] for e in driver.get_log("browser")
                      if e["level"] == "SEVERE"]
            warm = runs[-1]
            print(f"{path:40s} {warm[0]:7.0f} ms {warm[1]:7.0f} ms {warm[2]:5.0f} ms "
                  f"{runs[0][2]:7.0f} ms" + (f"  console errors: {errors}" if errors else ""))
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                height = driver.execute_script("return document.body.scrollHeight")
                driver.set_window_size(1400, min(height + 100, 7000))
                driver.save_screenshot(str(args.screenshots / f"{i:02d}.png"))
                driver.set_window_size(1400, 1000)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
