#!/usr/bin/env python3
"""The page at `/` in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium (pinned in requirements.txt) against the live daemon.
It uploads a fixture photo, asks for a ranking, and checks that the ranked prompts shown
equal what the API answers for the same request; then saves a screenshot
(docs/page.png with --screenshot). Prints "N passed, M failed".

    tests/browser/run.sh BINARY [--screenshot docs/page.png]
"""
import json
import os
import pathlib
import sys
import tempfile
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = sys.argv[1]
SHOT = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--screenshot" else None
ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests/fixtures/images/coffee.png"
PROMPTS = ["cat", "cup of coffee", "rocket", "astronaut"]
# The daemon requires an API key (tests/lib/live-daemon.sh): the page must ask for it.
KEY = os.environ["HAILO_CLIP_API_KEY"]


def api_ranking():
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="coffee.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + PHOTO.read_bytes() + b"\r\n"]
    for p in PROMPTS:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="prompts"\r\n\r\n{p}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{BASE}/v1/classify", body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                              "Authorization": "Bearer " + KEY})
    return [(c["text"], round(c["score"] * 100, 1)) for c in json.load(urllib.request.urlopen(req))["classifications"]]


def main():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900", f"--user-data-dir={tempfile.mkdtemp()}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    results = []
    try:
        driver.get(BASE + "/")
        wait = WebDriverWait(driver, 30)
        status = wait.until(lambda d: d.find_element(By.ID, "status").text if "·" in d.find_element(By.ID, "status").text else None)
        results.append(("health shown", "model clip-tiny-random" in status and "self-test" in status, status))
        driver.find_element(By.ID, "file").send_keys(str(PHOTO))
        prompts = driver.find_element(By.ID, "prompts")
        prompts.clear()
        prompts.send_keys("\n".join(PROMPTS))
        # Without a key the server says 401 and the page asks for one.
        wait.until(EC.element_to_be_clickable((By.ID, "go"))).click()
        asked = wait.until(lambda d: d.find_element(By.ID, "meta").text if "401" in d.find_element(By.ID, "meta").text else None)
        results.append(("asks for the API key on 401", "enter it in the API key field" in asked, asked))
        driver.find_element(By.ID, "key").send_keys(KEY)
        wait.until(EC.element_to_be_clickable((By.ID, "go"))).click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == len(PROMPTS))
        shown = [(li.get_attribute("data-text"), round(float(li.get_attribute("data-score")) * 100, 1))
                 for li in driver.find_elements(By.CSS_SELECTOR, "#results li")]
        texts = [li.find_element(By.CLASS_NAME, "name").text for li in driver.find_elements(By.CSS_SELECTOR, "#results li")]
        want = api_ranking()
        results.append(("ranking equals the API's", shown == want, f"page {shown} api {want}"))
        results.append(("ranks and names shown", texts == [f"{i + 1}. {t}" for i, (t, _) in enumerate(want)], texts))
        meta = driver.find_element(By.ID, "meta").text
        results.append(("latency shown", "ms" in meta and "clip-tiny-random" in meta, meta))
        # Keyboard: the drop zone is focusable and announced as a button.
        zone = driver.find_element(By.ID, "drop")
        results.append(("drop zone is keyboard-reachable", zone.get_attribute("tabindex") == "0" and zone.get_attribute("role") == "button", ""))
        if SHOT:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(SHOT)
    finally:
        driver.quit()
    failed = 0
    for name, ok, info in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(info)}")
        failed += not ok
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
