"""Mail-authentication logic: SPF, DMARC, DKIM, MTA-STS and TLS-RPT, one module per standard.

Each module follows one habit (checkdmarc's): ``parse_*`` functions raise the module's own
parse error (a :class:`ValueError` subclass carrying a message and, for syntax errors, the
position in the text), while ``check_*`` / ``evaluate_*`` functions never raise and return
findings (:class:`~analyzer.core.model.Finding`, made from the module's
:class:`~analyzer.core.findings.FindingSpec` constants, all listed in its ``FINDINGS``).

Everything is pure except :func:`probes.mailauth.spf.evaluate_spf`,
:func:`probes.mailauth.spf.check_host` and the DMARC report-authorisation check
(:func:`probes.mailauth.dmarc.check_report_destinations`), which ask the DNS through an
injected :data:`TxtLookup`, so that tests can answer from a dict.

This package is a library for probes, not a probe: it registers nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

from analyzer.protocols.resolve import Lookup

if TYPE_CHECKING:
    from analyzer.core.findings import FindingSpec

__all__ = ["TxtLookup", "all_findings"]

#: The injected DNS function: ``await fn(name, rdtype)`` gives an
#: :class:`analyzer.protocols.resolve.Lookup` (in a probe: ``lambda n, t: lookup(ctx.run, n, t)``).
#: Despite the name it is asked for other types too (A, AAAA, MX, PTR, SPF).
TxtLookup: TypeAlias = Callable[[str, str], Awaitable[Lookup]]


def all_findings() -> tuple[FindingSpec, ...]:
    """Every finding specification of every module of this package (for a probe's catalogue)."""
    from probes.mailauth.dkim import FINDINGS as DKIM  # noqa: PLC0415
    from probes.mailauth.dmarc import FINDINGS as DMARC  # noqa: PLC0415
    from probes.mailauth.mtasts import FINDINGS as MTASTS  # noqa: PLC0415
    from probes.mailauth.spf import FINDINGS as SPF  # noqa: PLC0415
    from probes.mailauth.tlsrpt import FINDINGS as TLSRPT  # noqa: PLC0415

    return SPF + DMARC + DKIM + MTASTS + TLSRPT
