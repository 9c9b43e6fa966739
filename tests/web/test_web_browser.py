"""rca web in a real browser (Debian's chromium and chromium-driver, through selenium).

The lab fixture has moved this process into the lab's client namespace before the server
and the browser start, so both live there: the browser reaches the server on loopback, the
server reaches the lab's hosts. Chromium is started so that it could not reach anything
else even if a page asked (no name resolves, every other request goes to a closed proxy
port), and each test also checks, from the browser's own network log, that no request
went anywhere but the server.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from analyzer.cli import check_options
from analyzer.core.model import Report, report_from_json
from analyzer.lab import LabInfo
from analyzer.operations.web.config import WebConfig
from analyzer.operations.web.server import lab_config, serve_in_thread
from tests.reports.browser import BASE_FLAGS, Browser, browser_session
from tests.web.support import probes

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
#: The report tests' flags, but the server on loopback must be reachable: no other name
#: resolves, and any other request would go to a proxy port where nothing listens.
FLAGS = (
    *(f for f in BASE_FLAGS if not f.startswith(("--host-resolver-rules", "--proxy-bypass"))),
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def wait_for(what: Callable[[], T], *, timeout: float, every: float = 0.05,
              message: str = "") -> T:
    """The first truthy value of ``what()``, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(every)


class WebBrowser(Browser):
    """The report tests' browser, with what these tests do often."""

    def __init__(self, session: Browser, downloads: Path) -> None:
        super().__init__(session.driver)
        self.downloads = downloads
        self.cdp("Browser.setDownloadBehavior",
                 {"behavior": "allow", "downloadPath": str(downloads)})
        self.requests()  # forget the browser's own start page

    def css(self, selector: str) -> WebElement:
        return self.find(selector)

    def state(self) -> tuple[int, str]:
        """(finished probes shown, the run's data-done) of a run page."""
        finished, done = self.script(
            "return [document.querySelectorAll('#checks .card.probe').length,"
            " document.getElementById('run').dataset.done]")
        return int(finished), str(done)

    def download(self, link: str, suffix: str) -> Path:
        """Click a download link; the file once it is complete."""
        before = set(self.downloads.iterdir())
        self.css(link).click()

        def done() -> Path | None:
            new = [p for p in set(self.downloads.iterdir()) - before if p.suffix == suffix]
            return new[0] if new and new[0].stat().st_size else None

        return wait_for(done, timeout=20, message=f"download of {link}")


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebBrowser]:
    """A Chromium session per test, started from this thread: inside the lab's client
    namespace once a lab test has entered it (a test asks for ``lab`` first, a
    session-scoped fixture, so it is set up before this one)."""
    profile = tmp_path_factory.mktemp("profile")
    with browser_session(profile, flags=FLAGS) as session:
        yield WebBrowser(session, tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def lab_web(lab: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """rca web for the lab (its DNS server and CA offered), in the client namespace."""
    config = lab_config(WebConfig(history=tmp_path_factory.mktemp("history")), lab)
    with serve_in_thread(config, build_options=check_options) as base:
        yield base


def fill(browser: WebBrowser, lab: LabInfo, address: str, password: str) -> None:
    browser.css("#f-target").send_keys(address)
    browser.css("#f-password").send_keys(password)
    Select(browser.css("#f-resolver")).select_by_value(lab.resolver)
    Select(browser.css("#f-ca_file")).select_by_visible_text("rca lab CA")


def on_run_page(browser: WebBrowser) -> None:
    """Wait for the run page (the form was accepted); say why not if it was refused."""
    driver = browser.driver

    def why() -> str:
        shown = driver.find_elements(By.CSS_SELECTOR, "#errors, #message")
        return shown[0].text if shown else driver.title

    try:
        wait_for(lambda: "/runs/" in driver.current_url, timeout=10, message="the run page")
    except AssertionError:
        raise AssertionError(f"the form was not accepted: {why()}") from None


def only_the_server(urls: list[str], base: str) -> None:
    assert urls, "the browser's network log is empty"
    # chrome:// pages are the browser's own (its start page), never the network
    strays = [u for u in urls if not u.startswith((base + "/", "chrome://"))]
    assert not strays, f"requests to other hosts: {strays}"


def shape(report: Report) -> list[tuple[str, str, str, list[str]]]:
    return [(r.probe, r.subject, r.status.value, sorted(f.code for f in r.findings()))
            for r in report.results]


@pytest.mark.lab
def test_imap_check_fills_in_live_and_matches_rca_check(
    browser: WebBrowser, lab: LabInfo, lab_web: str, tmp_path: Path
) -> None:
    user = lab.scenario("healthy").users[0]
    driver = browser.driver
    browser.requests()
    # Given the start page, and the IMAP test chosen from it
    driver.get(lab_web + "/")
    driver.find_element(By.LINK_TEXT, "IMAP").click()
    # When the form is filled for the healthy scenario and sent
    fill(browser, lab, user.address, user.password)
    browser.css("#run-button").click()
    on_run_page(browser)
    driver.execute_script("window.rcaSamePage = true")
    # Then finished checks appear while the run still goes on
    seen = wait_for(lambda: (s := browser.state())[0] >= 1 and s, timeout=60,
                    message="a finished check")
    assert seen[1] == "0", "the first finished check appeared only with the verdict"
    # And then the verdict, "what to fix first" and the downloads, on the same page
    wait_for(lambda: browser.state()[1] == "1", timeout=90, message="the verdict")
    assert driver.execute_script("return window.rcaSamePage") is True
    verdict = browser.css("#verdict .word").text
    assert browser.css("#fix").is_displayed()
    html = browser.download("#download-html", ".html")
    raw = browser.download("#download-json", ".json")
    web = report_from_json(json.loads(raw.read_text()))
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert verdict.startswith("Passed") and web.status.value in ("pass", "warn")
    only_the_server(browser.requests(), lab_web)
    # And rca check, run with the command the page shows, reports the same
    argv = shlex.split(browser.css("#command").text)
    out = tmp_path / "cli.json"
    env = {**os.environ, "RCA_PASSWORD": user.password, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "analyzer", *argv[1:], "--quiet", "--json", str(out)],
                   env=env, timeout=120, check=False, capture_output=True)
    cli = report_from_json(json.loads(out.read_text()))
    assert shape(web) == shape(cli)
    assert web.options == cli.options


@pytest.mark.lab
def test_expired_certificate_fails_and_insecure_needs_confirmation(
    browser: WebBrowser, lab: LabInfo, lab_web: str
) -> None:
    user = lab.scenario("expired-cert").users[0]
    driver = browser.driver
    browser.requests()
    driver.get(lab_web + "/test/imap")
    confirm = browser.css("#insecure-confirm")
    # Given "I understand" hidden until "ignore trust" is ticked
    assert not confirm.is_displayed()
    fill(browser, lab, user.address, user.password)
    browser.css("#f-insecure").click()
    assert confirm.is_displayed()
    # When the form is sent without the confirmation
    browser.css("#run-button").click()
    # Then it comes back naming it, with the password field empty
    alert = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#errors"), timeout=10,
                     message="the error summary")[0]
    assert "Ignore trust for TLS: I understand" in alert.text
    assert browser.css("#f-password").get_attribute("value") == ""
    # When the password is given again and the confirmation ticked
    browser.css("#f-password").send_keys(user.password)
    browser.css("#f-insecure_confirm").click()
    browser.css("#run-button").click()
    # Then the run goes on past the certificate and fails on it
    on_run_page(browser)
    wait_for(lambda: browser.state()[1] == "1", timeout=90, message="the verdict")
    assert browser.css("#verdict .word").text == "Failed"
    assert "--insecure" in browser.css("#command").text
    assert "tls.cert.expired" in browser.css("#fix").text
    only_the_server(browser.requests(), lab_web)


def test_hostile_text_stays_text_live_on_a_phone_by_keyboard(
    browser: WebBrowser, tmp_path: Path
) -> None:
    gate = threading.Event()
    driver = browser.driver
    with serve_in_thread(WebConfig(history=tmp_path), build_options=check_options,
                         probes=probes(gate, fail=True)) as base:
        browser.requests()
        driver.set_window_size(390, 844)
        try:
            # Given the IMAP form, reached and filled with the keyboard alone
            driver.get(base + "/test/imap")
            body = browser.css("body")
            body.send_keys(Keys.TAB)
            for _ in range(12):
                if driver.switch_to.active_element.get_attribute("id") == "f-target":
                    break
                driver.switch_to.active_element.send_keys(Keys.TAB)
            target = driver.switch_to.active_element
            assert target.get_attribute("id") == "f-target"
            wide = driver.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth")
            assert not wide, "the form scrolls sideways on a phone-sized screen"
            target.send_keys("alice@example.test", Keys.ENTER)
            # When the run's first check ends while the other waits
            on_run_page(browser)
            wait_for(lambda: browser.state()[0] >= 1, timeout=20, message="the dns check")
            assert browser.state()[1] == "0"
            gate.set()
            wait_for(lambda: browser.state()[1] == "1", timeout=20, message="the verdict")
            # Then the server's HTML is shown as text: no element of it, no script ran
            checks = browser.css("#checks")
            assert not driver.find_elements(By.CSS_SELECTOR, "#injected, #checks img")
            transcript = driver.execute_script(
                "return Array.from(document.querySelectorAll('#checks pre'))"
                ".map(p => p.textContent).join('\\n')")
            assert '<img src=x onerror="alert(1)"><script>alert(2)</script>' in transcript
            assert '<b id="injected">bold</b>' in checks.text
            assert not driver.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth")
            only_the_server(browser.requests(), base)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            gate.set()
            driver.set_window_size(1280, 1000)


def test_without_javascript_the_run_page_reloads_until_the_report(
    browser: WebBrowser, tmp_path: Path
) -> None:
    gate = threading.Event()
    driver = browser.driver
    with serve_in_thread(WebConfig(history=tmp_path), build_options=check_options,
                         probes=probes(gate)) as base:
        # Given a browser that runs no script
        browser.cdp("Emulation.setScriptExecutionDisabled", {"value": True})
        try:
            driver.get(base + "/test/imap")
            browser.css("#f-target").send_keys("alice@example.test")
            browser.css("#run-button").click()
            on_run_page(browser)
            # When the run is still going, and then ends
            assert browser.css("#live-status").text.startswith("Running")
            gate.set()
            # Then the page reloads itself into the verdict and the downloads
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#verdict"), timeout=20,
                     every=0.2, message="the verdict after a reload")
            assert browser.css("#verdict .word").text == "Passed"
            assert browser.css("#download-html").get_attribute("href").endswith("/report.html")
            assert browser.state()[1] == "1"
            only_the_server(browser.requests(), base)
        finally:
            gate.set()
            browser.cdp("Emulation.setScriptExecutionDisabled", {"value": False})
