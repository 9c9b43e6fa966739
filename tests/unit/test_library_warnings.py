"""Known third-party warnings are silenced for their own module only (analyzer/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from analyzer import KNOWN_LIBRARY_WARNINGS, quiet_known_library_warnings

DSA = "DSA is deprecated and support will be removed in a future release."


def _shown(message: str, category: type[Warning], module: str) -> bool:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_library_warnings()
        warnings.warn_explicit(message, category, filename="x.py", lineno=1, module=module)
    return bool(seen)


def test_dnspythons_dsa_warning_is_ignored() -> None:
    # Given the DSA deprecation raised where dnspython raises it
    # Then it is not shown
    assert not _shown(DSA, CryptographyDeprecationWarning, "dns.dnssecalgs.dsa")


@pytest.mark.parametrize(
    ("message", "category", "module"),
    [
        (DSA, CryptographyDeprecationWarning, "analyzer.lab.pki"),  # rca's own code
        (DSA, CryptographyDeprecationWarning, "dns.dnssecalgs.dsax"),  # another module
        ("RSA is deprecated", CryptographyDeprecationWarning, "dns.dnssecalgs.dsa"),
        (DSA, DeprecationWarning, "dns.dnssecalgs.dsa"),  # another category
    ],
)
def test_anything_else_still_shows(message: str, category: type[Warning], module: str) -> None:
    # Given a warning that differs from a known one in its module, message or category
    # Then it is shown
    assert _shown(message, category, module)


def test_every_known_warning_names_a_module_message_and_category() -> None:
    for message, category, module in KNOWN_LIBRARY_WARNINGS:
        assert message and module and issubclass(category, Warning)


def test_importing_dnssec_through_rca_prints_nothing() -> None:
    # Given a fresh interpreter that imports rca, then dnspython's DNSSEC module (as the
    # dnssec probe does), with Python's default warning filters (what a user sees)
    code = "import analyzer, dns.dnssec, probes.dnssec"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    # Then nothing reaches stderr
    assert done.returncode == 0
    assert done.stderr == ""
