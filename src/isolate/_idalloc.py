"""Per-container id ranges for root's user namespaces (``userns="auto"``, podman's ``--userns=auto``).

As root, a container's user namespace maps its root and every other id it
knows (0..65535) to a block of 65536 host uids and gids that no other live
container has: container root is an ordinary, unprivileged host user, and two
containers cannot touch each other's files or signal each other's processes.

Where the blocks come from
--------------------------
The lines of ``/etc/subuid`` and ``/etc/subgid`` whose owner is ``isolate``
(``isolate:START:COUNT``, as ``usermod --add-subuids`` writes them; several
lines add up), cut into blocks of 65536.  Without such a line, a built-in
range: ``BUILTIN_START`` (0x70000000 = 1879048192) to just below systemd's
"foreign UID range" at 0x7FFE0000, 4094 blocks.  systemd's UIDS-GIDS
document lists 1879048192..2147483647 as unused: above its container range
(524288..1879048191, systemd-nspawn's ``--private-users=pick`` and
nsresourced), and above Debian's useradd subordinate ids (``SUB_UID_MIN``
100000 .. ``SUB_UID_MAX`` 600100000 in /etc/login.defs); below 2^31, where
the document warns that programs and kernel interfaces mishandle ids; and
below 0x7FFE0000, which systemd 258 gives to mountfsd's foreign range.

Who has which block
-------------------
One file per block in use, ``/run/isolate/userns/<first uid>``, made under an
exclusive ``flock`` on that directory (so several processes allocate at once
without giving one block twice) and holding ``<uid> <gid> <owner>``: the
owning process as ``pid-start-boot`` (``_registry.Owner``), or ``released``
once its container was closed while processes of it might still run.  The
owner also writes an owner record (kind ``userns-range``, see ``_owner``), so
that ``isolate gc`` finds a block whose owner was killed.  A block is taken
back (its file removed) when its owner closes a container whose processes
are all gone (its pid namespace ended with its init), and otherwise — the
owner died, or released it — only once no process on the host runs with a
uid or gid in it (every thread's real, effective, saved and filesystem ids
in ``/proc/*/task/*/status``): by ``isolate gc``, by the first allocation of
each process, and by any allocation that finds no free block.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import threading

from ._record import dataclass
from ._registry import Owner, boot_id, proc_start_time
from .errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._owner import Record

__all__ = ["BLOCK", "BUILTIN_START", "BUILTIN_COUNT", "OWNER", "Block", "allocate", "host_root",
           "ranges", "sweep"]

#: Ids per container: the whole 16-bit range, nobody (65534) included (systemd's advice).
BLOCK = 65536
#: The owner name of isolate's lines in /etc/subuid and /etc/subgid.
OWNER = "isolate"
#: The built-in range used when those files have no line for ``OWNER``.
BUILTIN_START = 0x70000000
BUILTIN_COUNT = 0x7FFE0000 - BUILTIN_START

#: Overridable for tests: the files read and the directory of blocks in use.
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
STATE_DIR = "/run/isolate/userns"

_lock = threading.Lock()
_swept = False                # this process ran its first-allocation sweep
_parsed: dict[str, tuple[tuple[int, int, int, int], list[tuple[int, int]]]] = {}


_host_root: tuple[int, bool] = (0, False)


def host_root() -> bool:
    """Whether this process is root of the host's user namespace (not ``unshare -r``'s root,
    which is an ordinary user outside): the only caller that may hand out host ids."""
    global _host_root
    if os.geteuid() != 0:
        return False
    try:
        ns = os.stat("/proc/self/ns/user").st_ino
    except OSError:
        return False
    if _host_root[0] != ns:
        with open("/proc/self/uid_map", "rb") as f:
            _host_root = (ns, f.read().split() == [b"0", b"0", b"4294967295"])
    return _host_root[1]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True, slots=True)
class Block:
    """One container's ids: host uids ``uid``.. and gids ``gid``.., ``BLOCK`` of each."""

    uid: int
    gid: int


def _read_ranges(path: str) -> list[tuple[int, int]]:
    """``OWNER``'s (start, count) ranges in ``path`` (cached while the file is unchanged)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _NONE
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    got = _parsed.get(path)
    if got is not None and got[0] == key:
        return got[1]
    out: list[tuple[int, int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(":")
            if len(parts) != 3 or parts[0] != OWNER:
                continue
            try:
                start, count = int(parts[1]), int(parts[2])
            except ValueError:
                raise ConfigError(f"{path}:{n}: a line for {OWNER!r} must be "
                                  f"'{OWNER}:START:COUNT', got {line.strip()!r}") from None
            if start < 1 or count < 1 or start + count > 2**32 - 1:
                raise ConfigError(f"{path}:{n}: the range {start}:{count} for {OWNER!r} must lie "
                                  f"within 1..4294967294")
            out.append((start, count))
    _parsed[path] = (key, out)
    return out


def _blocks(ranges: list[tuple[int, int]]) -> list[int]:
    """The first ids of the whole blocks in ``ranges`` (a range's remainder is not used)."""
    if not ranges:
        ranges = [(BUILTIN_START, BUILTIN_COUNT)]
    return [start + i * BLOCK for start, count in ranges for i in range(count // BLOCK)]


_NONE: list[tuple[int, int]] = []
_pairs: tuple[object, object, list[tuple[int, int]]] = (None, None, [])


def _block_ids() -> list[tuple[int, int]]:
    """(first uid, first gid) of every block, in order (kept while the files are unchanged)."""
    global _pairs
    uids, gids = _read_ranges(SUBUID), _read_ranges(SUBGID)
    if _pairs[0] is not uids or _pairs[1] is not gids:
        _pairs = (uids, gids, list(zip(_blocks(uids), _blocks(gids))))
    return _pairs[2]


def ranges() -> list[Block]:
    """Every block isolate may hand out, in order: from ``/etc/subuid`` and ``/etc/subgid``
    (owner ``isolate``), else from the built-in range."""
    return [Block(u, g) for u, g in _block_ids()]


def _first_free(blocks: list[tuple[int, int]], taken: set[str]) -> Block | None:
    for u, g in blocks:
        if str(u) not in taken:
            return Block(u, g)
    return None


def _state_dir() -> int:
    """The blocks' directory (made if missing), checked and open: root's, writable by no one else."""
    import stat as _stat

    try:
        fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(STATE_DIR), mode=0o755, exist_ok=True)
        try:
            os.mkdir(STATE_DIR, 0o700)
        except FileExistsError:
            pass
        fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise PermissionError(_errno.EACCES, "not a directory of root's that only root can write",
                              STATE_DIR)
    return fd


def _read(dir_fd: int, name: str) -> tuple[str, int, int] | None:
    """(owner text, uid, gid) of one block file, None if it is gone or malformed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        parts = os.read(fd, 256).decode("ascii", "replace").split()
    finally:
        os.close(fd)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return parts[2], int(parts[0]), int(parts[1])


def _dead(owner_text: str) -> bool:
    """Whether a block file's owner no longer holds it (released, or its process is gone)."""
    if owner_text == "released":
        return True
    owner = Owner.parse(owner_text)
    return owner is None or not owner.running()


def _exiting(pid: str, tid: str) -> bool:
    """Whether a thread is a zombie or past the point of no return (PF_EXITING): a killed
    owner's container being torn down (its pid namespace's init waits for the rest) will
    never run code with its ids again."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


_PF_EXITING = 0x4      # include/linux/sched.h
_SIGKILL_BIT = 1 << (9 - 1)


def _killed(status: bytes) -> bool:
    """Whether a thread has SIGKILL pending (a killed owner's container, sent its parent-death
    signal, before it is scheduled to die): it never returns to user space."""
    for line in status.splitlines():
        if line.startswith((b"SigPnd:", b"ShdPnd:")) and int(line.split()[1], 16) & _SIGKILL_BIT:
            return True
    return False


def ids_in_use() -> list[tuple[int, int]]:
    """Every (uid, gid) of every live thread on the host: real, effective, saved, filesystem."""
    seen: set[tuple[int, int]] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status", "rb") as f:
                    text = f.read()
            except OSError:
                continue
            uids: list[int] = []
            gids: list[int] = []
            if _exiting(pid, tid):
                continue
            if _killed(text):
                continue
            for line in text.splitlines():
                if line.startswith(b"Uid:"):
                    uids = [int(x) for x in line.split()[1:]]
                elif line.startswith(b"Gid:"):
                    gids = [int(x) for x in line.split()[1:]]
                    break
            for u, g in zip(uids, gids):
                seen.add((u, g))
    return sorted(seen)


def _used(blocks: list[tuple[int, int]], in_use: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``blocks`` (uid, gid) that a process runs in (by uid or gid)."""
    return {(u0, g0) for u0, g0 in blocks for u, g in in_use
            if u0 <= u < u0 + BLOCK or g0 <= g < g0 + BLOCK}


def _sweep(dir_fd: int, dry_run: bool = False, only: str | None = None) -> list[tuple[str, str]]:
    """Remove the blocks (held under the lock) whose owner is gone and that no process uses;
    returns (file name, owner text) of each.  ``only``: that block file alone."""
    candidates: list[tuple[str, str, int, int]] = []
    for name in ([only] if only is not None else os.listdir(dir_fd)):
        if not name.isdigit():
            continue
        got = _read(dir_fd, name)
        if got is None or _dead(got[0]):
            owner, uid, gid = got if got is not None else ("", int(name), -1)
            candidates.append((name, owner, uid, gid))
    if not candidates:
        return []
    busy = _used([(u, g) for _, _, u, g in candidates], ids_in_use())
    out = []
    for name, owner, uid, gid in candidates:
        if (uid, gid) in busy:
            continue
        if not dry_run:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
        out.append((name, owner))
    return out


class _Locked:
    """The blocks' directory, open and exclusively locked (``with``)."""

    def __enter__(self) -> int:
        self.fd = _state_dir()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)             # drops the lock


def sweep(*, dry_run: bool = False) -> list[tuple[str, str]]:
    """Take back every block whose owner is gone and that no process uses (``isolate gc``).

    Returns (path, owner text) of each; ``dry_run`` removes nothing.
    """
    if not os.path.isdir(STATE_DIR):
        return []
    with _Locked() as fd:
        return [(os.path.join(STATE_DIR, n), o) for n, o in _sweep(fd, dry_run)]


def reclaim_path(path: str, dev: int, ino: int, owner: str, dry_run: bool) -> bool | None:
    """A dead ``owner``'s recorded block file ``path`` (device ``dev``, inode ``ino``): removed
    if still the same file, still naming ``owner`` (a file system may give a new file the
    freed inode number), and no process uses its ids (True); gone or another's: None; in
    use: False.  For ``_reclaim``."""
    if os.path.dirname(path) != STATE_DIR or not os.path.isdir(STATE_DIR):
        return None
    with _Locked() as fd:
        name = os.path.basename(path)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        got = _read(fd, name)
        if (st.st_dev, st.st_ino) != (dev, ino) or got is None or got[0] not in (owner, "released"):
            return None
        return bool(_sweep(fd, dry_run, only=name))


class Lease:
    """A block held for one container: ``uid_map``/``gid_map`` from it; ``release`` gives it back."""

    __slots__ = ("block", "path", "_record", "_pid")

    def __init__(self, block: Block, path: str, record: Record) -> None:
        self.block = block
        self.path = path
        self._record = record
        self._pid = os.getpid()

    def release(self, *, processes_gone: bool) -> None:
        """Give the block back.  ``processes_gone``: no process of the container can still run
        (its pid namespace ended), so it is free at once; otherwise it is marked ``released``
        and taken back once no process runs with its ids.  Idempotent; a forked child's copy
        does nothing."""
        rec, self._record = self._record, None   # type: ignore[assignment]
        if rec is None or self._pid != os.getpid():
            return
        try:
            if processes_gone:
                os.unlink(self.path)
            else:
                _write_owner(self.path, self.block, "released")
        except FileNotFoundError:
            pass
        rec.clear()


def _write_owner(path: str, block: Block, owner: str) -> None:
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{block.uid} {block.gid} {owner}\n".encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


_owner_name: tuple[int, str] = (0, "")


def _me() -> str:
    """This process as a block file names its owner (``Owner.name``), kept per pid."""
    global _owner_name
    pid = os.getpid()
    if _owner_name[0] != pid:
        _owner_name = (pid, Owner(pid, proc_start_time(pid) or 0, boot_id()).name)
    return _owner_name[1]


def allocate() -> Lease:
    """A block no live container holds, recorded for this process (root only).

    Raises ``UnsupportedError`` naming /etc/subuid and /etc/subgid when every
    block is in use, ``ConfigError`` for a malformed ``isolate`` line there.
    """
    global _swept
    from . import _owner

    blocks = _block_ids()
    if not blocks:
        raise UnsupportedError(f"{SUBUID} and {SUBGID} reserve no whole block of {BLOCK} ids "
                               f"for {OWNER!r}: give each a line '{OWNER}:START:COUNT' with "
                               f"COUNT a multiple of {BLOCK}")
    me = _me()
    record = _owner.record("userns-range")
    with _lock, _Locked() as fd:
        if not _swept:
            # Once per process: what killed owners left (a cheap look unless there is some).
            _swept = True
            _sweep(fd)
        block = _first_free(blocks, set(os.listdir(fd)))
        if block is None and _sweep(fd):
            block = _first_free(blocks, set(os.listdir(fd)))
        if block is None:
            record.clear()
            raise UnsupportedError(
                f"every range of {BLOCK} ids isolate may give a container is in use "
                f"({len(blocks)} in all, from the '{OWNER}' lines of {SUBUID} and {SUBGID}, "
                f"else the built-in {BUILTIN_START}:{BUILTIN_COUNT}): close containers, run "
                f"'isolate gc', or reserve more with 'usermod --add-subuids START-END "
                f"--add-subgids START-END {OWNER}' (a user named {OWNER!r})")
        path = os.path.join(STATE_DIR, str(block.uid))
        # No "pending" line first: a block file whose owner dies before the record is
        # written names that owner, and the sweep takes it back as any dead owner's.
        nfd = os.open(str(block.uid), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                      | os.O_CLOEXEC, 0o600, dir_fd=fd)
        try:
            os.write(nfd, f"{block.uid} {block.gid} {me}\n".encode())
            st = os.fstat(nfd)
        finally:
            os.close(nfd)
        record.made_ids(path, "userns-range", st.st_dev, st.st_ino)
        record.flush()
    return Lease(block, path, record)
