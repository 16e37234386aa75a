"""IdMap validation, overlap checks and /etc/subuid parsing."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from isolate import ConfigError, IdMap, parse_subid, subid_ranges
from isolate.idmap import check_maps, format_maps

ids = st.integers(0, 2**20)
counts = st.integers(1, 2**16)


@given(ids, ids, counts, ids, ids, counts)
def test_overlapping_maps_always_raise(i1: int, o1: int, c1: int, i2: int, o2: int, c2: int) -> None:
    a = IdMap(inside=i1, outside=o1, count=c1)
    b = IdMap(inside=i2, outside=o2, count=c2)
    inside_overlap = i1 < i2 + c2 and i2 < i1 + c1
    outside_overlap = o1 < o2 + c2 and o2 < o1 + c1
    if inside_overlap or outside_overlap:
        with pytest.raises(ConfigError, match="overlap"):
            check_maps([a, b])
    else:
        check_maps([a, b])


@given(ids, ids, counts)
def test_a_range_overlapping_itself_shifted_raises(i: int, o: int, c: int) -> None:
    assume(c > 1)
    with pytest.raises(ConfigError, match="overlap"):
        check_maps([IdMap(inside=i, outside=o, count=c), IdMap(inside=i + c - 1, outside=o + c + 10, count=1)])


def test_format_is_one_line_per_map() -> None:
    maps = [IdMap(inside=0, outside=1000), IdMap(inside=1, outside=100000, count=65536)]
    assert format_maps(maps) == b"0 1000 1\n1 100000 65536\n"


@pytest.mark.parametrize("kw,field", [
    (dict(inside=-1, outside=0), "inside"),
    (dict(inside=0, outside=-5), "outside"),
    (dict(inside=0, outside=0, count=0), "count"),
    (dict(inside=2**32 - 1, outside=0, count=2), "inside"),
    (dict(inside="0", outside=0), "inside"),
    (dict(inside=0, outside=True), "outside"),
])
def test_bad_idmap_names_the_field_and_value(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"IdMap.{field}"):
        IdMap(**kw)


def test_empty_or_too_long_map_is_rejected() -> None:
    with pytest.raises(ConfigError, match="empty"):
        check_maps([])
    with pytest.raises(ConfigError, match="340"):
        check_maps([IdMap(inside=i, outside=i) for i in range(341)])


def test_parse_subid() -> None:
    text = "# comment\nalice:100000:65536\n\n1000:200000:10\n"
    r = parse_subid(text)
    assert [(x.owner, x.start, x.count) for x in r] == [("alice", 100000, 65536), ("1000", 200000, 10)]


@pytest.mark.parametrize("line", ["alice:1", "alice:x:1", "alice:1:0", "alice:-1:5", "a:4294967295:2"])
def test_parse_subid_rejects_bad_lines_with_the_line(line: str) -> None:
    with pytest.raises(ConfigError, match=":1:"):
        parse_subid(line + "\n", source="/etc/subuid")


@given(st.lists(st.tuples(st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True),
                          st.integers(0, 2**31), st.integers(1, 2**16)), max_size=10))
def test_parse_subid_round_trips(entries: list[tuple[str, int, int]]) -> None:
    text = "".join(f"{o}:{s}:{c}\n" for o, s, c in entries)
    assert [(r.owner, r.start, r.count) for r in parse_subid(text)] == entries


def test_subid_ranges_matches_name_or_uid(tmp_path) -> None:
    import pwd

    root = pwd.getpwuid(0).pw_name
    f = tmp_path / "subuid"
    f.write_text(f"{root}:100000:5\n0:200000:5\nother:300000:5\n")
    got = subid_ranges(0, path=str(f))
    assert [(r.start, r.count) for r in got] == [(100000, 5), (200000, 5)]
    assert subid_ranges(0, path=str(tmp_path / "missing")) == []


def test_subid_maps_put_root_on_the_caller_and_the_ranges_after(tmp_path) -> None:
    from isolate import subid_maps

    (tmp_path / "u").write_text("other:1:5\n4242:300000:100\n4242:500000:10\n")
    (tmp_path / "g").write_text("4242:400000:65536\n")
    umaps, gmaps = subid_maps(uid=4242, gid=77, subuid=str(tmp_path / "u"), subgid=str(tmp_path / "g"))
    assert umaps == [IdMap(inside=0, outside=4242), IdMap(inside=1, outside=300000, count=100),
                     IdMap(inside=101, outside=500000, count=10)]
    assert gmaps == [IdMap(inside=0, outside=77), IdMap(inside=1, outside=400000, count=65536)]


def test_subid_maps_without_ranges_say_which_file_and_how(tmp_path) -> None:
    from isolate import UnsupportedError, subid_maps

    (tmp_path / "u").write_text("someone:100000:65536\n")
    (tmp_path / "g").write_text("4242:400000:65536\n")
    with pytest.raises(UnsupportedError) as e:
        subid_maps(uid=4242, gid=4242, subuid=str(tmp_path / "u"), subgid=str(tmp_path / "g"))
    text = str(e.value)
    assert str(tmp_path / "u") in text and str(tmp_path / "g") not in text
    # The suggested range starts past every range either file gives anyone.
    assert "usermod --add-subuids 465536-531071 --add-subgids 465536-531071" in text


def test_only_a_caller_without_root_gets_a_user_namespace_added() -> None:
    from isolate._planner import implied_namespaces

    ns = frozenset({"pid", "mnt"})
    assert implied_namespaces(ns, (), 0) is ns
    assert implied_namespaces(ns, (), 1000) == ns | {"user"}
    assert implied_namespaces(ns, ("net",), 1000) == ns | {"user"}
    assert implied_namespaces(ns, ("user",), 1000) is ns      # the joined one owns them
    assert implied_namespaces(ns, ("uts",), 1000) is ns
    assert implied_namespaces(frozenset(), (), 1000) == frozenset()
