"""The batch file and the exporter's file refuse a mistake in their tables with one message
shape, written once (analyzer.operations.batch: check_sections, check_table, check_number)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer.operations.batch import BatchFileError, parse_batch
from analyzer.operations.serve import parse_exporter

_TARGETS = '[[targets]]\ntarget = "a.test"\n'
_MODULES = '[modules.mail]\ntests = ["dns"]\n'


def _batch(text: str) -> None:
    parse_batch(tomllib.loads(text + _TARGETS), base=Path("."), source="f.toml")


def _exporter(text: str) -> None:
    allow = "" if "exporter" in text else '[exporter]\nallow = ["a.test"]\n'
    parse_exporter(tomllib.loads(allow + text + _MODULES), base=Path("."), source="f.toml")


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (_batch, "[extra]\nx = 1\n",
         "f.toml: unknown section(s) extra; expected [batch], [defaults] and [[targets]]"),
        (_exporter, "[extra]\nx = 1\n",
         "f.toml: unknown section(s) extra; expected [exporter] and [modules.NAME]"),
        (_batch, 'batch = "fast"\n', "f.toml: [batch] must be a table"),
        (_batch, 'defaults = "all"\n', "f.toml: [defaults] must be a table"),
        (_exporter, 'exporter = 1\n', "f.toml: [exporter] must be a table"),
        (_batch, "[batch]\nspeed = 1\n",
         "f.toml: batch.speed: unknown key; known: concurrency, history, keep, keep_days, out, "
         "per_host, share"),
        (_exporter, '[exporter]\nallow = ["a.test"]\nspeed = 1\n',
         "f.toml: exporter.speed: unknown key; known: "),
        (_batch, "[batch]\nper_host = 0\n", "f.toml: batch.per_host: expected a whole number ≥ 1"),
        (_batch, "[batch]\nkeep = true\n", "f.toml: batch.keep: expected a whole number ≥ 1"),
        (_exporter, '[exporter]\nallow = ["a.test"]\nper_host = 1.5\n',
         "f.toml: exporter.per_host: expected a whole number ≥ 1"),
        (_exporter, '[exporter]\nallow = ["a.test"]\ndefault_timeout = 0.1\n',
         "f.toml: exporter.default_timeout: expected a number ≥ 0.5"),
    ],
)
def test_both_files_name_the_table_and_key_that_is_wrong(
    parse: Callable[[str], None], text: str, message: str
) -> None:
    # Given a batch or exporter file with one mistake in its tables
    # When it is parsed
    with pytest.raises(BatchFileError) as caught:
        parse(text)
    # Then the one-line message says where and what, in the same words for both files
    assert str(caught.value).startswith(message)
