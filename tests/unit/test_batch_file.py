"""The batch file (analyzer/operations/batch.py): parsing, defaults, names, refused inline
secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from analyzer.core.errors import UsageError
from analyzer.core.targets import parse_target
from analyzer.operations.batch import BatchFileError, load_batch, options_for, parse_batch

SECRET = "Hunter2-inline-secret"  # noqa: S105 - test data


def parse(text: str, base: Path = Path("/etc/rca")) -> object:
    return parse_batch(tomllib.loads(text), base=base, source="batch.toml")


@pytest.mark.parametrize(
    "text",
    [
        f'[[targets]]\ntarget = "a.test"\npassword = "{SECRET}"\n',
        f'[defaults]\npassword = "{SECRET}"\n[[targets]]\ntarget = "a.test"\n',
        f'[[targets]]\ntarget = "a.test"\noauth_token = "{SECRET}"\n',
        f'[[targets]]\ntarget = "a.test"\nsmtp_password = "{SECRET}"\n',
    ],
    ids=["target", "defaults", "token", "prefixed"],
)
def test_an_inline_secret_is_refused_without_repeating_it(text: str) -> None:
    # Given a batch file with a password or token written in it
    # When it is parsed
    with pytest.raises(BatchFileError) as caught:
        parse(text)
    # Then the error says how to refer to a secret instead, and never shows the value
    message = str(caught.value)
    assert "password_env" in message and "password_file" in message
    assert SECRET not in message


def test_rca_batch_with_an_inline_password_exits_3_with_one_line(tmp_path: Path) -> None:
    # Given a batch file with an inline password
    path = tmp_path / "batch.toml"
    path.write_text(f'[[targets]]\ntarget = "a.test"\npassword = "{SECRET}"\n', encoding="utf-8")
    # When `rca batch` reads it
    env = {k: v for k, v in os.environ.items() if k != "RCA_PASSWORD"}
    out = subprocess.run([sys.executable, "-m", "analyzer", "batch", str(path), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                         env=env)
    # Then it exits 3 with one line naming the key, not the value, and checks nothing
    assert out.returncode == 3
    assert "targets[0].password" in out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_target_settings_override_the_defaults() -> None:
    # Given defaults and a target that changes some of them
    config = parse(
        '[defaults]\ntests = ["dns", "tls"]\ntimeout = 20\npassword_file = "pw"\n'
        '[[targets]]\ntarget = "a.test"\n'
        '[[targets]]\ntarget = "b.test"\ntests = ["dns"]\npassword_env = "B_PW"\n'
    )
    # When the targets are read
    a, b = config.targets  # type: ignore[attr-defined]
    # Then the first has the defaults, the second its own values (and only its own secret)
    assert (a.settings["tests"], a.settings["timeout"]) == (("dns", "tls"), 20.0)
    assert a.settings["password_file"] == "pw"
    assert b.settings["tests"] == ("dns",)
    assert b.settings["password_env"] == "B_PW" and "password_file" not in b.settings


def test_targets_may_be_plain_strings() -> None:
    # Given the short form of a target list
    config = parse('targets = ["a.test", "alice@b.test"]\n')
    # When it is parsed
    names = [(t.name, t.target) for t in config.targets]  # type: ignore[attr-defined]
    # Then each string is a target named after itself
    assert names == [("a.test", "a.test"), ("alice@b.test", "alice@b.test")]


def test_the_same_target_twice_gets_two_file_names() -> None:
    # Given one domain listed twice (with different tests)
    config = parse('[[targets]]\ntarget = "a.test"\n[[targets]]\ntarget = "a.test"\n'
                   'tests = ["dns"]\n')
    # When names are derived
    names = [t.name for t in config.targets]  # type: ignore[attr-defined]
    # Then they differ, so neither report overwrites the other
    assert names == ["a.test", "a.test-2"]


def test_a_derived_name_never_takes_an_explicit_one() -> None:
    # Given a target named "a.test" explicitly, after one that would derive that name
    config = parse('[[targets]]\ntarget = "a.test"\n[[targets]]\ntarget = "b.test"\n'
                   'name = "a.test"\n')
    # When names are given
    names = [t.name for t in config.targets]  # type: ignore[attr-defined]
    # Then the explicit name is kept and the derived one moves aside
    assert names == ["a.test-2", "a.test"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[targets]]\ntarget = "a.test"\ntest = ["dns"]\n', "targets[0].test: unknown option"),
        ('[[targets]]\ntarget = "a.test"\nname = "../x"\n', "targets[0].name"),
        ('[[targets]]\ntarget = "a"\nname = "x"\n[[targets]]\ntarget = "b"\nname = "x"\n',
         "used twice"),
        ('[defaults]\nresolver = ["not-an-ip"]\n[[targets]]\ntarget = "a.test"\n', "resolver"),
        ('[defaults]\nfamilies = [5]\n[[targets]]\ntarget = "a.test"\n', "families"),
        ('[batch]\nconcurrency = 0\n[[targets]]\ntarget = "a.test"\n', "concurrency"),
        ('[batch]\nparallel = 3\n[[targets]]\ntarget = "a.test"\n', "batch.parallel"),
        ('[batch]\nshare = "yes"\n[[targets]]\ntarget = "a.test"\n', "batch.share"),
        ("[defaults]\ntimeout = 5\n", "no targets"),
        ('[target]\nx = 1\n', "unknown section"),
    ],
)
def test_a_malformed_file_is_refused_with_where_and_what(text: str, fragment: str) -> None:
    # Given a batch file with one mistake
    # When it is parsed
    with pytest.raises(BatchFileError) as caught:
        parse(text)
    # Then the message points at the key
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("batch.toml: ")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    # Given a batch file next to its password file and CA file
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "ca.pem").write_text("", encoding="utf-8")
    path = tmp_path / "batch.toml"
    path.write_text('[defaults]\nca_file = "ca.pem"\n[[targets]]\ntarget = "alice@a.test"\n'
                    'password_file = "pw"\n', encoding="utf-8")
    config = load_batch(path)
    # When the target's options are built
    (spec,) = config.targets
    options = options_for(spec.settings, parse_target(spec.target), base=config.base, env={})
    # Then the files were found next to the batch file, and the user is the address
    assert options.ca_file == tmp_path / "ca.pem"
    assert options.credentials.password() == "s3cret"
    assert options.credentials.username == "alice@a.test"


def test_a_password_variable_that_is_not_set_is_an_error_naming_it() -> None:
    # Given a target whose password variable is not set
    config = parse('[[targets]]\ntarget = "a.test"\npassword_env = "RCA_TEST_UNSET_PW"\n')
    (spec,) = config.targets  # type: ignore[attr-defined]
    # When its options are built
    with pytest.raises(UsageError, match="RCA_TEST_UNSET_PW is not set"):
        options_for(spec.settings, parse_target(spec.target), base=Path("."), env={})


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    # Given a path that does not exist, and one that is not TOML
    (tmp_path / "bad.toml").write_text("[[targets]\n", encoding="utf-8")
    # When they are loaded, Then each error says which file and what is wrong
    with pytest.raises(BatchFileError, match="nope.toml"):
        load_batch(tmp_path / "nope.toml")
    with pytest.raises(BatchFileError, match="not valid TOML"):
        load_batch(tmp_path / "bad.toml")


def test_a_target_url_with_credentials_is_refused_without_repeating_it() -> None:
    # Given a target URL that carries a password
    text = '[[targets]]\ntarget = "https://alice:S3cret-pw@mail.x.test/autodiscover"\n'
    # When the file is parsed
    with pytest.raises(BatchFileError) as caught:
        parse_batch(tomllib.loads(text), base=Path("."), source="b.toml")
    # Then it is refused, naming the target's place, never its text
    assert "targets[0]" in str(caught.value) and "credentials" in str(caught.value)
    assert "S3cret" not in str(caught.value) and "alice" not in str(caught.value)


@pytest.mark.parametrize("kind", ["password", "oauth_token"])
def test_a_secret_from_both_a_variable_and_a_file_is_refused(kind: str) -> None:
    # Given a target naming its secret twice (which one would win is nowhere said)
    text = f'[[targets]]\ntarget = "a.test"\n{kind}_env = "X_SECRET"\n{kind}_file = "s"\n'
    # Then the file is refused, naming both settings
    with pytest.raises(BatchFileError) as caught:
        parse(text)
    assert f"{kind}_env or {kind}_file, not both" in str(caught.value)
