"""Bad options raise ConfigError naming the option and value, before any process exists."""

from __future__ import annotations

import os

import pytest

import isolate
from isolate import ConfigError, IdMap
from isolate import _ops as O
from isolate import _plan as P
from isolate.process import build_plan


class NoSpawn:
    """Fails the test if anything reaches the C call."""

    def __call__(self, *a: object, **kw: object) -> None:
        raise AssertionError("a process was started for invalid input")


@pytest.fixture(autouse=True)
def no_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolate.process, "execute", NoSpawn())


@pytest.mark.parametrize("argv,kw,needle", [
    ([], {}, "argv must not be empty"),
    ("ls", {}, "argv must be a sequence"),
    (["a\0b"], {}, "argv[0] contains a NUL"),
    (["true", 5], {}, "argv[1] must be a string"),
    (["true"], {"namespaces": {"pid", "bogus"}}, "unknown namespace 'bogus'"),
    (["true"], {"namespaces": "pid"}, "namespaces must be a collection"),
    (["true"], {"uid_map": [IdMap(inside=0, outside=0)]}, "need the 'user' namespace"),
    (["true"], {"namespaces": {"user"}, "uid_map": [IdMap(inside=0, outside=0, count=10),
                                                     IdMap(inside=5, outside=100)]}, "overlap"),
    (["true"], {"hostname": "box"}, "need a uts namespace"),
    (["true"], {"namespaces": {"uts"}, "hostname": ""}, "hostname must be 1 to 64"),
    (["true"], {"env": {"A=B": "x"}}, "env key"),
    (["true"], {"env": {"A": "x\0y"}}, "NUL"),
    (["true"], {"cwd": "/tmp\0x"}, "cwd contains a NUL"),
    (["true"], {"umask": 0o1000}, "umask"),
    (["true"], {"rlimits": {"bogus": 1}}, "unknown resource 'bogus'"),
    (["true"], {"rlimits": {"nofile": (-5, 10)}}, "rlimits['nofile']"),
    (["true"], {"rlimits": {"nofile": (20, 10)}}, "soft limit above hard"),
    (["true"], {"capabilities": ["CAP_NOPE"]}, "unknown capability 'CAP_NOPE'"),
    (["true"], {"capabilities": "CAP_KILL"}, "collection of capability names"),
    (["true"], {"user": -1}, "user out of range"),
    (["true"], {"group": "no-such-group-xyz"}, "no such group"),
    (["true"], {"seccomp": b"123"}, "seccomp must be a BPF program"),
    (["true"], {"ops": ["mount"]}, "is not a plan op"),
    (["true"], {"cgroup": "/sys/fs/cgroup/x"}, "cgroup must be an isolate.Cgroup"),
])
def test_bad_option_is_a_config_error(argv: object, kw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        isolate.spawn(argv, **kw)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_fds_that_are_not_open_are_rejected() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(ConfigError, match=f"fd {r} is not open"):
        isolate.spawn(["true"], pass_fds=[r])
    with pytest.raises(ConfigError, match=f"fd {w} is not open"):
        isolate.spawn(["true"], stdout=w)
    with pytest.raises(ConfigError, match="stdio"):
        isolate.spawn(["true"], pass_fds={1: 0})


def test_no_fd_is_leaked_by_a_rejected_spawn() -> None:
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ConfigError):
        isolate.spawn(["true"], stdin=isolate.PIPE, stdout=isolate.PIPE, umask=-1)
    assert set(os.listdir("/proc/self/fd")) == before


def test_run_rejects_negative_timeout_and_conflicting_stdio() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        isolate.run(["true"], timeout=-1)
    with pytest.raises(ConfigError, match="stdin and input"):
        isolate.run(["true"], input=b"x", stdin=isolate.DEVNULL)


def test_join_rejects_non_namespaces_and_duplicates() -> None:
    class Fake:
        type = "net"

        def fileno(self) -> int:
            return 0

    with pytest.raises(ConfigError, match="is not a namespace"):
        isolate.spawn(["true"], join=[object()])
    with pytest.raises(ConfigError, match="two net namespaces"):
        isolate.spawn(["true"], join=[Fake(), Fake()])
    with pytest.raises(ConfigError, match="both name 'net'"):
        isolate.spawn(["true"], join=[Fake()], namespaces={"net"})


@pytest.mark.root   # plans a root caller's spawn (without root a user namespace is added)
def test_new_namespaces_become_clone_flags_and_mnt_is_made_private() -> None:
    plan = build_plan(["true"], namespaces={"pid", "mnt", "net"})
    assert plan.clone_flags == P.NSTYPES["pid"] | P.NSTYPES["mnt"] | P.NSTYPES["net"]
    kinds = [type(op) for op in plan.ops]
    assert kinds[0] is O.Mount and plan.ops[0].flags & P.lib.MS_PRIVATE
    assert O.LoopbackUp in kinds and kinds[-1] is O.Exec


def _root_ops(n: int) -> list[P.Op]:
    """A container's root in miniature: ``n`` mounts, sysfs, then the switch."""
    return ([O.Mount(b"tmpfs", f"/new/d{i}".encode(), b"tmpfs") for i in range(n)]
            + [O.Mount(b"sysfs", b"/new/sys", b"sysfs"), O.PivotRoot(new_root=b"/new")])


@pytest.mark.root   # plans a root caller's spawn (without root a user namespace is added)
def test_a_new_network_namespace_is_made_while_the_root_is_built() -> None:
    plan = build_plan(["true"], namespaces={"pid", "mnt", "net"}, ops=_root_ops(4))
    # Not at clone: the parent's thread makes it (with lo up), the child enters it
    # before sysfs, which shows the namespace of whoever mounts it.
    assert plan.clone_flags == P.NSTYPES["pid"] | P.NSTYPES["mnt"]
    assert plan.flags & P.PLAN_NETNS_LATE and plan.flags & P.PLAN_NETNS_LO
    kinds = [type(op) for op in plan.ops]
    assert O.LoopbackUp not in kinds and kinds.count(O.NetnsJoin) == 1
    join = kinds.index(O.NetnsJoin)
    assert plan.ops[join + 1] == O.Mount(b"sysfs", b"/new/sys", b"sysfs")
    assert all(k is O.Mount for k in kinds[:join])
    # Without lo: no lo flag.
    plan = build_plan(["true"], namespaces={"mnt", "net"}, ops=_root_ops(4), loopback=False)
    assert plan.flags & P.PLAN_NETNS_LATE and not plan.flags & P.PLAN_NETNS_LO


def test_a_network_namespace_is_made_at_clone_when_nothing_would_overlap_it() -> None:
    # Too little to do before it is needed: a thread would only add its own cost.
    plan = build_plan(["true"], namespaces={"mnt", "net"}, ops=_root_ops(1))
    assert plan.clone_flags & P.NSTYPES["net"] and not plan.flags & P.PLAN_NETNS_LATE
    assert O.NetnsJoin not in [type(op) for op in plan.ops]
    # The first op already needs it.
    ops = [O.WriteFile(b"/proc/sys/net/ipv4/ip_forward", b"1")] + _root_ops(6)
    plan = build_plan(["true"], namespaces={"mnt", "net"}, ops=ops)
    assert plan.clone_flags & P.NSTYPES["net"] and not plan.flags & P.PLAN_NETNS_LATE
    # A new user namespace must own the network namespace: made at clone, with it.
    plan = build_plan(["true"], namespaces={"user", "mnt", "net"}, ops=_root_ops(6))
    assert plan.clone_flags & P.NSTYPES["net"] and not plan.flags & P.PLAN_NETNS_LATE
    assert O.LoopbackUp in [type(op) for op in plan.ops]


class _V1Cgroup:
    """Stands in for a v1 ``isolate.Cgroup``: two open ``tasks`` files, no v2 directory."""

    def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
        return -1, (5, 6)


@pytest.mark.root   # plans a root caller's spawn (without root a user namespace is added)
def test_v1_cgroup_is_joined_first_and_a_cgroup_namespace_made_after_it() -> None:
    plan = build_plan(["true"], namespaces={"pid", "mnt", "cgroup"}, cgroup=_V1Cgroup(),
                      die_with_parent=True)
    # Made at clone, the namespace would be rooted at the caller's cgroup.
    assert plan.clone_flags == P.NSTYPES["pid"] | P.NSTYPES["mnt"]
    kinds = [type(op) for op in plan.ops]
    join = kinds.index(O.CgroupJoin)
    assert plan.ops[join] == O.CgroupJoin() and plan.join_fds == (5, 6)
    assert plan.ops[join + 1] == O.Unshare(flags=P.NSTYPES["cgroup"])
    assert kinds[:join] == [O.PdeathSig]  # no other step runs outside the group
    # Without a cgroup namespace the join is still first and nothing is unshared.
    plan = build_plan(["true"], namespaces={"pid"}, cgroup=_V1Cgroup())
    assert plan.ops[0] == O.CgroupJoin() and O.Unshare not in [type(o) for o in plan.ops]


def test_credentials_are_ordered_groups_gid_uid_then_caps() -> None:
    sets = {"bounding": ["NET_RAW"], "effective": ["NET_RAW"], "permitted": ["NET_RAW"],
            "inheritable": ["NET_RAW"], "ambient": ["NET_RAW"]}
    plan = build_plan(["true"], user=1000, group=1000, groups=[1000], capability_sets=sets,
                      no_new_privs=True)
    kinds = [type(op).__name__ for op in plan.ops]
    order = ["CapBound", "SetGroups", "SetResGid", "KeepCaps", "SetResUid", "CapSet", "CapAmbient",
             "NoNewPrivs", "Exec"]
    assert [k for k in kinds if k in order] == order


def test_a_non_root_user_keeps_capabilities_only_in_its_bounding_set() -> None:
    # As runc and Docker: empty effective, permitted, inheritable and ambient sets;
    # ``capabilities`` bound what a setuid binary could give back.
    plan = build_plan(["true"], user=1000, group=1000, groups=[], capabilities=["NET_RAW"])
    kinds = [type(op).__name__ for op in plan.ops]
    assert "KeepCaps" not in kinds and "CapAmbient" not in kinds
    assert O.CapSet(effective=0, permitted=0, inheritable=0) in plan.ops
    bound = next(op for op in plan.ops if isinstance(op, O.CapBound))
    assert not bound.drop & (1 << P.CAPABILITIES["CAP_NET_RAW"])
    # Root keeps them (effective and permitted, never inheritable).
    root = build_plan(["true"], user=0, group=0, groups=[], capabilities=["NET_RAW"])
    bit = 1 << P.CAPABILITIES["CAP_NET_RAW"]
    assert O.CapSet(effective=bit, permitted=bit, inheritable=0) in root.ops


def test_path_search_candidates_follow_env_path() -> None:
    plan = build_plan(["prog"], env={"PATH": "/a:/b"})
    assert plan.ops[-1] == O.Exec((b"/a/prog", b"/b/prog"))
    assert build_plan(["./x"]).ops[-1] == O.Exec((b"./x",))
