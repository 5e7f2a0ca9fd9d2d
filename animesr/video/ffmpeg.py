"""The ffmpeg binary, and ffmpeg processes with their stderr kept: a runner, a raw-frame
reader and a raw-frame writer. Commands are argument lists, never shell strings. No torch.

Which ffmpeg: $ANIMESR_FFMPEG (a path, a name on PATH, or `bundled`), else a system ffmpeg on
PATH, else the binary imageio-ffmpeg ships. The chosen one is checked once for the version and
the options the pipeline needs; one that lacks them is replaced by the bundled binary, with a
notice. Every child ffmpeg dies with this process (see `die_with_parent`)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from animesr.errors import AnimeSRError, FFmpegError, FFmpegKilled, OutputError

STDERR_LINES_KEPT = 40
STDERR_LINES_SHOWN = 6
FFMPEG_ENV = "ANIMESR_FFMPEG"
BUNDLED = "bundled"
# `-enc_time_base filter` (each frame keeps the filter graph's timestamps) arrived in ffmpeg 6.1
MINIMUM_VERSION = (6, 1)
_CHECK_SECONDS = 60
_VERSION = re.compile(r"^\S+ version n?(\d+)\.(\d+)")


@dataclass(frozen=True)
class FFmpegTool:
    """The ffmpeg in use: its path, its version line, the ffprobe beside it (if any), and a
    one-line notice when the ffmpeg asked for could not be used."""

    path: str
    version: str
    ffprobe: str | None = None
    notice: str | None = None


@lru_cache(maxsize=1)
def ffmpeg_tool() -> FFmpegTool:
    """Choose and check the ffmpeg once per process; FFmpegError (exit 6) when none will do."""
    requested = os.environ.get(FFMPEG_ENV, "").strip()
    if requested.lower() == BUNDLED:
        return _bundled(f"{FFMPEG_ENV}={requested}")
    if requested:
        found = shutil.which(requested)
        if found is None:
            raise FFmpegError(f"{FFMPEG_ENV}={requested} is not an ffmpeg that can be run")
        return _checked_or_bundled(found, f"{FFMPEG_ENV}={requested}")
    system = shutil.which("ffmpeg")
    if system:
        return _checked_or_bundled(system, f"the system ffmpeg ({system})")
    return _bundled("no ffmpeg on PATH")


def ffmpeg_exe() -> str:
    return ffmpeg_tool().path


def ffprobe_exe() -> str | None:
    """The ffprobe of the same installation as the chosen ffmpeg; None: parse `ffmpeg -i`."""
    return ffmpeg_tool().ffprobe


def version_numbers(version_line: str) -> tuple[int, int] | None:
    """'ffmpeg version 5.1.9-0+deb12u1 ...' -> (5, 1); None for git builds ('N-112233-g...')."""
    match = _VERSION.match(version_line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def minimum_version_text() -> str:
    return ".".join(map(str, MINIMUM_VERSION))


def _checked_or_bundled(path: str, what: str) -> FFmpegTool:
    version, problem = _inspect(path)
    if problem is None:
        return FFmpegTool(path, version, _ffprobe_beside(path))
    if _bundled_path() is None:
        raise FFmpegError(f"{what}: {_short(version)} {problem}; install ffmpeg {minimum_version_text()} "
                          f"or newer, or `pip install imageio-ffmpeg`")
    bundled = _bundled(what)
    return FFmpegTool(bundled.path, bundled.version, None,
                      f"{what}: {_short(version)} {problem}; using the bundled {_short(bundled.version)} "
                      f"(imageio-ffmpeg) instead")


def _bundled(why: str) -> FFmpegTool:
    path = _bundled_path()
    if path is None:
        raise FFmpegError(f"ffmpeg not found ({why}): install ffmpeg {minimum_version_text()} or newer, "
                          f"or `pip install imageio-ffmpeg`")
    version, problem = _inspect(path)
    if problem is not None:
        raise FFmpegError(f"the bundled ffmpeg ({path}) {problem}")
    return FFmpegTool(path, version)


def _bundled_path() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def _short(version_line: str) -> str:
    return version_line.split(" Copyright")[0]


def _inspect(path: str) -> tuple[str, str | None]:
    """(version line, None) when this ffmpeg does what the pipeline needs, else (line, problem)."""
    try:
        result = _run([path, "-hide_banner", "-version"], timeout=_CHECK_SECONDS)
    except (OSError, subprocess.SubprocessError) as error:
        return "ffmpeg", f"cannot be run ({error})"
    line = result.stdout.splitlines()[0].strip() if result.stdout.strip() else "ffmpeg (unknown version)"
    numbers = version_numbers(line)
    if result.returncode != 0:
        return line, f"does not run ({last_lines(result.stderr, 1)})"
    if numbers is not None and numbers < MINIMUM_VERSION:
        return line, f"is older than the {minimum_version_text()} animesr needs"
    return line, _capability_problem(path)


def _capability_problem(path: str) -> str | None:
    """One 2×2 frame through the options and filters the video pipeline relies on."""
    args = [path, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "2x2",
            "-framerate", "24", "-i", "-",
            "-vf", "fps=24,trim=start_frame=0,settb=1/24,setpts='N',scale=out_color_matrix=bt709:out_range=tv,"
                   "format=yuv420p,setparams=colorspace=bt709:range=tv,setsar=1/1",
            "-fps_mode", "passthrough", "-enc_time_base:v", "filter", "-c:v", "wrapped_avframe",
            "-f", "framecrc", "-"]
    try:
        result = _run(args, stdin_bytes=bytes(12), timeout=_CHECK_SECONDS)
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot be run ({error})"
    frames = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    if result.returncode != 0 or len(frames) != 1:
        return (f"lacks options animesr needs (ffmpeg {minimum_version_text()} or newer has them): "
                f"{last_lines(result.stderr, 1)}")
    return None


def _ffprobe_beside(ffmpeg: str) -> str | None:
    candidate = Path(ffmpeg).with_name("ffprobe" + Path(ffmpeg).suffix)
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


# ---- child processes ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def die_with_parent() -> tuple[str, ...]:
    """The command prefix that makes a child get SIGKILL when its parent dies, even by SIGKILL:
    util-linux's `setpriv --pdeathsig` (Linux). Linux sends it when the *thread* that started
    the child ends, so each child is waited for by the thread that started it. No Python code
    runs between fork and exec (a preexec_fn would, and is unsafe with threads and signals)."""
    tool = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if tool is None:
        return ()
    try:
        help_text = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return (tool, "--pdeathsig", "KILL", "--") if "--pdeathsig" in help_text else ()


def _command(args: Sequence[str]) -> list[str]:
    return [*die_with_parent(), *args]


def _run(args: Sequence[str], *, stdin_bytes: bytes | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run to completion with output captured as text; the child is killed if we are interrupted."""
    stdin = {"input": stdin_bytes} if stdin_bytes is not None else {"stdin": subprocess.DEVNULL}
    # own session: a terminal's Ctrl-C reaches only us, and we stop our children ourselves
    result = subprocess.run(_command(args), capture_output=True, timeout=timeout, start_new_session=True,
                            **stdin)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode("utf-8", "replace"),
                                       result.stderr.decode("utf-8", "replace"))


def run_tool(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg or ffprobe (args[0] included) to completion; stdout and stderr as text."""
    return _run(args)


@lru_cache(maxsize=1)
def video_encoders() -> frozenset[str]:
    """What `-c:v` accepts in this ffmpeg: its video encoders, and the video codecs it can encode
    (`h264` picks the default H.264 encoder)."""
    encoders = run_ffmpeg(["-hide_banner", "-encoders"], "list its encoders")
    codecs = run_ffmpeg(["-hide_banner", "-codecs"], "list its codecs")
    return parse_listing(encoders, lambda flags: flags[0] == "V") | parse_listing(codecs, _encodable_video)


@lru_cache(maxsize=None)
def encoder_pixel_formats(codec: str) -> frozenset[str]:
    """The pixel formats `-c:v codec` takes: those its `ffmpeg -h encoder=` lists, or every format
    ffmpeg can write where the encoder lists none (rawvideo takes any)."""
    listed = parse_pixel_formats(run_ffmpeg(["-hide_banner", "-h", f"encoder={codec}"], f"describe {codec}"))
    return listed or writable_pixel_formats()


def parse_pixel_formats(encoder_help: str) -> frozenset[str]:
    """`Supported pixel formats: a b c` of the first encoder described: a codec name (h264)
    describes all its encoders, and `-c:v h264` picks the first."""
    encoders_seen = 0
    for line in encoder_help.splitlines():
        if line.startswith("Encoder "):
            encoders_seen += 1
            if encoders_seen > 1:
                break
        label, _, names = line.strip().partition(":")
        if label == "Supported pixel formats":
            return frozenset(names.split())
    return frozenset()


@lru_cache(maxsize=1)
def writable_pixel_formats() -> frozenset[str]:
    listing = run_ffmpeg(["-hide_banner", "-pix_fmts"], "list its pixel formats")
    return parse_listing(listing, lambda flags: len(flags) >= 2 and flags[1] == "O")  # I O H P B


def parse_listing(listing: str, wanted: Callable[[str], bool]) -> frozenset[str]:
    # after the " ------" rule each line is " FLAGS name description"
    body = listing.split("------", 1)[-1]
    rows = (line.split() for line in body.splitlines())
    return frozenset(row[1] for row in rows if len(row) >= 2 and wanted(row[0]))


def _encodable_video(flags: str) -> bool:
    return len(flags) >= 3 and flags[1] == "E" and flags[2] == "V"  # D E V I L S


def last_lines(stderr: str, count: int = STDERR_LINES_SHOWN) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no message)"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_ffmpeg(args: Sequence[str], what: str) -> str:
    """Run ffmpeg to completion; returns stdout; raises FFmpegError with stderr's tail."""
    result = _run([ffmpeg_exe(), *args])
    if result.returncode != 0:
        raise ffmpeg_failure(result.returncode, what, result.stderr)
    return result.stdout


FULL_DISK = ("No space left on device", "Disk quota exceeded")


def ffmpeg_failure(code: int, what: str, stderr: str) -> AnimeSRError:
    """A failed ffmpeg as an error: one that died of a signal is FFmpegKilled, not a fault of the input;
    one that could not write for a full disk is an OutputError, as anywhere else."""
    if any(words in stderr for words in FULL_DISK):
        return OutputError(f"ffmpeg could not {what}: {next(w for w in FULL_DISK if w in stderr)}")
    if code < 0:
        return FFmpegKilled(f"ffmpeg was killed by {signal_name(-code)} while trying to {what} "
                            f"(a crash, or out of memory): {last_lines(stderr)}")
    return FFmpegError(f"ffmpeg failed to {what}: {last_lines(stderr)}")


class _StderrTail:
    """Drains a process's stderr on a thread (so it never blocks) and keeps the last lines."""

    def __init__(self, stream) -> None:
        self.lines: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())
        stream.close()

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


class FFmpegProcess:
    """One ffmpeg child with piped stdin or stdout; `finish()` raises FFmpegError on failure."""

    def __init__(self, args: Sequence[str], what: str, *, reads_stdin: bool) -> None:
        self.what = what
        self.process = subprocess.Popen(
            _command([ffmpeg_exe(), *args]),
            stdin=subprocess.PIPE if reads_stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if reads_stdin else subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches only us; we stop our children ourselves
        )
        self.stderr = _StderrTail(self.process.stderr)

    def finish(self) -> None:
        code = self.process.wait()
        if code != 0:
            raise ffmpeg_failure(code, self.what, self.stderr.text())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass


class FrameReader(FFmpegProcess):
    """Reads H×W×3 uint8 frames from an ffmpeg writing rgb24 rawvideo to stdout."""

    def __init__(self, args: Sequence[str], width: int, height: int, what: str = "decode the video") -> None:
        super().__init__(args, what, reads_stdin=False)
        self.shape = (height, width, 3)
        self.frame_bytes = width * height * 3

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of the stream (after checking ffmpeg's exit)."""
        data = self.process.stdout.read(self.frame_bytes)
        if len(data) == self.frame_bytes:
            return np.frombuffer(data, np.uint8).reshape(self.shape)
        self.finish()
        if data:
            raise FFmpegError(f"ffmpeg ended inside a frame ({len(data)} of {self.frame_bytes} bytes)")
        return None


class FrameWriter(FFmpegProcess):
    """Writes H×W×3 uint8 frames to an ffmpeg reading rgb24 rawvideo from stdin."""

    def __init__(self, args: Sequence[str], what: str = "encode the video") -> None:
        super().__init__(args, what, reads_stdin=True)

    def write(self, frame: np.ndarray) -> None:
        try:
            self.process.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            self.process.stdin = None
            self.finish()
            raise FFmpegError(f"ffmpeg stopped reading frames while trying to {self.what}") from None

    def close(self) -> None:
        if self.process.stdin:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        self.finish()


def path_arg(path: Path) -> str:
    """A path ffmpeg will not mistake for a protocol or an option."""
    return str(path if path.is_absolute() else Path.cwd() / path)
