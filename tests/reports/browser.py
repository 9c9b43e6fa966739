"""Headless Chromium driven through chromedriver's W3C WebDriver endpoint, stdlib only.

Debian's ``chromium`` and ``chromium-driver`` packages are all it needs: the WebDriver
protocol is plain JSON over HTTP on loopback, so no Python browser package (and no
browser download) is involved. Chrome DevTools commands go through chromedriver's
``goog/cdp/execute`` endpoint; console messages and network events come from the
``browser`` and ``performance`` logs.

The browser is started so that it *cannot* reach anything even if a report tried:
every host name resolves to nothing, every request goes to a proxy on a closed
loopback port, and background services are off. Tests still assert, from the
performance log, that no request was even attempted.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
_W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


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
    """One WebDriver session; see :func:`browser_session`."""

    def __init__(self, base: str, session: str) -> None:
        self.base = base
        self.session = session

    # --- the protocol ---------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.base}/session/{self.session}{path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - loopback
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read()[:500]!r}") from None

    def get(self, url: str) -> None:
        """Navigate and wait for the load to finish."""
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        """The first element matching ``css`` (its WebDriver id)."""
        return str(self._call("POST", "/element", {"using": "css selector", "value": css})[
            _W3C_ELEMENT])

    def find_all(self, css: str) -> list[str]:
        """Every element matching ``css``."""
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(e[_W3C_ELEMENT]) for e in found]

    def displayed(self, element: str) -> bool:
        """WebDriver's "is displayed" (rendered, not hidden by CSS or a closed <details>)."""
        return bool(self._call("GET", f"/element/{element}/displayed"))

    def text(self, element: str) -> str:
        """The rendered text of an element."""
        return str(self._call("GET", f"/element/{element}/text"))

    def prop(self, element: str, name: str) -> Any:
        """A DOM property (``open`` of a <details>, ``href`` of a link…)."""
        return self._call("GET", f"/element/{element}/property/{name}")

    def rect(self, element: str) -> dict[str, float]:
        """Position and size in CSS pixels."""
        return dict(self._call("GET", f"/element/{element}/rect"))

    def click(self, element: str) -> None:
        """A real click (scrolls into view first)."""
        self._call("POST", f"/element/{element}/click", {})

    def script(self, source: str, *args: Any) -> Any:
        """Evaluate ``source`` (a function body) through DevTools: the page's CSP does not
        apply, and the page itself still runs no script of its own."""
        return self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def cdp(self, command: str, params: dict[str, Any] | None = None) -> Any:
        """A Chrome DevTools Protocol command."""
        return self._call("POST", "/goog/cdp/execute", {"cmd": command, "params": params or {}})

    def log(self, kind: str) -> list[dict[str, Any]]:
        """Entries of the ``browser`` (console) or ``performance`` log since the last call."""
        return list(self._call("POST", "/se/log", {"type": kind}))

    def print_pdf(self, *, width_cm: float, height_cm: float) -> bytes:
        """The page printed to PDF on paper of this size (WebDriver "Print Page")."""
        data = self._call("POST", "/print", {
            "page": {"width": width_cm, "height": height_cm}, "background": True})
        return base64.b64decode(data)

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
def browser_session(profile: Path) -> Iterator[Browser]:
    """chromedriver on a loopback port of its choosing, and one Chromium session."""
    paths = require("chromium", "chromedriver")
    log_path = profile.parent / f"{profile.name}-chromedriver.log"
    with log_path.open("w") as log_file:
        driver = subprocess.Popen(
            [paths["chromedriver"], "--port=0", "--allowed-ips=127.0.0.1"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        port = _driver_port(driver, log_path)
        base = f"http://127.0.0.1:{port}"
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": paths["chromium"],
                "args": [*BASE_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"],
            },
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/session", method="POST",
            data=json.dumps({"capabilities": {"alwaysMatch": capabilities}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            session = json.loads(response.read())["value"]["sessionId"]
        browser = Browser(base, session)
        try:
            yield browser
        finally:
            browser._call("DELETE", "")
    finally:
        driver.terminate()
        try:
            driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()


def _driver_port(driver: subprocess.Popen[bytes], log_path: Path) -> int:
    """The port chromedriver chose (it prints it once it listens)."""
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline and driver.poll() is None:
        text = log_path.read_text(errors="replace")
        match = re.search(r"started successfully on port (\d+)", text)
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"chromedriver did not start: {text[-500:]}")
