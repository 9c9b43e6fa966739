"""Headless Chromium driven through selenium and Debian's chromedriver.

Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` library are
all it needs: selenium is pointed at both binaries and kept offline, so no browser or
driver is ever downloaded. Chrome DevTools commands go through chromedriver; console
messages and network events come from the ``browser`` and ``performance`` logs.

The browser is started so that it *cannot* reach anything even if a report tried:
every host name resolves to nothing, every request goes to a proxy on a closed
loopback port, and background services are off. Tests still assert, from the
performance log, that no request was even attempted.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

#: The flags every launch uses (root in a container needs --no-sandbox).
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--hide-scrollbars",
    # Nothing can leave the machine: no name resolves, and any request would go to a
    # proxy on a loopback port where nothing listens.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


def require(*tools: str) -> dict[str, str]:
    """Paths of ``tools``; skip the test without them, but fail it when CI=true."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        reason = (
            f"{', '.join(missing)} not installed (Debian: apt-get install chromium "
            "chromium-driver poppler-utils)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return {tool: path for tool, path in found.items() if path is not None}


def chromium_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the chromium command line once (e.g. --print-to-pdf) with a fresh profile."""
    paths = require("chromium")
    with tempfile.TemporaryDirectory(prefix="rca-chromium-") as profile:
        return subprocess.run(
            [paths["chromium"], *BASE_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )


class Browser:
    """One WebDriver session (selenium's), with what the browser tests do often; the
    driver itself is ``driver``. Elements are selenium's ``WebElement``."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def get(self, url: str) -> None:
        """Navigate and wait for the load to finish."""
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        """The first element matching ``css``."""
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        """Every element matching ``css``."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def displayed(self, element: WebElement) -> bool:
        """WebDriver's "is displayed" (rendered, not hidden by CSS or a closed <details>)."""
        return bool(element.is_displayed())

    def text(self, element: WebElement) -> str:
        """The rendered text of an element."""
        return str(element.text)

    def prop(self, element: WebElement, name: str) -> Any:
        """A DOM property (``open`` of a <details>, ``href`` of a link…)."""
        return element.get_property(name)

    def rect(self, element: WebElement) -> dict[str, float]:
        """Position and size in CSS pixels."""
        return dict(element.rect)

    def click(self, element: WebElement) -> None:
        """A real click (scrolls into view first)."""
        element.click()

    def script(self, source: str, *args: Any) -> Any:
        """Evaluate ``source`` (a function body) through DevTools: the page's CSP does not
        apply, and the page itself still runs no script of its own."""
        return self.driver.execute_script(source, *args)

    def cdp(self, command: str, params: dict[str, Any] | None = None) -> Any:
        """A Chrome DevTools Protocol command."""
        return self.driver.execute_cdp_cmd(command, params or {})

    def log(self, kind: str) -> list[dict[str, Any]]:
        """Entries of the ``browser`` (console) or ``performance`` log since the last call."""
        return list(self.driver.get_log(kind))

    def print_pdf(self, *, width_cm: float, height_cm: float) -> bytes:
        """The page printed to PDF on paper of this size (WebDriver "Print Page")."""
        from selenium.webdriver.common.print_page_options import PrintOptions  # noqa: PLC0415

        options = PrintOptions()
        options.page_width = width_cm
        options.page_height = height_cm
        options.background = True
        return base64.b64decode(self.driver.print_page(options))

    # --- conveniences ---------------------------------------------------------------------

    def requests(self) -> list[str]:
        """URLs the page asked for since the last call (from the performance log)."""
        urls = []
        for entry in self.log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def color_scheme(self, scheme: str) -> None:
        """Emulate ``prefers-color-scheme``."""
        self.cdp("Emulation.setEmulatedMedia",
                 {"features": [{"name": "prefers-color-scheme", "value": scheme}]})

    def viewport(self, width: int, height: int, scale: float = 1) -> None:
        """The layout viewport in CSS pixels (scale 2 at 640 px is a 1280 px window at 200%)."""
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": False})

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page by default)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                "scale": 1})
        data = self.cdp("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def browser_session(profile: Path, *, flags: Sequence[str] = BASE_FLAGS) -> Iterator[Browser]:
    """Debian's chromedriver and one Chromium session (selenium), with a fresh ``profile``."""
    paths = require("chromium", "chromedriver")
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for flag in (*flags, f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    log_path = profile.parent / f"{profile.name}-chromedriver.log"
    service = Service(executable_path=paths["chromedriver"], log_output=str(log_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # selenium-manager must not look anything up
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(60)
        yield Browser(driver)
    finally:
        driver.quit()
