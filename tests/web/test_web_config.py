"""The rca web configuration file and the rate-limit window (pure functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyzer.operations.batch import BatchFileError
from analyzer.operations.web.config import WebConfig, load_web_config, parse_web_config
from analyzer.operations.web.runs import SlidingWindow


def test_defaults_are_localhost_and_modest_limits() -> None:
    config = WebConfig()
    assert config.listen == ("127.0.0.1", 8080)
    assert not config.allow and not config.users
    assert (config.max_runs, config.runs_per_minute, config.timeout) == (3, 6, 60.0)


def test_a_full_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "corp.pem").write_text("")
    (tmp_path / "anchors").write_text("")
    (tmp_path / "web.toml").write_text(
        '[web]\nlisten = "[::1]:8443"\nallow = ["example.com", "*.example.net"]\n'
        'history = "runs"\nresolvers = ["192.0.2.53", "[2001:db8::53]:5353"]\n'
        'trust_anchor = "anchors"\ntimeout = 30\nmax_timeout = 90\nmax_runs = 5\n'
        '[web.ca_files]\n"Corporate root" = "corp.pem"\n'
    )
    config = load_web_config(tmp_path / "web.toml")
    assert config.listen == ("::1", 8443)
    assert config.history == tmp_path / "runs"
    assert config.ca_files == {"Corporate root": tmp_path / "corp.pem"}
    assert config.trust_anchor == tmp_path / "anchors"
    assert config.resolvers == ("192.0.2.53", "[2001:db8::53]:5353")
    assert (config.timeout, config.max_timeout, config.max_runs) == (30.0, 90.0, 5)
    assert config.allow.domains == frozenset({"example.com"})


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({"listen": 8080}, "web.listen"),
        ({"allow": "example.com"}, "web.allow"),
        ({"max_runs": 0}, "web.max_runs"),
        ({"max_runs": True}, "web.max_runs"),
        ({"timeout": -1}, "web.timeout"),
        ({"timeout": 100, "max_timeout": 50}, "larger than web.max_timeout"),
        ({"resolvers": ["not-an-ip"]}, "web.resolvers"),
        ({"ca_files": {"x": "missing.pem"}}, "no such file"),
        ({"ca_files": ["a.pem"]}, "web.ca_files"),
        ({"trust_anchor": "missing"}, "no such file"),
        ({"colour": "blue"}, "unknown key"),
        ({"users": {"bad name!": "scrypt$a$b"}}, "user names"),
        ({"token": "abc"}, "not accepted"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, web: dict[str, Any], message: str) -> None:
    with pytest.raises(BatchFileError, match=message):
        parse_web_config({"web": web}, base=tmp_path, source="web.toml")


def test_other_tables_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match=r"only a \[web\] table"):
        parse_web_config({"exporter": {}}, base=tmp_path, source="web.toml")
    (tmp_path / "bad.toml").write_text("[web\n")
    with pytest.raises(BatchFileError, match="not valid TOML"):
        load_web_config(tmp_path / "bad.toml")
    with pytest.raises(BatchFileError, match="missing.toml"):
        load_web_config(tmp_path / "missing.toml")


def test_the_window_allows_limit_hits_per_period_and_says_how_long_to_wait() -> None:
    window = SlidingWindow(2, period=60)
    # two hits pass; the third waits until the first leaves the window (at 60 s)
    assert [window.hit("a", now=t) for t in (0, 1, 2)] == [0, 0, 58]
    assert window.hit("b", now=2) == 0  # per key
    assert window.hit("a", now=60.5) == 0  # the first hit has left the window
    assert window.hit("a", now=60.6) == 1  # the second leaves at 61 s: wait a second


def test_the_window_forgets_the_oldest_keys_past_its_bound() -> None:
    window = SlidingWindow(1, period=60, max_keys=2)
    for key in ("a", "b", "c"):
        window.hit(key, now=0)
    # "a" was forgotten, so it may hit again; "c" may not
    assert window.hit("a", now=1) == 0
    assert window.hit("c", now=1) > 0


def test_the_users_password_hashes_are_not_in_the_repr(tmp_path: Path) -> None:
    from analyzer.operations.web.security import hash_password

    # Given a configuration with a user (a password hash)
    stored = hash_password("a-long-user-password")
    config = parse_web_config({"web": {"users": {"alice": stored}}}, base=tmp_path, source="t")
    # When it is shown (a log line, a traceback with locals)
    shown = repr(config)
    # Then the hash is not in it
    assert stored.split("$")[2] not in shown and stored.split("$")[1] not in shown
