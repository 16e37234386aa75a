"""The pure parts of ``probe``: parsers, failure explanations, the table, the CLI arguments."""

from __future__ import annotations

import errno
import json

from hypothesis import given
from hypothesis import strategies as st

from isolate.cli.__main__ import build_parser
from isolate._probe import (
    Feature,
    Probe,
    _limits_feature,
    explain_namespace_failure,
    format_table,
    parse_kernel_version,
    parse_status_seccomp,
)

NUM = st.integers(min_value=0, max_value=10**6)
SUFFIX = st.from_regex(r"([-+_~][a-zA-Z0-9._-]*)?", fullmatch=True)


@given(NUM, NUM, NUM, SUFFIX)
def test_kernel_release_gives_its_three_numbers(a: int, b: int, c: int, suffix: str) -> None:
    assert parse_kernel_version(f"{a}.{b}.{c}{suffix}") == (a, b, c)


@given(NUM, NUM, SUFFIX)
def test_kernel_release_with_two_numbers_pads_with_zero(a: int, b: int, suffix: str) -> None:
    assert parse_kernel_version(f"{a}.{b}{suffix}") == (a, b, 0)


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20))
def test_kernel_release_without_digits_first_is_zero(text: str) -> None:
    if not text[:1].isdigit():
        assert parse_kernel_version(text) == (0, 0, 0)


def test_kernel_versions_compare_numerically() -> None:
    assert parse_kernel_version("5.10.0-21-amd64") < parse_kernel_version("5.12")
    assert parse_kernel_version("6.18.44-fc-v782") >= (5, 7, 0)


@given(st.sampled_from([0, 1, 2]), st.integers(0, 50),
       st.lists(st.sampled_from(["Name:\tpython", "Threads:\t3", "NoNewPrivs:\t0"]), max_size=3))
def test_seccomp_status_round_trip(mode: int, filters: int, other: list[str]) -> None:
    text = "\n".join(other + [f"Seccomp:\t{mode}", f"Seccomp_filters:\t{filters}"])
    assert parse_status_seccomp(text) == (mode, filters)


def test_status_without_seccomp_means_no_kernel_support() -> None:
    assert parse_status_seccomp("Name:\tx\nThreads:\t1\n") == (None, 0)


LIMITS = {"user.max_user_namespaces": 100, "user.max_net_namespaces": 100,
          "kernel.unprivileged_userns_clone": None,
          "kernel.apparmor_restrict_unprivileged_userns": None}


def test_enospc_names_the_limit_and_the_sysctl() -> None:
    reason, how = explain_namespace_failure("net", errno.ENOSPC, LIMITS, 1000)
    assert "user.max_net_namespaces is 100" in reason
    assert how == "sysctl -w user.max_net_namespaces=15000"


def test_user_namespace_blocked_by_zero_limit() -> None:
    limits = dict(LIMITS, **{"user.max_user_namespaces": 0})
    reason, how = explain_namespace_failure("user", errno.EPERM, limits, 1000)
    assert "max_user_namespaces is 0" in reason
    assert how == "sysctl -w user.max_user_namespaces=15000"


def test_debian_switch_applies_to_unprivileged_callers_only() -> None:
    limits = dict(LIMITS, **{"kernel.unprivileged_userns_clone": 0})
    _, how = explain_namespace_failure("user", errno.EPERM, limits, 1000)
    assert how == "sysctl -w kernel.unprivileged_userns_clone=1"
    reason, _ = explain_namespace_failure("user", errno.EPERM, limits, 0)
    assert "unprivileged_userns_clone" not in reason


def test_apparmor_switch_is_named() -> None:
    limits = dict(LIMITS, **{"kernel.apparmor_restrict_unprivileged_userns": 1})
    _, how = explain_namespace_failure("user", errno.EACCES, limits, 1000)
    assert how is not None and "apparmor_restrict_unprivileged_userns=0" in how


def test_other_types_refused_need_cap_sys_admin() -> None:
    reason, how = explain_namespace_failure("mnt", errno.EPERM, LIMITS, 1000)
    assert "CAP_SYS_ADMIN" in reason and how is not None and "user" in how


def test_unknown_to_the_kernel_names_the_config_option() -> None:
    reason, how = explain_namespace_failure("time", errno.EINVAL, LIMITS, 0)
    assert "EINVAL" in reason and how is not None and "CONFIG_TIME_NS" in how and "5.6" in how


def test_limits_feature_reports_zero_limits_with_a_fix() -> None:
    f = _limits_feature(dict(LIMITS, **{"user.max_net_namespaces": 0}), 0)
    assert f.available
    assert f.how_to_enable == "sysctl -w user.max_net_namespaces=15000"
    blocked = _limits_feature(dict(LIMITS, **{"user.max_user_namespaces": 0}), 0)
    assert not blocked.available and "max_user_namespaces=15000" in (blocked.how_to_enable or "")


def _feature(name: str, ok: bool) -> Feature:
    return Feature(name=name, available=ok, reason=f"because {name}",
                   how_to_enable=None if ok else f"enable {name}")


def _probe() -> Probe:
    ns = {t: _feature(f"{t} namespace", t != "time") for t in ("user", "net", "time")}
    fields = ["userns_limits", "clone3", "clone_into_cgroup", "cgroup", "new_mount_api",
              "mount_setattr", "idmapped_mounts", "pidfd", "close_range", "seccomp", "newidmap",
              "subids"]
    return Probe(kernel="6.1.0", machine="x86_64", euid=0, namespaces=ns,
                 **{f: _feature(f, f != "pidfd") for f in fields})  # type: ignore[arg-type]


def test_table_has_a_row_per_feature_and_the_fixes() -> None:
    table = format_table(_probe())
    lines = table.splitlines()
    assert lines[0].startswith("isolate probe: Linux 6.1.0 (x86_64), euid 0")
    for f in _probe().features().values():
        row = [line for line in lines if line.startswith(f.name + " ")]
        assert len(row) == 1
        assert ("yes" if f.available else "NO") in row[0].split()
    assert "how to enable: enable pidfd" in table
    assert "how to enable: enable time namespace" in table


def test_to_dict_keys_features_and_is_json() -> None:
    data = json.loads(json.dumps(_probe().to_dict()))
    assert data["features"]["namespace.time"]["available"] is False
    assert data["features"]["pidfd"]["how_to_enable"] == "enable pidfd"
    assert data["cgroup_layout"] == "none"


def test_cli_parses_probe_and_json_flag() -> None:
    p = build_parser()
    assert p.parse_args(["probe"]).json is False
    assert p.parse_args(["probe", "--json"]).json is True
