"""What a report records about where it ran (RunContext.environment)."""

from __future__ import annotations

import platform
import ssl
import subprocess
from typing import Any

import pytest

from analyzer.core.context import RunContext, RunOptions


def test_environment_names_platform_and_openssl_without_a_subprocess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # platform.platform() ran `uname -p` at every run (about 9 ms); nothing here may fork.
    platform._uname_cache = None  # type: ignore[attr-defined]  # noqa: SLF001
    monkeypatch.setattr(platform, "_platform_cache", {})

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"environment() started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    env = RunContext(RunOptions()).environment()
    uname = platform.uname()
    assert env["platform"].startswith(f"{uname.system}-{uname.release}-{uname.machine}")
    libc, version = platform.libc_ver()
    if libc:
        assert env["platform"].endswith(f"-{libc}{version}")
    assert env["openssl"] == ssl.OPENSSL_VERSION
    assert env["python"] == platform.python_version()
