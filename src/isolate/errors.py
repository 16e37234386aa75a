"""One exception hierarchy for isolate.

Every class also derives from the builtin a caller would expect, so
``except OSError`` and ``except ValueError`` keep working::

    IsolateError
    ├─ ConfigError(ValueError)        bad input, raised before any process exists
    ├─ UnsupportedError(RuntimeError) the host lacks a feature; says how to enable it
    ├─ SpawnError(OSError)            parent side: pipes, clone3, id-map writes
    ├─ SetupError(OSError)            child side, before execve: .step .op .errno .entry .substep
    │  ├─ NamespaceError  MountError  IdentityError  ExecError
    ├─ CgroupError(OSError)
    │  └─ CgroupDelegationError       no cgroup delegated to a non-root caller where a limit needs one
    ├─ ImageError(RuntimeError)       an image, a registry or the store refused: names the reference
    │  └─ DigestError                 content whose sha256 is not the digest that named it
    └─ ProtocolError                  a malformed report from the child: a bug

``OSError`` subclasses here are never remapped to ``FileNotFoundError`` and
friends: test ``e.errno``, not the type.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IsolateError",
    "ConfigError",
    "UnsupportedError",
    "SpawnError",
    "SetupError",
    "NamespaceError",
    "MountError",
    "IdentityError",
    "ExecError",
    "CgroupError",
    "CgroupJoinError",
    "CgroupDelegationError",
    "ImageError",
    "DigestError",
    "NetworkError",
    "ProtocolError",
]


class IsolateError(Exception):
    """Base class of every error isolate raises."""


class ConfigError(IsolateError, ValueError):
    """An option is invalid.  Raised in Python, before any process or mount exists."""


class UnsupportedError(IsolateError, RuntimeError):
    """The kernel or host lacks a feature; the message says how to enable it."""


class _OSErrorBase(IsolateError, OSError):
    # OSError() maps errno to FileNotFoundError and friends only when called
    # as OSError itself, never for a subclass: our class is kept.
    pass


class SpawnError(_OSErrorBase):
    """The parent side of a spawn failed (pipes, clone3, id-map write, cgroup attach).

    ``stage`` names the failing parent step, e.g. ``"uid_map"``.
    """

    def __init__(self, err: int, *, stage: str, filename: str | None = None) -> None:
        OSError.__init__(self, err, os.strerror(err), filename)
        self.stage = stage

    def __str__(self) -> str:
        return f"{self.stage}: [Errno {self.errno}] {self.strerror}"

    def __reduce__(self) -> Any:
        return (_rebuild_spawn, (type(self), self.errno, self.stage, self.filename))


class SetupError(_OSErrorBase):
    """A plan step failed in the child, before execve.

    ``step`` is the index of the failing op in the plan, ``op`` a short
    description such as ``"mount proc on /proc"``; ``errno``, ``strerror``
    and ``filename`` are as for ``OSError``.  An op that makes many entries
    at once (a root's mount points, binds or masked paths) names the failing
    one: ``op`` and ``filename`` are that entry's, ``entry`` its index
    (0-based) among ``entries``; else both are None.  ``substep`` names the
    part of the op that failed (``"open target"``, ``"clone"``, ``"move"``
    ...), or is None.  The message reads, e.g.,
    ``step 7 (bind /etc/resolv.conf on /newroot/etc/resolv.conf, entry 3 of 5):
    open target: [Errno 2] No such file or directory``.
    """

    def __init__(self, err: int, *, step: int, op: str, path: str | None = None,
                 entry: int | None = None, entries: int | None = None,
                 substep: str | None = None) -> None:
        OSError.__init__(self, err, os.strerror(err), path)
        self.step = step
        self.op = op
        self.entry = entry
        self.entries = entries
        self.substep = substep

    def __str__(self) -> str:
        where = f", entry {self.entry + 1} of {self.entries}" if self.entry is not None else ""
        part = f" {self.substep}:" if self.substep else ""
        return f"step {self.step} ({self.op}{where}):{part} [Errno {self.errno}] {self.strerror}"

    def __reduce__(self) -> Any:
        return (_rebuild_setup, (type(self), self.errno, self.step, self.op, self.filename,
                                 self.entry, self.entries, self.substep))


class NamespaceError(SetupError):
    """Entering or creating a namespace failed in the child (setns, unshare)."""


class MountError(SetupError):
    """A mount, bind, pivot_root or filesystem op failed in the child."""


class IdentityError(SetupError):
    """Changing credentials, capabilities or security state failed in the child."""


class ExecError(SetupError):
    """execve itself failed: the program is missing, not executable, or not a valid binary."""


class CgroupError(_OSErrorBase):
    """A cgroup file operation failed; ``filename`` names the cgroup file."""

    def __init__(self, err: int, message: str | None = None, filename: str | None = None) -> None:
        OSError.__init__(self, err, message or os.strerror(err), filename)

    def __str__(self) -> str:
        where = f": {self.filename}" if self.filename else ""
        return f"[Errno {self.errno}] {self.strerror}{where}"

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.strerror, self.filename))


class CgroupDelegationError(CgroupError):
    """No cgroup delegated to this (non-root) process where a limit needs one.

    ``filename`` is the directory it could not write; the message names the
    hierarchy and how to get a delegated subtree (docs/guides/rootless.md).
    Raised before any cgroup directory is made.
    """

    def __str__(self) -> str:
        return f"[Errno {self.errno}] {self.strerror}"


class CgroupJoinError(SetupError, CgroupError):
    """The child could not move itself into its cgroup (a ``SetupError`` and a ``CgroupError``)."""


class ImageError(IsolateError, RuntimeError):
    """Pulling, storing, unpacking or running an image failed.

    The message is one line naming the reference, digest, registry or layer
    entry at fault; the image store is left consistent (nothing partial is
    kept under a digest's name).
    """


class DigestError(ImageError):
    """Content (a blob, a manifest, an unpacked layer) does not hash to the digest that named it.

    ``expected`` and ``actual`` are the two digests (``"sha256:<hex>"``).
    """

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> Any:
        return (_rebuild_digest, (type(self), str(self), self.expected, self.actual))


class NetworkError(IsolateError, RuntimeError):
    """Setting up or removing a container network failed, or its input is refused.

    The message is one line naming the network, address, port or interface
    at fault; nothing half made stays on the host (bridge, veth, address
    lease, nftables rule, forwarding setting).  ``ConfigError`` is raised
    instead for options that are malformed before anything is looked up.
    """


class ProtocolError(IsolateError):
    """The child sent a report that does not fit the protocol.  Always a bug."""


def _rebuild_spawn(cls: type[SpawnError], err: int, stage: str, filename: str | None) -> SpawnError:
    return cls(err, stage=stage, filename=filename)


def _rebuild_setup(
    cls: type[SetupError], err: int, step: int, op: str, filename: str | None,
    entry: int | None = None, entries: int | None = None, substep: str | None = None,
) -> SetupError:
    return cls(err, step=step, op=op, path=filename, entry=entry, entries=entries, substep=substep)


def _rebuild_digest(cls: type[DigestError], message: str, expected: str, actual: str) -> DigestError:
    return cls(message, expected=expected, actual=actual)
