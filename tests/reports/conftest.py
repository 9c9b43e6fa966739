"""Reports built once per session by the real pipeline (see sample.py), and the HTML parser."""

from __future__ import annotations

import pytest

from analyzer.core.model import Report
from tests.reports.sample import big_report, hostile_report, sample_report


@pytest.fixture(scope="session")
def sample() -> Report:
    """Every status and evidence shape."""
    return sample_report()


@pytest.fixture(scope="session")
def hostile() -> Report:
    """Injection attempts in every server-controlled field."""
    return hostile_report()


@pytest.fixture(scope="session")
def big() -> Report:
    """About 200 steps with transcripts."""
    return big_report()
