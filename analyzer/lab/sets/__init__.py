"""The lab's scenarios, one module per area; :data:`analyzer.lab.scenarios.SCENARIOS` joins them.

Each module holds a ``SCENARIOS`` tuple. Add a scenario by appending to the module of its
area (a new area: a new module, added to the join in ``analyzer/lab/scenarios.py``).
"""
