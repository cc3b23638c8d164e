"""The review desk in a real browser at laptop width (1366x768): no
horizontal scrolling on the list and compare pages, keyboard review with
save-and-next, an edit that `aidsafe export --reviewed` uses, and harmful
text (the rejected side of a pair) blurred until clicked. Headless Debian
chromium via selenium, skipped where either is missing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe.cli import main
from aidsafe.tools._compare_manifest import write_compare_manifest
from aidsafe.view._review import read_reviews, sidecar_path
from aidsafe.view._sample import write_sample_run

from .test_browser import CHROMIUM, DRIVER, webdriver

pytestmark = pytest.mark.browser

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _wait(driver, condition, timeout=20):
    # the pages re-render on every route: an element may go stale between two looks
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


@pytest.fixture
def laptop(tmp_path):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,768", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def no_horizontal_scroll(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def press(driver, key):
    driver.find_element(By.TAG_NAME, "body").send_keys(key)


def test_list_and_compare_fit_a_laptop_screen(laptop, tmp_path, serve):
    folder = tmp_path / "rounds"
    for i, name in enumerate(("zz-baseline", "aidsafe-1round", "aidsafe")):
        write_sample_run(folder / f"{name}.scored.jsonl", 30, scored=True, seed=i)
    write_compare_manifest(folder, [{"label": n} for n in ("zz-baseline", "aidsafe-1round", "aidsafe")])
    base = serve([folder])
    laptop.get(base + "/#/run/0")
    _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#records tr.rec"))
    _wait(laptop, lambda d: d.find_elements(By.ID, "progress"))
    heads = [e.text for e in laptop.find_elements(By.CSS_SELECTOR, "#records th")]
    assert heads[:4] == ["#", "id", "REVIEW", "PROMPT"] or [h.lower() for h in heads[:4]] == ["#", "id", "review", "prompt"]
    assert no_horizontal_scroll(laptop)
    prompt = laptop.find_element(By.CSS_SELECTOR, "#records tr.rec td.prompt")
    assert prompt.size["width"] > 300  # the prompt is readable, not squeezed
    labels = [e.text.split(" ")[0] for e in laptop.find_elements(By.CSS_SELECTOR, "#records tr.rec")[0]
              .find_elements(By.CSS_SELECTOR, ".sc")]
    assert len(set(labels)) == len(labels) == 3  # unique abbreviations
    titles = [e.get_attribute("title") for e in laptop.find_elements(By.CSS_SELECTOR, "#records tr.rec .sc")[:3]]
    assert any(t.startswith("faithfulness_policy_cot:") for t in titles)  # the full name in the tooltip
    # compare: aidsafe compare's order, the first variant the reference, prompts shown
    laptop.get(base + "/#/compare?files=0,1,2")
    _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#compare tr.rec"))
    heads = [e.text for e in laptop.find_elements(By.CSS_SELECTOR, "#compare th")]
    assert "zz-baseline (reference)" in heads[3].replace("\n", " ") or "zz-baseline (reference)" in " ".join(heads)
    assert laptop.find_elements(By.CSS_SELECTOR, "#compare tr.rec td.prompt .cw")
    assert no_horizontal_scroll(laptop)
    summary = _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#summary table"))
    assert "faithfulness_policy_cot" in summary[0].text  # full metric names in the summary
    assert no_horizontal_scroll(laptop)


def test_keyboard_review_of_three_records_with_save_and_next(laptop, tmp_path, serve):
    run = write_sample_run(tmp_path / "out.jsonl", 10)
    base = serve([run])
    laptop.get(base + "/#/run/0")
    _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#records tr.rec"))
    press(laptop, "j")
    press(laptop, Keys.ENTER)
    _wait(laptop, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Record r000000"))
    review = laptop.find_element(By.ID, "review")
    assert review.value_of_css_property("position") == "sticky"
    press(laptop, "a")  # accept, then the next record
    _wait(laptop, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Record r000001"))
    press(laptop, "n")  # a note, then reject
    laptop.switch_to.active_element.send_keys("names no policy")
    laptop.switch_to.active_element.send_keys(Keys.ESCAPE)
    press(laptop, "r")
    _wait(laptop, lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Record r000002"))
    press(laptop, "e")  # needs edit: stays, the editor opens
    _wait(laptop, lambda d: d.find_element(By.ID, "editor").is_displayed())
    press(laptop, "?")
    assert "save" in laptop.find_element(By.ID, "help").text.lower()
    press(laptop, Keys.ESCAPE)
    reviews = read_reviews(sidecar_path(run))
    assert {k: (v["label"], v["note"]) for k, v in reviews.items()} == {
        "r000000": ("accept", ""), "r000001": ("reject", "names no policy"), "r000002": ("needs-edit", "")}
    # the list shows the progress
    laptop.get(base + "/#/run/0")
    progress = _wait(laptop, lambda d: d.find_elements(By.ID, "progress"))
    assert "reviewed 3 / 10" in progress[0].text


def test_an_edit_in_the_page_is_what_export_reviewed_writes(laptop, tmp_path, serve):
    run = write_sample_run(tmp_path / "out.jsonl", 5)
    scored = write_sample_run(tmp_path / "out.scored.jsonl", 5, scored=True)
    before = run.read_bytes()
    base = serve([scored])  # labelled on the scored twin, exported from the run
    laptop.get(base + "/#/run/0/record/r000001")
    _wait(laptop, lambda d: d.find_elements(By.ID, "review"))
    laptop.find_element(By.CSS_SELECTOR, "#review button[data-label=needs-edit]").click()
    response = _wait(laptop, lambda d: d.find_element(By.CSS_SELECTOR, "#editor .edit-response"))
    response.clear()
    response.send_keys("Edited: here is the safe way, step by step.")
    thought = laptop.find_element(By.CSS_SELECTOR, "#editor .edit-thought")
    thought.clear()
    thought.send_keys("An edited first thought.")
    laptop.find_element(By.ID, "save-edit").click()
    _wait(laptop, lambda d: "edited" in d.find_element(By.ID, "review-state").text)
    assert read_reviews(sidecar_path(run))["r000001"]["edit"]["response"] == "Edited: here is the safe way, step by step."
    assert run.read_bytes() == before
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(run), "--format", "sft", "--reviewed",
                                       "--metadata"])
    assert result.exit_code == 0, result.output
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    content = rows["r000001"]["completion"][0]["content"]
    assert "Edited: here is the safe way, step by step." in content and "An edited first thought." in content


def test_the_rejected_side_of_a_pair_is_blurred_until_clicked(laptop, tmp_path, serve):
    dpo = write_sample_run(tmp_path / "dpo.jsonl", 4, dpo=True)
    base = serve([dpo])
    laptop.get(base + "/#/run/0/record/r000003")
    rejected = _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#side-rejected .cw"))
    assert all("blur" in e.value_of_css_property("filter") for e in rejected)
    chosen = laptop.find_element(By.CSS_SELECTOR, "#side-chosen .text")
    assert "blur" not in chosen.value_of_css_property("filter")
    initial = laptop.find_element(By.ID, "initial-response").find_element(By.XPATH, "..")
    assert "blur" in initial.value_of_css_property("filter")
    rejected[-1].click()
    assert "blur" not in rejected[-1].value_of_css_property("filter")
    laptop.execute_script("window.scrollTo(0, 0)")
    laptop.find_element(By.ID, "reveal-all").click()  # "show all" on this page
    assert not [e for e in laptop.find_elements(By.CSS_SELECTOR, ".cw") if "blur" in e.value_of_css_property("filter")]
    # --no-blur: nothing starts blurred
    from aidsafe.view._server import make_server

    server = make_server([dpo], blur=False)
    server.serve_in_thread()
    try:
        laptop.get(server.url + "#/run/0/record/r000003")
        _wait(laptop, lambda d: d.find_elements(By.CSS_SELECTOR, "#side-rejected .cw"))
        _wait(laptop, lambda d: not d.find_element(By.ID, "cw").is_selected())
        assert "blur" not in laptop.find_element(By.CSS_SELECTOR, "#side-rejected .cw").value_of_css_property("filter")
    finally:
        server.shutdown()
        server.server_close()
