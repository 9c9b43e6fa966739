"""``--netns``: entering a namespace that cannot be entered is a usage error, in one line."""

from __future__ import annotations

import pytest

from analyzer.core.errors import UsageError
from analyzer.protocols.netns import NETNS_DIR, enter_netns


def test_a_missing_namespace_is_a_usage_error_naming_it() -> None:
    # Given a namespace name that `ip netns add` never created
    name = "rca-test-no-such-namespace"
    assert not (NETNS_DIR / name).exists()
    # When rca is asked to enter it, Then the user is told which one, and where it looked
    with pytest.raises(UsageError, match=rf"network namespace '{name}' does not exist"):
        enter_netns(name)
