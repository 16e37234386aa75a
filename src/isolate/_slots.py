"""How an op's fields pack into ``struct iso_op`` and its plan's arena: the slots.

An op class names, in its ``layout``, one ``Slot`` per field: ``Num`` (a
number in an ``arg`` or ``val``), ``Flag`` (a bit of ``flags``), ``Bool``,
``Fd`` (the fd slot), ``Str`` (a string in the arena, its offset in an
``arg``), ``Data``, ``Strs``, ``Ints`` and ``Packed`` (an array or a
codec's bytes in the arena, a count beside it).  ``Op.raw`` and
``Op.from_raw`` (``_plan.py``) walk them; nothing else packs an op.

A field may hold a ``SpawnFd``: an fd each spawn supplies.  Packing records
where it went (``Sink.holes``), so that ``PackedPlan.instantiate`` writes the
spawn's number there in a copy.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, ClassVar

__all__ = ["Arena", "SpawnFd", "mount_fd_names", "resolve_fd", "Sink", "FLAGS", "FD", "ARG", "VAL", "Slot", "Num",
           "Flag", "Bool", "Fd", "Str", "Data", "Strs", "Ints", "Packed"]


# --- the arena ---------------------------------------------------------------------


class Arena:
    """The plan's string and array area.  Offset 0 is a NUL byte meaning "none"."""

    __slots__ = ("buf",)

    def __init__(self, data: bytes = b"\0" * 8) -> None:
        self.buf = bytearray(data)

    def align(self, n: int) -> None:
        """Pad to a multiple of ``n`` bytes."""
        pad = -len(self.buf) % n
        if pad:
            self.buf += b"\0" * pad

    def str(self, s: bytes | None) -> int:
        """``s`` and a NUL; its offset (0 for None)."""
        if s is None:
            return 0
        off = len(self.buf)
        self.buf += s
        self.buf += b"\0"
        return off

    def data(self, b: bytes, align: int = 8) -> int:
        """``b`` (aligned to ``align``) and a NUL; its offset."""
        self.align(align)
        off = len(self.buf)
        self.buf += b
        self.buf += b"\0"
        return off

    def read_str(self, off: int) -> bytes | None:
        """The NUL-terminated string at ``off`` (None for 0)."""
        if off == 0:
            return None
        end = self.buf.index(0, off)
        return bytes(self.buf[off:end])


# --- per-spawn fds -----------------------------------------------------------------


class SpawnFd(int):
    """An fd that each spawn supplies: the ``index``-th of the plan's ``fd_names``.

    Its value is ``-2 - index``, never a real fd nor -1 ("none"), so a plan
    holding one is a template: ``PackedPlan.instantiate`` writes the spawn's
    number where it is packed, and ``Plan.bind`` gives the plan with it.
    """

    __slots__ = ()

    def __new__(cls, index: int) -> SpawnFd:
        if index < 0:
            raise ValueError(f"SpawnFd index must be >= 0, got {index}")
        return super().__new__(cls, -2 - index)

    @property
    def index(self) -> int:
        """The position of this fd in ``Plan.fd_names`` (and in ``instantiate``'s ``fds``)."""
        return -2 - int(self)

    def __repr__(self) -> str:
        return f"SpawnFd({self.index})"


def mount_fd_names(n: int) -> tuple[str, ...]:
    """The names of a plan's first ``n`` per-spawn fds when its ops name prepared mounts
    (``RootBind.fd``, see ``isolate._idmount``): ``mount 0``, ``mount 1``, ..."""
    return tuple(f"mount {i}" for i in range(n))


def net_fd_names(n: int) -> tuple[str, ...]:
    """The names of the per-spawn fds of a container's network files (``RootContext.net_files``),
    after the prepared mounts': ``net 0``, ``net 1``, ..."""
    return tuple(f"net {i}" for i in range(n))


def resolve_fd(value: int, fds: Sequence[int]) -> int:
    """``value`` itself, or for a ``SpawnFd`` the spawn's fd it stands for."""
    return fds[value.index] if type(value) is SpawnFd else value


class Sink:
    """What packing an op learns besides the bytes: the fds it names (inherited by
    the child program), where per-spawn fds go (``holes``: ``(buffer, byte offset,
    index)``, buffer 0 the ops, 1 the arena) and where the plan's own fds went
    (``placed``: ``(buffer, byte offset, fd)``, for ``PackedPlan.wire``)."""

    __slots__ = ("fds", "holes", "placed", "op_base")

    def __init__(self) -> None:
        self.fds: set[int] = set()
        self.holes: list[tuple[int, int, int]] = []
        self.placed: list[tuple[int, int, int]] = []
        self.op_base = 0

    def fd(self, value: int, where: int, offset: int) -> None:
        """Note the fd ``value`` packed at ``offset`` of buffer ``where``."""
        if type(value) is SpawnFd:
            self.holes.append((where, offset, value.index))
        elif value >= 0:
            self.fds.add(value)
            self.placed.append((where, offset, value))


_IN_OPS, _IN_ARENA = 0, 1

# --- slots: where a field goes in struct iso_op ------------------------------------

# Positions in an op's ten raw values: flags, fd, arg0..arg3, val0..val3.
FLAGS, FD = 0, 1


def ARG(i: int) -> int:
    """The raw position of ``arg<i>`` (a 32-bit arena offset or count)."""
    return 2 + i


def VAL(i: int) -> int:
    """The raw position of ``val<i>`` (a 64-bit number)."""
    return 6 + i


_FD_OFFSET = 8      # byte offset of the fd slot in struct iso_op


class Slot:
    """Where one field of an op goes, and how it comes back (``Op.layout``)."""

    __slots__ = ()
    #: Whether values of this slot may be fds (``SpawnFd`` placeholders included).
    holds_fds: ClassVar[bool] = False

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raise NotImplementedError

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        raise NotImplementedError

    def bind(self, value: Any, fds: Sequence[int]) -> Any:
        """``value`` with its ``SpawnFd`` placeholders replaced by ``fds``' numbers."""
        return value


class Num(Slot):
    """An integer at ``pos`` (``VAL(i)`` or ``ARG(i)``)."""

    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = int(value)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        return raw[self.pos]


class Flag(Slot):
    """A bool: ``bit`` in the op's flags."""

    __slots__ = ("bit",)

    def __init__(self, bit: int) -> None:
        self.bit = bit

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        if value:
            raw[FLAGS] |= self.bit

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        return bool(raw[FLAGS] & self.bit)


class Bool(Slot):
    """A bool as 0 or 1 at ``pos``."""

    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = 1 if value else 0

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        return bool(raw[self.pos])


class Fd(Slot):
    """The op's fd slot (-1: none); a ``SpawnFd`` is filled in per spawn."""

    __slots__ = ()
    holds_fds = True

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[FD] = value
        sink.fd(value, _IN_OPS, sink.op_base + _FD_OFFSET)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        return raw[FD]

    def bind(self, value: Any, fds: Sequence[int]) -> Any:
        return resolve_fd(value, fds)


class Str(Slot):
    """A NUL-terminated string (None: offset 0) at ``pos``; its length at ``length`` if given."""

    __slots__ = ("pos", "length", "empty")

    def __init__(self, pos: int, *, length: int | None = None, empty: bytes | None = None) -> None:
        self.pos, self.length, self.empty = pos, length, empty

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = arena.str(value)
        if self.length is not None:
            raw[self.length] = len(value)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        s = arena.read_str(raw[self.pos])
        return self.empty if s is None and self.empty is not None else s


class Data(Slot):
    """Bytes aligned to ``align`` at ``pos``, their length at ``length`` (in ``unit`` bytes)."""

    __slots__ = ("pos", "length", "align", "unit")

    def __init__(self, pos: int, *, length: int, align: int = 1, unit: int = 1) -> None:
        self.pos, self.length, self.align, self.unit = pos, length, align, unit

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = arena.data(value, self.align)
        raw[self.length] = len(value) // self.unit

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        off = raw[self.pos]
        return bytes(arena.buf[off:off + raw[self.length] * self.unit])


class Strs(Slot):
    """Strings, NUL-separated, at ``pos`` (0 when there are none), their number at ``count``."""

    __slots__ = ("pos", "count")

    def __init__(self, pos: int, *, count: int) -> None:
        self.pos, self.count = pos, count

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = arena.str(b"\0".join(value)) if value else 0
        raw[self.count] = len(value)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        out, off = [], raw[self.pos]
        for _ in range(raw[self.count]):
            end = arena.buf.index(0, off)
            out.append(bytes(arena.buf[off:end]))
            off = end + 1
        return tuple(out)


class Ints(Slot):
    """An 8-aligned array of ``fmt`` (``i`` or ``I``) at ``pos``, its length at ``count``.

    ``pairs``: the value is ``(a, b)`` pairs, counted as pairs, packed flat;
    ``fds``: their first members (or every member, without ``pairs``) are fds.
    """

    __slots__ = ("pos", "count", "fmt", "pairs", "fds")

    def __init__(self, pos: int, *, count: int, fmt: str = "i", pairs: bool = False,
                 fds: bool = False) -> None:
        self.pos, self.count, self.fmt, self.pairs, self.fds = pos, count, fmt, pairs, fds

    @property
    def holds_fds(self) -> bool:  # type: ignore[override]
        return self.fds

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        flat = [x for pair in value for x in pair] if self.pairs else list(value)
        arena.align(8)
        off = len(arena.buf)
        arena.buf += struct.pack(f"={len(flat)}{self.fmt}", *flat)
        raw[self.pos] = off
        raw[self.count] = len(value)
        if self.fds:
            step = 2 if self.pairs else 1
            for i in range(0, len(flat), step):
                sink.fd(flat[i], _IN_ARENA, off + 4 * i)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        n = raw[self.count] * (2 if self.pairs else 1)
        flat = struct.unpack_from(f"={n}{self.fmt}", arena.buf, raw[self.pos]) if n else ()
        return tuple(zip(flat[::2], flat[1::2])) if self.pairs else tuple(flat)

    def bind(self, value: Any, fds: Sequence[int]) -> Any:
        if not self.fds:
            return value
        if self.pairs:
            return tuple((resolve_fd(a, fds), b) for a, b in value)
        return tuple(resolve_fd(v, fds) for v in value)


class Packed(Slot):
    """Bytes a codec makes of the value, at ``pos`` (0 when empty), an item count at ``count``.

    ``codec`` is ``(encode(value) -> bytes, decode(buf, offset, count) -> value)``.
    """

    __slots__ = ("pos", "count", "encode", "decode")

    def __init__(self, pos: int, *, count: int,
                 codec: tuple[Callable[[Any], bytes], Callable[[bytearray, int, int], Any]]) -> None:
        self.pos, self.count = pos, count
        self.encode, self.decode = codec

    def put(self, value: Any, raw: list[int], arena: Arena, sink: Sink) -> None:
        raw[self.pos] = arena.data(self.encode(value), 1) if value else 0
        raw[self.count] = len(value)

    def get(self, raw: Sequence[int], arena: Arena) -> Any:
        return self.decode(arena.buf, raw[self.pos], raw[self.count])
