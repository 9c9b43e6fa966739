"""Credentials.redact: every form a secret can take on the wire (pure, no network)."""

from __future__ import annotations

import base64

import pytest

from analyzer.core.context import Credentials
from analyzer.protocols.mailclient import b64, oauthbearer, xoauth2

USER = "alice@example.test"
TOKEN = "ya29.a0AfH6SMBx-lab-token_0123456789"  # noqa: S105 - test data


@pytest.mark.parametrize(
    "blob",
    [
        b64(xoauth2(USER, TOKEN)),
        b64(oauthbearer(USER, TOKEN, host="imap.example.test", port=993)),
        b64(oauthbearer("bob", TOKEN, host="h.test", port=587)),
    ],
    ids=["xoauth2", "oauthbearer", "oauthbearer-other-offset"],
)
def test_a_token_inside_a_sasl_blob_is_redacted(blob: str) -> None:
    # Given a server that echoes the client's SASL initial response in its error
    line = f"535 5.7.8 bad credentials: {blob}"
    # When the line is redacted
    redacted = Credentials(USER, token=TOKEN).redact(line)
    # Then no part of what remains decodes back to the token
    assert "«redacted»" in redacted
    for piece in redacted.replace("«redacted»", " ").split():
        for pad in ("", "=", "=="):
            try:
                decoded = base64.b64decode(piece + pad)
            except ValueError:
                continue
            assert TOKEN.encode()[:8] not in decoded


def test_an_imap_quoted_password_is_redacted() -> None:
    password = 'pa"ss\\word-9'  # noqa: S105 - test data
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    redacted = Credentials(USER, password=password).redact(f'A1 LOGIN {USER} "{quoted}"')
    assert redacted == f'A1 LOGIN {USER} "«redacted»"'
