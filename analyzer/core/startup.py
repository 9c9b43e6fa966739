"""The cyclic garbage collector while a short-lived ``rca`` process starts.

Starting a check imports some 600 modules: ~80,000 objects (modules, classes, functions,
constants) that live as long as the process. Python's cyclic collector runs every 700 net
allocations and, as the objects age, traverses them again and again: ~100 collections and
~50 ms of CPU for ``--tests dns,mailauth``, ~100 ms for a full check, for no garbage worth the
name (imports make almost no reference cycles that die).

So the ``rca`` process, for ``rca check``, turns collection off while it imports and plans
(:func:`defer`). Once the planned probes are imported (the pipeline calls :func:`settle`
then), everything alive is moved to the permanent generation (:func:`gc.freeze`) and
collection is turned back on: the collections of the run traverse only what the run
allocates, and reclaim its cycles as before. It is the sequence CPython's documentation of
:func:`gc.freeze` gives for a process about to fork (disable early, freeze, enable), for a
process that imports a lot and then works. What the frozen objects include besides modules
(the run's state at that moment, a few hundred objects of garbage) lives as long as the
process: fine for one check, not for a batch or a server, whose commands settle before any
check.

A program using rca's API, or calling ``main(argv)``, keeps its own collector settings:
:func:`settle` does nothing unless :func:`defer` turned collection off in this process.
"""

from __future__ import annotations

import gc

__all__ = ["defer", "settle"]

# Process-wide by nature, as the collector is: whether this module turned collection off.
_deferred: list[bool] = []


def defer() -> None:
    """Turn the cyclic collector off until :func:`settle` (if it is on at all)."""
    if gc.isenabled() and not _deferred:
        gc.disable()
        _deferred.append(True)


def settle() -> None:
    """Freeze what is alive now and turn the collector back on, if :func:`defer` turned it
    off; otherwise do nothing (idempotent)."""
    if _deferred:
        _deferred.clear()
        gc.freeze()
        gc.enable()
