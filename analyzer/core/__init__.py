"""The run's core: what a check is made of, whatever it checks.

- :mod:`.model`: the report (``Status``, ``Finding``, ``Step``, ``ProbeResult``, ``Report``),
  its JSON form and schema, and the exit codes; :mod:`.batchmodel`: what a batch and the
  history produce, as data (what :mod:`reports` may read besides the model);
- :mod:`.findings`: ``FindingSpec``, a finding's code, meaning and remediation;
- :mod:`.facts`: the typed facts probes hand each other;
- :mod:`.errors`: rca's exception tree and the one place lower-layer errors are mapped;
- :mod:`.targets`: what to check (``user@domain``, domain, host, URL), parsed;
- :mod:`.context`: ``RunOptions`` (what the user chose) and ``RunContext`` (clock, deadline,
  limits, resolver, trust) for one run; :mod:`.credpolicy` (where present): which hosts may
  receive the password;
- :mod:`.probe`: what a probe is and the recorders it writes steps with; :mod:`.shared`:
  the endpoint checks the runs of one batch share;
- :mod:`.pipeline`: planning and running the probes of one check;
- :mod:`.registry`: which probes exist, and the catalogue of every finding code.

Core imports nothing from :mod:`analyzer.protocols`, :mod:`analyzer.operations` or the lab;
the registry names probes (``probes.REGISTRY``) and imports them by name when a run needs them.
"""
