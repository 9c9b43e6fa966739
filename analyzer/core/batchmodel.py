"""What a batch and the history produce, as data: the types both sides of a report read.

``rca batch`` (:mod:`analyzer.operations.batch`) fills them and :mod:`reports.index` renders them;
:mod:`analyzer.operations.history` computes :class:`Changes` between two reports, which the HTML
report and the index show. Keeping them here, beside the report model, lets the renderers
read them without importing the code that schedules runs, and lets the finding catalogue
(:func:`analyzer.core.registry.all_finding_specs`) list the batch's own findings
(:data:`BATCH_FINDINGS`) without importing the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from analyzer.core.findings import FindingSpec
from analyzer.core.model import Status, worst_exit_code

__all__ = [
    "BATCH_FINDINGS",
    "CHECK_CRASHED",
    "TARGET_UNUSABLE",
    "BatchResult",
    "Change",
    "ChangeDirection",
    "ChangeKind",
    "Changes",
    "Expiry",
    "TargetSummary",
]

# --- the batch's own findings ---------------------------------------------------------------

TARGET_UNUSABLE = FindingSpec(
    code="batch.target_unusable",
    status=Status.ERROR,
    title="rca could not use this target or its settings",
    meaning="The batch file names a target that is not an address, domain, host or URL, "
    "or one of its settings cannot be used (a password variable that is not set, a file "
    "that cannot be read, an unknown test). Nothing was checked; the other targets were.",
    remediation="Correct the target's entry in the batch file; the detail says what is "
    "wrong.",
)
CHECK_CRASHED = FindingSpec(
    code="batch.check_crashed",
    status=Status.ERROR,
    title="rca could not finish the check of this target",
    meaning="The check of this target stopped on an unexpected condition outside the "
    "probes (a bug in rca), or overran its deadline by far. This says nothing about the "
    "target; the other targets were checked.",
    remediation="Report it with the JSON report attached (it contains no secrets).",
)
BATCH_FINDINGS = (TARGET_UNUSABLE, CHECK_CRASHED)


# --- what changed between two runs (computed by the history) ---------------------------------

ChangeKind = Literal["verdict", "new", "resolved", "status", "certificate", "dns", "port"]
ChangeDirection = Literal["worse", "better", "info"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One difference between two runs: what, where, before and after."""

    kind: ChangeKind
    direction: ChangeDirection
    subject: str
    title: str
    before: str | None = None
    after: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """Every :class:`Change` from the ``old`` run to the ``new`` one, worst first."""

    target: str
    old_started: datetime
    new_started: datetime
    old_verdict: int
    new_verdict: int
    items: tuple[Change, ...] = ()

    def count(self, kind: ChangeKind) -> int:
        """How many changes of ``kind``."""
        return sum(1 for c in self.items if c.kind == kind)

    @property
    def worse(self) -> int:
        """How many changes are for the worse."""
        return sum(1 for c in self.items if c.direction == "worse")

    @property
    def better(self) -> int:
        """How many changes are for the better."""
        return sum(1 for c in self.items if c.direction == "better")


# --- a finished batch ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry:
    """The certificate of a target that expires first."""

    subject: str
    not_after: datetime
    days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetSummary:
    """What the batch keeps of a finished target (the report itself is on disk)."""

    name: str
    target: str
    exit_code: int
    started: datetime
    elapsed_ms: float
    failures: int
    warnings: int
    unknown: int
    expiry: Expiry | None = None
    #: None: no history (or no previous run) to compare with.
    changes: Changes | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    junit: str = ""
    prometheus: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """A finished batch: one summary per target, in the file's order."""

    started: datetime
    elapsed_s: float
    targets: tuple[TargetSummary, ...]
    out: Path
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The worst target's code (monitoring-plugins order)."""
        return worst_exit_code(s.exit_code for s in self.targets)
