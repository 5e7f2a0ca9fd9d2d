"""Ctrl-C and SIGTERM stop a long job at a safe point, never in the middle of library code.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be.
Inside h5py's weak-reference callbacks that exception is printed and dropped ("Exception ignored"),
so `prepare` went on and wrote its file; inside DataLoader start-up or shut-down it left a worker
that the interpreter's exit then waited for, forever; inside an import it broke the state save.
Here the signal only records the request, and the job calls `check()` where stopping is safe
(between images, between training steps), which raises KeyboardInterrupt there.

A second Ctrl-C (SIGINT) stops the process at once, without cleanup: the user does not want
to wait. Further SIGTERMs do not: `kill` on a process group, then torchrun passing its own
SIGTERM on to its workers, must still end in a saved state (a service manager that will not
wait sends SIGKILL).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)

_requested: list[int] = []  # the signals received while a job is running


class Terminated(BaseException):
    """A stop asked for by SIGTERM or SIGHUP (SIGINT stays KeyboardInterrupt); a BaseException so
    that `except Exception` cannot swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention for "killed by signal N"


def exit_code() -> int:
    """128 + the signal that asked for the stop (130 for Ctrl-C)."""
    return 128 + (_requested[0] if _requested else signal.SIGINT)


def requested() -> bool:
    return bool(_requested)


def check() -> None:
    """Raise KeyboardInterrupt when a stop was asked for."""
    if _requested:
        raise KeyboardInterrupt


def _record(signum: int, frame: object) -> None:
    if signum == signal.SIGINT and signum in _requested:  # Ctrl-C again: the user does not want to wait
        os.write(2, b"\nstopping now, without saving\n")
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _requested.append(signum)


@contextmanager
def stop_at_safe_points() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP only ask for a stop (see `check`); a stop that
    leaves this block is KeyboardInterrupt for SIGINT and Terminated for the others. SIGINT is armed
    even when the shell started the job with it ignored (a background job). Outside the main thread
    (where signals cannot be handled) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    _requested.clear()
    for number in SIGNALS:
        signal.signal(number, _record)
    try:
        yield
    except KeyboardInterrupt:
        if _requested and _requested[0] != signal.SIGINT:
            raise Terminated(_requested[0]) from None
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        _requested.clear()
