"""The cgroup parent options and CgroupDelegationError (nothing is made here)."""

from __future__ import annotations

import argparse
import errno
import pickle

import pytest

import isolate
from isolate.cli import run


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    run.add_parser(sub)
    return p.parse_args(run.join_values(["run", *argv]))


def test_cgroup_parent_reaches_the_container() -> None:
    args = parse("--cgroup-parent", "jobs/a", "--memory", "64m", "--", "true")
    assert args.cgroup_parent == "jobs/a"
    c = run.container_from_args(args)
    try:
        assert c._cgroup_parent == "jobs/a"
    finally:
        c.close()


@pytest.mark.parametrize("parent", ["../up", "/etc", ""])
def test_a_bad_cgroup_parent_is_refused_naming_it(parent: str) -> None:
    with pytest.raises(isolate.ConfigError, match="Cgroup parent"):
        run.container_from_args(parse("--cgroup-parent", parent, "--", "true"))


def test_cgroup_parent_and_cgroup_are_exclusive() -> None:
    pool = isolate.CgroupPool.__new__(isolate.CgroupPool)    # never started: only its type counts
    with pytest.raises(isolate.ConfigError, match="cgroup or cgroup_parent"):
        isolate.Container(cgroup=pool, cgroup_parent="jobs")


def test_delegation_error_is_a_cgroup_error_that_pickles() -> None:
    e = isolate.CgroupDelegationError(errno.EACCES, "a memory limit needs a cgroup delegated to "
                                      "this user: ...", "/sys/fs/cgroup/memory/u")
    assert isinstance(e, isolate.CgroupError) and isinstance(e, OSError)
    assert str(e) == "[Errno 13] a memory limit needs a cgroup delegated to this user: ..."
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is isolate.CgroupDelegationError
    assert (back.errno, back.strerror, back.filename) == (e.errno, e.strerror, e.filename)
