"""isolate-oci's rootless decisions as root here: ``--rootless``, the default state root, lost limits.

What an ordinary user and podman rootless get is run for real in
tests/oci/test_rootless_oci.py and tests/oci/test_podman_rootless.py.
"""

from __future__ import annotations

import errno
import os

import pytest

from isolate.cgroup import DEFAULT_DEVICES, Limits
from isolate.cli.oci import main
from isolate.errors import ConfigError
from isolate.oci.rootless import (DEFAULT_ROOT, cgroup_denied, default_root, in_user_namespace, is_rootless,
                                  lost_limits, without_cgroup)

pytestmark = pytest.mark.root


def test_rootless_modes() -> None:
    assert is_rootless("true") is True
    assert is_rootless("false") is False
    # Root of the host's user namespace: not rootless, whatever XDG_RUNTIME_DIR says (runc's rule).
    assert not in_user_namespace()
    assert is_rootless("auto") is False
    with pytest.raises(ConfigError, match=r"--rootless: expected true, false or auto, got 'maybe'"):
        is_rootless("maybe")


def test_a_bad_rootless_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rootless=maybe", "state", "c1"]) == 1
    err = capsys.readouterr().err
    assert "--rootless" in err and "'maybe'" in err and "auto" in err


def test_root_keeps_run_isolate_oci_even_with_xdg_runtime_dir(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    assert default_root() == DEFAULT_ROOT == "/run/isolate-oci"
    # Without --root, the verbs use it (the error names no other root).
    assert main(["state", "no-such-container"]) == 1
    assert capsys.readouterr().err == "isolate-oci: state: container 'no-such-container' does not exist\n"
    assert not os.path.exists("/run/user/0/isolate-oci")


def test_lost_limits_leave_out_device_rules() -> None:
    assert lost_limits(None) == []
    assert lost_limits(Limits(devices=DEFAULT_DEVICES)) == []
    assert lost_limits(Limits(memory_max=1 << 26, pids_max=64, devices=DEFAULT_DEVICES)) == [
        "memory_max", "pids_max"]


def test_the_warning_says_what_is_lost_and_how_to_get_it_back() -> None:
    e = PermissionError(errno.EACCES, "Permission denied", "/sys/fs/cgroup/memory/isolate/c1")
    assert cgroup_denied(e) and cgroup_denied(OSError(errno.EROFS, "ro"))
    assert not cgroup_denied(OSError(errno.ENOENT, "gone")) and not cgroup_denied(ValueError())
    text = without_cgroup(e, Limits(memory_max=1 << 26))
    assert text.startswith("rootless: no cgroup for the container (/sys/fs/cgroup/memory/isolate/c1: "
                           "Permission denied)")
    assert "linux.resources is not applied (memory_max: no limits)" in text
    assert "linux.cgroupsPath" in text
    assert "pause, resume, update and stats need one" in without_cgroup(e, None)
