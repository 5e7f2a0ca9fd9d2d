"""Checks on a source (does all it declares decode?) and on a finished output (frames in =
frames out, duration within one frame, streams, copied audio as long as the source's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animesr.config import VideoJob
from animesr.video import commands
from animesr.video.extents import Extent, Span, chapter_extents, parse_packets, stream_extents
from animesr.video.ffmpeg import ffmpeg_exe, last_lines, path_arg, run_ffmpeg, run_tool
from animesr.video.probe import VideoInfo, probe
from animesr.video.streams import StreamAction
from animesr.video.timeline import Timeline, parse_framecrc

_CONTAINER_ROUNDING_SECONDS = 0.0015  # Matroska stores milliseconds
# A source is truncated when it decodes shorter than declared by more than both of these: a
# duration estimated from the container (duration × rate, or a longer audio track) is off by a
# frame or two on whole files (measured on ../shared/data/video: at most one frame).
TRUNCATION_TOLERANCE_FRAMES = 2
TRUNCATION_TOLERANCE_SECONDS = 0.25


@dataclass(frozen=True)
class Truncation:
    """A source that decodes shorter than its container declares: a cut download, a lost end."""

    name: str
    declared_seconds: float
    declared_frames: int | None  # when the container counts frames and nothing changes the count
    decoded_seconds: float
    decoded_frames: int

    def describe(self) -> str:
        declared = f"{self.declared_seconds:.3f} s" + (f" ({self.declared_frames} frames)"
                                                       if self.declared_frames is not None else "")
        return (f"{self.name} is truncated or damaged: its container declares {declared} of video, "
                f"but only {self.decoded_seconds:.3f} s ({self.decoded_frames} frames) decode")


def find_truncation(info: VideoInfo, job: VideoJob, source: Timeline) -> Truncation | None:
    """Compare what decodes (`source`, after --start/--duration) with what the container declares."""
    frame = 1 / float(info.frame_rate)
    if info.frame_count_from_container:
        declared_total = info.frame_count * frame
    elif info.duration:
        declared_total = info.duration
    else:
        return None
    declared = declared_total - (job.start or 0.0)
    if job.duration is not None:
        declared = min(declared, job.duration)
    # frame counts compare only when no filter (--fps, deinterlacing, IVTC...) or trim changes them
    counted = (info.frame_count_from_container and not commands.timing_filters(info, job)
               and job.start is None and job.duration is None)
    # to the end of the last frame: a video that starts after the audio (or the container's start)
    # is not short by its late start
    shortfall = declared - (source.start_seconds() + source.seconds())
    if counted:
        shortfall = (info.frame_count - source.count) * frame
    if shortfall <= max(TRUNCATION_TOLERANCE_FRAMES * frame, TRUNCATION_TOLERANCE_SECONDS):
        return None
    return Truncation(info.path.name, declared, info.frame_count if counted else None, source.seconds(),
                      source.count)


@dataclass(frozen=True)
class AudioLength:
    """An uncut copied audio stream's decoded seconds up to the output's audio end (the video's end
    at most), in the source and in the output: the same sound, but for the rounding of Matroska's
    millisecond timestamps. A lost packet leaves the output short by a whole one."""

    label: str
    source_seconds: float
    output_seconds: float
    allowed_shortfall: float

    @property
    def ok(self) -> bool:
        return self.source_seconds - self.output_seconds < self.allowed_shortfall

    def describe(self) -> str:
        short = "" if self.ok else " SHORT"
        return f"{self.label} {self.source_seconds:.3f} s in, {self.output_seconds:.3f} s out{short}"


@dataclass(frozen=True)
class Verification:
    frames_in: int
    frames_out: int
    seconds_in: float
    seconds_out: float
    frame_seconds: float
    streams_expected: tuple[str, ...]  # kinds, in output order
    streams_out: tuple[str, ...]  # "kind codec (language)" per output stream
    window: tuple[float, float] = (0.0, 0.0)  # the output video's first frame start, last frame end
    # where the other streams may begin instead, when earlier: the file's start (0) for an uncut
    # source, whose audio may lead its video as the source has it; None: the video's first frame
    streams_from: float | None = None
    extents: tuple[Extent, ...] = ()  # every other stream's packets, and the chapters
    frames_decoded: int | None = None  # before inverse telecine, which keeps 4 frames of every 5
    size_expected: tuple[int, int] | None = None  # the source as shown, upscaled (and padded)
    size_out: tuple[int, int] | None = None  # the output as shown: its stream's size, turned by its rotation
    audio: tuple[AudioLength, ...] = ()  # copied audio, when uncut and this ffmpeg can decode it
    audio_undecodable: str = ""  # ffmpeg's words when the source's copied audio decodes and the output's not
    audio_unchecked: str = ""  # ffmpeg's words when it cannot decode the source's copied audio (no decoder)
    rate_converted: bool = False  # by --fps, which ends the video at the frame nearest the source's end

    def _outside(self, extent: Extent) -> bool:
        # within one frame of the video's ends, or one packet for audio (copied packets straddle
        # them, and the first may end where the window starts: the priming an encoder delay
        # discards); subtitles and chapters are cut to them
        packet = extent.longest if " audio" in extent.label else 0.0
        slack = max(self.frame_seconds, packet) + _CONTAINER_ROUNDING_SECONDS
        start = self.window[0] if self.streams_from is None else min(self.streams_from, self.window[0])
        return extent.start + packet < start - slack or extent.end > self.window[1] + slack

    @property
    def extents_ok(self) -> bool:
        return not any(self._outside(e) for e in self.extents)

    @property
    def frames_ok(self) -> bool:
        telecine_ok = self.frames_decoded is None or abs(self.frames_decoded * 4 / 5 - self.frames_in) <= 1
        return self.frames_in == self.frames_out and telecine_ok

    @property
    def duration_ok(self) -> bool:
        slack = self.frame_seconds / 2 if self.rate_converted else self.frame_seconds
        return abs(self.seconds_in - self.seconds_out) <= slack + _CONTAINER_ROUNDING_SECONDS

    @property
    def streams_ok(self) -> bool:
        # MP4 carries chapters as an extra data track: data streams are not compared
        kinds = tuple(s.split(" ", 1)[0] for s in self.streams_out)
        return tuple(k for k in kinds if k != "data") == self.streams_expected

    @property
    def size_ok(self) -> bool:
        return self.size_expected is None or self.size_out == self.size_expected

    @property
    def audio_ok(self) -> bool:
        return not self.audio_undecodable and all(length.ok for length in self.audio)

    @property
    def ok(self) -> bool:
        return (self.frames_ok and self.size_ok and self.duration_ok and self.streams_ok and self.extents_ok
                and self.audio_ok)

    def _frames_in(self) -> str:
        if self.frames_decoded is None:
            return f"{self.frames_in} in"
        return f"{self.frames_decoded} decoded → {self.frames_in} after inverse telecine (5 → 4)"

    def lines(self) -> list[str]:
        mark = {True: "ok", False: "MISMATCH"}
        size = f"size: {_size(self.size_out)} out, {_size(self.size_expected)} expected ({mark[self.size_ok]})"
        return [
            f"frames: {self._frames_in()}, {self.frames_out} out ({mark[self.frames_ok]})",
            *([size] if self.size_expected is not None else []),
            f"duration: {self.seconds_in:.3f} s in, {self.seconds_out:.3f} s out "
            f"(one frame = {self.frame_seconds:.3f} s; {mark[self.duration_ok]})",
            f"streams: {', '.join(self.streams_out)} ({mark[self.streams_ok]})",
            f"extents: video {self.window[0]:.3f}–{self.window[1]:.3f} s"
            + "".join(f"; {e.label} {e.start:.3f}–{e.end:.3f} s{' OUTSIDE' if self._outside(e) else ''}"
                      for e in self.extents) + f" ({mark[self.extents_ok]})",
            *self._audio_lines(mark[self.audio_ok]),
        ]

    def _audio_lines(self, mark: str) -> list[str]:
        if self.audio_undecodable:
            return [f"audio: the output's copied audio does not decode ({self.audio_undecodable}) ({mark})"]
        if self.audio_unchecked:
            return [f"audio: not compared, this ffmpeg cannot decode the source's ({self.audio_unchecked})"]
        return [f"audio: {'; '.join(a.describe() for a in self.audio)} ({mark})"] if self.audio else []


def verify_output(path: Path, source: Timeline, actions: tuple[StreamAction, ...], *, job: VideoJob,
                  size: tuple[int, int]) -> Verification:
    """`size`: the upscaled frames', which the output must show (upright, with no rotation left)."""
    written = parse_framecrc(run_ffmpeg(commands.packet_scan_args(path), f"read back {path.name}"))
    info = probe(path)
    extents = (*stream_extents(path, tuple(s for s in info.streams if s.index != info.video_index)),
               *chapter_extents(path))
    audio = audio_lengths(path, job, actions, extents, window_end=source.start_seconds() + source.seconds())
    return Verification(
        frames_in=source.count,
        frames_decoded=source.decoded,
        frames_out=written.count,
        size_expected=size,
        size_out=(info.width, info.height),
        seconds_in=source.window_seconds(),
        seconds_out=written.seconds(),
        frame_seconds=source.seconds() / max(source.count, 1),
        streams_expected=("video", *(a.stream.kind for a in actions if a.kept)),
        streams_out=tuple(_describe(s.kind, s.codec, s.language) for s in info.streams),
        window=(written.start_seconds(), written.start_seconds() + written.seconds()),
        streams_from=None if job.start else 0.0,
        extents=extents,
        audio=audio.lengths,
        audio_undecodable=audio.output_failure,
        audio_unchecked=audio.source_failure,
        rate_converted=source.unconverted_end is not None,
    )


def _size(size: tuple[int, int] | None) -> str:
    return f"{size[0]}×{size[1]}" if size else "unknown"


def _describe(kind: str, codec: str, language: str) -> str:
    return f"{kind} {codec}" + (f" ({language})" if language else "")


@dataclass(frozen=True)
class AudioCheck:
    """The copied audio compared, or ffmpeg's words on why not: the source's audio does not decode
    here (a decoder this ffmpeg lacks: not compared), or the output's does not (a damaged track)."""

    lengths: tuple[AudioLength, ...] = ()
    source_failure: str = ""
    output_failure: str = ""


def audio_lengths(path: Path, job: VideoJob, actions: tuple[StreamAction, ...], extents: tuple[Extent, ...], *,
                  window_end: float) -> AudioCheck:
    """Each copied audio stream decoded in the source and in the output `path`. Not from a cut at
    --start: where a cut packet's sound begins depends on the codec (an MP3 frame cut from the one
    before it may not decode at all)."""
    kept = [action for action in actions if action.kept]
    copied = [(n, a) for n, a in enumerate(kept, start=1) if a.stream.kind == "audio" and a.codec == "copy"]
    if job.start or not copied:
        return AudioCheck()
    # the source as the mux read it, the output on its own clock (the window's)
    read = _decoded_blocks(commands.input_args(job), [a.stream.index for _, a in copied])
    if isinstance(read, str):
        return AudioCheck(source_failure=read)
    written = _decoded_blocks(["-copyts", "-i", path_arg(path)], [n for n, _ in copied])
    if isinstance(written, str):
        return AudioCheck(output_failure=written)
    longest = {extent.label: extent.longest for extent in extents}
    lengths = []
    for (output_index, _), output_blocks, source_blocks in zip(copied, written, read):
        end = min(window_end, max((stop for _, stop in output_blocks), default=window_end))
        allowed = longest.get(f"#{output_index} audio", 0.0) / 2 + _CONTAINER_ROUNDING_SECONDS
        lengths.append(AudioLength(f"#{output_index} audio", seconds_within(source_blocks, end),
                                   seconds_within(output_blocks, end), allowed))
    return AudioCheck(tuple(lengths))


Blocks = list[Span]  # decoded blocks of samples


def _decoded_blocks(inputs: list[str], stream_indexes: list[int]) -> list[Blocks] | str:
    """Each stream's blocks, or ffmpeg's last lines where it cannot decode them all."""
    result = run_tool([ffmpeg_exe(), *commands.decoded_audio_args(inputs, stream_indexes)])
    if result.returncode != 0:
        return last_lines(result.stderr, 3)
    blocks = parse_packets(result.stdout)
    return [blocks.get(n, []) for n in range(len(stream_indexes))]


def seconds_within(blocks: Blocks, end: float) -> float:
    """Seconds of sound in [0, end)."""
    return sum(max(min(stop, end) - max(start, 0.0), 0.0) for start, stop in blocks)
