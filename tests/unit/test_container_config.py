"""Container and seccomp options: bad input is a ConfigError before anything exists."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import isolate
from isolate.container import Container, Result
from isolate.seccomp import ArgCmp, SeccompProfile, SyscallRule, available


def test_unknown_capability() -> None:
    with pytest.raises(isolate.ConfigError, match="CAP_FLY"):
        Container(capabilities=["CAP_FLY"])


def test_invalid_seccomp_action() -> None:
    with pytest.raises(isolate.ConfigError, match="explode"):
        SeccompProfile(default_action="explode")
    with pytest.raises(isolate.ConfigError, match="explode"):
        SyscallRule(names=("read",), action="explode")
    with pytest.raises(isolate.ConfigError):
        SyscallRule(names="read")  # type: ignore[arg-type]
    with pytest.raises(isolate.ConfigError):
        ArgCmp(index=7, op="eq", value=0)
    with pytest.raises(isolate.ConfigError):
        Container(seccomp="strict")


@pytest.mark.parametrize("timeout", [-1, "5", True])
def test_negative_or_bad_timeout(timeout: object) -> None:
    c = Container(rootfs=None, namespaces=())
    with pytest.raises(isolate.ConfigError, match="timeout"):
        c.run(["/bin/true"], timeout=timeout)  # type: ignore[arg-type]
    assert c.process is None


def test_other_bad_options(tmp_path: Path) -> None:
    with pytest.raises(isolate.ConfigError):
        Container(rootfs="ubuntu")
    with pytest.raises(isolate.ConfigError):
        Container(namespaces={"pid", "nope"})
    with pytest.raises(isolate.ConfigError, match="net must be"):
        Container(net="no/such net")
    with pytest.raises(isolate.ConfigError, match="publish needs a network"):
        Container(publish=["8080:80"])
    with pytest.raises(isolate.ConfigError, match="host port must be 1 to 65535"):
        Container(net="bridge", publish=["70000:80"])
    with pytest.raises(isolate.ConfigError, match="dns: 'x' is not an IPv4 address"):
        Container(net="bridge", dns=["x"])
    with pytest.raises(isolate.ConfigError, match="netns_pool needs a network"):
        Container(netns_pool=object())  # type: ignore[arg-type]
    with pytest.raises(isolate.ConfigError, match="mnt"):
        Container(namespaces={"pid"})
    with pytest.raises(isolate.ConfigError, match="cwd"):
        Container(cwd="../x")
    with pytest.raises(isolate.ConfigError, match="limits"):
        Container(limits={"memory": 1})


def test_root_maps_its_container_to_a_block_of_ids_of_its_own() -> None:
    with Container() as c:
        if os.geteuid() == 0:
            assert c.id_block is not None
            assert list(c._uid_map) == [isolate.IdMap(inside=0, outside=c.id_block[0], count=65536)]
            assert list(c._gid_map) == [isolate.IdMap(inside=0, outside=c.id_block[1], count=65536)]
        assert "user" in c.namespaces and "net" in c.namespaces
    assert c.id_block is None or not os.path.exists(f"/run/isolate/userns/{c.id_block[0]}") or \
        not open(f"/run/isolate/userns/{c.id_block[0]}").read().split()[2].startswith(f"{os.getpid()}-")
    with Container(net="host") as c:
        assert "net" not in c.namespaces
    if os.geteuid() == 0:
        with Container(userns="identity") as c:
            assert list(c._uid_map) == [isolate.IdMap(inside=0, outside=0, count=4294967295)]
            assert c.id_block is None
        with Container(userns="keep-id") as c:
            assert list(c._uid_map) == [isolate.IdMap(inside=0, outside=0, count=1)]


def test_result_json_and_check() -> None:
    r = Result(args=["x", b"y"], returncode=-9, stdout=b"out\xff", stderr=None, wall_time=1.0,
               cpu_time=0.5, peak_memory=None, oom_killed=True, timed_out=False,
               root_mode="pivot_root")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["args"] == ["x", "y"] and d["stdout"] == "out\ufffd" and d["oom_killed"] is True
    with pytest.raises(Exception):
        r.check_returncode()


@pytest.mark.skipif(not available(), reason="libseccomp.so.2 is not installed")
def test_default_profile_compiles_and_depends_on_capabilities() -> None:
    base = SeccompProfile.default().compile()
    admin = SeccompProfile.default(set(isolate.container.OCI_DEFAULT_CAPS) | {"CAP_SYS_ADMIN"}).compile()
    assert len(base) % 8 == 0 and 0 < len(base) // 8 <= 4096
    assert base != admin


def test_unavailable_libseccomp_raises_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    from isolate import seccomp

    import isolate._seccomp_ffi as seccomp_ffi

    class NoLib:
        def dlopen(self, name: str) -> None:
            raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(seccomp, "_lib", None)
    monkeypatch.setattr(seccomp_ffi, "ffi", NoLib())
    with pytest.raises(isolate.UnsupportedError, match="libseccomp"):
        SeccompProfile.default().compile()
    assert not seccomp.available()
