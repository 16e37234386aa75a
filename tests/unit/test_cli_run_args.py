"""``isolate run`` argument parsing (no process is started here)."""

from __future__ import annotations

import argparse

import pytest

import isolate
from isolate.cli import run


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    run.add_parser(sub)
    return p.parse_args(["run", *argv])


@pytest.mark.parametrize("text,value", [("512m", 512 << 20), ("1g", 1 << 30), ("4096", 4096),
                                        ("64K", 64 << 10), ("2gb", 2 << 30)])
def test_parse_size(text: str, value: int) -> None:
    assert run.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1m", "lots", "0", "1.5g"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(isolate.ConfigError):
        run.parse_size(text)


@pytest.mark.parametrize("text,out", [
    ("/a:/b", ("/a", "/b", False)), ("/a:/b:ro", ("/a", "/b", True)),
    ("/a", ("/a", "/a", False)), ("/a:ro", ("/a", "/a", True)), ("/a:/b:rw", ("/a", "/b", False)),
])
def test_parse_bind(text: str, out: tuple[str, str, bool]) -> None:
    assert run.parse_bind(text) == out


@pytest.mark.parametrize("text", [":/b", "/a:", "/a:/b:/c:/d"])
def test_parse_bind_rejects(text: str) -> None:
    with pytest.raises(isolate.ConfigError):
        run.parse_bind(text)


def test_options_become_a_container() -> None:
    args = parse("--memory", "64m", "--pids", "10", "--hostname", "h", "--env", "A=1",
                 "--net", "host", "--user", "1000", "--", "sh", "-c", "x")
    assert args.argv[-3:] == ["sh", "-c", "x"]
    c = run.container_from_args(args)
    assert c.limits.memory_max == 64 << 20 and c.limits.pids_max == 10
    assert c.hostname == "h" and c.env["A"] == "1" and "net" not in c.namespaces
    assert c.user == 1000
    c.close()


def test_bad_env_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(isolate.ConfigError, match="KEY=VALUE"):
        run.container_from_args(parse("--env", "novalue", "--", "true"))
    assert run.main(parse()) == 125
    assert "no command" in capsys.readouterr().err


def test_negative_timeout_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(parse("--timeout", "-1", "--", "true")) == 125
    assert capsys.readouterr().err.startswith("isolate: --timeout")


class _FakeProcess:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_signal(self, sig: int) -> None:
        self.sent.append(sig)


class _FakeContainer:
    def __init__(self) -> None:
        self.process: _FakeProcess | None = None
        self.killed = 0

    def kill(self) -> None:
        self.killed += 1


@pytest.mark.parametrize("order", ["signal-then-started", "started-then-signal", "signal-before-process"])
def test_one_signal_is_forwarded_once_and_never_kills(order: str) -> None:
    # A signal handled once the process exists, followed by started(), used to count twice:
    # the sandbox was killed (137) instead of the command getting SIGTERM.
    c = _FakeContainer()
    f = run._SignalForwarder(c)
    if order != "signal-before-process":
        c.process = _FakeProcess()
    if order == "started-then-signal":
        f.started()
    f._handler(15, None)
    c.process = c.process or _FakeProcess()
    f.started()
    f.started()
    assert (c.process.sent, c.killed) == ([15], 0)
    f._handler(15, None)            # a second signal kills the whole sandbox
    assert (c.process.sent, c.killed) == ([15], 1)


def test_a_value_that_looks_like_an_option_is_kept_with_its_option() -> None:
    from isolate.cli.run import join_values

    assert join_values(["--memory", "-5m", "--pids", "3", "--", "ls", "--memory", "-l"]) == [
        "--memory=-5m", "--pids", "3", "--", "ls", "--memory", "-l"]
    assert join_values(["--cpus", "--", "true"]) == ["--cpus", "--", "true"]
