"""The lab's one exception.

``LabError`` carries a one-line message meant for the user (what went wrong and what to do);
``rca lab ...`` prints it and exits 3. Every failure of ``Lab.up``/``Lab.down`` that is not a bug
of ours ends as a ``LabError``: not root, a missing binary, a server that did not start (the
message then names its log file and quotes its last lines).
"""

from __future__ import annotations

__all__ = ["LabError"]


class LabError(RuntimeError):
    """The lab could not be started, stopped or inspected; the message says why, in one line."""
