"""``aidsafe view`` in a real browser: headless Debian chromium driven by
selenium. Skipped cleanly when chromium, chromedriver or selenium is missing
(``.ci/run`` installs them). A failing test leaves a screenshot and says where."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aidsafe.cli import main

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[view-test]')")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture
def browser(request, tmp_path):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1600", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = Path(os.environ.get("AIDSAFE_VIEW_SCREENSHOTS", tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{request.node.name}.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot of the failure: {shot}")
    driver.quit()


def _wait(driver, condition, timeout=20):
    return WebDriverWait(driver, timeout).until(condition)


def test_open_filter_read_a_deliberation_diff_review_and_export(browser, runs, serve, tmp_path):
    base = serve([runs["run"], runs["scored"]])
    browser.get(base + "/#/run/1")
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#records tr.rec")))
    # filter: the facets appear once the file is indexed
    status = _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "select[data-filter=status] option[value=ok]")))
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=status]")).select_by_value("ok")
    _wait(browser, lambda d: "status=ok" in d.current_url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#records tr.rec")
          and all(e.text == "ok" for e in d.find_elements(By.CSS_SELECTOR, "#records tr.rec .st-ok")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tr.rec")
    assert len(rows) == 32 and not browser.find_elements(By.CSS_SELECTOR, "#records .st-failed")
    assert status is not None
    # content warning: prompts are blurred until clicked
    prompt = rows[0].find_element(By.CSS_SELECTOR, ".cw")
    assert "blur" in prompt.value_of_css_property("filter")
    # open a record
    rid = rows[0].get_attribute("data-id")
    rows[0].click()
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".card.turn.revise .diff")))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Record {rid}")
    inserted = browser.find_elements(By.CSS_SELECTOR, ".card.turn.revise .diff .ins")
    removed = browser.find_elements(By.CSS_SELECTOR, ".card.turn.revise .diff .del")
    assert any("harm-avoidance policy" in e.text for e in inserted) and removed
    assert "removed by refiner" in browser.find_element(By.ID, "removed").text
    assert "relevance" in browser.find_element(By.ID, "judge").text
    # review: reject with a note
    browser.find_element(By.CSS_SELECTOR, "#review textarea").send_keys("names no policy")
    browser.find_element(By.CSS_SELECTOR, "#review button[data-label=reject]").click()
    _wait(browser, lambda d: "reject" in d.find_element(By.ID, "review-state").text)
    # and it is left out of the export
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(runs["scored"]), "--format", "sft", "--reviewed",
                                       "--metadata"])
    assert result.exit_code == 0, result.output
    assert "1 rejected in review" in result.output
    assert rid not in [json.loads(line)["id"] for line in out.read_text().splitlines()]


def test_compare_two_runs_by_id(browser, runs, serve):
    base = serve([runs["run"], runs["scored"]])
    browser.get(base + "/#/compare?files=0,1")
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#compare tr.rec")))
    assert "40 id(s), 40 in every run" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_elements(By.CSS_SELECTOR, "#compare tr.rec")[0].click()
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".gridn .card")))
    assert len(browser.find_elements(By.CSS_SELECTOR, ".gridn .card")) == 2
