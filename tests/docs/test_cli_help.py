"""Every ``--help`` of isolate and isolate-oci shows examples that work, and the man pages are the parsers'.

isolate's examples (isolate, run, probe, gc) are run as written.  isolate-oci's
walk-through (its top-level help) is run in a temporary directory, with a
private ``--root`` and container ids of this test's own; each verb's examples
are parsed by the real parser, and the verbs isolate refuses (checkpoint,
restore) are run to see them refused as their help says.  docs/man/*.1 must
be what docs/man/generate.py makes from the parsers now, and render without
a warning.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from isolate.cli import oci
from isolate.cli.__main__ import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "docs" / "man"
BIN = Path(sys.executable).parent          # the installed isolate and isolate-oci scripts
HELPS = [("isolate",), *[("isolate", c) for c in COMMANDS], ("isolate-oci",),
         *[("isolate-oci", v) for v in oci.VERBS]]


def help_text(*command: str) -> str:
    r = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def examples(text: str) -> list[str]:
    """The command lines of the help's examples: its lines ``$ ...`` after ``examples``."""
    _, heading, tail = text.partition("\nexamples")
    assert heading, f"no examples in:\n{text}"
    return [line.strip()[2:] for line in tail.splitlines() if line.strip().startswith("$ ")]


def shell(line: str, cwd: Path, host: Any = None) -> subprocess.CompletedProcess[str]:
    """``line`` run by sh in ``cwd``, with the installed scripts first on PATH; in the
    network namespace of ``host`` (a ``FakeHost``) with its network state, if given.

    Output goes to files, not pipes: a container that create starts keeps its
    stdout and stderr open, and a pipe would never reach its end.
    """
    env = dict(host.env() if host is not None else os.environ,
               PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    argv = ["sh", "-ec", line]
    if host is not None:
        argv = ["nsenter", f"--net=/run/netns/{host.host}", "--", *argv]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        r = subprocess.run(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr,
                           timeout=120, check=False, stdin=subprocess.DEVNULL)
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode, stdout.read(), stderr.read())


@pytest.mark.parametrize("command", HELPS, ids=" ".join)
def test_every_help_shows_an_example_of_itself(command: tuple[str, ...]) -> None:
    lines = examples(help_text(*command))
    assert [line for line in lines if shlex.split(line)[:len(command)] == list(command)], lines


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_s_parser_built_alone_is_the_whole_parser_s(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ``isolate COMMAND`` builds the parser of COMMAND's module only; what it says is what the
    # parser of every command says of COMMAND.
    from isolate.cli.__main__ import build_parser

    monkeypatch.setenv("COLUMNS", "100")
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert help_text("isolate", command) == subs.choices[command].format_help()


@pytest.mark.root
@pytest.mark.parametrize("command", [c for c in HELPS if c[0] == "isolate"], ids=" ".join)
def test_isolate_examples_run_as_written(command: tuple[str, ...], tmp_path: Path) -> None:
    # In a fake host (tests/net/fakehost.py) with network state of its own: the examples
    # that make networks, bridges and published ports touch none of the machine's.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "net"))
    from fakehost import FakeHost

    host = FakeHost(tmp_path / "net-state")
    try:
        for line in examples(help_text(*command)):
            assert line.startswith("isolate "), line
            r = shell(line, tmp_path, host)
            assert r.returncode == 0, f"{line}\nexit {r.returncode}\n{r.stdout}{r.stderr}"
    finally:
        host.close()


@pytest.mark.root
def test_isolate_oci_walkthrough_runs(tmp_path: Path) -> None:
    """The top-level help's container life, step by step, in tmp_path."""
    state = tmp_path / "state"
    box = f"mybox-{uuid.uuid4().hex[:8]}"       # an id (and cgroup) of this test's own
    steps = [line.replace("isolate-oci ", f"isolate-oci --root {state} ").replace("mybox", box)
             for line in examples(help_text("isolate-oci"))]
    assert any(s.startswith("isolate-oci") for s in steps)
    out: dict[str, str] = {}
    try:
        for step in steps:
            r = shell(step, tmp_path)
            assert r.returncode == 0, f"{step}\nexit {r.returncode}\n{r.stdout}{r.stderr}"
            out[shlex.split(step)[3] if step.startswith("isolate-oci") else step] = r.stdout
    finally:
        subprocess.run([str(BIN / "isolate-oci"), "--root", str(state), "delete", "--force", box],
                       capture_output=True, timeout=60, check=False)
    assert json.loads(out["state"])["status"] == "running"
    assert "hello from" in out["exec"]
    assert box in out["list"]
    assert not os.listdir(state)                # the last step deleted it


@pytest.mark.parametrize("verb", list(oci.VERBS))
def test_isolate_oci_verb_examples_parse(verb: str, tmp_path: Path) -> None:
    """Each example of ``isolate-oci VERB --help`` is a command line of VERB that the real parser accepts."""
    for line in examples(help_text("isolate-oci", verb)):
        argv = shlex.split(line)
        assert argv[:2] == ["isolate-oci", verb], line
        args = oci.parse_args(argv[1:])
        assert args.verb == verb
        if verb not in oci.IMPLEMENTED:       # the help says it fails: it does
            r = subprocess.run([str(BIN / "isolate-oci"), "--root", str(tmp_path), *argv[1:]],
                               capture_output=True, text=True, timeout=60, check=False)
            assert (r.returncode, r.stderr) == (
                1, f"isolate-oci: {verb}: not supported (no checkpoint/restore in isolate)\n")


def generator() -> ModuleType:
    pytest.importorskip("argparse_manpage", reason="pip install '.[test]' installs argparse-manpage")
    spec = importlib.util.spec_from_file_location("isolate_man_generate", MAN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["isolate", "isolate-oci"])
def test_man_page_is_what_the_parsers_make(page: str) -> None:
    path, committed, now = generator().current(page)
    assert committed is not None, f"{path} is missing: run python docs/man/generate.py"
    assert committed == now, f"{path} is stale: run python docs/man/generate.py"


@pytest.mark.parametrize("page", ["isolate", "isolate-oci"])
def test_man_page_renders_without_warnings_and_has_every_example(page: str) -> None:
    if shutil.which("groff") is None:
        pytest.fail("groff is missing: apt-get install groff-base (.ci/packages.txt)")
    path = MAN / f"{page}.1"
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert (r.returncode, r.stderr) == (0, "")
    r = subprocess.run(["groff", "-man", "-ww", "-Tascii", "-P-cbou", "-rLL=200n", str(path)],
                       capture_output=True, text=True, timeout=60, check=True)
    assert r.stderr == ""
    for command in [c for c in HELPS if c[0] == page]:
        if len(command) > 1:
            assert f"COMMAND '{' '.join(command)}'" in r.stdout
        for line in examples(help_text(*command)):
            assert f"$ {line}" in r.stdout
