"""Progress of long steps, visible whether or not stderr is a terminal.

On a terminal: a tqdm bar. Otherwise (a log file, a pipe, CI) tqdm's carriage-return redraws would
pile up in one unreadable line, or a silenced bar would leave the user staring at a quiet process
for minutes; so a plain line is printed every `interval` seconds and once at the end.
"""

from __future__ import annotations

import sys
import time


class LineProgress:
    """tqdm's `update` / context-manager interface, printing periodic whole lines."""

    def __init__(self, total: int, desc: str, unit: str, interval: float, file) -> None:
        self.total, self.desc, self.unit, self.interval, self.file = total, desc, unit, interval, file
        self.n = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def _line(self, now: float, done: bool = False) -> None:
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        state = "done" if done else "..."
        print(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s{share}, {now - self.start:.0f} s {state}",
              file=self.file, flush=True)

    def __enter__(self) -> LineProgress:
        print(f"{self.desc}: {self.total:,} {self.unit}s ...", file=self.file, flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._line(time.monotonic(), done=True)


def progress(total: int, desc: str, unit: str = "item", *, enabled: bool = True, interval: float = 10.0,
             file=None):
    """A tqdm bar on a terminal, periodic lines elsewhere; a silent bar when `enabled` is False."""
    from tqdm.auto import tqdm

    file = file if file is not None else sys.stderr
    if enabled and not (hasattr(file, "isatty") and file.isatty()):
        return LineProgress(total, desc, unit, interval, file)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, mininterval=0.5, smoothing=0.1, file=file)
