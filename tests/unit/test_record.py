"""``_record.dataclass`` behaves as ``dataclasses.dataclass`` for every option isolate uses.

The same class body goes through both decorators; every observable behaviour
(``__init__`` with positional, keyword and missing arguments, defaults and
default factories, ``__post_init__``, equality, hashing, ``repr``,
``fields``, ``replace``, ``asdict``, frozen assignment, ``__slots__``) must
agree, for classes hypothesis makes up.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar  # noqa: F401 (ClassVar: the made-up classes name it)

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import _record

# One field: (has a default?, default factory instead?, compare?, kw_only?)
FIELD = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans())
OPTIONS = st.fixed_dictionaries({"frozen": st.booleans(), "slots": st.booleans(),
                                 "kw_only": st.booleans()})
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.tuples(st.integers(0, 3)))


def make(deco: Any, field: Any, specs: list[tuple[bool, bool, bool, bool]],
         options: dict[str, bool], post_init: bool) -> type:
    """The same class through ``deco``: fields f0..fn as ``specs`` say."""
    ns: dict[str, Any] = {"__annotations__": {}}
    seen_default = False
    for i, (has_default, factory, compare, kw) in enumerate(specs):
        name = f"f{i}"
        ns["__annotations__"][name] = "Any"
        # dataclasses refuses a positional field without a default after one with
        # (kw_only=False, given to every field, makes it positional in any class).
        kw = kw or (seen_default and not has_default)
        if has_default:
            seen_default = seen_default or not kw
            if factory:
                ns[name] = field(default_factory=lambda i=i: [i], compare=compare, kw_only=kw)
            else:
                ns[name] = field(default=i, compare=compare, kw_only=kw)
        else:
            ns[name] = field(compare=compare, kw_only=kw)
    ns["__annotations__"]["kind"] = "ClassVar[int]"
    ns["kind"] = 7
    if post_init:
        def __post_init__(self: Any) -> None:
            if any(getattr(self, f"f{i}") == "bad" for i in range(len(specs))):
                raise ValueError("bad value")
        ns["__post_init__"] = __post_init__
    return deco(**options)(type("Rec", (), ns))


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except (TypeError, ValueError, AttributeError) as e:
        # The message wording differs; the kind of failure must not.
        return "raised", (AttributeError if isinstance(e, AttributeError) else type(e))


@settings(max_examples=300, deadline=None)
@given(st.lists(FIELD, max_size=5), OPTIONS, st.booleans(), st.data())
def test_records_behave_as_dataclasses(specs: list[tuple[bool, bool, bool, bool]],
                                       options: dict[str, bool], post_init: bool,
                                       data: st.DataObject) -> None:
    std = make(dataclasses.dataclass, dataclasses.field, specs, options, post_init)
    ours = make(_record._dataclass, _record._field, specs, options, post_init)
    assert [f.name for f in dataclasses.fields(std)] == [f.name for f in _record._fields(ours)]
    assert ("__slots__" in std.__dict__) == ("__slots__" in ours.__dict__)

    n_pos = data.draw(st.integers(0, len(specs) + 1), label="positional")
    pos = data.draw(st.lists(VALUES | st.just("bad"), min_size=n_pos, max_size=n_pos))
    names = data.draw(st.lists(st.sampled_from([f"f{i}" for i in range(len(specs))] + ["zz"]),
                               unique=True) if specs else st.just([]), label="keywords")
    kw = {n: data.draw(VALUES, label=n) for n in names}
    a, b = outcome(lambda: std(*pos, **kw)), outcome(lambda: ours(*pos, **kw))
    assert a[0] == b[0], (a, b)
    if a[0] != "ok":
        assert a[1] == b[1]
        return
    s, o = a[1], b[1]
    assert repr(s) == repr(o)
    assert dataclasses.asdict(s) == _record._asdict(o)
    assert s.kind == o.kind == 7
    # Equality and hashing over the compared fields.
    s2, o2 = std(*pos, **kw), ours(*pos, **kw)
    assert (s == s2) == (o == o2)
    if std.__hash__ is None:
        assert ours.__hash__ is None
    else:
        ha, hb = outcome(lambda: hash(s)), outcome(lambda: hash(o))   # a list field: unhashable
        assert ha[0] == hb[0]
        if ha[0] == "ok":
            assert ha[1] == hash(s2) and hb[1] == hash(o2)
    # replace(), and assignment to a frozen record.
    if specs:
        target = data.draw(st.sampled_from([f"f{i}" for i in range(len(specs))]), label="replace")
        value = data.draw(VALUES, label="new value")
        ra = outcome(lambda: dataclasses.replace(s, **{target: value}))
        rb = outcome(lambda: _record._replace(o, **{target: value}))
        assert ra[0] == rb[0] and (ra[0] != "ok" or repr(ra[1]) == repr(rb[1]))
        if ra[0] == "ok":
            assert (s == ra[1]) == (o == rb[1])   # a compared field changed, or one that is not
        sa = outcome(lambda: setattr(s, target, value))
        sb = outcome(lambda: setattr(o, target, value))
        assert sa[0] == sb[0] and (sa[0] != "ok" or repr(s) == repr(o))


def test_a_frozen_record_raises_an_attribute_error_as_dataclasses_do() -> None:
    @_record._dataclass(frozen=True, slots=True)
    class P:
        x: int

    with pytest.raises(AttributeError):
        P(1).x = 2   # type: ignore[misc]
    with pytest.raises(AttributeError):
        del P(1).x   # type: ignore[misc]


def test_a_cached_hash_is_the_hash_of_the_values() -> None:
    @_record._dataclass(frozen=True, slots=True)
    class H:
        _cache_hash = True
        a: int
        b: tuple[int, ...] = ()

    h = H(1, (2, 3))
    assert hash(h) == hash(H(1, (2, 3))) == hash(h)
    assert h == H(1, (2, 3)) and h != H(1, (2,))


def test_a_config_pickled_in_another_process_loads_equal_and_hashes_alike() -> None:
    """Configs go between processes (multiprocessing, a pool's workers): a frozen one loads
    past its frozen __setattr__, and a cached hash (of the other process's hash seed) stays
    behind, so the copy is the same cache key here."""
    import pickle
    import subprocess
    import sys

    from isolate.config import ContainerConfig, ProcessSpec

    made = ("from isolate.config import ContainerConfig, ProcessSpec; "
            "c = ContainerConfig(process=ProcessSpec(args=('/bin/echo', 'hi'), env={'A': 'b'})); "
            "hash(c); hash(c.process); import pickle, sys; sys.stdout.buffer.write(pickle.dumps(c))")
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    data = subprocess.run([sys.executable, "-c", made], capture_output=True, check=True, env=env).stdout
    loaded = pickle.loads(data)
    here = ContainerConfig(process=ProcessSpec(args=("/bin/echo", "hi"), env={"A": "b"}))
    assert loaded == here and hash(loaded) == hash(here)
    assert hash(loaded.process) == hash(here.process)
    assert {here: 1}[loaded] == 1
    with pytest.raises(AttributeError, match="cannot assign to field 'process'"):
        loaded.process = ProcessSpec()      # type: ignore[misc]
