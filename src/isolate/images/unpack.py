"""Unpacking a layer blob into a directory in overlayfs form, safely and in one pass.

``unpack_layer(blob, dest, diff_id=..., compression=...)`` streams the blob
(plain tar, gzip or zstd) through the decompressor and tar reader once,
hashing the uncompressed stream as it goes: when it does not hash to
``diff_id`` the directory is removed and ``DigestError`` raised.  The caller
(``Image.layers``) unpacks into a fresh directory under the store's ``tmp/``
and renames it into place once verified.

A layer is hostile.  Every entry lands inside ``dest``:

- ``..`` components are refused (``ImageError`` naming the entry); a leading
  ``/`` is dropped (the path is relative to the layer's root, as tar does);
- each entry's parent is opened with ``openat2(RESOLVE_IN_ROOT |
  RESOLVE_NO_MAGICLINKS)`` beneath ``dest`` (``_spawn.open_in_root``), so a
  symlink planted by an earlier entry (``a -> /``, ``a -> ../..``) resolves
  inside the layer, never out of it; the entry itself is created with
  ``O_EXCL``/``O_NOFOLLOW`` semantics (``*at`` calls on its name after
  removing what was there), never written through a link;
- a hardlink's target is resolved the same way: an entry of this layer, or
  the layer is refused (a link to ``/etc/passwd`` names the layer's own
  ``etc/passwd``, which must exist).

Whiteouts: ``.wh.NAME`` becomes a 0/0 character device ``NAME`` (overlayfs'
whiteout; mknod of one needs no CAP_MKNOD since Linux 5.8) and
``.wh..wh..opq`` the directory's opaque xattr: ``user.overlay.opaque=y``
always (``RootFS.from_image`` mounts image layers with ``userxattr``, in a
user namespace or not), and ``trusted.overlay.opaque=y`` too when unpacking
as root (so a plain overlay mount of the layers agrees).  An image's own
``trusted.overlay.*`` / ``user.overlay.*`` xattrs are dropped: they would
steer overlayfs (redirects, metacopy).

As root, owners (``lchown``), modes with setuid/setgid/sticky, xattrs of every
namespace and device nodes are kept.

Without root, ``id_maps`` decides (``shift_maps()`` gives them: what
``Image.layers`` passes).  Given the caller's subordinate id maps (0 is the
caller, 1 and up its /etc/subuid and /etc/subgid ranges: ``idmap.subid_maps``),
the unpack runs in a child process inside a user namespace with those maps
(``_unpack_child``), as rootless podman unpacks in ``podman unshare``: owners are
kept, shifted (a file of uid 1000 in the image belongs to host uid
``subuid_start + 999``, and a container with the same maps sees 1000), and so
are setuid/setgid bits; device nodes are skipped with a ``RuntimeWarning`` and
only ``user.*`` xattrs are set (mknod and ``trusted.*`` need capabilities in
the initial user namespace); an owner outside the maps is an ``ImageError``
naming the entry.  Such a tree is removed with ``remove_tree(path, id_maps)``
(the caller alone may not unlink what its subordinate ids own).  Without
``id_maps`` (a user without ranges) the files belong to the caller (owners
cannot be set: the ids are dropped, as umoci's rootless unpack does without
``--rootless`` xattr emulation), modes are kept (setuid bits as the kernel
allows), only ``user.*`` xattrs are set, and device nodes are skipped with a
``RuntimeWarning`` (umoci rootless skips them too).
Modification times are set on every entry, symlinks included, directories
after their contents.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import stat
import sys
import tarfile
import threading
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Literal, NamedTuple, Sequence

from ..errors import DigestError, ImageError
from ..idmap import IdMap

try:    # ISA-L's inflate (python-isal): zlib's interface at about twice its speed
    from isal import isal_zlib as _zlib
except ImportError:     # a Python without it (Debian's, for a rootless user): zlib
    import zlib as _zlib  # type: ignore[no-redef]
_ZLIB_ERROR: type[Exception] = getattr(_zlib, "error")   # (isal's stub types it as an instance)

__all__ = ["unpack_layer", "Unpacked", "remove_tree", "shift_maps", "IdMaps", "Digester",
           "WHITEOUT_PREFIX", "OPAQUE"]

#: A user namespace's (uid map, gid map).
IdMaps = tuple[Sequence[IdMap], Sequence[IdMap]]
_Mode = Literal["root", "shifted", "user"]

#: A layer entry named ``.wh.NAME`` deletes ``NAME`` of the layers below.
WHITEOUT_PREFIX = ".wh."
#: A layer entry of this name in a directory hides everything the layers below have there.
OPAQUE = ".wh..wh..opq"
_READ = 1 << 20
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_DIR_FDS = 256


class Unpacked(NamedTuple):
    """What ``unpack_layer`` made of a layer."""

    #: The uncompressed tar's size in bytes.
    size: int
    #: The directories the layer implies (relative paths, sorted): made as parents of its
    #: entries, with no entry of their own.  Made 0755 and owned by root here, they take
    #: the lower layers' metadata in an image (``image.fix_layer``), as the OCI layer
    #: spec and umoci's unpack have it.
    implied: tuple[str, ...]


class Digester:
    """A forward-only readable stream of a layer's uncompressed tar: decompresses ``raw``
    (``tar``, ``gzip`` or ``zstd``) and hashes it (``hexdigest()``, ``size``).

    Decompression and hashing run in a thread of their own (zlib, zstd and
    hashlib release the GIL on large buffers), a few MiB ahead of the reader,
    so they overlap with the writes of the files.  ``seek`` only goes forward
    (skipping is reading), which is all ``tarfile`` asks of it for a one-pass
    read; ``close()`` stops the thread.
    """

    def __init__(self, raw: IO[bytes], compression: str) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0
        self._buf = b""
        self._pos = 0        # in _buf
        self._off = 0        # of _buf[0] in the stream
        self._eof = False
        self._next: Callable[[], bytes]
        if compression == "tar":
            self._next = lambda: raw.read(_READ)
        elif compression == "gzip":
            self._next = self._gzip_chunks()
        elif compression == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ,
                                                                read_across_frames=True)
            self._next = lambda: reader.read(_READ)
        else:
            raise ImageError(f"layer compression {compression!r} is not tar, gzip or zstd")
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="isolate-unpack", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._next()
                if chunk:
                    self._hash.update(chunk)
                    self.size += len(chunk)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as e:      # handed to the reader, raised there
            self._put(e)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the decompressing thread (idempotent)."""
        self._stop.set()
        self._thread.join()

    def _gzip_chunks(self) -> Callable[[], bytes]:
        # Concatenated gzip members (pigz, some registries) are one stream, as gzip(1) reads them.
        state = {"d": _zlib.decompressobj(wbits=31)}
        raw = self._raw

        def step() -> bytes:
            while True:
                d = state["d"]
                if d.unconsumed_tail:
                    data = d.unconsumed_tail
                elif d.eof and d.unused_data:
                    data = d.unused_data
                    state["d"] = d = _zlib.decompressobj(wbits=31)
                else:
                    data = raw.read(_READ)
                    if not data:
                        if not d.eof:
                            raise ImageError("layer: the gzip stream is truncated")
                        return b""
                    if d.eof:
                        state["d"] = d = _zlib.decompressobj(wbits=31)
                try:
                    out = d.decompress(data, 4 * _READ)
                except _ZLIB_ERROR as e:
                    raise ImageError(f"layer: not a gzip stream ({e})") from None
                if out:
                    return out

        return step

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        self._off += len(self._buf)
        self._buf, self._pos = item, 0
        if not item:
            self._eof = True
            return False
        return True

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes (all that is left for ``n < 0``); fewer only at the end of the stream.

        Never short in the middle: ``tarfile`` takes a short header block for the end
        of the archive, and would stop there, silently (the digest, of the whole
        stream, would still match)."""
        if n is None or n < 0:
            parts = [self._buf[self._pos:]]
            self._pos = len(self._buf)
            while self._fill():
                parts.append(self._buf)
                self._pos = len(self._buf)
            return b"".join(parts)
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        if self._pos == 0 and n == len(self._buf):
            self._pos = n
            return self._buf
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos:end]
            self._pos = end
            return out
        parts = [self._buf[self._pos:]]     # across chunks
        need = n - len(parts[0])
        self._pos = len(self._buf)
        while need > 0 and self._fill():
            k = min(need, len(self._buf))
            parts.append(self._buf[:k])
            self._pos = k
            need -= k
        return b"".join(parts)

    def tell(self) -> int:
        """The position in the uncompressed stream."""
        return self._off + self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        """Go forward to ``pos`` (``whence`` 0) by reading; ``OSError`` for a step back."""
        if whence == 1:
            pos += self.tell()
        elif whence != 0:
            raise OSError(errno.ESPIPE, "a layer stream seeks from its start only")
        skip = pos - self.tell()
        if skip < 0:
            raise OSError(errno.ESPIPE, f"a layer stream cannot go back ({pos} < {self.tell()})")
        while skip > 0:
            if self._pos >= len(self._buf) and not self._fill():
                break
            k = min(skip, len(self._buf) - self._pos)
            self._pos += k
            skip -= k
        return self.tell()

    def copy_to(self, fd: int, n: int) -> int:
        """Write the next ``n`` bytes to ``fd`` straight from the decompressed buffers;
        returns how many there were (fewer at the end of the stream)."""
        done = 0
        while done < n:
            if self._pos >= len(self._buf) and not self._fill():
                break
            view = memoryview(self._buf)[self._pos:self._pos + (n - done)]
            k = len(view)
            while view:
                view = view[os.write(fd, view):]
            self._pos += k
            done += k
        return done

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left: the end-of-archive padding."""
        self._pos = len(self._buf)
        while self._fill():
            self._pos = len(self._buf)

    def hexdigest(self) -> str:
        """The sha256 of the whole stream (after ``drain``: the thread has ended)."""
        self._thread.join()
        return self._hash.hexdigest()


def _entry_parts(name: str, layer: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer {layer}: entry {name!r} leaves the layer ('..')")
    for p in parts:
        if "\0" in p:
            raise ImageError(f"layer {layer}: entry {name!r} has a NUL byte")
    return parts


class _Unpacker:
    """One layer's unpack into the directory whose fd is ``root``."""

    def __init__(self, root: int, layer: str, mode: _Mode) -> None:
        self.root = root
        self.layer = layer
        # root: everything kept; shifted: root of a user namespace of subordinate ids
        # (owners kept, no devices, no trusted.*); user: owners dropped too.
        self.is_root = mode == "root"
        self.owners = mode != "user"
        self.dirs: dict[str, int] = {"": root}     # parent path -> open directory fd
        self.dir_meta: dict[str, tarfile.TarInfo] = {}   # the last entry of each directory
        self.made: set[str] = set()     # directories made as parents of entries
        self.skipped_devices: list[str] = []

    def close(self) -> None:
        """Close every cached directory fd but the root's (the caller's)."""
        for k, fd in self.dirs.items():
            if k:
                os.close(fd)
        self.dirs = {"": self.root}

    def parent(self, parts: list[str], entry: str = "") -> int:
        """An fd of the directory holding ``parts[-1]``, made (0755) where missing
        (``entry``: the tar entry, for errors)."""
        entry = entry or "/".join(parts)
        key = "/".join(parts[:-1])
        fd = self.dirs.get(key)
        if fd is not None:
            return fd
        from .._spawn import open_in_root

        try:
            fd = open_in_root(self.root, key, _DIR_FLAGS)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise ImageError(f"layer {self.layer}: the parent of {entry!r} "
                                 f"is not a directory in the layer: {e.strerror}") from None
            up = self.parent(parts[:-1], entry)
            try:
                os.mkdir(parts[-2], 0o755, dir_fd=up)
                self.made.add(key)
            except FileExistsError:
                pass
            try:
                fd = open_in_root(self.root, key, _DIR_FLAGS)
            except OSError as e:     # a dangling symlink there: its target is not made
                raise ImageError(f"layer {self.layer}: the parent of {entry!r} is not a "
                                 f"directory in the layer: {e.strerror}") from None
        if len(self.dirs) > _MAX_DIR_FDS:
            self.close()      # bounded: a layer may have more directories than fds
        self.dirs[key] = fd
        return fd

    def forget(self, parts: list[str] | None = None) -> None:
        """Something at ``parts`` was removed or replaced (None: anything): a cached
        directory fd may have been resolved through it (below it, or through a symlink to
        it), so all are dropped but those of ``parts``' parents, which stay the tree's."""
        keep = {"/".join(parts[:i]) for i in range(len(parts))} if parts is not None else {""}
        for k in [k for k in self.dirs if k not in keep]:
            os.close(self.dirs.pop(k))

    def clear(self, pfd: int, parts: list[str], *, keep_dir: bool) -> bool:
        """Remove what is at ``parts`` (its parent's fd: ``pfd``; a directory only if not
        ``keep_dir``); returns whether a directory is kept there.  ``pfd`` stays valid."""
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            _rmtree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
        self.forget(parts)
        return False

    def entry(self, stream: Digester, m: tarfile.TarInfo) -> None:
        parts = _entry_parts(m.name, self.layer)
        if not parts:
            if m.isdir():
                self.dir_meta[""] = m     # the layer's root itself: "./"
            return
        base = parts[-1]
        if base == OPAQUE:
            pfd = self.parent(parts, m.name)
            if self.is_root:
                os.setxattr(pfd, "trusted.overlay.opaque", b"y")
            try:
                os.setxattr(pfd, "user.overlay.opaque", b"y")
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                raise ImageError(
                    f"layer {self.layer}: {m.name!r} makes an opaque directory, which needs user.* "
                    "extended attributes, and the image store's filesystem takes none (tmpfs "
                    "before Linux 6.6): put the store on another filesystem (--store DIR, "
                    "$ISOLATE_IMAGE_STORE)") from None
            return
        if base.startswith(WHITEOUT_PREFIX):
            name = base[len(WHITEOUT_PREFIX):]
            if name in ("", ".", ".."):
                raise ImageError(f"layer {self.layer}: bad whiteout {m.name!r}")
            pfd = self.parent(parts, m.name)
            self.clear(pfd, parts[:-1] + [name], keep_dir=False)
            os.mknod(name, stat.S_IFCHR | 0o000, 0, dir_fd=pfd)
            return
        pfd = self.parent(parts, m.name)
        # Created with O_EXCL semantics first (a layer's names are mostly new: no lstat
        # per entry); what is there already is removed, then the create is made again.
        if m.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                if not self.clear(pfd, parts, keep_dir=True):
                    os.mkdir(base, 0o700, dir_fd=pfd)
            self.dir_meta["/".join(parts)] = m
            return
        if m.isreg():
            if m.sparse is not None:
                raise ImageError(f"layer {self.layer}: {m.name!r} is a GNU sparse file, which this "
                                 "runtime does not unpack")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(base, flags, 0o600, dir_fd=pfd)
            except FileExistsError:
                self.clear(pfd, parts, keep_dir=False)
                fd = os.open(base, flags, 0o600, dir_fd=pfd)
            try:
                stream.seek(m.offset_data)
                if stream.copy_to(fd, m.size) != m.size:
                    raise ImageError(f"layer {self.layer}: {m.name!r} is truncated")
                self.meta_fd(fd, m)
            finally:
                os.close(fd)
            return
        if m.islnk():
            self.hardlink(parts, m)
            return
        try:
            os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            pass
        else:
            self.clear(pfd, parts, keep_dir=False)
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
        elif m.isfifo():
            os.mknod(base, stat.S_IFIFO | 0o600, dir_fd=pfd)
        elif m.ischr() or m.isblk():
            if not self.is_root:
                self.skipped_devices.append(m.name)
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        else:
            raise ImageError(f"layer {self.layer}: entry {m.name!r} has a type this runtime does "
                             f"not unpack ({m.type!r})")
        self.meta_at(pfd, base, m, symlink=m.issym())

    def hardlink(self, parts: list[str], m: tarfile.TarInfo) -> None:
        target = _entry_parts(m.linkname, self.layer)
        if not target:
            raise ImageError(f"layer {self.layer}: hardlink {m.name!r} to the layer's root")
        tfd = -1
        try:
            # Its own copy: looking the link's parent up may drop cached fds (``parent``).
            tfd = os.dup(self.parent(target))
            pfd = self.parent(parts, m.name)
            try:
                os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileExistsError:
                if target == parts:
                    return     # a link to itself: the entry is there
                self.clear(pfd, parts, keep_dir=False)
                os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except (OSError, ImageError) as e:
            why = e.strerror if isinstance(e, OSError) else str(e)
            raise ImageError(f"layer {self.layer}: hardlink {m.name!r} -> {m.linkname!r}: its "
                             f"target is not an entry of the layer ({why})") from None
        finally:
            if tfd >= 0:
                os.close(tfd)

    def xattrs(self, m: tarfile.TarInfo) -> list[tuple[str, bytes]]:
        out = []
        for k, v in m.pax_headers.items():
            if not k.startswith("SCHILY.xattr."):
                continue
            name = k[len("SCHILY.xattr."):]
            if name.startswith(_OVERLAY_XATTRS) or (not self.is_root and not name.startswith("user.")):
                continue
            out.append((name, v.encode("utf-8", "surrogateescape")))
        return out

    def chown_failed(self, e: OSError, m: tarfile.TarInfo) -> None:
        if e.errno == errno.EINVAL and not self.is_root:
            raise ImageError(f"layer {self.layer}: {m.name!r} belongs to uid {m.uid} gid {m.gid}, "
                             "outside the ids this user may map (its /etc/subuid and /etc/subgid "
                             "ranges)") from None
        raise e

    def meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.owners:
            try:
                os.fchown(fd, m.uid, m.gid)
            except OSError as e:
                self.chown_failed(e, m)
        os.fchmod(fd, m.mode & 0o7777)     # after chown, which clears setuid bits
        for name, value in self.xattrs(m):
            os.setxattr(fd, name, value)
        os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)

    def meta_at(self, pfd: int, name: str, m: tarfile.TarInfo, *, symlink: bool) -> None:
        if self.owners:
            try:
                os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            except OSError as e:
                self.chown_failed(e, m)
        if not symlink:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd, follow_symlinks=True)
            for xname, value in self.xattrs(m):
                # A fifo or device: set on the node itself (a path of our own making).
                os.setxattr(f"/proc/self/fd/{pfd}/{name}", xname, value, follow_symlinks=False)
        os.utime(name, ns=(int(m.mtime * 1e9),) * 2, dir_fd=pfd, follow_symlinks=False)

    def implied(self) -> tuple[str, ...]:
        """The directories the layer implies: made as parents of its entries, with no entry
        of their own, and directories still (sorted)."""
        out = []
        for path in sorted(self.made - self.dir_meta.keys()):
            fd = _open_dirs(self.root, path.split("/"))
            if fd is not None:
                os.close(fd)
                out.append(path)
        return tuple(out)

    def finish_dirs(self) -> None:
        """Directories' owners, modes, xattrs and mtimes, deepest first (after their contents,
        whose creation changed their mtime, and after a read-only mode no longer matters)."""
        from .._spawn import open_in_root

        self.forget()
        for path in sorted(self.dir_meta, key=lambda p: p.count("/") + bool(p), reverse=True):
            m = self.dir_meta[path]
            try:
                fd = self.root if not path else open_in_root(self.root, path, _DIR_FLAGS | os.O_NOFOLLOW)
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ENOENT, errno.ELOOP):
                    continue     # replaced by a later entry, or removed by a whiteout
                raise
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    continue
                self.meta_fd(fd, m)
            finally:
                if fd != self.root:
                    os.close(fd)


def _open_dirs(root: int, parts: Sequence[str]) -> int | None:
    """An fd of the directory ``parts`` beneath the directory fd ``root``, each component a
    directory (never a symlink followed), or None when one is missing or is not."""
    fd = os.dup(root)
    for part in parts:
        try:
            nfd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        os.close(fd)
        fd = nfd
    return fd


def _rmtree_at(pfd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=pfd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _rmtree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def unpack_layer(blob: str | os.PathLike[str], dest: str | os.PathLike[str], *, diff_id: str,
                 compression: str, name: str | None = None, id_maps: IdMaps | None = None) -> Unpacked:
    """Unpack the layer blob at ``blob`` into the new directory ``dest`` (made here, mode 0755,
    its parent must exist); returns its uncompressed size and the directories it implies.

    ``compression``: ``tar``, ``gzip`` or ``zstd``; ``diff_id``: the sha256
    the uncompressed tar must hash to.  ``name`` names the layer in errors
    (default: ``diff_id``).  On any error (``ImageError`` for a hostile or
    broken entry, ``DigestError`` for a digest mismatch) ``dest`` is removed:
    nothing partial is left.  ``id_maps`` (a caller without root: its
    ``shift_maps()``): unpack in a child process in a user namespace of those
    maps, owners kept and shifted (see the module's doc); the child's errors
    are raised here with the same type and message.
    """
    if id_maps is not None and os.geteuid() != 0:
        return _unpack_shifted(blob, dest, diff_id=diff_id, compression=compression,
                               name=name or diff_id, id_maps=id_maps)
    return _unpack(blob, dest, diff_id=diff_id, compression=compression, name=name,
                   mode="root" if os.geteuid() == 0 else "user")


def shift_maps() -> IdMaps | None:
    """The id maps a caller without root unpacks layers with, owners kept: its
    ``idmap.subid_maps()`` (0 is the caller, 1 and up its subordinate ids).  None for
    root, and for a user without /etc/subuid and /etc/subgid ranges or without
    newuidmap/newgidmap (its layers' owners are dropped)."""
    if os.geteuid() == 0:
        return None
    from ..errors import ConfigError, UnsupportedError
    from ..idmap import subid_maps

    try:
        return subid_maps()
    except (UnsupportedError, ConfigError):
        return None


def remove_tree(path: str | os.PathLike[str], id_maps: IdMaps | None = None) -> None:
    """Remove the directory tree ``path`` (no error if it is gone), read-only directories
    included.  A caller without root removes files its subordinate ids own (in directories
    they own: the caller alone may not) in a child in a user namespace of those ids:
    ``id_maps`` given (a tree unpacked with them), all of it there; else what is left
    after the caller's own try, with ``shift_maps()``.  ``OSError`` if some of it stays."""
    path = os.fspath(path)
    if id_maps is not None and os.geteuid() != 0:
        _in_userns(["rm", os.path.abspath(path)], id_maps, f"remove {path!r}")
        return
    _rmtree_path(path, chmod=True)
    if not os.path.lexists(path) or os.geteuid() == 0:
        return
    maps = id_maps if id_maps is not None else shift_maps()
    if maps is None:
        raise OSError(errno.EACCES, "cannot remove what other ids own here", path)
    _in_userns(["rm", os.path.abspath(path)], maps, f"remove {path!r}")


def _rmtree_path(path: str, *, chmod: bool = False) -> None:
    """``shutil.rmtree`` without error for what is already gone; ``chmod``: make read-only
    directories writable on the way (their modes bind an owner without root), and leave
    what cannot go for the caller to see."""
    if not chmod:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        return

    def writable(func: object, p: str, exc: object) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass

    shutil.rmtree(path, onerror=writable)
    shutil.rmtree(path, ignore_errors=True)


def _in_userns(args: list[str], id_maps: IdMaps, what: str) -> dict[str, Any]:
    """Run ``_unpack_child`` with ``args`` in a new user namespace of ``id_maps``; its JSON
    outcome (errors raised as the child's type, with its message)."""
    import json

    from ..process import PIPE, spawn

    # The same isolate as this process's (an -I interpreter sees no PYTHONPATH).
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from isolate.images._unpack_child import main; sys.exit(main(sys.argv[1:]))")
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = spawn([sys.executable, "-I", "-c", code, top, *args], namespaces={"user"},
                 uid_map=id_maps[0], gid_map=id_maps[1], stdin=PIPE, stdout=PIPE, stderr=PIPE,
                 die_with_parent=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    lines = (out or b"").decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines and proc.returncode == 0 else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        why = (err or b"").decode("utf-8", "replace").strip().splitlines()
        raise ImageError(f"{what}: the process in the user namespace of subordinate ids failed "
                         f"(exit {proc.returncode}){': ' + why[-1] if why else ''}")
    kind = result.get("error")
    if kind is None:
        return result
    if kind == "DigestError":
        raise DigestError(str(result.get("message")), expected=str(result.get("expected")),
                          actual=str(result.get("actual")))
    if kind == "OSError":
        e = result.get("errno")
        raise OSError(e if isinstance(e, int) else errno.EIO, str(result.get("strerror")),
                      result.get("filename"))
    if kind == "ImageError":
        raise ImageError(str(result.get("message")))
    raise ImageError(f"{what}: {kind}: {result.get('message')}")


def _unpack_shifted(blob: str | os.PathLike[str], dest: str | os.PathLike[str], *, diff_id: str,
                    compression: str, name: str, id_maps: IdMaps) -> Unpacked:
    dest = os.path.abspath(os.fspath(dest))
    try:
        result = _in_userns(["unpack", os.path.abspath(os.fspath(blob)), dest, diff_id,
                             compression, name], id_maps, f"layer {name}")
    except BaseException:
        if os.path.lexists(dest):     # the child was killed before it could clean up
            try:
                remove_tree(dest, id_maps)
            except (OSError, ImageError):
                pass
        raise
    for text in result.get("warnings", []):
        warnings.warn(str(text), RuntimeWarning, stacklevel=3)
    size, implied = result.get("size"), result.get("implied")
    if not isinstance(size, int) or not isinstance(implied, list):
        raise ImageError(f"layer {name}: the unpacking process gave no size")
    return Unpacked(size, tuple(map(str, implied)))


def _unpack(blob: str | os.PathLike[str], dest: str | os.PathLike[str], *, diff_id: str,
            compression: str, name: str | None, mode: _Mode) -> Unpacked:
    what = name or diff_id
    dest = Path(dest)
    os.mkdir(dest, 0o755)
    try:
        with open(blob, "rb", buffering=0) as raw:
            stream = Digester(raw, compression)
            root = os.open(dest, _DIR_FLAGS | os.O_NOFOLLOW)
            u = _Unpacker(root, what, mode)
            try:
                try:
                    # "r:" on a forward-only stream: tarfile's own stream mode ("r|")
                    # copies its whole buffer at each small read.
                    tf = tarfile.TarFile(fileobj=stream, mode="r")  # type: ignore[arg-type]
                    while (m := tf.next()) is not None:
                        u.entry(stream, m)
                        getattr(tf, "members").clear()   # one pass: keep no TarInfo
                except tarfile.TarError as e:
                    raise ImageError(f"layer {what}: not a tar stream ({e})") from None
                stream.drain()
                actual = "sha256:" + stream.hexdigest()
                if actual != diff_id:
                    raise DigestError(f"layer {what}: its uncompressed tar hashes to {actual}, "
                                      f"not its diff_id {diff_id}", expected=diff_id, actual=actual)
                u.finish_dirs()
                implied = u.implied()
            finally:
                stream.close()
                u.close()
                os.close(root)
        if u.skipped_devices:
            warnings.warn(f"layer {what}: {len(u.skipped_devices)} device node(s) not made without "
                          f"root (first: {u.skipped_devices[0]!r})", RuntimeWarning, stacklevel=3)
        return Unpacked(stream.size, implied)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise

