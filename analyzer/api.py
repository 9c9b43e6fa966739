"""The programmatic entry point: run one check and get its report."""

from __future__ import annotations

from collections.abc import Sequence

from analyzer import __version__
from analyzer.core.context import RunContext, RunOptions
from analyzer.core.model import Report
from analyzer.core.pipeline import Planned, Progress, plan, run_probes
from analyzer.core.registry import probe_index
from analyzer.core.targets import Target

__all__ = ["check", "exit_code", "selected_tests"]


async def check(
    target: Target,
    options: RunOptions,
    *,
    probes: Sequence[Planned] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run the planned probes (``options.tests``, or the defaults) against ``target``.

    ``probes`` replaces the registry's index (tests use it to run purpose-built probes).
    Only the probes that run are imported, each when it starts.
    Raises :class:`ValueError` for an unknown test name; never for a probe's failure.
    """
    available: list[Planned] = list(probes) if probes is not None else list(probe_index())
    planned = plan(available, selected_tests(available, options))
    async with RunContext(options) as run:
        if any(p.verifies_tls for p in planned):
            run.prepare_ssl_context()  # in a worker thread, while the first probes start
        return await run_probes(run, target, planned, tool_version=__version__, progress=progress)


def selected_tests(probes: Sequence[Planned], options: RunOptions) -> tuple[str, ...]:
    """``--tests``, plus opt-in probes that the options turn on (``--dnsbl``).

    With no ``--tests`` the defaults run; an opt-in probe asked for by its option
    (:attr:`~analyzer.core.probe.Probe.enabled_by`) is added.
    """
    extra = tuple(
        p.id
        for p in probes
        if not p.default and p.enabled_by and getattr(options, p.enabled_by)
    )
    if not extra:
        return options.tests
    base = options.tests or tuple(p.id for p in probes if p.default)
    return tuple(dict.fromkeys((*base, *extra)))


def exit_code(report: Report) -> int:
    """Monitoring-plugins convention: 2 fail; 3 inconclusive/error; 1 warn; else 0
    (:func:`analyzer.core.model.exit_code`)."""
    from analyzer.core.model import exit_code as report_exit_code  # noqa: PLC0415

    return report_exit_code(report)
