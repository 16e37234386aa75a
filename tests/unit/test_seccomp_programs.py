"""Seccomp programs kept between processes (``seccomp.compiled`` with ``program_dir``: the warm
planner's workers of isolate-oci), and compiled once per profile within one.

A kept program is loaded into containers as their filter: a file that someone else could
have written, or that is not a program's size, must never be taken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isolate import seccomp
from isolate.seccomp import SeccompProfile, SyscallRule

# A profile of libseccomp's compiler (an architecture besides the native one), as podman's.
PROFILE = SeccompProfile(default_action="errno", rules=(SyscallRule(names=("read", "write", "exit_group")),),
                         architectures=("x86",))
ALLOW_ALL = bytes.fromhex("0600000000000f7f")        # BPF_RET | BPF_K, SECCOMP_RET_ALLOW


@pytest.fixture
def programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "programs"
    d.mkdir(mode=0o700)
    monkeypatch.setattr(seccomp, "program_dir", str(d))
    return d


def _count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = SeccompProfile.compile

    def counted(self: SeccompProfile) -> bytes:
        calls.append(1)
        return real(self)

    monkeypatch.setattr(SeccompProfile, "compile", counted)
    return calls


def test_a_program_compiled_once_is_read_by_the_next_process(programs: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    expected = PROFILE.compile()
    calls = _count_compiles(monkeypatch)
    assert seccomp.compiled(PROFILE) == expected
    assert calls == [1]
    [kept] = list(programs.iterdir())
    assert kept.read_bytes() == expected and kept.stat().st_mode & 0o777 == 0o600
    assert seccomp.compiled(PROFILE) == expected     # read, not compiled
    assert calls == [1]
    other = SeccompProfile(default_action="errno", rules=(SyscallRule(names=("read",)),),
                           architectures=("x86",))
    assert seccomp.compiled(other) == other.compile() != expected
    assert len(list(programs.iterdir())) == 2


@pytest.mark.parametrize("tamper", ["group-writable", "world-writable", "symlink", "odd-size", "empty",
                                    "directory"])
def test_a_kept_program_others_could_write_or_of_no_program_size_is_compiled_again(
        programs: Path, tamper: str, tmp_path: Path) -> None:
    expected = PROFILE.compile()
    seccomp.compiled(PROFILE)
    [kept] = list(programs.iterdir())
    kept.unlink()
    if tamper == "symlink":
        target = tmp_path / "allow"
        target.write_bytes(ALLOW_ALL)
        target.chmod(0o600)
        kept.symlink_to(target)
    elif tamper == "directory":
        kept.mkdir()
    else:
        data = {"odd-size": ALLOW_ALL + b"\0", "empty": b""}.get(tamper, ALLOW_ALL)
        kept.write_bytes(data)
        kept.chmod({"group-writable": 0o620, "world-writable": 0o602}.get(tamper, 0o600))
    assert seccomp.compiled(PROFILE) == expected


def test_a_program_directory_that_cannot_be_used_compiles_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "program_dir", str(tmp_path / "missing"))
    assert seccomp.compiled(PROFILE) == PROFILE.compile()
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setattr(seccomp, "program_dir", str(tmp_path / "link"))   # not followed
    assert seccomp.compiled(PROFILE) == PROFILE.compile()
    assert list(real.iterdir()) == []


def test_an_oci_profile_is_compiled_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """convert checks the architectures by compiling; the plan takes that same program."""
    from isolate import _cache
    from isolate._plans import seccomp_program
    from isolate.oci.convert import convert_bundle

    monkeypatch.setattr(_cache, "_MEMO", {})
    config: dict[str, Any] = {
        "ociVersion": "1.0.2", "root": {"path": "rootfs"},
        "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}],
                  "seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                              "syscalls": [{"names": ["read", "write", "exit_group"],
                                            "action": "SCMP_ACT_ALLOW"}]}}}
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config))
    calls = _count_compiles(monkeypatch)
    with convert_bundle(tmp_path) as conv:
        assert calls == [1]
        program = seccomp_program(conv.config.process)
    assert calls == [1]
    assert program == conv.config.process.seccomp.compile()      # type: ignore[union-attr]
