"""The Starlette application of ``rca web``: pages, the live event stream, downloads.

Routes::

    GET  /                         the tests, grouped as ExRCA groups them
    GET  /test/{id}                a test's form          POST: start a run (303 → run)
    GET  /runs/{run}               the run: live steps, then verdict and downloads
    GET  /runs/{run}/events        server-sent events of the run (text/event-stream)
    GET  /runs/{run}/report.html   the self-contained HTML report (download)
    GET  /runs/{run}/report.json   the JSON report (download)
    GET  /history                  this server's runs, newest first
    GET  /history/{name}/{stamp}   a past report (add .json for its JSON)
    GET  /diff?old=KEY&new=KEY     rca diff in the browser: the newer report with its changes
    GET  /login, POST /login       the access token (off localhost); POST /logout
    GET  /static/{file}            the style sheets and the one script

Forms are read by :func:`read_form` (bounded, urlencoded only); every POST is checked for
its CSRF token and origin before anything else happens (:mod:`analyzer.operations.web.security`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from analyzer.operations.web.catalogue import CATALOGUE, GROUPS, find_test
from analyzer.operations.web.config import WebConfig
from analyzer.operations.web.forms import (
    FormErrors,
    OptionsBuilder,
    parse_run_form,
    shown_values,
)
from analyzer.operations.web.history_view import RunHistory
from analyzer.operations.web.pages import page, when
from analyzer.operations.web.runs import Busy, Run, RunManager
from analyzer.operations.web.security import Guard, GuardMiddleware

if TYPE_CHECKING:
    from analyzer.core.model import Report
    from analyzer.core.probe import Probe

__all__ = ["MAX_FORM_BYTES", "create_app", "read_form"]

LOG = logging.getLogger("rca.web")
MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
#: Seconds between keep-alive comments on an idle event stream (proxies close silent ones).
KEEPALIVE_S = 15.0
_STATIC = {
    "web.js": "text/javascript; charset=utf-8",
    "web.css": "text/css; charset=utf-8",
    "report.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
LABELS = {
    "": "Form",
    "target": "Target",
    "user": "User name",
    "password": "Password",
    "token": "OAuth token",
    "resolver": "DNS server",
    "ca_file": "Extra CA certificates",
    "insecure_confirm": "Ignore trust for TLS: I understand",
    "family": "IP version",
    "timeout": "Deadline",
    "autodiscover_url": "Autodiscover URL",
    "ews_url": "EWS URL",
    "activesync_url": "ActiveSync URL",
    "dkim_selector": "DKIM selectors",
    "port": "Extra endpoints",
}


class BadForm(Exception):
    """A form body that cannot be read (too large, wrong type)."""


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body of a POST, at most :data:`MAX_FORM_BYTES` and :data:`MAX_FIELDS`
    (the last value of a repeated field wins); :class:`BadForm` otherwise."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm("expected a form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadForm("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadForm("the form could not be read") from None
    return dict(pairs)


def create_app(
    config: WebConfig,
    *,
    build_options: OptionsBuilder,
    guard: Guard | None = None,
    probes: Sequence[Probe] | None = None,
) -> Starlette:
    """The application. ``build_options`` is ``rca check``'s option builder
    (:data:`~analyzer.operations.web.forms.OptionsBuilder`); ``guard`` carries the access token
    (None: localhost, no login); ``probes`` replaces the registry (tests use purpose-built
    probes)."""
    guard = guard or Guard(requests_per_minute=config.requests_per_minute)
    runs = RunManager(config, probes=probes)
    history = RunHistory(config.history)

    def html(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        session = request.state.session
        return HTMLResponse(
            page(name, csrf=guard.csrf_token(session), login=guard.login_required,
                 **context),
            status_code=status,
        )

    def refuse(request: Request, status: int, message: str, **headers: str) -> HTMLResponse:
        response = html("error.html.j2", request, status, message=message)
        response.headers.update(headers)
        return response

    async def checked_form(request: Request) -> dict[str, str] | HTMLResponse:
        """The form of a POST from this server's own page with its CSRF token, or the
        refusal to send."""
        own = Guard.same_origin(dict(request.headers), request.url.scheme,
                                request.headers.get("host", ""))
        if not own:
            return refuse(request, 403, "This form was not sent from this server's page.")
        try:
            form = await read_form(request)
        except BadForm as exc:
            return refuse(request, 400, str(exc))
        if not guard.csrf_ok(request.state.session, form.get("csrf", "")):
            return refuse(request, 403, "The form has expired or was not sent from this "
                          "server's page: open it again.")
        return form

    async def index(request: Request) -> Response:
        groups = [(g, [t for t in CATALOGUE if t.group == g]) for g in GROUPS]
        return html("index.html.j2", request, groups=groups)

    async def test_form(request: Request) -> Response:
        test = find_test(request.path_params["test"])
        if test is None:
            return refuse(request, 404, "There is no such test.")
        if request.method == "GET":
            return html("form.html.j2", request, test=test, values={}, errors={},
                        config=config, labels=LABELS)
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        try:
            run_request = parse_run_form(test, form, config, build_options)
        except FormErrors as exc:
            return html("form.html.j2", request, 400, test=test, values=shown_values(form),
                        errors=exc.errors, config=config, labels=LABELS)
        client = request.client.host if request.client else "unknown"
        try:
            run = runs.start(run_request, client=client)
        except Busy as exc:
            return refuse(request, 429, str(exc), **{"Retry-After": str(exc.retry_after)})
        finally:
            del run_request  # the run's task holds the password now, nobody else
        return RedirectResponse(f"/runs/{run.id}", status_code=303)

    def run_of(request: Request) -> Run | None:
        return runs.get(request.path_params["run"])

    async def run_page(request: Request) -> Response:
        run = run_of(request)
        if run is None:
            return refuse(request, 404, "This run is not known (any more): see recent runs.")
        return html("run.html.j2", request, run=run, seen=len(run.events),
                    started=when(run.started))

    async def run_events(request: Request) -> Response:
        run = run_of(request)
        if run is None:
            return PlainTextResponse("no such run\n", status_code=404)
        seen = max(_number(request.query_params.get("after")),
                   _number(request.headers.get("last-event-id")))
        return StreamingResponse(
            _stream(run, min(seen, len(run.events))),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def run_report(request: Request) -> Response:
        run = run_of(request)
        if run is None or run.report is None:
            return refuse(request, 404, "This report is not ready or not known.")
        return await asyncio.to_thread(_report_response, run.report, request.path_params["kind"],
                                       download=True)

    async def history_page(request: Request) -> Response:
        # Reading up to a hundred saved reports: off the event loop, as every file read here.
        rows = await asyncio.to_thread(history.recent)
        titles = {t.id: t.title for t in CATALOGUE}
        return html("history.html.j2", request, rows=rows, titles=titles)

    async def history_report(request: Request) -> Response:
        key = f"{request.path_params['name']}/{request.path_params['stamp']}"
        kind = request.path_params.get("kind", "html")
        try:
            report = await asyncio.to_thread(history.load, key)
        except (KeyError, ValueError, OSError):
            return refuse(request, 404, "There is no such run in the history.")
        return await asyncio.to_thread(_report_response, report, kind, download=kind == "json")

    async def diff_page(request: Request) -> Response:
        def compare(old_key: str, new_key: str) -> str:
            from analyzer.operations.history import diff  # noqa: PLC0415
            from reports.html import render  # noqa: PLC0415

            old, new = history.load(old_key), history.load(new_key)
            return render(new, changes=diff(old, new))

        try:
            text = await asyncio.to_thread(compare, request.query_params.get("old", ""),
                                           request.query_params.get("new", ""))
        except (KeyError, ValueError, OSError):
            return refuse(request, 404, "Choose two runs from the history to compare.")
        return _report_page(text)

    async def login(request: Request) -> Response:
        if not guard.login_required:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return html("login.html.j2", request, failed=False, users=bool(guard.users))
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        client = request.client.host if request.client else "unknown"
        wait = guard.logins.hit(client)
        if wait:
            return refuse(request, 429, "Too many attempts; wait a minute.",
                          **{"Retry-After": str(wait)})
        user = form.get("user", "")[:64]
        # scrypt takes a quarter of a second: not on the event loop.
        session = await asyncio.to_thread(
            guard.login, form.get("password" if guard.users else "token", ""), user=user
        )
        if session is None:
            LOG.warning("failed login from %s", client)
            return html("login.html.j2", request, 403, failed=True, users=bool(guard.users))
        LOG.info("login from %s%s", client, f" as {user}" if guard.users else "")
        response = RedirectResponse("/", status_code=303)
        response.headers["Set-Cookie"] = guard.cookie(session).decode()
        return response

    async def logout(request: Request) -> Response:
        form = await checked_form(request)
        if isinstance(form, Response):
            return form
        guard.logout(request.state.session)
        return RedirectResponse("/login", status_code=303)

    async def static(request: Request) -> Response:
        name = request.path_params["file"]
        if name not in _STATIC:
            return PlainTextResponse("not found\n", status_code=404)
        if name == "report.css":
            from reports.html import stylesheet  # noqa: PLC0415

            body = stylesheet()
        else:
            static = files("analyzer.operations.web").joinpath("static", name)
            body = static.read_text(encoding="utf-8")
        return Response(body, media_type=_STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        message = "There is no such page." if code == 404 else "That request is not possible."
        return refuse(request, code, message)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await runs.aclose()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/test/{test}", test_form, methods=["GET", "POST"]),
            Route("/runs/{run}", run_page),
            Route("/runs/{run}/events", run_events),
            Route("/runs/{run}/report.{kind:str}", run_report),
            Route("/history", history_page),
            Route("/history/{name}/{stamp}.{kind:str}", history_report),
            Route("/history/{name}/{stamp}", history_report),
            Route("/diff", diff_page),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/static/{file}", static),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.runs = runs
    app.state.guard = guard
    app.add_middleware(GuardMiddleware, guard=guard)
    return app


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 9 else 0


async def _stream(run: Run, seen: int) -> AsyncIterator[str]:
    """The run's events after the first ``seen``, as server-sent events, until it ends."""
    yield "retry: 2000\n\n"
    while True:
        events = await run.wait(seen, KEEPALIVE_S)
        if not events:
            yield ": keep-alive\n\n"
            continue
        for event in events:
            seen += 1
            yield f"id: {seen}\nevent: rca\ndata: {json.dumps(event)}\n\n"
        if run.done and seen >= len(run.events):
            return


def _report_response(report: Report, kind: str, *, download: bool) -> Response:
    from reports.html import render  # noqa: PLC0415
    from reports.json import dumps  # noqa: PLC0415

    stem = _file_stem(report)
    if kind == "json":
        response: Response = Response(dumps(report), media_type="application/json")
    elif kind == "html":
        response = _report_page(render(report))
    else:
        return PlainTextResponse("not found\n", status_code=404)
    if download:
        response.headers["Content-Disposition"] = f'attachment; filename="{stem}.{kind}"'
    return response


def _report_page(text: str) -> Response:
    """A report page under the report's own policy: its one inline style sheet, nothing
    else, in a sandbox."""
    from reports.html import stylesheet_hash  # noqa: PLC0415

    policy = (f"default-src 'none'; style-src 'sha256-{stylesheet_hash()}'; "
              "frame-ancestors 'none'; "
              "base-uri 'none'; form-action 'none'; sandbox")
    return HTMLResponse(text, headers={"Content-Security-Policy": policy})


def _file_stem(report: Report) -> str:
    from analyzer.operations.batch import safe_name  # noqa: PLC0415

    return f"rca-{safe_name(report.target)}-{report.started.strftime('%Y%m%dT%H%M%SZ')}"
