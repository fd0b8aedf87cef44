"""A one-line-per-device progress display for terminals; silent when stderr is not a TTY."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

__all__ = ["ProgressDisplay"]


class ProgressDisplay:
    """Shows each device's current phase on a terminal, redrawing in place.

    Use :meth:`step` as the transaction's ``on_step`` callback. When ``stream`` is not a TTY
    (pipes, CI logs, ``--json``) nothing is written, so machine output stays clean.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._phases: dict[str, str] = {}
        self._drawn = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether anything will be drawn."""
        return self._enabled

    def step(self, device: str, phase: str) -> None:
        """Record that ``device`` entered ``phase`` and redraw."""
        if not self._enabled:
            return
        with self._lock:
            self._phases[device] = phase
            self._redraw()

    def close(self) -> None:
        """Leave the last frame on screen and move below it."""
        if self._enabled and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0

    def _redraw(self) -> None:
        out = self._stream
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F")
        width = max(len(name) for name in self._phases)
        for name in sorted(self._phases):
            out.write(f"\x1b[2K  {name:<{width}}  {self._phases[name]}\n")
        self._drawn = len(self._phases)
        out.flush()
