"""Download progress: a bar per blob on a terminal (tqdm), nothing otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable


class Progress:
    """Bars on stderr, one per blob being fetched, when ``enabled``; else every call is a no-op."""

    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._next = 0

    def bar(self, digest: str, total: int, label: str) -> Callable[[int], None] | None:
        """A callback adding its argument (bytes, negative when a download starts over) to
        ``digest``'s bar; None when disabled."""
        if not self.enabled:
            return None
        from tqdm import tqdm  # type: ignore[import-untyped]

        with self._lock:
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                       position=self._next, leave=True, file=sys.stderr, dynamic_ncols=True)
            self._next += 1
            self._bars[digest] = bar

        def advance(n: int) -> None:
            with self._lock:
                bar.update(n)
        return advance

    def close(self) -> None:
        """Close every bar (idempotent)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
