"""config.json validation: every bad input is a ConfigError naming the JSON path and the value."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_oci_examples import PODMAN, podman, runc_spec

from isolate import ConfigError
from isolate.oci import load_bundle, parse
from isolate.oci.spec import NAMESPACE_TYPES

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return str(info.value)


def mutated(fn: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    d = podman()
    fn(d)
    return d


@pytest.mark.parametrize("change, message", [
    (lambda d: d["linux"]["resources"]["memory"].update(limit="1g"),
     'linux.resources.memory.limit: expected an integer, got "1g"'),
    (lambda d: d.pop("ociVersion"), "ociVersion: is required"),
    (lambda d: d.update(ociVersion="2.0.0"), 'ociVersion: expected a 1.x runtime-spec version, got "2.0.0"'),
    (lambda d: d.pop("root"), "root: is required"),
    (lambda d: d["root"].pop("path"), "root.path: is required"),
    (lambda d: d["process"].update(args=[]), "process.args: must name a program, got []"),
    (lambda d: d["process"].pop("args"), "process.args: must name a program"),
    (lambda d: d["process"].pop("cwd"), "process.cwd: is required"),
    (lambda d: d["process"].update(cwd="srv"), 'process.cwd: expected an absolute path, got "srv"'),
    (lambda d: d["process"]["user"].update(uid=2**32), "process.user.uid: expected an integer from 0 to 4294967294, got 4294967296"),
    (lambda d: d["process"]["user"].update(gid=-1), "process.user.gid: expected an integer from 0"),
    (lambda d: d["process"]["user"].update(uid=True), "process.user.uid: expected an integer, got true"),
    (lambda d: d["process"]["user"].update(uid=1.0), "process.user.uid: expected an integer, got 1.0"),
    (lambda d: d["process"]["capabilities"]["effective"].append("CAP_GODMODE"),
     'process.capabilities.effective[5]: unknown capability, got "CAP_GODMODE"'),
    (lambda d: d["process"]["rlimits"][0].update(type="NOFILE"), 'process.rlimits[0].type: unknown value "NOFILE"'),
    (lambda d: d["process"]["rlimits"][1].update(type="RLIMIT_NOFILE"),
     'process.rlimits[1]: duplicate rlimit "RLIMIT_NOFILE"'),
    (lambda d: d["process"]["rlimits"][0].update(soft=2**21),
     "process.rlimits[0].soft: above the hard limit 1048576, got 2097152"),
    (lambda d: d["process"]["env"].append("NOEQUALS"), 'process.env[5]: expected KEY=VALUE, got "NOEQUALS"'),
    (lambda d: d["process"].update(oomScoreAdj=1001), "process.oomScoreAdj: expected an integer from -1000 to 1000"),
    (lambda d: d["linux"]["namespaces"].append({"type": "pid"}), 'linux.namespaces[7]: duplicate namespace type "pid"'),
    (lambda d: d["linux"]["namespaces"].append({"type": "net"}), 'linux.namespaces[7].type: unknown value "net"'),
    (lambda d: d["linux"]["namespaces"][0].update(path="proc/1/ns/pid"),
     'linux.namespaces[0].path: expected an absolute path, got "proc/1/ns/pid"'),
    (lambda d: d["linux"]["namespaces"].pop(5), "linux.uidMappings: needs a user namespace"),
    (lambda d: d["linux"].pop("gidMappings"), "linux.gidMappings: a new user namespace needs mappings"),
    (lambda d: d["linux"]["uidMappings"].append({"containerID": 1000, "hostID": 0, "size": 1}),
     "linux.uidMappings[1]: overlaps an earlier mapping"),
    (lambda d: d["linux"]["uidMappings"][0].update(size=0), "linux.uidMappings[0].size: expected at least 1, got 0"),
    (lambda d: d["linux"]["uidMappings"][0].update(hostID=2**32 - 10),
     "linux.uidMappings[0].hostID: range 4294967286+65536 passes the last id"),
    (lambda d: d["mounts"][5].update(destination="data"), 'mounts[5].destination: expected an absolute path, got "data"'),
    (lambda d: d["mounts"][5].update(destination="/data/../../etc"),
     "mounts[5].destination: must not contain '..', got \"/data/../../etc\""),
    (lambda d: d["mounts"][5].update(destination="/da\u0000ta"), "mounts[5].destination: contains a NUL byte"),
    (lambda d: d["mounts"][5].pop("destination"), "mounts[5].destination: is required"),
    (lambda d: d["linux"]["resources"]["memory"].update(limit=-5),
     "linux.resources.memory.limit: expected an integer from -1 to"),
    (lambda d: d["linux"]["resources"]["memory"].update(swap=1024),
     "linux.resources.memory.swap: memory+swap is below the memory limit"),
    (lambda d: d["linux"]["resources"]["pids"].update(limit=2**40), "linux.resources.pids.limit: expected an integer"),
    (lambda d: d["linux"]["resources"]["cpu"].update(shares=-1), "linux.resources.cpu.shares: expected an integer"),
    (lambda d: d["linux"]["resources"]["blockIO"].update(weight=5),
     "linux.resources.blockIO.weight: expected 10 to 1000 (or 0), got 5"),
    (lambda d: d["linux"]["resources"]["devices"][1].update(type="x"),
     'linux.resources.devices[1].type: unknown value "x"'),
    (lambda d: d["linux"]["resources"]["devices"][1].update(access="rwx"),
     'linux.resources.devices[1].access: expected letters from \'rwm\', got "rwx"'),
    (lambda d: d["linux"]["resources"]["devices"][1].pop("allow"), "linux.resources.devices[1].allow: is required"),
    (lambda d: d["linux"]["seccomp"].update(defaultAction="SCMP_ACT_FOO"),
     'linux.seccomp.defaultAction: unknown value "SCMP_ACT_FOO"'),
    (lambda d: d["linux"]["seccomp"]["syscalls"][1]["args"][0].update(op="SCMP_CMP_LIKE"),
     'linux.seccomp.syscalls[1].args[0].op: unknown value "SCMP_CMP_LIKE"'),
    (lambda d: d["linux"]["seccomp"]["syscalls"][1]["args"][0].update(index=6),
     "linux.seccomp.syscalls[1].args[0].index: expected an integer from 0 to 5, got 6"),
    (lambda d: d["linux"]["seccomp"]["syscalls"][0].update(names=["read", "rm -rf"]),
     'linux.seccomp.syscalls[0].names[1]: not a syscall name: "rm -rf"'),
    (lambda d: d["linux"]["seccomp"]["architectures"].append("SCMP_ARCH_Z80"),
     'linux.seccomp.architectures[3]: unknown value "SCMP_ARCH_Z80"'),
    (lambda d: d["hooks"]["prestart"][0].update(path="true"), 'hooks.prestart[0].path: expected an absolute path'),
    (lambda d: d["hooks"]["prestart"][0].update(timeout=0), "hooks.prestart[0].timeout: expected an integer from 1"),
    (lambda d: d["linux"]["namespaces"].pop(3), 'hostname: setting it needs a uts namespace in linux.namespaces, got "web"'),
    (lambda d: d["annotations"].update(x=1), "annotations.x: expected a string, got 1"),
    (lambda d: d["linux"].update(rootfsPropagation="everywhere"), 'linux.rootfsPropagation: unknown value "everywhere"'),
    (lambda d: d["linux"].update(timeOffsets={"realtime": {"secs": 1}}), "linux.timeOffsets.realtime: unknown clock"),
    (lambda d: d["linux"].update(devices=[{"path": "/dev/fuse", "type": "c"}]),
     'linux.devices[0]: a "c" device needs major and minor'),
    (lambda d: d["linux"].update(maskedPaths=["proc/kcore"]), 'linux.maskedPaths[0]: expected an absolute path'),
])
def test_bad_field_names_path_and_value(change: Callable[[dict[str, Any]], Any], message: str) -> None:
    msg = error_of(mutated(change))
    assert msg.startswith(message), msg


def test_bad_json_text() -> None:
    assert error_of("{").startswith("config.json: not valid JSON")
    assert error_of('{"ociVersion": NaN}') == "config.json: NaN is not valid JSON"
    assert error_of("[1]") == "config.json: expected an object, got [1]"
    assert error_of("[" * 100_000 + "]" * 100_000).startswith("config.json:")


def test_null_reads_as_absent_like_go_runtimes() -> None:
    d = podman()
    d["hooks"] = None
    d["process"]["rlimits"] = None
    spec = parse(d)
    assert spec.hooks is None and spec.process is not None and spec.process.rlimits is None


def test_load_bundle(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(runc_spec()))
    spec, bundle = load_bundle(tmp_path)
    assert bundle == tmp_path and spec.root_path(bundle) == tmp_path / "rootfs"
    with pytest.raises(ConfigError, match=r"bundle '.*missing': cannot read config.json: No such file"):
        load_bundle(tmp_path / "missing")


# --- property-based: hostile configs ------------------------------------------

def _leaves(node: Any, path: str = "") -> list[tuple[str, list[Any], Any]]:
    """(JSON path, key path, value) of every value in ``node``."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        p = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else k)
        out.append((p, [k], v))
        out += [(pp, [k, *kk], vv) for pp, kk, vv in _leaves(v, p)]
    return out


# The podman example without its vendor extensions: every value in it is a known field.
KNOWN = podman()
del KNOWN["linux"]["x-vendor"], KNOWN["io.example.extension"]
PATHS = _leaves(KNOWN)
JSON_TYPES: dict[type, Any] = {str: st.text(max_size=5), int: st.integers(-3, 3), bool: st.booleans(),
                               list: st.lists(st.integers(), max_size=2),
                               dict: st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)}


def _set(d: Any, keys: list[Any], value: Any) -> None:
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


@FAST
@given(st.sampled_from(PATHS), st.data())
def test_wrong_type_anywhere_names_that_path(target: tuple[str, list[Any], Any], data: st.DataObject) -> None:
    path, keys, value = target
    kind = bool if isinstance(value, bool) else type(value)
    other = data.draw(st.sampled_from([t for t in JSON_TYPES if t is not kind]))
    bad = data.draw(JSON_TYPES[other])
    d = copy.deepcopy(KNOWN)
    _set(d, keys, bad)
    msg = error_of(d)
    assert msg.startswith(path + ": "), (msg, bad)
    assert json.dumps(bad)[:20] in msg or "expected" in msg


@FAST
@given(st.text(min_size=1, max_size=12).filter(lambda t: t not in NAMESPACE_TYPES))
def test_unknown_namespace_type(name: str) -> None:
    d = podman()
    d["linux"]["namespaces"].append({"type": name})
    msg = error_of(d)
    assert msg.startswith("linux.namespaces[7].type: ")


@FAST
@given(st.sampled_from(sorted(NAMESPACE_TYPES)), st.integers(0, 7), st.integers(0, 8))
def test_duplicate_namespace(name: str, first: int, second: int) -> None:
    d = podman()
    d["linux"]["namespaces"].insert(first, {"type": name})
    d["linux"]["namespaces"].insert(second, {"type": name, "path": "/proc/1/ns/" + name})
    msg = error_of(d)
    assert re.match(r"linux\.namespaces\[\d\]: duplicate namespace type " + json.dumps(name), msg), msg


_SEGMENT = st.text(alphabet="abc.-_", min_size=1, max_size=4)


@FAST
@given(st.one_of(
    st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join),                       # relative
    st.tuples(st.lists(_SEGMENT, max_size=2), st.lists(_SEGMENT, max_size=2))
      .map(lambda t: "/" + "/".join([*t[0], "..", *t[1]])),                        # with ..
), st.integers(0, 6))
def test_relative_or_dotdot_destination(dest: str, which: int) -> None:
    d = podman()
    d["mounts"][which]["destination"] = dest
    msg = error_of(d)
    assert msg.startswith(f"mounts[{which}].destination: ") and json.dumps(dest) in msg, msg


ABSURD = [
    (["process", "user", "uid"], st.integers(2**32 - 1, 2**70) | st.integers(-(2**70), -1)),
    (["process", "user", "additionalGids", 0], st.integers(2**32 - 1, 2**70)),
    (["process", "rlimits", 0, "hard"], st.integers(2**64, 2**80) | st.integers(max_value=-1)),
    (["linux", "resources", "memory", "limit"], st.integers(2**62 + 1, 2**80) | st.integers(max_value=-2)),
    (["linux", "resources", "pids", "limit"], st.integers(2**31, 2**80) | st.integers(max_value=-2)),
    (["linux", "resources", "cpu", "shares"], st.integers(2**18 + 1, 2**80) | st.integers(max_value=-1)),
    (["linux", "uidMappings", 0, "size"], st.integers(2**32, 2**80) | st.integers(max_value=0)),
    (["process", "oomScoreAdj"], st.integers(1001, 2**40) | st.integers(max_value=-1001)),
]


@FAST
@given(st.sampled_from(ABSURD), st.data())
def test_absurd_numbers(target: tuple[list[Any], Any], data: st.DataObject) -> None:
    keys, values = target
    value = data.draw(values)
    d = podman()
    _set(d, keys, value)
    path = ".".join(str(k) for k in keys if isinstance(k, str))
    msg = error_of(d)
    assert msg.split(":")[0].replace("[0]", "") == path, msg
    assert str(value) in msg


@FAST
@given(st.sampled_from([["root"], ["root", "path"], ["ociVersion"], ["process", "cwd"],
                        ["process", "user", "uid"], ["linux", "resources", "devices", 0, "allow"],
                        ["mounts", 3, "destination"], ["hooks", "prestart", 0, "path"]]))
def test_missing_required_field(keys: list[Any]) -> None:
    d = podman()
    node: Any = d
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
    assert error_of(d) == f"{path}: is required" or error_of(d).startswith(f"{path}: is required")


# Objects that are models (unknown keys are kept), not maps of names to values.
MAPS = {"annotations", "linux.sysctl", "linux.resources.unified", "linux.resources.rdma", "linux.timeOffsets"}
MODEL_PATHS = [([], "")] + [(k, p) for p, k, v in PATHS if isinstance(v, dict) and p not in MAPS]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3),
                    max_leaves=10)


@FAST
@given(st.lists(st.tuples(st.sampled_from(MODEL_PATHS), st.text(min_size=1, max_size=8), JSON),
                min_size=1, max_size=5))
def test_unknown_fields_round_trip(additions: list[tuple[tuple[list[Any], str], str, Any]]) -> None:
    d = podman()
    for (keys, _), name, value in additions:
        node: Any = d
        for k in keys:
            node = node[k]
        node["x-" + name] = value
    assert parse(d).to_dict() == d
    assert parse(json.dumps(d)).to_dict() == d


def test_example_is_unchanged_by_the_tests() -> None:
    assert podman() == PODMAN and parse(PODMAN).to_dict() == PODMAN
