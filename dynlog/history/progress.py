"""A one-line progress bar on stderr for long maintenance runs (no dependency).

Redrawn at most a few times a second, only when enabled (by default: when stderr is a
terminal), and erased when done so that the summary starts on a clean line.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None,
                 stream: TextIO | None = None, every: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = total
        self.done = 0
        self.note = ""
        self.every = every
        self.started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def stage(self, label: str, total: int | None = None) -> None:
        self.label, self.total, self.done, self.note = label, total, 0, ""
        self.started = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if note:
            self.note = note  # (advance(0, note) just refreshes the note during a long step)
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < self.every:
            return
        self._drawn = now
        elapsed = now - self.started
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 24)
            eta = f" eta {elapsed / frac - elapsed:4.0f}s" if 0 < frac < 1 else ""
            text = f"{self.label} [{bar:<24}] {self.done}/{self.total} {frac:4.0%}{eta}"
        else:
            text = f"{self.label} {self.done} ({elapsed:.0f}s)"
        if self.note:
            text += f"  {self.note[:60]}"
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
