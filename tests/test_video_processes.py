"""Every ffmpeg child dies with its job, whatever stops the job: SIGTERM, SIGINT, SIGHUP, or the
job being killed outright. A real `animesr upscale-video` runs in a subprocess; the test finds its
ffmpeg children in /proc, signals the job, and checks that no child outlives it. The ffmpeg on
PATH there scans slowly and quietly (see SLOW_SCAN), as a runaway scan does. Also: options that
would make the job endless are refused before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from animesr.errors import FFmpegError, InputError
from animesr.video.ffmpeg import die_with_parent, ffmpeg_exe
from conftest import dies_with_pytest
from test_video_pipeline import lavfi_testsrc, make_clip, tiny_model_file

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# The job's scan, made long and quiet like a runaway scan: the input is read at the native rate
# and the timestamps are written only at the end, so a broken pipe cannot end it early.
SLOW_SCAN = """#!{python} -S
import os, sys
args = sys.argv[1:]
if "wrapped_avframe" in args and "framecrc" in args:
    args = ["-re", *args[:-1], "-flush_packets", "0", args[-1]]
os.execv({ffmpeg!r}, [{ffmpeg!r}, *args])
"""
CHILD_WAIT_SECONDS = 60  # the job imports torch and scans the clip before its first long-lived child
EXIT_WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def job_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A 20 s clip, a tiny model, and a folder with the slow-scanning `ffmpeg`."""
    try:
        ffmpeg = ffmpeg_exe()
    except FFmpegError as error:
        pytest.skip(f"no ffmpeg: {error}")
    folder = tmp_path_factory.mktemp("long-job")
    clip = make_clip(ffmpeg, folder / "long.mkv", *lavfi_testsrc("25", 20, "64x48"), "-c:v", "libx264",
                     "-preset", "ultrafast")
    model = tiny_model_file(folder)
    slow = folder / "bin" / "ffmpeg"
    slow.parent.mkdir()
    slow.write_text(SLOW_SCAN.format(python=sys.executable, ffmpeg=ffmpeg))
    slow.chmod(0o755)
    return clip, model, slow.parent


def _children(pid: int) -> set[int]:
    """Direct children of `pid` (all its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that does not reap (as PID 1 in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for_ffmpeg_children(job: subprocess.Popen) -> set[int]:
    """The job's ffmpeg children that live at least half a second (not the quick probes)."""
    deadline = time.monotonic() + CHILD_WAIT_SECONDS
    seen: set[int] = set()
    while time.monotonic() < deadline:
        ffmpegs = {pid for pid in _children(job.pid) if "ffmpeg" in _command_line(pid)}
        if ffmpegs & seen:
            return ffmpegs
        seen = ffmpegs
        if job.poll() is not None:
            pytest.fail(f"the job ended (exit {job.returncode}) before starting ffmpeg: {job.stderr.read()}")
        time.sleep(0.5)
    pytest.fail("the job started no long-lived ffmpeg child in time")


def _start_job(clip: Path, model: Path, ffmpeg_folder: Path, output: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "animesr", "upscale-video", str(clip), "-o", str(output), "--scale", "2",
               "--model", str(model), "--preset", "ultrafast"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{ffmpeg_folder}{os.pathsep}{os.environ['PATH']}"}
    env.pop("ANIMESR_FFMPEG", None)
    return subprocess.Popen(dies_with_pytest(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_ffmpeg_children_die_with_the_job(job_files: tuple[Path, Path, Path], tmp_path: Path, signum: int) -> None:
    if signum == signal.SIGKILL and not die_with_parent():
        pytest.skip("needs util-linux setpriv --pdeathsig (a killed parent cannot stop its children otherwise)")
    clip, model, ffmpeg_folder = job_files
    job = _start_job(clip, model, ffmpeg_folder, tmp_path / "out.mkv")
    ffmpegs: set[int] = set()
    try:
        ffmpegs = _wait_for_ffmpeg_children(job)
        job.send_signal(signum)
        job.wait(timeout=EXIT_WAIT_SECONDS)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in ffmpegs) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [_command_line(pid)[:120] for pid in ffmpegs if _alive(pid)]
        assert not survivors, f"ffmpeg outlived the job stopped by {signal.Signals(signum).name}: {survivors}"
        if signum != signal.SIGKILL:  # stopped in order: one line, the conventional exit status
            assert job.returncode == (130 if signum == signal.SIGINT else 128 + signum)
            assert "Traceback" not in job.stderr.read()
    finally:
        for pid in [job.pid, *ffmpegs]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        job.wait(timeout=EXIT_WAIT_SECONDS)
        job.stderr.close()


@pytest.mark.parametrize("options, message", [
    (["--fps", "1e9"], "--fps must be 0.1 to 1000"),
    (["--fps", "1/100"], "--fps must be 0.1 to 1000"),
    (["--start", "nan"], "--start must be"),
    (["--duration", "inf"], "--duration must be"),
    (["--batch", "100000"], "--batch must be 1 to"),
    (["--chunk-frames", "1000000000"], "--chunk-frames must be 1 to"),
    (["--dedup-threshold", "nan"], "--dedup-threshold must be"),
])
def test_unbounded_options_are_one_line_before_any_work(tmp_path: Path, options: list[str], message: str) -> None:
    from animesr.cli import _register, app

    _register()
    # the input does not exist: an option error must come first, before the file is even looked at
    result = CliRunner().invoke(app, ["upscale-video", str(tmp_path / "missing.mkv"), "-o", str(tmp_path / "o.mkv"),
                                      "--scale", "2", *options])
    assert result.exit_code == InputError.exit_code, result.output
    assert message in result.output and "not found" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_every_ffmpeg_child_is_started_through_the_one_module_that_ties_it_to_the_job() -> None:
    """Dying with the job is arranged in animesr/video/ffmpeg.py; a subprocess call elsewhere in
    the package would start a child that can outlive it."""
    package = Path(__file__).resolve().parents[1] / "animesr"
    elsewhere = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name != "ffmpeg.py" and "subprocess." in path.read_text()]
    assert elsewhere == []
