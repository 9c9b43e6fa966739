"""The lab's one exception.

``LabError`` carries a one-line message meant for the user (what went wrong and what to do);
``rca lab ...`` prints it and exits 3. Every failure of ``Lab.up``/``Lab.down`` that is not a bug
of ours ends as a ``LabError``: not root, a missing binary, a server that did not start (the
message then names its log file and quotes its last lines).
"""

from __future__ import annotations

from analyzer.core.errors import LabUnavailable

__all__ = ["LabError"]


# A LabUnavailable (an RcaError), so `rca` prints it on one line and exits 3 like any other
# error the user can fix, without knowing about the lab.
class LabError(LabUnavailable):
    """The lab could not be started, stopped or inspected; the message says why, in one line."""
