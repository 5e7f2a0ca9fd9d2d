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


def test_a_stop_by_sigterm_or_sighup_leaves_the_block_as_terminated() -> None:
    for number in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(stopping.Terminated) as raised, stopping.stop_at_safe_points():
            os.kill(os.getpid(), number)
            stopping.check()
        assert raised.value.exit_code == 128 + number


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_every_command_ends_cleanly_on_sigterm_and_sighup(tmp_path, stop: signal.Signals) -> None:
    """upscale-image had no handler: the signal killed it with no message (and could leave a
    half-written temporary). The signal lands while an output is being written."""
    from animesr import save_checkpoint
    from animesr.imaging import write_image
    from conftest import smooth_image, tiny_model

    write_image(tmp_path / "a.png", smooth_image(16, 16))
    save_checkpoint(tmp_path / "m.safetensors", tiny_model(2), 1.0)
    out = tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "import animesr.imaging as imaging\n"
        "from animesr.cli import main\n"
        "def write_then_stop(path, payload):\n"
        "    path.write_bytes(payload[:10])  # the temporary, half written\n"
        f"    os.kill(os.getpid(), {int(stop)})\n"
        "    path.write_bytes(payload)\n"
        "real = imaging.replaced_on_success\n"
        "class Half:\n"
        "    def __init__(self, target): self.target = target\n"
        "    def write_bytes(self, payload): write_then_stop(self.target, payload)\n"
        "import contextlib\n"
        "@contextlib.contextmanager\n"
        "def replaced(path, suffix=''):\n"
        "    with real(path, suffix) as temporary:\n"
        "        yield Half(temporary)\n"
        "imaging.replaced_on_success = replaced\n"
        f"sys.argv = ['animesr', 'upscale-image', {str(tmp_path / 'a.png')!r}, '-o', {str(out)!r}, '-s', '2',\n"
        f"            '--model', {str(tmp_path / 'm.safetensors')!r}, '--device', 'cpu', '--backend', 'torch']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + stop, result.stderr
    assert f"stopped by {stop.name}" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()  # made by the job and left empty (neither the output nor its temporary): removed
