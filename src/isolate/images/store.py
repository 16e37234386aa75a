"""The image store: content-addressed blobs, unpacked layers and the names that point at them.

One directory tree, chosen by the caller (``Store(root)``), else
``$ISOLATE_IMAGE_STORE``, else ``/var/lib/isolate/images`` for root and
``$XDG_DATA_HOME/isolate/images`` (``~/.local/share/isolate/images``) for
other users::

    <root>/lock                      flock: exclusive while names or layers change
    <root>/blobs/sha256/<hex>        verified blobs: manifests, indexes, configs, layers
    <root>/ingest/sha256/<hex>       a blob being written (a download resumes from its size)
    <root>/layers/sha256/<hex>/      a layer unpacked in overlayfs form, named by its diff_id;
                                     or a layer's metadata layer, named by the layer's chain id
    <root>/layers/sha256/<hex>.ids   present when its owners are shifted: the id maps it was
                                     unpacked with (a store of a user with subordinate ids)
    <root>/layers/sha256/<hex>.implied  present when the layer implies directories: their
                                     paths (JSON), which take the lower layers' metadata
    <root>/tmp/                      staging for unpacks; emptied of dead owners' work
    <root>/locks/<hex>               flock: held while the layer of that digest is made
    <root>/refs.json                 {"<reference>": "<manifest digest>"}

A blob or layer appears under its digest only once complete and verified
(written elsewhere, checked, then renamed into place), so a reader never
sees a partial one and a killed writer leaves only ``ingest/`` or ``tmp/``
behind, which the next writer resumes or clears.

    <root>/holds                     the layers running containers use (a journal)

``prune`` keeps the layers a live hold names (``Store.hold_layers``).

A layer is unpacked once whatever image has it, but the directories it implies
(entries below them, none of their own: ``unpack.Unpacked.implied``) show the
metadata of the same directory of the layers below it, which depend on the
image: for them the layer gets a metadata layer, stacked right above it and
named by the layer's chain id (the OCI's ChainID: its lower layers and itself),
holding those directories with their lower metadata (``image.fix_layer``), as
containerd keys its snapshots by chain id.

A store of a user without root whose /etc/subuid and /etc/subgid give it
ranges keeps its layers' owners shifted into those ids (``unpack``'s doc):
such a layer has its ``.ids`` marker, is removed from inside a user
namespace of those ids (``remove_layer``), and a container of it runs with
them (``RootFS.from_image``).  A layer without the marker has its owners
dropped (every file the user's), as a store made without ranges has.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from .. import _registry
from ..errors import ConfigError, DigestError, ImageError

__all__ = ["Store", "default_root", "check_digest", "chain_ids"]

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_CHUNK = 1 << 20
_JOURNAL_MAX = 64 << 10     # the holds journal is compacted past this size


def check_digest(digest: str, what: str = "digest") -> str:
    """``digest`` if it is ``sha256:`` and 64 lower-case hex digits, else ``ImageError`` naming it."""
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise ImageError(f"{what}: {digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
    return digest


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI ChainIDs of layers ``diff_ids`` (bottom first): the first layer's is its
    diff_id, each next one's the sha256 of ``"<the chain id below> <its diff_id>"``."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def default_root() -> Path:
    """Where the store lives unless a root is given (see the module's docstring)."""
    env = os.environ.get("ISOLATE_IMAGE_STORE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/isolate/images")
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "isolate" / "images"


class Store:
    """A content-addressed image store at ``root`` (made on first use, mode 0700)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        r = Path(os.fspath(root)) if root is not None else default_root()
        if not r.is_absolute():
            r = Path.cwd() / r
        if r.exists() and not r.is_dir():
            raise ConfigError(f"store: {str(r)!r} is not a directory")
        self.root = r
        for d in ("blobs/sha256", "ingest/sha256", "layers/sha256", "tmp"):
            (r / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(r, 0o700)

    def __repr__(self) -> str:
        return f"<isolate.images.Store {str(self.root)!r}>"

    # --- blobs ------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the verified blob ``digest`` is (whether or not it is there yet)."""
        return self.root / "blobs" / "sha256" / check_digest(digest)[7:]

    def has_blob(self, digest: str) -> bool:
        """Whether the verified blob ``digest`` is in the store."""
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        """The blob's bytes (``ImageError`` naming the digest when it is not in the store)."""
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store {str(self.root)!r}") from None

    def ingest_path(self, digest: str) -> Path:
        """The file a blob is written to before ``commit``; its size is where a download resumes."""
        return self.root / "ingest" / "sha256" / check_digest(digest)[7:]

    def commit(self, digest: str, *, size: int | None = None, hashed: str | None = None) -> Path:
        """Check the ingest file of ``digest`` (its sha256, and its ``size`` when given) and
        move it into ``blobs/``; returns the blob's path.

        ``hashed`` is the digest of what the writer wrote, when it hashed the
        content as it wrote it (the file is not read again).  On a mismatch the
        ingest file is removed and ``DigestError`` names both digests: nothing
        partial stays.
        """
        src = self.ingest_path(digest)
        try:
            # ``hashed``: the writer hashed what it wrote (the file is its own, under its lock).
            actual, length = (hashed, os.stat(src).st_size) if hashed else _hash_file(src)
        except FileNotFoundError:
            raise ImageError(f"blob {digest}: nothing was written to commit") from None
        if actual != digest or (size is not None and length != size):
            src.unlink(missing_ok=True)
            got = f"{actual}, {length} bytes" if size is not None else actual
            raise DigestError(f"blob {digest}: the content received hashes to {got}"
                              + (f" (expected {size} bytes)" if size is not None else ""),
                              expected=digest, actual=actual)
        dst = self.blob_path(digest)
        os.chmod(src, 0o444)
        os.replace(src, dst)
        return dst

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` as a blob; returns its digest (``DigestError`` if ``digest`` is given and differs).

        Written to a file of its own in ``tmp/`` and renamed onto the blob: two
        writers of one blob at the same time each rename identical content.
        """
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and check_digest(digest) != actual:
            raise DigestError(f"blob {digest}: the content hashes to {actual}", expected=digest,
                              actual=actual)
        if not self.has_blob(actual):
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="blob-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self.place(tmp, actual)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return actual

    def place(self, tmp: str | os.PathLike[str], digest: str) -> None:
        """Move the complete file ``tmp`` (in the store's filesystem), already checked to hash
        to ``digest``, onto the blob ``digest`` (round the fixed ingest name, so writers of
        the same blob at the same time do not race)."""
        os.chmod(tmp, 0o444)
        os.replace(tmp, self.blob_path(digest))

    def blobs(self) -> list[str]:
        """Every verified blob's digest, sorted."""
        return sorted("sha256:" + n for n in os.listdir(self.root / "blobs" / "sha256")
                      if _DIGEST.fullmatch("sha256:" + n))

    def remove_blob(self, digest: str) -> None:
        """Remove a blob (no error if it is already gone)."""
        self.blob_path(digest).unlink(missing_ok=True)

    # --- layers -----------------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        """Where the layer whose uncompressed tar is ``diff_id`` is unpacked (overlayfs form)."""
        return self.root / "layers" / "sha256" / check_digest(diff_id, "diff_id")[7:]

    def layers(self) -> list[str]:
        """The diff_id of every unpacked layer, sorted."""
        return sorted("sha256:" + n for n in os.listdir(self.root / "layers" / "sha256")
                      if _DIGEST.fullmatch("sha256:" + n))

    def shift_marker(self, diff_id: str) -> Path:
        """The file present next to the layer ``diff_id`` when its owners are shifted into
        the subordinate ids of the store's user (it holds the id maps of the unpack)."""
        return self.layer_path(diff_id).with_suffix(".ids")

    def implied_marker(self, diff_id: str) -> Path:
        """The file next to the layer ``diff_id`` naming the directories it implies (a JSON
        list), present when there are some (written before the layer appears)."""
        return self.layer_path(diff_id).with_suffix(".implied")

    def implied(self, diff_id: str) -> list[str]:
        """The directories the unpacked layer ``diff_id`` implies (``implied_marker``)."""
        try:
            data = json.loads(self.implied_marker(diff_id).read_bytes())
        except FileNotFoundError:
            return []
        except ValueError:
            raise ImageError(f"layer {diff_id}: its list of implied directories "
                             f"{str(self.implied_marker(diff_id))!r} is damaged") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ImageError(f"layer {diff_id}: its list of implied directories "
                             f"{str(self.implied_marker(diff_id))!r} is damaged")
        return data

    def is_shifted(self, diff_id: str) -> bool:
        """Whether the layer ``diff_id`` was unpacked with its owners shifted (a store of a
        user without root, with subordinate ids): its containers need those ids mapped."""
        return self.shift_marker(diff_id).is_file()

    def remove_layer(self, diff_id: str) -> None:
        """Remove an unpacked layer (moved to ``tmp/`` first, so it vanishes at once; no
        error if it is already gone).  Call it under ``lock()``, after ``layers_in_use()``.
        A shifted layer is removed inside a user namespace of the user's subordinate ids
        (``unpack.remove_tree``), as only they may unlink what they own."""
        from .unpack import remove_tree, shift_maps

        path = self.layer_path(diff_id)
        marker = self.shift_marker(diff_id)
        dead = self.root / "tmp" / f"removed-{diff_id[7:]}-{os.getpid()}"
        try:
            os.rename(path, dead)
        except FileNotFoundError:
            marker.unlink(missing_ok=True)
            self.implied_marker(diff_id).unlink(missing_ok=True)
            return
        self.implied_marker(diff_id).unlink(missing_ok=True)
        try:
            remove_tree(dead, shift_maps() if marker.is_file() else None)
        except (OSError, ImageError):
            pass     # out of layers/ already: the next unpack's tmp/ sweep tries again
        marker.unlink(missing_ok=True)

    # --- layers in use ----------------------------------------------------------

    def hold_layers(self, diff_ids: list[str] | tuple[str, ...], pid: int) -> str:
        """Record that the live process ``pid`` (the caller, while it mounts the layers)
        uses the layers ``diff_ids``; returns the hold's token, for ``pass_layers`` and
        ``release_layers``.  A hold whose process is gone (pid and start time) counts for
        nothing.

        Made under the store's lock, and ``ImageError`` (nothing held) if a layer is not
        there (a prune removed it first): a prune either sees the hold or ran before it.
        Holds are lines appended to ``<root>/holds`` (one write each, no file made per
        start); ``layers_in_use(compact=True)`` drops the dead and released ones.
        """
        start = _own_start_time() if pid == os.getpid() else _registry.proc_start_time(pid)
        if start is None:
            raise ImageError(f"hold_layers: process {pid} is not running")
        token = os.urandom(8).hex()
        with self.lock():
            layers = os.fspath(self.root / "layers" / "sha256")
            missing = [x for x in diff_ids if not os.path.isdir(f"{layers}/{check_digest(x)[7:]}")]
            if missing:
                raise ImageError(f"layer {missing[0]} is no longer in the store {str(self.root)!r} "
                                 "(removed by a prune: open the image again)")
            self._journal(f"+ {token} {pid} {start} {' '.join(diff_ids)}\n")
            if os.stat(self.root / "holds").st_size > _JOURNAL_MAX:
                self.layers_in_use(compact=True)
        return token

    def pass_layers(self, token: str, diff_ids: list[str] | tuple[str, ...], pid: int) -> str:
        """Hand the hold ``token`` over to the live process ``pid`` (a container's first
        process) in one write, no gap between the two; returns the new token (the old one
        when ``pid`` is already gone: it stays held until released)."""
        start = _registry.proc_start_time(pid)
        if start is None:
            return token
        new = os.urandom(8).hex()
        self._journal(f"+ {new} {pid} {start} {' '.join(diff_ids)}\n- {token}\n")
        return new

    def release_layers(self, token: str) -> None:
        """End the hold ``token``."""
        self._journal(f"- {token}\n")

    def _journal(self, text: str) -> None:
        fd = os.open(self.root / "holds", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())     # O_APPEND: one write lands whole, after the others
        finally:
            os.close(fd)

    def layers_in_use(self, *, compact: bool = False) -> set[str]:
        """The diff_ids that live holds name.  ``compact`` (with the store's lock held):
        rewrite the journal with only those holds."""
        try:
            data = (self.root / "holds").read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return set()
        holds: dict[str, tuple[int, int, list[str]]] = {}
        for line in data.splitlines():
            f = line.split()
            if len(f) >= 4 and f[0] == "+" and f[2].isdigit() and f[3].isdigit():
                holds[f[1]] = (int(f[2]), int(f[3]), f[4:])
            elif len(f) == 2 and f[0] == "-":
                holds.pop(f[1], None)
        live = {t: h for t, h in holds.items() if _registry.proc_start_time(h[0]) == h[1]}
        if compact and len(data.splitlines()) > len(live):
            tmp = self.root / f"holds.{os.getpid()}"
            tmp.write_text("".join(f"+ {t} {p} {st} {' '.join(ids)}\n"
                                   for t, (p, st, ids) in live.items()), encoding="ascii")
            os.replace(tmp, self.root / "holds")
        return {x for _, _, ids in live.values() for x in ids}

    # --- names ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock (names and layers change only under it)."""
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def layer_lock(self, diff_id: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the lock of the layer ``diff_id`` (its unpack runs under it, so layers unpack
        in parallel, each once); yields False at once when ``wait`` is False and another
        holds it.  The lock files (``locks/<hex>``, empty) stay."""
        (self.root / "locks").mkdir(mode=0o700, exist_ok=True)
        path = self.root / "locks" / check_digest(diff_id, "diff_id")[7:]
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def pulling(self) -> Iterator[None]:
        """Held (shared) by every pull while it stores blobs and layers no name reaches yet:
        ``prune`` waits for it (``no_pulls``), so it never takes what a pull is making."""
        with self._flock("pull.lock", fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def no_pulls(self) -> Iterator[None]:
        """Held (exclusive) by ``prune``: no pull is between its first blob and its name."""
        with self._flock("pull.lock", fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def _flock(self, name: str, how: int) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

    def refs(self) -> dict[str, str]:
        """Every name in the store and the digest of the manifest it names."""
        try:
            with open(self.root / "refs.json", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ImageError(f"store {str(self.root)!r}: refs.json is corrupt: {e}") from None
        if not isinstance(data, dict):
            raise ImageError(f"store {str(self.root)!r}: refs.json is not an object")
        return {str(k): str(v) for k, v in data.items()}

    def _write_refs(self, refs: dict[str, str]) -> None:
        tmp = self.root / f"refs.json.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(refs.items())), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "refs.json")

    def set_ref(self, name: str, digest: str) -> None:
        """Point ``name`` at the manifest ``digest`` (which must be in the store)."""
        if not self.has_blob(digest):
            raise ImageError(f"{name}: manifest {digest} is not in the store")
        with self.lock():
            refs = self.refs()
            refs[name] = digest
            self._write_refs(refs)

    def remove_ref(self, name: str) -> str:
        """Drop ``name``; returns the digest it named (``ImageError`` if there is no such name)."""
        with self.lock():
            refs = self.refs()
            if name not in refs:
                raise ImageError(f"no image named {name!r} in the store {str(self.root)!r}")
            digest = refs.pop(name)
            self._write_refs(refs)
        return digest


_own: tuple[int, int] | None = None


def _own_start_time() -> int | None:
    """This process's start time (read once per pid: a forked child reads its own)."""
    global _own
    pid = os.getpid()
    if _own is None or _own[0] != pid:
        start = _registry.proc_start_time(pid)
        if start is None:
            return None
        _own = (pid, start)
    return _own[1]


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{str(path)!r} is a symlink") from None
        raise
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return "sha256:" + h.hexdigest(), n
