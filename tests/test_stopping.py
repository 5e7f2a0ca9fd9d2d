"""Ctrl-C and SIGTERM only ask for a stop; the job stops where `check()` is called."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from animesr import stopping


def test_a_signal_is_recorded_and_raised_only_at_a_safe_point() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stopping.stop_at_safe_points():
        stopping.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.requested()
        os.kill(os.getpid(), signal.SIGTERM)  # `kill` on the group, then torchrun's own: still a clean stop
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stopping.check()
    assert signal.getsignal(signal.SIGTERM) is before and not stopping.requested()


def test_a_second_ctrl_c_stops_at_once() -> None:
    script = ("import os, signal, time\n"
              "from animesr import stopping\n"
              "with stopping.stop_at_safe_points():\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(30)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGINT and "stopping now" in result.stderr
