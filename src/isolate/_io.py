"""A spawned process's stdio: the caller's ends of its pipes, and reading them to the end.

``isolate.run``, ``Container.run`` and ``Container.exec`` wait the same way
(``collect``): they feed ``input``, read stdout and stderr to EOF keeping at
most ``max_output`` bytes of each (the rest is read and thrown away, so the
process never blocks on a full pipe), and on ``timeout`` end the process with
their ``kill`` and keep what was read until then.
"""

from __future__ import annotations

import os
import select
import subprocess
import time

from ._validate import check_fd
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any, TypeAlias

    from .process import Process

    Stdio: TypeAlias = "None | int | IO[Any]"

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


class StdioSetup:
    """Resolves stdin/stdout/stderr options into child fds and parent pipe ends."""

    def __init__(self) -> None:
        self.child_fds: list[int] = [0, 1, 2]
        self.to_close: list[int] = []     # child ends, closed after spawn
        self.parent: list[int | None] = [None, None, None]

    def setup(self, idx: int, value: Stdio, name: str) -> None:
        """Where the child's fd ``idx`` comes from (``value`` as ``spawn`` takes it)."""
        if value is None:
            return
        if value == PIPE:
            r, w = os.pipe()
            child, parent = (r, w) if idx == 0 else (w, r)
            self.child_fds[idx] = child
            self.to_close.append(child)
            self.parent[idx] = parent
        elif value == DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self.child_fds[idx] = fd
            self.to_close.append(fd)
        elif value == STDOUT:
            if idx != 2:
                raise ConfigError(f"{name}=STDOUT is only valid for stderr")
            self.child_fds[2] = self.child_fds[1]
        elif isinstance(value, int) and not isinstance(value, bool):
            check_fd(value, name)
            self.child_fds[idx] = value
        elif hasattr(value, "fileno"):
            fd = value.fileno()
            check_fd(fd, name)
            self.child_fds[idx] = fd
        else:
            raise ConfigError(f"{name} must be None, PIPE, DEVNULL, an fd or a file, got {value!r}")

    def close_child_ends(self) -> None:
        """Close the ends the child got (after the spawn)."""
        for fd in self.to_close:
            os.close(fd)
        self.to_close.clear()

    def close_all(self) -> None:
        """Close every pipe end (a spawn that failed)."""
        self.close_child_ends()
        for i, fd in enumerate(self.parent):
            if fd is not None:
                os.close(fd)
                self.parent[i] = None


def stdio_for(input: bytes | None, capture_output: bool, stdin: Stdio, stdout: Stdio,
              stderr: Stdio, *, strict: bool) -> tuple[Stdio, Stdio, Stdio]:
    """stdin, stdout and stderr for a run with ``input`` and ``capture_output``.

    ``input`` needs a pipe on stdin (so no ``stdin``).  ``strict``
    (``isolate.run``, where capturing is asked for): ``capture_output`` with
    ``stdout`` or ``stderr`` is an error; otherwise (``Container.run``, which
    captures by default) those stream where they are given.
    """
    if input is not None:
        if stdin is not None:
            raise ConfigError("stdin and input cannot both be given")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            if strict:
                raise ConfigError("capture_output cannot be combined with stdout/stderr")
        else:
            stdout = stderr = PIPE
    return stdin, stdout, stderr


class _Capture:
    """One stream's output: kept up to ``limit`` bytes, the rest counted as discarded."""

    __slots__ = ("chunks", "size", "limit", "truncated")

    def __init__(self, limit: int | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncated = False

    def add(self, data: bytes) -> None:
        if self.limit is not None:
            room = self.limit - self.size
            if len(data) > room:
                self.truncated = True
                if room <= 0:
                    return
                data = data[:room]
        self.chunks.append(data)
        self.size += len(data)

    def value(self) -> bytes:
        if len(self.chunks) > 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0] if self.chunks else b""


class Communication:
    """The state of ``Process.communicate``: what was read and written so far, so that a
    call after a timeout (or ``Process._drain``) goes on where the last one stopped."""

    def __init__(self, proc: Process, input: bytes | None, limit: int | None) -> None:
        self.proc = proc
        self.captures: dict[int, _Capture] = {}
        self.out_fd = self.err_fd = -1
        # poll(2) on the fds themselves: no selector object and no epoll fd per call.
        self.poller = select.poll()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                fd = f.fileno()
                self.captures[fd] = _Capture(limit)
                self.poller.register(fd, select.POLLIN)
        if proc.stdout is not None:
            self.out_fd = proc.stdout.fileno()
        if proc.stderr is not None:
            self.err_fd = proc.stderr.fileno()
        self.open = set(self.captures)
        self.view = memoryview(input or b"")
        self.wfd = -1
        if proc.stdin is not None:
            if input:
                self.wfd = proc.stdin.fileno()
                os.set_blocking(self.wfd, False)
                self.poller.register(self.wfd, select.POLLOUT)
            else:
                proc.stdin.close()

    @property
    def truncated(self) -> bool:
        """Whether output past the limit was discarded."""
        return any(c.truncated for c in self.captures.values())

    def _read(self, fd: int) -> bool:
        """Read once from ``fd``; False at EOF (or when nothing is buffered, draining)."""
        cap = self.captures[fd]
        try:
            # Past the limit, larger reads: fewer wake-ups for output that is thrown away.
            data = os.read(fd, 65536 if cap.limit is None or cap.size < cap.limit else 1 << 20)
        except BlockingIOError:
            return False
        if not data:
            return False
        cap.add(data)
        return True

    def _close_input(self) -> None:
        if self.wfd >= 0:
            self.poller.unregister(self.wfd)
            self.wfd = -1
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def run(self, deadline: float | None, drain: bool = False) -> None:
        """Read (and write) until every pipe reached EOF; ``TimeoutExpired`` at ``deadline``.

        ``drain``: read only what is buffered, from the pipes still open.
        """
        if drain:
            self._close_input()
            for fd in sorted(self.open):
                os.set_blocking(fd, False)
                while self._read(fd):
                    pass
            return
        while self.open or self.wfd >= 0:
            ms = None
            if deadline is not None:
                until = deadline - time.monotonic()
                if until <= 0:
                    raise subprocess.TimeoutExpired(self.proc.args, 0.0)
                ms = int(until * 1000) + 1
            for fd, _ in self.poller.poll(ms):
                if fd == self.wfd:
                    try:
                        n = os.write(fd, self.view[:65536])
                    except BrokenPipeError:
                        n = len(self.view)
                    self.view = self.view[n:]
                    if not self.view:
                        self._close_input()
                elif fd in self.open and not self._read(fd):
                    self.poller.unregister(fd)
                    self.open.discard(fd)

    def values(self) -> tuple[bytes | None, bytes | None]:
        """stdout and stderr as read so far (None for a stream not captured)."""
        out = self.captures[self.out_fd].value() if self.out_fd >= 0 else None
        err = self.captures[self.err_fd].value() if self.err_fd >= 0 else None
        return out, err

    def close(self) -> None:
        """Close the pipes (the output stays in ``values()``)."""
        self._close_input()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        self.open.clear()


def collect(proc: Process, timeout: float | None, input: bytes | None, max_output: int | None,
            kill: Callable[[], None]) -> tuple[bytes | None, bytes | None, bool]:
    """Wait for ``proc``, feeding ``input`` and reading its pipes: (stdout, stderr, timed out).

    On ``timeout``, ``kill()`` ends it (and what it started) and what it
    wrote until then is kept; on any other exception it is killed too.
    ``proc.truncated`` says whether output past ``max_output`` was discarded.
    """
    out = err = None
    try:
        if proc.stdout is not None or proc.stderr is not None or proc.stdin is not None:
            out, err = proc.communicate(input, timeout, max_output=max_output)
        else:
            proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill()
        proc.wait()
        out, err = proc._drain()
        return out, err, True
    except BaseException:
        kill()
        proc.wait()
        raise
    return out, err, False
