"""The HTML report in a real browser: headless Chromium from Debian, driven by chromedriver.

Skipped (with the reason) where chromium, chromium-driver or poppler-utils is missing;
failed instead when CI=true. Screenshots go to each test's tmp dir (light, dark, 200%).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.core.model import Report
from reports.html import render
from tests.reports.browser import Browser, browser_session, chromium_cli, require
from tests.reports.sample import DKIM_KEY


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require("chromium", "chromedriver")
    profile = tmp_path_factory.mktemp("chromium") / "profile"
    profile.mkdir()
    with browser_session(profile) as session:
        yield session


@pytest.fixture(scope="module")
def sample_file(sample: Report, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "sample report.html"
    path.write_text(render(sample), encoding="utf-8")
    return path


def open_page(browser: Browser, path: Path, *, scheme: str = "light",
              width: int = 1280) -> None:
    """Load ``path`` fresh, with the logs drained first so they only hold this load."""
    browser.get("about:blank")
    browser.viewport(width, 900)
    browser.color_scheme(scheme)
    browser.log("browser")
    browser.log("performance")
    browser.get(path.as_uri())


def test_report_loads_with_no_console_message_and_no_request(
    browser: Browser, sample_file: Path, tmp_path: Path
) -> None:
    # When the report is opened
    open_page(browser, sample_file)
    browser.screenshot(tmp_path / "light.png")
    # Then the browser asked for the file itself and nothing else
    assert browser.requests() == [sample_file.as_uri()]
    # And logged nothing: no CSP violation, no error, no warning
    assert browser.log("browser") == []
    # And the page runs no script of its own
    assert browser.script("return document.scripts.length") == 0


def test_the_request_check_would_see_a_request(browser: Browser, tmp_path: Path) -> None:
    # Given a page without our CSP that asks for an image (the check's own control)
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://rca-test.invalid/x.png">')
    # When it is opened the same way
    open_page(browser, page)
    # Then the attempt shows up (and goes nowhere: the name resolves to nothing)
    assert "http://rca-test.invalid/x.png" in browser.requests()


def test_verdict_and_every_probe_section_are_visible(
    browser: Browser, sample_file: Path, sample: Report
) -> None:
    # When the report is opened
    open_page(browser, sample_file)
    # Then the verdict and every probe's section are on the page, rendered
    verdict = browser.find("#verdict .word")
    assert browser.displayed(verdict)
    assert browser.text(verdict) == "Failed"
    sections = browser.find_all("section.probe")
    assert len(sections) == len(sample.results)
    for section in sections:
        assert browser.displayed(section)
        assert browser.rect(section)["height"] > 20
    headings = [browser.text(browser.find(f"#{browser.prop(s, 'id')} h3")) for s in sections]
    assert any("mx1.contoso.test:25" in h for h in headings)


def test_a_closed_step_opens_on_click(browser: Browser, sample_file: Path) -> None:
    # Given a passing step, closed, whose finding is hidden
    open_page(browser, sample_file)
    step = next(s for s in browser.find_all("details.step.s-pass")
                if browser.prop(s, "open") is False)
    inner = browser.find_all("details.step.s-pass:not([open]) > .finding")[0]
    assert not browser.displayed(inner)
    # When its summary is clicked
    browser.click(browser.find("details.step.s-pass:not([open]) > summary"))
    # Then it is open and its finding shows
    assert browser.prop(step, "open") is True
    assert browser.displayed(inner)


def test_dark_mode_follows_the_system_preference(
    browser: Browser, sample_file: Path, tmp_path: Path
) -> None:
    # Given the same report under a light and a dark system preference
    background = "return getComputedStyle(document.body).backgroundColor"
    open_page(browser, sample_file, scheme="light")
    light = browser.script(background)
    open_page(browser, sample_file, scheme="dark")
    dark = browser.script(background)
    browser.screenshot(tmp_path / "dark.png")
    # Then the page follows it, with no message logged
    assert light == "rgb(244, 246, 248)"
    assert dark == "rgb(13, 17, 23)"
    assert browser.log("browser") == []


def test_readable_at_200_percent_zoom_without_sideways_scrolling(
    browser: Browser, sample_file: Path, tmp_path: Path
) -> None:
    # Given a 1280 px wide window at 200% zoom: a 640 CSS px layout
    open_page(browser, sample_file, width=640)
    browser.viewport(640, 900, scale=2)
    browser.screenshot(tmp_path / "zoom200.png", full_page=False)
    # Then the page reflows: nothing needs horizontal scrolling
    widths = browser.script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1]
    # And the verdict and the first finding are still on screen, text not shrunk
    assert browser.displayed(browser.find("#verdict .word"))
    size = browser.script("return getComputedStyle(document.body).fontSize")
    assert size == "15px"


def test_hostile_report_runs_nothing_and_requests_nothing(
    browser: Browser, hostile: Report, tmp_path: Path
) -> None:
    # Given the report full of injection attempts
    path = tmp_path / "hostile.html"
    path.write_text(render(hostile), encoding="utf-8")
    # When it is opened
    open_page(browser, path)
    browser.screenshot(tmp_path / "hostile.png")
    # Then no script ran, nothing was requested, nothing was logged, no element was injected
    assert browser.script("return document.scripts.length") == 0
    assert browser.requests() == [path.as_uri()]
    assert browser.log("browser") == []
    assert browser.script("return document.querySelectorAll('img,iframe,object,embed').length") \
        == 0


def test_print_to_pdf_shows_everything_including_closed_steps(
    sample_file: Path, tmp_path: Path
) -> None:
    # Given chromium and pdftotext
    tools = require("chromium", "pdftotext")
    pdf = tmp_path / "report.pdf"
    # When the report is printed to PDF the way a user would
    proc = chromium_cli("--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                        sample_file.as_uri())
    assert pdf.exists() and pdf.stat().st_size > 10_000, proc.stderr[-2000:]
    text = subprocess.run([tools["pdftotext"], "-layout", str(pdf), "-"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    # Then it has the verdict, the fixes and every section
    for expected in ("Failed", "alice@contoso.test", "What to fix first", "Timeline",
                     "Install a renewed certificate", "mx1.contoso.test:25",
                     "imap.contoso.test:993", "CN=mx1.contoso.test"):
        assert expected in flat, expected
    # And what is folded on screen is printed: a closed passing step, a closed transcript
    assert "mx1.contoso.test A 192.0.2.25" in flat
    assert "EHLO rca.invalid" in flat


@pytest.mark.parametrize(("paper", "width_cm", "height_cm"),
                         [("A4", 21.0, 29.7), ("Letter", 21.59, 27.94)])
def test_prints_within_the_page_on_a4_and_letter(
    browser: Browser, sample_file: Path, tmp_path: Path, paper: str, width_cm: float,
    height_cm: float,
) -> None:
    # Given the report printed on this paper
    tools = require("pdftotext")
    open_page(browser, sample_file)
    pdf = tmp_path / f"report-{paper}.pdf"
    pdf.write_bytes(browser.print_pdf(width_cm=width_cm, height_cm=height_cm))
    # When the position of every word is read back
    boxes = subprocess.run([tools["pdftotext"], "-bbox", str(pdf), "-"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    pages = re.findall(r'<page width="([\d.]+)" height="([\d.]+)">', boxes)
    words = re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"', boxes)
    # Then the pages have that size and no word runs off a page's edge
    width_pt = float(pages[0][0])
    assert width_pt == pytest.approx(width_cm / 2.54 * 72, abs=2)
    assert words
    assert all(0 <= float(x0) and float(x1) <= width_pt for x0, x1 in words)
    # And a long unbroken record (clipped, not moved, if it overflowed) is there whole
    text = subprocess.run([tools["pdftotext"], str(pdf), "-"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert DKIM_KEY in re.sub(r"\s+", "", text)
