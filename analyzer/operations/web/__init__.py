"""``rca web``: a self-hosted ExRCA — pick a test, watch its steps live, download the report.

A Starlette application on uvicorn, imported only by ``rca web`` (``rca check`` never
pays for it). It has no checking logic of its own: a form becomes the ``rca check`` flags
it stands for (:mod:`.forms`), the run is :func:`analyzer.api.check` with the pipeline's
progress callback (:mod:`.runs`), and the live steps, the verdict and the downloads are
drawn by :mod:`reports.html` and :mod:`reports.json`. Runs are kept in the history format
of ``rca batch --history`` (:mod:`analyzer.operations.history`); the allowlist and the listen
address are parsed as ``rca serve`` parses them (:mod:`analyzer.operations.serve`).

Modules: :mod:`.catalogue` (the tests offered), :mod:`.config` (the TOML file),
:mod:`.forms`, :mod:`.runs`, :mod:`.security` (host check, rate limit, login, CSRF,
headers), :mod:`.pages` (templates), :mod:`.history_view`, :mod:`.app` (routes),
:mod:`.server` (uvicorn, ``main_web``).
"""

from __future__ import annotations

__all__ = ["create_app", "main_web"]


def __getattr__(name: str) -> object:
    # Lazy: importing analyzer.operations.web must not import Starlette until the app is needed.
    if name == "create_app":
        from analyzer.operations.web.app import create_app  # noqa: PLC0415

        return create_app
    if name == "main_web":
        from analyzer.operations.web.server import main_web  # noqa: PLC0415

        return main_web
    raise AttributeError(name)
