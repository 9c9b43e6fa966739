"""analyzer.lab.sogo and nginx's SOGo site: what is written before any server runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.lab import nginx, sogo
from analyzer.lab.errors import LabError


def test_sql_values_are_quoted() -> None:
    # A password with a quote stays one SQL string
    assert sogo._sql_literal("it's") == "'it''s'"


def test_a_line_break_is_refused_before_it_reaches_single_user_mode() -> None:
    # Single-user PostgreSQL ends a statement at a newline
    with pytest.raises(LabError, match="line break"):
        sogo._sql_literal("pass\nDROP TABLE x;")


def test_sogo_site_passes_activesync_to_sogod_and_nothing_to_the_emulator(
    tmp_path: Path,
) -> None:
    # Given a web host whose ActiveSync is SOGo's
    site = nginx.WebSite(label="sogo mail", addresses=("198.18.9.12",),
                         chain_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem",
                         root=tmp_path, sogo=sogo.SOGOD)  # fmt: skip
    # When nginx's configuration is written
    conf = nginx.write_config(tmp_path, sites=[site], emulator=("127.0.0.1", 8080),
                              proxied_paths=["/EWS/", "/Microsoft-Server-ActiveSync"]
                              ).read_text(encoding="utf-8")  # fmt: skip
    # Then ActiveSync goes to sogod under its application path, with the headers SOGo
    # builds its URLs from, and no path goes to the emulator
    assert "proxy_pass http://127.0.0.1:20000/SOGo$request_uri;" in conf
    assert "x-webobjects-server-url $scheme://$host;" in conf
    assert "127.0.0.1:8080" not in conf
