"""Rate-limited logging: what clients can trigger (bad requests, disconnects) must not be able to fill the log.

Each kind of message gets at most `burst` lines per `interval` seconds; the rest are counted, and the first
line of that kind after the interval says how many similar lines were suppressed. `LogLimiter` is for our
own messages, `RateLimitFilter` for a library's logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_MAX_KINDS = 1000


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class _Budget:
    """Per-kind windows; thread-safe (the pipeline thread logs too)."""

    def __init__(self, burst: int, interval: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def take(self, kind: str) -> int | None:
        """None: suppress this line; else log it, after saying that this many were suppressed before."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(kind)
            suppressed = 0
            if window is None or now - window.start >= self.interval:
                suppressed = window.suppressed if window is not None else 0
                if window is None and len(self._windows) >= _MAX_KINDS:
                    self._windows.clear()  # bounded, whatever the kinds are
                window = self._windows[kind] = _Window(now)
            if window.logged >= self.burst:
                window.suppressed += 1
                return None
            window.logged += 1
            return suppressed


class LogLimiter:
    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 5,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._budget = _Budget(burst, interval, clock)

    def log(self, level: int, kind: str, message: str, *args: object, exc_info: object = None) -> bool:
        """Log `message % args` unless `kind` used up its lines for this interval; True when logged."""
        if not self._logger.isEnabledFor(level):
            return False
        suppressed = self._budget.take(kind)
        if suppressed is None:
            return False
        if suppressed:
            self._logger.log(
                level,
                "suppressed %d similar log lines (%s) in the last %.0f s",
                suppressed,
                kind,
                self._budget.interval,
            )
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, kind: str, message: str, *args: object, exc_info: object = None) -> bool:
        return self.log(logging.WARNING, kind, message, *args, exc_info=exc_info)

    def error(self, kind: str, message: str, *args: object, exc_info: object = None) -> bool:
        return self.log(logging.ERROR, kind, message, *args, exc_info=exc_info)

    def info(self, kind: str, message: str, *args: object) -> bool:
        return self.log(logging.INFO, kind, message, *args)


class RateLimitFilter(logging.Filter):
    """The same limit on a logger we do not own, per message template; optionally a traceback becomes
    its last line (a client's undecodable header is not worth thirty lines)."""

    def __init__(
        self,
        burst: int = 5,
        interval: float = 60.0,
        strip_tracebacks: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._budget = _Budget(burst, interval, clock)
        self._strip = strip_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        suppressed = self._budget.take(f"{record.name}:{record.msg}"[:200])
        if suppressed is None:
            return False
        if self._strip and record.exc_info:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} ({type(exc).__name__}: {exc})", ()
            record.exc_info = record.exc_text = None
        if suppressed:
            note = f" [suppressed {suppressed} similar lines in the last {self._budget.interval:.0f} s]"
            record.msg, record.args = record.getMessage() + note, ()
        return True
