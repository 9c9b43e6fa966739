"""Operating rca over time: many targets, past runs, the exporter, the web interface.

- :mod:`.batch`: ``rca batch FILE.toml``, many targets on a schedule with bounded load;
- :mod:`.history`: past runs kept per target, and what changed between two reports
  (``rca diff``);
- :mod:`.serve`: ``rca serve``, the Prometheus exporter;
- :mod:`.web` (where present): ``rca web``, checks run from a browser.

They drive the core (plans and runs checks), render with :mod:`reports`, and are imported
only from the command line (:mod:`analyzer.cli`). Nothing in the core, the protocols, the
probes or the reports imports them.
"""
