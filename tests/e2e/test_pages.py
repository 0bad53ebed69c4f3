"""The pages in a real browser: the system's headless Chromium, driven by Selenium, signed in as
the demo's people, on a real worker and the real broker. Every page is checked with axe-core, and
each is saved as a screenshot under .cache/test-artefacts/pages/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from connectors.fhir_input import read_text
from connectors.kafka_io import Publisher, read_topic
from connectors.publish import publish_records
from schemas.topics import AUDIT
from services.domain.audit import STAFF_USER_SYSTEM
from services.domain.person_view import spoken_time
from tests.e2e.conftest import CRN, NHS, Worker, appointment, free_port, patient

ROOT = Path(__file__).parents[2]
ARTEFACTS = ROOT / ".cache" / "test-artefacts" / "pages"
AXE = ROOT / "connectors" / "pages" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
PERSON = (CRN, "X123456")
NHS_NUMBER = (NHS, "9434765919")


class Pages:
    """One `concord pages` subprocess asking the given worker."""

    def __init__(self, tmp: Path, worker: Worker) -> None:
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.log = tmp / "pages.log"
        self.env = {
            **os.environ,
            "CONCORD_PAGES_PORT": str(self.port),
            "CONCORD_WORKER_URL": worker.url,
            "CONCORD_LOG_FORMAT": "json",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ops.cli", "pages"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the pages did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def pages(worker: Worker, tmp_path: Path) -> Iterator[Pages]:
    running = Pages(tmp_path, worker)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Debian's headless Chromium and its driver (`.ci/run` installs both)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium, "install Debian's chromium (see .ci/run)"
    assert driver, "install Debian's chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1400")
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(30)
    yield session
    session.quit()


def wait_for(
    browser: WebDriver, condition: Callable[[WebDriver], Any], timeout_s: float = 30.0
) -> Any:
    # A page replaced while the condition reads it is read again on the next poll.
    return WebDriverWait(
        browser,
        timeout_s,
        poll_frequency=0.2,
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    ).until(condition)


def check_page(browser: WebDriver, name: str) -> None:
    """Save the page as a screenshot, and fail on any WCAG 2.2 A or AA violation axe-core finds."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTEFACTS / f"{name}.png"))
    browser.execute_script(AXE.read_text(encoding="utf-8"))
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
        ".then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' ' +"
        " v.nodes.map(n => n.target.join(' ')).join(', '))));",
        WCAG_22_AA,
    )
    assert result == [], f"{name}: accessibility violations: {result}"


def sign_in(browser: WebDriver, pages: Pages, user: str) -> None:
    browser.get(pages.url + "/sign-in")
    check_page(browser, "sign-in")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(f"demo-{user}")
    browser.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button").click()
    wait_for(browser, lambda b: "Sign out" in b.page_source)


def find(browser: WebDriver, reference: str) -> None:
    browser.get(
        browser.current_url.split("/", 3)[0] + "//" + browser.current_url.split("/")[2] + "/people"
    )
    field = browser.find_element(By.ID, "reference")
    field.send_keys(reference)
    field.submit()
    wait_for(browser, lambda b: b.find_elements(By.TAG_NAME, "h1"))


def main_text(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "main-content").text)


def test_officer_sees_a_clash_then_an_explained_absence_arrive_live(
    pages: Pages,
    worker: Worker,
    browser: WebDriver,
    publish: Callable[[str, dict[str, Any]], None],
) -> None:
    """The person page takes in each new alert without a reload, shows another agency's
    appointment as the policy lets an officer see it, and gives the missed appointment's verdict
    in a sentence."""
    publish("probation-london", patient(PERSON, NHS_NUMBER))
    publish(
        "probation-london",
        appointment("sup-1", "booked", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", PERSON),
    )
    sign_in(browser, pages, "officer.adeyemi")
    check_page(browser, "find-person")
    wait_for(browser, lambda b: _person_page_ready(b, pages))
    assert "No open clashes" in main_text(browser)
    browser.execute_script("window.notReloaded = true")

    gp = appointment(
        "gp-77",
        "booked",
        "2026-12-03T10:15:00Z",
        "2026-12-03T10:45:00Z",
        NHS_NUMBER,
        specialty="Psychiatry",
    )
    publish("gp-Y01234", gp)
    wait_for(browser, lambda b: "Your appointment" in main_text(b))
    assert browser.execute_script("return window.notReloaded") is True
    text = main_text(browser)
    assert (
        "Your appointment 10:00–11:00 on 3 December clashes with health service appointment" in text
    )
    # What the policy keeps from an officer by default: which service, its specialty
    assert "High Street Surgery" not in browser.page_source
    assert "Psychiatry" not in browser.page_source
    check_page(browser, "person-clash")

    publish("gp-Y01234", {**gp, "status": "fulfilled", "meta": {"versionId": "2"}})
    publish(
        "probation-london",
        {
            **appointment(
                "sup-1", "noshow", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", PERSON
            ),
            "meta": {"versionId": "2"},
        },
    )
    wait_for(browser, lambda b: "Explained" in main_text(b))
    assert browser.execute_script("return window.notReloaded") is True
    assert (
        "Explained: the person attended a health service appointment 10:15–10:45 on 3 December"
        in main_text(browser)
    )
    check_page(browser, "person-explained")
    assert page_rows(browser) == policy_rows(worker)

    browser.find_element(By.PARTIAL_LINK_TEXT, "Evidence note").click()
    wait_for(browser, lambda b: "Evidence note for the breach record" in b.page_source)
    assert "Tola Adeyemi" in main_text(browser)
    check_page(browser, "evidence-note")

    # Every view was a disclosure, audited under the officer's name as well as the partner's.
    audited = [
        json.loads(value)["resource"] for _, value in read_topic(AUDIT.name, idle_timeout_s=1.0)
    ]
    views = [a for a in audited if a["entity"][1]["what"]["reference"].startswith("PersonView/")]
    # one asked by probation's own system (policy_rows, above), the rest through the pages
    assert sum(1 for event in views if len(event["agent"]) == 1) == 1
    by_pages = [event for event in views if len(event["agent"]) == 2]
    assert by_pages
    for event in by_pages:
        partner, individual = event["agent"]
        assert partner["who"]["identifier"]["value"] == "probation-london"
        assert individual["who"]["identifier"] == {
            "system": STAFF_USER_SYSTEM,
            "value": "officer.adeyemi",
        }


def page_rows(browser: WebDriver) -> list[list[str]]:
    """The person page's timeline: when, which service, status, as the officer reads them."""
    rows = browser.find_elements(By.CSS_SELECTOR, "#timeline + table tbody tr")
    cells = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    return [row for row in cells if row]  # not the "Recent" and "Upcoming" headings


def policy_rows(worker: Worker) -> list[list[str]]:
    """The same timeline from what the policy lets probation's own system see (HTTP Basic)."""
    status, view = worker.get(f"/person-view?identifier={CRN}%7CX123456", "probation-london")
    assert status == 200, view
    status_labels = {"booked": "Booked", "fulfilled": "Attended", "noshow": "Did not attend"}
    return [
        [
            spoken_time(a["start"], a["end"]),
            "Your service" if a["own"] else a.get("organisation") or a["organisation_label"],
            status_labels[a["status"]],
        ]
        for a in view["appointments"]
    ]


def _person_page_ready(browser: WebDriver, pages: Pages) -> bool:
    """The person page for X123456, once the worker has the person (it may need a moment)."""
    browser.get(pages.url + "/people/X123456")
    return "Open clashes" in browser.page_source


def test_a_person_without_a_relationship_is_not_found_like_an_unknown_one(
    pages: Pages,
    worker: Worker,
    browser: WebDriver,
    publish: Callable[[str, dict[str, Any]], None],
) -> None:
    """A CRN the hub holds, but only from a GP, reads exactly as a CRN it has never seen."""
    publish(
        "gp-Y01234",
        appointment(
            "gp-9", "booked", "2026-12-05T09:00:00Z", "2026-12-05T09:30:00Z", (CRN, "X777777")
        ),
    )
    # the hub holds the person (a calendar) before the officer asks
    deadline = time.monotonic() + 30
    while worker.get("/stats")[1].get("calendars", 0) < 1:
        assert time.monotonic() < deadline, "the worker never held the GP's person"
        time.sleep(0.3)
    sign_in(browser, pages, "officer.adeyemi")
    find(browser, "x777777")
    held = main_text(browser).replace("X777777", "<CRN>")
    check_page(browser, "not-found")
    find(browser, "X000001")
    unknown = main_text(browser).replace("X000001", "<CRN>")
    assert held == unknown
    assert "No person found" in held


def test_a_form_without_its_token_is_refused(pages: Pages, browser: WebDriver) -> None:
    """Signing out with the form's token removed is refused, and the user stays signed in."""
    sign_in(browser, pages, "officer.adeyemi")
    browser.execute_script(
        "document.querySelector('form[action=\"/sign-out\"] input[name=csrf_token]').remove()"
    )
    browser.find_element(By.CSS_SELECTOR, "form[action='/sign-out'] button").click()
    wait_for(browser, lambda b: "Your form was not accepted" in b.page_source)
    check_page(browser, "form-refused")
    browser.get(pages.url + "/people")
    assert "Sign out" in browser.page_source


def test_the_clinician_accepts_a_referral_and_the_officers_page_shows_it(
    pages: Pages, browser: WebDriver, publish: Callable[[str, dict[str, Any]], None]
) -> None:
    """Accept and book from the referral's page go out as the Task and Appointment the trust's
    own system would send; the officer's person page then shows where the referral stands."""
    publish("probation-london", patient(PERSON, NHS_NUMBER))
    publish("probation-london", referral("ref-pages"))
    sign_in(browser, pages, "clinician.okafor")
    wait_for(browser, lambda b: _inbox_lists(b, pages, "ref-pages"))
    check_page(browser, "referral-inbox")
    browser.find_element(By.PARTIAL_LINK_TEXT, "ref-pages").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "accept"))
    referral_url = browser.current_url
    # The page shows the referral as it was delivered to the trust (here with no reason or notes).
    wait_for(browser, lambda b: _content_reads(b, referral_url, "No reason or notes were shared"))
    check_page(browser, "referral")

    browser.find_element(By.CSS_SELECTOR, "form[action$='/reject'] button").click()
    wait_for(browser, lambda b: "Enter why the referral cannot be accepted" in b.page_source)
    check_page(browser, "referral-reject-without-reason")

    browser.find_element(By.ID, "accept").click()
    wait_for(browser, lambda b: "Referral accepted" in b.page_source)
    wait_for(browser, lambda b: _status_reads(b, referral_url, "Accepted"))
    for field, value in (
        ("person", "943 476 5919"),
        ("date", "2026-12-10"),
        ("start", "10:00"),
        ("end", "11:00"),
    ):
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "form[action$='/book'] button").click()
    wait_for(browser, lambda b: "First appointment sent to the hub" in b.page_source)

    browser.find_element(By.CSS_SELECTOR, "form[action='/sign-out'] button").click()
    sign_in(browser, pages, "officer.adeyemi")
    wait_for(browser, lambda b: _officer_sees(b, pages, "Accepted, first appointment booked"))
    referrals = browser.find_element(By.CSS_SELECTOR, "#person-view .govuk-summary-list").text
    assert "To South London and Maudsley NHS FT" in referrals
    check_page(browser, "person-referral-accepted")


def referral(referral_id: str) -> dict[str, Any]:
    """Probation's referral of the person to the trust's mental health assessment service."""
    return {
        "resourceType": "ServiceRequest",
        "id": referral_id,
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "category": [
            {
                "coding": [
                    {"system": "urn:concord:referral-category", "code": "mental-health-assessment"}
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"identifier": {"system": CRN, "value": "X123456"}},
        "authoredOn": "2026-12-01T09:00:00Z",
    }


def _content_reads(browser: WebDriver, url: str, text: str) -> bool:
    browser.get(url)
    return text in browser.find_element(By.ID, "referral-content").text


def _inbox_lists(browser: WebDriver, pages: Pages, referral_id: str) -> bool:
    browser.get(pages.url + "/referrals")
    return referral_id in main_text(browser)


def _status_reads(browser: WebDriver, url: str, status: str) -> bool:
    browser.get(url)
    return str(browser.find_element(By.ID, "referral-status").text).startswith(status)


def _officer_sees(browser: WebDriver, pages: Pages, text: str) -> bool:
    browser.get(pages.url + "/people/X123456")
    return text in main_text(browser)


def test_the_operator_corrects_a_dead_letter_and_replays_it(
    pages: Pages, browser: WebDriver, publish: Callable[[str, dict[str, Any]], None]
) -> None:
    """A refused appointment (a mistyped NHS number) is found by partner and reason, corrected and
    replayed through the GP's edge checks; the replay is audited under the operator's name."""
    wrong = appointment(
        "gp-bad", "booked", "2026-12-06T09:00:00Z", "2026-12-06T09:30:00Z", (NHS, "9434765918")
    )
    publisher = Publisher()
    try:
        refused = publish_records(
            read_text(json.dumps(wrong), "gp-export.json"), "gp-Y01234", publisher
        )
    finally:
        publisher.close()
    assert refused.rejected == 1
    sign_in(browser, pages, "operator.nowak")
    wait_for(browser, lambda b: _dead_letters_list(b, pages, "gp-Y01234"))
    check_page(browser, "dead-letters")
    browser.find_element(By.ID, "reason").send_keys("NHS number")
    browser.find_element(By.CSS_SELECTOR, "form[action='/dead-letters'] button").click()
    wait_for(browser, lambda b: "1 dead letter," in main_text(b))
    browser.find_element(By.CSS_SELECTOR, "table a").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "corrected"))
    assert "9434765918" in browser.find_element(By.CSS_SELECTOR, "pre").text
    check_page(browser, "dead-letter")

    corrected = browser.find_element(By.ID, "corrected")
    browser.execute_script(
        "arguments[0].value = arguments[0].value.replace('9434765918', '9434765919')", corrected
    )
    browser.find_element(By.CSS_SELECTOR, "form[action$='/replay'] button").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "replay-outcome"))
    assert browser.find_element(By.ID, "replay-outcome").text.startswith(
        "1 record(s) accepted, 0 rejected again"
    )
    check_page(browser, "dead-letter-replayed")
    replays = [
        json.loads(value)["resource"]
        for _, value in read_topic(AUDIT.name, idle_timeout_s=1.0)
        if json.loads(value)["event_type"] == "audit.replay.recorded"
    ]
    assert [r["agent"][0]["who"]["identifier"]["value"] for r in replays] == ["operator.nowak"]
    assert replays[0]["agent"][1]["who"]["identifier"]["value"] == "gp-Y01234"

    browser.get(pages.url + "/identity-conflicts")
    check_page(browser, "identity-conflicts")
    # A clash tells probation; with no delivery running, the alert waits for delivery.
    publish("probation-london", patient(PERSON, NHS_NUMBER))
    publish(
        "probation-london",
        appointment("sup-9", "booked", "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z", PERSON),
    )
    publish(
        "gp-Y01234",
        appointment("gp-9", "booked", "2026-12-07T10:00:00Z", "2026-12-07T10:30:00Z", NHS_NUMBER),
    )
    wait_for(browser, lambda b: _waiting_for(b, pages, "probation-london") >= 1)
    check_page(browser, "partners")


def _waiting_for(browser: WebDriver, pages: Pages, partner: str) -> int:
    browser.get(pages.url + "/partners")
    return int(browser.find_element(By.CSS_SELECTOR, f"[data-waiting='{partner}']").text)


def _dead_letters_list(browser: WebDriver, pages: Pages, partner: str) -> bool:
    browser.get(pages.url + f"/dead-letters?partner={partner}")
    return "dead letter" in main_text(browser) and partner in main_text(browser)
