"""The one sweep over backends x sizes, and the one skip policy.

Compare, bench, verify and both test pools (fidelity, pytest-benchmark) open runners through a
`RunnerPool`, so they agree on three rules:
- a backend that cannot run on this device is *skipped* for every size with the probe's reason
  (`backends.unavailable_reason`), before anything is exported or built;
- a backend whose artefact fixes the shape (`Backend.per_size`) gets one runner per batch x size,
  every other backend one runner for all sizes;
- a backend that breaks while opening is *failed* with its message (for that size alone when it is
  per-size), and the others still run.
On the CPU some backends are left out of *default* sweeps because they cost minutes there
(`default_skip_reason`); they are reported as skipped with that reason, and run when asked for by name.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..backends import BACKENDS, get_backend, make_runner, unavailable_reason
from ..errors import BackendUnavailable, LsegError
from ..sizes import Size, size_label


def default_skip_reason(backend: str, device: str) -> str | None:
    """Why default sweeps leave `backend` out on `device` (None: they run it): the row's own word."""
    return get_backend(backend).skipped_by_default.get(str(device).split(":")[0])


def default_backends(device: str) -> list[str]:
    """Every row of the backend table: a sweep reports each one, measured or skipped with a reason."""
    return list(BACKENDS)


@dataclass
class Skip:
    """A backend (at one size, or at every size when `size` is None) that produced no result."""

    backend: str
    reason: str
    status: str = "skipped"  # "skipped": cannot run here; "failed": broke while opening or running
    size: Size | None = None
    mode: str | None = None

    def line(self) -> str:
        where = "all sizes" if self.size is None else size_label(self.size) + (f" {self.mode}" if self.mode else "")
        return f"{self.backend} ({where}) {self.status}: {self.reason}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class RunnerPool:
    """Activated runners by (backend, shape), opened on demand and remembered with their skips.

    `explicit` backends were named by the user and run even where they are slow on the CPU.
    """

    def __init__(self, encoder, device: str = "cpu", *, batch: int = 1, explicit: Iterable[str] = (),
                 compile_mode: str | None = None, open_runner: Callable | None = None):
        self.encoder, self.device, self.batch = encoder, str(device), batch
        self.explicit = set(explicit)
        self.compile_mode = compile_mode
        self._open_runner = open_runner or make_runner
        self._runners: dict = {}
        self._skips: dict = {}

    def key(self, backend: str, size: Size):
        return (backend, (self.batch, *size) if get_backend(backend).per_size else None)

    def plan_skip(self, backend: str) -> Skip | None:
        """Why `backend` produces nothing here for any size, decided without building anything."""
        reason = unavailable_reason(backend, self.device)
        if reason is None and backend not in self.explicit:
            reason = default_skip_reason(backend, self.device)
        return Skip(backend, reason) if reason else None

    def runner(self, backend: str, size: Size):
        """An activated runner for (backend, size), or the `Skip` that says why there is none."""
        if (backend, None) in self._skips:
            return self._skips[(backend, None)]
        key = self.key(backend, size)
        if key in self._skips:
            return self._skips[key]
        if key in self._runners:
            return self._runners[key]
        skip = self.plan_skip(backend)
        if skip is None:
            try:
                runner = self._open_runner(backend, self.encoder, device=self.device, size=tuple(size),
                                           batch=self.batch, compile_mode=self.compile_mode)
                self._runners[key] = runner.activate()
                return runner
            except BackendUnavailable as exc:
                skip = Skip(backend, str(exc))
            except LsegError as exc:
                skip = Skip(backend, first_line(exc), "failed")
            except Exception as exc:  # a bug in one backend must not cost the others' results
                traceback.print_exc(file=sys.stderr)
                skip = Skip(backend, first_line(exc), "failed")
            if skip.status == "failed" and get_backend(backend).per_size:
                skip.size = tuple(size)  # a failed per-size build is that size's alone
        self._skips[key if skip.size else (backend, None)] = skip
        return skip

    @property
    def skips(self) -> list[Skip]:
        return list(self._skips.values())

    def close(self, backend: str | None = None) -> None:
        for key in [k for k in self._runners if backend is None or k[0] == backend]:
            self._runners.pop(key).deactivate()


def sweep(pool: RunnerPool, backends: Iterable[str], sizes: Iterable[Size],
          body: Callable[[str, Size, object], None], *, on_skip: Callable[[Skip], None] | None = None) -> list[Skip]:
    """Call `body(backend, size, runner)` for every runnable pair, backend by backend (one backend's
    runners are open at a time). Returns every skip and failure, each once, in order."""
    sizes = [tuple(s) for s in sizes]
    reported: list[Skip] = []

    def report(skip: Skip) -> None:
        if skip not in reported:
            reported.append(skip)
            if on_skip:
                on_skip(skip)

    for backend in backends:
        for size in sizes:
            runner = pool.runner(backend, size)
            if isinstance(runner, Skip):
                report(runner)
                if runner.size is None:
                    break
                continue
            try:
                body(backend, size, runner)
            except LsegError as exc:
                report(Skip(backend, first_line(exc), "failed", size))
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                report(Skip(backend, first_line(exc), "failed", size))
        pool.close(backend)
    return reported
