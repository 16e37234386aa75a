"""spawn() checks a shape of arguments once: what it keeps must never stand in for other arguments.

``spawn`` keeps the ``ProcessSpec`` and ``Isolation`` it made from equal
arguments (see ``process._spec_key``).  Arguments that compare equal but
are checked differently (``1`` and ``True``; a list and a string), arguments
changed in place between spawns, and what is read from the caller at spawn
time (the current directory, ``PATH``) must each behave as on a first spawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import isolate
from isolate import ConfigError


def test_an_equal_value_of_another_type_is_checked_again() -> None:
    assert isolate.run(["/bin/true"], umask=1).returncode == 0
    with pytest.raises(ConfigError, match="umask"):
        isolate.run(["/bin/true"], umask=True)  # type: ignore[arg-type]
    assert isolate.run(["/bin/true"], rlimits={"nofile": 64}).returncode == 0
    with pytest.raises(ConfigError, match="rlimits"):
        isolate.run(["/bin/true"], rlimits={"nofile": 64.0})  # type: ignore[dict-item]


def test_a_string_argv_is_refused_after_a_list_of_the_same_text() -> None:
    assert isolate.run(["/bin/true"]).returncode == 0
    with pytest.raises(ConfigError, match="argv"):
        isolate.run("/bin/true")  # type: ignore[arg-type]


def test_arguments_changed_in_place_are_seen() -> None:
    argv = ["/bin/echo", "first"]
    env = {"X": "one", "PATH": "/usr/bin:/bin"}
    assert isolate.run(argv, capture_output=True).stdout == b"first\n"
    argv[1] = "second"
    assert isolate.run(argv, capture_output=True).stdout == b"second\n"
    show = ["/bin/sh", "-c", "echo $X"]
    assert isolate.run(show, env=env, capture_output=True).stdout == b"one\n"
    env["X"] = "two"
    assert isolate.run(show, env=env, capture_output=True).stdout == b"two\n"


def test_a_relative_cwd_follows_the_callers_directory(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        r = isolate.run(["/bin/pwd"], cwd=".", capture_output=True)
        assert r.stdout.decode().strip() == str(tmp_path / name)


def test_path_is_read_at_each_spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        tool = d / "which-one"
        tool.write_text(f"#!/bin/sh\necho {name}\n")
        tool.chmod(0o755)
    for name in ("a", "b"):
        monkeypatch.setenv("PATH", f"{tmp_path / name}:{os.defpath}")
        r = isolate.run(["which-one"], capture_output=True)
        assert r.stdout == f"{name}\n".encode()
