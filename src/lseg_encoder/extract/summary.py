"""What a run did, as a dataclass (the API's return value) and as the CLI's closing lines."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from .manifest import Record
from .pipeline import StageTimes


class WarmMark(NamedTuple):
    """One device's first batch: `at` seconds after the job began (the tally's clock), of which `load`
    went to loading the model and `first_batch` to compiling and computing its first batch in that
    device's process. The rest, `start`, is everything else before it: spawning and importing (with
    `--devices`), choosing the device, starting the decode workers."""

    device: str
    at: float
    load: float
    first_batch: float

    def describe(self) -> str:
        start = max(0.0, self.at - self.load - self.first_batch)
        return (f"{self.device} {self.at:.1f} s (start {start:.1f}, model load {self.load:.1f}, "
                f"first batch {self.first_batch:.1f})")


@dataclass
class ExtractSummary:
    out: str | None
    total: int  # items selected (after --shard)
    skipped: int  # already done by an earlier run of the same configuration
    ok: int
    failed: int
    seconds: float  # wall time of the processing stage (model loaded, items scheduled)
    bytes: int
    stages: StageTimes
    device: str
    backend: str
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    steady: tuple[int, float] | None = None  # (items, seconds) once every device was warm: Tally.steady_window
    warm_marks: list[WarmMark] = field(default_factory=list)  # when each device finished its first batch: Tally

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_second(self) -> float | None:
        """The rate once every device had computed its first batch, whose time holds compilation and
        warm-up (None: too few items, or an engine that does not report warm-up, like Ray)."""
        if self.steady is None:
            return None
        items, seconds = self.steady
        return items / seconds

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.ok + self.skipped == self.total

    def lines(self) -> list[str]:
        s = self.stages
        out = [
            f"{self.ok} ok, {self.failed} failed, {self.skipped} already done, of {self.total} items"
            + (f" -> {self.out}" if self.out else ""),
            f"{self.images_per_second:.2f} img/s on {self.device} ({self.backend}), {self.seconds:.1f} s, "
            f"{self.bytes / 1e9:.3f} GB written"
            + (f"; {self.steady_images_per_second:.1f} img/s after the first batch ({self.steady[0]} items in "
               f"{self.steady[1]:.1f} s once every device was warm; the first {self.stages.warmup:.1f} s hold "
               "compilation and warm-up)" if self.steady else ""),
            f"stages: model load {s.load:.1f} s | decode {s.decode:.1f} s (worker CPU) | waiting for decode "
            f"{s.wait:.1f} s | compute {s.compute:.1f} s | write {s.write:.1f} s (writer threads)",
        ]
        if len(self.warm_marks) > 1:  # several devices: when each joined, so a late one shows
            out.append("first batch done at: " + ", ".join(m.describe() for m in self.warm_marks))
        for item_id, reason in self.failures[:10]:
            out.append(f"failed: {item_id}: {reason}")
        if len(self.failures) > 10:
            out.append(f"... and {len(self.failures) - 10} more failures: see manifest.jsonl")
        return out


class Tally:
    """Counts finished items from any thread, feeding the manifest and the progress bar.

    It also clocks the steady state on ONE clock, the one of the process that keeps the tally: each
    device says when its first batch is done (`warm`), and the steady window runs from the last of
    those to the last finished item. With several devices warming up side by side, subtracting
    per-device warm-up times from the wall time would count overlapping seconds twice.
    """

    def __init__(self, manifest=None, bar=None):
        self.manifest = manifest
        self.bar = bar
        self.ok = 0
        self.failed = 0
        self.failures: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        # O(1) whatever the number of items (runs of millions of frames): the last warm mark, the
        # items finished since it, and when the last of them finished
        self._warm_at: float | None = None
        self._since_warm = 0
        self._last_ok = 0.0
        self._started = time.monotonic()
        self.warm_marks: list[WarmMark] = []

    def warm(self, device: str = "", load: float = 0.0, first_batch: float = 0.0) -> None:
        """One device has computed its first batch (compilation and warm-up are behind it): the
        steady window restarts here, so in the end it opens at the last device's mark."""
        with self._lock:
            self._warm_at, self._since_warm = time.monotonic(), 0
            self.warm_marks.append(WarmMark(device, self._warm_at - self._started, load, first_batch))

    def steady_window(self) -> tuple[int, float] | None:
        """(items finished, seconds) after every device reported `warm`; None when nothing finished then."""
        with self._lock:
            if self._warm_at is None or not self._since_warm:
                return None
            seconds = self._last_ok - self._warm_at
            return (self._since_warm, seconds) if seconds > 0 else None

    def __call__(self, record: Record) -> None:
        with self._lock:
            if self.manifest is not None:
                self.manifest.append(record)
            if record.status == "ok":
                self.ok += 1
                self._last_ok = time.monotonic()
                self._since_warm += 1
            else:
                self.failed += 1
                self.failures.append((record.id, record.reason or ""))
            if self.bar is not None:
                self.bar.update(1)
                if self.failed:
                    self.bar.set_postfix(failed=self.failed, refresh=False)
