"""Server-controlled text in the HTML report is data, never markup, script or a link target.

The hostile report (sample.py) puts ``<script>``, ``"><img onerror=…>``, ``javascript:``
URLs, control and bidi characters into finding titles, details, remediations, codes,
evidence keys and values, certificate fields, transcripts, step titles, subjects,
facts and references.
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from analyzer.core.model import Report
from reports.html import render
from tests.reports.htmltools import Page, parse
from tests.reports.sample import HOSTILE_URLS, XSS


@pytest.fixture(scope="module")
def html(hostile: Report) -> str:
    return render(hostile)


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    return parse(html)


def _normalised(url: str) -> str:
    # What a browser would make of an attribute value: no controls or spaces, any case.
    return re.sub(r"[\x00-\x20]", "", unicodedata.normalize("NFKC", url)).lower()


def test_no_script_element_survives(page: Page) -> None:
    # Given <script> in every server-controlled field; Then no script element is in the page
    assert not page.root.find_all("script")


def test_no_other_active_element_survives(page: Page) -> None:
    # Given <img>, <svg onload>, <iframe>, <style> in server text
    # Then none of them is an element of the page
    tags = {n.tag for n in page.root.iter()}
    assert not tags & {"img", "iframe", "object", "embed", "link", "base", "form", "textarea",
                       "foreignobject", "math"}
    assert len(page.root.find_all("style")) == 1
    # Inline SVG holds only our icons (symbols and their uses) and timeline bars
    svg_parts = {n.tag for svg in page.root.find_all("svg") for n in svg.iter()}
    assert svg_parts <= {"svg", "defs", "symbol", "use", "circle", "path", "rect"}


def test_no_event_handler_attribute_survives(page: Page) -> None:
    # Given onerror=/onload= attempts that try to break out of attribute values
    # Then no element has any on* attribute
    assert not [a for a in page.attrs if a[1].lower().startswith("on")]


def test_no_javascript_or_other_script_url_survives(page: Page) -> None:
    # Given every URL-bearing attribute in the page
    urls = [v for _, name, v in page.attrs if name in ("href", "src", "action", "xlink:href")]
    # Then none has a scheme that could run or embed code
    for url in urls:
        assert not _normalised(url).startswith(("javascript:", "vbscript:", "data:")), url


def test_only_the_http_reference_becomes_a_link_and_stays_whole(page: Page) -> None:
    # Given references of every scheme, one https URL carrying a quote to break out with
    links = [a for a in page.root.find_all("a") if not a.attrs["href"].startswith("#")]
    # Then only that one is a link, its quote kept inside the attribute value
    assert [a.attrs["href"] for a in links] == [HOSTILE_URLS[4]]
    assert set(links[0].attrs) == {"href", "rel", "target"}
    assert "noreferrer" in links[0].attrs["rel"]
    # And every other reference is shown as text
    text = page.root.text()
    assert "Reference: javascript:alert(7)" in text
    assert "Reference: data:text/html,<script>alert(10)</script>" in text


def test_payloads_are_shown_as_text(page: Page, html: str) -> None:
    # Given the page's visible text
    text = page.root.text()
    # Then each payload is there, as the characters the server sent
    for payload in XSS[:7]:
        assert payload in text
    # And never as raw markup in the file
    for raw in ("<script>alert", "<img src=x", "<svg onload", '<a href="javascript:',
                "<style>body"):
        assert raw not in html


def test_control_and_bidi_characters_are_made_visible(page: Page, html: str) -> None:
    # Given a server's ESC, NUL and right-to-left override in a transcript and a detail
    # Then none reaches the page raw; each is shown as a visible escape
    assert "\x1b" not in html and "\x00" not in html and "\u202e" not in html
    assert "\\x1b[2J\\x00\\u202egnp.exe" in page.root.text()


def test_hostile_subjects_and_titles_do_not_break_the_structure(hostile: Report,
                                                               page: Page) -> None:
    # Given subjects and step titles that try to close elements early
    # Then every result still has its own section, and every step its summary
    assert len(page.root.find_all("section", "probe")) == len(hostile.results)
    steps = page.root.find_all("details", "step")
    assert len(steps) == len(hostile.results)
    assert all(s.find("summary").find(cls="t").text().startswith(XSS[0]) for s in steps)
