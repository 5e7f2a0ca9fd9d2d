"""The ffmpeg binary, and ffmpeg processes with their stderr kept: a runner, a raw-frame
reader and a raw-frame writer. Commands are argument lists, never shell strings. No torch."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from animesr.errors import FFmpegError

STDERR_LINES_KEPT = 40
STDERR_LINES_SHOWN = 6


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """A system ffmpeg on PATH, else the binary imageio-ffmpeg ships."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        raise FFmpegError("ffmpeg not found: install ffmpeg or `pip install imageio-ffmpeg`") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        raise FFmpegError(f"ffmpeg not found: {error}") from None


def ffprobe_exe() -> str | None:
    return shutil.which("ffprobe")


@lru_cache(maxsize=1)
def video_encoders() -> frozenset[str]:
    """What `-c:v` accepts in this ffmpeg: its video encoders, and the video codecs it can encode
    (`h264` picks the default H.264 encoder)."""
    encoders = run_ffmpeg(["-hide_banner", "-encoders"], "list its encoders")
    codecs = run_ffmpeg(["-hide_banner", "-codecs"], "list its codecs")
    return parse_listing(encoders, lambda flags: flags[0] == "V") | parse_listing(codecs, _encodable_video)


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


def run_ffmpeg(args: Sequence[str], what: str) -> str:
    """Run ffmpeg to completion; returns stdout; raises FFmpegError with stderr's tail."""
    result = subprocess.run([ffmpeg_exe(), *args], capture_output=True, text=True, errors="replace",
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise FFmpegError(f"ffmpeg failed to {what}: {last_lines(result.stderr)}")
    return result.stdout


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
            [ffmpeg_exe(), *args],
            stdin=subprocess.PIPE if reads_stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if reads_stdin else subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches only us; we stop our children ourselves
        )
        self.stderr = _StderrTail(self.process.stderr)

    def finish(self) -> None:
        code = self.process.wait()
        if code != 0:
            raise FFmpegError(f"ffmpeg failed to {self.what}: {last_lines(self.stderr.text())}")

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
