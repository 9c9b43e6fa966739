"""The JSON report: the model itself, valid against the committed schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from analyzer.core.model import SCHEMA_VERSION, Report, report_from_json
from reports.json import dumps

SCHEMA = Path(__file__).parents[2] / "reports" / "schema" / "report.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", ["sample", "hostile", "big"])
def test_report_validates_against_the_committed_schema(
    name: str, validator: Draft202012Validator, request: pytest.FixtureRequest
) -> None:
    # Given a report built by the pipeline
    report: Report = request.getfixturevalue(name)
    # When it is written as JSON
    data = json.loads(dumps(report))
    # Then it is valid against reports/schema/report.schema.json, with its version
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    assert data["schema_version"] == SCHEMA_VERSION


def test_schema_rejects_a_report_with_an_unknown_status(
    sample: Report, validator: Draft202012Validator
) -> None:
    # Given a report whose result has a status the model does not know
    data = json.loads(dumps(sample))
    data["results"][0]["status"] = "mostly-ok"
    # Then the schema rejects it: it is strict enough to catch a drifting writer
    assert not validator.is_valid(data)


def test_json_round_trips_to_the_same_report(hostile: Report) -> None:
    # Given the hostile report; When it is written and read back; Then nothing changed
    assert report_from_json(json.loads(dumps(hostile))) == hostile


def test_json_is_utf8_text_ending_with_a_newline(hostile: Report) -> None:
    # Given hostile text (lone surrogates, controls) in the report
    text = dumps(hostile)
    # Then the JSON is encodable UTF-8 and ends with a newline
    assert text.endswith("}\n")
    text.encode("utf-8")  # no lone surrogate or other unencodable text
