"""Target parsing: what users type, and the one-line errors for what cannot be used."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.core.errors import UsageError
from analyzer.core.targets import is_ip, parse_target


@pytest.mark.parametrize(
    ("raw", "kind", "domain", "extra"),
    [
        ("alice@example.com", "address", "example.com", {"local_part": "alice"}),
        ("Example.COM.", "domain", "example.com", {}),
        ("mail.example.com:993", "host", "mail.example.com", {"port": 993}),
        ("[2001:db8::1]:443", "host", "2001:db8::1", {"port": 443}),
        ("198.51.100.7", "host", "198.51.100.7", {"host": "198.51.100.7"}),
        ("https://autodiscover.example.com/autodiscover/autodiscover.xml", "url",
         "autodiscover.example.com", {}),
        ("bücher.example", "domain", "xn--bcher-kva.example", {"domain_unicode": "bücher.example"}),
        ("jörg@bücher.example", "address", "xn--bcher-kva.example", {"local_part": "jörg"}),
    ],
)
def test_valid_targets(raw: str, kind: str, domain: str, extra: dict[str, object]) -> None:
    target = parse_target(raw)
    assert (target.kind, target.domain) == (kind, domain)
    for key, value in extra.items():
        assert getattr(target, key) == value


def test_idn_target_displays_both_forms() -> None:
    assert parse_target("bücher.example").display == "bücher.example (xn--bcher-kva.example)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("@@", "not an e-mail address"),
        ("", "empty"),
        ("   ", "empty"),
        ("a b.example", "white space"),
        ("a" * 300 + ".example", "253"),
        ("x" * 64 + ".example", "63"),
        ("user@", "not an e-mail address"),
        ("a..example", "empty label"),
        ("ftp://example.com", "scheme"),
        ("host:0", "port"),
        ("host:99999", "port"),
        ("-bad.example", "not a valid DNS label"),
        ("[2001:db8::1", "missing ']'"),
    ],
)
def test_bad_targets_give_one_line_errors(raw: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_url_with_credentials_is_refused_without_echoing_the_secret() -> None:
    with pytest.raises(UsageError) as info:
        parse_target("https://alice:hunter2@mail.example.com/owa")
    assert "credentials" in str(info.value)
    assert "hunter2" not in str(info.value)


@given(st.text(max_size=400))
def test_any_text_parses_or_raises_usage_error(raw: str) -> None:
    try:
        parse_target(raw)
    except UsageError as exc:
        assert str(exc)


def test_is_ip_answers_again_from_memory() -> None:
    # Given a host name and an address asked about once
    is_ip.cache_clear()
    first = (is_ip("mail.example.test"), is_ip("2001:db8::1"))
    # When they are asked about again (every connection of a run asks)
    again = (is_ip("mail.example.test"), is_ip("2001:db8::1"))
    # Then the answers are the same, and come from what was kept
    assert first == again == (False, True)
    assert is_ip.cache_info().hits == 2
