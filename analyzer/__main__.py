"""``python -m analyzer`` is ``rca``."""

from __future__ import annotations

from analyzer.cli import main

raise SystemExit(main())
