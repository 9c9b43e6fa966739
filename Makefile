# Developer shortcuts (after scripts/install.sh made .venv); the README's two commands need no make.
PY ?= .venv/bin/python

.PHONY: install test lint typecheck check schema catalogue docs bench-startup bench demo

install:
	scripts/install.sh

test:
	scripts/test.sh

lint:
	$(PY) -m ruff check analyzer probes reports tests bench

typecheck:
	$(PY) -m mypy analyzer probes reports

check: lint typecheck test

# Regenerate the committed JSON Schema and findings catalogue after changing the model/codes.
schema:
	$(PY) -c 'import json; from analyzer.core.model import report_json_schema as s; open("reports/schema/report.schema.json","w").write(json.dumps(s(), indent=2)+"\n")'

# probes/index.json: what planning and `rca findings` read instead of importing the probes.
catalogue:
	$(PY) -m analyzer.core.registry

docs: catalogue
	$(PY) -m analyzer findings --format markdown > docs/findings.md

bench-startup:
	$(PY) bench/startup.py

demo:
	scripts/demo.sh
