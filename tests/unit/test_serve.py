"""The exporter (analyzer/operations/serve.py) over loopback HTTP, with purpose-built probes.

Each test starts the exporter on 127.0.0.1, port 0, and talks to it with httpx; the
exposition is read with prometheus-client's own parser. The probes never touch the
network: they count their runs and judge the target by its first label.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status
from analyzer.core.probe import Probe, ProbeContext
from analyzer.core.targets import Target, parse_target
from analyzer.operations.batch import BatchFileError
from analyzer.operations.serve import Allowlist, Exporter, ExporterServer, parse_exporter

SECRET = "C0rrect-exporter-secret"  # noqa: S105 - test data
PASS = FindingSpec(code="test.pass", status=Status.PASS, title="fine", meaning="test")
FAIL = FindingSpec(code="test.fail", status=Status.FAIL, title="broken", meaning="test")

CONFIG = """
[exporter]
allow = ["example.test", "*.example.test", "192.0.2.0/24"]
cache_seconds = 60
timeout_offset = 0.5

[modules.basic]
tests = ["judge"]

[modules.login]
tests = ["judge"]
password_env = "RCA_TEST_EXPORTER_PW"
allow = ["monitor@example.test"]
"""


class Calls:
    """What the probe saw: how many runs, the deadlines, the passwords."""

    def __init__(self) -> None:
        self.count = 0
        self.timeouts: list[float] = []
        self.passwords: list[str | None] = []
        self.lock = threading.Lock()


def judge_probe(calls: Calls, *, delay: float = 0.0) -> Probe:
    async def judge(ctx: ProbeContext, target: Target) -> None:
        with calls.lock:
            calls.count += 1
            calls.timeouts.append(ctx.options.timeout)
            calls.passwords.append(ctx.options.credentials.password())
        with ctx.result(target.domain) as res, res.step("judge") as step:
            if target.domain.startswith("hang."):
                await asyncio.Future()
            await asyncio.sleep(delay)
            step.add((FAIL if target.domain.startswith("bad.") else PASS)())

    return Probe(id="judge", title="Judge", run=judge, findings=(PASS, FAIL))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exporter(calls: Calls, text: str = CONFIG, **kw: Any) -> Exporter:
    config = parse_exporter(tomllib.loads(text), base=Path("."), source="exporter.toml")
    return Exporter(config, probes=[judge_probe(calls, delay=kw.pop("delay", 0.0))],
                    env={"RCA_TEST_EXPORTER_PW": SECRET}, **kw)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(calls: Calls, clock: Clock) -> Iterator[httpx.Client]:
    server = ExporterServer(exporter(calls, clock=clock), listen=("127.0.0.1", 0), log=False)
    with server:
        host, port = server.address
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=20) as client:
            yield client


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(text: str, name: str) -> float:
    (sample,) = families(text)[name].samples
    return float(sample.value)


# --- the allowlist ------------------------------------------------------------------------------


def test_a_target_outside_the_allowlist_is_refused_and_not_checked(
    served: httpx.Client, calls: Calls
) -> None:
    # Given an exporter that allows example.test and below
    # When a scrape asks for another domain
    response = served.get("/probe", params={"target": "intranet.corp.test", "module": "basic"})
    # Then it is refused with 403, and no check ran
    assert response.status_code == 403
    assert calls.count == 0
    # And the refusal is counted in the exporter's own metrics
    metrics = families(served.get("/metrics").text)
    refused = {s.labels["reason"]: s.value for s in metrics["rca_exporter_refused"].samples
               if s.name == "rca_exporter_refused_total"}
    assert refused == {"not_allowed": 1.0}


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("example.test", True),
        ("alice@example.test", True),
        ("mx.example.test:25", True),
        ("deep.mx.example.test", True),
        ("EXAMPLE.test", True),
        ("notexample.test", False),
        ("example.test.evil.test", False),
        ("192.0.2.7", True),
        ("198.51.100.7", False),
        ("127.0.0.1", False),
        ("https://example.test/owa", True),
        ("https://169.254.169.254/latest", False),
    ],
)
def test_allowlist_entries(target: str, allowed: bool) -> None:
    # Given the allowlist of a domain, its subdomains and a network
    allow = Allowlist.parse(["example.test", "*.example.test", "192.0.2.0/24"], where="t")
    # When a target is checked against it, Then only those listed pass
    assert allow.allows(parse_target(target)) is allowed


def test_a_subdomain_pattern_does_not_allow_the_domain_itself() -> None:
    # Given only "*.example.test"
    allow = Allowlist.parse(["*.example.test"], where="t")
    # When the domain itself is checked, Then it is not allowed (only names under it are)
    assert not allow.allows(parse_target("example.test"))
    assert allow.allows(parse_target("mx.example.test"))


def test_a_module_with_its_own_allowlist_refuses_the_general_one(
    served: httpx.Client, calls: Calls
) -> None:
    # Given a login module allowed only for monitor@example.test
    # When a scrape asks it for another address in the allowed domain
    response = served.get("/probe", params={"target": "bob@example.test", "module": "login"})
    # Then it is refused: the password goes only where the module's own list says
    assert response.status_code == 403
    assert calls.count == 0


def test_an_empty_allowlist_is_refused_at_start() -> None:
    # Given a file without any allow entry
    text = "[modules.basic]\ntests = [\"judge\"]\n"
    # When it is parsed, Then the exporter refuses to start, saying what to add
    with pytest.raises(BatchFileError, match="allow"):
        parse_exporter(tomllib.loads(text), base=Path("."), source="x.toml")


def test_an_inline_password_in_a_module_is_refused() -> None:
    # Given a module with a password written in the file
    text = f'[exporter]\nallow = ["a.test"]\n[modules.m]\npassword = "{SECRET}"\n'
    # When it is parsed, Then it is refused without repeating the value
    with pytest.raises(BatchFileError) as caught:
        parse_exporter(tomllib.loads(text), base=Path("."), source="x.toml")
    assert SECRET not in str(caught.value)


def test_the_exporter_binds_to_localhost_by_default() -> None:
    # Given a file that does not say where to listen
    config = parse_exporter(tomllib.loads(CONFIG), base=Path("."), source="x.toml")
    # Then it listens on the loopback address only
    assert config.listen == ("127.0.0.1", 9117)


# --- probing ------------------------------------------------------------------------------------


def test_probe_returns_the_report_metrics_with_success_and_duration(served: httpx.Client) -> None:
    # Given an allowed, healthy target
    # When Prometheus scrapes it
    response = served.get("/probe", params={"target": "example.test", "module": "basic"})
    # Then the exposition parses and carries probe_success, the duration and rca's series
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert value(text, "probe_success") == 1.0
    assert value(text, "probe_duration_seconds") >= 0.0
    assert value(text, "rca_check_status") == 0.0
    assert "rca_probe_status" in families(text)


def test_a_failing_target_has_probe_success_0(served: httpx.Client) -> None:
    # Given an allowed target whose check fails
    # When it is scraped
    text = served.get("/probe", params={"target": "bad.example.test", "module": "basic"}).text
    # Then probe_success is 0 and rca_check_status says fail
    assert value(text, "probe_success") == 0.0
    assert value(text, "rca_check_status") == 2.0


def test_a_fresh_result_is_served_from_the_cache(
    served: httpx.Client, calls: Calls, clock: Clock
) -> None:
    # Given a target scraped once
    params = {"target": "example.test", "module": "basic"}
    first = served.get("/probe", params=params).text
    # When it is scraped again within cache_seconds (60 s)
    clock.now += 30
    second = served.get("/probe", params=params).text
    # Then the check ran once and both scrapes got the same result
    assert calls.count == 1
    assert second == first


def test_a_stale_result_is_checked_again(served: httpx.Client, calls: Calls, clock: Clock) -> None:
    # Given a target scraped once
    params = {"target": "example.test", "module": "basic"}
    served.get("/probe", params=params)
    # When it is scraped after cache_seconds have passed
    clock.now += 61
    served.get("/probe", params=params)
    # Then it was checked again
    assert calls.count == 2


def test_concurrent_scrapes_of_one_target_share_one_check(calls: Calls) -> None:
    # Given an exporter whose check takes 0.3 s
    server = ExporterServer(exporter(calls, delay=0.3), listen=("127.0.0.1", 0), log=False)
    with server:
        host, port = server.address
        url = f"http://{host}:{port}/probe?target=example.test&module=basic"
        # When three scrapers ask at the same time
        statuses: list[int] = []

        def scrape() -> None:
            with httpx.Client(timeout=20) as client:
                statuses.append(client.get(url).status_code)

        threads = [threading.Thread(target=scrape) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # Then all three got an answer from one check
    assert statuses == [200, 200, 200]
    assert calls.count == 1


def test_the_check_deadline_follows_the_scrape_timeout(served: httpx.Client, calls: Calls) -> None:
    # Given a scraper that allows 3 seconds (the offset is 0.5 s)
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
    # When it scrapes
    served.get("/probe", params={"target": "example.test", "module": "basic"}, headers=headers)
    # Then the check ran with a 2.5 s deadline
    assert calls.timeouts == [pytest.approx(2.5, abs=0.05)]


def test_a_hanging_target_is_answered_within_the_scrape_timeout(served: httpx.Client) -> None:
    # Given a target whose check would never end, and a 2 s scrape timeout
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "2"}
    # When it is scraped
    t0 = time.monotonic()
    response = served.get("/probe", params={"target": "hang.example.test", "module": "basic"},
                          headers=headers)
    # Then the answer comes in about that time, and says the probe did not succeed
    assert time.monotonic() - t0 < 4.5
    assert response.status_code == 200
    assert value(response.text, "probe_success") == 0.0


def test_credentials_come_only_from_the_module(served: httpx.Client, calls: Calls) -> None:
    # Given the login module, whose password comes from its variable
    # When a scrape also sends a password of its own in the query
    response = served.get("/probe", params={"target": "monitor@example.test", "module": "login",
                                            "password": "from-the-request"})
    # Then the check used the module's password, and the response does not show it
    assert response.status_code == 200
    assert calls.passwords == [SECRET]
    assert SECRET not in response.text


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"target": "example.test", "module": "nope"}, 400),
        ({"target": "example.test"}, 400),
        ({"module": "basic"}, 400),
        ({"target": "not a target", "module": "basic"}, 400),
        ({"target": "x" * 600, "module": "basic"}, 400),
    ],
)
def test_bad_requests_are_400_without_a_check(
    served: httpx.Client, calls: Calls, params: dict[str, str], status: int
) -> None:
    # Given a request missing or garbling a parameter
    # When it is sent
    response = served.get("/probe", params=params)
    # Then it is refused as a bad request, and nothing was checked
    assert response.status_code == status
    assert calls.count == 0


# --- the other endpoints ------------------------------------------------------------------------


def test_report_returns_the_last_html_report(served: httpx.Client) -> None:
    # Given a target not scraped yet
    params = {"target": "bad.example.test"}
    # When its report is asked for, Then there is none yet
    assert served.get("/report", params=params).status_code == 404
    # And once it has been scraped, its HTML report is served with a strict policy
    served.get("/probe", params={**params, "module": "basic"})
    response = served.get("/report", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "bad.example.test" in response.text and "<!DOCTYPE html>" in response.text


def test_report_of_a_target_outside_the_allowlist_is_refused(served: httpx.Client) -> None:
    # Given a target nobody may probe
    # When its report is asked for, Then the answer is 403 (not even "no report")
    assert served.get("/report", params={"target": "other.test"}).status_code == 403


def test_metrics_count_checks_and_cache_hits(served: httpx.Client) -> None:
    # Given one check and one cache hit
    params = {"target": "example.test", "module": "basic"}
    served.get("/probe", params=params)
    served.get("/probe", params=params)
    # When the exporter's own metrics are scraped
    metrics = families(served.get("/metrics").text)
    # Then they parse and count both
    checks = {(s.labels["module"], s.labels["result"]): s.value
              for s in metrics["rca_exporter_checks"].samples if s.name.endswith("_total")}
    hits = [s.value for s in metrics["rca_exporter_cache_hits"].samples
            if s.name.endswith("_total")]
    assert checks == {("basic", "ok"): 1.0}
    assert hits == [1.0]


def test_unknown_paths_are_404(served: httpx.Client) -> None:
    # Given the exporter, When an unknown path is asked for, Then it is not found
    assert served.get("/admin").status_code == 404
