"""The Public Suffix List's own test vectors through ``dmarc.organizational_domain()``.

RFC 7489 3.2 defines the organizational domain as the public suffix plus one label, found
with the Public Suffix List: exactly the registrable domain the list's ``test_psl.txt``
(``data/publicsuffix/``) checks. Where the file says ``null`` (no registrable domain: the
name is itself a public suffix, or is no usable name), rca gives the name itself, so that
policy discovery asks only ``_dmarc.<name>`` (RFC 7489 6.6.3).

The one ``checkPublicSuffix(null, null)`` line has no Python counterpart (the function
takes a string) and is not run; the test below pins that count.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from publicsuffixlist import PublicSuffixList

from probes.mailauth.dmarc import organizational_domain

VECTORS = Path(__file__).parent / "data" / "publicsuffix" / "test_psl.txt"
_CHECK = re.compile(r"checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);")


def _load() -> list[tuple[str | None, str | None]]:
    out: list[tuple[str | None, str | None]] = []
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        match = _CHECK.fullmatch(line.strip())
        if match is not None:
            given, wanted = (None if g == "null" else g[1:-1] for g in match.groups())
            out.append((given, wanted))
    return out


ALL = _load()
RUN = [(given, wanted) for given, wanted in ALL if given is not None]


@pytest.fixture(scope="module")
def psl() -> PublicSuffixList:
    return PublicSuffixList()


def test_vectors_are_all_read() -> None:
    # Given the test file (commented-out lines are not vectors)
    # When its vectors are read
    # Then all 78 are there, and only the null input is left out
    assert (len(ALL), len(RUN)) == (78, 77)


@pytest.mark.parametrize(("given", "wanted"), RUN, ids=[given or "" for given, _ in RUN])
def test_public_suffix_vector(psl: PublicSuffixList, given: str, wanted: str | None) -> None:
    # Given a name and the registrable domain the list's maintainers expect for it
    # When rca finds the DMARC organizational domain
    got = organizational_domain(given, psl=psl)
    # Then it is that registrable domain, or the name itself when there is none
    assert got == (wanted if wanted is not None else given.rstrip(".").lower())
