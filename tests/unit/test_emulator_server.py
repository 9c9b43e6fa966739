"""The emulator's HTTP server: how it logs a client that goes away."""

from __future__ import annotations

import ssl

import pytest

from analyzer.lab import emulator
from analyzer.lab.emulator import EmulatorConfig


def _server() -> emulator.ThreadingHTTPServer:
    return emulator.make_server(
        EmulatorConfig(listen=("127.0.0.1", 0), addresses={}, hosts={}, scenarios={})
    )


@pytest.mark.parametrize(
    "gone",
    [ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
     BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")],
)
def test_a_client_that_leaves_early_is_one_log_line_not_a_traceback(
    gone: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    server = _server()
    try:
        try:
            raise gone
        except type(gone):
            server.handle_error(None, ("192.0.2.7", 50000))  # type: ignore[arg-type]
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("192.0.2.7 left before the answer:")


def test_other_errors_still_print_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    server = _server()
    try:
        try:
            raise KeyError("a bug in a handler")
        except KeyError:
            server.handle_error(None, ("192.0.2.7", 50000))  # type: ignore[arg-type]
    finally:
        server.server_close()
    assert "Traceback" in capsys.readouterr().err
