"""SIGTERM and SIGHUP as an exception in the main thread, so a job unwinds as it does for Ctrl-C:
its ffmpeg children are stopped, temporary files removed, and the work folder stays resumable."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from animesr.stopping import Terminated

STOPPING_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
__all__ = ["STOPPING_SIGNALS", "Terminated", "stop_on_signals"]


def _raise(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise) for number in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
