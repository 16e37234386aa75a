"""The pure parts of ``Namespace``: input checks and the mountinfo lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isolate import ConfigError, Namespace
from isolate.namespace import _check_type, _path_str, mount_for

SEGMENT = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"),
                                         whitelist_characters=" _-\t\\"),
                  min_size=1, max_size=8)


def esc(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def line(mid: int, mp: str, shared: bool) -> str:
    tag = f" shared:{mid}" if shared else ""
    return f"{mid} 1 0:{mid} / {esc(mp)} rw,relatime{tag} - tmpfs tmpfs rw"


@given(st.lists(SEGMENT, min_size=1, max_size=4), st.integers(0, 3), st.booleans())
def test_mount_for_finds_the_deepest_mount_point(parts: list[str], depth: int, shared: bool) -> None:
    path = "/" + "/".join(parts)
    depth = min(depth, len(parts))
    mp = "/" + "/".join(parts[:depth]) if depth else "/"
    info = "\n".join([line(1, "/", False), line(2, mp, shared)])
    assert mount_for(path, info) == (mp, shared, False)


@given(st.lists(SEGMENT, min_size=1, max_size=3), SEGMENT)
def test_mount_for_sees_mounts_below(parts: list[str], child: str) -> None:
    path = "/" + "/".join(parts)
    info = "\n".join([line(1, "/", True), line(2, path + "/" + child, False)])
    assert mount_for(path, info) == ("/", True, True)


def test_mount_for_takes_the_top_of_stacked_mounts_and_whole_components() -> None:
    info = "\n".join([line(1, "/", False), line(2, "/run", True), line(3, "/run", False),
                      line(4, "/running", True)])
    assert mount_for("/run/netns", info) == ("/run", False, False)
    assert mount_for("/runx", info) == ("/", False, False)


@pytest.mark.parametrize("bad", ["netns", "", "Net", None, 7, b"net", "pid_for_children"])
def test_check_type_names_the_value(bad: object) -> None:
    with pytest.raises(ConfigError, match="unknown namespace type"):
        _check_type(bad)


@pytest.mark.parametrize("bad", [None, 3, "", "a\0b", b"x\0"])
def test_path_str_refuses_non_paths(bad: object) -> None:
    with pytest.raises(ConfigError):
        _path_str(bad, "path")


def test_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="Namespace.of"):
        Namespace()
